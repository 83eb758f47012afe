//! Windows installs: the kiln-unattend image of a matrix cell ([`image_from_params`]) and the
//! check of a pipeline's media before anything boots ([`check_windows_media`]).
//!
//! The planner stays free of I/O: the directory trees of the drivers and installer ISOs come in
//! through the [`MediaInspector`] trait (the CLI reads the real ISOs with kiln-unattend's
//! [`IsoTree`] reader, which reads directory records only; tests use [`FakeMedia`]).
//!
//! What is checked, per pipeline with an `install autounattend { ... }` block:
//! - the image description of every cell as kiln-unattend validates it (Windows 11 without UEFI
//!   Secure Boot and a TPM, a NetBIOS-invalid computer name, an unknown cloudbase-init plugin, ...),
//!   located at the node that sets the value;
//! - when the `drivers` ISO (`kind="virtio-win"`) is a local file that exists: every virtio folder
//!   the image needs (WinPE storage and network drivers, first-logon drivers, the guest agent MSI)
//!   is on it and holds an `.inf`, else an error at the `drivers` node. There is no fallback to
//!   another Windows version's folder;
//! - when the installer ISO is a local file that exists and is a Windows ISO (`sources/<tag>/`
//!   folders): every matrix language is one of its Setup languages, else an error at the
//!   `language` value. kiln has no language-pack sources, so a language must come from the ISO.
//!
//! Media that are not available locally (URLs, files not there yet) are not checked; for a local
//! file that is not there yet a note says so, and the notes say which languages the ISO provides.

use std::collections::{BTreeMap, BTreeSet};

use kiln_syntax::diagnostic::Diagnostic;
use kiln_syntax::model::{
    self as m, Agent, DriverKind, InstallMethod, Origin, Pipeline, WindowsSetup,
};
use kiln_syntax::span::Span;
use kiln_syntax::template::Template;
pub use kiln_unattend::IsoTree;

pub use crate::io::{FakeMedia, MediaInspector, MediaReport, NoMedia};
use kiln_unattend::{
    Arch, CloudbaseInit, ComputerName, Firmware, FirstLogonCommand, GuestTools, ImageSelector,
    LanguageTag, ModelError, Plugin, SecretRef, WindowsImage, WindowsVersion,
};

use crate::step::{CloudbaseParams, WindowsParams};

/// Secret names the image uses; the executor maps them to the step's [`crate::step::SecretUse`]
/// roles of the same name.
pub const ADMIN_PASSWORD: &str = "admin-password";
/// See [`ADMIN_PASSWORD`].
pub const PRODUCT_KEY: &str = "product-key";

/// A problem with one setting of a Windows image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowsProblem {
    /// The setting (kiln-unattend's [`ModelError::field`] names, plus `cloudbase-init`).
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

impl From<ModelError> for WindowsProblem {
    fn from(e: ModelError) -> Self {
        WindowsProblem {
            field: e.field(),
            message: e.to_string(),
        }
    }
}

