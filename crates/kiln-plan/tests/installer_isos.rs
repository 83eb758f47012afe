//! The installer profiles against ISOs of the real shapes, built with xorriso (the tree of each
//! family's media as osinfo-db and the vendors' docs describe it, with empty files), read back with
//! kiln's own ISO reader: kernel, initrd, command line, where the answer goes, and the error for
//! the wrong ISO.

use std::path::Path;
use std::process::Command;

use kiln_plan::installer::{AnswerPlacement, InstallerProfile};
use kiln_unattend::IsoTree;

/// An ISO holding `files` (with a few bytes each), volume id `volume`, Rock Ridge + Joliet.
fn iso(dir: &Path, volume: &str, files: &[&str]) -> IsoTree {
    let root = dir.join("root");
    for f in files {
        let p = root.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, format!("content of {f}")).unwrap();
    }
    let out = dir.join("shape.iso");
    let st = Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-r", "-J", "-V", volume, "-o"])
        .arg(&out)
        .arg(&root)
        .status()
        .expect("xorriso (scripts/setup-host.sh installs it)");
    assert!(st.success());
    let tree = IsoTree::open(&out).expect("readable ISO");
    assert_eq!(tree.volume_id(), Some(volume));
    // The files kiln boots are read from their extents, byte for byte.
    for f in files {
        assert_eq!(
            tree.read_file(&out, f, 1 << 20).unwrap(),
            format!("content of {f}").into_bytes(),
            "{f}"
        );
    }
    tree
}

#[test]
fn a_debian_cd_boots_install_amd_and_takes_the_preseed_in_its_initrd() {
    let dir = tempfile::tempdir().unwrap();
    let t = iso(
        dir.path(),
        "Debian 12.8.0 amd64 n",
        &[
            "install.amd/vmlinuz",
            "install.amd/initrd.gz",
            "install.amd/gtk/vmlinuz",
            "isolinux/isolinux.cfg",
            ".disk/info",
        ],
    );
    let b = InstallerProfile::DebianInstaller
        .kernel_boot(&t, &[])
        .unwrap()
        .unwrap();
    assert_eq!(
        (b.kernel.as_str(), b.initrd.as_str()),
        ("install.amd/vmlinuz", "install.amd/initrd.gz")
    );
    assert_eq!(
        b.cmdline(),
        "auto=true priority=critical console=ttyS0,115200n8"
    );
    assert_eq!(
        InstallerProfile::DebianInstaller.answer_placement(),
        AnswerPlacement::Initrd {
            name: "preseed.cfg"
        }
    );
}

#[test]
fn an_ubuntu_live_server_iso_boots_casper_with_autoinstall() {
    let dir = tempfile::tempdir().unwrap();
    let t = iso(
        dir.path(),
        "Ubuntu-Server 22.04.4 LTS amd64",
        &[
            "casper/vmlinuz",
            "casper/initrd",
            "boot/grub/grub.cfg",
            "EFI/boot/bootx64.efi",
        ],
    );
    let b = InstallerProfile::Subiquity
        .kernel_boot(&t, &["quiet".into()])
        .unwrap()
        .unwrap();
    assert_eq!(
        (b.kernel.as_str(), b.initrd.as_str()),
        ("casper/vmlinuz", "casper/initrd")
    );
    assert_eq!(
        b.cmdline(),
        "autoinstall ds=nocloud console=ttyS0,115200n8 quiet"
    );
}

#[test]
fn a_rhel_family_dvd_boots_pxeboot_with_stage2_by_its_volume_id() {
    let dir = tempfile::tempdir().unwrap();
    let t = iso(
        dir.path(),
        "Rocky-9-4-x86_64-dvd",
        &[
            "images/pxeboot/vmlinuz",
            "images/pxeboot/initrd.img",
            "isolinux/vmlinuz",
            "isolinux/initrd.img",
            "isolinux/isolinux.cfg",
            "EFI/BOOT/grub.cfg",
        ],
    );
    let b = InstallerProfile::Anaconda
        .kernel_boot(&t, &[])
        .unwrap()
        .unwrap();
    assert_eq!(b.kernel, "images/pxeboot/vmlinuz");
    assert_eq!(
        b.cmdline(),
        "inst.stage2=hd:LABEL=Rocky-9-4-x86_64-dvd inst.ks=hd:LABEL=OEMDRV:/ks.cfg inst.text console=ttyS0,115200n8"
    );
    assert_eq!(
        InstallerProfile::Anaconda.answer_placement(),
        AnswerPlacement::Volume {
            label: "OEMDRV",
            file: "ks.cfg"
        }
    );
}

#[test]
fn a_windows_iso_is_booted_by_its_own_loader_and_its_answer_goes_on_a_medium() {
    let dir = tempfile::tempdir().unwrap();
    let t = iso(
        dir.path(),
        "CCCOMA_X64FRE_EN-US_DV9",
        &[
            "efi/microsoft/boot/efisys.bin",
            "boot/etfsboot.com",
            "sources/boot.wim",
        ],
    );
    assert_eq!(
        InstallerProfile::WindowsSetup.kernel_boot(&t, &[]),
        Ok(None)
    );
    assert!(matches!(
        InstallerProfile::WindowsSetup.answer_placement(),
        AnswerPlacement::Volume {
            file: "autounattend.xml",
            ..
        }
    ));
}

#[test]
fn a_windows_iso_given_to_the_debian_profile_is_refused_naming_its_folders() {
    let dir = tempfile::tempdir().unwrap();
    let t = iso(
        dir.path(),
        "CCCOMA_X64FRE_EN-US_DV9",
        &["efi/microsoft/boot/efisys.bin", "sources/boot.wim"],
    );
    let e = InstallerProfile::DebianInstaller
        .kernel_boot(&t, &[])
        .unwrap_err();
    assert!(
        e.to_string()
            .ends_with("its top-level folders are `efi/`, `sources/`"),
        "{e}"
    );
}
