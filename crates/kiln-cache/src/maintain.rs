//! Cache maintenance: list entries, verify them against their records, prune by age and size.
//!
//! Prune follows Nova's image cache manager: an entry unused for longer than the age limit is removed,
//! the age re-checked under the entry's lock; then least-recently-used entries go until the total fits
//! the size limit. Unlike Nova it also removes stray `.part` / `.converted` files and staging folders of
//! killed writers, but only after taking the entry's lock, so a live writer's files are never touched.
//! In `_base` only Nova "originals" (40 hex characters) are considered; `ephemeral_*`, `swap_*` and
//! anything else are left alone.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::artifact::{ArtifactKey, ArtifactRecord, RECORD_FILE, list_files};
use crate::base::{BaseRecord, read_record};
use crate::error::{CacheError, IoContext};
use crate::fsutil::{self, now_secs, remove_if_exists};
use crate::hash::{Algo, hash_file};
use crate::lock::EntryLock;
use crate::root::CacheRoot;

/// Temporary record files older than this belong to dead writers.
const TEMP_FILE_AGE: u64 = 600;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    Base,
    Artifact,
}

/// One complete entry.
#[derive(Clone, Debug, Serialize)]
pub struct EntryInfo {
    pub kind: EntryKind,
    /// `_base` file name or artifact key.
    pub name: String,
    pub path: PathBuf,
    /// Apparent size in bytes.
    pub size: u64,
    /// Bytes allocated on disk (raw images are sparse).
    pub disk_usage: u64,
    pub last_used: u64,
    pub users: BTreeSet<String>,
    /// Source (`_base`) or step kind (artifact).
    pub origin: Option<String>,
    /// False for `_base` files kiln has no record of (seeded by Nova, or not yet adopted).
    pub recorded: bool,
}

