//! Step runners: one file per step kind, each doing the step for real and writing its outputs into
//! the artifact store's staging folder (committed atomically under the step key by the caller).
//!
//! Output files are named `<artifact>.<ext>` (`disk.qcow2`, `source.iso`, `image.qcow2`, ...);
//! consumers find an input by its artifact name ([`output_file`]).

mod answer_media;
mod boot_test;
mod convert;
mod create_disk;
mod customize;
mod disk_check;
mod fetch;
mod guest_step;
mod install;
mod linux_answer;
mod media;
pub mod publish;
mod seed;
mod windows_media;

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiln_cache::{BaseCache, Staging};
use kiln_plan::{Step, StepKind, StepParams};

use crate::domain_xml::{DiskBus, DiskFormat, DomainType, Firmware, Machine, NicModel};
use crate::guest::{Cancel, GuestError};
use crate::hypervisor::Hypervisor;
use crate::qemu_img::QemuImg;
use kiln_syntax::model::{Firmware as PlanFirmware, MachineType};

pub use media::{Mkisofs, build_iso};
pub use seed::user_data;
pub use windows_media::remove_leftovers as remove_secret_leftovers;

/// Why a runner stopped.
#[derive(Debug)]
pub enum RunError {
    /// The step failed; the message names the step and says why.
    Failed(String),
    /// The run was cancelled while the step ran.
    Cancelled,
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Failed(m) => f.write_str(m),
            RunError::Cancelled => f.write_str("cancelled"),
        }
    }
}

impl std::error::Error for RunError {}

impl From<GuestError> for RunError {
    fn from(e: GuestError) -> Self {
        match e {
            GuestError::Cancelled { .. } => RunError::Cancelled,
            e => RunError::Failed(e.to_string()),
        }
    }
}

/// `Err(RunError::Failed(..))` from anything displayable.
pub(crate) fn fail<T>(msg: impl fmt::Display) -> Result<T, RunError> {
    Err(RunError::Failed(msg.to_string()))
}

/// A connected host a guest step runs on.
pub struct GuestHost {
    /// The connection.
    pub hv: Arc<dyn Hypervisor>,
    /// The accelerator chosen for it.
    pub domain_type: DomainType,
}

/// Shared by every step of a run.
pub struct Env {
    /// The `_base` cache (fetches).
    pub base: BaseCache,
    /// `qemu-img`.
    pub qemu_img: QemuImg,
    /// ISO builder for media.
    pub mkisofs: Mkisofs,
    /// The run's id (in domain names).
    pub run_id: String,
    /// The run folder: step logs, consoles, scratch files.
    pub run_dir: PathBuf,
    /// Stops guests.
    pub cancel: Cancel,
    /// How often guests are looked at.
    pub poll_interval: Duration,
    /// Where build events go (transfer progress).
    pub sink: Arc<dyn crate::build::Sink>,
    /// Clouds for publish steps and Glance sources; `None` with `--no-publish`.
    pub clouds: Option<Arc<publish::Clouds>>,
}

impl Env {
    /// kiln's own folders, from which QEMU's user is given search down to a guest's files: the
    /// cache root and the folder of run folders.
    pub(crate) fn private_roots(&self) -> [PathBuf; 2] {
        let runs = self.run_dir.parent().unwrap_or(&self.run_dir).to_owned();
        [self.base.root().path().to_owned(), runs]
    }
}

/// One step's context.
pub struct StepCx<'a> {
    /// The step.
    pub step: &'a Step,
    /// Input files by role (`disk`, `source`, `seed`, ...).
    pub inputs: BTreeMap<&'static str, PathBuf>,
    /// The format of each input that is a disk image, by role: what the producing step made
    /// it (see [`disk_output_format`]), never what its bytes look like.
    pub disk_formats: BTreeMap<&'static str, DiskFormat>,
    /// The shared environment.
    pub env: &'a Env,
    /// The host for guest steps.
    pub host: Option<&'a GuestHost>,
    /// The step's log.
    pub log: &'a StepLog,
}

