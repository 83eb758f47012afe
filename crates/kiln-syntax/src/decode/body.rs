//! Decoding the nodes inside a `pipeline` (or `fragment`) block into a partial [`Body`].
//!
//! A body holds what one block says; [`super::pipeline`] merges bodies from includes and checks the
//! result as a whole.

use std::collections::BTreeMap;

use super::reader::{
    Cx, NodeView, Val, boolean, choice, duration, integer, nonempty, nonempty_template, secret,
    size, string, template,
};
use crate::diagnostic::Diagnostic;
use crate::limits;
use crate::model::{
    Agent, Answer, Arch, Axis, BootTest, Checksum, ChecksumAlgorithm, Compression, ContainerFormat,
    Customize, Disk, DiskBus, DriverKind, Drivers, FileContent, FileStep, Firmware, From,
    GlanceRef, GlanceRefKind, ImageFormat, Install, InstallMethod, LocalPath, Machine, MachineType,
    Matrix, NicModel, Origin, Output, Property, Publish, PublishTarget, Source, Step, StepKind,
    UserStep, Variable, Visibility, WindowsImage, WindowsSetup, WindowsVersion,
};
use crate::span::{Span, Spanned};
use crate::suggest::closest;
use crate::template::{Template, is_var_name};

/// Node names allowed in a pipeline or fragment block.
pub(crate) const BODY_NODES: &[&str] = &[
    "description",
    "include",
    "variables",
    "matrix",
    "from",
    "source",
    "drivers",
    "disk",
    "machine",
    "install",
    "customize",
    "boot-test",
    "output",
    "publish",
];

/// What one `pipeline` or `fragment` block says.
#[derive(Clone, Debug, Default)]
pub(crate) struct Body {
    pub description: Option<Spanned<String>>,
    pub includes: Vec<(Span, LocalPath)>,
    pub variables: Vec<Variable>,
    pub matrix: Option<Matrix>,
    pub from: Option<From>,
    pub source: Option<Source>,
    pub drivers: Option<Drivers>,
    pub disk: Option<Disk>,
    pub machine: Option<Machine>,
    pub install: Option<Install>,
    pub customize: Option<Customize>,
    pub boot_test: Option<BootTest>,
    pub output: Option<Output>,
    pub publish: Option<Publish>,
    /// Every node written (even when its decoding failed), first occurrence, by name.
    pub seen: BTreeMap<&'static str, Span>,
}

/// Decodes the children of a `pipeline`/`fragment` node.
pub(crate) fn decode_body(cx: &mut Cx<'_>, parent: &NodeView<'_>) -> Body {
    let mut body = Body::default();
    for node in parent.children() {
        let name = node.name().value();
        let Some(&known) = BODY_NODES.iter().find(|n| **n == name) else {
            parent.unknown_child(cx, node, BODY_NODES);
            continue;
        };
        let view = NodeView::new(cx, node);
        if known != "include" {
            if let Some(first) = body.seen.get(known) {
                cx.emit(
                    Diagnostic::new(
                        "duplicate-node",
                        view.name_span,
                        format!("`{known}` is given twice in `{}`", parent.name),
                    )
                    .label("second one")
                    .with(*first, "first one")
                    .help(format!(
                        "a pipeline has at most one `{known}`; merge them or remove one"
                    )),
                );
                continue;
            }
            body.seen.insert(known, view.name_span);
        }
        match known {
            "description" => body.description = description(cx, &view),
            "include" => {
                if let Some(path) = include(cx, &view) {
                    body.includes.push((view.span, path));
                }
            }
            "variables" => body.variables = variables(cx, &view),
            "matrix" => body.matrix = matrix(cx, &view),
            "from" => body.from = from(cx, &view),
            "source" => body.source = source(cx, &view),
            "drivers" => body.drivers = drivers(cx, &view),
            "disk" => body.disk = disk(cx, &view),
            "machine" => body.machine = Some(machine(cx, &view, view.span)),
            "install" => body.install = install(cx, &view),
            "customize" => body.customize = customize(cx, &view),
            "boot-test" => body.boot_test = boot_test(cx, &view),
            "output" => body.output = Some(output(cx, &view, view.span)),
            "publish" => body.publish = publish(cx, &view),
            _ => unreachable!("BODY_NODES covers every arm"),
        }
    }
    body
}

fn description(cx: &mut Cx<'_>, n: &NodeView<'_>) -> Option<Spanned<String>> {
    n.check_props(cx, &[]);
    n.no_children(cx);
    if !n.check_args(cx, 1, 1, "one string") {
        return None;
    }
    string(cx, &n.args[0])
}

fn include(cx: &mut Cx<'_>, n: &NodeView<'_>) -> Option<LocalPath> {
    n.check_props(cx, &[]);
    n.no_children(cx);
    if !n.check_args(cx, 1, 1, "the path of a fragment file") {
        return None;
    }
    let path = nonempty(cx, &n.args[0])?;
    Some(cx.local_path(&path.value, path.span))
}

fn variables(cx: &mut Cx<'_>, n: &NodeView<'_>) -> Vec<Variable> {
    n.check_props(cx, &[]);
    n.check_args(cx, 0, 0, "a block of `name \"default\"` lines");
    let mut vars: Vec<Variable> = Vec::new();
    for child in n.children() {
        let v = NodeView::new(cx, child);
        v.check_props(cx, &[]);
        v.no_children(cx);
        v.check_args(cx, 0, 1, "an optional default value");
        if !is_var_name(v.name) {
            cx.emit(
                Diagnostic::new("bad-variable-name", v.name_span, format!("`{}` is not a valid variable name", v.name))
                    .label("invalid name")
                    .help("variable names are letters, digits, `_` and `-`, starting with a letter or `_`"),
            );
            continue;
        }
        if crate::model::BUILTIN_VARIABLES.contains(&v.name) {
            cx.emit(
                Diagnostic::new(
                    "reserved-variable",
                    v.name_span,
                    format!("`{}` is a builtin variable", v.name),
                )
                .label("reserved name")
                .help("pick another name; builtins are set by kiln"),
            );
            continue;
        }
        if let Some(first) = vars.iter().find(|x| x.name.value == v.name) {
            cx.emit(
                Diagnostic::new(
                    "duplicate-variable",
                    v.name_span,
                    format!("variable `{}` is declared twice", v.name),
                )
                .label("second declaration")
                .with(first.name.span, "first declaration")
                .help("remove one of them"),
            );
            continue;
        }
        let default = match v.args.first() {
            Some(arg) => match string(cx, arg) {
                Some(s) => Some(s),
                None => continue,
            },
            None => None,
        };
        vars.push(Variable {
            name: Spanned::new(v.name.to_string(), v.name_span),
            default,
            value: None,
        });
    }
    vars
}

