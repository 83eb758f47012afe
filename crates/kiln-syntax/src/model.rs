//! The typed pipeline model: what a pipeline file says, every value with its span.
//!
//! Produced by [`crate::load`]; consumed by the planner without re-parsing. Nothing here does I/O.
//! Optional nodes the language gives defaults for (`machine`, `output`) are always present, with
//! their defaults spanned at the node (or at the pipeline's name when the node is absent).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::secret::SecretRef;
use crate::span::{FileId, Span, Spanned};
use crate::template::Template;
use crate::units::ByteSize;

/// Names every template may use besides declared variables and matrix axes.
///
/// - `pipeline`: the pipeline's rendered name for the current matrix cell (not usable inside the
///   pipeline's own name).
pub const BUILTIN_VARIABLES: &[&str] = &["pipeline"];

/// One `pipeline` node, with its includes merged in.
#[derive(Clone, Debug, PartialEq)]
pub struct Pipeline {
    /// The file holding the `pipeline` node.
    pub file: FileId,
    /// The whole `pipeline` node.
    pub span: Span,
    /// The pipeline's name; may reference matrix axes and variables (one name per cell).
    pub name: Template,
    /// Free text for humans.
    pub description: Option<Spanned<String>>,
    /// Fragments merged into this pipeline, in include order (nested includes after their parent).
    pub includes: Vec<Include>,
    /// Declared variables with their effective values.
    pub variables: Variables,
    /// Axes the pipeline expands over; `None` means one cell.
    pub matrix: Option<Matrix>,
    /// The parent pipeline whose output this one builds on.
    pub from: Option<From>,
    /// The installer (absent exactly when `from` is present).
    pub source: Option<Source>,
    /// A driver ISO attached as a second CD-ROM.
    pub drivers: Option<Drivers>,
    /// The root disk (required unless `from` is present; then it may grow the parent's disk).
    pub disk: Option<Disk>,
    /// The build VM's shape.
    pub machine: Machine,
    /// The unattended install (absent exactly when `from` is present).
    pub install: Option<Install>,
    /// Steps run inside the installed system (cloud-init / cloudbase-init).
    pub customize: Option<Customize>,
    /// Boot the finished image as a cloud would and require proof.
    pub boot_test: Option<BootTest>,
    /// The image file kiln produces.
    pub output: Output,
    /// Where the image is uploaded.
    pub publish: Option<Publish>,
}

impl Pipeline {
    /// Linux or Windows, from the install method and customize agent.
    pub fn os(&self) -> OsFamily {
        let windows_install = self
            .install
            .as_ref()
            .is_some_and(|i| i.method.value == InstallMethod::Autounattend);
        let windows_agent = self
            .customize
            .as_ref()
            .is_some_and(|c| c.agent.value == Agent::CloudbaseInit);
        if windows_install || windows_agent {
            OsFamily::Windows
        } else {
            OsFamily::Linux
        }
    }

    /// The matrix cells; one empty cell when there is no matrix.
    pub fn cells(&self) -> Vec<MatrixCell> {
        match &self.matrix {
            Some(m) => m.cells(),
            None => vec![MatrixCell::default()],
        }
    }

    /// Every value a template of this pipeline can see in `cell`: variables, the cell's axes, and the
    /// builtins. Fails only when the pipeline's name itself cannot be rendered.
    pub fn vars_for(
        &self,
        cell: &MatrixCell,
    ) -> Result<BTreeMap<String, String>, crate::template::RenderError> {
        let mut vars = BTreeMap::new();
        for var in &self.variables.vars {
            if let Some(value) = &var.value {
                vars.insert(var.name.value.clone(), value.value.clone());
            }
        }
        for (axis, value) in &cell.values {
            vars.insert(axis.value.clone(), value.value.clone());
        }
        let name = self.name.render(&vars)?;
        vars.insert("pipeline".to_string(), name);
        Ok(vars)
    }
}

