//! The project configuration file, `kiln.kdl`: the libvirt hosts a build runs guests on.
//!
//! ```kdl
//! // kiln.kdl, at the project root next to pipelines/
//! host "qemu:///system" accel="auto" guests=2 vcpus=2 memory="16GiB"
//! host "qemu+tcp://10.0.0.2/system" accel="kvm" guests=4 vcpus=16 memory="64GiB"
//! ```
//!
//! `kiln build` finds the file by walking up from the pipelines it was given, as cargo finds
//! `Cargo.toml` ([`find_config`]), or takes `--config`. Capacity a host leaves out is detected
//! (this machine's for `qemu:///system`, libvirt's node info for others). Problems are located
//! diagnostics, rendered like pipeline errors (file:line:col, a label, a `help:` line).

use std::path::{Path, PathBuf};

use kdl::{KdlNode, KdlValue};
use kiln_syntax::{Diagnostic, SourceMap, Span};

use crate::host::{Accel, Capacity, Host};

/// The file name looked for.
pub const CONFIG_FILE: &str = "kiln.kdl";

/// One `host` node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    /// Connection URI.
    pub uri: String,
    /// `accel=`, when given.
    pub accel: Option<Accel>,
    /// `guests=`, when given.
    pub guests: Option<u32>,
    /// `vcpus=`, when given.
    pub vcpus: Option<u32>,
    /// `memory=` in MiB, when given.
    pub memory_mib: Option<u64>,
}

impl HostConfig {
    /// Whether every capacity figure is given (nothing to detect).
    #[must_use]
    pub fn capacity_complete(&self) -> bool {
        self.guests.is_some() && self.vcpus.is_some() && self.memory_mib.is_some()
    }

    /// The host, with figures not given taken from `detected` and the accelerator from
    /// `accel` when the file gives none.
    #[must_use]
    pub fn to_host(&self, detected: Capacity, accel: Accel) -> Host {
        Host {
            uri: self.uri.clone(),
            accel: self.accel.unwrap_or(accel),
            capacity: Capacity {
                guests: self.guests.unwrap_or(detected.guests),
                vcpus: self.vcpus.unwrap_or(detected.vcpus),
                memory_mib: self.memory_mib.unwrap_or(detected.memory_mib),
            },
        }
    }
}

/// A loaded `kiln.kdl`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectConfig {
    /// The file.
    pub path: PathBuf,
    /// Hosts in file order.
    pub hosts: Vec<HostConfig>,
}

impl ProjectConfig {
    /// The host configured for `uri`.
    #[must_use]
    pub fn host(&self, uri: &str) -> Option<&HostConfig> {
        self.hosts.iter().find(|h| h.uri == uri)
    }
}

/// The hosts of a build: `--host` URIs when given (each with the file's settings when the file
/// configures it), else the file's hosts, else the local `qemu:///system`. `accel` (`--accel`)
/// overrides every host's accelerator. `detect` gives the capacity of a host whose figures the
/// file does not give all of (called only then).
///
/// # Errors
/// `detect` failed for a host: `(uri, why)`.
pub fn resolve_hosts(
    config: Option<&ProjectConfig>,
    cli_hosts: &[String],
    accel: Option<Accel>,
    mut detect: impl FnMut(&str) -> Result<Capacity, String>,
) -> Result<Vec<Host>, (String, String)> {
    let uris: Vec<String> = if !cli_hosts.is_empty() {
        cli_hosts.to_vec()
    } else if let Some(cfg) = config.filter(|c| !c.hosts.is_empty()) {
        cfg.hosts.iter().map(|h| h.uri.clone()).collect()
    } else {
        vec![crate::host::LOCAL_URI.to_owned()]
    };
    let mut hosts: Vec<Host> = Vec::new();
    for uri in uris {
        if hosts.iter().any(|h| h.uri == uri) {
            continue;
        }
        if let Some((message, help)) = refused_uri(&uri) {
            return Err((uri, format!("{message}\nhelp: {help}")));
        }
        let given = config
            .and_then(|c| c.host(&uri))
            .cloned()
            .unwrap_or(HostConfig {
                uri: uri.clone(),
                accel: None,
                guests: None,
                vcpus: None,
                memory_mib: None,
            });
        let detected = if given.capacity_complete() {
            Capacity::from_resources(1, 0)
        } else {
            detect(&uri).map_err(|why| (uri.clone(), why))?
        };
        let mut host = given.to_host(detected, Accel::Auto);
        if let Some(a) = accel {
            host.accel = a;
        }
        hosts.push(host);
    }
    Ok(hosts)
}

