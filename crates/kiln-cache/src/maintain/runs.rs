//! Run folders (`<cache>/runs/<run id>/`: step logs, consoles, scratch files of guest steps).
//!
//! A build holds [`RunLock`] on `runs/<id>/run.lock` for as long as it runs; prune removes a run
//! folder only when it can take that lock (the kernel drops it when the build dies, however it
//! dies) and nothing in the folder changed within the age limit.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

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

/// A run folder whose build is over and in which nothing changed before the cutoff; its lock is
/// held until this is dropped, so no build can claim it while prune removes it.
pub(super) struct StaleRun {
    pub dir: PathBuf,
    pub disk_usage: u64,
    _lock: EntryLock,
}

/// The run folders under `runs` whose last activity is before `cutoff` and whose build is over,
/// and the old ones whose build still holds its lock (busy).
pub(super) fn stale_runs(
    runs: &Path,
    cutoff: u64,
) -> Result<(Vec<StaleRun>, Vec<PathBuf>), CacheError> {
    let rd = match fs::read_dir(runs) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
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
    let (mut stale, mut busy) = (Vec::new(), Vec::new());
    for dir in dirs {
        if last_activity(&dir) >= cutoff {
            continue;
        }
        match EntryLock::try_acquire(&dir.join(RUN_LOCK_FILE))? {
            Some(lock) => stale.push(StaleRun {
                disk_usage: usage(&dir),
                dir,
                _lock: lock,
            }),
            None => busy.push(dir),
        }
    }
    Ok((stale, busy))
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
