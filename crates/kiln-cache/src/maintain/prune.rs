//! `prune`: strays, damaged entries, entries past the age limit, then least recently used entries
//! until the size fits, and run folders past the age limit.
//!
//! Chains are kept together. An entry's effective last use is the latest use of it and of every
//! entry that backs onto it, directly or through others; entries are taken oldest first by that
//! time, overlays before their bases, and an entry is removed only once nothing that remains backs
//! onto it. So an old install under a fresh customize overlay stays, and when a chain goes, it goes
//! whole.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::{EntryInfo, EntryKind, list, runs};
use crate::artifact::{ArtifactKey, ArtifactRecord, RECORD_FILE};
use crate::base::{BaseRecord, read_record};
use crate::error::{CacheError, IoContext};
use crate::fsutil::{self, now_secs, remove_if_exists};
use crate::lock::EntryLock;
use crate::root::CacheRoot;

/// What to prune.
#[derive(Clone, Debug, Default)]
pub struct PrunePolicy {
    /// Remove entries and run folders unused for longer than this.
    pub max_age: Option<Duration>,
    /// Then remove least-recently-used entries until the total disk usage fits.
    pub max_size: Option<u64>,
    /// Report only.
    pub dry_run: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PruneReason {
    /// Leftover of a killed writer.
    Stray,
    /// The entry's record cannot be read.
    Damaged,
    /// Unused for longer than the age limit.
    Age,
    /// Least recently used while over the size limit.
    Size,
    /// A run folder older than the age limit.
    Run,
}

#[derive(Clone, Debug, Serialize)]
pub struct Pruned {
    pub path: PathBuf,
    pub name: Option<String>,
    pub disk_usage: u64,
    pub reason: PruneReason,
}

/// An entry prune would have removed but kept, because entries that remain back onto it.
#[derive(Clone, Debug, Serialize)]
pub struct Kept {
    pub path: PathBuf,
    pub name: String,
    /// The remaining entries whose qcow2 files back onto it.
    pub backs: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct PruneReport {
    /// Removed (or, in a dry run, would be removed).
    pub removed: Vec<Pruned>,
    /// Entries, strays or runs skipped because a live process holds their lock.
    pub busy: Vec<PathBuf>,
    /// Entries kept because they are the base of entries that remain.
    pub kept: Vec<Kept>,
    /// Disk usage of the entries that remain.
    pub remaining: u64,
    pub dry_run: bool,
}

impl PruneReport {
    pub fn freed(&self) -> u64 {
        self.removed.iter().map(|p| p.disk_usage).sum()
    }
}

/// Applies `policy`. Every removal happens under the entry's lock.
pub fn prune(root: &CacheRoot, policy: &PrunePolicy) -> Result<PruneReport, CacheError> {
    prune_at(root, policy, now_secs())
}

/// [`prune`] as if the time were `now` (seconds since the epoch).
pub fn prune_at(
    root: &CacheRoot,
    policy: &PrunePolicy,
    now: u64,
) -> Result<PruneReport, CacheError> {
    let listing = list(root)?;
    let mut report = PruneReport {
        dry_run: policy.dry_run,
        ..PruneReport::default()
    };

    for stray in listing.strays {
        let _lock = match &stray.owner {
            Some(owner) => match EntryLock::try_acquire(&root.lock_path(owner))? {
                Some(l) => Some(l),
                None => {
                    report.busy.push(stray.path);
                    continue;
                }
            },
            None => None,
        };
        if !policy.dry_run {
            remove_path(&stray.path)?;
        }
        report.removed.push(Pruned {
            path: stray.path,
            name: stray.owner,
            disk_usage: stray.disk_usage,
            reason: PruneReason::Stray,
        });
    }

    let chains = Chains::new(&listing.entries);
    let mut entries = listing.entries;
    entries.sort_by_key(|e| {
        (
            chains.effective_last_used(e),
            chains.dependents_below(&e.name),
            e.kind,
            e.name.clone(),
        )
    });
    let mut remaining: u64 = entries.iter().map(|e| e.disk_usage).sum();
    let cutoff = policy.max_age.map(|a| now.saturating_sub(a.as_secs()));
    let mut removed: BTreeSet<String> = BTreeSet::new();

    for e in entries {
        let damaged = e.damaged.is_some();
        let too_old = cutoff.is_some_and(|c| chains.effective_last_used(&e) < c);
        let too_big = policy.max_size.is_some_and(|m| remaining > m);
        let backs: Vec<String> = chains
            .dependents(&e.name)
            .filter(|d| !removed.contains(*d))
            .cloned()
            .collect();
        // Old by its own use, young through an overlay on it: say why it stays.
        let own_old = cutoff.is_some_and(|c| e.last_used < c);
        if !damaged && !too_old && !too_big {
            if own_old && !backs.is_empty() {
                report.kept.push(Kept {
                    path: e.path,
                    name: e.name,
                    backs,
                });
            }
            continue;
        }
        if !backs.is_empty() {
            report.kept.push(Kept {
                path: e.path,
                name: e.name,
                backs,
            });
            continue;
        }
        let Some(_lock) = EntryLock::try_acquire(&root.lock_path(&e.name))? else {
            report.busy.push(e.path);
            continue;
        };
        // Re-check under the lock, as Nova does: a build may have just used it.
        let reason = match current_state(root, &e) {
            Current::Gone => continue,
            Current::Damaged => PruneReason::Damaged,
            Current::LastUsed(t) if cutoff.is_some_and(|c| t < c) => PruneReason::Age,
            Current::LastUsed(_) if too_big => PruneReason::Size,
            Current::LastUsed(_) => continue,
        };
        if !policy.dry_run {
            remove_entry(root, &e)?;
        }
        remaining -= e.disk_usage;
        removed.insert(e.name.clone());
        report.removed.push(Pruned {
            path: e.path,
            name: Some(e.name),
            disk_usage: e.disk_usage,
            reason,
        });
    }
    report.remaining = remaining;

    if let Some(cutoff) = cutoff {
        let (stale, busy) = runs::stale_runs(&root.runs_dir(), cutoff)?;
        report.busy.extend(busy);
        for run in stale {
            if !policy.dry_run {
                remove_path(&run.dir)?;
            }
            report.removed.push(Pruned {
                name: run
                    .dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned()),
                disk_usage: run.disk_usage,
                path: run.dir.clone(),
                reason: PruneReason::Run,
            });
        }
    }
    Ok(report)
}

/// Who backs onto whom among the listed entries.
struct Chains {
    /// Entry → entries whose files back onto it (directly).
    dependents: BTreeMap<String, BTreeSet<String>>,
    last_used: BTreeMap<String, u64>,
}

impl Chains {
    fn new(entries: &[EntryInfo]) -> Self {
        let mut dependents: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for e in entries {
            for r in &e.refs {
                if let Some(base) = &r.entry
                    && *base != e.name
                {
                    dependents
                        .entry(base.clone())
                        .or_default()
                        .insert(e.name.clone());
                }
            }
        }
        let last_used = entries
            .iter()
            .map(|e| (e.name.clone(), e.last_used))
            .collect();
        Chains {
            dependents,
            last_used,
        }
    }