/// A leftover of a writer that died.
#[derive(Clone, Debug, Serialize)]
pub struct Stray {
    pub path: PathBuf,
    pub disk_usage: u64,
    /// The entry whose lock guards it (`None` for stale temporary record files).
    pub owner: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Listing {
    pub entries: Vec<EntryInfo>,
    pub strays: Vec<Stray>,
}

impl Listing {
    pub fn total_disk_usage(&self) -> u64 {
        self.entries.iter().map(|e| e.disk_usage).sum()
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn usage(meta: &fs::Metadata) -> u64 {
    meta.blocks() * 512
}

fn dir_usage(dir: &Path) -> u64 {
    list_files(dir)
        .unwrap_or_default()
        .iter()
        .chain(std::iter::once(&RECORD_FILE.to_owned()))
        .filter_map(|f| fs::metadata(dir.join(f)).ok())
        .map(|m| usage(&m))
        .sum()
}

fn read_dir_or_empty(dir: &Path) -> Result<Vec<fs::DirEntry>, CacheError> {
    match fs::read_dir(dir) {
        Ok(rd) => rd.collect::<Result<Vec<_>, _>>().at(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).at(dir),
    }
}

/// Lists complete entries and strays.
pub fn list(root: &CacheRoot) -> Result<Listing, CacheError> {
    let mut out = Listing::default();
    let now = now_secs();

    for e in read_dir_or_empty(&root.base_dir())? {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        if is_hex(&name, 40) {
            let record: Option<BaseRecord> =
                read_record(&root.base_meta_dir().join(format!("{name}.json"))).unwrap_or(None);
            out.entries.push(EntryInfo {
                kind: EntryKind::Base,
                path,
                size: meta.len(),
                disk_usage: usage(&meta),
                last_used: record
                    .as_ref()
                    .map_or(meta.mtime().max(0) as u64, |r| r.last_used),
                users: record.as_ref().map(|r| r.users.clone()).unwrap_or_default(),
                origin: record.as_ref().map(|r| r.origin.clone()),
                recorded: record.is_some(),
                name,
            });
        } else if let Some((owner, _)) = name
            .strip_suffix(".part")
            .or_else(|| name.strip_suffix(".converted"))
            .map(|o| (o, ()))
            && is_hex(owner, 40)
        {
            out.strays.push(Stray {
                path,
                disk_usage: usage(&meta),
                owner: Some(owner.to_owned()),
            });
        }
    }

    for e in read_dir_or_empty(&root.artifacts_dir())? {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        if is_hex(&name, 64) {
            let record: Option<ArtifactRecord> =
                read_record(&path.join(RECORD_FILE)).unwrap_or(None);
            let Some(record) = record else { continue };
            out.entries.push(EntryInfo {
                kind: EntryKind::Artifact,
                size: record.size(),
                disk_usage: dir_usage(&path),
                last_used: record.last_used,
                users: record.users.clone(),
                origin: Some(record.kind.clone()),
                recorded: true,
                path,
                name,
            });
        } else if let Some(rest) = name
            .strip_prefix(".staging-")
            .or_else(|| name.strip_prefix(".trash-"))
            && let Some((owner, _)) = rest.split_once('.')
            && is_hex(owner, 64)
        {
            out.strays.push(Stray {
                disk_usage: dir_usage(&path),
                path,
                owner: Some(owner.to_owned()),
            });
        }
    }

    // Temporary record files of writers killed between write and rename.
    for dir in [root.base_meta_dir(), root.memo_dir(), root.artifacts_dir()] {
        for e in read_dir_or_empty(&dir)? {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.')
                && name.contains(".tmp-")
                && let Ok(meta) = e.metadata()
                && meta.is_file()
                && now.saturating_sub(meta.mtime().max(0) as u64) > TEMP_FILE_AGE
            {
                out.strays.push(Stray {
                    path: e.path(),
                    disk_usage: usage(&meta),
                    owner: None,
                });
            }
        }
    }
    out.entries
        .sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    out.strays.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// The verdict on one entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    /// A file's content does not match its record.
    Corrupt {
        file: String,
        expected: String,
        actual: String,
    },
    /// A recorded output file is gone.
    Missing {
        file: String,
    },
    /// No record to compare with (a `_base` file kiln did not fetch).
    Unrecorded,
}

#[derive(Clone, Debug, Serialize)]
pub struct Verified {
    pub kind: EntryKind,
    pub name: String,
    pub verdict: Verdict,
}

/// Re-hashes every entry (never from the memo) and compares with its record.
pub fn verify(root: &CacheRoot) -> Result<Vec<Verified>, CacheError> {
    let listing = list(root)?;
    let mut out = Vec::new();
    for e in listing.entries {
        let _lock = EntryLock::acquire(&root.lock_path(&e.name))?;
        let verdict = match e.kind {
            EntryKind::Base => {
                let record: Option<BaseRecord> =
                    read_record(&root.base_meta_dir().join(format!("{}.json", e.name)))?;
                match record {
                    None => Verdict::Unrecorded,
                    Some(r) => check_file(&e.path, &e.name, &r.digests, r.size)?,
                }
            }
            EntryKind::Artifact => {
                let record: Option<ArtifactRecord> = read_record(&e.path.join(RECORD_FILE))?;
                let mut verdict = Verdict::Ok;
                for (file, o) in record.map(|r| r.outputs).unwrap_or_default() {
                    verdict = check_file(&e.path.join(&file), &file, &o.digests, o.size)?;
                    if verdict != Verdict::Ok {
                        break;
                    }
                }
                verdict
            }
        };
        out.push(Verified {
            kind: e.kind,
            name: e.name,
            verdict,
        });
    }
    Ok(out)
}

fn check_file(
    path: &Path,
    label: &str,
    digests: &crate::hash::Digests,
    size: u64,
) -> Result<Verdict, CacheError> {
    if !path.exists() {
        return Ok(Verdict::Missing {
            file: label.to_owned(),
        });
    }
    let algo = [Algo::Sha256, Algo::Sha512, Algo::Md5]
        .into_iter()
        .find(|a| digests.get(*a).is_some())
        .unwrap_or(Algo::Sha256);
    let (n, got) = hash_file(path, &[algo]).at(path)?;
    let expected = digests.get(algo).unwrap_or_default();
    let actual = got.get(algo).unwrap_or_default();
    if n != size || expected != actual {
        return Ok(Verdict::Corrupt {
            file: label.to_owned(),
            expected: format!("{algo}:{expected} ({size} bytes)"),
            actual: format!("{algo}:{actual} ({n} bytes)"),
        });
    }
    Ok(Verdict::Ok)
}

/// What to prune.
#[derive(Clone, Debug, Default)]
pub struct PrunePolicy {
    /// Remove entries unused for longer than this.
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
    /// Unused for longer than the age limit.
    Age,
    /// Least recently used while over the size limit.
    Size,
}

#[derive(Clone, Debug, Serialize)]
pub struct Pruned {
    pub path: PathBuf,
    pub name: Option<String>,
    pub disk_usage: u64,
    pub reason: PruneReason,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct PruneReport {
    /// Removed (or, in a dry run, would be removed).
    pub removed: Vec<Pruned>,
    /// Entries or strays skipped because a live process holds their lock.
    pub busy: Vec<PathBuf>,
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

    let mut entries = listing.entries;
    entries.sort_by_key(|e| (e.last_used, e.kind, e.name.clone()));
    let mut remaining: u64 = entries.iter().map(|e| e.disk_usage).sum();
    let cutoff = policy.max_age.map(|a| now.saturating_sub(a.as_secs()));

    for e in entries {
        let too_old = cutoff.is_some_and(|c| e.last_used < c);
        let too_big = policy.max_size.is_some_and(|m| remaining > m);
        if !too_old && !too_big {
            continue;
        }
        let Some(_lock) = EntryLock::try_acquire(&root.lock_path(&e.name))? else {
            report.busy.push(e.path);
            continue;
        };
        // Re-check under the lock, as Nova does: a build may have just used it.
        let last_used = current_last_used(root, &e)?;
        let Some(last_used) = last_used else { continue };
        let reason = if cutoff.is_some_and(|c| last_used < c) {
            PruneReason::Age
        } else if too_big {
            PruneReason::Size
        } else {
            continue;
        };
        if !policy.dry_run {
            remove_entry(root, &e)?;
        }
        remaining -= e.disk_usage;
        report.removed.push(Pruned {
            path: e.path,
            name: Some(e.name),
            disk_usage: e.disk_usage,
            reason,
        });
    }
    report.remaining = remaining;
    Ok(report)
}

/// The entry's last use as recorded now, or `None` if it has gone.
fn current_last_used(root: &CacheRoot, e: &EntryInfo) -> Result<Option<u64>, CacheError> {
    match e.kind {
        EntryKind::Base => {
            let Ok(meta) = fs::metadata(&e.path) else {
                return Ok(None);
            };
            let record: Option<BaseRecord> =
                read_record(&root.base_meta_dir().join(format!("{}.json", e.name)))?;
            Ok(Some(
                record.map_or(meta.mtime().max(0) as u64, |r| r.last_used),
            ))
        }
        EntryKind::Artifact => {
            let record: Option<ArtifactRecord> = read_record(&e.path.join(RECORD_FILE))?;
            Ok(record.map(|r| r.last_used))
        }
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

fn remove_path(path: &Path) -> Result<(), CacheError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).at(path),
        Ok(_) => remove_if_exists(path).map(drop),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).at(path),
    }
}
