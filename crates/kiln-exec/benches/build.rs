//! `just bench-exec` (second part): whole builds of the tiny ISO pipeline through
//! `kiln_exec::build` — a no-op rebuild (plan + cache lookups, no guest), a cold single build, and
//! 4 pipelines built in one parallel build against the same 4 built one after another.
//!
//! Repetitions: `KILN_BENCH_REPS` (default 3). Prints medians and the ratios.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_exec::build::{BuildOptions, BuildResult, MemoDigests, Sink, build};
use kiln_exec::{Accel, Capacity, Host};
use kiln_plan::{PlanOptions, ToolVersions};

struct Quiet;

impl Sink for Quiet {
    fn event(&self, _event: &kiln_exec::build::BuildEvent) {}
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// Writes pipeline `name` (a distinct disk size per `n`, so nothing but the fetch is shared).
fn pipeline(dir: &Path, name: &str, n: usize) -> PathBuf {
    let file = dir.join(format!("{name}.kdl"));
    std::fs::write(
        &file,
        format!(
            r#"pipeline "{name}" {{
    source "tiny.iso"
    disk size="{}GiB"
    machine cpus=1 memory="256MiB"
    install "none" timeout="120s"
    output format="qcow2"
}}
"#,
            n + 1
        ),
    )
    .unwrap();
    file
}

/// Plans `files` and builds them into `cache` with `guests` guest slots.
fn run(files: &[PathBuf], cache: &Path, guests: u32, run: &str) -> (BuildResult, Duration) {
    let t = Instant::now();
    let ws = kiln_syntax::load(
        files,
        &kiln_syntax::LoadOptions::default(),
        &kiln_syntax::RealFs,
    );
    assert!(ws.is_ok(), "{}", ws.render(false));
    let root = kiln_cache::CacheRoot::new(cache);
    let options = PlanOptions {
        tools: ToolVersions::fixed("bench"),
        ..PlanOptions::default()
    };
    let plan = kiln_plan::plan(&ws.pipelines, &options, &MemoDigests::new(&root)).unwrap();
    let mut opts = BuildOptions::new(cache);
    opts.run_id = run.to_owned();
    opts.hosts = vec![Host {
        uri: kiln_exec::LOCAL_URI.into(),
        accel: Accel::Tcg,
        capacity: Capacity {
            guests,
            vcpus: guests,
            memory_mib: 256 * u64::from(guests),
        },
    }];
    opts.sink = Arc::new(Quiet);
    opts.poll_interval = Duration::from_millis(20);
    let r = build(&plan, &opts).unwrap();
    assert_eq!(r.exit_code(), 0, "{:?}", r.failures());
    (r, t.elapsed())
}

fn main() {
    let reps: usize = std::env::var("KILN_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    common::ensure_libvirt();
    let dir = common::workdir();
    common::fixtures(dir.path());
    let files: Vec<PathBuf> = (0..4)
        .map(|i| pipeline(dir.path(), &format!("b{i}"), i))
        .collect();
    let id = std::process::id();

    let mut cold = Vec::new();
    let mut noop = Vec::new();
    let mut parallel = Vec::new();
    let mut sequential = Vec::new();
    for rep in 0..reps {
        // Cold single build, then no-op rebuilds of it.
        let cache = dir.path().join(format!("single{rep}"));
        let (r, t) = run(&files[..1], &cache, 1, &format!("bench{id}-c{rep}"));
        assert_eq!(r.guests_run, 1);
        cold.push(t);
        for k in 0..5 {
            let (r, t) = run(&files[..1], &cache, 1, &format!("bench{id}-n{rep}-{k}"));
            assert_eq!(r.guests_run, 0);
            noop.push(t);
        }
        // 4 pipelines in one build with 4 guest slots.
        let cache = dir.path().join(format!("par{rep}"));
        let (r, t) = run(&files, &cache, 4, &format!("bench{id}-p{rep}"));
        assert_eq!(r.guests_run, 4);
        parallel.push(t);
        // The same 4, one build after another.
        let cache = dir.path().join(format!("seq{rep}"));
        let t = Instant::now();
        for (i, f) in files.iter().enumerate() {
            run(
                std::slice::from_ref(f),
                &cache,
                1,
                &format!("bench{id}-s{rep}-{i}"),
            );
        }
        sequential.push(t.elapsed());
        common::assert_no_domains(&format!("bench{id}"));
    }
    let (cold, noop, parallel, sequential) = (
        median(cold),
        median(noop),
        median(parallel),
        median(sequential),
    );
    println!("kiln build, tiny ISO pipeline, TCG, medians of {reps} runs:");
    println!("  cold build (fetch, disk, install, convert): {}", ms(cold));
    println!(
        "  no-op rebuild (load, plan, cache lookups):   {}",
        ms(noop)
    );
    println!(
        "  4 pipelines, one parallel build:            {}",
        ms(parallel)
    );
    println!(
        "  4 pipelines, one build after another:       {}",
        ms(sequential)
    );
    println!(
        "  ratios: cold / no-op = {:.0}x, sequential / parallel = {:.2}x",
        cold.as_secs_f64() / noop.as_secs_f64(),
        sequential.as_secs_f64() / parallel.as_secs_f64()
    );
}
