//! Which cloud to talk to and how to authenticate, read the way OpenStack's own clients read it:
//! `clouds.yaml` from the standard search path with `secure.yaml` merged over it, the cloud named by
//! `--os-cloud` / `OS_CLOUD`, or else the `OS_*` variables.
//!
//! Search path for `clouds.yaml` and `secure.yaml` (first file found wins, `.yaml` before `.yml`):
//! `OS_CLIENT_CONFIG_FILE` / `OS_CLIENT_SECURE_FILE` when set, else the current directory,
//! `~/.config/openstack`, `/etc/openstack`. A named cloud is read from the files only; the `OS_*`
//! variables describe a cloud only when none is named.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

pub use crate::yaml::MAX_YAML_NODES;
use crate::yaml::yaml_to_json;

use crate::secret::Secret;

/// Everything needed to authenticate and find the image service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloudConfig {
    /// The cloud's name in clouds.yaml, or `envvars` for one described by `OS_*` variables.
    pub name: String,
    /// Keystone v3 root, always ending in `/v3`.
    pub auth_url: String,
    pub auth: AuthMethod,
    pub region_name: Option<String>,
    pub interface: Interface,
    pub tls: Tls,
    /// `image_endpoint_override`: use this Glance URL instead of the catalog's.
    pub image_endpoint_override: Option<String>,
}

/// Keystone v3 authentication methods kiln supports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    Password {
        user: UserRef,
        password: Secret,
        scope: Scope,
    },
    /// Application credentials carry their own project scope.
    ApplicationCredential {
        credential: Named,
        /// Needed only when the credential is given by name.
        user: Option<UserRef>,
        secret: Secret,
    },
}

/// Something given either by id or by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Named {
    Id(String),
    Name(String),
}

/// A domain, by id or name.
pub type DomainRef = Named;

/// A user: by id, or by name within a domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserRef {
    Id(String),
    Name { name: String, domain: DomainRef },
}

/// What the token is scoped to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    ProjectId(String),
    Project {
        name: String,
        domain: DomainRef,
    },
    Domain(DomainRef),
    /// No scope: Keystone returns no catalog, so no image service either.
    Unscoped,
}

/// Which catalog interface to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interface {
    Public,
    Internal,
    Admin,
}

impl Interface {
    pub fn as_str(self) -> &'static str {
        match self {
            Interface::Public => "public",
            Interface::Internal => "internal",
            Interface::Admin => "admin",
        }
    }
}

/// TLS settings: verified against the system roots unless told otherwise.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tls {
    /// Extra CA bundle (PEM) to trust, from `cacert` / `OS_CACERT`.
    pub cacert: Option<PathBuf>,
    /// `verify: false` or `insecure: true` / `OS_INSECURE`: skip certificate verification.
    pub insecure: bool,
}

/// Where configuration comes from; [`ConfigSources::from_process`] for the real thing, built by hand
/// in tests.
#[derive(Clone, Debug, Default)]
pub struct ConfigSources {
    pub cwd: PathBuf,
    pub home: Option<PathBuf>,
    /// `/etc/openstack` outside tests.
    pub site_dir: PathBuf,
    pub env: BTreeMap<String, String>,
}

impl ConfigSources {
    /// The current directory, `$HOME`, `/etc/openstack` and the process environment.
    pub fn from_process() -> Self {
        ConfigSources {
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            home: std::env::var_os("HOME").map(PathBuf::from),
            site_dir: PathBuf::from("/etc/openstack"),
            env: std::env::vars().collect(),
        }
    }

    fn var(&self, key: &str) -> Option<&str> {
        self.env
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn search_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.cwd.clone()];
        dirs.extend(self.home.as_ref().map(|h| h.join(".config/openstack")));
        dirs.push(self.site_dir.clone());
        dirs
    }

    /// The first `stem.yaml` / `stem.yml` in the search path, or the file named by `override_var`.
    fn find(&self, stem: &str, override_var: &str) -> Result<Option<PathBuf>, ConfigError> {
        if let Some(p) = self.var(override_var) {
            let p = PathBuf::from(p);
            return if p.is_file() {
                Ok(Some(p))
            } else {
                Err(ConfigError::MissingFile {
                    var: override_var.to_owned(),
                    path: p,
                })
            };
        }
        Ok(self
            .search_dirs()
            .into_iter()
            .flat_map(|d| {
                [
                    d.join(format!("{stem}.yaml")),
                    d.join(format!("{stem}.yml")),
                ]
            })
            .find(|p| p.is_file()))
    }
}