/// The kiln-unattend image of one cell, from its (rendered) step parameters. Secrets are named
/// [`ADMIN_PASSWORD`] and [`PRODUCT_KEY`]; their values are never part of the image.
///
/// # Errors
/// Every problem kiln-unattend's validation finds, and plugins cloudbase-init does not have.
pub fn image_from_params(p: &WindowsParams) -> Result<WindowsImage, Vec<WindowsProblem>> {
    let mut problems: Vec<WindowsProblem> = Vec::new();
    let version: WindowsVersion = p.version.parse().map_err(|e: ModelError| vec![e.into()])?;
    let arch = match p.arch {
        "arm64" => Arch::Arm64,
        "x86" => Arch::X86,
        _ => Arch::Amd64,
    };
    let edition = match p.image.strip_prefix("index:") {
        Some(n) => ImageSelector::Index(n.parse().unwrap_or(0)),
        None => ImageSelector::Name(p.image.strip_prefix("name:").unwrap_or(&p.image).to_owned()),
    };
    let language: LanguageTag = p.language.parse().map_err(|e: ModelError| vec![e.into()])?;
    let firmware = if p.firmware == "uefi" {
        Firmware::Uefi {
            secure_boot: p.secure_boot,
        }
    } else {
        Firmware::Bios
    };
    let secret = |name: &str| SecretRef::new(name).expect("a valid secret name");
    let mut image = WindowsImage::new(
        version,
        arch,
        edition,
        &language,
        firmware,
        secret(ADMIN_PASSWORD),
    );
    image.tpm = p.tpm;
    match p.timezone.parse() {
        Ok(tz) => image.time_zone = tz,
        Err(e) => problems.push(WindowsProblem::from(e)),
    }
    image.computer_name = match p.computer_name.trim() {
        "" | "*" => ComputerName::Random,
        name => ComputerName::Pattern(name.to_owned()),
    };
    image.product_key = p.product_key.as_ref().map(|_| secret(PRODUCT_KEY));
    if !p.virtio_drivers {
        image.drivers.winpe.clear();
        image.drivers.post_install.clear();
        image.guest_tools = GuestTools {
            drivers: false,
            qemu_guest_agent: false,
        };
    }
    image.cloudbase_init = match &p.cloudbase_init {
        None => None,
        Some(cb) => {
            let mut conf = CloudbaseInit::default();
            if !cb.plugins.is_empty() {
                conf.plugins = cb
                    .plugins
                    .iter()
                    .filter_map(|name| match plugin(name) {
                        Some(pl) => Some(pl),
                        None => {
                            problems.push(WindowsProblem {
                                field: "cloudbase-init",
                                message: format!("cloudbase-init has no plugin `{name}`"),
                            });
                            None
                        }
                    })
                    .collect();
            }
            image.first_logon = cb
                .commands
                .iter()
                .enumerate()
                .map(|(i, c)| FirstLogonCommand {
                    command: powershell_command(c),
                    description: format!("customize run {}/{}", i + 1, cb.commands.len()),
                })
                .collect();
            Some(conf)
        }
    };
    problems.extend(image.validate().into_iter().map(WindowsProblem::from));
    if problems.is_empty() {
        Ok(image)
    } else {
        Err(problems)
    }
}

/// A cloudbase-init plugin by its class path (as pipelines name them) or kiln's short name.
fn plugin(name: &str) -> Option<Plugin> {
    Plugin::DEFAULTS
        .iter()
        .copied()
        .find(|p| p.class_path() == name || p.class_path().rsplit('.').next() == Some(name))
}

/// A `customize` `run` command (PowerShell) as a first-logon command line: `-EncodedCommand`
/// (base64 of UTF-16LE), so no quote or `%` in the command is interpreted by `cmd`.
pub fn powershell_command(script: &str) -> String {
    let utf16: Vec<u8> = script.encode_utf16().flat_map(u16::to_le_bytes).collect();
    format!(
        "powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand {}",
        base64(&utf16)
    )
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The cloudbase-init part of a Windows install: the `customize cloudbase-init` block's plugins
/// and `run` commands (rendered with `render`, which quotes values as PowerShell words), run at
/// first logon before sysprep.
pub(crate) fn cloudbase_params(
    customize: &m::Customize,
    mut render: impl FnMut(&Template) -> String,
) -> CloudbaseParams {
    let mut plugins = Vec::new();
    let mut commands = Vec::new();
    for step in &customize.steps {
        match &step.kind {
            m::StepKind::Plugin(name) => plugins.push(name.value.clone()),
            m::StepKind::Run(cmd) => commands.push(render(cmd)),
            _ => {}
        }
    }
    CloudbaseParams { plugins, commands }
}

/// True when the pipeline installs Windows with an answer file kiln generates.
pub fn generates_windows_answer(p: &Pipeline) -> bool {
    p.install
        .as_ref()
        .is_some_and(|i| i.method.value == InstallMethod::Autounattend && i.windows.is_some())
}

/// The `customize` block a Windows install runs at first logon (cloudbase-init agent).
pub(crate) fn first_logon_customize(p: &Pipeline) -> Option<&m::Customize> {
    if !generates_windows_answer(p) {
        return None;
    }
    p.customize
        .as_ref()
        .filter(|c| c.agent.value == Agent::CloudbaseInit)
}

/// The step parameters of one cell, rendered with `vars`; `None` when a template has no value
/// (the planner reports that).
pub(crate) fn params_for_cell(
    p: &Pipeline,
    w: &WindowsSetup,
    vars: &BTreeMap<String, String>,
) -> Option<WindowsParams> {
    let mut ok = true;
    let mut render = |t: &Template| match t.render(vars) {
        Ok(s) => s,
        Err(_) => {
            ok = false;
            String::new()
        }
    };
    let image = match &w.image {
        m::WindowsImage::Name(t) => format!("name:{}", render(t)),
        m::WindowsImage::Index(i) => format!("index:{}", i.value),
    };
    let language = render(&w.language);
    let timezone = render(&w.timezone);
    let computer_name = render(&w.computer_name);
    let cloudbase_init = first_logon_customize(p).map(|c| {
        cloudbase_params(c, |t| {
            match t.render_quoted(vars, crate::quote::powershell_word) {
                Ok(s) => s,
                Err(_) => render(t),
            }
        })
    });
    let params = WindowsParams {
        version: w.version.value.name(),
        arch: arch_name(w.arch.value),
        image,
        language,
        timezone,
        computer_name,
        product_key: w.product_key.as_ref().map(ToString::to_string),
        admin_password: w.admin_password.to_string(),
        virtio_drivers: has_virtio_drivers(p),
        firmware: match p.machine.firmware.value {
            m::Firmware::Bios => "bios",
            m::Firmware::Uefi => "uefi",
        },
        secure_boot: p.machine.secure_boot.value,
        tpm: p.machine.tpm.value,
        cloudbase_init,
    };
    ok.then_some(params)
}

pub(crate) fn arch_name(a: m::Arch) -> &'static str {
    match a {
        m::Arch::Amd64 => "amd64",
        m::Arch::Arm64 => "arm64",
    }
}

