//! `kiln build` against real libvirt + QEMU (TCG) with the tiny self-installing ISO: the output
//! disk holds what the installer wrote, a second build runs no guest, a hanging installer hits its
//! timeout with evidence, cancellation leaves nothing behind, two pipelines build in parallel.
//! After every test no `kiln-` domain of the test's run remains.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{assert_no_domains, first_bytes, fixtures, workdir};
use kiln_exec::build::{BuildEvent, BuildOptions, BuildResult, PlainSink, Sink, build};
use kiln_exec::scheduler::TaskStatus;
use kiln_exec::{Accel, Host};
use kiln_plan::StepKind;

/// A pipeline installing `iso` (next to the file) with method `none`, converted to qcow2.
fn tiny_pipeline(name: &str, iso: &str, timeout: &str) -> String {
    format!(
        r#"pipeline "{name}" {{
    source "{iso}"
    disk size="1GiB"
    machine cpus=1 memory="256MiB"
    install "none" timeout="{timeout}"
    output format="qcow2" compression="zstd"
}}
"#
    )
}

fn options(dir: &Path, run: &str) -> BuildOptions {
    common::ensure_libvirt();
    let mut o = BuildOptions::new(dir.join("cache"));
    o.run_id = run.to_owned();
    let mut host = Host::local();
    host.accel = Accel::Tcg;
    o.hosts = vec![host];
    o.sink = Arc::new(PlainSink);
    o.poll_interval = Duration::from_millis(50);
    o
}

