//! Run folders (`<cache>/runs/<run id>/`: step logs, consoles, scratch files of guest steps).
//!
//! A build holds [`RunLock`] on `runs/<id>/run.lock` for as long as it runs; prune removes a run
//! folder only when it can take that lock (the kernel drops it when the build dies, however it
//! dies) and nothing in the folder changed within the age limit.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::prune::{PruneReason, PruneReport, Pruned, remove_path};
use crate::error::{CacheError, IoContext};
use crate::lock::EntryLock;

/// The lock file inside a run folder.
pub const RUN_LOCK_FILE: &str = "run.lock";

/// Held by a build for the life of its run folder.
#[derive(Debug)]
pub struct RunLock {
    _lock: EntryLock,
}

impl RunLock {
    /// Takes the lock of run folder `dir` (which must exist). A run id is unique per process, so
    /// this never waits long; it waits rather than fails if a prune is looking at the folder.
    pub fn acquire(dir: &Path) -> Result<Self, CacheError> {
        Ok(RunLock {
            _lock: EntryLock::acquire(&dir.join(RUN_LOCK_FILE))?,
        })
    }
}

/// The newest modification time of anything in `dir` (the folder itself included).
fn last_activity(dir: &Path) -> u64 {
    let mut newest = fs::symlink_metadata(dir).map_or(0, |m| m.mtime().max(0) as u64);
    let mut todo = vec![(dir.to_owned(), 0)];
    while let Some((d, depth)) = todo.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            newest = newest.max(m.mtime().max(0) as u64);
            if m.is_dir() && depth < 8 {
                todo.push((e.path(), depth + 1));
            }
        }
    }
    newest
}

fn usage(dir: &Path) -> u64 {
    let mut total = 0;
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            total += m.blocks() * 512;
            if m.is_dir() {
                todo.push(e.path());
            }
        }
    }
    total
}

/// Removes run folders under `runs` whose last activity is before `cutoff` and whose build is over.
pub(super) fn prune_runs(
    runs: &Path,
    cutoff: u64,
    dry_run: bool,
    report: &mut PruneReport,
) -> Result<(), CacheError> {
    let rd = match fs::read_dir(runs) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).at(runs),
    };
    let mut dirs: Vec<PathBuf> = Vec::new();
    for e in rd {
        let e = e.at(runs)?;
        if e.file_type().at(e.path())?.is_dir() {
            dirs.push(e.path());
        }
    }
    dirs.sort();
    for dir in dirs {
        if last_activity(&dir) >= cutoff {
            continue;
        }
        let Some(_lock) = EntryLock::try_acquire(&dir.join(RUN_LOCK_FILE))? else {
            report.busy.push(dir);
            continue;
        };
        let disk_usage = usage(&dir);
        if !dry_run {
            remove_path(&dir)?;
        }
        report.removed.push(Pruned {
            name: dir.file_name().map(|n| n.to_string_lossy().into_owned()),
            path: dir,
            disk_usage,
            reason: PruneReason::Run,
        });
    }
    Ok(())
}

/// Run folders under `runs` whose build is over (dead or finished), each returned with its lock
/// held so no build can claim it meanwhile.
pub fn idle_runs(runs: &Path) -> Result<Vec<(PathBuf, RunLock)>, CacheError> {
    let rd = match fs::read_dir(runs) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).at(runs),
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e.at(runs)?;
        if !e.file_type().at(e.path())?.is_dir() {
            continue;
        }
        let dir = e.path();
        if let Some(lock) = EntryLock::try_acquire(&dir.join(RUN_LOCK_FILE))? {
            out.push((dir, RunLock { _lock: lock }));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}
