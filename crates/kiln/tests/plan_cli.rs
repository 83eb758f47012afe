//! `kiln plan` and `kiln graph` run as the real binary on the corpus in `tests/plan/`: exit code,
//! stdout and stderr snapshotted (qemu-img hidden so keys do not depend on the host), and the
//! cached marking checked against a real kiln-cache artifact store.

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_cache::{ArtifactKey, ArtifactSpec, ArtifactStore, CacheRoot};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs kiln in the repository root with its own cache and without qemu-img.
fn kiln(args: &[&str], cache: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .args(["--color", "never"])
        .current_dir(repo())
        .env("KILN_CACHE_DIR", cache)
        .env("KILN_QEMU_IMG", "/nonexistent/qemu-img")
        .env_remove("XDG_CACHE_HOME")
        .output()
        .expect("kiln runs");
    let clean =
        |b: &[u8]| String::from_utf8_lossy(b).replace(&cache.display().to_string(), "[CACHE]");
    (
        out.status.code().unwrap_or(-1),
        clean(&out.stdout),
        clean(&out.stderr),
    )
}

fn report((code, stdout, stderr): (i32, String, String)) -> String {
    format!("exit: {code}\n----- stdout -----\n{stdout}----- stderr -----\n{stderr}")
}

#[test]
fn plan_lists_steps_of_a_selected_derived_image() {
    let cache = tempfile::tempdir().expect("tmp");
    let out = kiln(
        &["plan", "tests/plan/valid", "--only", "debian-12-web"],
        cache.path(),
    );
    assert_eq!(out.0, 0, "{}", out.2);
    insta::assert_snapshot!(report(out));
}

#[test]
fn plan_reports_a_from_cycle_in_the_file() {
    let cache = tempfile::tempdir().expect("tmp");
    let out = kiln(&["plan", "tests/plan/invalid/from-cycle.kdl"], cache.path());
    assert_eq!(out.0, 1);
    insta::assert_snapshot!(report(out));
}

#[test]
fn plan_reports_conflicting_publish_targets() {
    let cache = tempfile::tempdir().expect("tmp");
    let out = kiln(
        &["plan", "tests/plan/invalid/publish-conflict.kdl"],
        cache.path(),
    );
    assert_eq!(out.0, 1);
    insta::assert_snapshot!(report(out));
}

#[test]
fn graph_renders_mermaid_with_a_cluster_per_pipeline() {
    let cache = tempfile::tempdir().expect("tmp");
    let out = kiln(
        &[
            "graph",
            "tests/plan/valid/debian.kdl",
            "tests/plan/valid/web.kdl",
            "--format",
            "mermaid",
        ],
        cache.path(),
    );
    assert_eq!(out.0, 0, "{}", out.2);
    insta::assert_snapshot!(report(out));
}

fn json_plan(cache: &Path) -> serde_json::Value {
    let (code, stdout, stderr) = kiln(
        &["plan", "tests/plan/valid/debian.kdl", "--format", "json"],
        cache,
    );
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str(&stdout).expect("valid json")
}

/// A step whose key is in the artifact store is shown as cached (issue 4: the cache marks steps).
#[test]
fn plan_marks_steps_the_artifact_store_holds() {
    let cache = tempfile::tempdir().expect("tmp");
    let before = json_plan(cache.path());
    assert_eq!(before["format"], "kiln-plan/1");
    assert_eq!(before["summary"]["cached"], 0);
    let steps = before["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 9);
    let fetch = &steps[0];
    assert_eq!(fetch["id"], "debian-12/fetch-source");
    let key: ArtifactKey = fetch["key"].as_str().expect("key").parse().expect("64 hex");

    let store = ArtifactStore::new(CacheRoot::new(cache.path()));
    store
        .get_or_build(&key, ArtifactSpec::default(), |staging| {
            std::fs::write(staging.path("source"), b"iso bytes")
        })
        .expect("entry written");

    let after = json_plan(cache.path());
    assert_eq!(after["summary"]["cached"], 1);
    let cached: Vec<&str> = after["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["cached"] == true)
        .map(|s| s["id"].as_str().expect("id"))
        .collect();
    assert_eq!(cached, ["debian-12/fetch-source"]);
    let (_, text, _) = kiln(&["plan", "tests/plan/valid/debian.kdl"], cache.path());
    assert!(text.contains("debian-12/fetch-source  [https://deb.example.org/debian-12.8.0-amd64-netinst.iso]  cached\n"), "{text}");
}