fn matrix(cx: &mut Cx<'_>, n: &NodeView<'_>) -> Option<Matrix> {
    n.check_props(cx, &[]);
    n.check_args(
        cx,
        0,
        0,
        "a block of axes, e.g. `language \"en-US\" \"de-DE\"`",
    );
    let mut axes: Vec<Axis> = Vec::new();
    let mut ok = true;
    if n.node.children().is_none_or(|c| c.nodes().is_empty()) {
        cx.emit(
            Diagnostic::new("empty-matrix", n.name_span, "`matrix` has no axes")
                .label("no axes")
                .help("add axes inside braces: `matrix { language \"en-US\" \"de-DE\" }`, or remove `matrix`"),
        );
        return None;
    }
    for child in n.children() {
        let a = NodeView::new(cx, child);
        a.check_props(cx, &[]);
        a.no_children(cx);
        if !is_var_name(a.name) {
            cx.emit(
                Diagnostic::new("bad-variable-name", a.name_span, format!("`{}` is not a valid axis name", a.name))
                    .label("invalid name")
                    .help("axis names are variable names: letters, digits, `_` and `-`, starting with a letter or `_`"),
            );
            ok = false;
            continue;
        }
        if crate::model::BUILTIN_VARIABLES.contains(&a.name) {
            cx.emit(
                Diagnostic::new(
                    "reserved-variable",
                    a.name_span,
                    format!("`{}` is a builtin variable", a.name),
                )
                .label("reserved name")
                .help("pick another axis name"),
            );
            ok = false;
            continue;
        }
        if let Some(first) = axes.iter().find(|x| x.name.value == a.name) {
            cx.emit(
                Diagnostic::new(
                    "duplicate-axis",
                    a.name_span,
                    format!("matrix axis `{}` is given twice", a.name),
                )
                .label("second axis")
                .with(first.name.span, "first axis")
                .help("put all values on one line"),
            );
            ok = false;
            continue;
        }
        if a.args.is_empty() {
            cx.emit(
                Diagnostic::new(
                    "empty-axis",
                    a.name_span,
                    format!("matrix axis `{}` has no values", a.name),
                )
                .label("no values")
                .help(format!("list the values: `{} \"a\" \"b\"`", a.name)),
            );
            ok = false;
            continue;
        }
        let mut values: Vec<Spanned<String>> = Vec::new();
        for arg in &a.args {
            let Some(value) = nonempty(cx, arg) else {
                ok = false;
                continue;
            };
            if let Some(first) = values.iter().find(|v| v.value == value.value) {
                cx.emit(
                    Diagnostic::new(
                        "duplicate-value",
                        value.span,
                        format!("value `{}` appears twice in axis `{}`", value.value, a.name),
                    )
                    .label("repeated")
                    .with(first.span, "first here")
                    .help("each value makes one image; list it once"),
                );
                ok = false;
                continue;
            }
            values.push(value);
        }
        axes.push(Axis {
            span: a.span,
            name: Spanned::new(a.name.to_string(), a.name_span),
            values,
        });
    }
    ok.then_some(Matrix { span: n.span, axes })
}

fn from(cx: &mut Cx<'_>, n: &NodeView<'_>) -> Option<From> {
    n.check_props(cx, &[]);
    n.no_children(cx);
    if !n.check_args(cx, 1, 1, "the name of the parent pipeline") {
        return None;
    }
    let name = nonempty_template(cx, &n.args[0])?;
    Some(From { span: n.span, name })
}

/// A location string: URL, `glance:<ref>` or a local path.
fn origin(cx: &mut Cx<'_>, v: &Val<'_>, allow_glance: bool) -> Option<Origin> {
    let text = nonempty(cx, v)?;
    let s = text.value.as_str();
    if s.starts_with("https://") || s.starts_with("http://") {
        let t = template(cx, v)?;
        let host = s.split_once("://").map(|x| x.1).unwrap_or("");
        if host.is_empty() || host.starts_with('/') {
            cx.emit(
                Diagnostic::new("bad-url", v.span, format!("`{s}` has no host"))
                    .label("no host")
                    .help("write a full URL, e.g. `https://example.org/file.iso`"),
            );
            return None;
        }
        return Some(Origin::Url(t));
    }
    if let Some(rest) = s.strip_prefix("glance:") {
        if !allow_glance {
            cx.emit(
                Diagnostic::new(
                    "glance-not-allowed",
                    v.span,
                    "a Glance image cannot be used here",
                )
                .label("Glance reference")
                .help("give a local path or an http(s) URL"),
            );
            return None;
        }
        if rest.is_empty() {
            cx.emit(
                Diagnostic::new("empty-value", v.span, "`glance:` needs an image id or name")
                    .label("empty reference")
                    .help("write `glance:<image id>` or `glance:<image name>`"),
            );
            return None;
        }
        let kind = if is_uuid(rest) {
            GlanceRefKind::Id
        } else {
            GlanceRefKind::Name
        };
        let span = v.locate(s, "glance:".len(), s.len());
        return Some(Origin::Glance(GlanceRef {
            value: Spanned::new(rest.to_string(), span),
            kind,
        }));
    }
    if let Some((scheme, _)) = s.split_once("://") {
        cx.emit(
            Diagnostic::new(
                "unsupported-scheme",
                v.locate(s, 0, scheme.len()),
                format!("unsupported URL scheme `{scheme}`"),
            )
            .label("unsupported scheme")
            .help(
                "use `https://`, `http://`, `glance:<id or name>` or a path relative to this file",
            ),
        );
        return None;
    }
    if s.contains('{') {
        cx.emit(
            Diagnostic::new(
                "template-in-path",
                v.span,
                "local paths cannot use variables",
            )
            .label("`{` in a path")
            .help("paths are resolved when the file is read; write the path literally"),
        );
        return None;
    }
    Some(Origin::Path(cx.local_path(s, text.span)))
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

pub(crate) fn checksum(cx: &mut Cx<'_>, v: &Val<'_>) -> Option<Checksum> {
    let text = nonempty(cx, v)?;
    let s = text.value.as_str();
    const ALGOS: &[(&str, ChecksumAlgorithm)] = &[
        ("sha256", ChecksumAlgorithm::Sha256),
        ("sha512", ChecksumAlgorithm::Sha512),
        ("md5", ChecksumAlgorithm::Md5),
    ];
    let Some((prefix, hex)) = s.split_once(':') else {
        let guess = match s.len() {
            32 => "md5",
            128 => "sha512",
            _ => "sha256",
        };
        cx.emit(
            Diagnostic::new("bad-checksum", v.span, "checksum has no algorithm prefix")
                .label("no `algorithm:`")
                .help(format!(
                    "write `{guess}:{s}`; accepted: `sha256:`, `sha512:`, `md5:`"
                )),
        );
        return None;
    };
    let Some(&(_, algorithm)) = ALGOS.iter().find(|(n, _)| n.eq_ignore_ascii_case(prefix)) else {
        let help = match closest(prefix, ["sha256", "sha512", "md5"]) {
            Some(c) if prefix != "sha1" => {
                format!("did you mean `{c}`? accepted: `sha256:`, `sha512:`, `md5:`")
            }
            _ => "accepted: `sha256:`, `sha512:`, `md5:`".to_string(),
        };
        cx.emit(
            Diagnostic::new(
                "bad-checksum",
                v.locate(s, 0, prefix.len()),
                format!("unsupported checksum algorithm `{prefix}`"),
            )
            .label("unsupported algorithm")
            .help(help),
        );
        return None;
    };
    let hex_start = prefix.len() + 1;
    if let Some((i, c)) = hex.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
        cx.emit(
            Diagnostic::new(
                "bad-checksum",
                v.locate(s, hex_start + i, hex_start + i + c.len_utf8()),
                format!("`{c}` is not a hex digit"),
            )
            .label("not hex")
            .help(format!(
                "a {} digest is {} hex digits (0-9, a-f)",
                algorithm.name(),
                algorithm.hex_len()
            )),
        );
        return None;
    }
    if hex.len() != algorithm.hex_len() {
        cx.emit(
            Diagnostic::new(
                "bad-checksum",
                v.locate(s, hex_start, s.len()),
                format!(
                    "{} digest has {} hex digits, expected {}",
                    algorithm.name(),
                    hex.len(),
                    algorithm.hex_len()
                ),
            )
            .label(format!("{} digits", hex.len()))
            .help("copy the whole digest, e.g. from `sha256sum FILE`"),
        );
        return None;
    }
    Some(Checksum {
        span: v.span,
        algorithm,
        hex: hex.to_ascii_lowercase(),
    })
}

