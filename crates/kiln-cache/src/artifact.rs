//! The artifact store: the outputs of one pipeline step, keyed by the step's content key.
//!
//! Layout `artifacts-v1/<key>/`: the output files plus `record.json` ([`ArtifactRecord`]). An entry is
//! built in `artifacts-v1/.staging-<key>.<pid>-<n>/` and renamed to `<key>` only once every output and
//! the record are written and fsynced, so a directory named `<key>` is always complete, and a killed
//! builder leaves only a staging folder (removed by the next build of that key, or by prune).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::base::{RECORD_ALGOS, read_record};
use crate::error::{CacheError, IoContext};
use crate::fsutil::{self, now_secs};
use crate::hash::{Digests, HashingWriter, hash_file};
use crate::lock::EntryLock;
use crate::root::CacheRoot;

/// Name of the record inside an entry.
pub const RECORD_FILE: &str = "record.json";

const FORMAT: u32 = 1;

/// A step's content key: 32 bytes, written as 64 lowercase hex characters. The planner's step key
/// converts into it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ArtifactKey([u8; 32]);

impl ArtifactKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        ArtifactKey(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for ArtifactKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ArtifactKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ArtifactKey({self})")
    }
}

impl FromStr for ArtifactKey {
    type Err = CacheError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || CacheError::BadKey(s.to_owned());
        if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| bad())?;
        Ok(ArtifactKey(out))
    }
}

impl Serialize for ArtifactKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for ArtifactKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One output file of an entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputRecord {
    pub size: u64,
    pub digests: Digests,
    /// For a qcow2 overlay on another entry's file: that file and its sha256 when the overlay was
    /// made, so `verify` can tell a rebuilt (different) base from the one the overlay was made on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backing: Option<BackingRecord>,
}

/// The base an overlay was made on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackingRecord {
    /// The entry (artifact key or `_base` name).
    pub entry: String,
    /// The file inside it (empty for a `_base` file).
    pub file: String,
    /// Its sha256 as its own record gave it.
    pub sha256: String,
}

/// `record.json` of an entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRecord {
    pub format: u32,
    pub key: ArtifactKey,
    /// What kind of step made it (e.g. `install`, `convert`).
    pub kind: String,
    /// Named inputs and their digests or keys.
    pub inputs: BTreeMap<String, String>,
    /// Output files (relative paths) with sizes and md5/sha256/sha512.
    pub outputs: BTreeMap<String, OutputRecord>,
    /// Tool name → version string.
    pub tools: BTreeMap<String, String>,
    pub created: u64,
    pub last_used: u64,
    pub users: BTreeSet<String>,
}

impl ArtifactRecord {
    /// Total size of the outputs.
    pub fn size(&self) -> u64 {
        self.outputs.values().map(|o| o.size).sum()
    }
}

/// What the caller knows about a step before it runs.
#[derive(Clone, Debug, Default)]
pub struct ArtifactSpec {
    pub kind: String,
    pub inputs: BTreeMap<String, String>,
    pub tools: BTreeMap<String, String>,
    pub user: Option<String>,
}

/// A complete entry.
#[derive(Clone, Debug)]
pub struct Artifact {
    pub dir: PathBuf,
    pub record: ArtifactRecord,
    /// True when the entry was already there and the builder did not run.
    pub reused: bool,
}

impl Artifact {
    /// Path of output `name`.
    pub fn output(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// The folder a builder writes its outputs into.
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
    hashed: BTreeMap<String, OutputRecord>,
}

impl Staging {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path for output `name` (a relative path).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Creates output `name` behind a writer that hashes on the fly; hand the writer back to
    /// [`Staging::commit_writer`] so the file is not read again to record its digests.
    pub fn create(&self, name: &str) -> io::Result<HashingWriter<File>> {
        let path = self.path(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let file = private_create(&path)?;
        Ok(HashingWriter::new(file, &RECORD_ALGOS))
    }

    /// Fsyncs a file made with [`Staging::create`] and records its digests.
    pub fn commit_writer(&mut self, name: &str, writer: HashingWriter<File>) -> io::Result<()> {
        let (file, size, digests) = writer.into_parts();
        file.sync_all()?;
        self.hashed.insert(
            name.to_owned(),
            OutputRecord {
                size,
                digests,
                backing: None,
            },
        );
        Ok(())
    }
}

/// The artifact store of a cache root.
#[derive(Clone, Debug)]
pub struct ArtifactStore {
    root: CacheRoot,
}

impl ArtifactStore {
    pub fn new(root: CacheRoot) -> Self {
        ArtifactStore { root }
    }

    /// `artifacts-v1/<key>`.
    pub fn entry_dir(&self, key: &ArtifactKey) -> PathBuf {
        self.root.artifacts_dir().join(key.to_hex())
    }

