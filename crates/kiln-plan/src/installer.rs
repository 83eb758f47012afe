//! Installer profiles: how kiln boots each family of installer and hands it the answer file, so a
//! stock ISO installs unattended with an answer file that holds no kiln-specific line.
//!
//! | profile | install method | boot | answer reaches the installer as |
//! |---|---|---|---|
//! | `debian-installer` | `preseed` | the ISO's kernel + initrd (`install.amd/`) | `/preseed.cfg` in a newc cpio appended to the initrd |
//! | `subiquity` | `autoinstall` | `casper/vmlinuz` + `casper/initrd` | a NoCloud `cidata` volume; `autoinstall ds=nocloud` |
//! | `anaconda` | `kickstart` | `images/pxeboot/` (or `isolinux/`) | `ks.cfg` on an `OEMDRV` volume; `inst.ks=hd:LABEL=OEMDRV:/ks.cfg inst.stage2=hd:LABEL=<volume id>` |
//! | `windows-setup` | `autounattend` | the ISO's own boot (UEFI: a key press gets past its prompt) | `autounattend.xml` at the root of a medium |
//! | `none` | `none` | the ISO's own boot | nothing |
//!
//! Sources for the shapes: Debian's installation guide, appendix B (preseeding: "Loading the
//! preseeding file" — initrd, file, network; `auto=true priority=critical`); Ubuntu's autoinstall
//! docs ("Providing autoinstall": `autoinstall` on the kernel command line, NoCloud `cidata`);
//! Anaconda's boot options (`inst.ks=hd:<label>:/path`, `inst.stage2=hd:LABEL=...`; it also looks
//! for `ks.cfg` on a volume labelled `OEMDRV`); osinfo-db's `<kernel>`/`<initrd>` per OS media
//! (Debian `install.amd/vmlinuz`, Ubuntu `casper/vmlinuz`, Fedora/RHEL `images/pxeboot/vmlinuz`).
//!
//! Pure: the ISO's directory tree comes in as an [`IsoTree`]; the plan checks it at plan time
//! when the ISO is a local file ([`check_installer_media`]), the executor resolves the same boot
//! after fetching it.

use kiln_syntax::diagnostic::Diagnostic;
use kiln_syntax::model::{InstallMethod, Origin, Pipeline};
use kiln_unattend::IsoTree;
use serde::Serialize;

use crate::io::{MediaInspector, MediaReport};

/// How kiln boots and answers one family of installers; chosen by the install method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstallerProfile {
    /// Debian's debian-installer (d-i), and Ubuntu's legacy installer.
    DebianInstaller,
    /// Ubuntu Server's Subiquity (20.04 and later live ISOs).
    Subiquity,
    /// Anaconda: RHEL, Rocky, Alma, CentOS Stream, Fedora.
    Anaconda,
    /// Windows Setup.
    WindowsSetup,
    /// An ISO that installs itself.
    None,
}

/// How the installer is started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootStyle {
    /// kiln boots the installer's kernel and initrd itself (libvirt direct kernel boot), with
    /// the profile's command line: no boot menu, no typing.
    Kernel,
    /// The firmware boots the ISO and its own boot loader runs.
    Media,
}

/// Where the answer file goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerPlacement {
    /// Inside the initrd, as this file name at its root (a gzip'd newc cpio appended to it).
    Initrd {
        /// The file name in the initrd.
        name: &'static str,
    },
    /// On an ISO 9660 medium attached as a CD-ROM.
    Volume {
        /// Its volume label.
        label: &'static str,
        /// The answer's file name at its root.
        file: &'static str,
    },
    /// No answer.
    Nothing,
}

/// The kernel boot of an installer, resolved against its ISO.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelBoot {
    /// The kernel's path in the ISO.
    pub kernel: String,
    /// The initrd's path in the ISO.
    pub initrd: String,
    /// The kernel command line, one argument an element.
    pub args: Vec<String>,
}

impl KernelBoot {
    /// The command line as one string.
    pub fn cmdline(&self) -> String {
        self.args.join(" ")
    }
}