    fn dependents<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a String> {
        self.dependents.get(name).into_iter().flatten()
    }

    /// `name` and every entry backing onto it, directly or not.
    fn closure(&self, name: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![name.to_owned()];
        while let Some(n) = todo.pop() {
            if !seen.contains(&n) {
                todo.extend(self.dependents(&n).cloned());
                seen.insert(n);
            }
        }
        seen
    }

    /// The latest use of the entry or of anything backing onto it.
    fn effective_last_used(&self, e: &EntryInfo) -> u64 {
        self.closure(&e.name)
            .into_iter()
            .filter_map(|n| self.last_used.get(&n))
            .copied()
            .max()
            .unwrap_or(e.last_used)
    }

    /// How many entries back onto it: an overlay has fewer than its base, so it sorts first.
    fn dependents_below(&self, name: &str) -> usize {
        self.closure(name).len()
    }
}

enum Current {
    Gone,
    Damaged,
    LastUsed(u64),
}

/// The entry as it is now (under its lock).
fn current_state(root: &CacheRoot, e: &EntryInfo) -> Current {
    match e.kind {
        EntryKind::Base => {
            let Ok(meta) = fs::metadata(&e.path) else {
                return Current::Gone;
            };
            match read_record::<BaseRecord>(&root.base_meta_dir().join(format!("{}.json", e.name)))
            {
                Ok(r) => Current::LastUsed(r.map_or(meta.mtime().max(0) as u64, |r| r.last_used)),
                Err(_) => Current::Damaged,
            }
        }
        EntryKind::Artifact => match read_record::<ArtifactRecord>(&e.path.join(RECORD_FILE)) {
            Ok(Some(r)) => Current::LastUsed(r.last_used),
            Ok(None) => Current::Gone,
            Err(_) => Current::Damaged,
        },
    }
}

fn remove_entry(root: &CacheRoot, e: &EntryInfo) -> Result<(), CacheError> {
    match e.kind {
        EntryKind::Base => {
            remove_if_exists(&e.path)?;
            remove_if_exists(&root.base_meta_dir().join(format!("{}.json", e.name)))?;
            Ok(())
        }
        EntryKind::Artifact => {
            // Rename first: a half-deleted folder must never look like an entry.
            let key: ArtifactKey = e.name.parse()?;
            let trash = root
                .artifacts_dir()
                .join(format!(".trash-{key}.{}", fsutil::unique_suffix()));
            fs::rename(&e.path, &trash).at(&e.path)?;
            fs::remove_dir_all(&trash).at(&trash)
        }
    }
}

pub(super) fn remove_path(path: &Path) -> Result<(), CacheError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).at(path),
        Ok(_) => remove_if_exists(path).map(drop),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).at(path),
    }
}
