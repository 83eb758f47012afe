//! Mutation fuzzing as ordinary tests: seed inputs (the repository's corpora and fixtures) mutated
//! by proptest (byte flips and sets, truncations, insertions, deletions, duplications of a slice,
//! splices with another seed) and fed to a parser that must not panic, hang or grow memory.
//!
//! Shared by each crate's `tests/fuzz.rs` (`#[path]` module). `KILN_FUZZ_CASES` sets the number of
//! cases per target (each target's default keeps it to a few seconds in a debug build; CI runs the
//! defaults); a failure is shrunk by proptest and printed as the smallest input that fails.

#![allow(dead_code, reason = "each fuzz target uses part of this module")]

use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// One edit of an input; positions are taken modulo the input's length.
#[derive(Clone, Debug)]
pub enum Edit {
    FlipBit(usize, u8),
    SetByte(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Duplicate(usize, usize),
    /// Replace from here with the tail of another seed.
    Splice(usize, usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let pos = any::<usize>();
    prop_oneof![
        4 => (pos, 0u8..8).prop_map(|(p, b)| Edit::FlipBit(p, b)),
        4 => (pos, prop_oneof![Just(0u8), Just(0xFF), Just(b'{'), Just(b'}'), Just(b'"'), Just(b'\n'), any::<u8>()])
            .prop_map(|(p, b)| Edit::SetByte(p, b)),
        1 => pos.prop_map(Edit::Truncate),
        2 => (pos, proptest::collection::vec(any::<u8>(), 1..16)).prop_map(|(p, b)| Edit::Insert(p, b)),
        2 => (pos, 1usize..64).prop_map(|(p, n)| Edit::Delete(p, n)),
        1 => (pos, 1usize..256).prop_map(|(p, n)| Edit::Duplicate(p, n)),
        1 => (pos, any::<usize>(), any::<usize>()).prop_map(|(p, s, q)| Edit::Splice(p, s, q)),
    ]
}

/// Applies `edits` to a copy of `seed` (`seeds` for splices).
pub fn apply(seed: &[u8], edits: &[Edit], seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for e in edits {
        let at = |p: usize, len: usize| if len == 0 { 0 } else { p % len };
        match e {
            Edit::FlipBit(p, bit) if !b.is_empty() => {
                let i = at(*p, b.len());
                b[i] ^= 1 << bit;
            }
            Edit::SetByte(p, v) if !b.is_empty() => {
                let i = at(*p, b.len());
                b[i] = *v;
            }
            Edit::Truncate(p) => b.truncate(at(*p, b.len() + 1)),
            Edit::Insert(p, bytes) => {
                let i = at(*p, b.len() + 1);
                b.splice(i..i, bytes.iter().copied());
            }
            Edit::Delete(p, n) if !b.is_empty() => {
                let i = at(*p, b.len());
                b.drain(i..(i + n).min(b.len()));
            }
            Edit::Duplicate(p, n) if !b.is_empty() => {
                let i = at(*p, b.len());
                let slice: Vec<u8> = b[i..(i + n).min(b.len())].to_vec();
                b.splice(i..i, slice);
            }
            Edit::Splice(p, s, q) if !seeds.is_empty() => {
                let other = &seeds[s % seeds.len()];
                let i = at(*p, b.len() + 1);
                let j = at(*q, other.len() + 1);
                b.truncate(i);
                b.extend_from_slice(&other[j..]);
            }
            _ => {}
        }
    }
    b
}

/// Cases per target: `KILN_FUZZ_CASES` or `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("KILN_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Peak resident memory of this process, MiB (nextest runs each test in a process of its own).
pub fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024)
}

/// Runs `target` on every seed unchanged and then on `cases` mutated seeds. Each call must return
/// (no panic) within `per_case`; at the end, peak memory must be under `max_rss_mib`.
pub fn fuzz(
    name: &str,
    seeds: &[Vec<u8>],
    default_cases: u32,
    per_case: Duration,
    max_rss_mib: u64,
    target: impl Fn(&[u8]),
) {
    assert!(!seeds.is_empty(), "{name}: no seeds");
    let started = Instant::now();
    let timed = |input: &[u8]| {
        let t = Instant::now();
        target(input);
        let took = t.elapsed();
        assert!(
            took <= per_case,
            "{name}: one input took {took:?} (limit {per_case:?})"
        );
    };
    for seed in seeds {
        timed(seed);
    }
    let cases = cases(default_cases);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (0..seeds.len(), proptest::collection::vec(edit(), 1..8));
    let result = runner.run(&strategy, |(seed, edits)| {
        let input = apply(&seeds[seed], &edits, seeds);
        timed(&input);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
    let peak = peak_rss_mib();
    eprintln!(
        "{name}: {} seeds + {cases} mutated inputs in {:?}, peak RSS {peak} MiB",
        seeds.len(),
        started.elapsed()
    );
    assert!(
        peak < max_rss_mib,
        "{name}: peak RSS {peak} MiB (limit {max_rss_mib})"
    );
}

/// Every file under `dir` (recursively) whose name ends in one of `exts`, sorted.
pub fn files(dir: &std::path::Path, exts: &[&str]) -> Vec<Vec<u8>> {
    fn walk(dir: &std::path::Path, exts: &[&str], out: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, exts, out);
            } else if exts.iter().any(|e| path.to_string_lossy().ends_with(e)) {
                out.push(path);
            }
        }
    }
    let mut paths = Vec::new();
    walk(dir, exts, &mut paths);
    paths.sort();
    paths
        .into_iter()
        .filter_map(|p| std::fs::read(p).ok())
        .collect()
}
