//! The planner's two questions to the outside world, as narrow traits: "what is in this local
//! file?" (for keys) and "is this key's output cached?" (for `kiln plan`'s marking).
//!
//! The planner itself does no I/O; the CLI implements these with kiln-cache (hash memo, artifact
//! store), tests with fakes.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use crate::key::StepKey;

/// Content digests of local files (answer files, file sources, local ISOs without a checksum).
pub trait ContentDigest {
    /// Lowercase hex sha256 of the file's bytes.
    fn sha256(&self, path: &Path) -> io::Result<String>;
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
}

impl ContentDigest for FakeDigests {
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
