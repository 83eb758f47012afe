//! `just bench-exec`: the tiny install through `run_guest` (libvirt) against a plain
//! `qemu-system-x86_64` run of the same guest, both TCG, side by side; where libvirt's time goes;
//! and 4 tiny guests in parallel against one after another.
//!
//! `run_guest` runs two ways, interleaved in one run: "before" is the runner as it was (a
//! persistent domain, its state polled until libvirt reports it shut off, then destroy +
//! undefine): the same code with lifecycle events and the local QEMU process hidden from it;
//! "after" is what the build uses (a transient domain, woken by lifecycle events, done when the
//! local QEMU process has exited).
//!
//! Repetitions: `KILN_BENCH_REPS` (default 5). Prints a table of medians and the ratios.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kiln_exec::{
    Cancel, DomainState, GuestSpec, Hypervisor, HypervisorError, Persistence, Timings, run_guest,
};

/// libvirt without lifecycle events or the local QEMU process: the runner polls the domain state
/// until libvirt says "shut off", as it did before either existed.
struct Polling<'a>(&'a kiln_exec::Libvirt);

impl Hypervisor for Polling<'_> {
    fn uri(&self) -> &str {
        self.0.uri()
    }
    fn define(&self, xml: &str) -> Result<(), HypervisorError> {
        self.0.define(xml)
    }
    fn create_transient(&self, xml: &str) -> Result<(), HypervisorError> {
        self.0.create_transient(xml)
    }
    fn start(&self, name: &str) -> Result<(), HypervisorError> {
        self.0.start(name)
    }
    fn state(&self, name: &str) -> Result<(DomainState, bool), HypervisorError> {
        self.0.state(name)
    }
    fn destroy(&self, name: &str) -> Result<(), HypervisorError> {
        self.0.destroy(name)
    }
    fn undefine(&self, name: &str) -> Result<(), HypervisorError> {
        self.0.undefine(name)
    }
    fn send_key(&self, name: &str, keycodes: &[u32]) -> Result<(), HypervisorError> {
        self.0.send_key(name, keycodes)
    }
    fn screenshot(&self, name: &str, stem: &Path) -> Result<std::path::PathBuf, HypervisorError> {
        self.0.screenshot(name, stem)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, HypervisorError> {
        self.0.list(prefix)
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// The same guest as `tiny_spec`, started by hand: what QEMU alone costs.
fn plain_qemu(dir: &Path, iso: &Path, i: usize) -> Duration {
    let disk = common::qcow2(dir, &format!("plain{i}.qcow2"));
    let log = dir.join(format!("plain{i}.log"));
    let started = Instant::now();
    let status = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "tcg",
            "-machine",
            "pc",
            "-m",
            "64",
            "-nodefaults",
            "-vga",
            "std",
            "-display",
            "none",
        ])
        .args(["-no-reboot", "-no-user-config", "-boot", "d"])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .arg("-drive")
        .arg(format!(
            "file={},if=virtio,format=qcow2,cache=unsafe",
            disk.display()
        ))
        .arg("-drive")
        .arg(format!(
            "file={},if=ide,media=cdrom,format=raw,readonly=on",
            iso.display()
        ))
        .status()
        .expect("run qemu-system-x86_64");
    let took = started.elapsed();
    assert!(status.success());
    let console = std::fs::read_to_string(&log).unwrap();
    assert!(
        console.contains("KILN-TINY: INSTALL OK count=1"),
        "{console}"
    );
    took
}

fn libvirt_run(hv: &dyn Hypervisor, spec: &GuestSpec) -> (Duration, Timings) {
    let started = Instant::now();
    let outcome = run_guest(hv, spec, &Cancel::new()).expect("tiny install");
    (started.elapsed(), outcome.timings)
}

struct Quiet;

impl kiln_exec::build::Sink for Quiet {
    fn event(&self, _event: &kiln_exec::build::BuildEvent) {}
}

/// A cold `kiln build` (library) of the tiny ISO pipeline: fetch (hash the ISO), create the disk,
/// install, convert; `cache` must not exist yet.
fn kiln_build(dir: &Path, cache: &Path, run: &str) -> Duration {
    let file = dir.join("tiny-pipeline.kdl");
    if !file.exists() {
        std::fs::write(
            &file,
            "pipeline \"tiny\" {\n    source \"tiny.iso\"\n    disk size=\"1GiB\"\n    machine cpus=1 memory=\"256MiB\"\n    install \"none\" timeout=\"120s\"\n    output format=\"qcow2\"\n}\n",
        )
        .unwrap();
    }
    let started = Instant::now();
    let ws = kiln_syntax::load(
        &[file],
        &kiln_syntax::LoadOptions::default(),
        &kiln_syntax::RealFs,
    );
    assert!(ws.is_ok(), "{}", ws.render(false));
    let root = kiln_cache::CacheRoot::new(cache);
    let options = kiln_plan::PlanOptions {
        tools: kiln_plan::ToolVersions::fixed("bench"),
        ..kiln_plan::PlanOptions::default()
    };
    let plan = kiln_plan::plan(
        &ws.pipelines,
        &options,
        &kiln_exec::build::MemoDigests::new(&root),
    )
    .unwrap();
    let mut opts = kiln_exec::build::BuildOptions::new(cache);
    opts.run_id = run.to_owned();
    opts.hosts = vec![kiln_exec::Host {
        uri: kiln_exec::LOCAL_URI.into(),
        accel: kiln_exec::Accel::Tcg,
        capacity: kiln_exec::Capacity {
            guests: 1,
            vcpus: 1,
            memory_mib: 1024,
        },
    }];
    opts.sink = std::sync::Arc::new(Quiet);
    opts.publish = None;
    let r = kiln_exec::build::build(&plan, &opts).unwrap();
    assert_eq!(r.exit_code(), 0, "{:?}", r.failures());
    assert_eq!(r.guests_run, 1);
    started.elapsed()
}

