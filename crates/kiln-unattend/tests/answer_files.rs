//! Snapshot and structure tests of the generated answer files for the issue's three images.

mod common;

use kiln_unattend::{
    SecretSource, render_autounattend, render_cloudbase_conf, render_cloudbase_unattend_conf,
    render_sysprep_unattend,
};

const NS: &str = "urn:schemas-microsoft-com:unattend";
const NS_WCM: &str = "http://schemas.microsoft.com/WMIConfig/2002/State";

#[test]
fn snapshots_of_every_generated_file() {
    for (name, image) in common::all() {
        let xml = render_autounattend(&image, SecretSource::Placeholders).unwrap();
        insta::assert_snapshot!(format!("{name}-autounattend.xml"), xml);
        let conf = render_cloudbase_conf(&image).unwrap().unwrap();
        insta::assert_snapshot!(
            format!("{name}-cloudbase-init.conf"),
            conf.replace("\r\n", "\n")
        );
        let unattend_conf = render_cloudbase_unattend_conf(&image).unwrap().unwrap();
        insta::assert_snapshot!(
            format!("{name}-cloudbase-init-unattend.conf"),
            unattend_conf.replace("\r\n", "\n")
        );
        let sysprep = render_sysprep_unattend(&image).unwrap();
        insta::assert_snapshot!(format!("{name}-sysprep-unattend.xml"), sysprep);
    }
}

/// Every component must carry the attributes Setup matches components by; a wrong token or
/// architecture makes Setup ignore the component silently.
fn check_components(doc: &roxmltree::Document<'_>, arch: &str) {
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "unattend");
    assert_eq!(root.tag_name().namespace(), Some(NS));
    let components: Vec<_> = root
        .descendants()
        .filter(|n| n.has_tag_name((NS, "component")))
        .collect();
    assert!(!components.is_empty());
    for c in components {
        assert_eq!(c.attribute("processorArchitecture"), Some(arch));
        assert_eq!(c.attribute("publicKeyToken"), Some("31bf3856ad364e35"));
        assert_eq!(c.attribute("language"), Some("neutral"));
        assert_eq!(c.attribute("versionScope"), Some("nonSxS"));
        assert!(
            c.attribute("name")
                .unwrap()
                .starts_with("Microsoft-Windows-")
                || c.attribute("name") == Some("Networking-MPSSVC-Svc")
        );
    }
    // Every wcm:action is in the WMIConfig namespace.
    for n in root.descendants().filter(|n| n.is_element()) {
        for a in n.attributes() {
            if a.name() == "action" || a.name() == "keyValue" {
                assert_eq!(a.namespace(), Some(NS_WCM), "{:?}", n.tag_name());
            }
        }
    }
}

fn passes(doc: &roxmltree::Document<'_>) -> Vec<String> {
    doc.root_element()
        .children()
        .filter(|n| n.has_tag_name((NS, "settings")))
        .map(|n| n.attribute("pass").unwrap().to_owned())
        .collect()
}

fn texts<'a>(doc: &'a roxmltree::Document<'_>, tag: &str) -> Vec<&'a str> {
    doc.descendants()
        .filter(|n| n.has_tag_name((NS, tag)))
        .filter_map(|n| n.text())
        .collect()
}

#[test]
fn every_answer_file_parses_with_namespaces_attributes_and_passes() {
    for (name, image) in common::all() {
        let xml = render_autounattend(&image, SecretSource::Placeholders).unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("{name}: {e}"));
        check_components(&doc, "amd64");
        assert_eq!(
            passes(&doc),
            ["windowsPE", "specialize", "oobeSystem"],
            "{name}"
        );

        let sysprep = render_sysprep_unattend(&image).unwrap();
        let doc = roxmltree::Document::parse(&sysprep).unwrap_or_else(|e| panic!("{name}: {e}"));
        check_components(&doc, "amd64");
        assert_eq!(
            passes(&doc),
            ["generalize", "specialize", "oobeSystem"],
            "{name}"
        );
    }
}