pub(crate) fn has_virtio_drivers(p: &Pipeline) -> bool {
    p.drivers
        .as_ref()
        .is_some_and(|d| d.kind.value == DriverKind::VirtioWin)
}

/// Where a problem with `field` is written in the pipeline.
fn span_of(p: &Pipeline, w: &WindowsSetup, field: &str) -> Span {
    match field {
        "version" => w.version.span,
        "arch" => w.arch.span,
        "language" | "input-locale" => w.language.span,
        "timezone" => w.timezone.span,
        "computer-name" => w.computer_name.span,
        "image" | "edition" => match &w.image {
            m::WindowsImage::Name(t) => t.span,
            m::WindowsImage::Index(i) => i.span,
        },
        "firmware" => p.machine.firmware.span,
        "drivers" | "guest-agent" => p.drivers.as_ref().map_or(w.span, |d| d.span),
        "cloudbase-init" | "first-logon command" | "first-logon description" => {
            first_logon_customize(p).map_or(w.span, |c| c.span)
        }
        _ => w.span,
    }
}

/// Checks every Windows install of `pipelines` (see the module docs). Pure: media come from
/// `inspector`.
pub fn check_windows_media(pipelines: &[Pipeline], inspector: &dyn MediaInspector) -> MediaReport {
    let mut report = MediaReport::default();
    for p in pipelines {
        let Some(w) = p.install.as_ref().and_then(|i| i.windows.as_ref()) else {
            continue;
        };
        check_pipeline(p, w, inspector, &mut report);
    }
    kiln_syntax::diagnostic::sort(&mut report.diagnostics);
    report
}

