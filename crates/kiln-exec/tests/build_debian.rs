//! The Debian fixture through `build` against real libvirt + QEMU (TCG): install from the fixture
//! ISO with a `kiln-install.cfg` answer medium → customize with cloud-init (writes a file the test
//! reads out of the converted image) → boot test → compressed qcow2. One cache serves three builds,
//! so there is one install in the whole test: the second build runs no guest, and a build with a
//! changed customize step reruns customize, boot-test and convert but not the install.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{assert_no_domains, workdir};
use kiln_exec::build::{BuildOptions, BuildResult, MemoDigests, PlainSink, build};
use kiln_exec::scheduler::TaskStatus;
use kiln_exec::{Accel, Host};
use kiln_plan::{Plan, PlanOptions, StepKind, ToolVersions};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds (or finds in its cache) the Debian installer ISO fixture.
fn debian_iso() -> PathBuf {
    let out = Command::new(repo_root().join("fixtures/debian/build.sh"))
        .output()
        .expect("run fixtures/debian/build.sh");
    assert!(
        out.status.success(),
        "fixtures/debian/build.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn pipeline(customized: &str) -> String {
    format!(
        r#"pipeline "deb" {{
    source "installer.iso"
    disk size="2GiB"
    machine cpus=2 memory="1GiB"
    install "kiln-install" file="kiln-install.cfg" timeout="30m"
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

fn plan(file: &Path, cache: &Path) -> Plan {
    let ws = kiln_syntax::load(
        &[file.to_owned()],
        &kiln_syntax::LoadOptions::default(),
        &kiln_syntax::RealFs,
    );
    assert!(ws.is_ok(), "{}", ws.render(false));
    let digests = MemoDigests::new(&kiln_cache::CacheRoot::new(cache));
    let options = PlanOptions {
        tools: ToolVersions::fixed("test"),
        ..PlanOptions::default()
    };
    kiln_plan::plan(&ws.pipelines, &options, &digests).expect("plan")
}

fn run_build(dir: &Path, file: &Path, run: &str) -> BuildResult {
    common::ensure_libvirt();
    let cache = dir.join("cache");
    let mut o = BuildOptions::new(&cache);
    o.run_id = run.to_owned();
    let mut host = Host::local();
    host.accel = Accel::Tcg;
    o.hosts = vec![host];
    o.sink = Arc::new(PlainSink);
    let r = build(&plan(file, &cache), &o).unwrap();
    assert_no_domains(run);
    r
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
    std::os::unix::fs::symlink(debian_iso(), dir.path().join("installer.iso")).unwrap();
    std::fs::write(
        dir.path().join("kiln-install.cfg"),
        "hostname = kiln-test\nswap-size = 0\n",
    )
    .unwrap();
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
}