/// Why no usable cloud configuration could be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "no cloud selected: pass `--os-cloud NAME`, set `OS_CLOUD`, or set `OS_AUTH_URL` and friends"
    )]
    NoCloud,
    #[error("`{var}` names `{path}`, which is not a file")]
    MissingFile { var: String, path: PathBuf },
    #[error("cloud `{cloud}` was requested but no clouds.yaml was found (searched {searched})")]
    NoCloudsFile { cloud: String, searched: String },
    #[error("cannot read `{path}`")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` is not valid YAML: {message}")]
    Yaml { path: PathBuf, message: String },
    #[error("cloud `{cloud}` is not in `{path}` (clouds there: {available})")]
    UnknownCloud {
        cloud: String,
        path: PathBuf,
        available: String,
    },
    #[error("cloud `{cloud}`: {message}")]
    Invalid { cloud: String, message: String },
}

/// Something about the configuration the user should know, though it is used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigWarning {
    #[error(
        "cloud `{cloud}`: `{clouds}` in the current folder is merged with the secrets of `{secure}`, so          a clouds.yaml in this folder decides where that password is sent (openstacksdk reads          the files in the same order)\nhelp: if that clouds.yaml is not yours, run from another          folder, or name the file with `OS_CLIENT_CONFIG_FILE`"
    )]
    SecretsForCurrentFolder {
        cloud: String,
        clouds: PathBuf,
        secure: PathBuf,
    },
}

/// Reads the configuration of `cloud` (or of `OS_CLOUD`, or of the `OS_*` variables); each
/// [`ConfigWarning`] is printed to stderr (`load_checked` returns them instead).
pub fn load(sources: &ConfigSources, cloud: Option<&str>) -> Result<CloudConfig, ConfigError> {
    let (config, warnings) = load_checked(sources, cloud)?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    Ok(config)
}

/// [`load`], returning the warnings instead of printing them.
pub fn load_checked(
    sources: &ConfigSources,
    cloud: Option<&str>,
) -> Result<(CloudConfig, Vec<ConfigWarning>), ConfigError> {
    let mut warnings = Vec::new();
    let name = cloud
        .filter(|c| !c.is_empty())
        .or_else(|| sources.var("OS_CLOUD"));
    let Some(name) = name else {
        return if sources.var("OS_AUTH_URL").is_some() {
            parse_cloud("envvars", &env_cloud(sources)).map(|c| (c, warnings))
        } else {
            Err(ConfigError::NoCloud)
        };
    };
    let Some(clouds_path) = sources.find("clouds", "OS_CLIENT_CONFIG_FILE")? else {
        let searched = sources
            .search_dirs()
            .iter()
            .map(|d| format!("`{}`", d.join("clouds.yaml").display()))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(ConfigError::NoCloudsFile {
            cloud: name.to_owned(),
            searched,
        });
    };
    let clouds = read_yaml(&clouds_path)?;
    let Some(mut entry) = clouds
        .pointer(&format!("/clouds/{}", escape(name)))
        .cloned()
    else {
        let available = clouds
            .get("clouds")
            .and_then(Value::as_object)
            .map(|m| m.keys().map(|k| format!("`{k}`")).collect::<Vec<_>>())
            .filter(|v| !v.is_empty())
            .map_or_else(|| "none".to_owned(), |v| v.join(", "));
        return Err(ConfigError::UnknownCloud {
            cloud: name.to_owned(),
            path: clouds_path,
            available,
        });
    };
    if let Some(secure_path) = sources.find("secure", "OS_CLIENT_SECURE_FILE")? {
        let secure = read_yaml(&secure_path)?;
        if let Some(over) = secure.pointer(&format!("/clouds/{}", escape(name))) {
            merge(&mut entry, over);
            // A clouds.yaml anyone could leave in a folder (a cloned repository) picks the
            // `auth_url`, and the user's own secure.yaml supplies the password for it.
            if sources.var("OS_CLIENT_CONFIG_FILE").is_none()
                && clouds_path.parent() == Some(sources.cwd.as_path())
                && secure_path.parent() != Some(sources.cwd.as_path())
            {
                warnings.push(ConfigWarning::SecretsForCurrentFolder {
                    cloud: name.to_owned(),
                    clouds: clouds_path.clone(),
                    secure: secure_path.clone(),
                });
            }
        }
    }
    parse_cloud(name, &entry).map(|c| (c, warnings))
}

