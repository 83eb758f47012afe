//! kiln-glance: publish images to Glance and fetch them from it, authenticated the way OpenStack
//! users expect.
//!
//! - [`config`]: `clouds.yaml` + `secure.yaml` on the standard search path, `OS_CLOUD`, `OS_*`.
//! - [`keystone`]: Keystone v3 password and application-credential auth, token reuse and
//!   refresh, the service catalog.
//! - [`glance`]: the Glance v2 calls kiln makes (create, get, list, patch, delete, upload, download).
//! - [`publish`]: create + streamed upload with md5 + sha512 in the same pass, verification against
//!   Glance's record, dedup by `os_hash_value`, cleanup of half-made images.
//! - [`download`]: Glance as a source, verified while streaming, nothing left behind on mismatch.
//! - [`cancel`]: the Ctrl-C flag checked by every transfer.
//! - [`stall`]: a download that receives nothing for too long fails.
//! - [`marker`]: the uploader marker and the stale-image rule.
//! - [`tool`]: the `kiln-glance` plumbing binary used by tests and `just bench-glance`.

mod body;
pub mod cancel;
pub mod config;
pub mod download;
pub mod error;
pub mod glance;
pub mod keystone;
pub mod marker;
pub mod publish;
pub mod secret;
/// Moved to kiln-cache, which fetches sources with it too.
pub use kiln_cache::stall;
mod time;
pub mod tool;
mod yaml;

#[cfg(test)]
#[path = "../../../tests/fuzz/mutate.rs"]
mod fuzz_mutate;
#[cfg(test)]
mod fuzz_tests;

pub use cancel::Cancel;
pub use config::{AuthMethod, CloudConfig, ConfigError, ConfigSources, ConfigWarning, Interface};
pub use download::{Downloaded, VerifiedStream, download, open_verified};
pub use error::Error;
pub use glance::{Glance, Image, ImageSpec, Visibility};
pub use keystone::Session;
pub use publish::{
    Action, NamePolicy, PublishOutcome, PublishRequest, UploadMethod, UploadProgress, publish,
};
pub use secret::Secret;