/// Linux or Windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OsFamily {
    /// cloud-init world.
    Linux,
    /// autounattend / cloudbase-init world.
    Windows,
}

/// An `include "path"` of a fragment file.
#[derive(Clone, Debug, PartialEq)]
pub struct Include {
    /// The `include` node.
    pub span: Span,
    /// The fragment's path.
    pub path: LocalPath,
    /// The fragment's file, once loaded (`None` when it could not be read).
    pub file: Option<FileId>,
}

/// A path written in a pipeline file, relative to that file.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LocalPath {
    /// As written in the file (what plans and keys should use: it does not depend on the checkout).
    pub written: String,
    /// The span of the string.
    pub span: Span,
    /// `written` joined to the directory of the file it appears in (as that file was given: relative
    /// stays relative). Absolute when `written` is.
    pub resolved: PathBuf,
}

/// The `variables` block.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Variables {
    /// Declared variables in declaration order (includes first, then the pipeline's own).
    pub vars: Vec<Variable>,
}

impl Variables {
    /// The variable called `name`.
    pub fn get(&self, name: &str) -> Option<&Variable> {
        self.vars.iter().find(|v| v.name.value == name)
    }
}

/// A declared variable.
#[derive(Clone, Debug, PartialEq)]
pub struct Variable {
    /// Its name.
    pub name: Spanned<String>,
    /// The default written in the file; `None` makes the variable required.
    pub default: Option<Spanned<String>>,
    /// The effective value (`None` only when required and not given; then a diagnostic was emitted).
    pub value: Option<VarValue>,
}

/// An effective variable value and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VarValue {
    /// The value.
    pub value: String,
    /// Where it was set.
    pub origin: VarOrigin,
}

/// Where a variable's value came from (later entries win).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VarOrigin {
    /// The default in the file.
    Default,
    /// An environment variable (`KILN_VAR_<name>`).
    Environment(String),
    /// `--var name=value` on the command line.
    CommandLine,
}

/// The `matrix` block.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    /// The `matrix` node.
    pub span: Span,
    /// Axes in written order.
    pub axes: Vec<Axis>,
}

/// One matrix axis, e.g. `language "en-US" "de-DE"`.
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    /// The axis node.
    pub span: Span,
    /// The axis name (a variable name in templates).
    pub name: Spanned<String>,
    /// Its values in written order (non-empty, no duplicates).
    pub values: Vec<Spanned<String>>,
}

/// One cell of a matrix: a value per axis.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MatrixCell {
    /// `(axis name, value)` in axis order.
    pub values: Vec<(Spanned<String>, Spanned<String>)>,
}

impl MatrixCell {
    /// `axis=value,axis=value` in axis order; empty for the single cell of a pipeline without a matrix.
    pub fn label(&self) -> String {
        self.values
            .iter()
            .map(|(a, v)| format!("{}={}", a.value, v.value))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The value of `axis` in this cell.
    pub fn get(&self, axis: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(a, _)| a.value == axis)
            .map(|(_, v)| v.value.as_str())
    }
}

impl Matrix {
    /// The cartesian product of the axes, first axis outermost.
    pub fn cells(&self) -> Vec<MatrixCell> {
        let mut cells = vec![MatrixCell::default()];
        for axis in &self.axes {
            let mut next = Vec::with_capacity(cells.len() * axis.values.len());
            for cell in &cells {
                for value in &axis.values {
                    let mut c = cell.clone();
                    c.values.push((axis.name.clone(), value.clone()));
                    next.push(c);
                }
            }
            cells = next;
        }
        cells
    }

    /// Number of cells (saturating).
    pub fn len(&self) -> usize {
        self.axes
            .iter()
            .fold(1usize, |n, a| n.saturating_mul(a.values.len()))
    }

