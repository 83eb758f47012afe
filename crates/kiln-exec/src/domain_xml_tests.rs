use super::*;

fn install_spec() -> DomainSpec {
    DomainSpec {
        name: "kiln-r1-debian.install".into(),
        domain_type: DomainType::Qemu,
        machine: Machine::Pc,
        firmware: Firmware::Bios,
        tpm: false,
        vcpus: 2,
        memory_mib: 1024,
        root_disk: Some(Disk {
            path: "/var/lib/kiln/run/root.qcow2".into(),
            format: DiskFormat::Qcow2,
        }),
        installer_iso: Some("/var/lib/kiln/base/debian.iso".into()),
        drivers_iso: None,
        extra_media: vec![Media {
            path: "/var/lib/kiln/run/seed.iso".into(),
            kind: MediaKind::Cdrom,
        }],
        serial_log: "/var/lib/kiln/run/console.log".into(),
        boot: BootFrom::Cdrom,
        on_reboot: OnReboot::Destroy,
        disk_bus: DiskBus::Virtio,
        kernel_boot: None,
        nic: None,
    }
}

// The seeds' install layout: vda virtio, installer hda, boot order CD then disk, file serial.
#[test]
fn bios_install_on_pc() {
    insta::assert_snapshot!(domain_xml(&install_spec()).unwrap());
}

// Windows-style: q35, UEFI with Secure Boot, TPM, drivers CD, floppy impossible so USB answer media,
// reboots on purpose, user networking, kvm.
#[test]
fn uefi_tpm_q35_windows_layout() {
    let spec = DomainSpec {
        name: "kiln-r2-win11.install".into(),
        domain_type: DomainType::Kvm,
        machine: Machine::Q35,
        firmware: Firmware::Uefi {
            nvram: "/var/lib/kiln/run/VARS.fd".into(),
            secure_boot: true,
        },
        tpm: true,
        drivers_iso: Some("/var/lib/kiln/base/virtio-win.iso".into()),
        extra_media: vec![Media {
            path: "/var/lib/kiln/run/unattend.img".into(),
            kind: MediaKind::Usb,
        }],
        on_reboot: OnReboot::Restart,
        disk_bus: DiskBus::Virtio,
        kernel_boot: None,
        nic: Some(NicModel::Virtio),
        ..install_spec()
    };
    insta::assert_snapshot!(domain_xml(&spec).unwrap());
}

// Customize / boot test: disk first, no installer, floppy answer media on pc.
#[test]
fn boot_from_disk_with_floppy() {
    let spec = DomainSpec {
        name: "kiln-r3-debian.boot-test".into(),
        installer_iso: None,
        extra_media: vec![Media {
            path: "/tmp/k/a.img".into(),
            kind: MediaKind::Floppy,
        }],
        boot: BootFrom::Disk,
        ..install_spec()
    };
    insta::assert_snapshot!(domain_xml(&spec).unwrap());
}

// q35 has no IDE bus: CD-ROMs must be SATA there, or libvirt refuses the domain.
#[test]
fn q35_cdroms_are_sata() {
    let spec = DomainSpec {
        machine: Machine::Q35,
        drivers_iso: Some("/d.iso".into()),
        ..install_spec()
    };
    let xml = domain_xml(&spec).unwrap();
    assert!(xml.contains("<target dev='sda' bus='sata'/>"), "{xml}");
    assert!(xml.contains("<target dev='sdb' bus='sata'/>"), "{xml}");
    assert!(!xml.contains("bus='ide'"), "{xml}");
}

// Names are how leaked domains are found; paths with quotes must not break the XML.
#[test]
fn rejects_bad_specs() {
    let cases: Vec<(DomainSpec, DomainXmlError)> = vec![
        (
            DomainSpec {
                name: "debian".into(),
                ..install_spec()
            },
            DomainXmlError::BadName("debian".into()),
        ),
        (
            DomainSpec {
                name: "kiln-a b".into(),
                ..install_spec()
            },
            DomainXmlError::BadName("kiln-a b".into()),
        ),
        (
            DomainSpec {
                extra_media: vec![Media {
                    path: "/f.img".into(),
                    kind: MediaKind::Floppy,
                }],
                machine: Machine::Q35,
                ..install_spec()
            },
            DomainXmlError::FloppyOnQ35("/f.img".into()),
        ),
        (
            DomainSpec {
                drivers_iso: Some("/d.iso".into()),
                extra_media: vec![
                    Media {
                        path: "/a.iso".into(),
                        kind: MediaKind::Cdrom,
                    },
                    Media {
                        path: "/b.iso".into(),
                        kind: MediaKind::Cdrom,
                    },
                    Media {
                        path: "/c.iso".into(),
                        kind: MediaKind::Cdrom,
                    },
                ],
                ..install_spec()
            },
            DomainXmlError::TooManyIde(5),
        ),
        (
            DomainSpec {
                installer_iso: None,
                ..install_spec()
            },
            DomainXmlError::NoInstaller,
        ),
        (
            DomainSpec {
                root_disk: None,
                boot: BootFrom::Disk,
                ..install_spec()
            },
            DomainXmlError::NoRootDisk,
        ),
        (
            DomainSpec {
                firmware: Firmware::Uefi {
                    nvram: "/v.fd".into(),
                    secure_boot: true,
                },
                ..install_spec()
            },
            DomainXmlError::SecureBootOnPc,
        ),
        (
            DomainSpec {
                serial_log: "console.log".into(),
                ..install_spec()
            },
            DomainXmlError::BadPath("console.log".into()),
        ),
        (
            DomainSpec {
                vcpus: 0,
                ..install_spec()
            },
            DomainXmlError::TooSmall,
        ),
    ];
    for (spec, want) in cases {
        assert_eq!(domain_xml(&spec), Err(want));
    }
}

#[test]
fn escapes_paths() {
    let spec = DomainSpec {
        serial_log: "/tmp/it's <here>&.log".into(),
        ..install_spec()
    };
    let xml = domain_xml(&spec).unwrap();
    assert!(
        xml.contains("/tmp/it&apos;s &lt;here&gt;&amp;.log"),
        "{xml}"
    );
}
