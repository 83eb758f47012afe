//! `kiln check` and `kiln plan` on Windows pipelines whose drivers and installer ISOs are real
//! files built here with xorriso: the virtio-win folders and the Setup languages are read from the
//! ISOs' directory trees, and a missing folder fails with a diagnostic at the `drivers` node.

mod support;

use std::path::Path;
use std::process::Command;

use support::virtio::VIRTIO_DRIVERS;
use support::{mkisofs, transcript};

fn kiln(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("KILN_CACHE_DIR", dir.join("cache"))
        .output()
        .expect("run kiln");
    (out.status.code().unwrap_or(-1), transcript(&out, dir))
}

/// Builds `name` (Joliet + Rock Ridge) from `files` (relative paths; folders are implied).
fn iso(dir: &Path, name: &str, files: &[String]) {
    let root = dir.join(format!("{name}.d"));
    for f in files {
        let p = root.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"x").unwrap();
    }
    mkisofs(&root, "TEST", &dir.join(name));
}

/// virtio-win as Server 2022 amd64 needs it, minus `skip`.
fn virtio_files(skip: &str) -> Vec<String> {
    let mut files = Vec::new();
    for driver in VIRTIO_DRIVERS {
        for os in ["2k19", "2k22"] {
            let dir = format!("{driver}/{os}/amd64");
            if dir != skip {
                files.push(format!("{dir}/{}.inf", driver.to_lowercase()));
            }
        }
    }
    files.push("guest-agent/qemu-ga-x86_64.msi".to_owned());
    files
}

const PIPELINE: &str = r#"pipeline "ws2022-{language}" {
    matrix {
        language "en-US" "de-DE" "fr-FR"
    }
    source "win.iso" checksum="sha256:0000000000000000000000000000000000000000000000000000000000000000"
    drivers "virtio-win.iso" kind="virtio-win" checksum="sha256:1111111111111111111111111111111111111111111111111111111111111111"
    disk size="40GiB"
    install autounattend timeout="2h" {
        version "server-2022"
        image name="Windows Server 2022 SERVERSTANDARD"
        language "{language}"
        admin-password env="KILN_WINDOWS_ADMIN_PASSWORD"
    }
}
"#;

fn setup(skip: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ws2022.kdl"), PIPELINE).unwrap();
    iso(dir.path(), "virtio-win.iso", &virtio_files(skip));
    let win: Vec<String> = ["en-us", "de-de", "fr-fr"]
        .iter()
        .map(|l| format!("sources/{l}/setup.exe.mui"))
        .chain(["sources/install.wim".to_owned()])
        .collect();
    iso(dir.path(), "win.iso", &win);
    dir
}

#[test]
fn check_fails_at_the_drivers_node_when_a_virtio_folder_is_missing() {
    let dir = setup("viostor/2k22/amd64");
    let (code, out) = kiln(dir.path(), &["check", "ws2022.kdl"]);
    assert_eq!(code, 1, "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn plan_fails_the_same_way() {
    let dir = setup("NetKVM/2k22/amd64");
    let (code, out) = kiln(dir.path(), &["plan", "ws2022.kdl"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("ws2022.kdl:6:5"), "{out}");
    assert!(
        out.contains("the drivers iso has no `NetKVM/2k22/amd64`"),
        "{out}"
    );
}

#[test]
fn complete_media_pass_and_the_plan_says_where_languages_come_from() {
    let dir = setup("");
    let (code, out) = kiln(dir.path(), &["check", "ws2022.kdl"]);
    assert_eq!(code, 0, "{out}");
    insta::assert_snapshot!(out);
    let (code, out) = kiln(dir.path(), &["plan", "ws2022.kdl"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(
            "languages from installer ISO `win.iso`: de-DE, en-US, fr-FR; from language packs: none"
        ),
        "{out}"
    );
}

#[test]
fn check_json_carries_the_notes_and_the_located_diagnostic() {
    let dir = setup("vioscsi/2k22/amd64");
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["check", "--format", "json", "ws2022.kdl"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = &doc["diagnostics"][0];
    assert_eq!(d["code"], "missing-driver-folder");
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64()),
        (Some(6), Some(5))
    );
    assert!(
        d["help"].as_str().unwrap().contains("Windows 2k22 amd64"),
        "{d}"
    );
    assert!(
        d["help"].as_str().unwrap().contains("`vioscsi/2k22/amd64`"),
        "{d}"
    );
    assert!(doc["notes"].as_array().is_some_and(|n| !n.is_empty()));
}

/// The installer kernel check (`kiln_plan::installer`): a `preseed` install needs a Debian
/// installer's kernel and initrd on the ISO; given an Ubuntu live ISO it fails at the `install`
/// node, naming what it looked for and what the ISO holds.
#[test]
fn check_fails_at_the_install_node_when_the_iso_is_not_the_methods_installer() {
    let dir = tempfile::tempdir().unwrap();
    iso(
        dir.path(),
        "ubuntu.iso",
        &[
            "casper/vmlinuz".into(),
            "casper/initrd".into(),
            "boot/grub/grub.cfg".into(),
        ],
    );
    std::fs::write(
        dir.path().join("preseed.cfg"),
        "d-i netcfg/get_hostname string x\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("deb.kdl"),
        "pipeline \"deb\" {\n    source \"ubuntu.iso\"\n    disk size=\"4GiB\"\n    install \"preseed\" file=\"preseed.cfg\"\n}\n",
    )
    .unwrap();
    let (code, out) = kiln(dir.path(), &["check", "deb.kdl"]);
    assert_eq!(code, 1, "{out}");
    insta::assert_snapshot!(out);
    // With the right method the same ISO passes.
    std::fs::write(
        dir.path().join("deb.kdl"),
        "pipeline \"deb\" {\n    source \"ubuntu.iso\"\n    disk size=\"4GiB\"\n    install \"autoinstall\" file=\"preseed.cfg\"\n}\n",
    )
    .unwrap();
    let (code, out) = kiln(dir.path(), &["check", "deb.kdl"]);
    assert_eq!(code, 0, "{out}");
}
