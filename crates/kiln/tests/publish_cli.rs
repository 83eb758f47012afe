//! `kiln build` / `kiln publish` / `kiln plan` with a publish step, end to end: the real binary,
//! real libvirt + QEMU (TCG) building the tiny self-installing ISO, and a real Keystone + Glance
//! (kiln-glance's harness, `scripts/openstack/start.sh`, shared with kiln-glance's tests).

#[allow(dead_code, reason = "the harness serves several test binaries")]
#[path = "../../kiln-glance/tests/common/mod.rs"]
mod openstack;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use kiln_glance::Glance;
use openstack::{OpenStack, unique};
use support::{libvirt_tempdir, repo, walk};

const CLOUD: &str = "kiln-alpha";

/// A folder libvirt's QEMU user can enter, with the tiny fixtures built into it.
fn workdir() -> tempfile::TempDir {
    let dir = libvirt_tempdir("kiln-publish-test-");
    let st = Command::new(repo().join("fixtures/tiny/build.sh"))
        .arg(dir.path())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "fixtures/tiny/build.sh failed");
    dir
}

/// The tiny ISO installed, converted to `format` and published as `name` with properties.
fn pipeline(dir: &Path, name: &str, format: &str) -> PathBuf {
    let compression = if format == "qcow2" { "zstd" } else { "none" };
    let text = format!(
        r#"pipeline "{name}" {{
    source "tiny.iso"
    disk size="1GiB"
    machine cpus=1 memory="256MiB"
    install "none" timeout="180s"
    output format="{format}" compression="{compression}"
    publish glance name="{name}" min-disk="1GiB" min-ram="256MiB" {{
        property os_type="linux" kiln_test="publish"
        tag "kiln" "tiny"
    }}
}}
"#
    );
    let path = dir.join(format!("{name}.kdl"));
    std::fs::write(&path, text).unwrap();
    path
}

fn kiln(os: &OpenStack, dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
    cmd.args(args)
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .current_dir(dir)
        .env_remove("OS_CLOUD")
        .envs(os.sources().env)
        .stdin(Stdio::null());
    cmd
}