impl StepCx<'_> {
    /// The input with role `role`, or a failure naming it.
    pub(crate) fn input(&self, role: &str) -> Result<&Path, RunError> {
        match self.inputs.get(role) {
            Some(p) => Ok(p),
            None => fail(format!(
                "step `{}`: input `{role}` is missing",
                self.step.id
            )),
        }
    }

    /// The disk image input with role `role` and the format kiln made it in, or a failure.
    pub(crate) fn disk(&self, role: &str) -> Result<(&Path, DiskFormat), RunError> {
        let path = self.input(role)?;
        let Some(&format) = self.disk_formats.get(role) else {
            return fail(format!(
                "step `{}`: input `{role}` is not a disk image kiln made",
                self.step.id
            ));
        };
        // The producer names its output `<artifact>.<format>`; anything else is a kiln bug, and
        // a disk is never used in a format that was not meant.
        if path.extension().and_then(|e| e.to_str()) != Some(format.as_str()) {
            return fail(format!(
                "step `{}`: input `{role}` (`{}`) is not the {format} disk its step makes",
                self.step.id,
                path.display()
            ));
        }
        Ok((path, format))
    }

    /// The step's id with characters unfit for file names replaced.
    pub(crate) fn file_stem(&self) -> String {
        file_stem(self.step.id.as_str())
    }

    /// A scratch folder (`0700`) for this step in the run folder.
    pub(crate) fn scratch(&self) -> Result<PathBuf, RunError> {
        let dir = self.env.run_dir.join(format!("{}.work", self.file_stem()));
        private_dir(&dir).or_else(|e| fail(format!("creating `{}`: {e}", dir.display())))?;
        Ok(dir)
    }

    /// Progress of this step's transfer (fetch, convert, publish): bytes, total and rate reach
    /// the terminal, plain and JSON views at a modest rate.
    #[must_use]
    pub fn progress(&self) -> crate::build::Progress {
        crate::build::Progress::new(self.step.id.to_string(), Arc::clone(&self.env.sink))
    }

    /// The host of a guest step.
    pub(crate) fn guest_host(&self) -> Result<&GuestHost, RunError> {
        match self.host {
            Some(h) => Ok(h),
            None => fail(format!("step `{}`: no host was assigned", self.step.id)),
        }
    }

    /// Machine shape from the step's params and host requirements.
    pub(crate) fn machine(&self) -> Result<VmShape, RunError> {
        let machine = match &self.step.params {
            StepParams::Install(p) => &p.machine,
            StepParams::Customize(p) => &p.machine,
            StepParams::BootTest(p) => &p.machine,
            _ => return fail(format!("step `{}` boots no guest", self.step.id)),
        };
        let vm = self.step.host.vm.as_ref();
        Ok(VmShape {
            machine: match machine.machine_type {
                MachineType::Q35 => Machine::Q35,
                MachineType::Pc => Machine::Pc,
            },
            uefi: match machine.firmware {
                PlanFirmware::Uefi => Some(machine.secure_boot),
                PlanFirmware::Bios => None,
            },
            tpm: machine.tpm,
            disk_bus: machine.disk_bus,
            nic: machine.nic,
            vcpus: vm.map_or(1, |v| v.cpus),
            memory_mib: vm.map_or(1024, |v| v.memory_bytes / (1024 * 1024)),
        })
    }
}

/// The guest's shape.
pub(crate) struct VmShape {
    pub machine: Machine,
    /// `Some(secure_boot)` for UEFI.
    pub uefi: Option<bool>,
    pub tpm: bool,
    /// The root disk's bus.
    pub disk_bus: DiskBus,
    /// The model of the NIC, when a step gives the guest a network.
    pub nic: NicModel,
    pub vcpus: u32,
    pub memory_mib: u64,
}

impl VmShape {
    /// The firmware, with a UEFI variable store in `scratch`.
    pub(crate) fn firmware(&self, scratch: &Path) -> Firmware {
        match self.uefi {
            Some(secure_boot) => Firmware::Uefi {
                nvram: scratch.join("nvram.fd"),
                secure_boot,
            },
            None => Firmware::Bios,
        }
    }
}

/// A step's log file in the run folder: what the runner did, line by line.
pub struct StepLog {
    path: PathBuf,
    file: Mutex<Option<File>>,
}

impl StepLog {
    /// Opens (creates) the log at `path`.
    #[must_use]
    pub fn create(path: PathBuf) -> Self {
        let file = {
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(kiln_cache::private::FILE_MODE)
                .open(&path)
                .ok()
        };
        let _ = kiln_cache::private::private_file(&path);
        Self {
            path,
            file: Mutex::new(file),
        }
    }

    /// Where it is.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends a line (logging never fails a step).
    pub fn line(&self, text: impl fmt::Display) {
        let mut guard = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(f) = guard.as_mut() {
            // A URL's credentials never reach the log, whoever wrote the line (a library's error).
            let text = text.to_string();
            let _ = writeln!(f, "{}", kiln_syntax::redact_userinfo(&text));
        }
    }
}