/// The serial console every profile asks for: kiln's progress and evidence channel.
pub const SERIAL_CONSOLE: &str = "console=ttyS0,115200n8";

/// The line the profile's hook prints when the installer has finished writing the disk.
pub const INSTALL_DONE_LINE: &str = "KILN-INSTALL-OK";

/// An ISO that lacks what a profile needs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    /// None of the kernel/initrd pairs the profile knows is on the ISO.
    #[error(
        "no {profile} kernel and initrd on the ISO: looked for {wanted}; its top-level folders are {found}"
    )]
    NoKernel {
        /// The profile's name.
        profile: &'static str,
        /// The pairs looked for.
        wanted: String,
        /// What the ISO's root holds.
        found: String,
    },
    /// Anaconda finds its install tree by the ISO's volume id.
    #[error("the ISO has no volume id, which `inst.stage2=hd:LABEL=...` needs")]
    NoVolumeId,
}

impl InstallerProfile {
    /// The profile of an install method.
    pub fn for_method(method: InstallMethod) -> Self {
        match method {
            InstallMethod::Preseed => InstallerProfile::DebianInstaller,
            InstallMethod::Autoinstall => InstallerProfile::Subiquity,
            InstallMethod::Kickstart => InstallerProfile::Anaconda,
            InstallMethod::Autounattend => InstallerProfile::WindowsSetup,
            InstallMethod::None => InstallerProfile::None,
        }
    }