fn check_pipeline(
    p: &Pipeline,
    w: &WindowsSetup,
    inspector: &dyn MediaInspector,
    report: &mut MediaReport,
) {
    let name = &p.name.raw;
    // (image name, image) of every cell that renders and validates.
    let mut images: Vec<(String, WindowsImage)> = Vec::new();
    let mut seen: BTreeSet<(Span, String)> = BTreeSet::new();
    for cell in p.cells() {
        let Ok(vars) = p.vars_for(&cell) else {
            continue;
        };
        let Some(params) = params_for_cell(p, w, &vars) else {
            continue;
        };
        let image_name = vars.get("pipeline").cloned().unwrap_or_default();
        match image_from_params(&params) {
            Ok(image) => images.push((image_name, image)),
            Err(problems) => {
                for problem in problems {
                    let span = span_of(p, w, problem.field);
                    if seen.insert((span, problem.message.clone())) {
                        report.diagnostics.push(
                            Diagnostic::new(
                                "invalid-windows-image",
                                span,
                                format!("image `{image_name}`: {}", problem.message),
                            )
                            .label("this setting")
                            .help(format!(
                                "kiln-unattend refuses to write an answer file with this {} (see docs/windows.md)",
                                problem.field
                            )),
                        );
                    }
                }
            }
        }
    }
    if let Some(c) = first_logon_customize(p)
        && c.installer.is_none()
    {
        report.diagnostics.push(
            Diagnostic::new(
                "missing-cloudbase-init-installer",
                c.span,
                "a Windows install with `customize cloudbase-init` needs cloudbase-init's MSI",
            )
            .label("no `installer` here")
            .help(
                "add `installer \"CloudbaseInitSetup_x64.msi\" checksum=\"sha256:...\"` (a local file or a URL): kiln puts it on the answer media and installs it at first logon",
            ),
        );
    }
    if let Some(c) = first_logon_customize(p) {
        for step in &c.steps {
            let what = match &step.kind {
                m::StepKind::File(_) => "file",
                m::StepKind::User(_) => "user",
                m::StepKind::Packages(_) => "package",
                m::StepKind::Run(_) | m::StepKind::Plugin(_) => continue,
            };
            report.diagnostics.push(
                Diagnostic::new(
                    "unsupported-windows-customize-step",
                    step.span,
                    format!("a Windows install cannot run `{what}` steps at first logon"),
                )
                .label(format!("`{what}` step"))
                .help(
                    "kiln runs `customize cloudbase-init` at the install's first logon: its `plugin` lines configure cloudbase-init and its `run` lines (PowerShell) run before sysprep; write this step as a `run` command",
                ),
            );
        }
    }
    if let Some(test) = &p.boot_test {
        report.diagnostics.push(
            Diagnostic::new(
                "windows-boot-test",
                test.span,
                "`kiln build` cannot boot-test Windows images",
            )
            .label("boot test of a Windows image")
            .help(
                "the boot test proves cloud-init ran from a NoCloud seed; nothing proves cloudbase-init yet. Remove `boot-test` (the install itself fails on any first-logon step that fails, see docs/windows.md)",
            ),
        );
    }
    let Some((_, first)) = images.first() else {
        return;
    };

    if let Some(d) = &p.drivers {
        check_drivers_iso(p, d, first, inspector, report);
    }
    if let Some(source) = &p.source {
        check_languages(p, w, source, &images, inspector, report);
    } else {
        report
            .notes
            .push(format!("`{name}`: no installer ISO; languages not checked"));
    }
}

fn check_drivers_iso(
    p: &Pipeline,
    d: &m::Drivers,
    image: &WindowsImage,
    inspector: &dyn MediaInspector,
    report: &mut MediaReport,
) {
    let name = &p.name.raw;
    if d.kind.value != DriverKind::VirtioWin {
        report.notes.push(format!(
            "`{name}`: the drivers ISO is not `kind=\"virtio-win\"`: attached as is, its folders are not checked"
        ));
        return;
    }
    // A download is fetched by the build; its folders are not known before.
    let Origin::Path(path) = &d.origin else {
        return;
    };
    let target = format!("Windows {} {}", image.version, image.arch.virtio_name());
    let tree = match inspector.tree(&path.resolved) {
        Ok(Some(tree)) => tree,
        Ok(None) => {
            report.notes.push(format!(
                "`{name}`: drivers ISO `{}` is not there yet; its virtio folders for {target} are not checked",
                path.written
            ));
            return;
        }
        Err(e) => {
            report.diagnostics.push(
                Diagnostic::new(
                    "unreadable-drivers-iso",
                    d.span,
                    format!(
                        "cannot read the directory tree of drivers ISO `{}`: {e}",
                        path.written
                    ),
                )
                .label("this drivers ISO")
                .help(format!(
                    "kiln reads the virtio-win ISO (ISO 9660, Joliet, Rock Ridge or UDF) to check its folders for {target}; kiln looked at `{}`",
                    path.resolved.display()
                )),
            );
            return;
        }
    };
    let missing = kiln_unattend::check_image_media(&tree, image);
    if missing.is_empty() {
        let winpe: Vec<&str> = image.drivers.winpe.iter().map(|d| d.dir_name()).collect();
        report.notes.push(format!(
            "`{name}`: drivers ISO `{}` has every virtio folder for {target} (WinPE: {}; {} first-logon drivers{})",
            path.written,
            winpe.join(", "),
            if image.guest_tools.drivers {
                image.drivers.post_install.len()
            } else {
                0
            },
            if image.guest_tools.qemu_guest_agent {
                "; guest agent"
            } else {
                ""
            }
        ));
        return;
    }
    for miss in missing {
        let what = match miss.driver {
            Some(driver) if driver.needed_in_winpe() => format!(
                "`{}` (Setup loads `{}` in WinPE)",
                miss.path,
                driver.dir_name()
            ),
            Some(driver) => format!(
                "`{}` (`{}` is installed at first logon)",
                miss.path,
                driver.dir_name()
            ),
            None => format!("`{}` (the qemu guest agent installer)", miss.path),
        };
        report.diagnostics.push(
            Diagnostic::new("missing-driver-folder", d.span, miss.to_string())
                .label(format!("this drivers ISO lacks `{}`", miss.path))
                .help(format!(
                    "{target} needs {what}; use a virtio-win ISO that has it (kiln never falls back to another version's folder)"
                )),
        );
    }
}

