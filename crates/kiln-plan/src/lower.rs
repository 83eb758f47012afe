//! Lowering one matrix cell of the typed model into steps: fetches, disk, answer media, install,
//! customize seed and boot, boot test, convert, publish. Parameters are rendered for the cell here;
//! local files are identified by their written path and content digest, secrets by reference.

use std::collections::BTreeMap;

use kiln_syntax::diagnostic::Diagnostic;
use kiln_syntax::model::Agent;
use kiln_syntax::model::{
    Answer, Checksum, Customize, DriverKind, FileContent, GlanceRefKind, ImageFormat,
    InstallMethod, LocalPath, Machine, Origin, Pipeline, Source, StepKind as ModelStep,
    WindowsImage,
};
use kiln_syntax::secret::SecretRef;
use kiln_syntax::span::Span;
use kiln_syntax::template::Template;
use petgraph::graph::NodeIndex;

use crate::graph::{Builder, NewStep};
use crate::installer::{InstallerProfile, ROOT_PASSWORD};
use crate::io::ContentDigest;
use crate::step::{
    AnswerMediaParams, AnswerParams, BootTestParams, ConvertParams, CreateDiskParams,
    CustomizeParams, CustomizeSeedParams, ExecInputs, FetchDriversParams, FetchParams,
    FileContentParams, HostRequirements, InstallParams, LocalFile, MachineParams, OriginParams,
    Owner, PublishParams, SecretUse, SeedAction, StepParams, VmRequirements, WindowsParams,
};

/// Everything needed to lower one cell.
pub(crate) struct CellCx<'a> {
    pub pipeline: &'a Pipeline,
    pub owner: &'a Owner,
    pub vars: &'a BTreeMap<String, String>,
    pub digests: &'a dyn ContentDigest,
    pub diags: &'a mut Vec<Diagnostic>,
    /// Set when a problem was recorded for this cell.
    pub failed: bool,
}

impl CellCx<'_> {
    fn render(&mut self, t: &Template) -> String {
        match t.render(self.vars) {
            Ok(s) => s,
            Err(e) => {
                self.failed = true;
                self.diags.push(
                    Diagnostic::new(
                        "unrendered-variable",
                        e.span,
                        format!("variable `{}` has no value", e.name),
                    )
                    .label("no value")
                    .help(format!("give it one with `--var {}=...`", e.name)),
                );
                String::new()
            }
        }
    }

    /// A `run` line: its variables' values inserted as one word each of `agent`'s shell.
    pub(crate) fn render_command(&mut self, t: &Template, agent: Agent) -> String {
        match t.render_quoted(self.vars, crate::quote::for_agent(agent)) {
            Ok(s) => s,
            // The same diagnostic as any unrendered template.
            Err(_) => self.render(t),
        }
    }

    fn render_all(&mut self, ts: &[Template]) -> Vec<String> {
        ts.iter().map(|t| self.render(t)).collect()
    }

    /// A package name goes to the guest's package manager as one argument: one starting with `-`
    /// would be read as an option, and spaces or shell characters are no package's name.
    fn check_package_name(&mut self, name: &str, span: Span) {
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
            && name.chars().all(|c| {
                c.is_ascii_alphanumeric()
                    || matches!(c, '+' | '-' | '.' | '_' | ':' | '~' | '=' | '*')
            });
        if valid {
            return;
        }
        self.failed = true;
        let why = if name.starts_with('-') {
            "starts with `-`, so the package manager would read it as an option"
        } else if name.is_empty() {
            "is empty"
        } else {
            "has a character no package name has"
        };
        self.diags.push(
            Diagnostic::new(
                "invalid-package-name",
                span,
                format!("package name `{name}` {why}"),
            )
            .label("not a package name")
            .help(
                "a package name starts with a letter or digit and holds only letters, digits and \
                 `+ - . _ : ~ = *` (version pins like `nginx=1.22*` included)",
            ),
        );
    }

    /// `sha256:<hex>` of a local file, or a located error.
    fn content(&mut self, path: &LocalPath, what: &str) -> String {
        match self.digests.sha256(&path.resolved) {
            Ok(hex) => format!("sha256:{hex}"),
            Err(e) => {
                self.failed = true;
                self.diags.push(
                    Diagnostic::new(
                        "unreadable-file",
                        path.span,
                        format!("cannot read {what} `{}`: {e}", path.written),
                    )
                    .label("cannot read this file")
                    .help(format!(
                        "the path is relative to the pipeline file; kiln looked at `{}`",
                        path.resolved.display()
                    )),
                );
                String::new()
            }
        }
    }

    /// The origin's keyed form, recording local files for the runner.
    fn origin(
        &mut self,
        origin: &Origin,
        checksum: Option<&Checksum>,
        role: &str,
        exec: &mut ExecInputs,
    ) -> OriginParams {
        match origin {
            Origin::Path(path) => {
                exec.local_files.push(LocalFile {
                    role: role.to_string(),
                    written: path.written.clone(),
                    resolved: path.resolved.clone(),
                });
                // A declared checksum pins the content (the fetch verifies it), so the file need
                // not be read while planning.
                let content = match checksum {
                    Some(sum) => sum.to_string(),
                    None => self.content(path, "file"),
                };
                OriginParams::Local {
                    path: path.written.clone(),
                    content,
                }
            }
            Origin::Url(url) => {
                let full = self.render(url);
                let redacted = kiln_syntax::redact_userinfo(&full).into_owned();
                exec.url = Some(kiln_syntax::CredentialUrl::new(full));
                OriginParams::Url { url: redacted }
            }
            Origin::Glance(g) => OriginParams::Glance {
                image: g.value.value.clone(),
                by: match g.kind {
                    GlanceRefKind::Id => "id",
                    GlanceRefKind::Name => "name",
                },
            },
        }
    }

    fn secret(&self, role: String, secret: &SecretRef, exec: &mut ExecInputs) -> String {
        let identity = secret.to_string();
        exec.secrets.push(SecretUse {
            role,
            identity: identity.clone(),
            reference: secret.clone(),
            mac: self.digests.secret_mac(secret),
        });
        identity
    }
}