/// `a/b c` → `a_b_c`: a step id as a file name.
#[must_use]
pub fn file_stem(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The values of the step's secrets, resolved from their references (`env:`/`file:`), by role.
pub(crate) fn resolve_secrets(
    step: &Step,
) -> Result<Vec<(&str, kiln_syntax::SecretValue)>, RunError> {
    step.exec
        .secrets
        .iter()
        .map(|use_| {
            let value = use_.reference.resolve().or_else(|e| {
                fail(format!(
                    "step `{}`: secret `{}` ({}): {e}",
                    step.id, use_.role, use_.identity
                ))
            })?;
            Ok((use_.role.as_str(), value))
        })
        .collect()
}

/// `role from identity, …` of the step's secrets, for its log (never a value).
pub(crate) fn secret_sources(step: &Step) -> String {
    step.exec
        .secrets
        .iter()
        .map(|s| format!("{} from {}", s.role, s.identity))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An error and its whole `source()` chain, `: `-separated, so the OS's reason reaches the user.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    msg
}

/// Creates `dir` with mode `0700`; a guest step gives libvirt's QEMU user search on it by ACL
/// before its guest starts (see `crate::qemu_access`).
pub(crate) fn private_dir(dir: &Path) -> std::io::Result<()> {
    kiln_cache::private::private_dir(dir)
}

/// The file in an artifact folder holding output `artifact`: named `artifact` or `artifact.<ext>`.
#[must_use]
pub fn output_file<'a>(
    outputs: impl IntoIterator<Item = &'a String>,
    artifact: &str,
) -> Option<&'a String> {
    outputs.into_iter().find(|name| {
        name.as_str() == artifact
            || name
                .strip_prefix(artifact)
                .is_some_and(|rest| rest.starts_with('.') && !rest[1..].contains('/'))
    })
}

/// Runs one step into `staging`.
///
/// # Errors
/// The step failed or was cancelled.
pub fn run_step(cx: &StepCx<'_>, staging: &mut Staging) -> Result<(), RunError> {
    if cx.env.cancel.is_cancelled() {
        return Err(RunError::Cancelled);
    }
    match cx.step.kind() {
        StepKind::FetchSource | StepKind::FetchDrivers => fetch::run(cx, staging),
        StepKind::CreateDisk => create_disk::run(cx, staging),
        StepKind::AnswerMedia => answer_media::run(cx, staging),
        StepKind::Install => install::run(cx, staging),
        StepKind::CustomizeSeed => seed::run(cx, staging),
        StepKind::Customize => customize::run(cx, staging),
        StepKind::BootTest => boot_test::run(cx, staging),
        StepKind::Convert => convert::run(cx, staging),
        // Publishing has no artifact: the build runs it with `publish::run`, outside the store.
        StepKind::Publish => fail(format!(
            "step `{}`: a publish step has no cached output to build",
            cx.step.id
        )),
    }
}

/// The format of the disk image a step writes as its output, from the step's parameters (kiln
/// chose it when it made the image); `None` for steps whose output is no disk.
#[must_use]
pub fn disk_output_format(params: &StepParams) -> Option<DiskFormat> {
    match params {
        StepParams::CreateDisk(p) => Some(create_disk::disk_format(p.format)),
        StepParams::Install(p) => Some(create_disk::disk_format(p.disk_format)),
        // The customize step's artifact is its qcow2 overlay.
        StepParams::Customize(_) => Some(DiskFormat::Qcow2),
        StepParams::Convert(p) => Some(create_disk::disk_format(p.format)),
        StepParams::FetchSource(_)
        | StepParams::FetchDrivers(_)
        | StepParams::AnswerMedia(_)
        | StepParams::CustomizeSeed(_)
        | StepParams::BootTest(_)
        | StepParams::Publish(_) => None,
    }
}

/// Copies a disk image file keeping holes (a blank qcow2 or a sparse raw disk stays small).
pub(crate) fn copy_sparse(from: &Path, to: &Path) -> Result<(), RunError> {
    let out = std::process::Command::new("cp")
        .args(["--sparse=always", "--reflink=auto"])
        .arg(from)
        .arg(to)
        .output()
        .or_else(|e| fail(format!("running `cp`: {e}")))?;
    if !out.status.success() {
        return fail(format!(
            "copying `{}` to `{}`: {}",
            from.display(),
            to.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// A value that differs between runs and processes (nonces, instance ids).
pub(crate) fn nonce() -> String {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}
