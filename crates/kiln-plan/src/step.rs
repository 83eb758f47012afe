//! The step: one real action of a build, with everything its runner needs.
//!
//! [`StepParams`] holds exactly what enters the step key (rendered for the step's matrix cell, with
//! checkout-independent paths and content digests). [`ExecInputs`] holds what only execution needs
//! (resolved paths, secret references, timeouts, VM size) and never enters a key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use kiln_syntax::model::{
    Agent, Compression, DiskBus, Firmware, ImageFormat, InstallMethod, MachineType, NicModel,
};
use kiln_syntax::redact::CredentialUrl;
use kiln_syntax::secret::SecretRef;
use kiln_syntax::span::Span;
use serde::Serialize;

use crate::installer::InstallerProfile;
use crate::key::StepKey;

/// A step's id: `<image name>/<kind>` of the first cell that needed it (unique in a plan).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct StepId(pub String);

impl StepId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a step does; one runner per kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    /// Fetch and verify an installer ISO (or the guest agent's installer) into `_base`.
    FetchSource,
    /// Fetch and verify a driver ISO.
    FetchDrivers,
    /// Create the blank root disk.
    CreateDisk,
    /// Render the install answer file and write it onto answer media.
    AnswerMedia,
    /// Boot the installer with the answer media until the guest powers off.
    Install,
    /// Render the cloud-init NoCloud seed / cloudbase-init configuration onto media.
    CustomizeSeed,
    /// Boot the installed system with the seed until it powers off.
    Customize,
    /// Boot the finished image as a cloud would and require proof on the console.
    BootTest,
    /// Convert (and compress) the disk into the output image.
    Convert,
    /// Upload the image to Glance.
    Publish,
}

impl StepKind {
    /// Every kind, in pipeline order.
    pub const ALL: [StepKind; 10] = [
        StepKind::FetchSource,
        StepKind::FetchDrivers,
        StepKind::CreateDisk,
        StepKind::AnswerMedia,
        StepKind::Install,
        StepKind::CustomizeSeed,
        StepKind::Customize,
        StepKind::BootTest,
        StepKind::Convert,
        StepKind::Publish,
    ];

    /// Kebab-case name, as in ids, keys and JSON.
    pub fn name(self) -> &'static str {
        match self {
            StepKind::FetchSource => "fetch-source",
            StepKind::FetchDrivers => "fetch-drivers",
            StepKind::CreateDisk => "create-disk",
            StepKind::AnswerMedia => "answer-media",
            StepKind::Install => "install",
            StepKind::CustomizeSeed => "customize-seed",
            StepKind::Customize => "customize",
            StepKind::BootTest => "boot-test",
            StepKind::Convert => "convert",
            StepKind::Publish => "publish",
        }
    }

    /// Version of this kind's runner. Bump one when its runner changes what it produces: only keys
    /// of that kind (and their downstream) change.
    pub fn runner_version(self) -> u32 {
        1
    }

    /// The artifacts a step of this kind produces.
    pub fn outputs(self) -> &'static [&'static str] {
        match self {
            StepKind::FetchSource => &["source"],
            StepKind::FetchDrivers => &["drivers"],
            StepKind::CreateDisk => &["disk"],
            StepKind::AnswerMedia => &["answer-media"],
            StepKind::Install => &["disk"],
            StepKind::CustomizeSeed => &["seed"],
            StepKind::Customize => &["disk"],
            StepKind::BootTest => &["console-log"],
            StepKind::Convert => &["image"],
            StepKind::Publish => &["glance-image"],
        }
    }
}

impl fmt::Display for StepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One consumed artifact: `role` is how the consumer uses it (e.g. `source`, `disk`, `base`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StepInput {
    /// The consumer's name for the input.
    pub role: &'static str,
    /// The producing step.
    pub step: StepId,
    /// Which of its outputs.
    pub artifact: &'static str,
}

/// A matrix cell that needs a step (a deduplicated step has several).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Owner {
    /// The pipeline's name as written (e.g. `ws2022-{language}`).
    pub pipeline: String,
    /// The image name of the cell (the pipeline name rendered for it).
    pub image: String,
    /// `axis=value,...`; empty without a matrix.
    pub cell: String,
    /// Index of the pipeline in the planner's input.
    #[serde(skip)]
    pub pipeline_index: usize,
}

