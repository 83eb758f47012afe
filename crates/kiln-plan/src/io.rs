//! The planner's questions to the outside world, as narrow traits: "what is in this local
//! file?" (for keys), "is this key's output cached?" (for `kiln plan`'s marking) and "what is on
//! this local CD image?" (for the plan-time media checks).
//!
//! The planner itself does no I/O; the CLI implements these with kiln-cache (hash memo, artifact
//! store), tests with fakes.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use kiln_syntax::diagnostic::Diagnostic;
use kiln_syntax::secret::SecretRef;
use kiln_unattend::IsoTree;

use crate::key::StepKey;

/// Content digests of local files (answer files, file sources, local ISOs without a checksum).
pub trait ContentDigest {
    /// Lowercase hex sha256 of the file's bytes.
    fn sha256(&self, path: &Path) -> io::Result<String>;

    /// HMAC-SHA256 of a secret's value under the cache's secret key (kiln-cache's
    /// `CacheRoot::secret_mac`), so that a rotated secret changes the keys of the steps it shapes
    /// while neither the value nor a plain hash of it is ever keyed. `None` when there is no cache
    /// or the secret cannot be read now (then the key holds the reference only, and the build
    /// fails where the secret is needed).
    fn secret_mac(&self, _secret: &SecretRef) -> Option<[u8; 32]> {
        None
    }
}

/// Whether a step's output is already in the artifact store.
pub trait CacheQuery {
    /// True when a complete entry for `key` exists.
    fn is_cached(&self, key: &StepKey) -> bool;
}

/// A cache that holds nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoCache;

impl CacheQuery for NoCache {
    fn is_cached(&self, _key: &StepKey) -> bool {
        false
    }
}

/// A fake for tests: digests by file name (the last path component), so the same file in two
/// checkouts has the same digest; unknown names are "not found".
#[derive(Clone, Debug, Default)]
pub struct FakeDigests {
    by_name: BTreeMap<String, String>,
    macs: BTreeMap<String, [u8; 32]>,
}

impl FakeDigests {
    /// No files.
    pub fn new() -> Self {
        FakeDigests::default()
    }

    /// Adds a file whose content is `content` (its digest is a real sha256 of it).
    #[must_use]
    pub fn with(mut self, file_name: &str, content: &str) -> Self {
        use sha2::{Digest, Sha256};
        self.by_name.insert(
            file_name.to_string(),
            hex::encode(Sha256::digest(content.as_bytes())),
        );
        self
    }

    /// Gives the secret referenced as `identity` (`env:NAME`) the keyed digest `mac`.
    #[must_use]
    pub fn with_secret_mac(mut self, identity: &str, mac: [u8; 32]) -> Self {
        self.macs.insert(identity.to_string(), mac);
        self
    }
}

impl ContentDigest for FakeDigests {
    fn secret_mac(&self, secret: &SecretRef) -> Option<[u8; 32]> {
        self.macs.get(&secret.to_string()).copied()
    }

    fn sha256(&self, path: &Path) -> io::Result<String> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.by_name.get(&name).cloned().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no such file: {}", path.display()),
            )
        })
    }
}

/// A fake cache holding a fixed set of keys.
#[derive(Clone, Debug, Default)]
pub struct FakeCache(pub Vec<StepKey>);

impl CacheQuery for FakeCache {
    fn is_cached(&self, key: &StepKey) -> bool {
        self.0.contains(key)
    }
}

/// The directory trees of local CD images, for the plan-time checks.
pub trait MediaInspector {
    /// The tree of the CD image at `path`; `Ok(None)` when there is no such file (it is then not
    /// checked); `Err` when the file exists but its directory tree cannot be read.
    fn tree(&self, path: &Path) -> Result<Option<IsoTree>, String>;
}

/// An inspector that finds no media: nothing is checked.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoMedia;

impl MediaInspector for NoMedia {
    fn tree(&self, _path: &Path) -> Result<Option<IsoTree>, String> {
        Ok(None)
    }
}

/// A fake for tests: trees by file name (the last path component); unknown names are absent.
#[derive(Clone, Debug, Default)]
pub struct FakeMedia {
    by_name: BTreeMap<String, Result<IsoTree, String>>,
}

impl FakeMedia {
    /// No media.
    pub fn new() -> Self {
        FakeMedia::default()
    }

    /// A CD image named `file_name` holding `entries` (`path`, `is_dir`).
    #[must_use]
    pub fn with<'a>(
        mut self,
        file_name: &str,
        entries: impl IntoIterator<Item = (&'a str, bool)>,
    ) -> Self {
        self.by_name
            .insert(file_name.to_owned(), Ok(IsoTree::from_entries(entries)));
        self
    }

    /// A file named `file_name` whose tree cannot be read.
    #[must_use]
    pub fn unreadable(mut self, file_name: &str, error: &str) -> Self {
        self.by_name
            .insert(file_name.to_owned(), Err(error.to_owned()));
        self
    }
}

impl MediaInspector for FakeMedia {
    fn tree(&self, path: &Path) -> Result<Option<IsoTree>, String> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match self.by_name.get(&name) {
            Some(Ok(tree)) => Ok(Some(tree.clone())),
            Some(Err(e)) => Err(e.clone()),
            None => Ok(None),
        }
    }
}

/// What a plan-time media check found (`windows::check_windows_media`,
/// `installer::check_installer_media`).
#[derive(Clone, Debug, Default)]
pub struct MediaReport {
    /// Errors, located at the pipeline node that causes them.
    pub diagnostics: Vec<Diagnostic>,
    /// One line each: what was checked, what was not, where each language comes from.
    pub notes: Vec<String>,
}
