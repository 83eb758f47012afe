//! Libvirt domain XML for kiln's guests, generated from a typed [`DomainSpec`]. Pure: no I/O.
//!
//! The layout follows the install seeds: root disk `vda` (virtio), installer ISO as the first
//! CD-ROM (`hda` on machine `pc`, `sda` on `q35`, which has no IDE bus), drivers ISO as the second,
//! then answer media. The serial console goes to a file: it is the progress and evidence channel.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub use kiln_syntax::model::{DiskBus, NicModel};

/// Prefix of every domain kiln defines, so leaked domains are easy to find and remove.
pub const DOMAIN_PREFIX: &str = "kiln-";

/// Accelerator as libvirt's domain type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DomainType {
    /// Hardware virtualization (`<domain type='kvm'>`).
    Kvm,
    /// QEMU's TCG emulator (`<domain type='qemu'>`).
    Qemu,
}

/// Machine type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Machine {
    /// i440fx: has IDE (CD-ROMs `hda`, `hdb`) and a floppy controller.
    #[default]
    Pc,
    /// ICH9: SATA CD-ROMs, needed for Secure Boot and TPM-heavy guests.
    Q35,
}

/// Firmware.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Firmware {
    /// SeaBIOS.
    #[default]
    Bios,
    /// OVMF, chosen by libvirt's firmware auto-selection; the variable store lives at `nvram`
    /// (kept beside the step's other files, not under /var/lib/libvirt).
    Uefi {
        /// Where libvirt creates the guest's UEFI variable store from the template.
        nvram: PathBuf,
        /// Require a Secure Boot capable firmware (needs machine `q35`).
        secure_boot: bool,
    },
}

/// Disk image format as libvirt's driver type (`<driver type=...>`, always written: libvirt and
/// QEMU never guess the format of a disk kiln attaches).
pub use kiln_cache::DiskFormat;

/// A writable disk.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Disk {
    /// Image file.
    pub path: PathBuf,
    /// Its format.
    pub format: DiskFormat,
}

/// A direct kernel boot: QEMU loads the kernel and initrd itself (fw_cfg), with this command
/// line, in place of the firmware's boot devices; works with SeaBIOS and OVMF alike.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KernelBoot {
    /// The kernel image file.
    pub kernel: PathBuf,
    /// The initrd file.
    pub initrd: PathBuf,
    /// The command line.
    pub cmdline: String,
}

/// How extra answer media are attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    /// A read-only CD-ROM (NoCloud `cidata`, kickstart, autounattend ISO).
    Cdrom,
    /// A floppy image (`fda`, machine `pc` only): Windows reads `autounattend.xml` from it.
    Floppy,
    /// A raw image as a removable USB stick.
    Usb,
}

/// Extra media with answer files.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Media {
    /// Image file.
    pub path: PathBuf,
    /// How to attach it.
    pub kind: MediaKind,
}

/// Which device the firmware boots first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BootFrom {
    /// The installer CD, then the root disk (an install).
    Cdrom,
    /// The root disk only (customize, boot test).
    Disk,
}

/// What a guest-initiated reset does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OnReboot {
    /// Stop the domain: a reset looks like a power-off, so success must come from evidence.
    #[default]
    Destroy,
    /// Reboot (installers that reboot on purpose, such as Windows).
    Restart,
}

/// Everything that goes into one guest's domain XML.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DomainSpec {
    /// Domain name; must start with [`DOMAIN_PREFIX`].
    pub name: String,
    /// Accelerator.
    pub domain_type: DomainType,
    /// Machine type.
    pub machine: Machine,
    /// Firmware.
    pub firmware: Firmware,
    /// Attach an emulated TPM 2.0 (swtpm).
    pub tpm: bool,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Root disk: `vda` on virtio, else the first disk of its bus.
    pub root_disk: Option<Disk>,
    /// The root disk's bus.
    pub disk_bus: DiskBus,
    /// Boot this kernel instead of a boot device (the install of a kernel-booted installer).
    pub kernel_boot: Option<KernelBoot>,
    /// Installer ISO, the first CD-ROM.
    pub installer_iso: Option<PathBuf>,
    /// Drivers ISO, the second CD-ROM.
    pub drivers_iso: Option<PathBuf>,
    /// Answer media, after the CD-ROMs above.
    pub extra_media: Vec<Media>,
    /// File the serial console (COM1) is written to; truncated at start.
    pub serial_log: PathBuf,
    /// Boot device.
    pub boot: BootFrom,
    /// Guest reset behaviour.
    pub on_reboot: OnReboot,
    /// User-mode (slirp) networking with a NIC of this model.
    pub nic: Option<NicModel>,
}