/// What a host must offer to run a step.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HostRequirements {
    /// A VM of this shape (install, customize, boot-test).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm: Option<VmRequirements>,
    /// `qemu-img` on the host.
    pub qemu_img: bool,
    /// Network access to an external URL or image service.
    pub network: bool,
}

/// The build VM a step boots.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VmRequirements {
    /// vCPUs.
    pub cpus: u32,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// BIOS or UEFI.
    pub firmware: Firmware,
    /// UEFI Secure Boot.
    pub secure_boot: bool,
    /// A TPM 2.0 (swtpm).
    pub tpm: bool,
}

/// Machine settings that shape what the guest installs (firmware, buses, devices). The VM's size
/// (cpus, memory) is in [`VmRequirements`] and not in the key: it changes speed, not the result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MachineParams {
    /// BIOS or UEFI.
    pub firmware: Firmware,
    /// UEFI Secure Boot.
    pub secure_boot: bool,
    /// `pc` or `q35`.
    pub machine_type: MachineType,
    /// TPM present.
    pub tpm: bool,
    /// Root disk bus.
    pub disk_bus: DiskBus,
    /// NIC model.
    pub nic: NicModel,
}

/// Where a fetched file comes from, as far as its content is concerned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum OriginParams {
    /// A file next to the pipeline: the path as written (relative to the pipeline file, so the
    /// checkout's location does not matter) and its content: the declared checksum when there is
    /// one (the fetch verifies it), else `sha256:<hex>` of the file.
    Local {
        /// As written.
        path: String,
        /// `algorithm:hex`.
        content: String,
    },
    /// A download; its checksum (required) is in the step's params.
    Url {
        /// The rendered URL with its userinfo redacted (`https://***@host/…`): credentials are
        /// never keyed nor shown; the full URL is in [`ExecInputs::url`].
        url: String,
    },
    /// An existing Glance image.
    Glance {
        /// Id or name.
        image: String,
        /// `id` or `name`.
        by: &'static str,
    },
}

/// Params of a `fetch-source` step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FetchParams {
    /// Where from.
    pub origin: OriginParams,
    /// The declared checksum `algorithm:hex`, verified while fetching.
    pub checksum: Option<String>,
}

/// Params of a `fetch-drivers` step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FetchDriversParams {
    /// Where from.
    pub origin: OriginParams,
    /// The declared checksum.
    pub checksum: Option<String>,
    /// `virtio-win` or `other`.
    pub driver_kind: &'static str,
}

/// Params of a `create-disk` step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CreateDiskParams {
    /// Virtual size in bytes.
    pub size_bytes: u64,
    /// `qcow2` or `raw`.
    pub format: ImageFormat,
}

/// An answer file's content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum AnswerParams {
    /// A file next to the pipeline, copied as is.
    File {
        /// As written.
        path: String,
        /// `sha256:<hex>` of its content.
        content: String,
    },
    /// Written inline, rendered for the cell.
    Inline {
        /// The rendered text.
        text: String,
    },
}

/// Settings of a generated `autounattend.xml`, rendered for the cell.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WindowsParams {
    /// e.g. `server-2022`.
    pub version: &'static str,
    /// `amd64` or `arm64`.
    pub arch: &'static str,
    /// `name:<image name>` or `index:<n>`.
    pub image: String,
    /// Locale, e.g. `de-DE`.
    pub language: String,
    /// Time zone.
    pub timezone: String,
    /// Computer name pattern.
    pub computer_name: String,
    /// Identity of the product key secret (`env:NAME` / `file:path`), never its value.
    pub product_key: Option<String>,
    /// Identity of the Administrator password secret.
    pub admin_password: String,
    /// Whether a virtio-win ISO is attached (the answer file then lists its driver folders).
    pub virtio_drivers: bool,
    /// `bios` (MBR layout) or `uefi` (GPT layout).
    pub firmware: &'static str,
    /// UEFI Secure Boot.
    pub secure_boot: bool,
    /// A TPM 2.0 is attached.
    pub tpm: bool,
    /// cloudbase-init, installed at first logon from the MSI the pipeline's
    /// `customize cloudbase-init { installer ... }` names, configured from that block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloudbase_init: Option<CloudbaseParams>,
}

/// The `customize cloudbase-init` block of a Windows install, run at its first logon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CloudbaseParams {
    /// Plugins (class paths), in order; empty means cloudbase-init's defaults.
    pub plugins: Vec<String>,
    /// PowerShell commands (`run`), in order, rendered.
    pub commands: Vec<String>,
}