    /// True when some axis has no values (never after a successful check).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `from "parent-name"`: build on another pipeline's output.
#[derive(Clone, Debug, PartialEq)]
pub struct From {
    /// The `from` node.
    pub span: Span,
    /// The parent's name as rendered for a cell (may use this pipeline's axes and variables).
    pub name: Template,
}

/// `source`: the installer image.
#[derive(Clone, Debug, PartialEq)]
pub struct Source {
    /// The `source` node.
    pub span: Span,
    /// Where it comes from.
    pub origin: Origin,
    /// Expected digest: required for URLs, optional for local paths, not allowed for Glance.
    pub checksum: Option<Checksum>,
}

/// Where a file comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum Origin {
    /// A local file, relative to the pipeline file.
    Path(LocalPath),
    /// An `http://` or `https://` URL.
    Url(Template),
    /// An existing Glance image (`glance:<id or name>`).
    Glance(GlanceRef),
}

impl Origin {
    /// The span of the written location.
    pub fn span(&self) -> Span {
        match self {
            Origin::Path(p) => p.span,
            Origin::Url(t) => t.span,
            Origin::Glance(g) => g.value.span,
        }
    }
}

/// A Glance image reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlanceRef {
    /// The id or name after `glance:`.
    pub value: Spanned<String>,
    /// Whether it looks like an image id (a UUID) or is a name.
    pub kind: GlanceRefKind,
}

/// Id or name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GlanceRefKind {
    /// A UUID.
    Id,
    /// An image name, resolved at build time (must be unique in the project).
    Name,
}

/// A digest to verify: `sha256:<hex>`, `sha512:<hex>` or `md5:<hex>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Checksum {
    /// The whole `checksum=...` value.
    pub span: Span,
    /// The algorithm.
    pub algorithm: ChecksumAlgorithm,
    /// Lowercase hex of the right length.
    pub hex: String,
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

/// Digest algorithms accepted for checksums.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChecksumAlgorithm {
    /// MD5 (32 hex digits).
    Md5,
    /// SHA-256 (64 hex digits).
    Sha256,
    /// SHA-512 (128 hex digits).
    Sha512,
}

impl ChecksumAlgorithm {
    /// The prefix as written.
    pub fn name(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Md5 => "md5",
            ChecksumAlgorithm::Sha256 => "sha256",
            ChecksumAlgorithm::Sha512 => "sha512",
        }
    }

    /// Number of hex digits of a digest.
    pub fn hex_len(self) -> usize {
        match self {
            ChecksumAlgorithm::Md5 => 32,
            ChecksumAlgorithm::Sha256 => 64,
            ChecksumAlgorithm::Sha512 => 128,
        }
    }
}

/// `drivers`: a driver ISO attached as the second CD-ROM (`hdb`).
#[derive(Clone, Debug, PartialEq)]
pub struct Drivers {
    /// The `drivers` node.
    pub span: Span,
    /// A local path or URL (not Glance).
    pub origin: Origin,
    /// Required for URLs.
    pub checksum: Option<Checksum>,
    /// What the ISO holds.
    pub kind: Spanned<DriverKind>,
}

/// What a driver ISO holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DriverKind {
    /// The virtio-win ISO (folders per driver / Windows version / architecture).
    VirtioWin,
    /// Anything else; attached as is.
    Other,
}

/// `disk`: the root disk.
#[derive(Clone, Debug, PartialEq)]
pub struct Disk {
    /// The `disk` node.
    pub span: Span,
    /// Exact size in bytes (at least [`crate::limits::MIN_DISK`]).
    pub size: Spanned<ByteSize>,
    /// Working format while building.
    pub format: Spanned<ImageFormat>,
}

/// Disk image formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageFormat {
    /// qcow2.
    Qcow2,
    /// raw.
    Raw,
}

impl ImageFormat {
    /// As written and as qemu-img/Glance name it.
    pub fn name(self) -> &'static str {
        match self {
            ImageFormat::Qcow2 => "qcow2",
            ImageFormat::Raw => "raw",
        }
    }
}

