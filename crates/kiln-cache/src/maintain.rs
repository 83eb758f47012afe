//! Cache maintenance: list entries, verify them against their records, prune by age and size.
//!
//! Prune follows Nova's image cache manager: an entry unused for longer than the age limit is removed,
//! the age re-checked under the entry's lock; then least-recently-used entries go until the total fits
//! the size limit. Unlike Nova it also removes stray `.part` / `.converted` files and staging folders of
//! killed writers, but only after taking the entry's lock, so a live writer's files are never touched.
//! In `_base` only Nova "originals" (40 hex characters) are considered; `ephemeral_*`, `swap_*` and
//! anything else are left alone.
//!
//! Entries are not independent: a qcow2 overlay artifact backs onto another entry's file by path
//! ([`crate::chain`]). Prune keeps a chain together (a base stays while any overlay on it stays) and
//! verify reports dangling, foreign or changed bases. An entry whose record cannot be read is listed
//! as damaged, reported by verify and removed by prune, so its key can be built again.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::artifact::{ArtifactRecord, RECORD_FILE, entry_sha256, list_files};
use crate::base::{BaseRecord, read_record};
use crate::chain::{BadHeader, ChainRef, RefKind, refs_of};
use crate::error::{CacheError, IoContext, chain_message};
use crate::fsutil::now_secs;
use crate::hash::{Algo, hash_file};
use crate::lock::EntryLock;
use crate::root::CacheRoot;

mod prune;
mod runs;

pub use prune::{Kept, PrunePolicy, PruneReason, PruneReport, Pruned, prune, prune_at};
pub use runs::{RUN_LOCK_FILE, RunLock, idle_runs};

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
    /// Why the entry's record cannot be read, when it cannot (prune removes such an entry).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub damaged: Option<String>,
    /// Files of other entries (or outside the cache) that this entry's qcow2 files refer to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refs: Vec<ChainRef>,
    /// Files whose qcow2 header is invalid.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bad_headers: Vec<BadHeader>,
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

/// A record, or why it cannot be read (`(None, None)`: there is none).
fn split_record<T: serde::de::DeserializeOwned>(path: &Path) -> (Option<T>, Option<String>) {
    match read_record(path) {
        Ok(r) => (r, None),
        Err(e) => (None, Some(chain_message(&e))),
    }
}

/// Lists complete entries (damaged ones included) and strays.
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
            let (record, damaged) =
                split_record::<BaseRecord>(&root.base_meta_dir().join(format!("{name}.json")));
            // `_base` originals never back onto anything: a fetch refuses images with backing or
            // data files, and Nova's originals have none.
            let (refs, bad_headers) = (Vec::new(), Vec::new());
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
                recorded: record.is_some() || damaged.is_some(),
                damaged,
                refs,
                bad_headers,
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
            let (record, damaged) = split_record::<ArtifactRecord>(&path.join(RECORD_FILE));
            let files = list_files(&path).unwrap_or_default();
            let (refs, bad_headers) = refs_of(root, &path, &files);
            let entry = match (record, damaged) {
                (Some(record), _) => EntryInfo {
                    kind: EntryKind::Artifact,
                    size: record.size(),
                    disk_usage: dir_usage(&path),
                    last_used: record.last_used,
                    users: record.users.clone(),
                    origin: Some(record.kind.clone()),
                    recorded: true,
                    damaged: None,
                    refs,
                    bad_headers,
                    path,
                    name,
                },
                (None, Some(why)) => EntryInfo {
                    kind: EntryKind::Artifact,
                    size: files
                        .iter()
                        .filter_map(|f| fs::metadata(path.join(f)).ok())
                        .map(|m| m.len())
                        .sum(),
                    disk_usage: dir_usage(&path),
                    // Unknown: the oldest possible, so a size limit removes it first.
                    last_used: 0,
                    users: BTreeSet::new(),
                    origin: None,
                    recorded: true,
                    damaged: Some(why),
                    refs,
                    bad_headers,
                    path,
                    name,
                },
                // No record: a folder kiln did not complete (entries are renamed into place
                // with their record), or not a folder at all.
                (None, None) => continue,
            };
            out.entries.push(entry);
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
    /// The record cannot be read; `kiln cache prune` removes the entry so it can be built again.
    BadRecord {
        reason: String,
    },
    /// A qcow2 file's header is invalid.
    BadHeader {
        file: String,
        reason: String,
    },
    /// A qcow2 file backs onto (or keeps its data in) a file that is gone.
    Dangling {
        file: String,
        kind: RefKind,
        target: PathBuf,
    },
    /// A qcow2 file refers to a file that is not part of a complete cache entry.
    Foreign {
        file: String,
        kind: RefKind,
        target: PathBuf,
    },
    /// The base under an overlay is not the one the overlay was made on (its key was rebuilt).
    BaseChanged {
        file: String,
        target: PathBuf,
        expected: String,
        actual: String,
    },
}