fn machine_params(m: &Machine) -> MachineParams {
    MachineParams {
        firmware: m.firmware.value,
        secure_boot: m.secure_boot.value,
        machine_type: m.machine_type.value,
        tpm: m.tpm.value,
        disk_bus: m.disk_bus.value,
        nic: m.nic.value,
    }
}

fn vm_host(m: &Machine) -> HostRequirements {
    HostRequirements {
        vm: Some(VmRequirements {
            cpus: m.cpus.value,
            memory_bytes: m.memory.value.bytes(),
            firmware: m.firmware.value,
            secure_boot: m.secure_boot.value,
            tpm: m.tpm.value,
        }),
        qemu_img: false,
        network: false,
    }
}

fn fetch_host(origin: &Origin) -> HostRequirements {
    HostRequirements {
        vm: None,
        qemu_img: false,
        network: !matches!(origin, Origin::Path(_)),
    }
}

fn qemu_img_host() -> HostRequirements {
    HostRequirements {
        vm: None,
        qemu_img: true,
        network: false,
    }
}

fn fetch_source(b: &mut Builder, cx: &mut CellCx<'_>, source: &Source, role: &str) -> NodeIndex {
    let mut exec = ExecInputs::default();
    let origin = cx.origin(&source.origin, source.checksum.as_ref(), role, &mut exec);
    let params = StepParams::FetchSource(FetchParams {
        origin,
        checksum: source.checksum.as_ref().map(ToString::to_string),
    });
    b.add(
        cx.owner,
        NewStep {
            params,
            inputs: Vec::new(),
            span: source.span,
            host: fetch_host(&source.origin),
            exec,
        },
    )
}