/// A JSON-pointer token for a cloud name.
fn escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

/// Deep merge: maps merge key by key, anything else in `over` replaces what is in `base`.
fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

fn read_yaml(path: &Path) -> Result<Value, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    yaml_to_json(&text).map_err(|message| ConfigError::Yaml {
        path: path.to_owned(),
        message,
    })
}

/// The cloud described by `OS_*` variables, in clouds.yaml shape.
fn env_cloud(s: &ConfigSources) -> Value {
    let mut auth = Map::new();
    let pairs = [
        ("auth_url", "OS_AUTH_URL"),
        ("username", "OS_USERNAME"),
        ("user_id", "OS_USER_ID"),
        ("password", "OS_PASSWORD"),
        ("user_domain_name", "OS_USER_DOMAIN_NAME"),
        ("user_domain_id", "OS_USER_DOMAIN_ID"),
        ("project_name", "OS_PROJECT_NAME"),
        ("project_name", "OS_TENANT_NAME"),
        ("project_id", "OS_PROJECT_ID"),
        ("project_id", "OS_TENANT_ID"),
        ("project_domain_name", "OS_PROJECT_DOMAIN_NAME"),
        ("project_domain_id", "OS_PROJECT_DOMAIN_ID"),
        ("domain_name", "OS_DOMAIN_NAME"),
        ("domain_id", "OS_DOMAIN_ID"),
        ("application_credential_id", "OS_APPLICATION_CREDENTIAL_ID"),
        (
            "application_credential_name",
            "OS_APPLICATION_CREDENTIAL_NAME",
        ),
        (
            "application_credential_secret",
            "OS_APPLICATION_CREDENTIAL_SECRET",
        ),
    ];
    for (key, var) in pairs {
        if let (Some(v), false) = (s.var(var), auth.contains_key(key)) {
            auth.insert(key.to_owned(), Value::String(v.to_owned()));
        }
    }
    let mut cloud = Map::new();
    cloud.insert("auth".to_owned(), Value::Object(auth));
    for (key, vars) in [
        ("auth_type", &["OS_AUTH_TYPE"][..]),
        ("region_name", &["OS_REGION_NAME"]),
        ("interface", &["OS_INTERFACE", "OS_ENDPOINT_TYPE"]),
        ("cacert", &["OS_CACERT"]),
        ("insecure", &["OS_INSECURE"]),
        ("image_endpoint_override", &["OS_IMAGE_URL"]),
    ] {
        if let Some(v) = vars.iter().find_map(|var| s.var(var)) {
            cloud.insert(key.to_owned(), Value::String(v.to_owned()));
        }
    }
    Value::Object(cloud)
}

