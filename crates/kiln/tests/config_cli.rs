//! `kiln build` with a project file: found by walking up from the pipelines, `--config`, and its
//! errors located like pipeline errors (the real binary; nothing reaches libvirt).

use std::path::Path;
use std::process::{Command, Output};

const PIPELINE: &str = "pipeline \"t\" {\n    source \"tiny.iso\"\n    disk size=\"1GiB\"\n    install \"none\"\n    output format=\"qcow2\"\n}\n";

fn kiln(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("run kiln")
}

fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let pipelines = dir.path().join("pipelines");
    std::fs::create_dir(&pipelines).unwrap();
    std::fs::write(pipelines.join("t.kdl"), PIPELINE).unwrap();
    std::fs::write(pipelines.join("tiny.iso"), b"not really an iso").unwrap();
    dir
}

// A broken kiln.kdl one folder above `pipelines/` is found, and every problem is reported with
// file:line:col, a label and help, before anything runs (exit 1).
#[test]
fn broken_project_file_is_found_and_located() {
    let dir = project();
    std::fs::write(
        dir.path().join("kiln.kdl"),
        "host \"qemu:///system\" guests=2\nhost \"qemu:///system\" acel=\"kvm\" memory=\"4gb\"\n",
    )
    .unwrap();
    let cache = dir.path().join("cache");
    let out = kiln(
        dir.path(),
        &["build", "pipelines", "--cache-dir", cache.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for want in [
        "kiln.kdl:2:23",
        "unknown property `acel` of `host`",
        "did you mean `accel`?",
        "kiln.kdl:2:34",
        "unknown size unit `gb`",
        "units are case-sensitive",
    ] {
        assert!(stderr.contains(want), "missing {want:?} in:\n{stderr}");
    }
    assert!(!cache.join("runs").exists(), "a run started: {stderr}");
}

// `--config` names the file; one that cannot be read is an I/O error (exit 4) naming it.
#[test]
fn config_flag_names_the_file() {
    let dir = project();
    let cache = dir.path().join("cache");
    let build = || {
        kiln(
            dir.path(),
            &[
                "build",
                "pipelines",
                "--cache-dir",
                cache.to_str().unwrap(),
                "--config",
                "elsewhere/kiln.kdl",
            ],
        )
    };
    let out = build();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("reading `elsewhere/kiln.kdl`"), "{stderr}");
    std::fs::create_dir(dir.path().join("elsewhere")).unwrap();
    std::fs::write(dir.path().join("elsewhere/kiln.kdl"), "hosts\n").unwrap();
    let out = build();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("unknown node `hosts` in kiln.kdl"),
        "{stderr}"
    );
    assert!(stderr.contains("elsewhere/kiln.kdl:1:1"), "{stderr}");
}

// A kiln.kdl whose host URI would make libvirt run a program stops the build before anything
// connects (exit 1), located with help.
#[test]
fn project_file_with_an_ext_uri_is_refused_before_anything_runs() {
    let dir = project();
    std::fs::write(
        dir.path().join("kiln.kdl"),
        "host \"qemu+ext:///system?command=/tmp/evil\"\n",
    )
    .unwrap();
    let cache = dir.path().join("cache");
    let out = kiln(
        dir.path(),
        &["build", "pipelines", "--cache-dir", cache.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("kiln.kdl:1:6"), "{stderr}");
    assert!(stderr.contains("uses the `ext` transport"), "{stderr}");
    assert!(stderr.contains("help: connect over `unix`"), "{stderr}");
    assert!(!cache.join("runs").exists(), "a run started: {stderr}");
}
