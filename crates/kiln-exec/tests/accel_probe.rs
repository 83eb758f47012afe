//! The accelerator probe behind `Accel::Auto`, against the real libvirt.

mod common;

use std::time::{Duration, Instant};

use common::*;
use kiln_exec::{Accel, DomainType, Host, resolve_accel, run_probe};

// The probe guest itself must work: under TCG it reaches 64-bit mode and prints its line, so a
// failed probe under KVM means KVM, not a broken probe.
#[test]
fn probe_reaches_long_mode_under_tcg() {
    let hv = connect();
    let dir = workdir();
    run_probe(&hv, dir.path(), Duration::from_secs(60), DomainType::Qemu).expect("probe under tcg");
    assert_no_probe_domains("-tcg");
}

/// Probe domains of this process with the given accelerator suffix (tests share a process under
/// `cargo test`, so each checks its own).
/// A transient probe domain whose QEMU has exited vanishes once libvirt has processed its exit
/// (see `common::assert_no_domains`): wait up to 15 s.
fn assert_no_probe_domains(suffix: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left: Vec<String> = leftover_domains(&format!("probe{}.", std::process::id()))
            .into_iter()
            .filter(|n| n.ends_with(suffix))
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "probe domains left behind: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

// `Auto` is decided by the probe, once per host per process, and agrees with reality: a nested
// kvm_pvm host (this kind of machine, where libvirt still advertises kvm) must get TCG; a host
// where the probe picks KVM must really run the probe under KVM.
#[test]
fn auto_accel_is_probed_once_and_right() {
    let hv = connect();
    let dir = workdir();
    let host = Host {
        accel: Accel::Auto,
        ..Host::local()
    };
    let first = resolve_accel(&host, &hv, dir.path());
    let t = Instant::now();
    let second = resolve_accel(&host, &hv, dir.path());
    assert!(
        t.elapsed() < Duration::from_millis(50),
        "second resolve probed again: {:?}",
        t.elapsed()
    );
    assert_eq!(first, second);
    eprintln!("auto accelerator: {first:?}");
    if std::path::Path::new("/sys/module/kvm_pvm").exists() {
        assert_eq!(first.domain_type, DomainType::Qemu, "{}", first.reason);
    }
    if first.domain_type == DomainType::Kvm {
        run_probe(&hv, dir.path(), Duration::from_secs(20), DomainType::Kvm)
            .expect("kvm chosen, so kvm must run");
    }
    assert_eq!(
        resolve_accel(
            &Host {
                accel: Accel::Tcg,
                ..host
            },
            &hv,
            dir.path()
        )
        .domain_type,
        DomainType::Qemu
    );
    assert_no_probe_domains("-kvm");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "probe left files: {left:?}");
}

// A host's capacity can come from libvirt's node info (the only source for remote hosts). Its CPU
// count must match this machine's; its memory may be lower than /proc/meminfo's (libvirt counts
// NUMA node memory: 12.3 GiB of 23.5 GiB on this kind of machine) but never higher.
#[test]
fn host_capacity_from_libvirt_matches_the_machine() {
    let hv = connect();
    let host = Host::from_libvirt(&hv, Accel::Tcg).unwrap();
    let local = Host::local();
    assert_eq!(host.uri, local.uri);
    assert_eq!(host.capacity.vcpus, local.capacity.vcpus);
    assert_eq!(host.capacity.guests, local.capacity.guests);
    assert!(
        host.capacity.memory_mib > 0 && host.capacity.memory_mib <= local.capacity.memory_mib + 64,
        "libvirt {:?} vs /proc {:?}",
        host.capacity,
        local.capacity
    );
}
