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
//!
//! Secure Boot: the same CD's UEFI boot (Microsoft-signed shim → Debian-signed GRUB → Debian-signed
//! kernel) under OVMF with Microsoft's keys enrolled, as kiln's domain XML asks for it, with a TPM.

mod common;

use std::path::Path;

use common::{assert_no_domains, workdir};
use kiln_exec::build::BuildResult;

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
    let r = common::build_tcg(&file, &dir.join("cache"), run);
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

/// kiln's Secure Boot machine is real Secure Boot: OVMF with Microsoft's keys enrolled
/// (`enrolled-keys`, Debian's `OVMF_VARS_4M.ms.fd`) verifies and starts Debian's Microsoft-signed
/// shim from the CD, shim verifies and starts Debian's signed GRUB ("Welcome to GRUB!"), and GRUB,
/// which now runs locked down, refuses to load the unsigned modules the CD's `grub.cfg` asks for:
/// "prohibited by secure boot policy" — a line GRUB prints only when the firmware enforces Secure
/// Boot. (A firmware without enrolled keys starts the same chain without enforcing anything.)
#[test]
fn secure_boot_with_microsofts_keys_runs_debians_signed_chain_locked_down() {
    use kiln_exec::{
        BootFrom, Cancel, Completion, Disk, DiskFormat, DomainSpec, DomainType, Firmware,
        GuestSpec, Machine, OnReboot, Pattern, Persistence, run_guest,
    };
    use std::time::Duration;
    common::ensure_libvirt();
    let dir = workdir();
    let run = common::run_id("d-i-secure-boot");
    let spec = GuestSpec {
        step: "secure-boot".into(),
        domain: DomainSpec {
            name: kiln_exec::domain_name(&run, "secure-boot"),
            domain_type: DomainType::Qemu,
            machine: Machine::Q35,
            firmware: Firmware::Uefi {
                nvram: dir.path().join("nvram.fd"),
                secure_boot: true,
            },
            tpm: true,
            vcpus: 2,
            memory_mib: 1024,
            root_disk: Some(Disk {
                path: common::qcow2(dir.path(), "disk"),
                format: DiskFormat::Qcow2,
            }),
            installer_iso: Some(common::fixture("fixtures/debian-netboot/build.sh", &[])),
            drivers_iso: None,
            extra_media: Vec::new(),
            serial_log: dir.path().join("secure-boot.console.log"),
            boot: BootFrom::Cdrom,
            on_reboot: OnReboot::Destroy,
            disk_bus: kiln_exec::DiskBus::Virtio,
            kernel_boot: None,
            nic: None,
        },
        success: Pattern::regex(r"prohibited by secure boot policy").unwrap(),
        failure: None,
        completion: Completion::SuccessLine,
        timeout: Duration::from_secs(240),
        inactivity: None,
        persistence: Persistence::Transient,
        poll_interval: Duration::from_millis(200),
        key_presses: None,
        console_limit: kiln_exec::MAX_CONSOLE_BYTES,
    };
    let hv = common::connect();
    let out = run_guest(&hv, &spec, &Cancel::new());
    assert_no_domains(&run);
    let console =
        std::fs::read_to_string(dir.path().join("secure-boot.console.log")).unwrap_or_default();
    out.unwrap_or_else(|e| panic!("no locked-down GRUB: {e}\n{console}"));
    let welcome = console.find("Welcome to GRUB!").expect("shim started GRUB");
    let refused = console.find("prohibited by secure boot policy").unwrap();
    assert!(welcome < refused, "{console}");
}