/// `origin checksum=...` shared by `source`, `drivers` and `installer`.
fn fetched(
    cx: &mut Cx<'_>,
    n: &NodeView<'_>,
    allow_glance: bool,
    what: &str,
) -> Option<(Origin, Option<Checksum>)> {
    if !n.check_args(cx, 1, 1, what) {
        return None;
    }
    let origin = origin(cx, &n.args[0], allow_glance);
    let sum = n.prop("checksum").and_then(|v| checksum(cx, &v));
    let origin = origin?;
    match (&origin, n.prop("checksum")) {
        (Origin::Url(url), None) => {
            cx.emit(
                Diagnostic::new("missing-checksum", url.span, "a download needs a checksum")
                    .label("URL without `checksum`")
                    .help("add `checksum=\"sha256:<digest>\"` (or `sha512:`/`md5:`); kiln verifies every byte it downloads"),
            );
            return None;
        }
        (Origin::Glance(_), Some(c)) => {
            cx.emit(
                Diagnostic::new(
                    "unexpected-checksum",
                    c.entry_span,
                    "a Glance image carries its own checksums",
                )
                .label("not used for Glance sources")
                .help("remove `checksum`; kiln verifies Glance's md5 and sha512 while downloading"),
            );
            return None;
        }
        _ => {}
    }
    if n.prop("checksum").is_some() && sum.is_none() {
        return None;
    }
    Some((origin, sum))
}

fn source(cx: &mut Cx<'_>, n: &NodeView<'_>) -> Option<Source> {
    n.check_props(cx, &["checksum"]);
    n.no_children(cx);
    let (origin, checksum) = fetched(cx, n, true, "a path, an http(s) URL or `glance:<image>`")?;
    Some(Source {
        span: n.span,
        origin,
        checksum,
    })
}

fn drivers(cx: &mut Cx<'_>, n: &NodeView<'_>) -> Option<Drivers> {
    n.check_props(cx, &["checksum", "kind"]);
    n.no_children(cx);
    let kind = match n.prop("kind") {
        Some(v) => choice(
            cx,
            &v,
            &[
                ("virtio-win", DriverKind::VirtioWin),
                ("other", DriverKind::Other),
            ],
        )?,
        None => Spanned::new(DriverKind::VirtioWin, n.span),
    };
    let (origin, checksum) = fetched(cx, n, false, "a path or an http(s) URL of a driver ISO")?;
    Some(Drivers {
        span: n.span,
        origin,
        checksum,
        kind,
    })
}

fn disk(cx: &mut Cx<'_>, n: &NodeView<'_>) -> Option<Disk> {
    n.check_props(cx, &["size", "format"]);
    n.check_args(
        cx,
        0,
        0,
        "only properties: `size=\"40GiB\" format=\"qcow2\"`",
    );
    n.no_children(cx);
    let format = match n.prop("format") {
        Some(v) => choice(cx, &v, FORMATS),
        None => Some(Spanned::new(ImageFormat::Qcow2, n.span)),
    };
    let size = match n.prop("size") {
        Some(v) => size(cx, &v, limits::MIN_DISK, limits::MAX_DISK),
        None => {
            cx.emit(
                Diagnostic::new("missing-property", n.name_span, "`disk` needs `size`")
                    .label("no size")
                    .help(format!(
                        "e.g. `disk size=\"20GiB\"`; at least {}",
                        limits::MIN_DISK
                    )),
            );
            None
        }
    };
    Some(Disk {
        span: n.span,
        size: size?,
        format: format?,
    })
}

const FORMATS: &[(&str, ImageFormat)] = &[("qcow2", ImageFormat::Qcow2), ("raw", ImageFormat::Raw)];

/// Decodes `machine`; fields that are absent or wrong get their defaults spanned at `at`.
pub(crate) fn machine(cx: &mut Cx<'_>, n: &NodeView<'_>, at: Span) -> Machine {
    n.check_props(
        cx,
        &[
            "cpus",
            "memory",
            "firmware",
            "secure-boot",
            "type",
            "tpm",
            "disk-bus",
            "nic",
        ],
    );
    n.check_args(cx, 0, 0, "only properties, e.g. `cpus=2 memory=\"4GiB\"`");
    n.no_children(cx);
    let mut m = default_machine(at);
    if let Some(v) = n
        .prop("cpus")
        .and_then(|v| integer(cx, &v, 1, limits::MAX_CPUS))
    {
        m.cpus = v;
    }
    if let Some(v) = n
        .prop("memory")
        .and_then(|v| size(cx, &v, limits::MIN_MEMORY, limits::MAX_MEMORY))
    {
        m.memory = v;
    }
    if let Some(v) = n.prop("firmware").and_then(|v| {
        choice(
            cx,
            &v,
            &[("bios", Firmware::Bios), ("uefi", Firmware::Uefi)],
        )
    }) {
        m.firmware = v;
    }
    if let Some(v) = n.prop("secure-boot").and_then(|v| boolean(cx, &v)) {
        m.secure_boot = v;
    }
    if let Some(v) = n.prop("type").and_then(|v| {
        choice(
            cx,
            &v,
            &[("pc", MachineType::Pc), ("q35", MachineType::Q35)],
        )
    }) {
        m.machine_type = v;
    }
    if let Some(v) = n.prop("tpm").and_then(|v| boolean(cx, &v)) {
        m.tpm = v;
    }
    if let Some(v) = n.prop("disk-bus").and_then(|v| {
        choice(
            cx,
            &v,
            &[
                ("virtio", DiskBus::Virtio),
                ("scsi", DiskBus::Scsi),
                ("sata", DiskBus::Sata),
                ("ide", DiskBus::Ide),
            ],
        )
    }) {
        m.disk_bus = v;
    }
    if let Some(v) = n.prop("nic").and_then(|v| {
        choice(
            cx,
            &v,
            &[
                ("virtio", NicModel::Virtio),
                ("e1000", NicModel::E1000),
                ("e1000e", NicModel::E1000e),
                ("rtl8139", NicModel::Rtl8139),
            ],
        )
    }) {
        m.nic = v;
    }
    m
}