/// Lowers one cell. `parent` is the parent cell's output (`convert`) node for `from` pipelines.
/// Returns the cell's output node, or `None` when a problem was recorded.
pub(crate) fn lower_cell(
    b: &mut Builder,
    cx: &mut CellCx<'_>,
    parent: Option<NodeIndex>,
) -> Option<NodeIndex> {
    let p = cx.pipeline;
    let machine = machine_params(&p.machine);
    let disk_format = p
        .disk
        .as_ref()
        .map_or(ImageFormat::Qcow2, |d| d.format.value);
    // The disk the next VM step boots, as (node, artifact).
    let mut disk: (NodeIndex, &'static str);
    // A generated Windows install's settings: its image also gives the Glance properties.
    let mut cell_windows: Option<WindowsParams> = None;
    // Derived images may grow the parent's disk; the first step touching the disk does it.
    let mut grow_to: Option<u64> = None;

    if let Some(parent) = parent {
        disk = (parent, "image");
        grow_to = p.disk.as_ref().map(|d| d.size.value.bytes());
    } else {
        let (Some(source), Some(disk_node), Some(install)) = (&p.source, &p.disk, &p.install)
        else {
            // The syntax checker requires these for pipelines without `from`.
            return None;
        };
        let source_ix = fetch_source(b, cx, source, "source");
        let drivers_ix = p.drivers.as_ref().map(|d| {
            let mut exec = ExecInputs::default();
            let origin = cx.origin(&d.origin, d.checksum.as_ref(), "drivers", &mut exec);
            let params = StepParams::FetchDrivers(FetchDriversParams {
                origin,
                checksum: d.checksum.as_ref().map(ToString::to_string),
                driver_kind: match d.kind.value {
                    DriverKind::VirtioWin => "virtio-win",
                    DriverKind::Other => "other",
                },
            });
            b.add(
                cx.owner,
                NewStep {
                    params,
                    inputs: Vec::new(),
                    span: d.span,
                    host: fetch_host(&d.origin),
                    exec,
                },
            )
        });
        let disk_ix = b.add(
            cx.owner,
            NewStep {
                params: StepParams::CreateDisk(CreateDiskParams {
                    size_bytes: disk_node.size.value.bytes(),
                    format: disk_node.format.value,
                }),
                inputs: Vec::new(),
                span: disk_node.span,
                host: qemu_img_host(),
                exec: ExecInputs::default(),
            },
        );
        let mut install_windows = None;
        let mut install_exec = ExecInputs::default();
        let answer_ix = if install.method.value == InstallMethod::None {
            None
        } else {
            let mut exec = ExecInputs {
                install_method: Some(install.method.value),
                ..ExecInputs::default()
            };
            let answer = match &install.answer {
                Some(Answer::File(path)) => {
                    exec.local_files.push(LocalFile {
                        role: "answer-file".into(),
                        written: path.written.clone(),
                        resolved: path.resolved.clone(),
                    });
                    Some(AnswerParams::File {
                        path: path.written.clone(),
                        content: cx.content(path, "answer file"),
                    })
                }
                Some(Answer::Inline(t)) => Some(AnswerParams::Inline { text: cx.render(t) }),
                None => None,
            };
            let root_password = install
                .root_password
                .as_ref()
                .map(|s| cx.secret(ROOT_PASSWORD.into(), s, &mut exec));
            // A Windows install runs its `customize cloudbase-init` block at first logon.
            let cloudbase_init = crate::windows::first_logon_customize(p).map(|c| {
                crate::windows::cloudbase_params(c, |t| cx.render_command(t, Agent::CloudbaseInit))
            });
            let windows = install.windows.as_ref().map(|w| {
                let image = match &w.image {
                    WindowsImage::Name(t) => format!("name:{}", cx.render(t)),
                    WindowsImage::Index(i) => format!("index:{}", i.value),
                };
                WindowsParams {
                    version: w.version.value.name(),
                    arch: match w.arch.value {
                        kiln_syntax::model::Arch::Amd64 => "amd64",
                        kiln_syntax::model::Arch::Arm64 => "arm64",
                    },
                    image,
                    language: cx.render(&w.language),
                    timezone: cx.render(&w.timezone),
                    computer_name: cx.render(&w.computer_name),
                    product_key: w
                        .product_key
                        .as_ref()
                        .map(|s| cx.secret("product-key".into(), s, &mut exec)),
                    admin_password: cx.secret(
                        "admin-password".into(),
                        &w.admin_password,
                        &mut exec,
                    ),
                    virtio_drivers: p
                        .drivers
                        .as_ref()
                        .is_some_and(|d| d.kind.value == DriverKind::VirtioWin),
                    firmware: machine.firmware.name(),
                    secure_boot: machine.secure_boot,
                    tpm: machine.tpm,
                    cloudbase_init,
                }
            });
            install_windows.clone_from(&windows);
            // The install renders the secret-bearing media itself, right before it boots.
            install_exec.secrets.clone_from(&exec.secrets);
            Some(b.add(
                cx.owner,
                NewStep {
                    params: StepParams::AnswerMedia(AnswerMediaParams {
                        method: install.method.value,
                        profile: InstallerProfile::for_method(install.method.value),
                        answer,
                        windows,
                        root_password,
                    }),
                    inputs: Vec::new(),
                    span: install.span,
                    host: HostRequirements::default(),
                    exec,
                },
            ))
        };
        let mut inputs = vec![("disk", disk_ix, "disk")];
        if let Some(d) = drivers_ix {
            inputs.push(("drivers", d, "drivers"));
        }
        inputs.push(("source", source_ix, "source"));
        if let Some(a) = answer_ix {
            inputs.push(("answer-media", a, "answer-media"));
        }
        // cloudbase-init's MSI goes onto a Windows install's answer media.
        if let Some(src) =
            crate::windows::first_logon_customize(p).and_then(|c| c.installer.as_ref())
        {
            let msi = fetch_source(b, cx, src, "agent-installer");
            inputs.push(("agent-installer", msi, "source"));
        }
        let install_ix = b.add(
            cx.owner,
            NewStep {
                params: StepParams::Install(InstallParams {
                    method: install.method.value,
                    profile: InstallerProfile::for_method(install.method.value),
                    kernel_args: install
                        .kernel_args
                        .as_ref()
                        .map(|t| cx.render(t).split_whitespace().map(str::to_owned).collect())
                        .unwrap_or_default(),
                    machine: machine.clone(),
                    disk_format,
                    windows: install_windows.clone(),
                }),
                inputs,
                span: install.span,
                host: vm_host(&p.machine),
                exec: ExecInputs {
                    timeout: Some(install.timeout.value),
                    install_method: Some(install.method.value),
                    ..install_exec
                },
            },
        );
        disk = (install_ix, "disk");
        cell_windows = install_windows;
    }

    if let Some(customize) = p
        .customize
        .as_ref()
        .filter(|_| crate::windows::first_logon_customize(p).is_none())
    {
        disk = (
            lower_customize(
                b,
                cx,
                customize,
                disk,
                &machine,
                disk_format,
                grow_to.take(),
            ),
            "disk",
        );
    }

    let out = &p.output;
    let convert_ix = b.add(
        cx.owner,
        NewStep {
            params: StepParams::Convert(ConvertParams {
                format: out.format.value,
                compression: out.compression.value,
                grow_to_bytes: grow_to,
            }),
            inputs: vec![("disk", disk.0, disk.1)],
            span: out.span,
            host: qemu_img_host(),
            exec: ExecInputs::default(),
        },
    );

    let test_ix = p.boot_test.as_ref().map(|t| {
        let expect = cx.render_all(&t.expect);
        let agent = p.customize.as_ref().map(|c| c.agent.value);
        b.add(
            cx.owner,
            NewStep {
                params: StepParams::BootTest(BootTestParams {
                    expect,
                    agent,
                    machine: machine.clone(),
                }),
                inputs: vec![("image", convert_ix, "image")],
                span: t.span,
                host: vm_host(&p.machine),
                exec: ExecInputs {
                    timeout: Some(t.timeout.value),
                    agent,
                    ..ExecInputs::default()
                },
            },
        )
    });

    if let Some(publish) = &p.publish {
        let mut properties = BTreeMap::new();
        for prop in &publish.properties {
            let value = cx.render(&prop.value);
            properties.insert(prop.key.value.clone(), value);
        }
        // Windows images: what Nova needs to boot them as they were installed (machine type,
        // firmware, Secure Boot, TPM, buses), `os_type`/`os_distro`/`os_language`/`os_admin_user`;
        // the pipeline's own properties win.
        if let Some(image) = cell_windows
            .as_ref()
            .and_then(|w| crate::windows::image_from_params(w).ok())
        {
            for (key, value) in kiln_unattend::glance_properties(&image) {
                properties.entry(key).or_insert(value);
            }
        }
        let mut tags = cx.render_all(&publish.tags);
        tags.sort();
        tags.dedup();
        let params = StepParams::Publish(PublishParams {
            target: match publish.target.value {
                kiln_syntax::model::PublishTarget::Glance => "glance",
            },
            cloud: publish.cloud.as_ref().map(|c| c.value.clone()),
            name: cx.render(&publish.name),
            disk_format: publish
                .disk_format
                .as_ref()
                .map(|f| f.value)
                .unwrap_or(out.format.value)
                .name(),
            container_format: match publish.container_format.value {
                kiln_syntax::model::ContainerFormat::Bare => "bare",
                kiln_syntax::model::ContainerFormat::Ovf => "ovf",
            },
            visibility: publish.visibility.value.name(),
            min_disk_gib: publish.min_disk.as_ref().map(|s| s.value.gib_ceil()),
            min_ram_mib: publish.min_ram.as_ref().map(|s| s.value.mib_ceil()),
            protected: publish.protected.value,
            properties,
            tags,
        });
        let mut inputs = vec![("image", convert_ix, "image")];
        if let Some(t) = test_ix {
            inputs.push(("tested", t, "console-log"));
        }
        b.add(
            cx.owner,
            NewStep {
                params,
                inputs,
                span: publish.span,
                host: HostRequirements {
                    vm: None,
                    qemu_img: false,
                    network: true,
                },
                exec: ExecInputs::default(),
            },
        );
    }

    (!cx.failed).then_some(convert_ix)
}

fn lower_customize(
    b: &mut Builder,
    cx: &mut CellCx<'_>,
    customize: &Customize,
    disk: (NodeIndex, &'static str),
    machine: &MachineParams,
    disk_format: ImageFormat,
    grow_to: Option<u64>,
) -> NodeIndex {
    let agent = customize.agent.value;
    let mut exec = ExecInputs {
        agent: Some(agent),
        ..ExecInputs::default()
    };
    let mut actions = Vec::with_capacity(customize.steps.len());
    for step in &customize.steps {
        let action = match &step.kind {
            ModelStep::Packages(templates) => {
                let mut names = cx.render_all(templates);
                for (name, t) in names.iter().zip(templates) {
                    cx.check_package_name(name, t.span);
                }
                names.sort();
                names.dedup();
                SeedAction::Packages { names }
            }
            ModelStep::File(f) => {
                let path = cx.render(&f.path);
                let content = match &f.content {
                    FileContent::Inline(t) => FileContentParams::Inline { text: cx.render(t) },
                    FileContent::Source(src) => {
                        exec.local_files.push(LocalFile {
                            role: format!("file:{path}"),
                            written: src.written.clone(),
                            resolved: src.resolved.clone(),
                        });
                        FileContentParams::Source {
                            path: src.written.clone(),
                            content: cx.content(src, "file source"),
                        }
                    }
                };
                SeedAction::File {
                    path,
                    content,
                    mode: f.mode.as_ref().map(|m| format!("{:04o}", m.value)),
                    owner: f.owner.as_ref().map(|o| cx.render(o)),
                }
            }
            ModelStep::Run(cmd) => SeedAction::Run {
                command: cx.render_command(cmd, agent),
            },
            ModelStep::User(u) => {
                let name = cx.render(&u.name);
                let mut groups = cx.render_all(&u.groups);
                groups.sort();
                groups.dedup();
                let mut ssh_keys = cx.render_all(&u.ssh_keys);
                ssh_keys.sort();
                ssh_keys.dedup();
                let password = u
                    .password
                    .as_ref()
                    .map(|s| cx.secret(format!("user:{name}:password"), s, &mut exec));
                SeedAction::User {
                    name,
                    groups,
                    ssh_keys,
                    password,
                    admin: u.admin.value,
                    shell: u.shell.as_ref().map(|s| cx.render(s)),
                }
            }
            ModelStep::Plugin(name) => SeedAction::Plugin {
                name: name.value.clone(),
            },
        };
        actions.push(action);
    }
    // The customize step writes the seed with the secrets' hashes itself, right before it boots.
    let seed_secrets = exec.secrets.clone();
    let seed_ix = b.add(
        cx.owner,
        NewStep {
            params: StepParams::CustomizeSeed(CustomizeSeedParams {
                agent,
                actions,
                generalize: customize.generalize.value,
            }),
            inputs: Vec::new(),
            span: customize.span,
            host: HostRequirements::default(),
            exec,
        },
    );
    let installer_ix = customize
        .installer
        .as_ref()
        .map(|src| fetch_source(b, cx, src, "agent-installer"));
    let mut inputs = vec![("disk", disk.0, disk.1)];
    if let Some(i) = installer_ix {
        inputs.push(("agent-installer", i, "source"));
    }
    inputs.push(("seed", seed_ix, "seed"));
    let mut host = vm_host(&cx.pipeline.machine);
    host.qemu_img = grow_to.is_some();
    b.add(
        cx.owner,
        NewStep {
            params: StepParams::Customize(CustomizeParams {
                agent,
                machine: machine.clone(),
                disk_format,
                grow_to_bytes: grow_to,
            }),
            inputs,
            span: customize.span,
            host,
            exec: ExecInputs {
                timeout: Some(customize.timeout.value),
                agent: Some(agent),
                secrets: seed_secrets,
                ..ExecInputs::default()
            },
        },
    )
}
