//! Turning merged bodies into a [`Pipeline`] and the checks that need the whole pipeline:
//! required nodes, combinations that cannot work, variable values and references.

use std::collections::BTreeSet;

use super::body::{Body, default_machine, default_output};
use crate::diagnostic::Diagnostic;
use crate::model::{
    Agent, BUILTIN_VARIABLES, DiskBus, Firmware, ImageFormat, Include, InstallMethod, MachineType,
    OsFamily, Pipeline, VarOrigin, VarValue, Variables,
};
use crate::overrides::Overrides;
use crate::span::{FileId, Span};
use crate::suggest::closest;
use crate::template::Template;

/// Merges `over` onto `base`: `over`'s nodes replace `base`'s, variables merge by name, customize
/// steps of `base` run first.
pub(crate) fn merge(base: Body, over: Body) -> Body {
    let mut variables = base.variables;
    for v in over.variables {
        match variables.iter_mut().find(|x| x.name.value == v.name.value) {
            Some(slot) => *slot = v,
            None => variables.push(v),
        }
    }
    let customize = match (base.customize, over.customize) {
        (Some(b), Some(mut o)) if b.agent.value == o.agent.value => {
            let mut steps = b.steps;
            steps.append(&mut o.steps);
            o.steps = steps;
            if o.installer.is_none() {
                o.installer = b.installer;
            }
            Some(o)
        }
        (b, o) => o.or(b),
    };
    let mut seen = base.seen;
    seen.extend(over.seen);
    let mut includes = base.includes;
    includes.extend(over.includes);
    Body {
        description: over.description.or(base.description),
        includes,
        variables,
        matrix: over.matrix.or(base.matrix),
        from: over.from.or(base.from),
        source: over.source.or(base.source),
        drivers: over.drivers.or(base.drivers),
        disk: over.disk.or(base.disk),
        machine: over.machine.or(base.machine),
        install: over.install.or(base.install),
        customize,
        boot_test: over.boot_test.or(base.boot_test),
        output: over.output.or(base.output),
        publish: over.publish.or(base.publish),
        seen,
    }
}

/// Builds the pipeline from its merged body and checks it as a whole.
pub(crate) fn build(
    file: FileId,
    span: Span,
    name: Template,
    body: Body,
    includes: Vec<Include>,
    overrides: &Overrides,
    diags: &mut Vec<Diagnostic>,
) -> Pipeline {
    let at = name.span;
    let mut variables = Variables {
        vars: body.variables,
    };
    for var in &mut variables.vars {
        let name = &var.name.value;
        var.value = if let Some(value) = overrides.cli(name) {
            Some(VarValue {
                value: value.to_string(),
                origin: VarOrigin::CommandLine,
            })
        } else if let Some((env, value)) = overrides.env(name) {
            Some(VarValue {
                value: value.to_string(),
                origin: VarOrigin::Environment(env.to_string()),
            })
        } else {
            var.default.as_ref().map(|d| VarValue {
                value: d.value.clone(),
                origin: VarOrigin::Default,
            })
        };
        if var.value.is_none() {
            diags.push(
                Diagnostic::new(
                    "missing-variable",
                    var.name.span,
                    format!("variable `{name}` has no value"),
                )
                .label("declared without a default")
                .help(format!(
                    "pass `--var {name}=VALUE`, set `{}`, or give a default: `{name} \"value\"`",
                    Overrides::env_name(name)
                )),
            );
        }
    }
    let pipeline = Pipeline {
        file,
        span,
        name,
        description: body.description,
        includes,
        variables,
        matrix: body.matrix,
        from: body.from,
        source: body.source,
        drivers: body.drivers,
        disk: body.disk,
        machine: body.machine.unwrap_or_else(|| default_machine(at)),
        install: body.install,
        customize: body.customize,
        boot_test: body.boot_test,
        output: body.output.unwrap_or_else(|| default_output(at)),
        publish: body.publish,
    };
    check(&pipeline, &body.seen, diags);
    pipeline
}

