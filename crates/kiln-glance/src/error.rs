//! The one error type of kiln-glance. Messages are lowercase, values in backticks, and never
//! contain a secret (tokens and passwords are [`crate::Secret`]s, which do not print).

use std::path::PathBuf;

use crate::config::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),

    #[error("cannot read the CA bundle `{path}`")]
    CaCert {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("the CA bundle `{path}` holds no usable PEM certificate")]
    CaCertInvalid {
        path: PathBuf,
        #[source]
        source: reqwest::Error,
    },

    #[error(
        "keystone at `{auth_url}` refused the credentials of cloud `{cloud}` ({status}): {message}"
    )]
    AuthFailed {
        cloud: String,
        auth_url: String,
        status: u16,
        message: String,
    },

    #[error(
        "no `{service}` endpoint with interface `{interface}`{region} in the catalog (it has: {available})"
    )]
    NoEndpoint {
        service: String,
        interface: String,
        /// ` in region `X`` or empty.
        region: String,
        available: String,
    },

    #[error("{method} `{url}` failed: cannot connect or the connection broke")]
    Transport {
        method: &'static str,
        url: String,
        #[source]
        source: reqwest::Error,
    },

    #[error("{method} `{url}` was redirected to `{to}`, which kiln does not follow: {why}")]
    RedirectRefused {
        method: &'static str,
        url: String,
        to: String,
        why: String,
    },

    #[error(
        "{method} `{url}` answered with more than {limit} bytes; kiln reads at most that much of an API answer"
    )]
    BodyTooLarge {
        method: &'static str,
        url: String,
        limit: u64,
    },

    #[error("{method} `{url}` answered {status}: {message}")]
    Http {
        method: &'static str,
        url: String,
        status: u16,
        message: String,
    },

    #[error("unexpected answer from {method} `{url}`: {message}")]
    Protocol {
        method: &'static str,
        url: String,
        message: String,
    },

    #[error(
        "glance rejected the data of image `{name}` as disk format `{disk_format}` (415): {message}"
    )]
    FormatRejected {
        name: String,
        disk_format: String,
        message: String,
    },

    #[error("{what} mismatch for {subject}: expected `{expected}`, got `{actual}`")]
    Mismatch {
        what: &'static str,
        subject: String,
        expected: String,
        actual: String,
    },

    #[error("image `{id}` is `{status}` after its upload, not `active`")]
    NotActive { id: String, status: String },

    #[error(
        "glance hashed image `{id}` with `{algo}`; kiln verifies `sha512` (set `hashing_algorithm = sha512`)"
    )]
    UnsupportedHashAlgo { id: String, algo: String },

    #[error("image `{id}` has no `{field}` in glance, so its data cannot be verified")]
    Unverifiable { id: String, field: &'static str },

    #[error("glance does not offer the `{method}` import (it offers: {offered})")]
    ImportUnavailable {
        method: &'static str,
        offered: String,
    },

    #[error(
        "glance could not import the data of image `{id}` (now `{status}`): {message} (glance's log has the cause; data that is not `{disk_format}` is one)"
    )]
    ImportFailed {
        id: String,
        status: String,
        message: String,
        disk_format: String,
    },

    #[error("image `{id}` is still `{status}` {waited} s after its import was started")]
    ImportTimeout {
        id: String,
        status: String,
        waited: u64,
    },

    #[error("invalid image property `{key}`: {reason}")]
    InvalidProperty { key: String, reason: String },

    #[error("cancelled")]
    Cancelled,

    #[error("{path}: {action} failed")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "{cause}; glance may have made a `queued` image named `{name}` anyway, and looking for it failed: {lookup_error} (delete it with `openstack image list --name {name} --status queued` and `openstack image delete ID`)"
    )]
    CreateUnclear {
        name: String,
        cause: Box<Error>,
        lookup_error: Box<Error>,
    },

    #[error(
        "{cause}; and deleting the half-made image `{id}` failed too: {delete_error} (delete it with `openstack image delete {id}`)"
    )]
    CleanupFailed {
        id: String,
        cause: Box<Error>,
        delete_error: Box<Error>,
    },
}

impl Error {
    /// True for an interrupted transfer (Ctrl-C), which callers report with exit status 130.
    pub fn is_cancelled(&self) -> bool {
        match self {
            Error::Cancelled => true,
            Error::CleanupFailed { cause, .. } | Error::CreateUnclear { cause, .. } => {
                cause.is_cancelled()
            }
            _ => false,
        }
    }
}