pub(crate) fn default_machine(at: Span) -> Machine {
    Machine {
        span: at,
        cpus: Spanned::new(2, at),
        memory: Spanned::new(limits::DEFAULT_MEMORY, at),
        firmware: Spanned::new(Firmware::Bios, at),
        secure_boot: Spanned::new(false, at),
        machine_type: Spanned::new(MachineType::Pc, at),
        tpm: Spanned::new(false, at),
        disk_bus: Spanned::new(DiskBus::Virtio, at),
        nic: Spanned::new(NicModel::Virtio, at),
    }
}

const INSTALL_METHODS: &[(&str, InstallMethod)] = &[
    ("kickstart", InstallMethod::Kickstart),
    ("preseed", InstallMethod::Preseed),
    ("autoinstall", InstallMethod::Autoinstall),
    ("autounattend", InstallMethod::Autounattend),
    ("none", InstallMethod::None),
];

const WINDOWS_NODES: &[&str] = &[
    "version",
    "arch",
    "image",
    "language",
    "timezone",
    "computer-name",
    "product-key",
    "admin-password",
];

fn install(cx: &mut Cx<'_>, n: &NodeView<'_>) -> Option<Install> {
    n.check_props(cx, &["file", "inline", "timeout", "kernel-args"]);
    if !n.check_args(
        cx,
        1,
        1,
        "a method: `kickstart`, `preseed`, `autoinstall`, `autounattend` or `none`",
    ) {
        return None;
    }
    let method = choice(cx, &n.args[0], INSTALL_METHODS);
    let timeout = match n.prop("timeout") {
        Some(v) => duration(cx, &v, limits::MIN_TIMEOUT, limits::MAX_TIMEOUT),
        None => Some(Spanned::new(limits::DEFAULT_INSTALL_TIMEOUT, n.span)),
    };
    let answer = match (n.prop("file"), n.prop("inline")) {
        (Some(f), None) => {
            nonempty(cx, &f).map(|p| Some(Answer::File(cx.local_path(&p.value, p.span))))
        }
        (None, Some(i)) => nonempty_template(cx, &i).map(|t| Some(Answer::Inline(t))),
        (None, None) => Some(None),
        (Some(f), Some(i)) => {
            cx.emit(
                Diagnostic::new(
                    "conflicting-properties",
                    i.entry_span,
                    "`install` takes `file` or `inline`, not both",
                )
                .label("second answer file")
                .with(f.entry_span, "first answer file")
                .help("keep one of them"),
            );
            None
        }
    };
    let kernel_args = n.prop("kernel-args").map(|v| nonempty_template(cx, &v));
    let method = method?;
    let mut answer = answer?;
    let kernel_args = match kernel_args {
        Some(Some(t)) => {
            if matches!(
                method.value,
                InstallMethod::None | InstallMethod::Autounattend
            ) {
                cx.emit(
                    Diagnostic::new(
                        "unexpected-kernel-args",
                        t.span,
                        format!(
                            "install method `{}` boots the installer from its own boot menu: kiln passes it no kernel arguments",
                            method.value.name()
                        ),
                    )
                    .label("not used")
                    .help("`kernel-args` works with `preseed`, `autoinstall` and `kickstart`, whose installers kiln boots by their kernel"),
                );
                return None;
            }
            Some(t)
        }
        Some(None) => return None,
        None => None,
    };
    // `preseed` / `kickstart` take a block of secrets kiln hashes into the user's answer file.
    let linux_block = n.node.children().is_some()
        && matches!(
            method.value,
            InstallMethod::Preseed | InstallMethod::Kickstart
        );
    let root_password = if linux_block {
        Some(super::linux_install::root_password(cx, n)?)
    } else {
        None
    };
    let windows = if n.node.children().is_some() && !linux_block {
        if method.value != InstallMethod::Autounattend {
            n.no_children(cx);
            return None;
        }
        if let Some(a) = &answer {
            let span = match a {
                Answer::File(p) => p.span,
                Answer::Inline(t) => t.span,
            };
            cx.emit(
                Diagnostic::new("conflicting-answer", cx.span(n.node.children().expect("checked").span()), "settings block and answer file given together")
                    .label("settings for a generated autounattend.xml")
                    .with(span, "your own answer file")
                    .help("either let kiln generate autounattend.xml from these settings, or give your own file"),
            );
            answer = None;
        }
        Some(windows_setup(cx, n)?)
    } else {
        None
    };
    match (method.value, &answer, &windows) {
        (InstallMethod::None, Some(a), _) => {
            let span = match a {
                Answer::File(p) => p.span,
                Answer::Inline(t) => t.span,
            };
            cx.emit(
                Diagnostic::new("unexpected-answer", span, "install method `none` takes no answer file")
                    .label("not used")
                    .help("use `kickstart`, `preseed`, `autoinstall` or `autounattend` to pass an answer file"),
            );
            return None;
        }
        (InstallMethod::Autounattend, None, None) => {
            cx.emit(
                Diagnostic::new("missing-answer", method.span, "`autounattend` needs an answer file or a settings block")
                    .label("no answer file")
                    .help("add `file=\"autounattend.xml\"`, or a block `{ version \"server-2022\"; image name=\"...\"; admin-password env=\"VAR\" }` for kiln to generate it"),
            );
            return None;
        }
        (
            InstallMethod::Kickstart | InstallMethod::Preseed | InstallMethod::Autoinstall,
            None,
            _,
        ) => {
            cx.emit(
                Diagnostic::new(
                    "missing-answer",
                    method.span,
                    format!("`{}` needs an answer file", method.value.name()),
                )
                .label("no answer file")
                .help("add `file=\"path\"` (relative to this file) or `inline=\"...\"`"),
            );
            return None;
        }
        _ => {}
    }
    Some(Install {
        span: n.span,
        method,
        answer,
        timeout: timeout?,
        windows,
        kernel_args,
        root_password,
    })
}