/// A [`DomainSpec`] that cannot be expressed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainXmlError {
    /// Name without the prefix, or with characters libvirt or a shell would trip on.
    #[error("domain name `{0}` must start with `kiln-` and use only [A-Za-z0-9._-]")]
    BadName(String),
    /// Machine `pc` has one IDE controller: four devices.
    #[error("machine `pc` has room for 4 IDE CD-ROMs, `{0}` were asked for")]
    TooManyIde(usize),
    /// Floppies need the i440fx machine's floppy controller.
    #[error("floppy media need machine `pc`; `{0}` is attached as a floppy on `q35`")]
    FloppyOnQ35(String),
    /// Only one floppy drive is generated.
    #[error("at most one floppy is supported, `{0}` is the second")]
    TooManyFloppies(String),
    /// Boot from CD without a CD.
    #[error("boot from cdrom asked for, but no installer ISO is attached")]
    NoInstaller,
    /// IDE disks need the i440fx machine's IDE controller.
    #[error("disk bus `ide` needs machine `pc`: `q35` has no IDE controller")]
    IdeOnQ35,
    /// A kernel command line QEMU cannot pass on.
    #[error("kernel command line must be one line of at most 2048 bytes")]
    BadCmdline,
    /// Boot from disk without a disk.
    #[error("boot from disk asked for, but no root disk is attached")]
    NoRootDisk,
    /// Secure Boot needs SMM, which needs q35.
    #[error("secure boot needs machine `q35`")]
    SecureBootOnPc,
    /// A path libvirt cannot take (not absolute, or not UTF-8).
    #[error("path `{0}` must be absolute and valid UTF-8")]
    BadPath(String),
    /// Zero vCPUs or memory.
    #[error("a guest needs at least 1 vcpu and 16 MiB of memory")]
    TooSmall,
}

