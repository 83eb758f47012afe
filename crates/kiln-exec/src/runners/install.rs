//! `install`: boots the installer with the seeds' layout — root disk `vda` (or the pipeline's bus),
//! installer ISO `hda`, drivers ISO `hdb` when declared, the answer medium after them — until the
//! guest powers off with its success line on the serial console, within the install timeout.
//!
//! How the installer starts is its profile's (`kiln_plan::installer`): Debian's d-i, Subiquity
//! and Anaconda are booted by their own kernel and initrd, read out of the ISO (libvirt direct
//! kernel boot, BIOS or UEFI alike), with the profile's command line and the pipeline's
//! `kernel-args`; the d-i preseed rides in the initrd. The ISO stays attached, so the installer
//! reads its packages from it. Windows Setup and self-installing ISOs boot from the CD.
//!
//! Generated Windows answer media are written by this step itself, with their secrets, and deleted
//! when the install ends (see [`super::windows_media`]); the machine then has kiln-unattend's shape.
//!
//! Evidence: the line `KILN-INSTALL-OK`, which the profile itself adds to the answer file (d-i
//! `late_command`, kickstart `%post`, autoinstall `late-commands`) — the user's answer file holds
//! no kiln line — followed by the power-off, and then a disk that holds a partition table and
//! boot code (read back with `qemu-img dd`, format stated). kiln's test installers print
//! `KILN-INSTALL-OK` themselves (or the tiny fixture's `KILN-TINY: INSTALL OK ...`); a line
//! `KILN-INSTALL-FAILED: <reason>` fails the step at once.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kiln_cache::Staging;
use kiln_plan::StepParams;
use kiln_plan::installer::{BootStyle, InstallerProfile};
use kiln_plan::step::InstallParams;
use kiln_unattend::IsoTree;

use super::create_disk::disk_format;
use super::guest_step::GuestStep;
use super::{RunError, StepCx, fail};
use crate::domain_xml::{BootFrom, Disk, KernelBoot, Machine, Media, MediaKind, OnReboot};

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

/// Kernels larger than this are not an installer's (Debian's is ~8 MiB).
const MAX_KERNEL_BYTES: u64 = 256 << 20;
/// Initrds larger than this are refused (Ubuntu's casper initrd is ~100 MiB).
const MAX_INITRD_BYTES: u64 = 2 << 30;

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
    let (blank, blank_format) = cx.disk("disk")?;
    let format = disk_format(p.disk_format);
    // The install's disk is a copy of the blank one: it keeps that format, which libvirt is told.
    if blank_format != format {
        return fail(format!(
            "step `{}`: the blank disk is {blank_format}, the install's disk is {format}",
            step.id
        ));
    }
    let disk = staging.path(&format!("disk.{}", format.as_str()));
    super::copy_sparse(blank, &disk)?;
    let source = cx.input("source")?.to_owned();
    // A preseed or kickstart with a root password: the cached answer holds a placeholder; the
    // answer with the hash is written now and removed when `secret_answer` drops.
    let secret_answer = match cx.inputs.get("answer-media") {
        Some(cached) if p.windows.is_none() && !step.exec.secrets.is_empty() => {
            Some(super::linux_answer::prepare(cx, p, cached, &guest.scratch)?)
        }
        _ => None,
    };
    let answer = secret_answer
        .as_ref()
        .map(|s| s.iso().to_owned())
        .or_else(|| cx.inputs.get("answer-media").cloned());
    let answer = answer.as_ref();
    let kernel_boot = match p.profile.boot_style() {
        BootStyle::Kernel => Some(kernel_boot(
            cx,
            p,
            &source,
            answer,
            &guest.scratch,
            secret_answer.is_some(),
        )?),
        BootStyle::Media => None,
    };
    let mut extra_media = Vec::new();
    if let Some(media) = &secret_media {
        extra_media.push(Media {
            path: media.iso().to_owned(),
            kind: MediaKind::Cdrom,
        });
    } else if let Some(answer) = answer.filter(|a| a.extension().is_some_and(|e| e == "iso")) {
        extra_media.push(Media {
            path: answer.clone(),
            kind: MediaKind::Cdrom,
        });
    }
    let mut domain = guest.domain(
        Disk {
            path: disk.clone(),
            format,
        },
        BootFrom::Cdrom,
        extra_media,
    );
    domain.installer_iso = Some(source);
    domain.drivers_iso = cx.inputs.get("drivers").cloned();
    domain.kernel_boot = kernel_boot;
    let (success, failure) = match p.profile {
        // Windows Setup reboots on purpose; everything else must not.
        InstallerProfile::WindowsSetup => {
            domain.on_reboot = OnReboot::Restart;
            (WINDOWS_OK, WINDOWS_FAILED)
        }
        InstallerProfile::DebianInstaller
        | InstallerProfile::Subiquity
        | InstallerProfile::Anaconda
        | InstallerProfile::None => (INSTALL_OK, INSTALL_FAILED),
    };
    let uefi = guest.shape.uefi.is_some();
    let mut spec = guest.until_power_off(domain, success, failure, DEFAULT_TIMEOUT);
    spec.key_presses = boot_prompt_keys(p.profile, uefi);
    if let Some(k) = spec.key_presses {
        cx.log.line(format_args!(
            "windows-setup profile on UEFI: pressing space every {:?} for the first {:?} (\"Press any key to boot from CD or DVD...\")",
            k.every, k.until
        ));
    }
    let booted_initrd = guest.scratch.join("initrd");
    let outcome = guest.run(&spec);
    drop(secret_media);
    if secret_answer.is_some() {
        // The initrd the guest booted holds the preseed, hash included.
        let _ = std::fs::remove_file(&booted_initrd);
    }
    drop(secret_answer);
    outcome?;
    if p.profile.boot_style() == BootStyle::Kernel {
        let evidence =
            super::disk_check::bootable(&cx.env.qemu_img, &disk, format).or_else(|e| {
                fail(format!(
                    "step `{}`: the installer reported success, but {e}",
                    step.id
                ))
            })?;
        cx.log.line(format_args!("installed disk: {evidence}"));
    }
    Ok(())
}

