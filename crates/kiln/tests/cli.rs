//! Runs the real `kiln` binary and snapshots exit code, stdout and stderr (temp paths filtered).

mod support;

use std::path::Path;
use std::process::Command;

use support::{repo, transcript};

fn kiln(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("KILN_VAR_version")
        .output()
        .expect("run kiln");
    transcript(&out, dir)
}

const BROKEN: &str =
    "pipeline \"t-{lang}\" {\n    sorce \"a.iso\"\n    disk sise=\"10GiB\"\n    install none\n}\n";

#[test]
fn check_bundled_pipelines_succeeds() {
    let out = kiln(&repo(), &["check", "pipelines/"]);
    assert!(out.starts_with("exit code: 0\n"), "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn check_broken_file_fails_with_every_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.kdl"), BROKEN).unwrap();
    insta::assert_snapshot!(kiln(dir.path(), &["check", "broken.kdl"]));
}

#[test]
fn check_json_carries_file_line_column_message() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.kdl"), BROKEN).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["check", "--format", "json", "broken.kdl"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["ok"], false);
    let diags = doc["diagnostics"].as_array().unwrap();
    let summary: Vec<(String, u64, u64, String)> = diags
        .iter()
        .map(|d| {
            (
                d["file"].as_str().unwrap().to_string(),
                d["line"].as_u64().unwrap(),
                d["column"].as_u64().unwrap(),
                d["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    insta::assert_debug_snapshot!(summary);
}

#[test]
fn var_overrides_a_default_and_unknown_vars_fail() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("v.kdl"),
        "pipeline \"v-{version}\" {\n    variables {\n        version \"1\"\n    }\n    source \"a.iso\"\n    disk size=\"1GiB\"\n    install none\n}\n",
    )
    .unwrap();
    let ok = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["check", "--format", "json", "--var", "version=2", "v.kdl"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(doc["pipelines"][0]["images"][0], "v-2");
    insta::assert_snapshot!(kiln(dir.path(), &["check", "--var", "verison=2", "v.kdl"]));
}

#[test]
fn fmt_is_idempotent_and_check_fails_on_unformatted_input() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.kdl");
    std::fs::write(
        &file,
        "// keep me\npipeline   \"p\"   {  source \"a.iso\" ;disk   size = \"1GiB\"   // size\n\n\n install none }\n",
    )
    .unwrap();
    let check = kiln(dir.path(), &["fmt", "--check", "p.kdl"]);
    assert!(check.starts_with("exit code: 3\n"), "{check}");
    let first = kiln(dir.path(), &["fmt", "p.kdl"]);
    assert!(first.starts_with("exit code: 0\n"), "{first}");
    let once = std::fs::read_to_string(&file).unwrap();
    kiln(dir.path(), &["fmt", "p.kdl"]);
    let twice = std::fs::read_to_string(&file).unwrap();
    assert_eq!(once, twice);
    assert!(kiln(dir.path(), &["fmt", "--check", "p.kdl"]).starts_with("exit code: 0\n"));
    insta::assert_snapshot!(format!("{check}\n==== formatted ====\n{once}"));
}

#[test]
fn version_and_help_read_well() {
    let dir = tempfile::tempdir().unwrap();
    let version = kiln(dir.path(), &["--version"]);
    assert!(
        version.contains(concat!("kiln ", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    let help = kiln(dir.path(), &["check", "--help"]);
    assert!(help.starts_with("exit code: 0\n"));
    assert!(help.contains("--var <NAME=VALUE>"), "{help}");
    assert!(help.contains("--format <FORMAT>"), "{help}");
}

// A pipeline that includes a file above its project fails `kiln check` at the include, and the
// outside file's text (here a parse error waiting to quote it) is never shown;
// `--allow-outside-project` reads it.
#[test]
fn include_outside_the_project_fails_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    std::fs::create_dir_all(project.join(".git")).unwrap();
    std::fs::create_dir_all(project.join("pipelines")).unwrap();
    std::fs::write(
        project.join("pipelines/a.kdl"),
        "pipeline \"a\" {\n    include \"../../secret.kdl\"\n    source \"a.iso\"\n    disk size=\"1GiB\"\n    install none\n}\n",
    )
    .unwrap();
    std::fs::write(project.join("pipelines/a.iso"), "iso").unwrap();
    std::fs::write(dir.path().join("secret.kdl"), "TOPSECRET=hunter2 {{{\n").unwrap();
    let out = kiln(&project, &["check", "pipelines/"]);
    assert!(out.starts_with("exit code: 1\n"), "{out}");
    assert!(out.contains("a.kdl:2:13"), "{out}");
    assert!(out.contains("is outside the project"), "{out}");
    assert!(out.contains("--allow-outside-project"), "{out}");
    assert!(!out.contains("TOPSECRET"), "{out}");
    let allowed = kiln(
        &project,
        &["check", "--allow-outside-project", "pipelines/"],
    );
    assert!(allowed.starts_with("exit code: 1\n"), "{allowed}");
    assert!(!allowed.contains("outside the project"), "{allowed}");
    assert!(
        allowed.contains("secret.kdl:1:"),
        "the include was read: {allowed}"
    );
}
