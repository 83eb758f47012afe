use super::*;

fn tree(paths: &[&str]) -> IsoTree {
    IsoTree::from_entries(paths.iter().map(|p| (*p, false)))
}

#[test]
fn debian_installer_boots_install_amd_with_auto_and_critical_priority_on_the_serial_console() {
    let t = tree(&[
        "install.amd/vmlinuz",
        "install.amd/initrd.gz",
        "isolinux/isolinux.cfg",
    ]);
    let boot = InstallerProfile::DebianInstaller
        .kernel_boot(&t, &[])
        .expect("debian shape")
        .expect("kernel boot");
    assert_eq!(boot.kernel, "install.amd/vmlinuz");
    assert_eq!(boot.initrd, "install.amd/initrd.gz");
    assert_eq!(
        boot.cmdline(),
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
fn subiquity_boots_casper_with_autoinstall_and_a_cidata_seed() {
    let t = tree(&["casper/vmlinuz", "casper/initrd", "boot/grub/grub.cfg"]);
    let boot = InstallerProfile::Subiquity
        .kernel_boot(&t, &[])
        .expect("ubuntu shape")
        .expect("kernel boot");
    assert_eq!(
        (boot.kernel.as_str(), boot.initrd.as_str()),
        ("casper/vmlinuz", "casper/initrd")
    );
    assert_eq!(
        boot.cmdline(),
        "autoinstall ds=nocloud console=ttyS0,115200n8"
    );
    assert_eq!(
        InstallerProfile::Subiquity.answer_placement(),
        AnswerPlacement::Volume {
            label: "cidata",
            file: "user-data"
        }
    );
}

#[test]
fn anaconda_finds_its_stage2_by_the_iso_volume_id_and_the_kickstart_on_oemdrv() {
    let t = tree(&[
        "images/pxeboot/vmlinuz",
        "images/pxeboot/initrd.img",
        "isolinux/isolinux.cfg",
    ])
    .with_volume_id("Rocky-9-4 x86_64-dvd");
    let boot = InstallerProfile::Anaconda
        .kernel_boot(&t, &[])
        .expect("rhel shape")
        .expect("kernel boot");
    assert_eq!(boot.kernel, "images/pxeboot/vmlinuz");
    assert_eq!(
        boot.cmdline(),
        "inst.stage2=hd:LABEL=Rocky-9-4\\x20x86_64-dvd inst.ks=hd:LABEL=OEMDRV:/ks.cfg inst.text console=ttyS0,115200n8"
    );
    // Without a volume id Anaconda cannot find its install tree.
    let bare = tree(&["images/pxeboot/vmlinuz", "images/pxeboot/initrd.img"]);
    assert_eq!(
        InstallerProfile::Anaconda.kernel_boot(&bare, &[]),
        Err(ProfileError::NoVolumeId)
    );
}

#[test]
fn anaconda_falls_back_to_isolinux_when_there_is_no_pxeboot_folder() {
    let t = tree(&["isolinux/vmlinuz", "isolinux/initrd.img"]).with_volume_id("CentOS-7-x86_64");
    let boot = InstallerProfile::Anaconda
        .kernel_boot(&t, &[])
        .unwrap()
        .unwrap();
    assert_eq!(boot.initrd, "isolinux/initrd.img");
}

#[test]
fn windows_setup_and_none_boot_the_media_not_a_kernel() {
    let t = tree(&["efi/microsoft/boot/efisys.bin", "sources/install.wim"]);
    for p in [InstallerProfile::WindowsSetup, InstallerProfile::None] {
        assert_eq!(p.boot_style(), BootStyle::Media);
        assert_eq!(p.kernel_boot(&t, &["quiet".into()]), Ok(None));
    }
}

#[test]
fn the_wrong_iso_for_a_profile_names_what_was_looked_for_and_what_is_there() {
    // An Ubuntu live ISO given to the Debian profile.
    let t = tree(&["casper/vmlinuz", "casper/initrd", "boot/grub/grub.cfg"]);
    let err = InstallerProfile::DebianInstaller
        .kernel_boot(&t, &[])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no debian-installer kernel and initrd on the ISO: looked for `install.amd/vmlinuz` + \
         `install.amd/initrd.gz`, `install/vmlinuz` + `install/initrd.gz`, \
         `debian-installer/amd64/linux` + `debian-installer/amd64/initrd.gz`; its top-level \
         folders are `boot/`, `casper/`"
    );
}

#[test]
fn kernel_args_replace_a_profile_argument_of_the_same_key_and_add_the_rest_once() {
    let t = tree(&["install.amd/vmlinuz", "install.amd/initrd.gz"]);
    let extra: Vec<String> = [
        "priority=high",
        "console=ttyS1,9600",
        "netcfg/disable_autoconfig=true",
        "quiet",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let boot = InstallerProfile::DebianInstaller
        .kernel_boot(&t, &extra)
        .unwrap()
        .unwrap();
    assert_eq!(
        boot.args,
        [
            "auto=true",
            "priority=high",
            "console=ttyS1,9600",
            "netcfg/disable_autoconfig=true",
            "quiet"
        ]
    );
}

#[test]
fn the_preseed_gains_poweroff_and_a_late_command_that_keeps_the_users_own() {
    let user = "d-i netcfg/get_hostname string web\n\
                d-i preseed/late_command string \\\n    in-target touch /etc/x; \\\n    echo done\n";
    let out = augment_preseed(user);
    assert!(
        out.starts_with(user),
        "the user's lines come first, unchanged"
    );
    assert!(out.contains("d-i debian-installer/exit/poweroff boolean true\n"));
    assert!(
        out.ends_with(
            "d-i preseed/late_command string ( in-target touch /etc/x;     echo done ) && echo KILN-INSTALL-OK > /dev/ttyS0\n"
        ),
        "{out}"
    );
    let none = augment_preseed("d-i netcfg/get_hostname string web");
    assert!(none.ends_with("d-i preseed/late_command string echo KILN-INSTALL-OK > /dev/ttyS0\n"));
    assert!(none.starts_with("d-i netcfg/get_hostname string web\n"));
}

#[test]
fn a_commented_late_command_is_not_the_users_late_command() {
    let out = augment_preseed("#d-i preseed/late_command string rm -rf /target\n");
    assert!(out.ends_with("d-i preseed/late_command string echo KILN-INSTALL-OK > /dev/ttyS0\n"));
}

#[test]
fn the_kickstart_gains_poweroff_and_a_nochroot_post_section_after_the_users() {
    let out = augment_kickstart("text\n%post\necho hi\n%end");
    assert!(out.starts_with("text\n%post\necho hi\n%end\n"));
    assert!(out.ends_with("poweroff\n%post --nochroot\necho KILN-INSTALL-OK > /dev/ttyS0\n%end\n"));
}

#[test]
fn autoinstall_user_data_gains_poweroff_and_a_last_late_command() {
    let user = "#cloud-config\nautoinstall:\n  version: 1\n  identity:\n    hostname: web\n  late-commands:\n    - curtin in-target -- touch /etc/x\n";
    let out = augment_autoinstall(user).expect("valid user-data");
    assert!(out.starts_with("#cloud-config\n"), "{out}");
    let doc = &yaml_rust2::YamlLoader::load_from_str(&out).unwrap()[0];
    let auto = &doc["autoinstall"];
    assert_eq!(auto["shutdown"].as_str(), Some("poweroff"));
    assert_eq!(auto["identity"]["hostname"].as_str(), Some("web"));
    let late: Vec<&str> = auto["late-commands"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(
        late,
        [
            "curtin in-target -- touch /etc/x",
            "echo KILN-INSTALL-OK > /dev/ttyS0"
        ]
    );
    // Not an autoinstall document: left alone.
    assert_eq!(
        InstallerProfile::Subiquity.augment_answer("#cloud-config\nusers: []\n"),
        None
    );
}

#[test]
fn every_install_method_has_a_profile() {
    use kiln_syntax::model::InstallMethod as M;
    let names: Vec<&str> = [
        M::Preseed,
        M::Autoinstall,
        M::Kickstart,
        M::Autounattend,
        M::None,
    ]
    .into_iter()
    .map(|m| InstallerProfile::for_method(m).name())
    .collect();
    assert_eq!(
        names,
        [
            "debian-installer",
            "subiquity",
            "anaconda",
            "windows-setup",
            "none"
        ]
    );
}
