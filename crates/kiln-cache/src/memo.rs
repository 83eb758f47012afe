//! Hash memo: a file that was hashed is not hashed again while its identity is unchanged.
//!
//! The identity is (device, inode, size, mtime, ctime) in nanoseconds, as git's index and cargo's
//! fingerprints use. One small JSON file per hashed path, `memo-v1/<sha1(absolute path)>.json`, written
//! atomically, so concurrent processes need no lock (the last writer wins, and both wrote the truth).
//!
//! Racy entries: file timestamps come from a coarse kernel clock, so a file changed in the same clock tick
//! it was hashed in could keep its identity. An entry is stored only when the file's ctime is older than
//! the moment hashing started minus [`RACY_MARGIN`]; any later change then gets a newer ctime. A file
//! changed within that margin is simply hashed again next time.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

use crate::error::{CacheError, IoContext};
use crate::fsutil;
use crate::hash::{Algo, Digests, hash_file};

/// How much older than the start of hashing a file's ctime must be for its entry to be stored. Larger
/// than the kernel's coarse clock tick (at most 10 ms with HZ=100).
pub const RACY_MARGIN: Duration = Duration::from_millis(20);

const FORMAT: u32 = 1;

/// What identifies one version of a file's content without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileIdentity {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

impl FileIdentity {
    pub fn of(meta: &fs::Metadata) -> Self {
        FileIdentity {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        }
    }

    pub fn stat(path: &Path) -> Result<Self, CacheError> {
        Ok(Self::of(&fs::metadata(path).at(path)?))
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct MemoEntry {
    format: u32,
    path: PathBuf,
    identity: FileIdentity,
    digests: Digests,
}

/// The result of [`HashMemo::hash`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hashed {
    pub size: u64,
    pub digests: Digests,
    pub identity: FileIdentity,
    /// True when the digests came from the memo and the file was not read.
    pub from_memo: bool,
}

/// The memo folder of a cache.
#[derive(Clone, Debug)]
pub struct HashMemo {
    dir: PathBuf,
}

impl HashMemo {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        HashMemo { dir: dir.into() }
    }

    /// The digests `algos` of the file at `path`, from the memo when its identity is unchanged.
    pub fn hash(&self, path: &Path, algos: &[Algo]) -> Result<Hashed, CacheError> {
        let abs = std::path::absolute(path).at(path)?;
        let before = FileIdentity::stat(&abs)?;
        let entry_path = self.entry_path(&abs);
        let known = self.read(&entry_path, &abs, before);
        if let Some(known) = &known
            && known.covers(algos)
        {
            return Ok(Hashed {
                size: before.size,
                digests: known.clone(),
                identity: before,
                from_memo: true,
            });
        }
        let started = SystemTime::now();
        let (size, mut digests) = hash_file(&abs, algos).at(&abs)?;
        let after = FileIdentity::stat(&abs)?;
        if let Some(known) = known {
            digests.merge(&known);
        }
        if after == before && size == after.size && !is_racy(after, started) {
            self.store(&entry_path, &abs, after, &digests)?;
        }
        Ok(Hashed {
            size,
            digests,
            identity: after,
            from_memo: false,
        })
    }

    /// Records digests computed elsewhere (e.g. while the file was written) for a file whose identity
    /// was `identity` when the digests were known to be right. Racy identities are not stored.
    pub fn remember(
        &self,
        path: &Path,
        identity: FileIdentity,
        digests: &Digests,
    ) -> Result<(), CacheError> {
        let abs = std::path::absolute(path).at(path)?;
        if FileIdentity::stat(&abs)? != identity
            || is_racy(identity, SystemTime::now() - RACY_MARGIN)
        {
            return Ok(());
        }
        self.store(&self.entry_path(&abs), &abs, identity, digests)
    }

    fn entry_path(&self, abs: &Path) -> PathBuf {
        let key = hex::encode(Sha1::digest(abs.as_os_str().as_encoded_bytes()));
        self.dir.join(format!("{key}.json"))
    }