    /// The complete entry for `key`, without touching its use time.
    pub fn peek(&self, key: &ArtifactKey) -> Result<Option<Artifact>, CacheError> {
        let dir = self.entry_dir(key);
        let record: Option<ArtifactRecord> = read_record(&dir.join(RECORD_FILE))?;
        Ok(record.map(|record| Artifact {
            dir,
            record,
            reused: true,
        }))
    }

    /// The complete entry for `key` (recording the use), or `None`.
    pub fn get(
        &self,
        key: &ArtifactKey,
        user: Option<&str>,
    ) -> Result<Option<Artifact>, CacheError> {
        if self.peek(key)?.is_none() {
            return Ok(None);
        }
        let _lock = EntryLock::acquire(&self.root.lock_path(&key.to_hex()))?;
        self.touch(key, user)
    }

    /// The entry for `key`, running `build` to make it if it is missing. Across processes `build` runs at
    /// most once per key at a time; a process that waited reuses the winner's entry.
    pub fn get_or_build<E>(
        &self,
        key: &ArtifactKey,
        spec: ArtifactSpec,
        build: impl FnOnce(&mut Staging) -> Result<(), E>,
    ) -> Result<Artifact, CacheError>
    where
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let hex = key.to_hex();
        self.root.create_dirs()?;
        let _lock = EntryLock::acquire(&self.root.lock_path(&hex))?;
        if let Some(a) = self.touch(key, spec.user.as_deref())? {
            return Ok(a);
        }
        // Staging folders of this key belong to killed builders: we hold the key's lock.
        self.remove_stale_staging(&hex)?;
        let staging_dir = self
            .root
            .artifacts_dir()
            .join(format!(".staging-{hex}.{}", fsutil::unique_suffix()));
        crate::private::private_dir(&staging_dir).at(&staging_dir)?;
        let result = self.build_in(key, spec, &staging_dir, build);
        if result.is_err() {
            let _ = fs::remove_dir_all(&staging_dir);
        }
        result
    }

    fn build_in<E>(
        &self,
        key: &ArtifactKey,
        spec: ArtifactSpec,
        staging_dir: &Path,
        build: impl FnOnce(&mut Staging) -> Result<(), E>,
    ) -> Result<Artifact, CacheError>
    where
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut staging = Staging {
            dir: staging_dir.to_owned(),
            hashed: BTreeMap::new(),
        };
        build(&mut staging).map_err(|e| CacheError::Builder {
            key: key.to_hex(),
            source: e.into(),
        })?;
        let mut outputs = BTreeMap::new();
        for rel in list_files(staging_dir)? {
            let path = staging_dir.join(&rel);
            // Tools (qemu-img, cp, xorriso) create files with the umask's mode.
            crate::private::private_file(&path).at(&path)?;
            let out = match staging.hashed.remove(&rel) {
                Some(known) => known,
                None => {
                    // Written by an external tool: hash it now, and make it durable.
                    File::open(&path).at(&path)?.sync_all().at(&path)?;
                    let (size, digests) = hash_file(&path, &RECORD_ALGOS).at(&path)?;
                    OutputRecord {
                        size,
                        digests,
                        backing: None,
                    }
                }
            };
            outputs.insert(rel, out);
        }
        if outputs.is_empty() {
            return Err(CacheError::EmptyArtifact { key: key.to_hex() });
        }
        let names: Vec<String> = outputs.keys().cloned().collect();
        let (refs, _) = crate::chain::refs_of(&self.root, staging_dir, &names);
        for r in refs {
            if let (Some(entry), Some(file)) = (&r.entry, &r.entry_file)
                && let Some(sha256) = entry_sha256(&self.root, entry, file)
                && let Some(out) = outputs.get_mut(&r.file)
            {
                out.backing = Some(BackingRecord {
                    entry: entry.clone(),
                    file: file.clone(),
                    sha256,
                });
            }
        }
        let now = now_secs();
        let record = ArtifactRecord {
            format: FORMAT,
            key: *key,
            kind: spec.kind,
            inputs: spec.inputs,
            outputs,
            tools: spec.tools,
            created: now,
            last_used: now,
            users: spec.user.into_iter().collect(),
        };
        let record_path = staging_dir.join(RECORD_FILE);
        fsutil::write_atomic(
            &record_path,
            &serde_json::to_vec_pretty(&record).expect("serialise"),
        )?;
        let dir = self.entry_dir(key);
        fs::rename(staging_dir, &dir).at(&dir)?;
        fsutil::sync_parent(&dir)?;
        Ok(Artifact {
            dir,
            record,
            reused: false,
        })
    }