/// `machine`: the build VM.
#[derive(Clone, Debug, PartialEq)]
pub struct Machine {
    /// The `machine` node, or the pipeline's name when the node is absent.
    pub span: Span,
    /// vCPUs (1–256; default 2).
    pub cpus: Spanned<u32>,
    /// Memory (default 2GiB; at least 256MiB).
    pub memory: Spanned<ByteSize>,
    /// `bios` (default) or `uefi`.
    pub firmware: Spanned<Firmware>,
    /// UEFI Secure Boot (only with `uefi`; default off).
    pub secure_boot: Spanned<bool>,
    /// `pc` (i440fx, default) or `q35`.
    pub machine_type: Spanned<MachineType>,
    /// A TPM 2.0 (swtpm); default off.
    pub tpm: Spanned<bool>,
    /// Root disk bus (default `virtio`).
    pub disk_bus: Spanned<DiskBus>,
    /// NIC model (default `virtio`).
    pub nic: Spanned<NicModel>,
}

/// Firmware.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Firmware {
    /// SeaBIOS.
    Bios,
    /// OVMF.
    Uefi,
}

impl Firmware {
    /// As written.
    pub fn name(self) -> &'static str {
        match self {
            Firmware::Bios => "bios",
            Firmware::Uefi => "uefi",
        }
    }
}

/// QEMU machine type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MachineType {
    /// i440fx (has IDE).
    Pc,
    /// q35 (no IDE: CD-ROMs on SATA).
    Q35,
}

impl MachineType {
    /// As written and as libvirt names it.
    pub fn name(self) -> &'static str {
        match self {
            MachineType::Pc => "pc",
            MachineType::Q35 => "q35",
        }
    }
}

/// Disk buses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiskBus {
    /// virtio-blk.
    Virtio,
    /// virtio-scsi.
    Scsi,
    /// SATA (AHCI).
    Sata,
    /// IDE (machine `pc` only).
    Ide,
}

impl DiskBus {
    /// As written and as Glance's `hw_disk_bus` names it.
    pub fn name(self) -> &'static str {
        match self {
            DiskBus::Virtio => "virtio",
            DiskBus::Scsi => "scsi",
            DiskBus::Sata => "sata",
            DiskBus::Ide => "ide",
        }
    }
}

/// NIC models.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NicModel {
    /// virtio-net.
    Virtio,
    /// Intel e1000.
    E1000,
    /// Intel e1000e.
    E1000e,
    /// Realtek 8139.
    Rtl8139,
}

impl NicModel {
    /// As written and as libvirt / Glance's `hw_vif_model` name it.
    pub fn name(self) -> &'static str {
        match self {
            NicModel::Virtio => "virtio",
            NicModel::E1000 => "e1000",
            NicModel::E1000e => "e1000e",
            NicModel::Rtl8139 => "rtl8139",
        }
    }
}

/// `install`: the unattended install.
#[derive(Clone, Debug, PartialEq)]
pub struct Install {
    /// The `install` node.
    pub span: Span,
    /// How the installer is driven.
    pub method: Spanned<InstallMethod>,
    /// The answer file, given by path or inline. `None` for `none`, and for `autounattend` when kiln
    /// generates the file from [`Install::windows`].
    pub answer: Option<Answer>,
    /// The install must power the machine off within this time.
    pub timeout: Spanned<Duration>,
    /// Settings kiln's autounattend generator uses (only with `autounattend` and no answer file).
    pub windows: Option<WindowsSetup>,
    /// `kernel-args="..."`: kernel command-line arguments added to (or, for a `key=value` whose key
    /// the installer profile already sets, replacing) the profile's own. Only for methods whose
    /// installer kiln boots by its kernel (`preseed`, `autoinstall`, `kickstart`).
    pub kernel_args: Option<Template>,
    /// `root-password env=… | file=…` in the block of a `preseed` or `kickstart` install: the
    /// root password, put into the answer file as a SHA-512 crypt hash at build time.
    pub root_password: Option<SecretRef>,
}

