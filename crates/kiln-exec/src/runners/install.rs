//! `install`: boots the installer with the seeds' layout — root disk `vda` (virtio), installer ISO
//! `hda`, drivers ISO `hdb` when declared, the answer medium after them — until the guest powers
//! off with its success line on the serial console, within the install timeout.
//!
//! Generated Windows answer media are written by this step itself, with their secrets, and deleted
//! when the install ends (see [`super::windows_media`]); the machine then has kiln-unattend's shape.
//!
//! Evidence (see `fixtures/debian/README.md`, "The installer protocol"): a line
//! `KILN-INSTALL-OK` (or the tiny fixture's `KILN-TINY: INSTALL OK ...`); a line
//! `KILN-INSTALL-FAILED: <reason>` fails the step at once. Installers of other distributions
//! print the line from their post-install hook (`%post`, `late_command`, `late-commands`).

use std::time::Duration;

use kiln_cache::Staging;
use kiln_plan::StepParams;

use super::create_disk::disk_format;
use super::{RunError, StepCx, fail};
use crate::console::Pattern;
use crate::domain_xml::{BootFrom, Disk, DomainSpec, Machine, Media, MediaKind, OnReboot};
use crate::guest::{Completion, GuestSpec, Persistence, domain_name, run_guest};

/// Success line of kiln's installer protocol.
pub const INSTALL_OK: &str = r"^(KILN-INSTALL-OK|KILN-TINY: INSTALL OK\b.*)$";
/// Failure line of kiln's installer protocol.
pub const INSTALL_FAILED: &str = r"^(KILN-INSTALL-FAILED: .*|KILN-TINY: INSTALL FAILED.*)$";

/// Success of a generated Windows install: the last first-logon step (sysprep, which then shuts
/// the machine down) reported on `COM1`, or the fixture installer's line (kiln's Windows-shaped
/// test installer, which reads the same media).
pub const WINDOWS_OK: &str = r"^(KILN-INSTALL-OK|kiln: step \d+/\d+ ok: sysprep)$";
/// Failure of a generated Windows install: a first-logon step failed (it powers off at once).
pub const WINDOWS_FAILED: &str = r"^(KILN-INSTALL-FAILED: .*|kiln: step \d+/\d+ failed: .*)$";

/// Used when the plan gives none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);

pub(super) fn run(cx: &StepCx<'_>, staging: &mut Staging) -> Result<(), RunError> {
    let step = cx.step;
    let StepParams::Install(p) = &step.params else {
        return fail(format!("step `{}` is not install", step.id));
    };
    let host = cx.guest_host()?;
    let mut shape = cx.machine()?;
    let scratch = cx.scratch()?;
    // Generated Windows media: written now with the secrets, deleted when `secret_media` drops
    // (after the guest is gone, whatever the outcome). The machine is the shape kiln-unattend
    // gives the image (UEFI → q35 with SATA CDs, OVMF, Secure Boot vars, swtpm TPM 2.0).
    let secret_media = match &p.windows {
        Some(w) => {
            let image = super::windows_media::image(step, w)?;
            let want = kiln_unattend::machine_shape(&image);
            shape.machine = match want.machine {
                kiln_unattend::MachineType::Q35 => Machine::Q35,
                kiln_unattend::MachineType::Pc => Machine::Pc,
            };
            shape.uefi = want.uefi.then_some(want.secure_boot);
            shape.tpm = want.tpm;
            Some(super::windows_media::prepare(cx, w, &scratch)?)
        }
        None => None,
    };
    let blank = cx.input("disk")?;
    let format = disk_format(p.disk_format);
    let disk = staging.path(&format!("disk.{}", format.as_str()));
    super::copy_sparse(blank, &disk)?;
    super::make_reachable(staging.dir()).or_else(|e| fail(format!("step `{}`: {e}", step.id)))?;
    let mut extra_media = Vec::new();
    if let Some(media) = &secret_media {
        extra_media.push(Media {
            path: media.iso().to_owned(),
            kind: MediaKind::Cdrom,
        });
    } else if let Some(answer) = cx.inputs.get("answer-media") {
        extra_media.push(Media {
            path: answer.clone(),
            kind: MediaKind::Cdrom,
        });
    }
    let stem = cx.file_stem();
    let spec = GuestSpec {
        step: step.id.to_string(),
        domain: DomainSpec {
            name: domain_name(&cx.env.run_id, step.id.as_str()),
            domain_type: host.domain_type,
            machine: shape.machine,
            firmware: shape.firmware(&scratch),
            tpm: shape.tpm,
            vcpus: shape.vcpus,
            memory_mib: shape.memory_mib,
            root_disk: Some(Disk { path: disk, format }),
            installer_iso: Some(cx.input("source")?.to_owned()),
            drivers_iso: cx.inputs.get("drivers").cloned(),
            extra_media,
            serial_log: cx.env.run_dir.join(format!("{stem}.console.log")),
            boot: BootFrom::Cdrom,
            // Windows Setup reboots on purpose; everything else must not.
            on_reboot: if p.method == "autounattend" {
                OnReboot::Restart
            } else {
                OnReboot::Destroy
            },
            user_network: false,
        },
        success: Pattern::regex(if p.windows.is_some() {
            WINDOWS_OK
        } else {
            INSTALL_OK
        })
        .expect("valid regex"),
        failure: Some(
            Pattern::regex(if p.windows.is_some() {
                WINDOWS_FAILED
            } else {
                INSTALL_FAILED
            })
            .expect("valid regex"),
        ),
        completion: Completion::PowerOff,
        timeout: step.exec.timeout.unwrap_or(DEFAULT_TIMEOUT),
        inactivity: None,
        persistence: Persistence::Persistent,
        poll_interval: cx.env.poll_interval,
    };
    cx.log.line(format_args!(
        "install: domain `{}` ({:?}), {} vCPUs, {} MiB, timeout {:?}, console `{}`",
        spec.domain.name,
        host.domain_type,
        spec.domain.vcpus,
        spec.domain.memory_mib,
        spec.timeout,
        spec.domain.serial_log.display()
    ));
    let outcome = run_guest(host.hv.as_ref(), &spec, &cx.env.cancel);
    drop(secret_media);
    let outcome = outcome?;
    cx.log.line(format_args!(
        "install: success line `{}` after {:?}",
        outcome.success_line, outcome.timings.run
    ));
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}
