//! The cache root and its on-disk layout.
//!
//! ```text
//! <root>/
//!   _base/<sha1(source id)>          fetched sources, named and laid out as Nova's image cache
//!   _base/<name>.part, .converted    in-progress fetch / conversion (stray ones are pruned)
//!   base-meta-v1/<name>.json         kiln's record of a `_base` entry (source, digests, use times)
//!   artifacts-v1/<key>/              one complete step output: files + `record.json`
//!   artifacts-v1/.staging-<key>.*    an entry being built; renamed to `<key>` when complete
//!   artifacts-v1/.trash-<key>.*      an entry being deleted by prune
//!   memo-v1/<sha1(path)>.json        hash memo: file identity → digests
//!   locks/<prefix><name>             POSIX record locks, one per entry
//!   secret-key                       32 random bytes (0600): the HMAC key secrets are keyed by
//!   runs/<run id>/                   a build's logs, consoles and guest scratch files; `run.lock`
//!                                    is held while the build runs
//! ```

use std::env;
use std::path::{Path, PathBuf};

use crate::error::{CacheError, IoContext};

/// Lock file prefix used by default; Nova uses `nova-` (see [`CacheRoot::with_lock_prefix`]).
pub const DEFAULT_LOCK_PREFIX: &str = "kiln-";
/// Nova's lock prefix: a root using it is Nova's `instances_path`.
pub const NOVA_LOCK_PREFIX: &str = "nova-";

/// A cache directory.
#[derive(Clone, Debug)]
pub struct CacheRoot {
    path: PathBuf,
    lock_prefix: String,
}

impl CacheRoot {
    /// A cache at `path` (created on first use).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        CacheRoot {
            path: path.into(),
            lock_prefix: DEFAULT_LOCK_PREFIX.to_owned(),
        }
    }

    /// The default cache: `$KILN_CACHE_DIR`, else `$XDG_CACHE_HOME/kiln`, else `$HOME/.cache/kiln`.
    pub fn from_env() -> Result<Self, CacheError> {
        Self::resolve(|k| env::var_os(k)).map(Self::new)
    }

    /// The default cache directory, reading variables through `var` (testable without touching the
    /// process environment). Empty values count as unset, as the XDG spec asks.
    pub fn resolve(
        var: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<PathBuf, CacheError> {
        let set = |k: &str| var(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        if let Some(p) = set("KILN_CACHE_DIR") {
            return Ok(p);
        }
        if let Some(p) = set("XDG_CACHE_HOME").filter(|p| p.is_absolute()) {
            return Ok(p.join("kiln"));
        }
        if let Some(home) = set("HOME") {
            return Ok(home.join(".cache").join("kiln"));
        }
        Err(CacheError::NoCacheDir)
    }

    /// Uses `prefix` for lock files. With `nova-` and a root equal to Nova's `instances_path`, kiln and
    /// nova-compute take the same lock for the same `_base` entry.
    pub fn with_lock_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.lock_prefix = prefix.into();
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn lock_prefix(&self) -> &str {
        &self.lock_prefix
    }

    pub fn base_dir(&self) -> PathBuf {
        self.path.join("_base")
    }

    pub fn base_meta_dir(&self) -> PathBuf {
        self.path.join("base-meta-v1")
    }

    pub fn artifacts_dir(&self) -> PathBuf {
        self.path.join("artifacts-v1")
    }

    pub fn memo_dir(&self) -> PathBuf {
        self.path.join("memo-v1")
    }

    /// Run folders of builds (`runs/<run id>/`: logs, consoles, guest scratch files).
    pub fn runs_dir(&self) -> PathBuf {
        self.path.join("runs")
    }

    pub fn locks_dir(&self) -> PathBuf {
        self.path.join("locks")
    }

    /// The lock file guarding entry `name`.
    pub fn lock_path(&self, name: &str) -> PathBuf {
        self.locks_dir().join(format!("{}{name}", self.lock_prefix))
    }

    /// Creates the layout's folders, all `0700` (the root too: it holds built disks and logs).
    ///
    /// A root shared with Nova (lock prefix `nova-`) is Nova's `instances_path`: it, `_base` and
    /// `locks` are Nova's, and nova-compute and its guests need them as they are, so their modes are
    /// left alone; kiln's own folders are made private all the same.
    pub fn create_dirs(&self) -> Result<(), CacheError> {
        for dir in [self.path.clone(), self.base_dir(), self.locks_dir()] {
            if self.lock_prefix == NOVA_LOCK_PREFIX {
                std::fs::create_dir_all(&dir).at(&dir)?;
            } else {
                crate::private::private_dir(&dir).at(&dir)?;
            }
        }
        for dir in [self.base_meta_dir(), self.artifacts_dir(), self.memo_dir()] {
            crate::private::private_dir(&dir).at(&dir)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::ffi::OsString;

    fn resolve(vars: &[(&str, &str)]) -> Result<PathBuf, CacheError> {
        let vars: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        CacheRoot::resolve(|k| vars.get(k).cloned())
    }

    #[test]
    fn cache_dir_precedence_is_kiln_then_xdg_then_home() {
        let all = [
            ("KILN_CACHE_DIR", "/k"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(resolve(&all).unwrap(), PathBuf::from("/k"));
        assert_eq!(resolve(&all[1..]).unwrap(), PathBuf::from("/x/kiln"));
        assert_eq!(resolve(&all[2..]).unwrap(), PathBuf::from("/h/.cache/kiln"));
        // The XDG spec says empty or relative values are to be ignored.
        assert_eq!(
            resolve(&[
                ("KILN_CACHE_DIR", ""),
                ("XDG_CACHE_HOME", "rel"),
                ("HOME", "/h")
            ])
            .unwrap(),
            PathBuf::from("/h/.cache/kiln")
        );
        assert!(matches!(resolve(&[]), Err(CacheError::NoCacheDir)));
    }

    #[test]
    fn the_layout_is_private_but_a_root_shared_with_nova_keeps_novas_modes() {
        // Tightening Nova's instances_path would lock nova-compute's own guests out of their disks.
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let tmp = tempfile::tempdir().unwrap();
        let own = CacheRoot::new(tmp.path().join("own"));
        std::fs::create_dir(own.path()).unwrap();
        std::fs::set_permissions(own.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        own.create_dirs().unwrap();
        for d in [
            own.path().to_owned(),
            own.base_dir(),
            own.artifacts_dir(),
            own.locks_dir(),
        ] {
            assert_eq!(mode(&d), 0o700, "{}", d.display());
        }
        let nova = CacheRoot::new(tmp.path().join("nova")).with_lock_prefix(NOVA_LOCK_PREFIX);
        std::fs::create_dir_all(nova.base_dir()).unwrap();
        for d in [nova.path().to_owned(), nova.base_dir()] {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        nova.create_dirs().unwrap();
        assert_eq!(mode(nova.path()), 0o755);
        assert_eq!(mode(&nova.base_dir()), 0o755);
        assert_eq!(mode(&nova.artifacts_dir()), 0o700);
    }

    #[test]
    fn lock_files_are_named_like_novas() {
        let root = CacheRoot::new("/c");
        assert_eq!(root.lock_path("abc"), PathBuf::from("/c/locks/kiln-abc"));
        let nova = root.with_lock_prefix("nova-");
        assert_eq!(nova.lock_path("abc"), PathBuf::from("/c/locks/nova-abc"));
    }
}
