//! Secrets: the administrator password and the product key.
//!
//! The image description ([`crate::WindowsImage`]) only ever holds a [`SecretRef`] — a name such as
//! `admin-password` that the executor resolves from the environment or a file. Values live in
//! [`Secrets`], which is passed to the render functions as a separate argument through
//! [`SecretSource`]. Plans and step keys are computed from renders with [`SecretSource::Placeholders`],
//! so they never see a value. Neither [`SecretValue`] nor [`Secrets`] prints a value in `Debug`, and
//! neither implements `Display`.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::ModelError;

/// The name of a secret, never its value. Shown in plans and diagnostics.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct SecretRef(String);

impl SecretRef {
    /// A name of ASCII letters, digits, `-`, `_` and `.`; 1–64 characters.
    pub fn new(name: impl Into<String>) -> Result<Self, ModelError> {
        let name = name.into();
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if ok {
            Ok(Self(name))
        } else {
            Err(ModelError::SecretName { name })
        }
    }

    pub fn name(&self) -> &str {
        &self.0
    }

    /// The text rendered in place of the value when no values are given.
    pub fn placeholder(&self) -> String {
        format!("KILN-SECRET({})", self.0)
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A secret value. `Debug` prints `<redacted>`; there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that writes it: the answer media.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

/// Secret values by name, resolved by the executor right before it writes the answer media.
#[derive(Clone, Default)]
pub struct Secrets {
    values: BTreeMap<String, SecretValue>,
}

impl Secrets {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, name: &SecretRef, value: SecretValue) {
        self.values.insert(name.0.clone(), value);
    }

    pub fn get(&self, name: &SecretRef) -> Option<&SecretValue> {
        self.values.get(&name.0)
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("names", &self.values.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// What a render writes where a secret goes.
#[derive(Clone, Copy, Debug)]
pub enum SecretSource<'a> {
    /// `KILN-SECRET(<name>)`: for plans, step keys, previews and snapshots.
    Placeholders,
    /// The real values: only for the answer media of one install.
    Values(&'a Secrets),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_a_value() {
        let name = SecretRef::new("admin-password").unwrap();
        let mut secrets = Secrets::new();
        secrets.insert(&name, SecretValue::new("hunter2-Very-Secret"));
        let debug = format!("{secrets:?} {:?}", secrets.get(&name).unwrap());
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("admin-password"), "{debug}");
    }

    #[test]
    fn secret_names_are_restricted_to_a_plain_alphabet() {
        assert!(SecretRef::new("admin-password").is_ok());
        assert!(SecretRef::new("").is_err());
        assert!(SecretRef::new("a b").is_err());
        assert!(SecretRef::new("x<y").is_err());
    }
}