fn status_of(r: &BuildResult, kind: StepKind) -> Vec<&TaskStatus> {
    r.steps
        .iter()
        .filter(|s| s.kind == kind)
        .map(|s| &s.status)
        .collect()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn tiny_pipeline_output_holds_what_the_installer_wrote_and_rebuild_runs_no_guest() {
    let dir = workdir();
    fixtures(dir.path());
    let file = write(
        dir.path(),
        "tiny.kdl",
        &tiny_pipeline("tiny", "tiny.iso", "60s"),
    );
    let run = common::run_id("tiny");
    let opts = options(dir.path(), &run);
    let plan = common::plan_files(std::slice::from_ref(&file), &dir.path().join("cache"));

    let first = build(&plan, &opts).unwrap();
    assert_no_domains(&run);
    assert_eq!(first.exit_code(), 0, "{:?}", first.failures());
    assert_eq!(first.guests_run, 1);
    let image = first.images[0].path.clone().expect("image path");
    // The installer wrote `INSTALLED ` + counter 1 to LBA 0; the converted image carries it.
    assert!(
        first_bytes(&image).starts_with("00000000:  49 4e 53 54 41 4c 4c 45 44 20 01 00"),
        "{}",
        first_bytes(&image)
    );
    let row = &first.images[0];
    assert_eq!(row.state, "built");
    assert_eq!(row.md5.as_ref().map(String::len), Some(32));
    assert_eq!(row.sha512.as_ref().map(String::len), Some(128));
    // Every step left a log in the run folder.
    for s in &first.steps {
        assert!(s.log.starts_with(&first.run_dir), "{}", s.log.display());
        assert!(s.log.exists(), "{}", s.log.display());
    }

    // Second build of the same pipeline (planned again): no guest, everything from the cache.
    let t = Instant::now();
    let plan2 = common::plan_files(&[file], &dir.path().join("cache"));
    let mut opts2 = options(dir.path(), &format!("{run}-2"));
    opts2.run_id = format!("{run}-2");
    let second = build(&plan2, &opts2).unwrap();
    let took = t.elapsed();
    assert_eq!(second.exit_code(), 0);
    assert_eq!(second.guests_run, 0);
    assert_eq!(second.images[0].state, "cached");
    assert_eq!(second.images[0].path.as_ref(), Some(&image));
    assert_eq!(second.images[0].sha512, first.images[0].sha512);
    assert_eq!(
        status_of(&second, StepKind::Convert),
        vec![&TaskStatus::Cached]
    );
    assert!(
        took < Duration::from_secs(5),
        "cached rebuild took {took:?}"
    );
    assert_no_domains(&run);
}

#[test]
fn hanging_installer_hits_the_timeout_with_console_and_screenshot() {
    let dir = workdir();
    fixtures(dir.path());
    let file = write(
        dir.path(),
        "hang.kdl",
        &tiny_pipeline("hang", "tiny-hang.iso", "4s"),
    );
    let run = common::run_id("hang");
    let opts = options(dir.path(), &run);
    let plan = common::plan_files(&[file], &dir.path().join("cache"));
    let r = build(&plan, &opts).unwrap();
    assert_no_domains(&run);
    assert_eq!(r.exit_code(), kiln_exec::build::EXIT_FAILED);
    let failures = r.failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    let (step, error) = &failures[0];
    assert_eq!(step, "hang/install");
    assert!(error.contains("step `hang/install`"), "{error}");
    assert!(error.contains("timed out after 4s"), "{error}");
    // The console tail (the hang ISO's banner) and the screenshot path are in the error.
    assert!(error.contains("  | "), "{error}");
    let shot = error
        .lines()
        .find_map(|l| l.strip_prefix("screenshot: `"))
        .and_then(|l| l.strip_suffix('`'))
        .unwrap_or_else(|| panic!("no screenshot in: {error}"));
    assert!(Path::new(shot).exists(), "{shot}");
    // Dependents were skipped, and nothing of the install was committed.
    assert!(matches!(
        status_of(&r, StepKind::Convert)[0],
        TaskStatus::Skipped { .. }
    ));
    let install = r
        .steps
        .iter()
        .find(|s| s.kind == StepKind::Install)
        .unwrap();
    assert!(install.artifact.is_none());
    assert!(
        !dir.path()
            .join("cache/artifacts-v1")
            .join(&install.key)
            .exists()
    );
}

#[test]
fn sigint_mid_install_destroys_the_guest_and_commits_nothing() {
    let dir = workdir();
    fixtures(dir.path());
    let file = write(
        dir.path(),
        "stop.kdl",
        &tiny_pipeline("stop", "tiny-hang.iso", "120s"),
    );
    let run = common::run_id("cancel");
    let opts = options(dir.path(), &run);
    signal_hook::flag::register(signal_hook::consts::SIGINT, opts.cancel.flag()).unwrap();
    let plan = common::plan_files(&[file], &dir.path().join("cache"));
    let watcher = {
        let run = run.clone();
        std::thread::spawn(move || {
            // What the CLI's SIGINT handler does, once the install's domain exists.
            let deadline = Instant::now() + Duration::from_secs(60);
            while common::leftover_domains(&run).is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            std::thread::sleep(Duration::from_millis(500));
            // Ctrl-C: SIGINT to this process, wired to the cancel flag as the CLI wires it.
            let st = std::process::Command::new("kill")
                .args(["-INT", &std::process::id().to_string()])
                .status()
                .unwrap();
            assert!(st.success());
        })
    };
    let r = build(&plan, &opts).unwrap();
    watcher.join().unwrap();
    assert_no_domains(&run);
    assert!(r.cancelled);
    assert_eq!(r.exit_code(), kiln_exec::build::EXIT_CANCELLED);
    let install = r
        .steps
        .iter()
        .find(|s| s.kind == StepKind::Install)
        .unwrap();
    assert_eq!(install.status, TaskStatus::Cancelled);
    assert!(
        !dir.path()
            .join("cache/artifacts-v1")
            .join(&install.key)
            .exists()
    );
    let staging: Vec<_> = std::fs::read_dir(dir.path().join("cache/artifacts-v1"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(".staging-"))
        .collect();
    assert!(staging.is_empty(), "staging left: {staging:?}");
}

/// `a.kdl` and `b.kdl`: tiny images `<prefix>-a` and `<prefix>-b` with different disks, so that
/// nothing but the fetch is shared.
fn two_pipelines(dir: &Path, prefix: &str) -> (PathBuf, PathBuf) {
    let a = write(
        dir,
        "a.kdl",
        &tiny_pipeline(&format!("{prefix}-a"), "tiny.iso", "60s"),
    );
    let b = write(
        dir,
        "b.kdl",
        &tiny_pipeline(&format!("{prefix}-b"), "tiny.iso", "60s").replace("1GiB", "2GiB"),
    );
    (a, b)
}

#[test]
fn two_pipelines_build_in_parallel_on_one_host() {
    let dir = workdir();
    fixtures(dir.path());
    let (a, b) = two_pipelines(dir.path(), "par");
    let run = common::run_id("par");
    let mut opts = options(dir.path(), &run);
    opts.hosts[0].capacity = kiln_exec::Capacity {
        guests: 2,
        vcpus: 2,
        memory_mib: 1024,
    };
    let rec = Arc::new(Recorder::default());
    opts.sink = rec.clone();
    let plan = common::plan_files(&[a, b], &dir.path().join("cache"));
    let r = build(&plan, &opts).unwrap();
    assert_no_domains(&run);
    assert_eq!(r.exit_code(), 0, "{:?}", r.failures());
    assert_eq!(r.guests_run, 2);
    assert_eq!(r.images.len(), 2);
    for row in &r.images {
        let path = row.path.as_ref().unwrap();
        assert!(first_bytes(path).contains("49 4e 53 54 41 4c 4c 45 44 20 01 00"));
    }
    // The shared ISO was fetched once for both.
    assert_eq!(
        r.steps
            .iter()
            .filter(|s| s.kind == StepKind::FetchSource)
            .count(),
        1
    );
    // Both installs ran at the same time: the second started before the first ended.
    let events = rec.0.lock().unwrap();
    let starts = events
        .iter()
        .filter(|e| {
            matches!(
                e,
                BuildEvent::Started {
                    kind: StepKind::Install,
                    ..
                }
            )
        })
        .count();
    let first_install_end = events
        .iter()
        .position(|e| {
            matches!(
                e,
                BuildEvent::Ended {
                    kind: StepKind::Install,
                    ..
                }
            )
        })
        .unwrap();
    let starts_before = events[..first_install_end]
        .iter()
        .filter(|e| {
            matches!(
                e,
                BuildEvent::Started {
                    kind: StepKind::Install,
                    ..
                }
            )
        })
        .count();
    assert_eq!((starts, starts_before), (2, 2), "{events:#?}");
    // Each convert reported its progress, ending with all of the disk's virtual size done.
    for (image, size) in [("par-a", 1u64 << 30), ("par-b", 2 << 30)] {
        let last = events
            .iter()
            .rev()
            .filter_map(|e| match e {
                BuildEvent::Progress {
                    step, done, total, ..
                } if step.starts_with(image) && step.ends_with("convert") => Some((*done, *total)),
                _ => None,
            })
            .next();
        assert_eq!(last, Some((size, Some(size))), "{events:#?}");
    }
}

/// Keeps every event, in order.
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<BuildEvent>>);

impl Sink for Recorder {
    fn event(&self, event: &BuildEvent) {
        self.0.lock().unwrap().push(event.clone());
    }
}

// Two hosts from a project file — two URIs of this machine's daemon, one guest each — share the
// work: each install runs on its own host, both at once. The second URI is not `qemu:///system`,
// so its guest is watched the way a remote one is (no local QEMU process: state until shut off).
#[test]
fn two_hosts_from_a_project_file_each_run_a_guest() {
    let dir = workdir();
    fixtures(dir.path());
    let (a, b) = two_pipelines(dir.path(), "hosts");
    let second = "qemu+unix:///system?socket=/run/libvirt/libvirt-sock";
    let cfg = kiln_exec::parse_config(
        &dir.path().join("kiln.kdl"),
        &format!(
            "host \"qemu:///system\" accel=\"qemu\" guests=1 vcpus=1 memory=\"1GiB\"\nhost \"{second}\" accel=\"qemu\" guests=1 vcpus=1 memory=\"1GiB\"\n"
        ),
    )
    .unwrap();
    let hosts = kiln_exec::resolve_hosts(Some(&cfg), &[], None, |uri: &str| {
        Err(format!("`{uri}` has its capacity in the file"))
    })
    .unwrap();
    assert_eq!(hosts.len(), 2);
    let run = common::run_id("hosts");
    let mut opts = options(dir.path(), &run);
    opts.hosts = hosts;
    let rec = Arc::new(Recorder::default());
    opts.sink = rec.clone();
    let plan = common::plan_files(&[a, b], &dir.path().join("cache"));
    let r = build(&plan, &opts).unwrap();
    assert_no_domains(&run);
    assert_eq!(r.exit_code(), 0, "{:?}", r.failures());
    assert_eq!(r.guests_run, 2);
    for row in &r.images {
        let path = row.path.as_ref().unwrap();
        assert!(first_bytes(path).contains("49 4e 53 54 41 4c 4c 45 44 20 01 00"));
    }
    let events = rec.0.lock().unwrap();
    let install_hosts: std::collections::BTreeSet<&str> = events
        .iter()
        .filter_map(|e| match e {
            BuildEvent::Started {
                kind: StepKind::Install,
                host: Some(h),
                ..
            } => Some(h.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        install_hosts,
        ["qemu:///system", second].into_iter().collect(),
        "{events:#?}"
    );
    let connected = events
        .iter()
        .filter(|e| matches!(e, BuildEvent::Host { .. }))
        .count();
    assert_eq!(connected, 2, "{events:#?}");
}