    /// As in plans and docs.
    pub fn name(self) -> &'static str {
        match self {
            InstallerProfile::DebianInstaller => "debian-installer",
            InstallerProfile::Subiquity => "subiquity",
            InstallerProfile::Anaconda => "anaconda",
            InstallerProfile::WindowsSetup => "windows-setup",
            InstallerProfile::None => "none",
        }
    }

    /// How the installer is started.
    pub fn boot_style(self) -> BootStyle {
        match self {
            InstallerProfile::DebianInstaller
            | InstallerProfile::Subiquity
            | InstallerProfile::Anaconda => BootStyle::Kernel,
            InstallerProfile::WindowsSetup | InstallerProfile::None => BootStyle::Media,
        }
    }

    /// Where the answer file goes.
    pub fn answer_placement(self) -> AnswerPlacement {
        match self {
            InstallerProfile::DebianInstaller => AnswerPlacement::Initrd {
                name: "preseed.cfg",
            },
            InstallerProfile::Subiquity => AnswerPlacement::Volume {
                label: "cidata",
                file: "user-data",
            },
            InstallerProfile::Anaconda => AnswerPlacement::Volume {
                label: "OEMDRV",
                file: "ks.cfg",
            },
            InstallerProfile::WindowsSetup => AnswerPlacement::Volume {
                label: "KILNCFG",
                file: "autounattend.xml",
            },
            InstallerProfile::None => AnswerPlacement::Nothing,
        }
    }

    /// Kernel/initrd pairs the profile looks for, in order (osinfo-db's `<kernel>`/`<initrd>`).
    pub fn kernel_candidates(self) -> &'static [(&'static str, &'static str)] {
        match self {
            InstallerProfile::DebianInstaller => &[
                ("install.amd/vmlinuz", "install.amd/initrd.gz"),
                ("install/vmlinuz", "install/initrd.gz"),
                (
                    "debian-installer/amd64/linux",
                    "debian-installer/amd64/initrd.gz",
                ),
            ],
            InstallerProfile::Subiquity => &[
                ("casper/vmlinuz", "casper/initrd"),
                ("casper/vmlinuz", "casper/initrd.gz"),
                ("casper/hwe-vmlinuz", "casper/hwe-initrd"),
            ],
            InstallerProfile::Anaconda => &[
                ("images/pxeboot/vmlinuz", "images/pxeboot/initrd.img"),
                ("isolinux/vmlinuz", "isolinux/initrd.img"),
            ],
            InstallerProfile::WindowsSetup | InstallerProfile::None => &[],
        }
    }

    /// The profile's own kernel arguments for an unattended install on a serial console.
    fn base_args(self, tree: &IsoTree) -> Result<Vec<String>, ProfileError> {
        let args: Vec<String> = match self {
            InstallerProfile::DebianInstaller => {
                vec!["auto=true".into(), "priority=critical".into()]
            }
            InstallerProfile::Subiquity => vec!["autoinstall".into(), "ds=nocloud".into()],
            InstallerProfile::Anaconda => {
                let label = tree.volume_id().ok_or(ProfileError::NoVolumeId)?;
                vec![
                    format!("inst.stage2=hd:LABEL={}", label_escape(label)),
                    "inst.ks=hd:LABEL=OEMDRV:/ks.cfg".into(),
                    "inst.text".into(),
                ]
            }
            InstallerProfile::WindowsSetup | InstallerProfile::None => Vec::new(),
        };
        let mut args = args;
        args.push(SERIAL_CONSOLE.into());
        Ok(args)
    }

    /// The kernel boot of this profile on the ISO whose tree is `tree`, with the pipeline's
    /// `kernel-args` (`extra`) merged in (see [`merge_args`]); `Ok(None)` for profiles that boot
    /// the ISO's own boot loader.
    ///
    /// # Errors
    /// When the ISO has none of the profile's kernels, or lacks what its command line needs.
    pub fn kernel_boot(
        self,
        tree: &IsoTree,
        extra: &[String],
    ) -> Result<Option<KernelBoot>, ProfileError> {
        if self.boot_style() == BootStyle::Media {
            return Ok(None);
        }
        let file = |p: &str| tree.get(p).is_some_and(|e| !e.is_dir);
        let Some((kernel, initrd)) = self
            .kernel_candidates()
            .iter()
            .find(|(k, i)| file(k) && file(i))
        else {
            let wanted = self
                .kernel_candidates()
                .iter()
                .map(|(k, i)| format!("`{k}` + `{i}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let mut top: Vec<String> = tree
                .children("")
                .filter(|e| e.is_dir)
                .map(|e| format!("`{}/`", e.path))
                .collect();
            if top.is_empty() {
                top.push("none".into());
            }
            if top.len() > 12 {
                top.truncate(12);
                top.push("...".into());
            }
            return Err(ProfileError::NoKernel {
                profile: self.name(),
                wanted,
                found: top.join(", "),
            });
        };
        Ok(Some(KernelBoot {
            kernel: (*kernel).to_owned(),
            initrd: (*initrd).to_owned(),
            args: merge_args(self.base_args(tree)?, extra),
        }))
    }

    /// The answer file as the installer gets it: the user's text plus the profile's hook that
    /// prints [`INSTALL_DONE_LINE`] on the serial console once the system is written, and the
    /// setting that powers the machine off at the end. `None` when the profile adds nothing
    /// (the text is used as it is).
    pub fn augment_answer(self, text: &str) -> Option<String> {
        match self {
            InstallerProfile::DebianInstaller => Some(augment_preseed(text)),
            InstallerProfile::Anaconda => Some(augment_kickstart(text)),
            InstallerProfile::Subiquity => augment_autoinstall(text).ok(),
            InstallerProfile::WindowsSetup | InstallerProfile::None => None,
        }
    }
}

/// The secret role of a preseed's or kickstart's root password.
pub const ROOT_PASSWORD: &str = "root-password";

/// What stands for the crypt hash of secret `role` in cached media (seeds, answer files); the
/// step that boots the guest replaces it. It is no valid crypt hash: should it ever reach a guest,
/// nobody can log in with a password.
pub fn secret_placeholder(role: &str) -> String {
    format!("!KILN-SECRET-HASH({role})")
}

/// The answer file with the root password's placeholder set: for d-i the crypted-password
/// question (appended: debconf keeps the last value), for kickstart `rootpw --iscrypted` (first:
/// commands belong before the `%` sections). `None` for profiles without a root password here.
pub fn with_root_password(profile: InstallerProfile, text: &str) -> Option<String> {
    let hash = secret_placeholder(ROOT_PASSWORD);
    match profile {
        InstallerProfile::DebianInstaller => {
            let mut out = text.to_owned();
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str("# Added by kiln: the root password, hashed at build time.\n");
            out.push_str("d-i passwd/root-login boolean true\n");
            out.push_str(&format!(
                "d-i passwd/root-password-crypted password {hash}\n"
            ));
            Some(out)
        }
        InstallerProfile::Anaconda => Some(format!(
            "# Added by kiln: the root password, hashed at build time.\nrootpw --iscrypted {hash}\n{text}"
        )),
        InstallerProfile::Subiquity | InstallerProfile::WindowsSetup | InstallerProfile::None => {
            None
        }
    }
}

/// `key=value` arguments in `extra` replace the profile's argument with the same key; other
/// arguments are added once, in order.
pub fn merge_args(mut base: Vec<String>, extra: &[String]) -> Vec<String> {
    let key = |a: &str| a.split_once('=').map_or(a, |(k, _)| k).to_owned();
    for arg in extra {
        let k = key(arg);
        if let Some(slot) = base.iter_mut().find(|b| key(b) == k) {
            slot.clone_from(arg);
        } else {
            base.push(arg.clone());
        }
    }
    base
}

/// `LABEL=` escaping as Anaconda's boot menus write it: a space becomes `\x20`.
fn label_escape(label: &str) -> String {
    label.replace(' ', "\\x20")
}

/// The preseed's logical lines (backslash continuations joined), as debconf reads them.
fn preseed_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for raw in text.lines() {
        let line = raw.trim_end_matches('\r');
        if let Some(stripped) = line.strip_suffix('\\') {
            cur.push_str(stripped);
            continue;
        }
        cur.push_str(line);
        out.push(std::mem::take(&mut cur));
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The value of the last `d-i preseed/late_command string ...` line, if any: the rest of the
/// logical line after the type, as debconf takes it.
fn preseed_late_command(text: &str) -> Option<String> {
    let mut found = None;
    for line in preseed_lines(text) {
        if line.trim_start().starts_with('#') {
            continue;
        }
        let mut rest = line.as_str();
        let mut words = Vec::new();
        for _ in 0..3 {
            rest = rest.trim_start();
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            words.push(&rest[..end]);
            rest = &rest[end..];
        }
        if words[1] == "preseed/late_command" {
            found = Some(rest.trim().to_owned());
        }
    }
    found.filter(|c| !c.is_empty())
}

/// The user's preseed, then kiln's lines: power off at the end, and a `late_command` that runs
/// the user's own `late_command` first (in a subshell) and prints [`INSTALL_DONE_LINE`] only when
/// all of it succeeded.
/// debconf keeps the last value of a question, so these win.
pub fn augment_preseed(text: &str) -> String {
    let done = format!("echo {INSTALL_DONE_LINE} > /dev/ttyS0");
    let late = match preseed_late_command(text) {
        // A subshell, so a failure anywhere in the user's `a; b` list keeps the line unprinted.
        Some(user) => format!("( {user} ) && {done}"),
        None => done,
    };
    let mut out = text.to_owned();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str("# Added by kiln's debian-installer profile: power off when done, and say so.\n");
    out.push_str("d-i debian-installer/exit/poweroff boolean true\n");
    out.push_str(&format!("d-i preseed/late_command string {late}\n"));
    out
}

/// The user's kickstart, then kiln's: a `%post --nochroot` section that prints
/// [`INSTALL_DONE_LINE`] (sections run in order, so it runs after the user's) and `poweroff`.
pub fn augment_kickstart(text: &str) -> String {
    let mut out = text.to_owned();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str("# Added by kiln's anaconda profile: power off when done, and say so.\n");
    out.push_str("poweroff\n");
    out.push_str(&format!(
        "%post --nochroot\necho {INSTALL_DONE_LINE} > /dev/ttyS0\n%end\n"
    ));
    out
}

/// The user's autoinstall `user-data` with `shutdown: poweroff` and a last `late-commands` entry
/// that prints [`INSTALL_DONE_LINE`] (late commands run in order, after the system is written).
/// Re-emitted from the parsed YAML, so comments are not kept; the `#cloud-config` header is.
///
/// # Errors
/// When the text is not YAML with an `autoinstall:` mapping (then it is used as it is, and the
/// install can only succeed by its power-off).
pub fn augment_autoinstall(text: &str) -> Result<String, String> {
    use yaml_rust2::{Yaml, YamlEmitter, YamlLoader};
    let mut docs = YamlLoader::load_from_str(text).map_err(|e| e.to_string())?;
    let Some(Yaml::Hash(root)) = docs.first_mut() else {
        return Err("user-data is not a YAML mapping".into());
    };
    let Some(Yaml::Hash(auto)) = root.get_mut(&Yaml::String("autoinstall".into())) else {
        return Err("user-data has no `autoinstall:` mapping".into());
    };
    auto.insert(
        Yaml::String("shutdown".into()),
        Yaml::String("poweroff".into()),
    );
    let done = Yaml::String(format!("echo {INSTALL_DONE_LINE} > /dev/ttyS0"));
    let key = Yaml::String("late-commands".into());
    match auto.get_mut(&key) {
        Some(Yaml::Array(list)) => list.push(done),
        _ => {
            auto.insert(key, Yaml::Array(vec![done]));
        }
    }
    let mut out = String::new();
    YamlEmitter::new(&mut out)
        .dump(&docs[0])
        .map_err(|e| e.to_string())?;
    // The emitter starts with `---`; NoCloud needs the `#cloud-config` header first.
    let body = out.strip_prefix("---\n").unwrap_or(&out);
    Ok(format!("#cloud-config\n{body}\n"))
}

/// Checks every pipeline whose installer kiln boots by its kernel against its ISO, when the ISO
/// is a local file: the profile's kernel and initrd must be on it. Errors are located at the
/// `install` node and name what the ISO holds instead.
pub fn check_installer_media(pipelines: &[Pipeline], media: &dyn MediaInspector) -> MediaReport {
    let mut report = MediaReport::default();
    for p in pipelines {
        let (Some(install), Some(source)) = (&p.install, &p.source) else {
            continue;
        };
        let profile = InstallerProfile::for_method(install.method.value);
        if profile.boot_style() == BootStyle::Media {
            continue;
        }
        let Origin::Path(path) = &source.origin else {
            report.notes.push(format!(
                "pipeline `{}`: the installer ISO is not a local file; its {} kernel is looked for after it is fetched",
                p.name.raw,
                profile.name()
            ));
            continue;
        };
        let tree = match media.tree(&path.resolved) {
            Ok(Some(tree)) => tree,
            Ok(None) => continue,
            Err(e) => {
                report.diagnostics.push(
                    Diagnostic::new(
                        "unreadable-iso",
                        path.span,
                        format!("cannot read the directory tree of `{}`: {e}", path.written),
                    )
                    .label("this ISO")
                    .help("the `preseed`, `autoinstall` and `kickstart` methods read the installer's kernel out of the ISO"),
                );
                continue;
            }
        };
        if let Err(e) = profile.kernel_boot(&tree, &[]) {
            report.diagnostics.push(
                Diagnostic::new("installer-not-on-iso", install.method.span, e.to_string())
                    .label(format!("the {} profile", profile.name()))
                    .with(path.span, "this ISO")
                    .help(help_for(profile)),
            );
        }
    }
    report
}

fn help_for(profile: InstallerProfile) -> &'static str {
    match profile {
        InstallerProfile::DebianInstaller => {
            "`preseed` is for Debian installer media (a Debian netinst/DVD ISO); for Ubuntu 20.04+ live ISOs use `autoinstall`"
        }
        InstallerProfile::Subiquity => {
            "`autoinstall` is for Ubuntu Server live ISOs (Subiquity); for Debian media use `preseed`"
        }
        InstallerProfile::Anaconda => {
            "`kickstart` is for RHEL-family media (RHEL, Rocky, Alma, Fedora: `images/pxeboot/`)"
        }
        InstallerProfile::WindowsSetup | InstallerProfile::None => {
            "this method boots the ISO's own boot loader"
        }
    }
}

#[cfg(test)]
#[path = "installer_tests.rs"]
mod tests;