#[test]
fn bios_gets_mbr_with_system_reserved_and_uefi_gets_efi_msr_recovery() {
    let bios = render_autounattend(
        &common::server_2022_bios_en_us(),
        SecretSource::Placeholders,
    )
    .unwrap();
    let doc = roxmltree::Document::parse(&bios).unwrap();
    assert_eq!(texts(&doc, "Type"), ["Primary", "Primary"]);
    assert_eq!(texts(&doc, "Label"), ["System Reserved", "Windows"]);
    let modify = doc
        .descendants()
        .find(|n| n.has_tag_name((NS, "ModifyPartitions")))
        .unwrap();
    let active: Vec<_> = modify
        .descendants()
        .filter(|n| n.has_tag_name((NS, "Active")))
        .collect();
    assert_eq!(active.len(), 1, "only System Reserved is active");
    let install_to = doc
        .descendants()
        .find(|n| n.has_tag_name((NS, "InstallTo")))
        .unwrap();
    let part = install_to
        .children()
        .find(|n| n.has_tag_name((NS, "PartitionID")))
        .unwrap();
    assert_eq!(part.text(), Some("2"));

    let uefi = render_autounattend(
        &common::server_2025_uefi_tpm_de_de(),
        SecretSource::Placeholders,
    )
    .unwrap();
    let doc = roxmltree::Document::parse(&uefi).unwrap();
    assert_eq!(texts(&doc, "Type"), ["EFI", "MSR", "Primary", "Primary"]);
    assert_eq!(texts(&doc, "Format"), ["FAT32", "NTFS", "NTFS"]);
    assert_eq!(
        texts(&doc, "TypeID"),
        ["DE94BBA4-06D1-4D40-A16A-BFD50179D6AC"]
    );
    let install_to = doc
        .descendants()
        .find(|n| n.has_tag_name((NS, "InstallTo")))
        .unwrap();
    let part = install_to
        .children()
        .find(|n| n.has_tag_name((NS, "PartitionID")))
        .unwrap();
    // Windows is last so the cloud can extend it.
    assert_eq!(part.text(), Some("4"));
    assert_eq!(texts(&doc, "Key")[0], "/IMAGE/INDEX");
}

#[test]
fn driver_paths_name_the_versions_own_storage_and_network_folders() {
    let xml = render_autounattend(
        &common::server_2025_uefi_tpm_de_de(),
        SecretSource::Placeholders,
    )
    .unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let paths: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name((NS, "PathAndCredentials")))
        .map(|n| {
            let key = n.attribute((NS_WCM, "keyValue")).unwrap().to_owned();
            let path = n
                .children()
                .find(|c| c.has_tag_name((NS, "Path")))
                .unwrap()
                .text()
                .unwrap()
                .to_owned();
            (key, path)
        })
        .collect();
    assert_eq!(
        paths,
        [
            ("1".to_owned(), r"E:\viostor\2k25\amd64".to_owned()),
            ("2".to_owned(), r"E:\vioscsi\2k25\amd64".to_owned()),
            ("3".to_owned(), r"E:\NetKVM\2k25\amd64".to_owned()),
        ]
    );
}