fn check(
    p: &Pipeline,
    seen: &std::collections::BTreeMap<&'static str, Span>,
    diags: &mut Vec<Diagnostic>,
) {
    let name = &p.name.raw;
    let at = p.name.span;
    // Required nodes, and what `from` rules out.
    if let Some(from) = &p.from {
        for (node, why) in [
            (
                "source",
                "a derived pipeline starts from its parent's image",
            ),
            ("install", "a derived pipeline is not installed again"),
            ("drivers", "drivers are only attached during the install"),
        ] {
            if let Some(span) = seen.get(node) {
                diags.push(
                    Diagnostic::new(
                        "conflicting-nodes",
                        *span,
                        format!("`{node}` cannot be used with `from`"),
                    )
                    .label(format!("`{node}` here"))
                    .with(from.span, "builds on another pipeline")
                    .help(format!("{why}; remove `{node}` or `from`")),
                );
            }
        }
        if !seen.contains_key("customize") {
            diags.push(
                Diagnostic::new(
                    "nothing-to-do",
                    from.span,
                    format!("derived pipeline `{name}` has no `customize`"),
                )
                .label("nothing is changed on top of the parent")
                .help("add `customize cloud-init { ... }` with the steps this image adds"),
            );
        }
    } else {
        for (node, example) in [
            (
                "source",
                "source \"path/or/https-url.iso\" checksum=\"sha256:...\"",
            ),
            ("disk", "disk size=\"20GiB\""),
            ("install", "install preseed file=\"preseed.cfg\""),
        ] {
            if !seen.contains_key(node) {
                diags.push(
                    Diagnostic::new(
                        "missing-node",
                        at,
                        format!("pipeline `{name}` has no `{node}`"),
                    )
                    .label(format!("`{node}` missing"))
                    .help(format!(
                        "add `{example}`, or `from \"parent\"` to build on another pipeline"
                    )),
                );
            }
        }
    }
    let m = &p.machine;
    if m.secure_boot.value && m.firmware.value != Firmware::Uefi {
        diags.push(
            Diagnostic::new(
                "conflicting-properties",
                m.secure_boot.span,
                "secure boot needs UEFI firmware",
            )
            .label("secure boot on")
            .with(m.firmware.span, "BIOS firmware")
            .help("set `firmware=\"uefi\"` or remove `secure-boot`"),
        );
    }
    // kiln boots these installers by their kernel (libvirt direct kernel boot); with Secure Boot
    // OVMF starts only binaries signed by a key in its db (Microsoft's), and distribution kernels
    // are signed by the distribution, for shim to check: the boot would be refused.
    if let Some(install) = &p.install
        && m.secure_boot.value
        && matches!(
            install.method.value,
            InstallMethod::Preseed | InstallMethod::Autoinstall | InstallMethod::Kickstart
        )
    {
        diags.push(
            Diagnostic::new(
                "conflicting-properties",
                m.secure_boot.span,
                format!(
                    "install method `{}` is booted by its kernel, which Secure Boot firmware refuses to start",
                    install.method.value.name()
                ),
            )
            .label("secure boot on")
            .with(install.method.span, "kernel-booted installer")
            .help("build with `secure-boot` off: the installed system's own shim and boot loader are what a Secure Boot cloud checks"),
        );
    }
    if m.disk_bus.value == DiskBus::Ide && m.machine_type.value == MachineType::Q35 {
        diags.push(
            Diagnostic::new(
                "conflicting-properties",
                m.disk_bus.span,
                "machine type `q35` has no IDE bus",
            )
            .label("IDE disk")
            .with(m.machine_type.span, "q35 machine")
            .help("use `disk-bus=\"sata\"` or `type=\"pc\"`"),
        );
    }
    if p.output.format.value == ImageFormat::Raw
        && p.output.compression.value != crate::model::Compression::None
    {
        diags.push(
            Diagnostic::new(
                "conflicting-properties",
                p.output.compression.span,
                "raw images cannot be compressed",
            )
            .label("compression")
            .with(p.output.format.span, "raw output")
            .help("use `format=\"qcow2\"` or remove `compression`"),
        );
    }
    if let (Some(publish), Some(df)) = (
        &p.publish,
        p.publish.as_ref().and_then(|x| x.disk_format.as_ref()),
    ) && df.value != p.output.format.value
    {
        let _ = publish;
        diags.push(
            Diagnostic::new(
                "conflicting-properties",
                df.span,
                format!(
                    "Glance `disk-format` `{}` differs from the output format `{}`",
                    df.value.name(),
                    p.output.format.value.name()
                ),
            )
            .label("declared to Glance")
            .with(p.output.format.span, "what kiln produces")
            .help("remove `disk-format` (it follows `output format=`) or change the output format"),
        );
    }
    if let (Some(install), Some(customize)) = (&p.install, &p.customize) {
        let windows = install.method.value == InstallMethod::Autounattend;
        let linux = !windows && install.method.value != InstallMethod::None;
        let bad = (windows && customize.agent.value == Agent::CloudInit)
            || (linux && customize.agent.value == Agent::CloudbaseInit);
        if bad {
            diags.push(
                Diagnostic::new(
                    "wrong-agent",
                    customize.agent.span,
                    format!(
                        "`{}` does not run on the OS `{}` installs",
                        customize.agent.value.name(),
                        install.method.value.name()
                    ),
                )
                .label("agent")
                .with(install.method.span, "install method")
                .help(if windows {
                    "Windows images use `customize cloudbase-init`"
                } else {
                    "Linux images use `customize cloud-init`"
                }),
            );
        }
    }
    if p.os() == OsFamily::Windows
        && p.from.is_none()
        && matches!(p.machine.disk_bus.value, DiskBus::Virtio | DiskBus::Scsi)
        && p.drivers.is_none()
        && p.install
            .as_ref()
            .is_some_and(|i| i.method.value == InstallMethod::Autounattend)
    {
        let install = p.install.as_ref().expect("checked");
        diags.push(
            Diagnostic::new("missing-drivers", install.method.span, format!("Windows Setup cannot see a {} disk without drivers", p.machine.disk_bus.value.name()))
                .label("Windows install")
                .with(p.machine.disk_bus.span, "disk bus")
                .help("add `drivers \"virtio-win.iso\"` (attached as the second CD-ROM), or use `disk-bus=\"sata\"`"),
        );
    }
    check_references(p, diags);
}