fn windows_setup(cx: &mut Cx<'_>, n: &NodeView<'_>) -> Option<WindowsSetup> {
    let block = cx.span(n.node.children().expect("caller checked").span());
    let mut seen: BTreeMap<&str, Span> = BTreeMap::new();
    let mut ok = true;
    let mut version = None;
    let mut arch = Spanned::new(Arch::Amd64, block);
    let mut image = None;
    let mut language = Template::literal("en-US", block);
    let mut timezone = Template::literal("UTC", block);
    let mut computer_name = Template::literal("*", block);
    let mut product_key = None;
    let mut admin_password = None;
    for child in n.children() {
        let name = child.name().value();
        let Some(&known) = WINDOWS_NODES.iter().find(|k| **k == name) else {
            n.unknown_child(cx, child, WINDOWS_NODES);
            ok = false;
            continue;
        };
        let c = NodeView::new(cx, child);
        if let Some(first) = seen.get(known) {
            cx.emit(
                Diagnostic::new(
                    "duplicate-node",
                    c.name_span,
                    format!("`{known}` is given twice in `install`"),
                )
                .label("second one")
                .with(*first, "first one")
                .help("keep one of them"),
            );
            ok = false;
            continue;
        }
        seen.insert(known, c.name_span);
        let single = |cx: &mut Cx<'_>, c: &NodeView<'_>, what: &str| -> bool {
            c.check_props(cx, &[]);
            c.no_children(cx);
            c.check_args(cx, 1, 1, what)
        };
        let got = match known {
            "version" => single(cx, &c, "a Windows version")
                .then(|| {
                    choice(
                        cx,
                        &c.args[0],
                        &[
                            ("10", WindowsVersion::W10),
                            ("11", WindowsVersion::W11),
                            ("server-2016", WindowsVersion::Server2016),
                            ("server-2019", WindowsVersion::Server2019),
                            ("server-2022", WindowsVersion::Server2022),
                            ("server-2025", WindowsVersion::Server2025),
                        ],
                    )
                    .map(|v| version = Some(v))
                })
                .flatten(),
            "arch" => single(cx, &c, "`amd64` or `arm64`")
                .then(|| {
                    choice(
                        cx,
                        &c.args[0],
                        &[("amd64", Arch::Amd64), ("arm64", Arch::Arm64)],
                    )
                    .map(|v| arch = v)
                })
                .flatten(),
            "image" => {
                c.check_props(cx, &["name", "index"]);
                c.no_children(cx);
                c.check_args(cx, 0, 0, "`name=\"...\"` or `index=N`");
                match (c.prop("name"), c.prop("index")) {
                    (Some(v), None) => {
                        nonempty_template(cx, &v).map(|t| image = Some(WindowsImage::Name(t)))
                    }
                    (None, Some(v)) => {
                        integer(cx, &v, 1, 64).map(|i| image = Some(WindowsImage::Index(i)))
                    }
                    (Some(a), Some(b)) => {
                        cx.emit(
                            Diagnostic::new(
                                "conflicting-properties",
                                b.entry_span,
                                "`image` takes `name` or `index`, not both",
                            )
                            .label("second choice")
                            .with(a.entry_span, "first choice")
                            .help("keep one of them"),
                        );
                        None
                    }
                    (None, None) => {
                        cx.emit(
                            Diagnostic::new("missing-property", c.name_span, "`image` needs `name` or `index`")
                                .label("no image chosen")
                                .help("e.g. `image name=\"Windows Server 2022 SERVERSTANDARD\"` or `image index=2`"),
                        );
                        None
                    }
                }
            }
            "language" => single(cx, &c, "a language tag such as `en-US`")
                .then(|| nonempty_template(cx, &c.args[0]).map(|t| language = t))
                .flatten(),
            "timezone" => single(cx, &c, "a Windows time zone name")
                .then(|| nonempty_template(cx, &c.args[0]).map(|t| timezone = t))
                .flatten(),
            "computer-name" => single(cx, &c, "a computer name")
                .then(|| nonempty_template(cx, &c.args[0]).map(|t| computer_name = t))
                .flatten(),
            "product-key" => secret(cx, &c).map(|s| product_key = Some(s)),
            "admin-password" => secret(cx, &c).map(|s| admin_password = Some(s)),
            _ => unreachable!("WINDOWS_NODES covers every arm"),
        };
        ok &= got.is_some();
    }
    for (required, example) in [
        ("version", "version \"server-2022\""),
        ("image", "image name=\"Windows Server 2022 SERVERSTANDARD\""),
        (
            "admin-password",
            "admin-password env=\"KILN_WINDOWS_ADMIN_PASSWORD\"",
        ),
    ] {
        if !seen.contains_key(required) {
            cx.emit(
                Diagnostic::new(
                    "missing-node",
                    n.name_span,
                    format!("autounattend settings need `{required}`"),
                )
                .label(format!("no `{required}` in this block"))
                .help(format!("add `{example}` inside the braces")),
            );
            ok = false;
        }
    }
    if !ok {
        return None;
    }
    Some(WindowsSetup {
        span: block,
        version: version?,
        arch,
        image: image?,
        language,
        timezone,
        computer_name,
        product_key,
        admin_password: admin_password?,
    })
}

const STEP_NODES: &[&str] = &[
    "installer",
    "package",
    "file",
    "run",
    "user",
    "plugin",
    "generalize",
];

fn customize(cx: &mut Cx<'_>, n: &NodeView<'_>) -> Option<Customize> {
    n.check_props(cx, &["timeout"]);
    if !n.check_args(cx, 1, 1, "the agent: `cloud-init` or `cloudbase-init`") {
        return None;
    }
    let agent = choice(
        cx,
        &n.args[0],
        &[
            ("cloud-init", Agent::CloudInit),
            ("cloudbase-init", Agent::CloudbaseInit),
        ],
    );
    let timeout = match n.prop("timeout") {
        Some(v) => duration(cx, &v, limits::MIN_TIMEOUT, limits::MAX_TIMEOUT),
        None => Some(Spanned::new(limits::DEFAULT_CUSTOMIZE_TIMEOUT, n.span)),
    };
    let mut ok = true;
    let mut steps = Vec::new();
    let mut generalize: Option<Spanned<bool>> = None;
    let mut installer: Option<crate::model::Source> = None;
    for child in n.children() {
        let name = child.name().value();
        let Some(&known) = STEP_NODES.iter().find(|k| **k == name) else {
            n.unknown_child(cx, child, STEP_NODES);
            ok = false;
            continue;
        };
        let c = NodeView::new(cx, child);
        let agent_only = |cx: &mut Cx<'_>, want: Agent, help: &str| -> bool {
            match &agent {
                Some(a) if a.value != want => {
                    cx.emit(
                        Diagnostic::new(
                            "wrong-agent",
                            c.name_span,
                            format!("`{}` is for {} only", c.name, want.name()),
                        )
                        .label(format!("not supported by {}", a.value.name()))
                        .with(a.span, "agent chosen here")
                        .help(help.to_string()),
                    );
                    false
                }
                _ => true,
            }
        };
        let step = match known {
            "generalize" => {
                c.check_props(cx, &[]);
                c.no_children(cx);
                c.check_args(cx, 0, 1, "an optional `#true` or `#false`");
                if let Some(first) = &generalize {
                    cx.emit(
                        Diagnostic::new(
                            "duplicate-node",
                            c.name_span,
                            "`generalize` is given twice",
                        )
                        .label("second one")
                        .with(first.span, "first one")
                        .help("keep one of them"),
                    );
                    ok = false;
                    continue;
                }
                match c.args.first() {
                    Some(v) => match boolean(cx, v) {
                        Some(b) => generalize = Some(b),
                        None => ok = false,
                    },
                    None => generalize = Some(Spanned::new(true, c.span)),
                }
                continue;
            }
            "installer" => {
                if !agent_only(
                    cx,
                    Agent::CloudbaseInit,
                    "cloud-init comes with the Linux image; remove `installer`",
                ) {
                    ok = false;
                    continue;
                }
                c.check_props(cx, &["checksum"]);
                c.no_children(cx);
                if let Some(first) = &installer {
                    cx.emit(
                        Diagnostic::new(
                            "duplicate-node",
                            c.name_span,
                            "`installer` is given twice",
                        )
                        .label("second one")
                        .with(first.span, "first one")
                        .help("keep one of them"),
                    );
                    ok = false;
                    continue;
                }
                match fetched(cx, &c, false, "the path or URL of the cloudbase-init MSI") {
                    Some((origin, checksum)) => {
                        installer = Some(crate::model::Source {
                            span: c.span,
                            origin,
                            checksum,
                        })
                    }
                    None => ok = false,
                }
                continue;
            }
            "package" => {
                if !agent_only(
                    cx,
                    Agent::CloudInit,
                    "cloudbase-init cannot install packages; use `run` with a PowerShell command",
                ) {
                    ok = false;
                    continue;
                }
                c.check_props(cx, &[]);
                c.no_children(cx);
                if !c.check_args(cx, 1, usize::MAX, "one or more package names") {
                    ok = false;
                    continue;
                }
                let pkgs: Vec<_> = c
                    .args
                    .iter()
                    .filter_map(|a| nonempty_template(cx, a))
                    .collect();
                if pkgs.len() != c.args.len() {
                    ok = false;
                    continue;
                }
                StepKind::Packages(pkgs)
            }
            "run" => {
                c.check_props(cx, &[]);
                c.no_children(cx);
                if !c.check_args(cx, 1, 1, "one command (a string)") {
                    ok = false;
                    continue;
                }
                match nonempty_template(cx, &c.args[0]) {
                    Some(t) => StepKind::Run(t),
                    None => {
                        ok = false;
                        continue;
                    }
                }
            }
            "plugin" => {
                if !agent_only(
                    cx,
                    Agent::CloudbaseInit,
                    "cloud-init modules are configured by the steps; remove `plugin`",
                ) {
                    ok = false;
                    continue;
                }
                c.check_props(cx, &[]);
                c.no_children(cx);
                if !c.check_args(cx, 1, 1, "a cloudbase-init plugin class name") {
                    ok = false;
                    continue;
                }
                match nonempty(cx, &c.args[0]) {
                    Some(p) => StepKind::Plugin(p),
                    None => {
                        ok = false;
                        continue;
                    }
                }
            }
            "file" => match file_step(cx, &c) {
                Some(f) => StepKind::File(f),
                None => {
                    ok = false;
                    continue;
                }
            },
            "user" => match user_step(cx, &c, agent.as_ref().map(|a| a.value)) {
                Some(u) => StepKind::User(u),
                None => {
                    ok = false;
                    continue;
                }
            },
            _ => unreachable!("STEP_NODES covers every arm"),
        };
        steps.push(Step {
            span: c.span,
            kind: step,
        });
    }
    let agent = agent?;
    if !ok {
        return None;
    }
    Some(Customize {
        span: n.span,
        agent,
        steps,
        generalize: generalize.unwrap_or(Spanned::new(true, n.span)),
        timeout: timeout?,
        installer,
    })
}