/// Renders the domain XML.
///
/// # Errors
/// When the spec asks for a layout the machine type cannot have (see [`DomainXmlError`]).
pub fn domain_xml(spec: &DomainSpec) -> Result<String, DomainXmlError> {
    validate(spec)?;
    let mut x = String::new();
    let ty = match spec.domain_type {
        DomainType::Kvm => "kvm",
        DomainType::Qemu => "qemu",
    };
    let machine = match spec.machine {
        Machine::Pc => "pc",
        Machine::Q35 => "q35",
    };
    w(&mut x, format_args!("<domain type='{ty}'>\n"));
    w(&mut x, format_args!("  <name>{}</name>\n", esc(&spec.name)));
    w(
        &mut x,
        format_args!("  <memory unit='MiB'>{}</memory>\n", spec.memory_mib),
    );
    w(&mut x, format_args!("  <vcpu>{}</vcpu>\n", spec.vcpus));
    match &spec.firmware {
        Firmware::Bios => {
            w(
                &mut x,
                format_args!("  <os>\n    <type arch='x86_64' machine='{machine}'>hvm</type>\n"),
            );
        }
        Firmware::Uefi { nvram, secure_boot } => {
            w(
                &mut x,
                format_args!(
                    "  <os firmware='efi'>\n    <type arch='x86_64' machine='{machine}'>hvm</type>\n"
                ),
            );
            // Secure Boot means Microsoft's keys enrolled (Debian's `OVMF_VARS_4M.ms.fd`): a
            // Secure Boot firmware with an empty key store does not enforce anything.
            let features = if *secure_boot {
                "      <feature enabled='yes' name='secure-boot'/>\n      <feature enabled='yes' name='enrolled-keys'/>\n"
            } else {
                "      <feature enabled='no' name='secure-boot'/>\n"
            };
            w(
                &mut x,
                format_args!("    <firmware>\n{features}    </firmware>\n"),
            );
            w(
                &mut x,
                format_args!("    <nvram>{}</nvram>\n", path(nvram)?),
            );
        }
    }
    if let Some(k) = &spec.kernel_boot {
        w(
            &mut x,
            format_args!("    <kernel>{}</kernel>\n", path(&k.kernel)?),
        );
        w(
            &mut x,
            format_args!("    <initrd>{}</initrd>\n", path(&k.initrd)?),
        );
        w(
            &mut x,
            format_args!("    <cmdline>{}</cmdline>\n", esc(&k.cmdline)),
        );
    }
    x.push_str("  </os>\n");
    x.push_str("  <features>\n    <acpi/>\n    <apic/>\n");
    if matches!(
        spec.firmware,
        Firmware::Uefi {
            secure_boot: true,
            ..
        }
    ) {
        x.push_str("    <smm state='on'/>\n");
    }
    x.push_str("  </features>\n");
    if spec.domain_type == DomainType::Kvm {
        x.push_str("  <cpu mode='host-passthrough'/>\n");
    }
    x.push_str("  <clock offset='utc'/>\n");
    x.push_str("  <on_poweroff>destroy</on_poweroff>\n");
    let on_reboot = match spec.on_reboot {
        OnReboot::Destroy => "destroy",
        OnReboot::Restart => "restart",
    };
    w(
        &mut x,
        format_args!("  <on_reboot>{on_reboot}</on_reboot>\n"),
    );
    // Keep a crashed guest's QEMU alive so its screen can be captured; kiln destroys it after.
    x.push_str("  <on_crash>preserve</on_crash>\n");
    x.push_str("  <devices>\n");

    let (cd_bus, cd_prefix) = match spec.machine {
        Machine::Pc => ("ide", "hd"),
        Machine::Q35 => ("sata", "sd"),
    };
    let mut cd_index = 0u8;
    let mut usb_index = 0u8;
    let boot_cd = spec.boot == BootFrom::Cdrom && spec.kernel_boot.is_none();
    // The root disk comes first on its bus, so it is `hda`/`sda` for the guest too; CD-ROMs on
    // the same bus follow it.
    let (root_dev, root_bus) = match spec.disk_bus {
        DiskBus::Virtio => ("vda", "virtio"),
        DiskBus::Scsi => ("sda", "scsi"),
        DiskBus::Sata => ("sda", "sata"),
        DiskBus::Ide => ("hda", "ide"),
    };
    if let Some(disk) = &spec.root_disk {
        if (spec.disk_bus == DiskBus::Ide && cd_bus == "ide")
            || (spec.disk_bus == DiskBus::Sata && cd_bus == "sata")
        {
            cd_index += 1;
        }
        // Boot order only when the firmware boots a device (not with a kernel boot).
        let order = match (&spec.kernel_boot, boot_cd) {
            (Some(_), _) => String::new(),
            (None, true) => "      <boot order='2'/>\n".to_owned(),
            (None, false) => "      <boot order='1'/>\n".to_owned(),
        };
        w(
            &mut x,
            format_args!(
                "    <disk type='file' device='disk'>\n      <driver name='qemu' type='{}' cache='unsafe' discard='unmap'/>\n      <source file='{}'/>\n      <target dev='{root_dev}' bus='{root_bus}'/>\n{order}    </disk>\n",
                disk.format.as_str(),
                path(&disk.path)?,
            ),
        );
    }
    if spec.disk_bus == DiskBus::Scsi && spec.root_disk.is_some() {
        x.push_str("    <controller type='scsi' model='virtio-scsi'/>\n");
    }
    let mut cdrom = |x: &mut String, p: &Path, boot: Option<u8>| -> Result<(), DomainXmlError> {
        let dev = format!("{cd_prefix}{}", char::from(b'a' + cd_index));
        cd_index += 1;
        w(
            x,
            format_args!(
                "    <disk type='file' device='cdrom'>\n      <driver name='qemu' type='raw'/>\n      <source file='{}'/>\n      <target dev='{dev}' bus='{cd_bus}'/>\n      <readonly/>\n",
                path(p)?,
            ),
        );
        if let Some(order) = boot {
            w(x, format_args!("      <boot order='{order}'/>\n"));
        }
        x.push_str("    </disk>\n");
        Ok(())
    };
    if let Some(iso) = &spec.installer_iso {
        cdrom(&mut x, iso, boot_cd.then_some(1))?;
    }
    if let Some(iso) = &spec.drivers_iso {
        cdrom(&mut x, iso, None)?;
    }
    for media in &spec.extra_media {
        match media.kind {
            MediaKind::Cdrom => cdrom(&mut x, &media.path, None)?,
            MediaKind::Floppy => w(
                &mut x,
                format_args!(
                    "    <disk type='file' device='floppy'>\n      <driver name='qemu' type='raw'/>\n      <source file='{}'/>\n      <target dev='fda' bus='fdc'/>\n    </disk>\n",
                    path(&media.path)?,
                ),
            ),
            MediaKind::Usb => {
                // USB sticks take names after the SATA CD-ROMs would: `sdq` onwards never clash.
                let dev = format!("sd{}", char::from(b'q' + usb_index));
                usb_index += 1;
                w(
                    &mut x,
                    format_args!(
                        "    <disk type='file' device='disk'>\n      <driver name='qemu' type='raw'/>\n      <source file='{}'/>\n      <target dev='{dev}' bus='usb' removable='on'/>\n    </disk>\n",
                        path(&media.path)?,
                    ),
                );
            }
        }
    }
    if usb_index == 0 {
        // No USB devices: no controller, one less device for QEMU to bring up.
        x.push_str("    <controller type='usb' model='none'/>\n");
    } else {
        x.push_str("    <controller type='usb' model='qemu-xhci'/>\n");
    }
    if let Some(nic) = spec.nic {
        w(
            &mut x,
            format_args!(
                "    <interface type='user'>\n      <model type='{}'/>\n    </interface>\n",
                nic.name()
            ),
        );
    }
    w(
        &mut x,
        format_args!(
            "    <serial type='file'>\n      <source path='{}' append='off'/>\n      <target port='0'/>\n    </serial>\n",
            path(&spec.serial_log)?,
        ),
    );
    if spec.tpm {
        let model = match spec.machine {
            Machine::Pc => "tpm-tis",
            Machine::Q35 => "tpm-crb",
        };
        w(
            &mut x,
            format_args!(
                "    <tpm model='{model}'>\n      <backend type='emulator' version='2.0'/>\n    </tpm>\n"
            ),
        );
    }
    // A display adapter without a graphics server: enough for virDomainScreenshot.
    x.push_str("    <video>\n      <model type='vga'/>\n    </video>\n");
    x.push_str("    <memballoon model='none'/>\n");
    x.push_str("  </devices>\n</domain>\n");
    Ok(x)
}