/// Install methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstallMethod {
    /// Red Hat family kickstart (`ks.cfg`).
    Kickstart,
    /// Debian installer preseed (`preseed.cfg`).
    Preseed,
    /// Ubuntu autoinstall (`user-data` on a `cidata` volume).
    Autoinstall,
    /// Windows Setup `autounattend.xml`.
    Autounattend,
    /// The ISO installs itself and powers off; no answer media.
    None,
}

impl InstallMethod {
    /// As written.
    pub fn name(self) -> &'static str {
        match self {
            InstallMethod::Kickstart => "kickstart",
            InstallMethod::Preseed => "preseed",
            InstallMethod::Autoinstall => "autoinstall",
            InstallMethod::Autounattend => "autounattend",
            InstallMethod::None => "none",
        }
    }
}

/// An answer file.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// `file="path"`, relative to the pipeline file.
    File(LocalPath),
    /// `inline="..."`; may reference variables.
    Inline(Template),
}

/// What kiln needs to generate `autounattend.xml`.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowsSetup {
    /// The block inside `install`.
    pub span: Span,
    /// Windows version (chooses virtio-win driver folders).
    pub version: Spanned<WindowsVersion>,
    /// CPU architecture.
    pub arch: Spanned<Arch>,
    /// Which image of `install.wim` to apply.
    pub image: WindowsImage,
    /// UI/input/system/user locale (e.g. `{language}`); default `en-US`.
    pub language: Template,
    /// Time zone name; default `UTC`.
    pub timezone: Template,
    /// Computer name pattern; default `*` (Windows picks one).
    pub computer_name: Template,
    /// The product key, if the media needs one.
    pub product_key: Option<SecretRef>,
    /// The local Administrator password.
    pub admin_password: SecretRef,
}

/// Which Windows image to apply.
#[derive(Clone, Debug, PartialEq)]
pub enum WindowsImage {
    /// By `/IMAGE/NAME`, e.g. `Windows Server 2022 SERVERSTANDARD`.
    Name(Template),
    /// By index (1-based).
    Index(Spanned<u32>),
}

/// Windows versions kiln knows driver folders for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WindowsVersion {
    /// Windows 10.
    W10,
    /// Windows 11.
    W11,
    /// Windows Server 2016.
    Server2016,
    /// Windows Server 2019.
    Server2019,
    /// Windows Server 2022.
    Server2022,
    /// Windows Server 2025.
    Server2025,
}

impl WindowsVersion {
    /// As written in pipelines.
    pub fn name(self) -> &'static str {
        match self {
            WindowsVersion::W10 => "10",
            WindowsVersion::W11 => "11",
            WindowsVersion::Server2016 => "server-2016",
            WindowsVersion::Server2019 => "server-2019",
            WindowsVersion::Server2022 => "server-2022",
            WindowsVersion::Server2025 => "server-2025",
        }
    }
}

/// CPU architectures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    /// x86-64.
    Amd64,
    /// AArch64.
    Arm64,
}

/// `customize`: steps run by the guest agent on first boot, then generalize and power off.
#[derive(Clone, Debug, PartialEq)]
pub struct Customize {
    /// The `customize` node (the pipeline's own, or the fragment's when only a fragment has one).
    pub span: Span,
    /// `cloud-init` or `cloudbase-init`.
    pub agent: Spanned<Agent>,
    /// The steps in order (steps from included fragments first).
    pub steps: Vec<Step>,
    /// Run `cloud-init clean` / `sysprep /generalize` at the end (default on).
    pub generalize: Spanned<bool>,
    /// The customize boot must power off within this time (default 30m).
    pub timeout: Spanned<Duration>,
    /// The agent's installer (cloudbase-init MSI), fetched and verified like a source.
    pub installer: Option<Source>,
}

/// Guest agents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Agent {
    /// cloud-init (Linux).
    CloudInit,
    /// cloudbase-init (Windows).
    CloudbaseInit,
}

impl Agent {
    /// As written.
    pub fn name(self) -> &'static str {
        match self {
            Agent::CloudInit => "cloud-init",
            Agent::CloudbaseInit => "cloudbase-init",
        }
    }
}