/// Params of an `answer-media` step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AnswerMediaParams {
    /// The install method.
    pub method: InstallMethod,
    /// Its installer profile, which decides where the answer goes and what kiln adds to it.
    pub profile: InstallerProfile,
    /// The answer file given by the user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<AnswerParams>,
    /// Settings for kiln's autounattend generator (when no answer file is given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub windows: Option<WindowsParams>,
    /// `env:NAME` / `file:path` of the root password hashed into a preseed or kickstart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_password: Option<String>,
}

/// Params of an `install` step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InstallParams {
    /// The install method.
    pub method: InstallMethod,
    /// How kiln boots and answers the installer.
    pub profile: InstallerProfile,
    /// The pipeline's `kernel-args`, rendered and split on whitespace.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kernel_args: Vec<String>,
    /// Firmware, buses and devices.
    pub machine: MachineParams,
    /// The working disk format.
    pub disk_format: ImageFormat,
    /// Generated Windows answer media: the settings, so the install renders the secret-bearing
    /// media itself right before it boots (they are never cached).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub windows: Option<WindowsParams>,
}

/// A file's content in a customize step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum FileContentParams {
    /// Inline text, rendered.
    Inline {
        /// The text.
        text: String,
    },
    /// A file next to the pipeline.
    Source {
        /// As written.
        path: String,
        /// `sha256:<hex>`.
        content: String,
    },
}

/// One customize action, rendered for the cell.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum SeedAction {
    /// Install packages (sorted: the package manager installs them as a set).
    Packages {
        /// Package names.
        names: Vec<String>,
    },
    /// Write a file.
    File {
        /// Path in the guest.
        path: String,
        /// Content.
        content: FileContentParams,
        /// Octal mode, e.g. `0644`.
        mode: Option<String>,
        /// `user:group`.
        owner: Option<String>,
    },
    /// Run a command.
    Run {
        /// The command.
        command: String,
    },
    /// Create a user.
    User {
        /// Login.
        name: String,
        /// Groups (sorted).
        groups: Vec<String>,
        /// SSH keys (sorted).
        ssh_keys: Vec<String>,
        /// Identity of the password secret, never its value.
        password: Option<String>,
        /// Admin rights.
        admin: bool,
        /// Login shell.
        shell: Option<String>,
    },
    /// Enable a cloudbase-init plugin.
    Plugin {
        /// Plugin name.
        name: String,
    },
}

/// Params of a `customize-seed` step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CustomizeSeedParams {
    /// The guest agent.
    pub agent: Agent,
    /// The actions, in order (order matters: commands run in it).
    pub actions: Vec<SeedAction>,
    /// Generalize at the end.
    pub generalize: bool,
}

/// Params of a `customize` step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CustomizeParams {
    /// The guest agent.
    pub agent: Agent,
    /// Firmware, buses and devices.
    pub machine: MachineParams,
    /// The working disk format.
    pub disk_format: ImageFormat,
    /// Derived images: grow the parent's disk to this size first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grow_to_bytes: Option<u64>,
}

/// Params of a `boot-test` step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BootTestParams {
    /// Console lines that must appear (rendered); empty means the agent's success message.
    pub expect: Vec<String>,
    /// The agent whose success message counts when `expect` is empty.
    pub agent: Option<Agent>,
    /// Firmware, buses and devices.
    pub machine: MachineParams,
}

/// Params of a `convert` step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConvertParams {
    /// `qcow2` or `raw`.
    pub format: ImageFormat,
    /// qcow2 compression.
    pub compression: Compression,
    /// Derived images without `customize`: grow the parent's disk to this size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grow_to_bytes: Option<u64>,
}

/// Params of a `publish` step. The target is named, never authenticated: no credential enters it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PublishParams {
    /// `glance`.
    pub target: &'static str,
    /// The `clouds.yaml` cloud; `None` means the environment's.
    pub cloud: Option<String>,
    /// Image name, rendered.
    pub name: String,
    /// Glance `disk_format`.
    pub disk_format: &'static str,
    /// Glance `container_format`.
    pub container_format: &'static str,
    /// Glance visibility.
    pub visibility: &'static str,
    /// `min_disk` in GiB.
    pub min_disk_gib: Option<u64>,
    /// `min_ram` in MiB.
    pub min_ram_mib: Option<u64>,
    /// `protected`.
    pub protected: bool,
    /// Properties (rendered; a map, so written order does not matter).
    pub properties: BTreeMap<String, String>,
    /// Tags (rendered, sorted, unique).
    pub tags: Vec<String>,
}