/// Windows' UEFI media wait a few seconds at "Press any key to boot from CD or DVD..." and fall
/// through to the next boot entry without a key; on a blank disk that is nothing, and the install
/// never starts. kiln presses space through the first two minutes (TCG's OVMF reaches the CD
/// in 10–60 s), long before Setup's first reboot, whose prompt must pass unanswered so the
/// installed disk boots (see docs/decisions/windows-boot-prompt.md). BIOS media prompt only when
/// the disk already boots, and the other profiles have no prompt.
fn boot_prompt_keys(profile: InstallerProfile, uefi: bool) -> Option<crate::guest::KeyPresses> {
    match profile {
        InstallerProfile::WindowsSetup if uefi => Some(crate::guest::KeyPresses {
            keycode: KEY_SPACE,
            every: Duration::from_secs(1),
            until: Duration::from_secs(120),
        }),
        InstallerProfile::WindowsSetup
        | InstallerProfile::DebianInstaller
        | InstallerProfile::Subiquity
        | InstallerProfile::Anaconda
        | InstallerProfile::None => None,
    }
}

/// Linux input keycode of the space bar (`KEY_SPACE`, linux/input-event-codes.h).
const KEY_SPACE: u32 = 57;

/// Reads the profile's kernel and initrd out of the ISO into the scratch folder, appends the
/// answer's initrd overlay (d-i) to the initrd, and returns the kernel boot.
fn kernel_boot(
    cx: &StepCx<'_>,
    p: &InstallParams,
    iso: &Path,
    answer: Option<&PathBuf>,
    scratch: &Path,
    secret: bool,
) -> Result<KernelBoot, RunError> {
    let id = &cx.step.id;
    let tree = IsoTree::open(iso).or_else(|e| {
        fail(format!(
            "step `{id}`: reading the installer ISO `{}`: {}",
            iso.display(),
            super::error_chain(&e)
        ))
    })?;
    let boot = p
        .profile
        .kernel_boot(&tree, &p.kernel_args)
        .or_else(|e| fail(format!("step `{id}`: {e}")))?
        .ok_or_else(|| {
            RunError::Failed(format!(
                "step `{id}`: the {} profile boots no kernel",
                p.profile.name()
            ))
        })?;
    let kernel = scratch.join("kernel");
    let initrd = scratch.join("initrd");
    extract(&tree, iso, &boot.kernel, MAX_KERNEL_BYTES, &kernel)
        .or_else(|e| fail(format!("step `{id}`: {e}")))?;
    extract(&tree, iso, &boot.initrd, MAX_INITRD_BYTES, &initrd)
        .or_else(|e| fail(format!("step `{id}`: {e}")))?;
    if secret {
        // The answer appended next holds password hashes: no one but QEMU's user reads it
        // (libvirt hands the file to that user when it starts the guest).
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&initrd, std::fs::Permissions::from_mode(0o600))
            .or_else(|e| fail(format!("step `{id}`: chmod `{}`: {e}", initrd.display())))?;
    }
    if let Some(overlay) = answer.filter(|a| a.to_string_lossy().ends_with(".cpio.gz")) {
        append(&initrd, overlay).or_else(|e| {
            fail(format!(
                "step `{id}`: appending the answer to the initrd: {e}"
            ))
        })?;
    }
    cx.log.line(format_args!(
        "{} profile: kernel `{}`, initrd `{}`{}, command line `{}`",
        p.profile.name(),
        boot.kernel,
        boot.initrd,
        if answer.is_some_and(|a| a.to_string_lossy().ends_with(".cpio.gz")) {
            " + the preseed"
        } else {
            ""
        },
        boot.cmdline()
    ));
    Ok(KernelBoot {
        kernel,
        initrd,
        cmdline: boot.cmdline(),
    })
}

/// Copies file `path` of the ISO to `dest` (kiln-unattend's reader, streaming, bounded).
fn extract(tree: &IsoTree, iso: &Path, path: &str, max: u64, dest: &Path) -> Result<(), String> {
    let mut out = File::create(dest).map_err(|e| format!("creating `{}`: {e}", dest.display()))?;
    tree.copy_file(iso, path, max, &mut out)
        .map(drop)
        .map_err(|e| {
            format!(
                "copying `{path}` out of the ISO: {}",
                super::error_chain(&e)
            )
        })
}

fn append(dest: &Path, src: &Path) -> std::io::Result<()> {
    let mut out = std::fs::OpenOptions::new().append(true).open(dest)?;
    std::io::copy(&mut File::open(src)?, &mut out)?;
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
            disk_bus: crate::domain_xml::DiskBus::Virtio,
            nic: crate::domain_xml::NicModel::Virtio,
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
    fn only_windows_setup_on_uefi_gets_key_presses_for_its_boot_prompt() {
        let k = boot_prompt_keys(InstallerProfile::WindowsSetup, true).expect("presses");
        assert_eq!(k.keycode, 57);
        assert!(
            k.until >= Duration::from_secs(60),
            "TCG's OVMF is slow to reach the CD"
        );
        assert_eq!(
            boot_prompt_keys(InstallerProfile::WindowsSetup, false),
            None
        );
        assert_eq!(
            boot_prompt_keys(InstallerProfile::DebianInstaller, true),
            None
        );
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