fn run(mut cmd: Command) -> Output {
    let out = cmd.output().unwrap();
    eprintln!(
        "--- {:?}\n{}\n{}",
        cmd.get_args().collect::<Vec<_>>(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `kiln <args> --os-cloud kiln-alpha`, run.
fn on_cloud(os: &OpenStack, dir: &Path, args: &[&str]) -> Output {
    let mut cmd = kiln(os, dir, args);
    cmd.args(["--os-cloud", CLOUD]);
    run(cmd)
}

/// The `summary` object of a `--json` run.
fn summary(out: &Output) -> serde_json::Value {
    support::summary(&out.stdout)
}

fn cleanup(glance: &Glance, name: &str) {
    for image in openstack::images_named(glance, name) {
        glance.delete(&image.id).unwrap();
    }
}

#[test]
fn tiny_image_is_built_and_published_then_reused_by_build_and_publish() {
    let os = openstack::openstack();
    let glance = os.glance(CLOUD);
    let dir = workdir();
    let name = unique("tiny-publish");
    let file = pipeline(dir.path(), &name, "qcow2");
    let file_arg = file.to_str().unwrap();

    let first = on_cloud(
        &os,
        dir.path(),
        &["build", file_arg, "--json", "--accel", "tcg"],
    );
    assert_eq!(first.status.code(), Some(0));
    let s = summary(&first);
    let published = &s["published"][0];
    assert_eq!(published["action"], "created", "{s}");
    assert_eq!(published["name"], name.as_str());
    let id = published["id"].as_str().unwrap().to_owned();
    // The events carry it too.
    assert!(
        String::from_utf8_lossy(&first.stdout).contains(r#""event":"published""#),
        "no published event"
    );
    // Glance holds exactly what kiln built: the converted file's md5 and sha512.
    let image_path = PathBuf::from(s["images"][0]["path"].as_str().unwrap());
    // The upload reported its progress up to the file's size.
    let len = std::fs::metadata(&image_path).unwrap().len();
    let last_publish_progress = String::from_utf8_lossy(&first.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .rfind(|e| {
            e["event"] == "progress" && e["step"].as_str().is_some_and(|s| s.contains("publish"))
        })
        .unwrap_or_else(|| panic!("no publish progress event"));
    assert_eq!(
        last_publish_progress["done"], len,
        "{last_publish_progress}"
    );
    assert_eq!(
        last_publish_progress["total"], len,
        "{last_publish_progress}"
    );
    let image = glance.get(&id).unwrap();
    assert_eq!(image.status, "active");
    assert_eq!(
        image.checksum.as_deref(),
        Some(openstack::coreutils_digest("md5sum", &image_path).as_str())
    );
    assert_eq!(
        image.os_hash_value.as_deref(),
        Some(openstack::coreutils_digest("sha512sum", &image_path).as_str())
    );
    assert_eq!(image.disk_format.as_deref(), Some("qcow2"));
    assert_eq!(image.visibility.as_deref(), Some("private"));
    assert_eq!((image.min_disk, image.min_ram), (Some(1), Some(256)));
    assert_eq!(image.properties()["os_type"], "linux");
    assert_eq!(image.properties()["kiln_test"], "publish");
    let mut tags = image.tags.clone();
    tags.sort();
    assert_eq!(tags, ["kiln", "tiny"]);

    // `kiln plan --os-cloud` says the publish would reuse it; keys do not depend on the cloud.
    let plan_with = on_cloud(&os, dir.path(), &["plan", file_arg, "--format", "json"]);
    assert_eq!(plan_with.status.code(), Some(0));
    let with: serde_json::Value = serde_json::from_slice(&plan_with.stdout).unwrap();
    assert_eq!(with["publish"][0]["would"], "reuse", "{with}");
    assert_eq!(with["publish"][0]["id"], id.as_str());
    let plan_without = run({
        let mut c = kiln(&os, dir.path(), &["plan", file_arg, "--format", "json"]);
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .env("OS_AUTH_URL", "http://127.0.0.1:9/v3")
            .env("OS_PASSWORD", "something-else");
        c
    });
    assert_eq!(plan_without.status.code(), Some(0));
    let without: serde_json::Value = serde_json::from_slice(&plan_without.stdout).unwrap();
    assert!(without.get("publish").is_none());
    assert_eq!(
        with["steps"], without["steps"],
        "keys changed with credentials"
    );
    let text = on_cloud(&os, dir.path(), &["plan", file_arg]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!(
            "`{name}` on cloud `{CLOUD}`: would reuse image {id}"
        )),
        "{text}"
    );

    // A second build runs no guest and reuses the image: still exactly one.
    let second = on_cloud(&os, dir.path(), &["build", file_arg, "--json"]);
    assert_eq!(second.status.code(), Some(0));
    let s2 = summary(&second);
    assert_eq!(s2["published"][0]["action"], "reused", "{s2}");
    assert_eq!(s2["published"][0]["id"], id.as_str());
    assert_eq!(s2["images"][0]["state"], "cached");
    let images = openstack::images_named(&glance, &name);
    assert_eq!(images.len(), 1, "{images:?}");

    // `kiln publish` from the cache reuses it too; `--force` uploads a second copy.
    let again = on_cloud(&os, dir.path(), &["publish", file_arg]);
    assert_eq!(again.status.code(), Some(0));
    let again_text = String::from_utf8_lossy(&again.stdout);
    assert!(again_text.contains("reused"), "{again_text}");
    assert!(again_text.contains(&id), "{again_text}");
    let forced = on_cloud(&os, dir.path(), &["publish", file_arg, "--force", "--json"]);
    assert_eq!(forced.status.code(), Some(0));
    let s3 = summary(&forced);
    assert_eq!(s3["published"][0]["action"], "created");
    assert_ne!(s3["published"][0]["id"], id.as_str());
    assert_eq!(openstack::images_named(&glance, &name).len(), 2);
    cleanup(&glance, &name);

    // A cloud that forbids `PUT …/file` (the harness's project gamma): `--upload-method put` fails
    // with Glance's 403 and leaves no image; the default, `auto`, switches to the glance-direct
    // import, and Glance's record matches the cache's digests.
    let gamma = os.glance("kiln-gamma");
    let on_gamma = |args: &[&str]| {
        run({
            let mut c = kiln(&os, dir.path(), args);
            c.args(["--os-cloud", "kiln-gamma"]);
            c
        })
    };
    let refused = on_gamma(&["publish", file_arg, "--upload-method", "put"]);
    assert_ne!(refused.status.code(), Some(0));
    let refused_text = String::from_utf8_lossy(&refused.stdout).into_owned()
        + &String::from_utf8_lossy(&refused.stderr);
    assert!(refused_text.contains("answered 403"), "{refused_text}");
    assert!(openstack::images_named(&gamma, &name).is_empty());
    let imported = on_gamma(&["publish", file_arg, "--json"]);
    assert_eq!(imported.status.code(), Some(0));
    let s4 = summary(&imported);
    assert_eq!(s4["published"][0]["action"], "created", "{s4}");
    let image = gamma
        .get(s4["published"][0]["id"].as_str().unwrap())
        .unwrap();
    assert_eq!(image.status, "active");
    assert_eq!(
        image.os_hash_value.as_deref(),
        Some(openstack::coreutils_digest("sha512sum", &image_path).as_str())
    );
    assert_eq!(openstack::images_named(&gamma, &name).len(), 1);
    cleanup(&gamma, &name);
}

#[test]
fn publish_without_a_cloud_fails_before_any_guest_and_no_publish_skips_it() {
    let os = openstack::openstack();
    let dir = workdir();
    let name = unique("no-cloud");
    let file = pipeline(dir.path(), &name, "qcow2");
    let file_arg = file.to_str().unwrap();
    let run_dir = dir.path().join("cache/runs");

    let t = Instant::now();
    let out = run({
        let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
        c.args(["build", file_arg, "--cache-dir"])
            .arg(dir.path().join("cache"))
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .env("HOME", dir.path());
        c
    });
    assert_eq!(out.status.code(), Some(7));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach its cloud"), "{err}");
    assert!(err.contains("no cloud selected"), "{err}");
    assert!(err.contains("--no-publish"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(20));
    // No step ran: no step log in any run folder.
    let logs = logs_in(&run_dir);
    assert!(logs.is_empty(), "{logs:?}");

    // `kiln publish` of an image that is not built: a clear error, nothing uploaded.
    let out = on_cloud(&os, dir.path(), &["publish", file_arg]);
    assert_eq!(out.status.code(), Some(8));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not built"), "{err}");
    assert!(err.contains(&name), "{err}");
    assert!(openstack::images_named(&os.glance(CLOUD), &name).is_empty());

    // A wrong password is refused before any guest too, naming the cloud.
    let secure = dir.path().join("wrong-secure.yaml");
    std::fs::write(
        &secure,
        "clouds:\n  kiln-alpha:\n    auth:\n      password: not-the-password\n",
    )
    .unwrap();
    let out = run({
        let mut c = kiln(&os, dir.path(), &["build", file_arg]);
        c.args(["--os-cloud", CLOUD])
            .env("OS_CLIENT_SECURE_FILE", &secure);
        c
    });
    assert_eq!(out.status.code(), Some(7));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cloud `kiln-alpha`"), "{err}");
    assert!(
        !err.contains("not-the-password"),
        "a secret was printed: {err}"
    );
    assert!(logs_in(&run_dir).is_empty());

    // `--no-publish` builds without any cloud.
    let out = run({
        let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
        c.args([
            "build",
            file_arg,
            "--no-publish",
            "--accel",
            "tcg",
            "--json",
            "--cache-dir",
        ])
        .arg(dir.path().join("cache"))
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("HOME", dir.path());
        c
    });
    assert_eq!(out.status.code(), Some(0));
    let s = summary(&out);
    assert_eq!(s["images"][0]["state"], "built");
    assert_eq!(s["published"], serde_json::json!([]));
    assert!(
        !s["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|st| st["kind"] == "publish")
    );
}

/// Step logs under `dir` (a run folder per run).
fn logs_in(dir: &Path) -> Vec<PathBuf> {
    walk(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect()
}

#[test]
fn ctrl_c_during_publish_deletes_the_image_and_after_sigkill_a_rerun_leaves_exactly_one() {
    let os = openstack::openstack();
    let glance = os.glance(CLOUD);
    let dir = workdir();
    let name = unique("killed");
    // A raw 1 GiB image: an upload long enough to be killed in the middle.
    let file = pipeline(dir.path(), &name, "raw");
    let file_arg = file.to_str().unwrap();

    let built = run(kiln(
        &os,
        dir.path(),
        &["build", file_arg, "--no-publish", "--accel", "tcg"],
    ));
    assert_eq!(built.status.code(), Some(0));

    // Ctrl-C (SIGINT) in the middle of the upload: the half-made image is deleted, status 130.
    let mut child = kiln(&os, dir.path(), &["build", file_arg, "--json"])
        .args(["--os-cloud", CLOUD])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_half_made(&glance, &name, &mut child);
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let left = openstack::images_named(&glance, &name);
    assert!(left.is_empty(), "Ctrl-C left images behind: {left:?}");

    // SIGKILL in the middle of the upload: nothing can clean up; the rerun does.
    let mut child = kiln(&os, dir.path(), &["build", file_arg, "--json"])
        .args(["--os-cloud", CLOUD])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_half_made(&glance, &name, &mut child);
    child.kill().unwrap();
    child.wait().unwrap();
    let left = openstack::images_named(&glance, &name);
    assert!(
        left.iter().any(|i| i.status != "active"),
        "the kill came too late to test anything: {left:?}"
    );

    let rerun = on_cloud(&os, dir.path(), &["build", file_arg, "--json"]);
    assert_eq!(rerun.status.code(), Some(0));
    let s = summary(&rerun);
    assert_eq!(s["published"][0]["action"], "created");
    assert_eq!(
        s["published"][0]["removed_stale"].as_array().map(Vec::len),
        Some(1),
        "{s}"
    );
    let images = openstack::images_named(&glance, &name);
    assert_eq!(images.len(), 1, "{images:?}");
    assert_eq!(images[0].status, "active");
    assert_eq!(images[0].size, Some(1 << 30));
    cleanup(&glance, &name);
}

/// Waits until Glance holds a half-made image named `name` (an upload is under way).
fn wait_for_half_made(glance: &Glance, name: &str, child: &mut std::process::Child) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let images = openstack::images_named(glance, name);
        if images
            .iter()
            .any(|i| matches!(i.status.as_str(), "queued" | "saving"))
        {
            std::thread::sleep(Duration::from_millis(300));
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "kiln ended before the upload could be killed: {images:?}"
        );
        assert!(Instant::now() < deadline, "the upload never started");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Uploads `path` to Glance as an `iso` image named `name`; its id.
fn upload_iso(glance: &Glance, path: &Path, name: &str) -> String {
    let req = kiln_glance::PublishRequest {
        path,
        spec: kiln_glance::ImageSpec::new(name, "iso"),
        known: None,
        force: true,
        name_policy: kiln_glance::NamePolicy::SameName,
        method: kiln_glance::UploadMethod::Auto,
        cancel: kiln_glance::Cancel::new(),
        progress: None,
    };
    kiln_glance::publish(glance, &req).unwrap().image.id
}

fn glance_source_pipeline(dir: &Path, name: &str, source: &str) -> PathBuf {
    let text = format!(
        r#"pipeline "{name}" {{
    source "glance:{source}"
    disk size="1GiB"
    machine cpus=1 memory="256MiB"
    install "none" timeout="180s"
    output format="qcow2"
}}
"#
    );
    let path = dir.join(format!("{name}.kdl"));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_glance_image_source_lands_verified_in_base_and_a_corrupt_one_leaves_nothing() {
    let os = openstack::openstack();
    let glance = os.glance(CLOUD);
    let dir = workdir();
    let iso = dir.path().join("tiny.iso");
    let name = unique("source");
    let id = upload_iso(&glance, &iso, &name);
    let base = dir.path().join("cache/_base");

    // By name: resolved to the one active image, fetched into `_base/sha1(<id>)`, installed from.
    let file = glance_source_pipeline(dir.path(), &format!("{name}-by-name"), &name);
    let out = on_cloud(
        &os,
        dir.path(),
        &["build", file.to_str().unwrap(), "--json", "--accel", "tcg"],
    );
    assert_eq!(out.status.code(), Some(0));
    let entry = base.join(kiln_cache::source::base_name(&id));
    assert!(entry.is_file(), "no {}", entry.display());
    assert_eq!(
        openstack::coreutils_digest("sha512sum", &entry),
        openstack::coreutils_digest("sha512sum", &iso)
    );
    assert_eq!(summary(&out)["images"][0]["state"], "built");

    // A second image whose stored bytes were changed behind Glance's back: the download no
    // longer matches Glance's checksum / os_hash_value, the step fails, `_base` keeps nothing.
    let bad_name = unique("corrupt");
    let bad = upload_iso(&glance, &iso, &bad_name);
    let stored = os.state.join("glance/images").join(&bad);
    let mut bytes = std::fs::read(&stored).unwrap();
    bytes[40_000] ^= 0xff;
    std::fs::write(&stored, bytes).unwrap();
    let file = glance_source_pipeline(dir.path(), &bad_name, &bad);
    let out = on_cloud(
        &os,
        dir.path(),
        &["build", file.to_str().unwrap(), "--accel", "tcg"],
    );
    assert_eq!(out.status.code(), Some(6));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "mismatch for the download of glance image `{bad}`"
        )),
        "{err}"
    );
    assert!(!base.join(kiln_cache::source::base_name(&bad)).exists());
    let leftovers: Vec<_> = std::fs::read_dir(&base)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".part") || n.contains(".kiln-download-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    glance.delete(&id).unwrap();
    glance.delete(&bad).unwrap();
}
