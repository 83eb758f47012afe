//! The Debian fixture through `build` against real libvirt + QEMU (TCG): install from the fixture
//! ISO through the `debian-installer` profile (a standard preseed, no kiln line in it: kernel
//! boot, the preseed in the initrd) → customize with cloud-init (writes a file the test
//! reads out of the converted image) → boot test → compressed qcow2. One cache serves four builds,
//! so there is one BIOS install in the whole test: the second build runs no guest, a build with a
//! changed customize step reruns customize, boot-test and convert but not the install, and derived
//! images put the installed system on SCSI and IDE disks with virtio and e1000 NICs. The UEFI test
//! (q35 + OVMF + TPM, SATA) has its own install.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::workdir;
use kiln_exec::build::BuildResult;
use kiln_exec::scheduler::TaskStatus;
use kiln_plan::StepKind;

fn pipeline(customized: &str) -> String {
    format!(
        r#"pipeline "deb" {{
    source "installer.iso"
    disk size="2GiB"
    machine cpus=2 memory="1GiB"
    install "preseed" file="preseed.cfg" timeout="30m"
    customize "cloud-init" timeout="30m" {{
        file "/etc/kiln/customized.txt" content="{customized}"
        run "echo ran > /etc/kiln/run.txt"
    }}
    boot-test timeout="30m"
    output format="qcow2" compression="zstd"
}}
"#
    )
}

/// A preseed as a user writes one for Debian 12: standard d-i questions only.
fn preseed(hostname: &str, disk: &str) -> String {
    format!(
        "d-i debian-installer/locale string en_US.UTF-8\n\
         d-i keyboard-configuration/xkb-keymap select us\n\
         d-i netcfg/get_hostname string {hostname}\n\
         d-i netcfg/get_domain string example.org\n\
         d-i passwd/root-password-crypted password !\n\
         d-i passwd/make-user boolean false\n\
         d-i time/zone string Etc/UTC\n\
         d-i partman-auto/disk string {disk}\n\
         d-i partman-auto/method string regular\n\
         d-i partman-auto/choose_recipe select atomic\n\
         d-i partman/confirm boolean true\n\
         d-i grub-installer/bootdev string default\n\
         d-i preseed/late_command string in-target truncate -s 0 /etc/machine-id\n"
    )
}

fn run_build(dir: &Path, file: &Path, run: &str) -> BuildResult {
    common::build_tcg(file, &dir.join("cache"), run)
}

/// The fixture ISO linked as `installer.iso` in `dir`, and a preseed for `hostname` on `disk`.
fn setup(dir: &Path, hostname: &str, disk: &str) {
    std::os::unix::fs::symlink(
        common::fixture("fixtures/debian/build.sh", &[]),
        dir.join("installer.iso"),
    )
    .unwrap();
    std::fs::write(dir.join("preseed.cfg"), preseed(hostname, disk)).unwrap();
}

fn built(r: &BuildResult) -> Vec<StepKind> {
    r.steps
        .iter()
        .filter(|s| matches!(s.status, TaskStatus::Built { .. }))
        .map(|s| s.kind)
        .collect()
}