fn file_step(cx: &mut Cx<'_>, c: &NodeView<'_>) -> Option<FileStep> {
    c.check_props(cx, &["content", "source", "mode", "owner"]);
    c.no_children(cx);
    if !c.check_args(cx, 1, 1, "the path in the image") {
        return None;
    }
    let path = nonempty_template(cx, &c.args[0]);
    if let Some(p) = &path
        && !(p.raw.starts_with('/')
            || p.raw.get(1..3) == Some(":\\")
            || p.raw.get(1..3) == Some(":/"))
    {
        cx.emit(
            Diagnostic::new(
                "relative-guest-path",
                p.span,
                format!("`{}` is not an absolute path in the image", p.raw),
            )
            .label("relative path")
            .help("write the full path, e.g. `/etc/motd` or `C:\\\\kiln\\\\setup.ps1`"),
        );
        return None;
    }
    let content = match (c.prop("content"), c.prop("source")) {
        (Some(v), None) => template(cx, &v).map(FileContent::Inline),
        (None, Some(v)) => {
            nonempty(cx, &v).map(|p| FileContent::Source(cx.local_path(&p.value, p.span)))
        }
        (Some(a), Some(b)) => {
            cx.emit(
                Diagnostic::new(
                    "conflicting-properties",
                    b.entry_span,
                    "`file` takes `content` or `source`, not both",
                )
                .label("second content")
                .with(a.entry_span, "first content")
                .help("keep one of them"),
            );
            None
        }
        (None, None) => {
            cx.emit(
                Diagnostic::new(
                    "missing-property",
                    c.name_span,
                    "`file` needs `content` or `source`",
                )
                .label("no content")
                .help("add `content=\"...\"` or `source=\"path/next/to/the/pipeline\"`"),
            );
            None
        }
    };
    let mode = match c.prop("mode") {
        Some(v) => match mode(cx, &v) {
            Some(m) => Some(m),
            None => return None,
        },
        None => None,
    };
    let owner = match c.prop("owner") {
        Some(v) => Some(nonempty_template(cx, &v)?),
        None => None,
    };
    Some(FileStep {
        path: path?,
        content: content?,
        mode,
        owner,
    })
}

fn mode(cx: &mut Cx<'_>, v: &Val<'_>) -> Option<Spanned<u32>> {
    let s = match v.value {
        kdl::KdlValue::String(s) => s,
        kdl::KdlValue::Integer(n) => {
            super::reader::expected(
                cx,
                v,
                "an octal mode string",
                Some(format!("quote it so it stays octal: `\"{n:04}\"`")),
            );
            return None;
        }
        _ => {
            super::reader::expected(
                cx,
                v,
                "an octal mode string",
                Some("e.g. `\"0644\"`".into()),
            );
            return None;
        }
    };
    match u32::from_str_radix(s, 8) {
        Ok(m) if (3..=4).contains(&s.len()) && m <= 0o7777 => Some(Spanned::new(m, v.span)),
        _ => {
            cx.emit(
                Diagnostic::new("bad-mode", v.span, format!("`{s}` is not a file mode"))
                    .label("not an octal mode")
                    .help("write three or four octal digits, e.g. `\"0644\"` or `\"755\"`"),
            );
            None
        }
    }
}

const USER_NODES: &[&str] = &["groups", "ssh-key", "password"];