fn check_languages(
    p: &Pipeline,
    w: &WindowsSetup,
    source: &m::Source,
    images: &[(String, WindowsImage)],
    inspector: &dyn MediaInspector,
    report: &mut MediaReport,
) {
    let name = &p.name.raw;
    let Origin::Path(path) = &source.origin else {
        return;
    };
    let tree = match inspector.tree(&path.resolved) {
        Ok(Some(tree)) => tree,
        Ok(None) => {
            report.notes.push(format!(
                "`{name}`: installer ISO `{}` is not there yet; its languages are not checked",
                path.written
            ));
            return;
        }
        Err(e) => {
            report.diagnostics.push(
                Diagnostic::new(
                    "unreadable-installer-iso",
                    source.span,
                    format!(
                        "cannot read the directory tree of installer ISO `{}`: {e}",
                        path.written
                    ),
                )
                .label("this installer ISO")
                .help(format!(
                    "kiln reads the Windows ISO's `sources/<language>` folders (UDF or ISO 9660) to tell its Setup languages; kiln looked at `{}`",
                    path.resolved.display()
                )),
            );
            return;
        }
    };
    if !tree.get("sources").is_some_and(|e| e.is_dir) {
        report.notes.push(format!(
            "`{name}`: installer ISO `{}` has no Windows Setup `sources` folder; languages not checked",
            path.written
        ));
        return;
    }
    let on_iso = kiln_unattend::installer_languages(&tree);
    let listed: Vec<String> = on_iso.iter().map(ToString::to_string).collect();
    let mut from_iso: BTreeSet<String> = BTreeSet::new();
    let mut missing: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (image_name, image) in images {
        let lang = &image.locale.ui;
        if on_iso.contains(lang) {
            from_iso.insert(lang.to_string());
        } else {
            missing
                .entry(lang.to_string())
                .or_default()
                .push(image_name.clone());
        }
    }
    for (lang, image_names) in &missing {
        report.diagnostics.push(
            Diagnostic::new(
                "language-not-on-iso",
                w.language.span,
                format!(
                    "language `{lang}` (image{} {}) is not on installer ISO `{}`",
                    if image_names.len() == 1 { "" } else { "s" },
                    image_names
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    path.written
                ),
            )
            .label(format!("`{lang}` is not a Setup language of the ISO"))
            .help(format!(
                "the ISO's Setup languages (`sources/<language>` folders) are {}; kiln takes languages from the installer ISO only (it has no language-pack sources), so use media that carry `{lang}` or drop it from the matrix",
                if listed.is_empty() {
                    "none".to_owned()
                } else {
                    listed.join(", ")
                }
            )),
        );
    }
    if !from_iso.is_empty() {
        report.notes.push(format!(
            "`{name}`: languages from installer ISO `{}`: {}; from language packs: none",
            path.written,
            from_iso.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want);
        }
    }

    #[test]
    fn powershell_commands_are_encoded_as_utf16le() {
        // `dir` in UTF-16LE is 64 00 69 00 72 00.
        assert!(powershell_command("dir").ends_with("-EncodedCommand ZABpAHIA"));
    }

    #[test]
    fn plugins_resolve_by_class_path_or_class_name() {
        assert_eq!(
            plugin("cloudbaseinit.plugins.common.mtu.MTUPlugin"),
            Some(Plugin::Mtu)
        );
        assert_eq!(plugin("ExtendVolumesPlugin"), Some(Plugin::ExtendVolumes));
        assert_eq!(plugin("cloudbaseinit.plugins.common.nope.Nope"), None);
    }
}
