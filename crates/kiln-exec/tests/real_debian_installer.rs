//! Debian's own debian-installer (its netboot build laid out as a CD by
//! `fixtures/debian-netboot/build.sh`) under kiln's `debian-installer` profile, on real libvirt +
//! QEMU (TCG), BIOS and UEFI.
//!
//! This machine's archive serves no udebs, so no d-i run can get past "Download installer
//! components" here. What can be proven is that the answers reach the real installer and that it
//! runs with no question: the pipeline's preseed (standard d-i questions only) has an
//! `early_command` that prints a marker on the serial console and powers off. d-i runs it as soon
//! as it has read the preseed from its initrd. kiln then fails the step — the guest shut off
//! before the profile's success line — which is the expected end of this run.
//!
//! The same ISO booted by its own menu (method `none`: no profile) waits at Debian's menu: no
//! marker, and the install times out. That shows the profile is what makes it work.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{assert_no_domains, workdir};
use kiln_exec::build::{BuildOptions, BuildResult, PlainSink, build};
use kiln_exec::{Accel, Host};

const MARKER: &str = "KILN-PRESEED-READ";

/// A preseed as a user writes one: standard d-i questions, no kiln line.
const PRESEED: &str = "\
d-i preseed/early_command string echo KILN-PRESEED-READ > /dev/ttyS0; poweroff -f
d-i debian-installer/locale string en_US.UTF-8
d-i keyboard-configuration/xkb-keymap select us
d-i netcfg/choose_interface select auto
d-i netcfg/get_hostname string kiln-real
d-i netcfg/get_domain string example.org
d-i mirror/country string manual
d-i mirror/http/hostname string deb.debian.org
d-i mirror/http/directory string /debian
d-i mirror/http/proxy string
d-i passwd/root-login boolean false
d-i passwd/make-user boolean false
d-i partman-auto/method string regular
d-i partman-auto/choose_recipe select atomic
d-i finish-install/reboot_in_progress note
";

fn run(dir: &Path, pipeline: &str, run: &str) -> (BuildResult, String) {
    common::ensure_libvirt();
    std::os::unix::fs::symlink(
        common::fixture("fixtures/debian-netboot/build.sh", &[]),
        dir.join("netboot.iso"),
    )
    .unwrap();
    std::fs::write(dir.join("preseed.cfg"), PRESEED).unwrap();
    let file = dir.join("real.kdl");
    std::fs::write(&file, pipeline).unwrap();
    let cache = dir.join("cache");
    let mut o = BuildOptions::new(&cache);
    o.run_id = run.to_owned();
    let mut host = Host::local();
    host.accel = Accel::Tcg;
    o.hosts = vec![host];
    o.sink = Arc::new(PlainSink);
    let r = build(&common::plan_files(std::slice::from_ref(&file), &cache), &o).unwrap();
    assert_no_domains(run);
    let console =
        std::fs::read_to_string(r.run_dir.join("real_install.console.log")).unwrap_or_default();
    (r, console)
}

fn pipeline(machine: &str, install: &str) -> String {
    format!(
        r#"pipeline "real" {{
    source "netboot.iso"
    disk size="4GiB"
    machine cpus=2 memory="1GiB" {machine}
    {install}
    output format="qcow2"
}}
"#
    )
}

fn assert_read_the_preseed_and_asked_nothing(r: &BuildResult, console: &str) {
    assert!(
        // d-i's newt frontend draws on the same serial line: the marker follows its escapes.
        console.lines().any(|l| l.trim_end().ends_with(MARKER)),
        "d-i did not run the preseed's early_command; console:\n{console}"
    );
    // It stopped because the early_command powered it off, not at a question or a timeout.
    let failures = r.failures();
    assert_eq!(failures.len(), 1, "{failures:#?}");
    assert!(
        failures[0].1.contains("shut off without its success line"),
        "{failures:#?}"
    );
    let install_log = std::fs::read_to_string(r.run_dir.join("real_install.log")).unwrap();
    assert!(
        install_log.contains("debian-installer profile: kernel `install.amd/vmlinuz`, initrd `install.amd/initrd.gz` + the preseed, command line `auto=true priority=critical console=ttyS0,115200n8`"),
        "{install_log}"
    );
}

#[test]
fn real_debian_installer_reads_the_preseed_from_its_initrd_on_bios() {
    let dir = workdir();
    let (r, console) = run(
        dir.path(),
        &pipeline("", r#"install "preseed" file="preseed.cfg" timeout="15m""#),
        &common::run_id("d-i-bios"),
    );
    assert_read_the_preseed_and_asked_nothing(&r, &console);
}

#[test]
fn real_debian_installer_reads_the_preseed_from_its_initrd_on_uefi_q35() {
    let dir = workdir();
    let (r, console) = run(
        dir.path(),
        &pipeline(
            r#"firmware="uefi" type="q35""#,
            r#"install "preseed" file="preseed.cfg" timeout="15m""#,
        ),
        &common::run_id("d-i-uefi"),
    );
    assert_read_the_preseed_and_asked_nothing(&r, &console);
    assert!(
        console.contains("EFI"),
        "the kernel should report booting under EFI; console:\n{console}"
    );
}

#[test]
fn without_the_profile_the_same_iso_waits_at_its_boot_menu() {
    // Method `none` boots the ISO's own boot loader, as a user booting the CD would: Debian's menu
    // has no timeout, so nothing happens until kiln's install timeout.
    let dir = workdir();
    let (r, console) = run(
        dir.path(),
        &pipeline("", r#"install "none" timeout="60s""#),
        &common::run_id("d-i-menu"),
    );
    assert!(!console.contains(MARKER), "{console}");
    let failures = r.failures();
    assert_eq!(failures.len(), 1, "{failures:#?}");
    assert!(
        failures[0].1.contains("timed out") || failures[0].1.contains("printed nothing"),
        "{failures:#?}"
    );
}
