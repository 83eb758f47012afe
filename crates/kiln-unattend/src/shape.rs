//! What a Windows image needs from the machine that installs it, and what Glance must be told so
//! Nova boots the result the same way: machine type, firmware, Secure Boot, TPM, buses.
//!
//! UEFI images use q35 (OVMF needs it for Secure Boot; q35 has no IDE, so CDs go on SATA); BIOS
//! images use i440fx (`pc`) with IDE CDs, kiln's default layout. The root disk is virtio-blk in
//! both: `viostor` is loaded in WinPE through `DriverPaths`, so Setup sees it.

use crate::model::{Firmware, WindowsImage};
use crate::virtio::VirtioDriver;

/// QEMU machine type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MachineType {
    /// i440fx: IDE CD-ROMs.
    Pc,
    /// q35: SATA CD-ROMs, needed for Secure Boot.
    Q35,
}

impl MachineType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pc => "pc",
            Self::Q35 => "q35",
        }
    }
}

/// Bus of the installer and drivers CDs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CdromBus {
    Ide,
    Sata,
}

/// The install machine's shape for one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MachineShape {
    pub machine: MachineType,
    pub uefi: bool,
    pub secure_boot: bool,
    /// A TPM 2.0 (swtpm), CRB interface.
    pub tpm: bool,
    pub cdrom_bus: CdromBus,
}

/// The machine to install `image` on.
pub fn machine_shape(image: &WindowsImage) -> MachineShape {
    match image.firmware {
        Firmware::Bios => MachineShape {
            machine: MachineType::Pc,
            uefi: false,
            secure_boot: false,
            tpm: image.tpm,
            cdrom_bus: CdromBus::Ide,
        },
        Firmware::Uefi { secure_boot } => MachineShape {
            machine: MachineType::Q35,
            uefi: true,
            secure_boot,
            tpm: image.tpm,
            cdrom_bus: CdromBus::Sata,
        },
    }
}

/// Glance image properties for the built image, sorted by key. Standard Nova/Glance keys, plus
/// `os_language` (kiln's own: the UI language of this cell of a language matrix).
pub fn glance_properties(image: &WindowsImage) -> Vec<(String, String)> {
    let shape = machine_shape(image);
    let mut props: Vec<(&str, String)> = vec![
        ("os_type", "windows".to_owned()),
        ("os_distro", "windows".to_owned()),
        ("os_version", os_version(image).to_owned()),
        ("os_language", image.locale.ui.to_string()),
        ("hw_machine_type", shape.machine.as_str().to_owned()),
        (
            "hw_firmware_type",
            if shape.uefi { "uefi" } else { "bios" }.to_owned(),
        ),
        ("hw_disk_bus", "virtio".to_owned()),
        ("hw_vif_model", "virtio".to_owned()),
        ("architecture", arch_property(image).to_owned()),
    ];
    if shape.uefi {
        let secure = if shape.secure_boot {
            "required"
        } else {
            "disabled"
        };
        props.push(("os_secure_boot", secure.to_owned()));
    }
    if shape.tpm {
        props.push(("hw_tpm_version", "2.0".to_owned()));
        props.push(("hw_tpm_model", "tpm-crb".to_owned()));
    }
    if image.guest_tools.qemu_guest_agent {
        props.push(("hw_qemu_guest_agent", "yes".to_owned()));
    }
    let has_rng =
        image.guest_tools.drivers && image.drivers.post_install.contains(&VirtioDriver::Viorng);
    if has_rng {
        props.push(("hw_rng_model", "virtio".to_owned()));
    }
    if let Some(cb) = &image.cloudbase_init {
        props.push(("os_admin_user", cb.username.clone()));
    }
    let mut props: Vec<(String, String)> =
        props.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    props.sort();
    props
}

fn os_version(image: &WindowsImage) -> &'static str {
    use crate::model::WindowsVersion::*;
    match image.version {
        Server2016 => "2016",
        Server2019 => "2019",
        Server2022 => "2022",
        Server2025 => "2025",
        Windows10 => "10",
        Windows11 => "11",
    }
}

/// Glance's `architecture` uses libosinfo names.
fn arch_property(image: &WindowsImage) -> &'static str {
    match image.arch {
        crate::model::Arch::Amd64 => "x86_64",
        crate::model::Arch::Arm64 => "aarch64",
        crate::model::Arch::X86 => "i686",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Arch, ImageSelector, WindowsVersion};
    use crate::secret::SecretRef;

    fn image(firmware: Firmware) -> WindowsImage {
        WindowsImage::new(
            WindowsVersion::Server2025,
            Arch::Amd64,
            ImageSelector::Index(2),
            &"de-DE".parse().unwrap(),
            firmware,
            SecretRef::new("pw").unwrap(),
        )
    }

    #[test]
    fn uefi_images_get_q35_sata_secure_boot_and_tpm_properties() {
        let image = image(Firmware::Uefi { secure_boot: true });
        let shape = machine_shape(&image);
        assert_eq!(
            (shape.machine, shape.cdrom_bus),
            (MachineType::Q35, CdromBus::Sata)
        );
        let props = glance_properties(&image);
        let get = |k: &str| {
            props
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("hw_machine_type"), Some("q35"));
        assert_eq!(get("hw_firmware_type"), Some("uefi"));
        assert_eq!(get("os_secure_boot"), Some("required"));
        assert_eq!(get("hw_tpm_version"), Some("2.0"));
        assert_eq!(get("os_language"), Some("de-DE"));
        assert_eq!(get("os_admin_user"), Some("Admin"));
        assert_eq!(get("os_distro"), Some("windows"));
        let keys: Vec<_> = props.iter().map(|(k, _)| k.clone()).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }

    #[test]
    fn bios_images_get_pc_with_ide_cdroms_and_no_secure_boot_property() {
        let mut image = image(Firmware::Bios);
        image.tpm = false;
        let shape = machine_shape(&image);
        assert_eq!(
            (shape.machine, shape.cdrom_bus),
            (MachineType::Pc, CdromBus::Ide)
        );
        let props = glance_properties(&image);
        assert!(props.contains(&("hw_firmware_type".into(), "bios".into())));
        assert!(
            !props
                .iter()
                .any(|(k, _)| k == "os_secure_boot" || k == "hw_tpm_version")
        );
    }
}