#[test]
fn first_logon_installs_tools_and_cloudbase_init_then_sysprep_last() {
    let xml = render_autounattend(
        &common::server_2022_bios_en_us(),
        SecretSource::Placeholders,
    )
    .unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let commands = texts(&doc, "CommandLine");
    // Setup rejects a CommandLine longer than 1024 characters.
    for c in &commands {
        assert!(
            c.chars().count() <= 1024,
            "{} characters: {c}",
            c.chars().count()
        );
    }
    let pos = |needle: &str| {
        commands
            .iter()
            .position(|c| c.contains(needle))
            .unwrap_or_else(|| panic!("no command with `{needle}`"))
    };
    let ga = pos(r"msiexec /i E:\guest-agent\qemu-ga-x86_64.msi /qn");
    let balloon = pos(r"pnputil /add-driver E:\Balloon\2k22\amd64\*.inf /install");
    let cbi = pos("LOGGINGSERIALPORTNAME=COM1 RUN_SERVICE_AS_LOCAL_SYSTEM=1");
    let user = pos("built by kiln");
    let sysprep = pos(
        r#"sysprep.exe /generalize /oobe /shutdown /unattend:"C:\Program Files\Cloudbase Solutions\Cloudbase-Init\conf\Unattend.xml""#,
    );
    assert!(balloon < ga && ga < cbi && cbi < user && user < sysprep);
    assert_eq!(sysprep, commands.len() - 1);
    assert!(commands[cbi].contains(r#"USERNAME="Admin""#));
    assert!(commands.iter().any(|c| c.contains("protocol=icmpv4:8,any")));
    // Remote Desktop through the firewall by resource id, whatever the language.
    assert_eq!(texts(&doc, "Group"), ["@FirewallAPI.dll,-28752"]);
    assert_eq!(texts(&doc, "fDenyTSConnections"), ["false"]);
}

#[test]
fn arm64_windows_11_uses_arm64_components_and_upper_case_driver_folders() {
    use kiln_unattend::{Arch, Firmware, ImageSelector, SecretRef, WindowsImage, WindowsVersion};
    let image = WindowsImage::new(
        WindowsVersion::Windows11,
        Arch::Arm64,
        ImageSelector::Index(1),
        &common::lang("en-GB"),
        Firmware::Uefi { secure_boot: true },
        SecretRef::new("admin-password").unwrap(),
    );
    assert!(image.validate().is_empty(), "{:?}", image.validate());
    let xml = render_autounattend(&image, SecretSource::Placeholders).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    check_components(&doc, "arm64");
    assert_eq!(texts(&doc, "Path")[0], r"E:\viostor\w11\ARM64");
    let commands = texts(&doc, "CommandLine");
    assert!(
        commands
            .iter()
            .any(|c| c.contains(r"E:\Balloon\w11\ARM64\*.inf"))
    );
    // No guest agent MSI exists for ARM64.
    assert!(!commands.iter().any(|c| c.contains("qemu-ga")));
}

#[test]
fn without_cloudbase_init_sysprep_gets_kilns_own_answer_file() {
    let mut image = common::server_2022_bios_en_us();
    image.cloudbase_init = None;
    let xml = render_autounattend(&image, SecretSource::Placeholders).unwrap();
    assert!(!xml.contains("Cloudbase"), "{xml}");
    assert!(xml.contains(r#"/unattend:"C:\Windows\System32\Sysprep\kiln-unattend.xml""#));
    assert_eq!(render_cloudbase_conf(&image).unwrap(), None);
    let sysprep = render_sysprep_unattend(&image).unwrap();
    let doc = roxmltree::Document::parse(&sysprep).unwrap();
    assert_eq!(passes(&doc), ["generalize", "oobeSystem"]);
}

#[test]
fn invalid_images_are_refused_with_every_problem_named() {
    use kiln_unattend::{ModelError, VirtioDriver};
    let mut image = common::server_2022_bios_en_us();
    image.drivers.post_install.push(VirtioDriver::Qxldod);
    image.time_zone = "UTC".parse().unwrap();
    image.first_logon.push(kiln_unattend::FirstLogonCommand {
        command: "echo a\necho b".into(),
        description: String::new(),
    });
    let errors = image.validate();
    assert!(errors.contains(&ModelError::DriverNotShipped {
        driver: "qxldod".into(),
        version: "2k22".into(),
        arch: "amd64".into()
    }));
    assert!(errors.contains(&ModelError::LineBreak {
        field: "first-logon command"
    }));
    let err = render_autounattend(&image, SecretSource::Placeholders).unwrap_err();
    assert_eq!(
        err.to_string(),
        "virtio-win ships no `qxldod` driver for `2k22` on `amd64`"
    );
}

/// The executor reads progress from the serial console: every kiln step's report must parse back
/// to its own number, and the numbering must be complete.
#[test]
fn every_kiln_step_reports_a_parseable_progress_line() {
    let xml = render_autounattend(
        &common::server_2022_bios_en_us(),
        SecretSource::Placeholders,
    )
    .unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let commands = texts(&doc, "CommandLine");
    let total = commands.len();
    for (i, c) in commands.iter().enumerate() {
        if c.contains("built by kiln") {
            continue; // the pipeline's own command is not wrapped
        }
        let reports: Vec<&str> = c.split(">COM1 echo ").skip(1).collect();
        assert_eq!(reports.len(), 2, "{c}");
        let ok = kiln_unattend::parse_progress(reports[0].split(')').next().unwrap()).unwrap();
        let failed =
            kiln_unattend::parse_progress(reports[1].split(" & shutdown").next().unwrap()).unwrap();
        assert_eq!((ok.step, ok.total, ok.ok), (i + 1, total, true), "{c}");
        assert_eq!((failed.step, failed.ok), (i + 1, false), "{c}");
        assert_eq!(ok.description, failed.description);
    }
}