fn user_step(cx: &mut Cx<'_>, c: &NodeView<'_>, agent: Option<Agent>) -> Option<UserStep> {
    c.check_props(cx, &["admin", "shell"]);
    if !c.check_args(cx, 1, 1, "the user name") {
        return None;
    }
    let name = nonempty_template(cx, &c.args[0]);
    let admin = match c.prop("admin") {
        Some(v) => boolean(cx, &v),
        None => Some(Spanned::new(false, c.span)),
    };
    let shell = match c.prop("shell") {
        Some(v) if agent == Some(Agent::CloudbaseInit) => {
            cx.emit(
                Diagnostic::new(
                    "wrong-agent",
                    v.entry_span,
                    "`shell` is for cloud-init only",
                )
                .label("not supported by cloudbase-init")
                .help("remove `shell`; Windows users have no login shell setting"),
            );
            return None;
        }
        Some(v) => Some(nonempty_template(cx, &v)?),
        None => None,
    };
    let mut ok = true;
    let mut groups = Vec::new();
    let mut ssh_keys = Vec::new();
    let mut password = None;
    for child in c.children() {
        let name = child.name().value();
        if !USER_NODES.contains(&name) {
            c.unknown_child(cx, child, USER_NODES);
            ok = false;
            continue;
        }
        let g = NodeView::new(cx, child);
        match name {
            "password" => match secret(cx, &g) {
                Some(s) => password = Some(s),
                None => ok = false,
            },
            _ => {
                g.check_props(cx, &[]);
                g.no_children(cx);
                if !g.check_args(cx, 1, usize::MAX, "one or more strings") {
                    ok = false;
                    continue;
                }
                for a in &g.args {
                    match nonempty_template(cx, a) {
                        Some(t) if name == "groups" => groups.push(t),
                        Some(t) => ssh_keys.push(t),
                        None => ok = false,
                    }
                }
            }
        }
    }
    if !ok {
        return None;
    }
    Some(UserStep {
        name: name?,
        groups,
        ssh_keys,
        password,
        admin: admin?,
        shell,
    })
}

fn boot_test(cx: &mut Cx<'_>, n: &NodeView<'_>) -> Option<BootTest> {
    n.check_props(cx, &["timeout"]);
    n.check_args(
        cx,
        0,
        0,
        "only `timeout=` and an optional block of `expect` lines",
    );
    let timeout = match n.prop("timeout") {
        Some(v) => duration(cx, &v, limits::MIN_TIMEOUT, limits::MAX_TIMEOUT),
        None => Some(Spanned::new(limits::DEFAULT_BOOT_TEST_TIMEOUT, n.span)),
    };
    let mut expect = Vec::new();
    let mut ok = true;
    for child in n.children() {
        if child.name().value() != "expect" {
            n.unknown_child(cx, child, &["expect"]);
            ok = false;
            continue;
        }
        let e = NodeView::new(cx, child);
        e.check_props(cx, &[]);
        e.no_children(cx);
        if !e.check_args(
            cx,
            1,
            1,
            "one line of text to wait for on the serial console",
        ) {
            ok = false;
            continue;
        }
        match nonempty_template(cx, &e.args[0]) {
            Some(t) => expect.push(t),
            None => ok = false,
        }
    }
    if !ok {
        return None;
    }
    Some(BootTest {
        span: n.span,
        timeout: timeout?,
        expect,
    })
}

/// Decodes `output`; absent or wrong values get defaults spanned at `at`.
pub(crate) fn output(cx: &mut Cx<'_>, n: &NodeView<'_>, at: Span) -> Output {
    n.check_props(cx, &["format", "compression"]);
    n.check_args(
        cx,
        0,
        0,
        "only properties: `format=\"qcow2\" compression=\"zstd\"`",
    );
    n.no_children(cx);
    let mut out = default_output(at);
    if let Some(v) = n.prop("format").and_then(|v| choice(cx, &v, FORMATS)) {
        out.format = v;
    }
    if let Some(v) = n.prop("compression").and_then(|v| {
        choice(
            cx,
            &v,
            &[
                ("none", Compression::None),
                ("zlib", Compression::Zlib),
                ("zstd", Compression::Zstd),
            ],
        )
    }) {
        out.compression = v;
    }
    out
}

pub(crate) fn default_output(at: Span) -> Output {
    Output {
        span: at,
        format: Spanned::new(ImageFormat::Qcow2, at),
        compression: Spanned::new(Compression::None, at),
    }
}

/// Properties Glance sets itself or that `publish` sets through its own properties.
const RESERVED_PROPERTIES: &[(&str, &str)] = &[
    ("name", "use `publish glance name=\"...\"`"),
    ("visibility", "use `publish ... visibility=\"...\"`"),
    ("disk_format", "use `publish ... disk-format=\"...\"`"),
    (
        "container_format",
        "use `publish ... container-format=\"...\"`",
    ),
    ("min_disk", "use `publish ... min-disk=\"...\"`"),
    ("min_ram", "use `publish ... min-ram=\"...\"`"),
    ("protected", "use `publish ... protected=#true`"),
    ("tags", "use a `tag` node"),
    ("id", "Glance assigns the id"),
    ("status", "Glance sets the status"),
    ("checksum", "kiln sets it from the uploaded bytes"),
    ("os_hash_algo", "kiln sets it from the uploaded bytes"),
    ("os_hash_value", "kiln sets it from the uploaded bytes"),
    ("size", "Glance sets the size"),
    ("virtual_size", "Glance sets the virtual size"),
    ("owner", "Glance sets the owner from the project"),
    ("created_at", "Glance sets it"),
    ("updated_at", "Glance sets it"),
    ("file", "Glance sets it"),
    ("schema", "Glance sets it"),
    ("self", "Glance sets it"),
    ("locations", "Glance sets it"),
    ("direct_url", "Glance sets it"),
];

/// Well-known image properties (Nova, Glance metadefs), used to catch typos.
const KNOWN_PROPERTIES: &[&str] = &[
    "architecture",
    "hypervisor_type",
    "os_type",
    "os_distro",
    "os_version",
    "os_admin_user",
    "os_require_quiesce",
    "os_secure_boot",
    "hw_disk_bus",
    "hw_cdrom_bus",
    "hw_scsi_model",
    "hw_vif_model",
    "hw_vif_multiqueue_enabled",
    "hw_firmware_type",
    "hw_machine_type",
    "hw_qemu_guest_agent",
    "hw_rng_model",
    "hw_video_model",
    "hw_video_ram",
    "hw_tpm_model",
    "hw_tpm_version",
    "hw_boot_menu",
    "hw_pointer_model",
    "hw_input_bus",
    "hw_cpu_sockets",
    "hw_cpu_cores",
    "hw_cpu_threads",
    "hw_mem_encryption",
    "img_config_drive",
    "img_hide_hypervisor_id",
    "kernel_id",
    "ramdisk_id",
];

/// Allowed values for some well-known properties.
const PROPERTY_VALUES: &[(&str, &[&str])] = &[
    ("os_type", &["linux", "windows"]),
    (
        "hw_disk_bus",
        &[
            "virtio", "scsi", "ide", "sata", "usb", "fdc", "lxc", "uml", "xen",
        ],
    ),
    ("hw_firmware_type", &["bios", "uefi"]),
    (
        "hw_vif_model",
        &[
            "virtio", "e1000", "e1000e", "ne2k_pci", "pcnet", "rtl8139", "vmxnet3",
        ],
    ),
    ("hw_qemu_guest_agent", &["yes", "no"]),
    ("hw_tpm_version", &["1.2", "2.0"]),
    ("hw_tpm_model", &["tpm-tis", "tpm-crb"]),
    ("img_config_drive", &["optional", "mandatory"]),
    ("os_secure_boot", &["required", "disabled", "optional"]),
];

