//! The error type of every cache operation.

use std::io;
use std::path::PathBuf;

use crate::hash::Algo;

/// What can go wrong in the cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(
        "checksum mismatch for `{origin}`: expected {algo} `{expected}`, got `{actual}`; nothing was cached"
    )]
    ChecksumMismatch {
        origin: String,
        algo: Algo,
        expected: String,
        actual: String,
    },

    #[error(
        "invalid checksum `{0}`: expected `<algo>:<hex>` with algo `md5`, `sha1`, `sha256` or `sha512`"
    )]
    BadChecksum(String),

    #[error("invalid artifact key `{0}`: expected 64 lowercase hex characters")]
    BadKey(String),

    #[error("invalid source url `{url}`")]
    BadUrl {
        url: String,
        #[source]
        source: url::ParseError,
    },

    #[error("unsupported url scheme `{scheme}` in `{url}` (expected `http`, `https` or `file`)")]
    UnsupportedScheme { url: String, scheme: String },

    #[error("cannot find a cache directory: set `KILN_CACHE_DIR`, `XDG_CACHE_HOME` or `HOME`")]
    NoCacheDir,

    #[error("i/o error on `{path}`")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("fetching `{url}` failed")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },

    #[error("fetching `{url}` failed: the server answered `{status}`")]
    HttpStatus { url: String, status: u16 },

    #[error("reading source `{origin}` failed")]
    Source {
        origin: String,
        #[source]
        source: io::Error,
    },

    #[error("source `{origin}` changed while it was being copied into the cache")]
    SourceChanged { origin: String },

    #[error("cannot run `{program}`")]
    Spawn {
        program: String,
        #[source]
        source: io::Error,
    },

    #[error("`{command}` failed ({status}): {stderr}")]
    Tool {
        command: String,
        status: String,
        stderr: String,
    },

    #[error("cannot read the output of `{command}`: {detail}")]
    ToolOutput { command: String, detail: String },

    #[error("`{origin}` is a `{actual}` image, but the source declares `{declared}`")]
    FormatMismatch {
        origin: String,
        declared: String,
        actual: String,
    },

    #[error("`{origin}` refers to another file (`{what}`); refusing to cache it")]
    UnsafeImage { origin: String, what: String },

    #[error(
        "overlay `{}` names backing `{found}`, not the `{expected}` kiln gave it; refusing to use it",
        overlay.display()
    )]
    UnexpectedBacking {
        overlay: PathBuf,
        expected: String,
        found: String,
    },

    #[error(
        "`{origin}` is a `{format}` image; kiln reads only `raw` and `qcow2` disk images (other formats can name further files, as vmdk extents do)"
    )]
    UnsupportedImageFormat { origin: String, format: String },

    #[error(
        "disk size `{requested}` bytes is smaller than the image's virtual size `{virtual_size}` bytes"
    )]
    DiskSmallerThanImage { requested: u64, virtual_size: u64 },

    #[error("the artifact builder for `{key}` wrote no output")]
    EmptyArtifact { key: String },

    #[error("record `{path}` cannot be read; help: `kiln cache prune` removes the damaged entry")]
    Record {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("the artifact builder for `{key}` failed")]
    Builder {
        key: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// An error and its `source()` chain, `: `-separated.
pub(crate) fn chain_message(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    msg
}

/// Attaches a path to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T, CacheError>;
}

impl<T> IoContext<T> for Result<T, io::Error> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T, CacheError> {
        self.map_err(|source| CacheError::Io {
            path: path.into(),
            source,
        })
    }
}