/// One customize step.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// The step's node.
    pub span: Span,
    /// What it does.
    pub kind: StepKind,
}

/// Customize step kinds.
#[derive(Clone, Debug, PartialEq)]
pub enum StepKind {
    /// `package "a" "b"`: install packages (cloud-init only).
    Packages(Vec<Template>),
    /// `file "/path" content="..."` or `source="local"`: write a file.
    File(FileStep),
    /// `run "command"`: run a shell (cloud-init) or PowerShell (cloudbase-init) command.
    Run(Template),
    /// `user "name" { ... }`: create a user.
    User(UserStep),
    /// `plugin "Name"`: enable a cloudbase-init plugin.
    Plugin(Spanned<String>),
}

/// A file written into the image.
#[derive(Clone, Debug, PartialEq)]
pub struct FileStep {
    /// Path in the guest.
    pub path: Template,
    /// Its content.
    pub content: FileContent,
    /// Octal permission bits (e.g. `"0644"`).
    pub mode: Option<Spanned<u32>>,
    /// `user:group`.
    pub owner: Option<Template>,
}

/// File content.
#[derive(Clone, Debug, PartialEq)]
pub enum FileContent {
    /// Written inline (variables interpolated).
    Inline(Template),
    /// Copied from a file next to the pipeline (bytes as is).
    Source(LocalPath),
}

/// A user to create.
#[derive(Clone, Debug, PartialEq)]
pub struct UserStep {
    /// Login name.
    pub name: Template,
    /// Supplementary groups.
    pub groups: Vec<Template>,
    /// Authorized SSH public keys.
    pub ssh_keys: Vec<Template>,
    /// Password, from a secret.
    pub password: Option<SecretRef>,
    /// Passwordless sudo / local Administrators membership.
    pub admin: Spanned<bool>,
    /// Login shell (cloud-init only).
    pub shell: Option<Template>,
}

/// `boot-test`.
#[derive(Clone, Debug, PartialEq)]
pub struct BootTest {
    /// The `boot-test` node.
    pub span: Span,
    /// Proof must appear within this time (default 10m).
    pub timeout: Spanned<Duration>,
    /// Lines that must appear on the serial console; empty means the agent's own success message.
    pub expect: Vec<Template>,
}

/// `output`: the produced image file.
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    /// The `output` node, or the pipeline's name when absent.
    pub span: Span,
    /// `qcow2` (default) or `raw`.
    pub format: Spanned<ImageFormat>,
    /// qcow2 compression (default none).
    pub compression: Spanned<Compression>,
}

/// qcow2 compression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compression {
    /// Uncompressed.
    None,
    /// zlib (readable everywhere).
    Zlib,
    /// zstd (qemu ≥ 5.1).
    Zstd,
}

impl Compression {
    /// As written.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Zlib => "zlib",
            Compression::Zstd => "zstd",
        }
    }
}

/// `publish glance ...`.
#[derive(Clone, Debug, PartialEq)]
pub struct Publish {
    /// The `publish` node.
    pub span: Span,
    /// The image service.
    pub target: Spanned<PublishTarget>,
    /// Image name (rendered per cell).
    pub name: Template,
    /// `clouds.yaml` cloud to use; `None` means `--os-cloud` / `OS_CLOUD` / `OS_*`.
    pub cloud: Option<Spanned<String>>,
    /// Glance `disk_format`; default: the output format.
    pub disk_format: Option<Spanned<ImageFormat>>,
    /// Glance `container_format` (default `bare`).
    pub container_format: Spanned<ContainerFormat>,
    /// Glance visibility (default `private`).
    pub visibility: Spanned<Visibility>,
    /// Glance `min_disk` (sent in GiB, rounded up).
    pub min_disk: Option<Spanned<ByteSize>>,
    /// Glance `min_ram` (sent in MiB, rounded up).
    pub min_ram: Option<Spanned<ByteSize>>,
    /// Glance `protected` (default false).
    pub protected: Spanned<bool>,
    /// Extra properties in written order (keys unique).
    pub properties: Vec<Property>,
    /// Tags in written order (unique).
    pub tags: Vec<Template>,
}