/// A file's content inside the image's root filesystem (partition 1 at 1 MiB), via debugfs.
fn read_in_image(image: &Path, dir: &Path, path: &str) -> String {
    let raw = dir.join("check.raw");
    let st = Command::new("qemu-img")
        .args(["convert", "-O", "raw"])
        .arg(image)
        .arg(&raw)
        .status()
        .unwrap();
    assert!(st.success());
    let out = Command::new("debugfs")
        .args(["-R", &format!("cat {path}")])
        .arg(format!("{}?offset=1048576", raw.display()))
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&raw);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn debian_install_customize_boot_test_convert_then_cached_then_partial_rebuild() {
    let dir = workdir();
    setup(dir.path(), "kiln-test", "/dev/vda");
    let file = dir.path().join("deb.kdl");
    std::fs::write(&file, pipeline("first")).unwrap();
    let run = common::run_id("deb");

    // 1. Everything runs: three guests.
    let first = run_build(dir.path(), &file, &format!("{run}-1"));
    assert_eq!(first.exit_code(), 0, "{:#?}", first.failures());
    assert_eq!(first.guests_run, 3);
    let image = first.images[0].path.clone().unwrap();
    assert_eq!(
        read_in_image(&image, dir.path(), "/etc/kiln/customized.txt"),
        "first"
    );
    assert_eq!(
        read_in_image(&image, dir.path(), "/etc/kiln/run.txt"),
        "ran\n"
    );
    assert_eq!(
        read_in_image(&image, dir.path(), "/etc/hostname"),
        "kiln-test\n"
    );
    // Generalized: cloud-init's instance state is gone from the image.
    assert_eq!(
        read_in_image(&image, dir.path(), "/var/lib/cloud/instance/boot-finished"),
        ""
    );
    let info = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(&image)
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["format"], "qcow2");
    assert_eq!(info["format-specific"]["data"]["compression-type"], "zstd");
    assert!(
        info.get("backing-filename").is_none(),
        "the image is flattened"
    );

    // 2. Same pipeline again: no guest, fast.
    let t = Instant::now();
    let second = run_build(dir.path(), &file, &format!("{run}-2"));
    let took = t.elapsed();
    assert_eq!(second.exit_code(), 0);
    assert_eq!(second.guests_run, 0);
    assert!(built(&second).is_empty(), "{:?}", built(&second));
    assert_eq!(second.images[0].state, "cached");
    assert!(
        took < Duration::from_secs(10),
        "cached rebuild took {took:?}"
    );

    // 3. Only a customize step changed: customize, boot-test and convert rerun, install does not.
    std::fs::write(&file, pipeline("second")).unwrap();
    let third = run_build(dir.path(), &file, &format!("{run}-3"));
    assert_eq!(third.exit_code(), 0, "{:#?}", third.failures());
    let mut rebuilt = built(&third);
    rebuilt.sort();
    assert_eq!(
        rebuilt,
        vec![
            StepKind::CustomizeSeed,
            StepKind::Customize,
            StepKind::BootTest,
            StepKind::Convert
        ]
    );
    assert_eq!(third.guests_run, 2);
    let image = third.images[0].path.clone().unwrap();
    assert_eq!(
        read_in_image(&image, dir.path(), "/etc/kiln/customized.txt"),
        "second"
    );

    // 4. The same installed system on other buses (SATA is the UEFI test's): derived images
    // customize the parent's disk on their own machine — no install — and record what the guest
    // sees of its disk controller and NIC.
    let mut text = pipeline("second");
    for (name, bus, nic) in [("on-scsi", "scsi", "virtio"), ("on-ide", "ide", "e1000")] {
        text.push_str(&format!(
            r#"pipeline "{name}" {{
    from "deb"
    machine cpus=2 memory="1GiB" disk-bus="{bus}" nic="{nic}"
    customize "cloud-init" timeout="30m" {{
        {DEVICE_FACTS}
    }}
    output format="qcow2"
}}
"#
        ));
    }
    std::fs::write(&file, text).unwrap();
    let fourth = run_build(dir.path(), &file, &format!("{run}-4"));
    assert_eq!(fourth.exit_code(), 0, "{:#?}", fourth.failures());
    assert_eq!(fourth.guests_run, 2, "only the two derived customizes run");
    let facts = |image: &str| {
        let img = fourth
            .images
            .iter()
            .find(|i| i.image == image)
            .and_then(|i| i.path.clone())
            .unwrap_or_else(|| panic!("no image {image}"));
        read_in_image(&img, dir.path(), "/etc/kiln/devices.txt")
    };
    let scsi = facts("on-scsi");
    assert!(
        scsi.contains("disk=") && scsi.contains("/virtio") && scsi.contains("/target"),
        "{scsi}"
    );
    assert!(scsi.contains("nic=virtio_net"), "{scsi}");
    let ide = facts("on-ide");
    assert!(ide.contains("/ata"), "ide disk hangs off libata: {ide}");
    assert!(!ide.contains("/virtio"), "{ide}");
    assert!(ide.contains("nic=e1000"), "{ide}");
}

/// What the customize step records about the machine it ran on, read back from the image: the
/// root disk's sysfs path (which controller it hangs off), the NIC's driver, firmware and TPM.
const DEVICE_FACTS: &str = r#"run "mkdir -p /etc/kiln && ( for b in /sys/block/[sv]d?; do echo disk=$(readlink -f $b); done; for n in /sys/class/net/*/device/driver; do echo nic=$(basename $(readlink -f $n)); done; [ -d /sys/firmware/efi ] && echo firmware=efi || echo firmware=bios; ls /sys/class/tpm 2>/dev/null | sed 's/^/tpm=/' ) > /etc/kiln/devices.txt""#;

/// The whole chain on UEFI: q35 + OVMF + a TPM 2.0 (swtpm), the fixture installs a GPT with an EFI
/// System Partition, customize and the boot test boot it through OVMF; the root disk on SATA.
#[test]
fn uefi_q35_tpm_install_customize_boot_test_convert() {
    let dir = workdir();
    setup(dir.path(), "kiln-uefi", "/dev/sda");
    let file = dir.path().join("uefi.kdl");
    std::fs::write(
        &file,
        format!(
            r#"pipeline "uefi" {{
    source "installer.iso"
    disk size="2GiB"
    machine cpus=2 memory="1GiB" firmware="uefi" type="q35" tpm=#true disk-bus="sata" nic="virtio"
    install "preseed" file="preseed.cfg" timeout="30m"
    customize "cloud-init" timeout="30m" {{
        {DEVICE_FACTS}
    }}
    boot-test timeout="30m"
    output format="qcow2" compression="zstd"
}}
"#
        ),
    )
    .unwrap();
    let r = run_build(dir.path(), &file, &common::run_id("uefi"));
    assert_eq!(r.exit_code(), 0, "{:#?}", r.failures());
    assert_eq!(r.guests_run, 3);
    let install_log =
        std::fs::read_to_string(r.run_dir.join("uefi_install.log")).unwrap_or_default();
    assert!(
        install_log.contains("installed disk: GPT") && install_log.contains("EFI System Partition"),
        "{install_log}"
    );
    let image = r.images[0].path.clone().unwrap();
    let facts = read_in_image(&image, dir.path(), "/etc/kiln/devices.txt");
    assert!(facts.contains("firmware=efi"), "{facts}");
    assert!(facts.contains("tpm=tpm0"), "{facts}");
    assert!(facts.contains("/ata"), "{facts}");
    assert!(facts.contains("nic=virtio_net"), "{facts}");
    assert_eq!(
        read_in_image(&image, dir.path(), "/etc/hostname"),
        "kiln-uefi\n"
    );
}
