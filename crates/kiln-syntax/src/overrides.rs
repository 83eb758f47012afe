//! Variable values from outside the files: `--var name=value` and `KILN_VAR_<name>` environment
//! variables. The command line wins over the environment, which wins over defaults.

use std::collections::BTreeMap;

/// The environment prefix for variable overrides.
pub const ENV_PREFIX: &str = "KILN_VAR_";

/// Values given from outside the pipeline files.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    cli: BTreeMap<String, String>,
    env: BTreeMap<String, String>,
}

/// A `--var` argument that is not `name=value`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not `name=value`")]
pub struct BadVarArg(pub String);

impl Overrides {
    /// No overrides.
    pub fn new() -> Self {
        Overrides::default()
    }

    /// Parses one `--var name=value` argument.
    pub fn parse_arg(arg: &str) -> Result<(String, String), BadVarArg> {
        match arg.split_once('=') {
            Some((name, value)) if crate::template::is_var_name(name) => {
                Ok((name.to_string(), value.to_string()))
            }
            _ => Err(BadVarArg(arg.to_string())),
        }
    }

    /// Adds a command-line value (a later one for the same name wins).
    pub fn set_cli(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.cli.insert(name.into(), value.into());
    }

    /// Keeps the `KILN_VAR_*` entries of an environment (pass `std::env::vars()`).
    pub fn with_env(mut self, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        for (key, value) in vars {
            if key.starts_with(ENV_PREFIX) && key.len() > ENV_PREFIX.len() {
                self.env.insert(key, value);
            }
        }
        self
    }

    /// The environment variable that sets variable `name`: `KILN_VAR_` + the name with `-` as `_`.
    pub fn env_name(name: &str) -> String {
        format!("{ENV_PREFIX}{}", name.replace('-', "_"))
    }

    /// The command-line value of `name`.
    pub fn cli(&self, name: &str) -> Option<&str> {
        self.cli.get(name).map(String::as_str)
    }

    /// The environment variable and value that set `name`.
    pub fn env(&self, name: &str) -> Option<(&str, &str)> {
        self.env
            .get_key_value(&Self::env_name(name))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Names given with `--var`.
    pub fn cli_names(&self) -> impl Iterator<Item = &str> {
        self.cli.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_and_environment_are_read() {
        let mut o = Overrides::new().with_env([
            ("KILN_VAR_admin_user".to_string(), "ops".to_string()),
            ("PATH".to_string(), "/bin".to_string()),
        ]);
        o.set_cli("version", "12.9");
        assert_eq!(o.cli("version"), Some("12.9"));
        assert_eq!(o.env("admin-user"), Some(("KILN_VAR_admin_user", "ops")));
        assert_eq!(o.env("PATH"), None);
        assert_eq!(
            Overrides::parse_arg("a=b=c").unwrap(),
            ("a".into(), "b=c".into())
        );
        assert!(Overrides::parse_arg("=x").is_err());
        assert!(Overrides::parse_arg("novalue").is_err());
    }
}
