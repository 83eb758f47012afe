//! Backing chains between cache entries.
//!
//! A `customize` step's disk is a qcow2 overlay whose header names the install's disk by absolute
//! path (`artifacts-v1/<key>/disk.qcow2`). The overlay is only usable while that exact file stays:
//! removing the install entry leaves the overlay dangling, and rebuilding that key puts a different
//! base under it. This module finds such references (read from the qcow2 headers, see [`crate::qcow2`])
//! and says which entry each points into, so prune can keep or remove a chain together and verify can
//! report a dangling, foreign or changed base.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use crate::qcow2::{Qcow2Error, read_refs};
use crate::root::CacheRoot;

/// How a file refers to another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefKind {
    /// The qcow2 backing file.
    Backing,
    /// The qcow2 external data file.
    DataFile,
}

/// One reference from an entry's file to another file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChainRef {
    /// The referring file, relative to its entry (`disk.qcow2`; empty for a `_base` file).
    pub file: String,
    pub kind: RefKind,
    /// The referenced file, resolved as qemu resolves it (relative names against the referring
    /// file's folder).
    pub target: PathBuf,
    /// The entry holding the target (`_base` name or artifact key), `None` when the target is not a
    /// file of a complete cache entry.
    pub entry: Option<String>,
    /// The target's path inside that entry.
    pub entry_file: Option<String>,
}

/// A file whose header could not be read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BadHeader {
    pub file: String,
    pub reason: String,
}

/// The references made by the qcow2 files among `files` (relative to `dir`) of one artifact.
///
/// Only files named `*.qcow2` are read: kiln names every output by its format, and a raw disk's
/// first bytes are written by its guest, which could forge a qcow2 header naming any file.
pub(crate) fn refs_of(
    root: &CacheRoot,
    dir: &Path,
    files: &[String],
) -> (Vec<ChainRef>, Vec<BadHeader>) {
    let mut refs = Vec::new();
    let mut bad = Vec::new();
    for rel in files.iter().filter(|f| f.ends_with(".qcow2")) {
        let path = dir.join(rel);
        match read_refs(&path) {
            Ok(None) => {}
            Ok(Some(r)) => {
                for (kind, name) in [
                    (RefKind::Backing, r.backing),
                    (RefKind::DataFile, r.data_file),
                ] {
                    if let Some(name) = name {
                        refs.push(classify(root, &path, rel, kind, &name));
                    }
                }
            }
            Err(Qcow2Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => bad.push(BadHeader {
                file: rel.clone(),
                reason: crate::error::chain_message(&e),
            }),
        }
    }
    (refs, bad)
}

fn classify(root: &CacheRoot, from: &Path, rel: &str, kind: RefKind, name: &OsStr) -> ChainRef {
    let folder = from.parent().unwrap_or(Path::new("/"));
    let target = if name.is_empty() {
        PathBuf::new()
    } else {
        normalize(&folder.join(Path::new(name)))
    };
    let (entry, entry_file) = owner(root, &target).unzip();
    ChainRef {
        file: rel.to_owned(),
        kind,
        target,
        entry,
        entry_file,
    }
}

/// The entry (name, file inside it) that holds `target`, if it is a file of an artifact or a `_base`
/// original.
fn owner(root: &CacheRoot, target: &Path) -> Option<(String, String)> {
    let artifacts = absolute(&root.artifacts_dir());
    let base = absolute(&root.base_dir());
    if let Ok(rest) = target.strip_prefix(&artifacts) {
        let mut parts = rest.components();
        let key = parts.next()?.as_os_str().to_str()?;
        let file = parts.as_path().to_str()?;
        return (is_hex(key, 64) && !file.is_empty()).then(|| (key.to_owned(), file.to_owned()));
    }
    if let Ok(rest) = target.strip_prefix(&base) {
        let name = rest.to_str()?;
        return is_hex(name, 40).then(|| (name.to_owned(), String::new()));
    }
    None
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn absolute(p: &Path) -> PathBuf {
    normalize(&std::path::absolute(p).unwrap_or_else(|_| p.to_owned()))
}

/// Removes `.` and resolves `..` lexically (as qemu does when it joins a relative backing name).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    if out.as_os_str().as_bytes().is_empty() {
        out.push("/");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_attributed_to_the_entry_that_holds_them() {
        // Prune keeps a base only if this attribution finds every overlay on it.
        let root = CacheRoot::new("/c");
        let key = "ab".repeat(32);
        let sha1 = "0123456789abcdef0123456789abcdef01234567";
        let from = Path::new("/c/artifacts-v1/x/disk.qcow2");
        let c = |name: &str| {
            classify(
                &root,
                from,
                "disk.qcow2",
                RefKind::Backing,
                OsStr::new(name),
            )
        };
        let r = c(&format!("/c/artifacts-v1/{key}/disk.qcow2"));
        assert_eq!(r.entry.as_deref(), Some(key.as_str()));
        assert_eq!(r.entry_file.as_deref(), Some("disk.qcow2"));
        let r = c(&format!("../{key}/./sub/../disk.qcow2"));
        assert_eq!(r.entry.as_deref(), Some(key.as_str()));
        assert_eq!(
            r.target,
            PathBuf::from(format!("/c/artifacts-v1/{key}/disk.qcow2"))
        );
        assert_eq!(c(&format!("/c/_base/{sha1}")).entry.as_deref(), Some(sha1));
        assert_eq!(c("/etc/shadow").entry, None);
        assert_eq!(
            c(&format!("/c/artifacts-v1/.staging-{key}.1-0/disk.qcow2")).entry,
            None
        );
        assert_eq!(c(&format!("/c/_base/{sha1}.part")).entry, None);
        assert_eq!(c(&format!("/c/artifacts-v1/{key}")).entry, None);
    }
}
