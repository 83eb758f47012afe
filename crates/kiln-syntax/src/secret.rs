//! References to secrets (passwords, product keys): an environment variable or a file, never a value.
//!
//! The model only holds the reference. [`SecretRef::resolve`] reads the value when a later stage
//! really needs it (writing answer media); the value type redacts itself in `Debug` and `Display`.

use std::fmt;

use crate::model::LocalPath;
use crate::span::{Span, Spanned};

/// Where a secret's value lives.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum SecretRef {
    /// `env="NAME"`: an environment variable of the kiln process.
    Env(Spanned<String>),
    /// `file="path"`: a file relative to the pipeline file; one trailing newline is dropped.
    File(LocalPath),
}

impl SecretRef {
    /// The span of the reference.
    pub fn span(&self) -> Span {
        match self {
            SecretRef::Env(name) => name.span,
            SecretRef::File(path) => path.span,
        }
    }

    /// Reads the secret's value.
    pub fn resolve(&self) -> Result<SecretValue, SecretError> {
        match self {
            SecretRef::Env(name) => match std::env::var(&name.value) {
                Ok(value) => Ok(SecretValue(value)),
                Err(_) => Err(SecretError::MissingEnv(name.value.clone())),
            },
            SecretRef::File(path) => match std::fs::read_to_string(&path.resolved) {
                Ok(mut value) => {
                    if value.ends_with('\n') {
                        value.pop();
                        if value.ends_with('\r') {
                            value.pop();
                        }
                    }
                    Ok(SecretValue(value))
                }
                Err(source) => Err(SecretError::File {
                    path: path.resolved.display().to_string(),
                    source,
                }),
            },
        }
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(name) => write!(f, "env:{}", name.value),
            SecretRef::File(path) => write!(f, "file:{}", path.written),
        }
    }
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretRef({self})")
    }
}

/// A secret's value. `Debug` and `Display` print `<redacted>`; use [`SecretValue::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    /// Wraps a value read from where the secret lives.
    #[must_use]
    pub fn new(value: impl Into<String>) -> Self {
        SecretValue(value.into())
    }

    /// The value, for writing it where it belongs (answer media) and nowhere else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The environment variable is not set (or not UTF-8).
    #[error("environment variable `{0}` is not set")]
    MissingEnv(String),
    /// The file could not be read.
    #[error("cannot read secret file `{path}`")]
    File {
        /// The resolved path.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::FileId;

    #[test]
    fn secret_values_never_print() {
        let value = SecretValue("hunter2".into());
        assert_eq!(
            format!("{value:?} {value}"),
            "SecretValue(<redacted>) <redacted>"
        );
        assert_eq!(value.expose(), "hunter2");
    }

    #[test]
    fn references_print_only_where_the_secret_lives() {
        let span = Span::new(FileId(0), 0, 1);
        let r = SecretRef::Env(Spanned::new("WIN_PW".into(), span));
        assert_eq!(format!("{r} {r:?}"), "env:WIN_PW SecretRef(env:WIN_PW)");
    }
}