    /// Updates last use and users of a complete entry (caller holds the lock).
    fn touch(&self, key: &ArtifactKey, user: Option<&str>) -> Result<Option<Artifact>, CacheError> {
        let Some(mut a) = self.peek(key)? else {
            return Ok(None);
        };
        a.record.last_used = now_secs();
        if let Some(u) = user {
            a.record.users.insert(u.to_owned());
        }
        let path = a.dir.join(RECORD_FILE);
        fsutil::write_atomic(
            &path,
            &serde_json::to_vec_pretty(&a.record).expect("serialise"),
        )?;
        Ok(Some(a))
    }

    fn remove_stale_staging(&self, hex: &str) -> Result<(), CacheError> {
        let dir = self.root.artifacts_dir();
        let prefix = format!(".staging-{hex}.");
        for entry in fs::read_dir(&dir).at(&dir)? {
            let entry = entry.at(&dir)?;
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                fs::remove_dir_all(entry.path()).at(entry.path())?;
            }
        }
        Ok(())
    }
}

/// Creates (truncates) `path` with mode `0600`.
fn private_create(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(crate::private::FILE_MODE)
        .open(path)?;
    crate::private::private_file(path)?;
    Ok(file)
}

/// The sha256 of `file` in entry `entry` (an artifact key or a `_base` name) as its record gives it.
pub(crate) fn entry_sha256(root: &CacheRoot, entry: &str, file: &str) -> Option<String> {
    if entry.len() == 64 {
        let record: ArtifactRecord =
            read_record(&root.artifacts_dir().join(entry).join(RECORD_FILE)).ok()??;
        record.outputs.get(file)?.digests.sha256.clone()
    } else {
        let record: crate::base::BaseRecord =
            read_record(&root.base_meta_dir().join(format!("{entry}.json"))).ok()??;
        record.digests.sha256.clone()
    }
}

/// Relative paths of the regular files under `dir`, sorted; the record is not an output.
pub(crate) fn list_files(dir: &Path) -> Result<Vec<String>, CacheError> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), CacheError> {
        for entry in fs::read_dir(dir).at(dir)? {
            let entry = entry.at(dir)?;
            let path = entry.path();
            let ty = entry.file_type().at(&path)?;
            if ty.is_dir() {
                walk(base, &path, out)?;
            } else if ty.is_file() {
                let rel = path.strip_prefix(base).expect("under base");
                let rel = rel.to_string_lossy().into_owned();
                if rel != RECORD_FILE {
                    out.push(rel);
                }
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn key(n: u8) -> ArtifactKey {
        ArtifactKey::from_bytes([n; 32])
    }

    #[test]
    fn keys_round_trip_through_hex_and_reject_anything_else() {
        let k = key(0xab);
        assert_eq!(k.to_hex().parse::<ArtifactKey>().unwrap(), k);
        assert!("AB".repeat(32).parse::<ArtifactKey>().is_err());
        assert!("ab".repeat(31).parse::<ArtifactKey>().is_err());
        assert_eq!(
            "zz".parse::<ArtifactKey>().unwrap_err().to_string(),
            "invalid artifact key `zz`: expected 64 lowercase hex characters"
        );
    }

    #[test]
    fn a_built_entry_is_reused_and_its_record_describes_the_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::new(CacheRoot::new(dir.path()));
        let spec = ArtifactSpec {
            kind: "test".into(),
            inputs: [("iso".to_owned(), "sha256:00".to_owned())].into(),
            tools: [("qemu-img".to_owned(), "7.2".to_owned())].into(),
            user: Some("win11".into()),
        };
        let built = store
            .get_or_build(&key(1), spec.clone(), |s| -> io::Result<()> {
                let mut w = s.create("disk.raw")?;
                w.write_all(b"abc")?;
                s.commit_writer("disk.raw", w)?;
                fs::write(s.path("external.txt"), b"from a tool")
            })
            .unwrap();
        assert!(!built.reused);
        let rec = &built.record;
        assert_eq!(rec.outputs.len(), 2);
        assert_eq!(
            rec.outputs["disk.raw"].digests.md5.as_deref(),
            Some("900150983cd24fb0d6963f7d28e17f72")
        );
        assert_eq!(rec.outputs["external.txt"].size, 11);
        assert_eq!(fs::read(built.output("disk.raw")).unwrap(), b"abc");

        let again = store
            .get_or_build(&key(1), spec, |_| -> io::Result<()> {
                panic!("the builder ran for a cached key")
            })
            .unwrap();
        assert!(again.reused);
        assert_eq!(again.record.outputs, built.record.outputs);
    }

    #[test]
    fn a_failed_build_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::new(CacheRoot::new(dir.path()));
        let err = store
            .get_or_build(&key(2), ArtifactSpec::default(), |s| {
                fs::write(s.path("half"), b"x")?;
                Err(io::Error::other("boom"))
            })
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("the artifact builder for `{}` failed", key(2))
        );
        assert!(store.peek(&key(2)).unwrap().is_none());
        let left: Vec<_> = fs::read_dir(dir.path().join("artifacts-v1"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "leftovers: {left:?}");
    }
}