/// Kind-specific parameters: exactly what enters the key besides inputs and tool versions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum StepParams {
    /// `fetch-source`.
    FetchSource(FetchParams),
    /// `fetch-drivers`.
    FetchDrivers(FetchDriversParams),
    /// `create-disk`.
    CreateDisk(CreateDiskParams),
    /// `answer-media`.
    AnswerMedia(AnswerMediaParams),
    /// `install`.
    Install(InstallParams),
    /// `customize-seed`.
    CustomizeSeed(CustomizeSeedParams),
    /// `customize`.
    Customize(CustomizeParams),
    /// `boot-test`.
    BootTest(BootTestParams),
    /// `convert`.
    Convert(ConvertParams),
    /// `publish`.
    Publish(PublishParams),
}

impl StepParams {
    /// The kind these params belong to.
    pub fn kind(&self) -> StepKind {
        match self {
            StepParams::FetchSource(_) => StepKind::FetchSource,
            StepParams::FetchDrivers(_) => StepKind::FetchDrivers,
            StepParams::CreateDisk(_) => StepKind::CreateDisk,
            StepParams::AnswerMedia(_) => StepKind::AnswerMedia,
            StepParams::Install(_) => StepKind::Install,
            StepParams::CustomizeSeed(_) => StepKind::CustomizeSeed,
            StepParams::Customize(_) => StepKind::Customize,
            StepParams::BootTest(_) => StepKind::BootTest,
            StepParams::Convert(_) => StepKind::Convert,
            StepParams::Publish(_) => StepKind::Publish,
        }
    }
}

/// A local file the runner reads: the path as written (keyed) and resolved (not keyed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LocalFile {
    /// What it is (`source`, `answer-file`, `file:/etc/motd`, ...).
    pub role: String,
    /// As written in the pipeline file.
    pub written: String,
    /// Joined to the pipeline file's directory, as the file was given.
    pub resolved: PathBuf,
}

/// A secret the runner resolves when it writes media (only its identity is in the key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SecretUse {
    /// What it is (`admin-password`, `product-key`, `user:<name>:password`).
    pub role: String,
    /// `env:NAME` or `file:path`.
    pub identity: String,
    /// The reference to resolve.
    #[serde(skip)]
    pub reference: SecretRef,
    /// HMAC-SHA256 of the value under the cache's secret key, when it could be read while
    /// planning: it enters the step's key (a rotated secret rebuilds), never the plan output.
    #[serde(skip)]
    pub mac: Option<[u8; 32]>,
}

/// Execution-only facts: never part of the key.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ExecInputs {
    /// Local files to read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub local_files: Vec<LocalFile>,
    /// Secrets to resolve.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretUse>,
    /// The full download URL, credentials included (a fetch of an `http(s)` source); prints
    /// redacted and is never serialized.
    #[serde(skip)]
    pub url: Option<CredentialUrl>,
    /// The guest must power off (or prove success) within this time.
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_secs")]
    pub timeout: Option<Duration>,
    /// Install method, for runners that boot installers.
    #[serde(skip)]
    pub install_method: Option<InstallMethod>,
    /// Guest agent.
    #[serde(skip)]
    pub agent: Option<Agent>,
}

mod opt_secs {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_u64(d.as_secs()),
            None => s.serialize_none(),
        }
    }
}

/// One node of the plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// Unique id.
    pub id: StepId,
    /// Content key.
    pub key: StepKey,
    /// What it does and with which (keyed) parameters.
    pub params: StepParams,
    /// Consumed artifacts, in role order.
    pub inputs: Vec<StepInput>,
    /// The cells that need it, first one first.
    pub owners: Vec<Owner>,
    /// The node in the pipeline file that asked for it (first owner's).
    pub span: Span,
    /// What a host must offer.
    pub host: HostRequirements,
    /// Execution-only facts.
    pub exec: ExecInputs,
    /// The canonical description hashed into [`Step::key`] (for `--explain`-style debugging).
    pub description: String,
}

impl Step {
    /// The step's kind.
    pub fn kind(&self) -> StepKind {
        self.params.kind()
    }

    /// Artifacts it produces.
    pub fn outputs(&self) -> &'static [&'static str] {
        self.kind().outputs()
    }
}