fn publish(cx: &mut Cx<'_>, n: &NodeView<'_>) -> Option<Publish> {
    n.check_props(
        cx,
        &[
            "name",
            "cloud",
            "visibility",
            "disk-format",
            "container-format",
            "min-disk",
            "min-ram",
            "protected",
        ],
    );
    if !n.check_args(cx, 1, 1, "the target: `glance`") {
        return None;
    }
    let target = choice(cx, &n.args[0], &[("glance", PublishTarget::Glance)]);
    let name = match n.prop("name") {
        Some(v) => nonempty_template(cx, &v),
        None => {
            cx.emit(
                Diagnostic::new("missing-property", n.name_span, "`publish` needs `name`")
                    .label("no image name")
                    .help("add `name=\"...\"`; it may use variables, e.g. `name=\"debian-12-{version}\"`"),
            );
            None
        }
    };
    let mut ok = true;
    let cloud = match n.prop("cloud") {
        Some(v) => match nonempty(cx, &v) {
            Some(c) => Some(c),
            None => {
                ok = false;
                None
            }
        },
        None => None,
    };
    let visibility = match n.prop("visibility") {
        Some(v) => choice(
            cx,
            &v,
            &[
                ("private", Visibility::Private),
                ("shared", Visibility::Shared),
                ("community", Visibility::Community),
                ("public", Visibility::Public),
            ],
        ),
        None => Some(Spanned::new(Visibility::Private, n.span)),
    };
    let disk_format = match n.prop("disk-format") {
        Some(v) => match choice(cx, &v, FORMATS) {
            Some(f) => Some(f),
            None => {
                ok = false;
                None
            }
        },
        None => None,
    };
    let container_format = match n.prop("container-format") {
        Some(v) => choice(
            cx,
            &v,
            &[
                ("bare", ContainerFormat::Bare),
                ("ovf", ContainerFormat::Ovf),
            ],
        ),
        None => Some(Spanned::new(ContainerFormat::Bare, n.span)),
    };
    let mut opt_size = |key: &str, min, max| match n.prop(key) {
        Some(v) => match size(cx, &v, min, max) {
            Some(s) => Some(s),
            None => {
                ok = false;
                None
            }
        },
        None => None,
    };
    let min_disk = opt_size("min-disk", crate::units::ByteSize(0), limits::MAX_DISK);
    let min_ram = opt_size("min-ram", crate::units::ByteSize(0), limits::MAX_MEMORY);
    let protected = match n.prop("protected") {
        Some(v) => boolean(cx, &v),
        None => Some(Spanned::new(false, n.span)),
    };
    let mut properties: Vec<Property> = Vec::new();
    let mut tags: Vec<Template> = Vec::new();
    for child in n.children() {
        let cname = child.name().value();
        let c = NodeView::new(cx, child);
        match cname {
            "property" => {
                c.no_children(cx);
                c.check_args(cx, 0, 0, "`key=\"value\"` pairs");
                if c.props.is_empty() {
                    cx.emit(
                        Diagnostic::new(
                            "missing-property",
                            c.name_span,
                            "`property` needs at least one `key=\"value\"`",
                        )
                        .label("nothing set")
                        .help("e.g. `property os_type=\"linux\" hw_disk_bus=\"virtio\"`"),
                    );
                    ok = false;
                }
                for p in &c.props {
                    let key = p.key.unwrap_or_default();
                    let key_span = Span::new(
                        cx.file,
                        p.entry_span.start as usize,
                        p.entry_span.start as usize + key.len(),
                    );
                    if let Some((_, help)) = RESERVED_PROPERTIES.iter().find(|(k, _)| *k == key) {
                        cx.emit(
                            Diagnostic::new(
                                "reserved-property",
                                key_span,
                                format!("`{key}` cannot be set as a property"),
                            )
                            .label("reserved by Glance")
                            .help(help.to_string()),
                        );
                        ok = false;
                        continue;
                    }
                    if key.is_empty()
                        || key.len() > 255
                        || !key
                            .chars()
                            .all(|ch| ch.is_ascii_alphanumeric() || "_:.-".contains(ch))
                    {
                        cx.emit(
                            Diagnostic::new(
                                "bad-property-key",
                                key_span,
                                format!("`{key}` is not a valid image property key"),
                            )
                            .label("invalid key")
                            .help("keys are letters, digits, `_`, `:`, `.` and `-`"),
                        );
                        ok = false;
                        continue;
                    }
                    if !KNOWN_PROPERTIES.contains(&key)
                        && let Some(c) = closest(key, KNOWN_PROPERTIES.iter().copied())
                    {
                        cx.emit(
                            Diagnostic::new(
                                "unknown-image-property",
                                key_span,
                                format!("`{key}` looks like a misspelt image property"),
                            )
                            .label("unknown property")
                            .help(format!(
                                "did you mean `{c}`? Nova ignores properties it does not know"
                            )),
                        );
                        ok = false;
                        continue;
                    }
                    if let Some(first) = properties.iter().find(|q| q.key.value == key) {
                        cx.emit(
                            Diagnostic::new(
                                "duplicate-property",
                                key_span,
                                format!("image property `{key}` is set twice"),
                            )
                            .label("second value")
                            .with(first.key.span, "first value")
                            .help("keep one of them"),
                        );
                        ok = false;
                        continue;
                    }
                    let Some(value) = template(cx, p) else {
                        ok = false;
                        continue;
                    };
                    if let (Some((_, allowed)), Some(lit)) = (
                        PROPERTY_VALUES.iter().find(|(k, _)| *k == key),
                        value.as_literal(),
                    ) && !allowed.contains(&lit.as_str())
                    {
                        let help = match closest(&lit, allowed.iter().copied()) {
                            Some(c) => format!(
                                "did you mean `{c}`? expected {}",
                                crate::suggest::one_of(allowed)
                            ),
                            None => format!("expected {}", crate::suggest::one_of(allowed)),
                        };
                        cx.emit(
                            Diagnostic::new(
                                "unknown-value",
                                p.span,
                                format!("unknown value `{lit}` for image property `{key}`"),
                            )
                            .label("unknown value")
                            .help(help),
                        );
                        ok = false;
                        continue;
                    }
                    properties.push(Property {
                        key: Spanned::new(key.to_string(), key_span),
                        value,
                    });
                }
            }
            "tag" => {
                c.check_props(cx, &[]);
                c.no_children(cx);
                if !c.check_args(cx, 1, usize::MAX, "one or more tags") {
                    ok = false;
                    continue;
                }
                for a in &c.args {
                    let Some(t) = nonempty_template(cx, a) else {
                        ok = false;
                        continue;
                    };
                    if let Some(first) = tags.iter().find(|x| x.raw == t.raw) {
                        cx.emit(
                            Diagnostic::new(
                                "duplicate-value",
                                t.span,
                                format!("tag `{}` is given twice", t.raw),
                            )
                            .label("repeated")
                            .with(first.span, "first here")
                            .help("list each tag once"),
                        );
                        ok = false;
                        continue;
                    }
                    tags.push(t);
                }
            }
            _ => {
                n.unknown_child(cx, child, &["property", "tag"]);
                ok = false;
            }
        }
    }
    if !ok {
        return None;
    }
    Some(Publish {
        span: n.span,
        target: target?,
        name: name?,
        cloud,
        disk_format,
        container_format: container_format?,
        visibility: visibility?,
        min_disk,
        min_ram,
        protected: protected?,
        properties,
        tags,
    })
}
