//! `just bench-exec`: the tiny install through `run_guest` (libvirt) against a plain
//! `qemu-system-x86_64` run of the same guest, both TCG, side by side; where libvirt's time goes;
//! and 4 tiny guests in parallel against one after another.
//!
//! Repetitions: `KILN_BENCH_REPS` (default 5). Prints a table of medians and the ratios.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kiln_exec::{Cancel, GuestSpec, Persistence, Timings, run_guest};

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

fn libvirt_run(hv: &kiln_exec::Libvirt, spec: &GuestSpec) -> (Duration, Timings) {
    let started = Instant::now();
    let outcome = run_guest(hv, spec, &Cancel::new()).expect("tiny install");
    (started.elapsed(), outcome.timings)
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
    let (mut plain, mut persistent, mut transient) = (Vec::new(), Vec::new(), Vec::new());
    let mut phases: Vec<Timings> = Vec::new();
    for i in 0..reps {
        plain.push(plain_qemu(dir.path(), iso, i));
        for persistence in [Persistence::Persistent, Persistence::Transient] {
            let step = format!("{persistence:?}{i}");
            let disk = common::qcow2(dir.path(), &format!("{step}.qcow2"));
            let spec = GuestSpec {
                persistence,
                ..common::tiny_spec(&run, &step, dir.path(), iso, Some(&disk))
            };
            let (took, timings) = libvirt_run(&hv, &spec);
            if persistence == Persistence::Persistent {
                persistent.push(took);
                phases.push(timings);
            } else {
                transient.push(took);
            }
        }
    }

    let par_n = 4;
    let spec_n = |prefix: &str, i: usize| {
        let step = format!("{prefix}{i}");
        let disk = common::qcow2(dir.path(), &format!("{step}.qcow2"));
        common::tiny_spec(&run, &step, dir.path(), iso, Some(&disk))
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

    let pick = |f: fn(&Timings) -> Duration| median(phases.iter().map(f).collect());
    let (p, lp, lt) = (median(plain), median(persistent), median(transient));
    println!("kiln-exec bench: tiny ISO install, TCG, {reps} repetitions, medians");
    println!();
    println!("| run                                  | wall      | vs plain qemu     |");
    println!("|--------------------------------------|-----------|-------------------|");
    println!(
        "| plain qemu-system-x86_64             | {:>9} | 1.00x             |",
        ms(p)
    );
    println!(
        "| run_guest, persistent (define+start) | {:>9} | {:17} |",
        ms(lp),
        ratio(lp, p)
    );
    println!(
        "| run_guest, transient (create)        | {:>9} | {:17} |",
        ms(lt),
        ratio(lt, p)
    );
    println!();
    println!("persistent run_guest phases (median):");
    println!(
        "  define                          {}",
        ms(pick(|t| t.define))
    );
    println!(
        "  start (QEMU up, guest resumed)  {}",
        ms(pick(|t| t.start))
    );
    println!("  run (start -> shut off seen)    {}", ms(pick(|t| t.run)));
    println!(
        "  success line -> shut off seen   {}",
        ms(pick(|t| t.shutdown_lag))
    );
    println!(
        "  teardown (destroy + undefine)   {}",
        ms(pick(|t| t.teardown))
    );
    println!();
    println!(
        "{par_n} tiny guests: sequential {}, parallel {}, speed-up {:.2}x",
        ms(sequential),
        ms(parallel),
        sequential.as_secs_f64() / parallel.as_secs_f64()
    );
}