fn ratio(x: Duration, base: Duration) -> String {
    format!(
        "{:.2}x (+{})",
        x.as_secs_f64() / base.as_secs_f64(),
        ms(x.saturating_sub(base))
    )
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let reps: usize = std::env::var("KILN_BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let hv = common::connect();
    let dir = common::workdir();
    let iso = &common::fixtures(dir.path()).tiny;
    let run = common::run_id("bench");

    // Interleaved, so load from other processes hits every variant alike.
    let polling = Polling(&hv);
    let (mut plain, mut before, mut after) = (Vec::new(), Vec::new(), Vec::new());
    let mut builds = Vec::new();
    let (mut before_phases, mut after_phases): (Vec<Timings>, Vec<Timings>) =
        (Vec::new(), Vec::new());
    for i in 0..reps {
        plain.push(plain_qemu(dir.path(), iso, i));
        builds.push(kiln_build(
            dir.path(),
            &dir.path().join(format!("cache{i}")),
            &format!("{run}-build{i}"),
        ));
        for (label, hv, persistence) in [
            (
                "before",
                &polling as &dyn Hypervisor,
                Persistence::Persistent,
            ),
            ("after", &hv as &dyn Hypervisor, Persistence::Transient),
        ] {
            let step = format!("{label}{i}");
            let disk = common::qcow2(dir.path(), &format!("{step}.qcow2"));
            let spec = GuestSpec {
                persistence,
                poll_interval: Duration::from_millis(50),
                ..common::tiny_spec(&run, &step, dir.path(), iso, Some(&disk))
            };
            let (took, timings) = libvirt_run(hv, &spec);
            if label == "before" {
                before.push(took);
                before_phases.push(timings);
            } else {
                after.push(took);
                after_phases.push(timings);
            }
        }
    }

    let par_n = 4;
    let spec_n = |prefix: &str, i: usize| {
        let step = format!("{prefix}{i}");
        let disk = common::qcow2(dir.path(), &format!("{step}.qcow2"));
        GuestSpec {
            persistence: Persistence::Transient,
            ..common::tiny_spec(&run, &step, dir.path(), iso, Some(&disk))
        }
    };
    let seq_specs: Vec<GuestSpec> = (0..par_n).map(|i| spec_n("s", i)).collect();
    let started = Instant::now();
    for spec in &seq_specs {
        libvirt_run(&hv, spec);
    }
    let sequential = started.elapsed();
    let par_specs: Vec<GuestSpec> = (0..par_n).map(|i| spec_n("p", i)).collect();
    let started = Instant::now();
    std::thread::scope(|scope| {
        let handles: Vec<_> = par_specs
            .iter()
            .map(|spec| scope.spawn(|| libvirt_run(&hv, spec)))
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });
    let parallel = started.elapsed();
    common::assert_no_domains(&run);

    let (p, lb, la, kb) = (median(plain), median(before), median(after), median(builds));
    println!("kiln-exec bench: tiny ISO install, TCG, {reps} repetitions, medians");
    println!();
    println!(
        "| run                                              | wall      | vs plain qemu     |"
    );
    println!(
        "|--------------------------------------------------|-----------|-------------------|"
    );
    println!(
        "| plain qemu-system-x86_64                         | {:>9} | 1.00x             |",
        ms(p)
    );
    println!(
        "| run_guest before (persistent, state polling)     | {:>9} | {:17} |",
        ms(lb),
        ratio(lb, p)
    );
    println!(
        "| run_guest after (transient, events, QEMU exit)   | {:>9} | {:17} |",
        ms(la),
        ratio(la, p)
    );
    println!(
        "| kiln build, cold (fetch, disk, install, convert) | {:>9} | {:17} |",
        ms(kb),
        ratio(kb, p)
    );
    println!();
    println!(
        "after / before: {:.2}x ({} saved)",
        la.as_secs_f64() / lb.as_secs_f64(),
        ms(lb.saturating_sub(la))
    );
    println!();
    println!("run_guest phases (median)                  before      after");
    let row = |name: &str, f: fn(&Timings) -> Duration| {
        let b = median(before_phases.iter().map(f).collect());
        let a = median(after_phases.iter().map(f).collect());
        println!("  {name:<40} {:>9} {:>9}", ms(b), ms(a));
    };
    row("define", |t| t.define);
    row("start / create (QEMU up, guest resumed)", |t| t.start);
    row("run (guest running -> done)", |t| t.run);
    row("success line -> done", |t| t.shutdown_lag);
    row("teardown", |t| t.teardown);
    println!();
    println!(
        "{par_n} tiny guests: sequential {}, parallel {}, speed-up {:.2}x",
        ms(sequential),
        ms(parallel),
        sequential.as_secs_f64() / parallel.as_secs_f64()
    );
}