fn validate(spec: &DomainSpec) -> Result<(), DomainXmlError> {
    let name_ok = spec.name.starts_with(DOMAIN_PREFIX)
        && spec.name.len() > DOMAIN_PREFIX.len()
        && spec
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !name_ok {
        return Err(DomainXmlError::BadName(spec.name.clone()));
    }
    if spec.vcpus == 0 || spec.memory_mib < 16 {
        return Err(DomainXmlError::TooSmall);
    }
    let cdroms = usize::from(spec.installer_iso.is_some())
        + usize::from(spec.drivers_iso.is_some())
        + spec
            .extra_media
            .iter()
            .filter(|m| m.kind == MediaKind::Cdrom)
            .count();
    let ide_disk = usize::from(spec.disk_bus == DiskBus::Ide && spec.root_disk.is_some());
    if spec.machine == Machine::Pc && cdroms + ide_disk > 4 {
        return Err(DomainXmlError::TooManyIde(cdroms + ide_disk));
    }
    if spec.disk_bus == DiskBus::Ide && spec.machine == Machine::Q35 {
        return Err(DomainXmlError::IdeOnQ35);
    }
    if let Some(k) = &spec.kernel_boot
        && (k.cmdline.len() > 2048 || k.cmdline.contains(['\n', '\r']))
    {
        return Err(DomainXmlError::BadCmdline);
    }
    let mut floppies = spec
        .extra_media
        .iter()
        .filter(|m| m.kind == MediaKind::Floppy);
    if let Some(first) = floppies.next() {
        if spec.machine == Machine::Q35 {
            return Err(DomainXmlError::FloppyOnQ35(
                first.path.display().to_string(),
            ));
        }
        if let Some(second) = floppies.next() {
            return Err(DomainXmlError::TooManyFloppies(
                second.path.display().to_string(),
            ));
        }
    }
    match spec.boot {
        BootFrom::Cdrom if spec.installer_iso.is_none() && spec.kernel_boot.is_none() => {
            return Err(DomainXmlError::NoInstaller);
        }
        BootFrom::Disk if spec.root_disk.is_none() => return Err(DomainXmlError::NoRootDisk),
        _ => {}
    }
    if matches!(
        spec.firmware,
        Firmware::Uefi {
            secure_boot: true,
            ..
        }
    ) && spec.machine == Machine::Pc
    {
        return Err(DomainXmlError::SecureBootOnPc);
    }
    Ok(())
}

fn w(x: &mut String, args: std::fmt::Arguments<'_>) {
    // Writing to a String cannot fail.
    let _ = x.write_fmt(args);
}

fn path(p: &Path) -> Result<String, DomainXmlError> {
    match p.to_str() {
        Some(s) if p.is_absolute() => Ok(esc(s)),
        _ => Err(DomainXmlError::BadPath(p.display().to_string())),
    }
}

/// XML attribute/text escaping.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
#[path = "domain_xml_tests.rs"]
mod tests;