impl Verdict {
    /// True when the entry is unusable or untrustworthy as it is.
    pub fn is_bad(&self) -> bool {
        !matches!(self, Verdict::Ok | Verdict::Unrecorded)
    }
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
                match split_record::<BaseRecord>(
                    &root.base_meta_dir().join(format!("{}.json", e.name)),
                ) {
                    (_, Some(reason)) => Verdict::BadRecord { reason },
                    (None, None) => Verdict::Unrecorded,
                    (Some(r), None) => check_file(&e.path, &e.name, &r.digests, r.size)?,
                }
            }
            EntryKind::Artifact => {
                match split_record::<ArtifactRecord>(&e.path.join(RECORD_FILE)) {
                    (_, Some(reason)) => Verdict::BadRecord { reason },
                    (None, None) => continue,
                    (Some(record), None) => {
                        let mut verdict = Verdict::Ok;
                        for (file, o) in &record.outputs {
                            verdict = check_file(&e.path.join(file), file, &o.digests, o.size)?;
                            if verdict == Verdict::Ok {
                                verdict = check_base(root, file, o.backing.as_ref(), &e.refs);
                            }
                            if verdict != Verdict::Ok {
                                break;
                            }
                        }
                        verdict
                    }
                }
            }
        };
        let verdict = if verdict == Verdict::Ok {
            check_chain(&e)
        } else {
            verdict
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

/// The references of `e` resolve to files of complete entries.
fn check_chain(e: &EntryInfo) -> Verdict {
    if let Some(b) = e.bad_headers.first() {
        return Verdict::BadHeader {
            file: b.file.clone(),
            reason: b.reason.clone(),
        };
    }
    for r in &e.refs {
        if r.target.as_os_str().is_empty() || !r.target.exists() {
            return Verdict::Dangling {
                file: r.file.clone(),
                kind: r.kind,
                target: r.target.clone(),
            };
        }
        if r.entry.is_none() {
            return Verdict::Foreign {
                file: r.file.clone(),
                kind: r.kind,
                target: r.target.clone(),
            };
        }
    }
    Verdict::Ok
}

/// The base under output `file` is still the one it was made on.
fn check_base(
    root: &CacheRoot,
    file: &str,
    made_on: Option<&crate::artifact::BackingRecord>,
    refs: &[ChainRef],
) -> Verdict {
    let Some(made_on) = made_on else {
        return Verdict::Ok;
    };
    let target = refs
        .iter()
        .find(|r| r.file == file && r.kind == RefKind::Backing)
        .map(|r| r.target.clone())
        .unwrap_or_default();
    match entry_sha256(root, &made_on.entry, &made_on.file) {
        Some(now) if now == made_on.sha256 => Verdict::Ok,
        // A missing base is reported as dangling by the chain check.
        None if !target.exists() => Verdict::Ok,
        now => Verdict::BaseChanged {
            file: file.to_owned(),
            target,
            expected: format!("sha256:{}", made_on.sha256),
            actual: now.map_or_else(|| "no record".to_owned(), |s| format!("sha256:{s}")),
        },
    }
}