/// Image services.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PublishTarget {
    /// OpenStack Glance v2.
    Glance,
}

/// Glance container formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContainerFormat {
    /// `bare`.
    Bare,
    /// `ovf`.
    Ovf,
}

/// Glance visibility.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Visibility {
    /// Only the owner project.
    Private,
    /// Owner plus members.
    Shared,
    /// Everyone may use it, not listed by default.
    Community,
    /// Everyone (admin only).
    Public,
}

impl Visibility {
    /// As Glance names it.
    pub fn name(self) -> &'static str {
        match self {
            Visibility::Private => "private",
            Visibility::Shared => "shared",
            Visibility::Community => "community",
            Visibility::Public => "public",
        }
    }
}

/// A Glance image property.
#[derive(Clone, Debug, PartialEq)]
pub struct Property {
    /// The key (e.g. `hw_disk_bus`).
    pub key: Spanned<String>,
    /// The value (rendered per cell).
    pub value: Template,
}

impl Pipeline {
    /// Calls `f` with every template in the pipeline and a short description of where it is
    /// (for messages). The name and `from` come first.
    pub fn for_each_template(&self, mut f: impl FnMut(&'static str, &Template)) {
        f("the pipeline name", &self.name);
        if let Some(from) = &self.from {
            f("`from`", &from.name);
        }
        let mut origin = |what, o: &Origin| {
            if let Origin::Url(t) = o {
                f(what, t);
            }
        };
        if let Some(s) = &self.source {
            origin("`source`", &s.origin);
        }
        if let Some(d) = &self.drivers {
            origin("`drivers`", &d.origin);
        }
        if let Some(c) = &self.customize
            && let Some(i) = &c.installer
        {
            origin("`installer`", &i.origin);
        }
        if let Some(install) = &self.install {
            if let Some(Answer::Inline(t)) = &install.answer {
                f("`install`", t);
            }
            if let Some(t) = &install.kernel_args {
                f("`kernel-args`", t);
            }
            if let Some(w) = &install.windows {
                if let WindowsImage::Name(t) = &w.image {
                    f("`image`", t);
                }
                f("`language`", &w.language);
                f("`timezone`", &w.timezone);
                f("`computer-name`", &w.computer_name);
            }
        }
        if let Some(c) = &self.customize {
            for step in &c.steps {
                match &step.kind {
                    StepKind::Packages(p) => p.iter().for_each(|t| f("`package`", t)),
                    StepKind::File(file) => {
                        f("`file`", &file.path);
                        if let FileContent::Inline(t) = &file.content {
                            f("`file`", t);
                        }
                        if let Some(o) = &file.owner {
                            f("`file`", o);
                        }
                    }
                    StepKind::Run(t) => f("`run`", t),
                    StepKind::User(u) => {
                        f("`user`", &u.name);
                        u.groups.iter().for_each(|t| f("`user`", t));
                        u.ssh_keys.iter().for_each(|t| f("`user`", t));
                        if let Some(s) = &u.shell {
                            f("`user`", s);
                        }
                    }
                    StepKind::Plugin(_) => {}
                }
            }
        }
        if let Some(b) = &self.boot_test {
            b.expect.iter().for_each(|t| f("`expect`", t));
        }
        if let Some(p) = &self.publish {
            f("`publish`", &p.name);
            p.properties
                .iter()
                .for_each(|prop| f("`property`", &prop.value));
            p.tags.iter().for_each(|t| f("`tag`", t));
        }
    }
}

/// `Display` as the name written in pipeline files.
macro_rules! display_by_name {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    )*};
}

display_by_name!(
    ImageFormat,
    Firmware,
    MachineType,
    DiskBus,
    NicModel,
    InstallMethod,
    Agent,
    Compression
);