fn check_references(p: &Pipeline, diags: &mut Vec<Diagnostic>) {
    let vars: BTreeSet<&str> = p
        .variables
        .vars
        .iter()
        .map(|v| v.name.value.as_str())
        .collect();
    let axes: Vec<&crate::model::Axis> = p.matrix.iter().flat_map(|m| m.axes.iter()).collect();
    for axis in &axes {
        if let Some(var) = p.variables.get(&axis.name.value) {
            diags.push(
                Diagnostic::new(
                    "ambiguous-variable",
                    axis.name.span,
                    format!(
                        "matrix axis `{}` has the name of a variable",
                        axis.name.value
                    ),
                )
                .label("axis")
                .with(var.name.span, "variable")
                .help("rename one of them; `{name}` must mean one thing"),
            );
        }
    }
    let mut known: Vec<&str> = vars.iter().copied().collect();
    known.extend(axes.iter().map(|a| a.name.value.as_str()));
    let in_fragment = |span: Span| span.file != p.file;
    p.for_each_template(|what, t| {
        let name_template = std::ptr::eq(t, &p.name);
        for r in t.refs() {
            let builtin = BUILTIN_VARIABLES.contains(&r.name.as_str());
            if known.contains(&r.name.as_str()) || (builtin && !name_template) {
                continue;
            }
            if builtin {
                diags.push(
                    Diagnostic::new(
                        "unknown-variable",
                        r.span,
                        format!("`{{{}}}` cannot be used in the pipeline name", r.name),
                    )
                    .label("refers to the name itself")
                    .help("use matrix axes and variables in the name"),
                );
                continue;
            }
            let mut candidates = known.clone();
            if !name_template {
                candidates.extend(BUILTIN_VARIABLES);
            }
            let suggestion = closest(&r.name, candidates.iter().copied());
            let list = if candidates.is_empty() {
                "this pipeline declares no variables or matrix axes".to_string()
            } else {
                format!("known: {}", crate::suggest::one_of(&candidates))
            };
            let mut help = match suggestion {
                Some(s) => format!("did you mean `{s}`? {list}"),
                None => format!(
                    "declare it in `variables {{ {} \"default\" }}` or add a matrix axis; {list}",
                    r.name
                ),
            };
            if in_fragment(r.span) {
                help.push_str(&format!(
                    " (checked for pipeline `{}`, which includes this fragment)",
                    p.name.raw
                ));
            }
            diags.push(
                Diagnostic::new(
                    "unknown-variable",
                    r.span,
                    format!("unknown variable `{}` in {what}", r.name),
                )
                .label("not declared")
                .help(help),
            );
        }
    });
    // Every cell needs its own name.
    if let Some(m) = &p.matrix {
        let used: BTreeSet<&str> = p.name.refs().map(|r| r.name.as_str()).collect();
        for axis in &m.axes {
            if axis.values.len() > 1 && !used.contains(axis.name.value.as_str()) {
                diags.push(
                    Diagnostic::new(
                        "matrix-name",
                        p.name.span,
                        format!(
                            "pipeline name does not use matrix axis `{}`",
                            axis.name.value
                        ),
                    )
                    .label("same name for every cell")
                    .with(axis.name.span, "axis")
                    .help(format!(
                        "put `{{{}}}` in the name, e.g. `\"{}-{{{}}}\"`",
                        axis.name.value, p.name.raw, axis.name.value
                    )),
                );
            }
        }
    }
}