/// Turns one cloud entry (clouds.yaml shape, secure.yaml already merged) into a [`CloudConfig`].
pub(crate) fn parse_cloud(name: &str, entry: &Value) -> Result<CloudConfig, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        cloud: name.to_owned(),
        message,
    };
    let empty = Map::new();
    let auth = entry
        .get("auth")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let text = |m: &Map<String, Value>, key: &str| -> Option<String> {
        match m.get(key)? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    let top = entry.as_object().unwrap_or(&empty);

    if let Some(v) = top.get("identity_api_version") {
        let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
        if !v.starts_with('3') {
            return Err(invalid(format!(
                "`identity_api_version` is `{v}`; kiln speaks Keystone v3 only"
            )));
        }
    }
    let auth_url =
        text(auth, "auth_url").ok_or_else(|| invalid("`auth.auth_url` is missing".into()))?;
    let auth_url = {
        let trimmed = auth_url.trim_end_matches('/');
        if trimmed.ends_with("/v3") {
            trimmed.to_owned()
        } else {
            format!("{trimmed}/v3")
        }
    };
    let domain = |id_key: &str, name_key: &str| -> Option<DomainRef> {
        text(auth, id_key)
            .map(Named::Id)
            .or_else(|| text(auth, name_key).map(Named::Name))
    };
    // As keystoneauth does: `default_domain_*` fills in missing user and project domains.
    let default_domain = domain("default_domain_id", "default_domain_name");
    let user_domain = domain("user_domain_id", "user_domain_name").or(default_domain.clone());
    let user = match (text(auth, "user_id"), text(auth, "username")) {
        (Some(id), _) => Some(UserRef::Id(id)),
        (None, Some(name)) => Some(UserRef::Name {
            name,
            domain: user_domain.clone().ok_or_else(|| {
                invalid("`auth.username` needs `user_domain_name` or `user_domain_id`".into())
            })?,
        }),
        (None, None) => None,
    };

    let auth_type = text(top, "auth_type").unwrap_or_else(|| "password".to_owned());
    let auth = match auth_type.as_str() {
        "password" | "v3password" => {
            let user =
                user.ok_or_else(|| invalid("`auth.username` or `auth.user_id` is missing".into()))?;
            let password = text(auth, "password").ok_or_else(|| {
                invalid(
                    "`auth.password` is missing (in clouds.yaml, secure.yaml or `OS_PASSWORD`)"
                        .into(),
                )
            })?;
            let scope = if let Some(id) = text(auth, "project_id") {
                Scope::ProjectId(id)
            } else if let Some(project) = text(auth, "project_name") {
                Scope::Project {
                    name: project,
                    domain: domain("project_domain_id", "project_domain_name")
                        .or(default_domain)
                        .ok_or_else(|| {
                            invalid("`auth.project_name` needs `project_domain_name` or `project_domain_id`".into())
                        })?,
                }
            } else if let Some(d) = domain("domain_id", "domain_name") {
                Scope::Domain(d)
            } else {
                Scope::Unscoped
            };
            AuthMethod::Password {
                user,
                password: Secret::new(password),
                scope,
            }
        }
        "v3applicationcredential" | "applicationcredential" | "v3_application_credential" => {
            let credential = text(auth, "application_credential_id")
                .map(Named::Id)
                .or_else(|| text(auth, "application_credential_name").map(Named::Name))
                .ok_or_else(|| {
                    invalid("`auth.application_credential_id` (or `_name`) is missing".into())
                })?;
            if matches!(credential, Named::Name(_)) && user.is_none() {
                return Err(invalid(
                    "an application credential given by name needs `auth.username` or `auth.user_id`".into(),
                ));
            }
            let secret = text(auth, "application_credential_secret")
                .ok_or_else(|| invalid("`auth.application_credential_secret` is missing".into()))?;
            AuthMethod::ApplicationCredential {
                credential,
                user,
                secret: Secret::new(secret),
            }
        }
        other => {
            return Err(invalid(format!(
                "`auth_type` `{other}` is not supported (use `password` or `v3applicationcredential`)"
            )));
        }
    };

    // `regions` lists the cloud's regions; without `region_name` the first one is used.
    let region_name = text(top, "region_name").or_else(|| {
        top.get("regions")?
            .as_array()?
            .first()
            .and_then(|r| match r {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => text(o, "name"),
                _ => None,
            })
    });
    let interface = match text(top, "interface")
        .as_deref()
        .map(|s| s.trim_end_matches("URL"))
    {
        None | Some("public") => Interface::Public,
        Some("internal") => Interface::Internal,
        Some("admin") => Interface::Admin,
        Some(other) => {
            return Err(invalid(format!(
                "`interface` `{other}` is not one of `public`, `internal`, `admin`"
            )));
        }
    };
    let flag = |key: &str| -> Result<Option<bool>, ConfigError> {
        match top.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok(Some(true)),
                "false" | "0" | "no" => Ok(Some(false)),
                _ => Err(invalid(format!("`{key}` must be true or false, not `{s}`"))),
            },
            Some(other) => Err(invalid(format!(
                "`{key}` must be true or false, not `{other}`"
            ))),
        }
    };
    // `verify` may also hold a CA bundle path, as in requests.
    let (verify, verify_path) = match top.get("verify") {
        Some(Value::String(s))
            if !matches!(
                s.to_ascii_lowercase().as_str(),
                "true" | "false" | "1" | "0" | "yes" | "no"
            ) =>
        {
            (None, Some(PathBuf::from(s)))
        }
        _ => (flag("verify")?, None),
    };
    let insecure = flag("insecure")?.unwrap_or(false) || verify == Some(false);
    let cacert = text(top, "cacert").map(PathBuf::from).or(verify_path);

    Ok(CloudConfig {
        name: name.to_owned(),
        auth_url,
        auth,
        region_name,
        interface,
        tls: Tls { cacert, insecure },
        image_endpoint_override: text(top, "image_endpoint_override"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            for d in ["cwd", "home/.config/openstack", "etc"] {
                std::fs::create_dir_all(dir.path().join(d)).unwrap();
            }
            Fixture { dir }
        }

        fn write(&self, rel: &str, text: &str) {
            std::fs::write(self.dir.path().join(rel), text).unwrap();
        }

        fn sources(&self, env: &[(&str, &str)]) -> ConfigSources {
            ConfigSources {
                cwd: self.dir.path().join("cwd"),
                home: Some(self.dir.path().join("home")),
                site_dir: self.dir.path().join("etc"),
                env: env
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            }
        }
    }

    const PASSWORD_CLOUD: &str = "
clouds:
  prod:
    auth:
      auth_url: https://keystone.example:5000
      username: alice
      project_name: images
      user_domain_name: Default
      project_domain_id: default
    region_name: RegionTwo
    interface: internal
    identity_api_version: 3
";

    #[test]
    fn password_cloud_with_secret_from_secure_yaml() {
        let f = Fixture::new();
        f.write("home/.config/openstack/clouds.yaml", PASSWORD_CLOUD);
        f.write(
            "home/.config/openstack/secure.yaml",
            "clouds:\n  prod:\n    auth:\n      password: s3cret\n",
        );
        let c = load(&f.sources(&[("OS_CLOUD", "prod")]), None).unwrap();
        assert_eq!(c.auth_url, "https://keystone.example:5000/v3");
        assert_eq!(c.region_name.as_deref(), Some("RegionTwo"));
        assert_eq!(c.interface, Interface::Internal);
        assert_eq!(c.tls, Tls::default());
        assert_eq!(
            c.auth,
            AuthMethod::Password {
                user: UserRef::Name {
                    name: "alice".into(),
                    domain: Named::Name("Default".into())
                },
                password: Secret::new("s3cret"),
                scope: Scope::Project {
                    name: "images".into(),
                    domain: Named::Id("default".into())
                },
            }
        );
        // The password never shows in debug output.
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    // Search order: the current directory wins over ~/.config/openstack and /etc/openstack.
    #[test]
    fn current_directory_comes_first_in_the_search_path() {
        let f = Fixture::new();
        f.write(
            "etc/clouds.yaml",
            &PASSWORD_CLOUD.replace("alice", "from-etc"),
        );
        f.write(
            "home/.config/openstack/clouds.yaml",
            &PASSWORD_CLOUD.replace("alice", "from-home"),
        );
        f.write(
            "cwd/clouds.yml",
            &PASSWORD_CLOUD.replace("alice", "from-cwd"),
        );
        f.write(
            "etc/secure.yaml",
            "clouds:\n  prod:\n    auth:\n      password: pw\n",
        );
        let user = |c: CloudConfig| match c.auth {
            AuthMethod::Password {
                user: UserRef::Name { name, .. },
                ..
            } => name,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            user(load(&f.sources(&[]), Some("prod")).unwrap()),
            "from-cwd"
        );
        std::fs::remove_file(f.dir.path().join("cwd/clouds.yml")).unwrap();
        assert_eq!(
            user(load(&f.sources(&[]), Some("prod")).unwrap()),
            "from-home"
        );
        std::fs::remove_file(f.dir.path().join("home/.config/openstack/clouds.yaml")).unwrap();
        assert_eq!(
            user(load(&f.sources(&[]), Some("prod")).unwrap()),
            "from-etc"
        );
    }

    #[test]
    fn application_credential_cloud() {
        let f = Fixture::new();
        f.write(
            "cwd/clouds.yaml",
            "clouds:
  ci:
    auth_type: v3applicationcredential
    auth:
      auth_url: https://keystone.example/identity/v3/
      application_credential_id: 0123abc
      application_credential_secret: topsecret
    regions: [Region9, Region10]
    verify: false
",
        );
        let c = load(&f.sources(&[]), Some("ci")).unwrap();
        assert_eq!(c.auth_url, "https://keystone.example/identity/v3");
        assert_eq!(
            c.region_name.as_deref(),
            Some("Region9"),
            "first of `regions`"
        );
        assert!(c.tls.insecure);
        assert_eq!(
            c.auth,
            AuthMethod::ApplicationCredential {
                credential: Named::Id("0123abc".into()),
                user: None,
                secret: Secret::new("topsecret"),
            }
        );
    }

    #[test]
    fn regions_as_mappings_and_cacert() {
        let f = Fixture::new();
        f.write(
            "cwd/clouds.yaml",
            "clouds:
  r:
    auth: {auth_url: 'http://k:5000', user_id: u1, password: p, project_id: p1}
    regions:
      - name: North
        values: {interface: admin}
    cacert: /etc/ssl/my-ca.pem
",
        );
        let c = load(&f.sources(&[]), Some("r")).unwrap();
        assert_eq!(c.region_name.as_deref(), Some("North"));
        assert_eq!(
            c.tls.cacert.as_deref(),
            Some(Path::new("/etc/ssl/my-ca.pem"))
        );
        assert!(matches!(
            c.auth,
            AuthMethod::Password {
                user: UserRef::Id(_),
                scope: Scope::ProjectId(_),
                ..
            }
        ));
    }

    #[test]
    fn os_variables_describe_a_cloud_when_none_is_named() {
        let f = Fixture::new();
        let env = [
            ("OS_AUTH_URL", "http://k:5000/v3"),
            ("OS_USERNAME", "bob"),
            ("OS_PASSWORD", "pw"),
            ("OS_USER_DOMAIN_NAME", "Default"),
            ("OS_PROJECT_NAME", "p"),
            ("OS_PROJECT_DOMAIN_NAME", "Default"),
            ("OS_REGION_NAME", "RegionOne"),
            ("OS_INTERFACE", "public"),
            ("OS_INSECURE", "true"),
        ];
        let c = load(&f.sources(&env), None).unwrap();
        assert_eq!(c.name, "envvars");
        assert_eq!(c.region_name.as_deref(), Some("RegionOne"));
        assert!(c.tls.insecure);
        assert!(matches!(c.auth, AuthMethod::Password { .. }));
    }

    #[test]
    fn errors_name_the_problem() {
        let f = Fixture::new();
        assert_eq!(
            load(&f.sources(&[]), None).unwrap_err().to_string(),
            "no cloud selected: pass `--os-cloud NAME`, set `OS_CLOUD`, or set `OS_AUTH_URL` and friends"
        );
        let err = load(&f.sources(&[]), Some("prod")).unwrap_err().to_string();
        assert!(
            err.starts_with("cloud `prod` was requested but no clouds.yaml was found"),
            "{err}"
        );
        f.write("cwd/clouds.yaml", PASSWORD_CLOUD);
        let err = load(&f.sources(&[]), Some("staging"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cloud `staging` is not in") && err.ends_with("(clouds there: `prod`)"),
            "{err}"
        );
        assert_eq!(
            load(&f.sources(&[]), Some("prod")).unwrap_err().to_string(),
            "cloud `prod`: `auth.password` is missing (in clouds.yaml, secure.yaml or `OS_PASSWORD`)"
        );
        f.write(
            "cwd/clouds.yaml",
            "clouds:\n  x:\n    auth_type: token\n    auth: {auth_url: 'http://k'}\n",
        );
        assert_eq!(
            load(&f.sources(&[]), Some("x")).unwrap_err().to_string(),
            "cloud `x`: `auth_type` `token` is not supported (use `password` or `v3applicationcredential`)"
        );
        f.write("cwd/clouds.yaml", "clouds: [unclosed\n");
        assert!(
            load(&f.sources(&[]), Some("x"))
                .unwrap_err()
                .to_string()
                .contains("is not valid YAML")
        );
    }

    // A clouds.yaml in the current folder (say, a cloned repository's) takes its password from
    // the user's own secure.yaml: allowed, as openstacksdk does, but said, naming both files.
    #[test]
    fn current_folder_clouds_yaml_with_secrets_from_elsewhere_warns_naming_both() {
        let f = Fixture::new();
        f.write("cwd/clouds.yaml", PASSWORD_CLOUD);
        f.write(
            "home/.config/openstack/secure.yaml",
            "clouds:\n  prod:\n    auth:\n      password: s3cret\n",
        );
        let (_, warnings) = load_checked(&f.sources(&[]), Some("prod")).unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let shown = warnings[0].to_string();
        let clouds = f.dir.path().join("cwd/clouds.yaml");
        let secure = f.dir.path().join("home/.config/openstack/secure.yaml");
        assert!(
            shown.contains(&format!("`{}`", clouds.display())),
            "{shown}"
        );
        assert!(
            shown.contains(&format!("`{}`", secure.display())),
            "{shown}"
        );
        assert!(shown.contains("openstacksdk"), "{shown}");
        // Both in the home folder, or both in the current folder: nothing to say.
        std::fs::rename(
            &clouds,
            f.dir.path().join("home/.config/openstack/clouds.yaml"),
        )
        .unwrap();
        assert_eq!(load_checked(&f.sources(&[]), Some("prod")).unwrap().1, []);
        std::fs::rename(
            f.dir.path().join("home/.config/openstack/clouds.yaml"),
            &clouds,
        )
        .unwrap();
        std::fs::rename(&secure, f.dir.path().join("cwd/secure.yaml")).unwrap();
        assert_eq!(load_checked(&f.sources(&[]), Some("prod")).unwrap().1, []);
    }

    // Aliases of aliases ("billion laughs") would expand to 10^9 values; the file is refused
    // before anything is expanded. Ordinary anchors still work.
    #[test]
    fn yaml_alias_bombs_are_refused_and_plain_aliases_work() {
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        bomb.push_str("clouds: {}\n");
        let started = std::time::Instant::now();
        let err = yaml_to_json(&bomb).unwrap_err();
        assert!(err.contains("expand to more than 100000 values"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        let f = Fixture::new();
        f.write("cwd/clouds.yaml", &bomb);
        let err = load(&f.sources(&[]), Some("prod")).unwrap_err().to_string();
        assert!(
            err.contains("is not valid YAML") && err.contains("billion laughs"),
            "{err}"
        );
        let ok = yaml_to_json(
            "common: &auth {auth_url: 'http://k', user_id: u, password: p, project_id: x}\nclouds:\n  a: {auth: *auth}\n",
        )
        .unwrap();
        assert_eq!(ok["clouds"]["a"]["auth"]["user_id"], "u");
    }

    #[test]
    fn os_client_config_file_overrides_the_search_path() {
        let f = Fixture::new();
        f.write("cwd/clouds.yaml", PASSWORD_CLOUD);
        let other = f.dir.path().join("elsewhere.yaml");
        std::fs::write(&other, PASSWORD_CLOUD.replace("prod", "other")).unwrap();
        let env = [("OS_CLIENT_CONFIG_FILE", other.to_str().unwrap())];
        let err = load(&f.sources(&env), Some("prod"))
            .unwrap_err()
            .to_string();
        assert!(err.ends_with("(clouds there: `other`)"), "{err}");
    }
}
