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
use super::guest_step::GuestStep;
use super::{RunError, StepCx, fail};
use crate::domain_xml::{BootFrom, Disk, Machine, Media, MediaKind, OnReboot};

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
    let mut guest = GuestStep::prepare(cx)?;
    // Generated Windows media: written now with the secrets, deleted when `secret_media` drops
    // (after the guest is gone, whatever the outcome). The machine is the shape kiln-unattend
    // gives the image (UEFI → q35 with SATA CDs, OVMF, Secure Boot vars, swtpm TPM 2.0).
    let secret_media = match &p.windows {
        Some(w) => {
            let image = super::windows_media::image(step, w)?;
            windows_shape(&mut guest.shape, &image);
            Some(super::windows_media::prepare(cx, w, &guest.scratch)?)
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
    let mut domain = guest.domain(Disk { path: disk, format }, BootFrom::Cdrom, extra_media);
    domain.installer_iso = Some(cx.input("source")?.to_owned());
    domain.drivers_iso = cx.inputs.get("drivers").cloned();
    // Windows Setup reboots on purpose; everything else must not.
    if p.method == "autounattend" {
        domain.on_reboot = OnReboot::Restart;
    }
    let (success, failure) = if p.windows.is_some() {
        (WINDOWS_OK, WINDOWS_FAILED)
    } else {
        (INSTALL_OK, INSTALL_FAILED)
    };
    let spec = guest.until_power_off(domain, success, failure, DEFAULT_TIMEOUT);
    let outcome = guest.run(&spec);
    drop(secret_media);
    outcome?;
    Ok(())
}

/// The machine kiln-unattend gives a Windows image (machine type, firmware, Secure Boot, TPM), over
/// what the pipeline's `machine` node says; size (vCPUs, memory) stays the pipeline's.
fn windows_shape(shape: &mut super::VmShape, image: &kiln_unattend::WindowsImage) {
    let want = kiln_unattend::machine_shape(image);
    shape.machine = match want.machine {
        kiln_unattend::MachineType::Q35 => Machine::Q35,
        kiln_unattend::MachineType::Pc => Machine::Pc,
    };
    shape.uefi = want.uefi.then_some(want.secure_boot);
    shape.tpm = want.tpm;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain_xml::Firmware;

    fn image(version: &'static str, firmware: &'static str) -> kiln_unattend::WindowsImage {
        let p = kiln_plan::step::WindowsParams {
            version,
            arch: "amd64",
            image: "index:1".into(),
            language: "de-DE".into(),
            timezone: "UTC".into(),
            computer_name: "*".into(),
            product_key: None,
            admin_password: "env:PW".into(),
            virtio_drivers: true,
            firmware,
            secure_boot: firmware == "uefi",
            tpm: firmware == "uefi",
            cloudbase_init: None,
        };
        kiln_plan::windows::image_from_params(&p).expect("valid image")
    }

    fn pc_bios() -> super::super::VmShape {
        super::super::VmShape {
            machine: Machine::Pc,
            uefi: None,
            tpm: false,
            vcpus: 2,
            memory_mib: 4096,
        }
    }

    #[test]
    fn windows_11_installs_on_q35_with_secure_boot_ovmf_and_a_tpm() {
        let mut shape = pc_bios();
        windows_shape(&mut shape, &image("11", "uefi"));
        assert_eq!(shape.machine, Machine::Q35);
        assert_eq!(shape.uefi, Some(true));
        assert!(shape.tpm);
        assert_eq!((shape.vcpus, shape.memory_mib), (2, 4096));
        assert!(matches!(
            shape.firmware(std::path::Path::new("/s")),
            Firmware::Uefi {
                secure_boot: true,
                ..
            }
        ));
    }

    #[test]
    fn bios_server_installs_on_pc_whatever_the_pipeline_said() {
        let mut shape = pc_bios();
        shape.machine = Machine::Q35;
        windows_shape(&mut shape, &image("server-2022", "bios"));
        assert_eq!(shape.machine, Machine::Pc);
        assert_eq!(shape.uefi, None);
        assert!(!shape.tpm);
    }
}
