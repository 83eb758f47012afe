//! Windows' UEFI "Press any key to boot from CD or DVD..." against kiln's key presses, on real
//! libvirt + QEMU (TCG) + OVMF. The installer is kiln's Windows-shaped fixture remastered with a
//! UEFI boot image that behaves like Microsoft's `efisys.bin` (`fixtures/windows-prompt`): any key
//! within ~5 s boots the installer, none hands back to the firmware, which finds nothing else.
//!
//! With the `windows-setup` profile's presses (the guest runner's `KeyPresses`) the installer
//! starts; without them it never does. Needs root, libvirtd, OVMF, xorriso and gnu-efi
//! (scripts/setup-host.sh).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{assert_no_domains, workdir};
use kiln_exec::{
    BootFrom, Cancel, Completion, Disk, DiskFormat, DomainSpec, DomainType, Firmware, GuestError,
    GuestSpec, KeyPresses, Machine, OnReboot, Pattern, Persistence, run_guest,
};

/// The Windows-shaped fixture with its UEFI prompt, in quick mode.
fn prompting_installer(dir: &Path) -> PathBuf {
    let debian = common::fixture("fixtures/debian/build.sh", &[]);
    let out = dir.join("windows-prompt.iso");
    common::fixture(
        "fixtures/windows-prompt/remaster.sh",
        &[debian.as_os_str(), out.as_os_str(), "--quick".as_ref()],
    )
}

fn spec(dir: &Path, run: &str, iso: &Path, keys: Option<KeyPresses>) -> GuestSpec {
    let disk = common::qcow2(dir, "disk");
    GuestSpec {
        step: "install".into(),
        domain: DomainSpec {
            name: kiln_exec::domain_name(run, "install"),
            domain_type: DomainType::Qemu,
            machine: Machine::Q35,
            firmware: Firmware::Uefi {
                nvram: dir.join("nvram.fd"),
                secure_boot: false,
            },
            tpm: false,
            vcpus: 2,
            memory_mib: 1024,
            root_disk: Some(Disk {
                path: disk,
                format: DiskFormat::Qcow2,
            }),
            installer_iso: Some(iso.to_owned()),
            drivers_iso: None,
            extra_media: Vec::new(),
            serial_log: dir.join("install.console.log"),
            boot: BootFrom::Cdrom,
            on_reboot: OnReboot::Destroy,
            disk_bus: kiln_exec::DiskBus::Virtio,
            kernel_boot: None,
            nic: None,
        },
        // The installer's first line: Setup started.
        success: Pattern::regex(r"kiln-install: ").unwrap(),
        failure: None,
        completion: Completion::SuccessLine,
        timeout: Duration::from_secs(240),
        inactivity: None,
        persistence: Persistence::Transient,
        poll_interval: Duration::from_millis(200),
        key_presses: keys,
        console_limit: kiln_exec::MAX_CONSOLE_BYTES,
    }
}

/// What the `windows-setup` profile presses on UEFI (crates/kiln-exec/src/runners/install.rs).
const PROFILE_KEYS: KeyPresses = KeyPresses {
    keycode: 57,
    every: Duration::from_secs(1),
    until: Duration::from_secs(120),
};

#[test]
fn key_presses_get_the_installer_past_the_uefi_boot_prompt() {
    common::ensure_libvirt();
    let dir = workdir();
    let iso = prompting_installer(dir.path());
    let run = common::run_id("prompt-keys");
    let hv = common::connect();
    let out = run_guest(
        &hv,
        &spec(dir.path(), &run, &iso, Some(PROFILE_KEYS)),
        &Cancel::new(),
    );
    assert_no_domains(&run);
    let console =
        std::fs::read_to_string(dir.path().join("install.console.log")).unwrap_or_default();
    let out = out.unwrap_or_else(|e| panic!("installer did not start: {e}\n{console}"));
    assert!(
        out.success_line.contains("kiln-install: "),
        "{}",
        out.success_line
    );
    assert!(
        console.contains("Press any key to boot from CD or DVD"),
        "{console}"
    );
}

#[test]
fn without_key_presses_the_uefi_boot_prompt_falls_through() {
    common::ensure_libvirt();
    let dir = workdir();
    let iso = prompting_installer(dir.path());
    let run = common::run_id("prompt-none");
    let hv = common::connect();
    let mut s = spec(dir.path(), &run, &iso, None);
    // The prompt showed 30–57 s after the start at load average 13–18; then 5 s of waiting.
    s.timeout = Duration::from_secs(110);
    let out = run_guest(&hv, &s, &Cancel::new());
    assert_no_domains(&run);
    let console =
        std::fs::read_to_string(dir.path().join("install.console.log")).unwrap_or_default();
    assert!(
        matches!(out, Err(GuestError::Timeout { .. })),
        "the installer must not start without a key: {out:?}\n{console}"
    );
    assert!(
        console.contains("Press any key to boot from CD or DVD"),
        "{console}"
    );
    assert!(!console.contains("kiln-install: "), "{console}");
}