/// Loading `kiln.kdl` failed.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file has errors.
    Invalid {
        /// The file's text, for rendering.
        sources: SourceMap,
        /// Every problem, in file order.
        diagnostics: Vec<Diagnostic>,
    },
}

impl ConfigError {
    /// The errors as `kiln check` prints pipeline errors (`color` for terminals).
    #[must_use]
    pub fn render(&self, color: bool) -> String {
        match self {
            ConfigError::Io { .. } => format!("error: {self}\n"),
            ConfigError::Invalid {
                sources,
                diagnostics,
            } => kiln_syntax::render_text(diagnostics, sources, color),
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::Io { path, source } => write!(f, "reading `{}`: {source}", path.display()),
            ConfigError::Invalid {
                sources,
                diagnostics,
            } => {
                for (i, d) in diagnostics.iter().enumerate() {
                    if i > 0 {
                        f.write_str("\n")?;
                    }
                    match d.location(sources) {
                        Some(l) => write!(f, "{}:{}:{}: {}", l.file, l.line, l.column, d.message)?,
                        None => f.write_str(&d.message)?,
                    }
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// What the search for `kiln.kdl` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigSearch {
    /// The file to use.
    pub found: Option<PathBuf>,
    /// Files named `kiln.kdl` passed over because another user owns them (or anyone may write
    /// them): `(file, why)`. The caller warns about each.
    pub ignored: Vec<(PathBuf, String)>,
}

/// `kiln.kdl` in `start` (a folder, or a file's folder) or the nearest folder above it, stopping
/// at the repository root (the first folder holding `.git`). A file owned by neither this user
/// nor root, or writable by everyone, is passed over (and listed in [`ConfigSearch::ignored`]):
/// anyone who can plant a `kiln.kdl` above a project must not choose the hosts its guests run on.
#[must_use]
pub fn find_config(start: &Path) -> ConfigSearch {
    find_config_as(start, current_uid())
}

/// [`find_config`] for the user `uid`.
#[must_use]
pub fn find_config_as(start: &Path, uid: u32) -> ConfigSearch {
    use std::os::unix::fs::MetadataExt as _;
    let mut search = ConfigSearch::default();
    let Ok(start) = std::path::absolute(start) else {
        return search;
    };
    let first = if start.is_dir() {
        start.as_path()
    } else {
        match start.parent() {
            Some(p) => p,
            None => return search,
        }
    };
    for dir in first.ancestors() {
        let candidate = dir.join(CONFIG_FILE);
        if let Ok(meta) = std::fs::metadata(&candidate)
            && meta.is_file()
        {
            let owner = meta.uid();
            if owner != uid && owner != 0 {
                search.ignored.push((
                    candidate,
                    format!("it is owned by another user (uid {owner})"),
                ));
            } else if meta.mode() & 0o002 != 0 {
                search
                    .ignored
                    .push((candidate, "anyone may write it".to_owned()));
            } else {
                search.found = Some(candidate);
                return search;
            }
        }
        if dir.join(".git").exists() {
            break;
        }
    }
    search
}

/// The effective user id of this process.
#[must_use]
pub fn current_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Why kiln refuses a libvirt URI: `(message, help)`, or `None` for a URI kiln may connect to.
///
/// libvirt runs a local program for the `ext` transport (`qemu+ext:///system?command=/path`) and
/// for a `command=` parameter of the ssh transports; `netcat=` names a program run on the remote
/// side. A project file (or a copied command line) must not be able to run programs that way.
#[must_use]
pub fn refused_uri(uri: &str) -> Option<(String, String)> {
    let scheme = uri.split("://").next().unwrap_or_default();
    let transport = scheme.split_once('+').map(|(_, t)| t.to_ascii_lowercase());
    if transport.as_deref() == Some("ext") {
        return Some((
            format!("libvirt URI `{uri}` uses the `ext` transport, which runs a program"),
            "connect over `unix` (local), `ssh`, `libssh2`, `tcp` or `tls`, e.g. `qemu+ssh://root@10.0.0.2/system`"
                .to_owned(),
        ));
    }
    let query = uri.split_once('?').map_or("", |(_, q)| q);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        // libvirt unescapes parameter names, so `comm%61nd=` is `command=`.
        let key = percent_decode(pair.split('=').next().unwrap_or_default()).to_ascii_lowercase();
        if matches!(key.as_str(), "command" | "netcat") {
            return Some((
                format!("libvirt URI `{uri}` sets `{key}=`, which names a program to run"),
                format!("remove `{key}=`: kiln lets libvirt use its default ssh and netcat"),
            ));
        }
    }
    None
}

/// `%XX` escapes decoded (invalid ones kept as written).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads and checks `path`.
///
/// # Errors
/// The file cannot be read, or has errors (located diagnostics).
pub fn load_config(path: &Path) -> Result<ProjectConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_config(path, &text)
}

/// Checks the text of a `kiln.kdl` read from `path`.
///
/// # Errors
/// Every problem, located.
pub fn parse_config(path: &Path, text: &str) -> Result<ProjectConfig, ConfigError> {
    let mut sources = SourceMap::new();
    let file = sources.add(path, text);
    let span = |s: miette::SourceSpan| Span::new(file, s.offset(), s.offset() + s.len());
    let mut diags = Vec::new();
    let doc = match kiln_syntax::parse_kdl(text) {
        Ok(doc) => doc,
        Err(e) => {
            for d in &e.diagnostics {
                let start = d.span.offset().min(text.len());
                let end = (start + d.span.len()).min(text.len());
                let message = d
                    .message
                    .clone()
                    .unwrap_or_else(|| "invalid KDL".into())
                    .trim_end_matches('.')
                    .to_owned();
                diags.push(
                    Diagnostic::new("kdl-syntax", Span::new(file, start, end), message)
                        .label(d.label.clone().unwrap_or_else(|| "here".into()))
                        .maybe_help(d.help.clone()),
                );
            }
            if diags.is_empty() {
                diags.push(Diagnostic::new(
                    "kdl-syntax",
                    Span::new(file, 0, 0),
                    e.to_string(),
                ));
            }
            return Err(ConfigError::Invalid {
                sources,
                diagnostics: diags,
            });
        }
    };
    let mut hosts: Vec<(HostConfig, Span)> = Vec::new();
    for node in doc.nodes() {
        let name = node.name().value();
        let name_span = span(node.name().span());
        if name != "host" {
            diags.push(
                Diagnostic::new(
                    "unknown-node",
                    name_span,
                    format!("unknown node `{name}` in {CONFIG_FILE}"),
                )
                .label("not a setting")
                .help("kiln.kdl has `host` nodes, e.g. `host \"qemu:///system\" accel=\"auto\" guests=2 vcpus=2 memory=\"16GiB\"`"),
            );
            continue;
        }
        if let Some(host) = host_node(node, &span, &mut diags) {
            if let Some((_, first)) = hosts.iter().find(|(h, _)| h.uri == host.0.uri) {
                diags.push(
                    Diagnostic::new(
                        "duplicate-host",
                        host.1,
                        format!("host `{}` is configured twice", host.0.uri),
                    )
                    .label("again here")
                    .with(*first, "first here")
                    .help("keep one `host` node per URI"),
                );
            } else {
                hosts.push(host);
            }
        }
    }
    if diags.is_empty() {
        Ok(ProjectConfig {
            path: path.to_owned(),
            hosts: hosts.into_iter().map(|(h, _)| h).collect(),
        })
    } else {
        kiln_syntax::diagnostic::sort(&mut diags);
        Err(ConfigError::Invalid {
            sources,
            diagnostics: diags,
        })
    }
}

const HOST_PROPS: [&str; 4] = ["accel", "guests", "vcpus", "memory"];

fn host_node(
    node: &KdlNode,
    span: &dyn Fn(miette::SourceSpan) -> Span,
    diags: &mut Vec<Diagnostic>,
) -> Option<(HostConfig, Span)> {
    let node_span = span(node.span());
    let name_span = span(node.name().span());
    let before = diags.len();
    let mut uri: Option<(String, Span)> = None;
    let mut host = HostConfig {
        uri: String::new(),
        accel: None,
        guests: None,
        vcpus: None,
        memory_mib: None,
    };
    if let Some(children) = node.children() {
        diags.push(
            Diagnostic::new(
                "unexpected-children",
                span(children.span()),
                "`host` takes no children",
            )
            .label("here")
            .help("write the settings as properties: `host \"URI\" accel=\"kvm\" guests=4`"),
        );
    }
    for entry in node.entries() {
        let at = span(entry.span());
        let Some(key) = entry.name().map(|n| n.value()) else {
            if uri.is_some() {
                diags.push(
                    Diagnostic::new("extra-argument", at, "`host` takes one URI")
                        .label("second argument")
                        .help("write one `host` node per libvirt host"),
                );
                continue;
            }
            match entry.value() {
                KdlValue::String(s) if s.contains("://") => match refused_uri(s) {
                    Some((message, help)) => diags.push(
                        Diagnostic::new("refused-uri", at, message)
                            .label("runs a program")
                            .help(help),
                    ),
                    None => uri = Some((s.clone(), at)),
                },
                KdlValue::String(s) => diags.push(
                    Diagnostic::new("invalid-uri", at, format!("`{s}` is not a libvirt URI"))
                        .label("expected `driver[+transport]://[host]/path`")
                        .help("e.g. `qemu:///system` or `qemu+ssh://root@10.0.0.2/system`"),
                ),
                other => diags.push(
                    Diagnostic::new(
                        "invalid-uri",
                        at,
                        format!(
                            "expected a URI string, found {}",
                            kiln_syntax::value_kind(other)
                        ),
                    )
                    .label("not a string")
                    .help("e.g. `host \"qemu:///system\"`"),
                ),
            }
            continue;
        };
        match key {
            "accel" => match entry.value() {
                KdlValue::String(s) => match s.as_str() {
                    "kvm" => host.accel = Some(Accel::Kvm),
                    "qemu" | "tcg" => host.accel = Some(Accel::Tcg),
                    "auto" => host.accel = Some(Accel::Auto),
                    other => diags.push(
                        Diagnostic::new("invalid-value", at, format!("unknown accelerator `{other}`"))
                            .label("not kvm, qemu or auto")
                            .help("`kvm`, `qemu` (TCG, also written `tcg`) or `auto` (a probe boots under KVM, else TCG)"),
                    ),
                },
                other => diags.push(expected(at, "accel", "a string", other)),
            },
            "guests" | "vcpus" => match entry.value() {
                KdlValue::Integer(n) if (1..=4096).contains(n) => {
                    let n = u32::try_from(*n).unwrap_or(1);
                    if key == "guests" {
                        host.guests = Some(n);
                    } else {
                        host.vcpus = Some(n);
                    }
                }
                KdlValue::Integer(_) => diags.push(
                    Diagnostic::new("invalid-value", at, format!("`{key}` must be 1 to 4096"))
                        .label("out of range")
                        .help(format!("how many {key} the host runs at once")),
                ),
                other => diags.push(expected(at, key, "an integer", other)),
            },
            "memory" => match entry.value() {
                KdlValue::String(s) => match kiln_syntax::units::parse_size(s) {
                    Ok(size) if size.mib_ceil() > 0 => host.memory_mib = Some(size.bytes() / (1 << 20)),
                    Ok(_) => diags.push(
                        Diagnostic::new("invalid-value", at, "`memory` must be at least 1MiB")
                            .label("too small")
                            .help("guest memory summed over running guests, e.g. `memory=\"16GiB\"`"),
                    ),
                    Err(e) => diags.push(
                        Diagnostic::new("invalid-size", at, e.message).label("here").help(e.help),
                    ),
                },
                other => diags.push(
                    expected(at, "memory", "a size string", other)
                        .help("e.g. `memory=\"16GiB\"`"),
                ),
            },
            other => {
                let suggestion = kiln_syntax::suggest::closest(other, HOST_PROPS);
                diags.push(
                    Diagnostic::new("unknown-property", at, format!("unknown property `{other}` of `host`"))
                        .label("not a host setting")
                        .help(match suggestion {
                            Some(s) => format!("did you mean `{s}`? `host` takes {}", kiln_syntax::suggest::one_of(&HOST_PROPS)),
                            None => format!("`host` takes {}", kiln_syntax::suggest::one_of(&HOST_PROPS)),
                        }),
                );
            }
        }
    }
    let Some((uri, _)) = uri else {
        if diags.len() == before {
            diags.push(
                Diagnostic::new("missing-argument", name_span, "`host` needs a libvirt URI")
                    .label("no URI")
                    .help("e.g. `host \"qemu:///system\"`"),
            );
        }
        return None;
    };
    if diags.len() != before {
        return None;
    }
    host.uri = uri;
    Some((host, node_span))
}

fn expected(at: Span, key: &str, what: &str, found: &KdlValue) -> Diagnostic {
    Diagnostic::new(
        "invalid-value",
        at,
        format!(
            "`{key}` must be {what}, found {}",
            kiln_syntax::value_kind(found)
        ),
    )
    .label(format!("not {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ProjectConfig, ConfigError> {
        parse_config(Path::new("proj/kiln.kdl"), text)
    }

    fn errors(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn hosts_with_and_without_capacity() {
        let cfg = parse(
            "// hosts\nhost \"qemu:///system\" accel=\"tcg\" guests=2 vcpus=2 memory=\"16GiB\"\nhost \"qemu+tcp://10.0.0.2/system\" accel=\"kvm\"\n",
        )
        .unwrap();
        assert_eq!(cfg.hosts.len(), 2);
        let local = &cfg.hosts[0];
        assert!(local.capacity_complete());
        assert_eq!(local.memory_mib, Some(16 * 1024));
        let detected = Capacity {
            guests: 8,
            vcpus: 8,
            memory_mib: 1000,
        };
        let remote = cfg.hosts[1].to_host(detected, Accel::Auto);
        assert_eq!(remote.accel, Accel::Kvm);
        assert_eq!(remote.capacity, detected);
        let local = local.to_host(detected, Accel::Kvm);
        assert_eq!(local.accel, Accel::Tcg);
        assert_eq!(local.capacity.guests, 2);
        assert!(cfg.host("qemu+tcp://10.0.0.2/system").is_some());
    }

    #[test]
    fn errors_are_located_with_help() {
        let text = "host \"qemu:///system\" acel=\"kvm\"\nhost \"qemu:///system\"\nhost \"qemu:///x\" accel=\"fast\" guests=0 memory=\"4gb\"\nhosts\nhost\n";
        let err = parse(text).unwrap_err();
        let shown = err.to_string();
        assert_eq!(
            shown,
            "proj/kiln.kdl:1:23: unknown property `acel` of `host`\n\
             proj/kiln.kdl:3:18: unknown accelerator `fast`\n\
             proj/kiln.kdl:3:31: `guests` must be 1 to 4096\n\
             proj/kiln.kdl:3:40: unknown size unit `gb`\n\
             proj/kiln.kdl:4:1: unknown node `hosts` in kiln.kdl\n\
             proj/kiln.kdl:5:1: `host` needs a libvirt URI"
        );
        let text_out = err.render(false);
        assert!(text_out.contains("did you mean `accel`?"), "{text_out}");
        assert!(text_out.contains("units are case-sensitive"), "{text_out}");
        // The second `qemu:///system` is a duplicate only when the first was valid.
        let dup = errors("host \"qemu:///system\"\nhost \"qemu:///system\" guests=1\n");
        assert_eq!(
            dup,
            "proj/kiln.kdl:2:1: host `qemu:///system` is configured twice"
        );
    }

    #[test]
    fn kdl_syntax_errors_are_located() {
        let err = errors("host \"qemu:///system\" guests=2\nhost \"unterminated\n");
        assert!(err.starts_with("proj/kiln.kdl:2:"), "{err}");
        let err = errors("host guests=2 \"qemu\"\n");
        assert!(err.contains("is not a libvirt URI"), "{err}");
        let err = errors("host 42 memory=1024\n");
        assert!(
            err.contains("expected a URI string, found an integer"),
            "{err}"
        );
        assert!(err.contains("`memory` must be a size string"), "{err}");
    }

    // A `kiln.kdl` of thousands of nested blocks overflowed kdl's parser stack and aborted kiln.
    #[test]
    fn deeply_nested_config_is_a_located_error_not_a_stack_overflow() {
        let n = 50_000;
        let err = errors(&format!("host {}{}", "a {".repeat(n), "}".repeat(n)));
        assert!(err.starts_with("proj/kiln.kdl:1:"), "{err}");
        assert!(err.contains("nested more than 64 levels"), "{err}");
    }

    // `--host` picks hosts (keeping the file's settings for those it configures); `--accel`
    // overrides; only hosts with missing figures are probed.
    #[test]
    fn cli_hosts_and_file_hosts() {
        let cfg = parse(
            "host \"qemu:///system\" guests=1 vcpus=2 memory=\"1GiB\" accel=\"tcg\"\nhost \"qemu+tcp://b/system\" guests=3\n",
        )
        .unwrap();
        let mut probed = Vec::new();
        let mut detect = |uri: &str| {
            probed.push(uri.to_owned());
            if uri.contains("dead") {
                Err("connection refused".to_owned())
            } else {
                Ok(Capacity {
                    guests: 9,
                    vcpus: 9,
                    memory_mib: 9,
                })
            }
        };
        let hosts = resolve_hosts(Some(&cfg), &[], None, &mut detect).unwrap();
        assert_eq!(hosts.len(), 2);
        assert_eq!(hosts[0].accel, Accel::Tcg);
        assert_eq!(hosts[0].capacity.memory_mib, 1024);
        assert_eq!((hosts[1].capacity.guests, hosts[1].capacity.vcpus), (3, 9));
        assert_eq!(hosts[1].accel, Accel::Auto);
        let hosts = resolve_hosts(
            Some(&cfg),
            &["qemu:///system".into(), "qemu+tcp://c/system".into()],
            Some(Accel::Kvm),
            &mut detect,
        )
        .unwrap();
        assert_eq!(hosts.len(), 2);
        assert_eq!(hosts[0].capacity.guests, 1);
        assert_eq!(hosts[1].uri, "qemu+tcp://c/system");
        assert!(hosts.iter().all(|h| h.accel == Accel::Kvm));
        let err = resolve_hosts(None, &["qemu+tcp://dead/system".into()], None, &mut detect);
        assert_eq!(
            err.unwrap_err(),
            ("qemu+tcp://dead/system".into(), "connection refused".into())
        );
        let local = resolve_hosts(None, &[], None, &mut detect).unwrap();
        assert_eq!(local[0].uri, crate::host::LOCAL_URI);
        assert_eq!(
            probed,
            [
                "qemu+tcp://b/system",
                "qemu+tcp://c/system",
                "qemu+tcp://dead/system",
                "qemu:///system"
            ]
        );
    }

    #[test]
    fn found_by_walking_up() {
        let dir = tempfile::tempdir().unwrap();
        let pipelines = dir.path().join("pipelines/sub");
        std::fs::create_dir_all(&pipelines).unwrap();
        std::fs::write(pipelines.join("a.kdl"), "").unwrap();
        assert_eq!(find_config(&pipelines.join("a.kdl")).found, None);
        std::fs::write(dir.path().join(CONFIG_FILE), "").unwrap();
        let found = find_config(&pipelines.join("a.kdl")).found.unwrap();
        assert_eq!(found, dir.path().join(CONFIG_FILE));
        assert_eq!(find_config(&pipelines).found.unwrap(), found);
        assert_eq!(load_config(&found).unwrap().hosts, Vec::new());
    }

    // A kiln.kdl above the repository (e.g. in a shared parent folder) must not pick the hosts
    // of a project inside it: the search ends at the folder holding `.git`.
    #[test]
    fn config_search_stops_at_the_repository_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE), "host \"qemu:///system\"\n").unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(repo.join(".git")).unwrap();
        std::fs::create_dir_all(repo.join("pipelines")).unwrap();
        assert_eq!(
            find_config(&repo.join("pipelines")),
            ConfigSearch::default()
        );
        // A worktree's `.git` is a file; it marks the root as well.
        std::fs::remove_dir(repo.join(".git")).unwrap();
        std::fs::write(repo.join(".git"), "gitdir: /elsewhere\n").unwrap();
        assert_eq!(find_config(&repo.join("pipelines")).found, None);
        // The repository's own kiln.kdl is found.
        std::fs::write(repo.join(CONFIG_FILE), "").unwrap();
        assert_eq!(
            find_config(&repo.join("pipelines")).found,
            Some(repo.join(CONFIG_FILE))
        );
    }

    // Another user's kiln.kdl (a planted /tmp/kiln.kdl) or one anyone may write is passed over,
    // and named so the caller can warn.
    #[test]
    fn config_owned_by_another_user_or_world_writable_is_ignored() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let planted = dir.path().join(CONFIG_FILE);
        let pipelines = dir.path().join("pipelines");
        std::fs::create_dir_all(&pipelines).unwrap();
        std::fs::write(&planted, "").unwrap();
        let me = current_uid();
        // As root, give the file away; otherwise search as a user who is not its owner.
        let search = if me == 0 {
            std::os::unix::fs::chown(&planted, Some(4242), None).unwrap();
            find_config(&pipelines)
        } else {
            find_config_as(&pipelines, me + 1)
        };
        assert_eq!(search.found, None);
        assert_eq!(search.ignored.len(), 1, "{search:?}");
        assert_eq!(search.ignored[0].0, planted);
        assert!(
            search.ignored[0]
                .1
                .starts_with("it is owned by another user (uid "),
            "{search:?}"
        );
        if me == 0 {
            std::os::unix::fs::chown(&planted, Some(0), None).unwrap();
        }
        std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o666)).unwrap();
        let search = find_config_as(&pipelines, me);
        assert_eq!(search.found, None);
        assert_eq!(search.ignored[0].1, "anyone may write it");
        std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(find_config_as(&pipelines, me).found, Some(planted));
    }

    // libvirt runs a local program for `+ext` and for `command=`; `netcat=` runs one remotely.
    // Each is a located error with help, and `--host` refuses them too.
    #[test]
    fn program_running_uris_are_refused() {
        let text = "host \"qemu+ext:///system?command=/tmp/evil\"\nhost \"qemu+ssh://h/system?command=/tmp/evil\"\nhost \"qemu+ssh://h/system?keyfile=/k&netcat=/tmp/nc\"\nhost \"qemu+ssh://root@h/system\"\n";
        let err = parse(text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "proj/kiln.kdl:1:6: libvirt URI `qemu+ext:///system?command=/tmp/evil` uses the `ext` transport, which runs a program\n\
             proj/kiln.kdl:2:6: libvirt URI `qemu+ssh://h/system?command=/tmp/evil` sets `command=`, which names a program to run\n\
             proj/kiln.kdl:3:6: libvirt URI `qemu+ssh://h/system?keyfile=/k&netcat=/tmp/nc` sets `netcat=`, which names a program to run"
        );
        let rendered = err.render(false);
        assert!(rendered.contains("help: connect over `unix`"), "{rendered}");
        assert!(rendered.contains("help: remove `command=`"), "{rendered}");
        assert!(refused_uri("QEMU+EXT:///system").is_some());
        // libvirt unescapes parameter names.
        assert!(refused_uri("qemu+ssh://h/system?comm%61nd=/tmp/evil").is_some());
        assert!(refused_uri("qemu+tls://h/system?no_verify=1").is_none());
        let (uri, why) = resolve_hosts(None, &["qemu+ext:///system".into()], None, |_| {
            panic!("a refused URI must not be probed")
        })
        .unwrap_err();
        assert_eq!(uri, "qemu+ext:///system");
        assert!(why.contains("`ext` transport"), "{why}");
    }
}