    /// The memoised digests for `abs` if its identity still matches.
    fn read(&self, entry_path: &Path, abs: &Path, now: FileIdentity) -> Option<Digests> {
        let bytes = fs::read(entry_path).ok()?;
        let entry: MemoEntry = serde_json::from_slice(&bytes).ok()?;
        (entry.format == FORMAT && entry.path == abs && entry.identity == now)
            .then_some(entry.digests)
    }

    fn store(
        &self,
        entry_path: &Path,
        abs: &Path,
        identity: FileIdentity,
        digests: &Digests,
    ) -> Result<(), CacheError> {
        crate::private::private_dir(&self.dir).at(&self.dir)?;
        let entry = MemoEntry {
            format: FORMAT,
            path: abs.to_owned(),
            identity,
            digests: digests.clone(),
        };
        let json = serde_json::to_vec_pretty(&entry).expect("memo entries serialise");
        fsutil::write_atomic(entry_path, &json)
    }
}

/// True when a change right after `started` could leave the identity as it is.
fn is_racy(identity: FileIdentity, started: SystemTime) -> bool {
    let started_ns = started
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    let margin = RACY_MARGIN.as_nanos() as i128;
    identity.ctime_ns.max(identity.mtime_ns) >= started_ns - margin
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn settle() {
        std::thread::sleep(RACY_MARGIN * 2);
    }

    #[test]
    fn unchanged_file_is_served_from_the_memo_and_a_changed_one_is_rehashed() {
        let dir = tempfile::tempdir().unwrap();
        let memo = HashMemo::new(dir.path().join("memo"));
        let file = dir.path().join("iso");
        fs::write(&file, b"first").unwrap();
        settle();
        let one = memo.hash(&file, &[Algo::Sha256]).unwrap();
        assert!(!one.from_memo);
        let two = memo.hash(&file, &[Algo::Sha256]).unwrap();
        assert!(two.from_memo, "an unchanged file was hashed again");
        assert_eq!(one.digests, two.digests);

        // Same size, new content: the identity (mtime/ctime) changes, so it must be hashed again.
        fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .unwrap()
            .write_all(b"other")
            .unwrap();
        settle();
        let three = memo.hash(&file, &[Algo::Sha256]).unwrap();
        assert!(!three.from_memo);
        assert_ne!(three.digests, one.digests);
        assert_eq!(
            three.digests,
            hash_file(&file, &[Algo::Sha256]).unwrap().1,
            "the memo returned a stale digest"
        );
    }

    #[test]
    fn asking_for_a_new_algorithm_hashes_again_and_keeps_the_old_digests() {
        let dir = tempfile::tempdir().unwrap();
        let memo = HashMemo::new(dir.path().join("memo"));
        let file = dir.path().join("f");
        fs::write(&file, b"abc").unwrap();
        settle();
        memo.hash(&file, &[Algo::Md5]).unwrap();
        let both = memo.hash(&file, &[Algo::Sha1]).unwrap();
        assert!(!both.from_memo);
        let again = memo.hash(&file, &[Algo::Md5, Algo::Sha1]).unwrap();
        assert!(again.from_memo);
        assert!(again.digests.covers(&[Algo::Md5, Algo::Sha1]));
    }

    #[test]
    fn a_file_changed_within_the_clock_margin_is_racy() {
        // Guards the racy-git case: a change in the same clock tick could keep the identity.
        let now = SystemTime::now();
        let ns = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_nanos() as i128;
        let id = |ctime: SystemTime| FileIdentity {
            dev: 1,
            ino: 2,
            size: 3,
            mtime_ns: ns(ctime) - 5_000_000_000,
            ctime_ns: ns(ctime),
        };
        assert!(is_racy(id(now), now));
        assert!(is_racy(id(now - RACY_MARGIN / 2), now));
        assert!(!is_racy(id(now - RACY_MARGIN * 2), now));
    }
}
