//! The virtio-win map: which folder of the virtio-win ISO holds each driver for a Windows version
//! and architecture, which drivers WinPE needs, and the check that every needed folder is really on
//! a given ISO.
//!
//! The table follows virtio-win-pkg-scripts' `util/filemap.py` (`DRIVER_OS_MAP`, 2025): `w10`
//! builds serve `w10`, `2k16`, `2k19` and `2k22`; `w11` builds serve `w11` and `2k25`; x86 exists only
//! for `w10`; `ARM64` for `w10`, `w11` and `2k25`. A version without its own folder is an error:
//! there is no fallback to a neighbouring version (cloudbase's tools fall back to 2012 R2 drivers,
//! which blue-screens at first boot).

use std::fmt;

use crate::iso9660::IsoTree;
use crate::model::{Arch, WindowsVersion};

/// A driver package on the virtio-win ISO.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VirtioDriver {
    /// virtio-blk storage: the root disk `vda`.
    Viostor,
    /// virtio-scsi storage.
    Vioscsi,
    /// virtio-net.
    NetKvm,
    /// Memory balloon.
    Balloon,
    /// virtio-serial: the qemu guest agent channel.
    Vioserial,
    /// QEMU's PCI serial card.
    Qemupciserial,
    /// pvpanic: reports guest crashes to the host.
    Pvpanic,
    /// virtio-input (keyboard, mouse, tablet).
    Vioinput,
    /// virtio-rng entropy.
    Viorng,
    /// QXL display-only driver.
    Qxldod,
}

impl VirtioDriver {
    pub const ALL: [VirtioDriver; 10] = [
        Self::Viostor,
        Self::Vioscsi,
        Self::NetKvm,
        Self::Balloon,
        Self::Vioserial,
        Self::Qemupciserial,
        Self::Pvpanic,
        Self::Vioinput,
        Self::Viorng,
        Self::Qxldod,
    ];

    /// The top-level folder name on the ISO, in its own spelling.
    pub fn dir_name(self) -> &'static str {
        match self {
            Self::Viostor => "viostor",
            Self::Vioscsi => "vioscsi",
            Self::NetKvm => "NetKVM",
            Self::Balloon => "Balloon",
            Self::Vioserial => "vioserial",
            Self::Qemupciserial => "qemupciserial",
            Self::Pvpanic => "pvpanic",
            Self::Vioinput => "vioinput",
            Self::Viorng => "viorng",
            Self::Qxldod => "qxldod",
        }
    }

    /// Storage and network must load in WinPE: without storage Setup sees no disk, without
    /// network nothing after it can reach the metadata service. The rest is added after install.
    pub fn needed_in_winpe(self) -> bool {
        matches!(self, Self::Viostor | Self::Vioscsi | Self::NetKvm)
    }

    /// The folder `driver/os/arch` for this version and architecture, or `None` when virtio-win
    /// ships no build of this driver for it.
    pub fn folder(self, version: WindowsVersion, arch: Arch) -> Option<String> {
        use Arch::{Amd64, Arm64, X86};
        use WindowsVersion::*;
        let shipped = match self {
            Self::Viostor
            | Self::Vioscsi
            | Self::NetKvm
            | Self::Balloon
            | Self::Vioserial
            | Self::Pvpanic
            | Self::Vioinput
            | Self::Viorng => matches!(
                (version, arch),
                (Windows10, X86 | Amd64 | Arm64)
                    | (Server2016 | Server2019 | Server2022, Amd64)
                    | (Windows11 | Server2025, Amd64 | Arm64)
            ),
            Self::Qemupciserial => matches!(
                (version, arch),
                (Windows11 | Server2022 | Server2025, Amd64)
            ),
            Self::Qxldod => matches!(
                (version, arch),
                (Windows10, X86 | Amd64) | (Server2016 | Server2019, Amd64)
            ),
        };
        shipped.then(|| {
            format!(
                "{}/{}/{}",
                self.dir_name(),
                version.virtio_name(),
                arch.virtio_name()
            )
        })
    }
}

impl fmt::Display for VirtioDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dir_name())
    }
}

/// The qemu guest agent installer on the virtio-win ISO, if one exists for `arch`.
pub fn guest_agent_msi(arch: Arch) -> Option<&'static str> {
    match arch {
        Arch::Amd64 => Some("guest-agent/qemu-ga-x86_64.msi"),
        Arch::X86 => Some("guest-agent/qemu-ga-i386.msi"),
        Arch::Arm64 => None,
    }
}

/// What is wrong with a needed path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The folder (or file) is not on the ISO.
    Missing,
    /// The folder exists but holds no `.inf` file, so Windows would find no driver in it.
    NoInf,
    /// virtio-win has no build of this driver for the version and architecture at all.
    NotShipped,
}

/// A needed driver folder the drivers ISO does not provide.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingFolder {
    /// `None` for the guest agent installer.
    pub driver: Option<VirtioDriver>,
    /// The path that was looked for, `/`-separated (`viostor/2k25/amd64`).
    pub path: String,
    pub problem: Problem,
    /// Other `version/arch` folders of the same driver that *are* on the ISO, for the hint: an ISO
    /// that has `2k22` but not `2k25` is older than the Windows it is used for.
    pub present: Vec<String>,
}

impl fmt::Display for MissingFolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problem {
            Problem::Missing => write!(f, "the drivers iso has no `{}`", self.path)?,
            Problem::NoInf => write!(f, "`{}` on the drivers iso holds no `.inf` file", self.path)?,
            Problem::NotShipped => write!(f, "virtio-win ships no `{}`", self.path)?,
        }
        if !self.present.is_empty() {
            write!(
                f,
                " (it has {}; kiln never substitutes another version)",
                self.present.join(", ")
            )?;
        }
        Ok(())
    }
}

/// Checks that every folder of `drivers` for `version`/`arch` is on the ISO and holds an `.inf`.
/// Returns one entry per problem; empty means the ISO is good for this image.
pub fn check_drivers(
    tree: &IsoTree,
    version: WindowsVersion,
    arch: Arch,
    drivers: &[VirtioDriver],
) -> Vec<MissingFolder> {
    let mut missing = Vec::new();
    for &driver in drivers {
        let Some(path) = driver.folder(version, arch) else {
            missing.push(MissingFolder {
                driver: Some(driver),
                path: format!(
                    "{}/{}/{}",
                    driver.dir_name(),
                    version.virtio_name(),
                    arch.virtio_name()
                ),
                problem: Problem::NotShipped,
                present: Vec::new(),
            });
            continue;
        };
        let problem = match tree.get(&path) {
            Some(entry) if entry.is_dir => {
                let has_inf = tree
                    .children(&path)
                    .any(|c| !c.is_dir && c.name().to_ascii_lowercase().ends_with(".inf"));
                if has_inf {
                    continue;
                }
                Problem::NoInf
            }
            _ => Problem::Missing,
        };
        missing.push(MissingFolder {
            driver: Some(driver),
            present: present_builds(tree, driver),
            path,
            problem,
        });
    }
    missing
}

/// Checks that the guest agent installer for `arch` is on the ISO.
pub fn check_guest_agent(tree: &IsoTree, arch: Arch) -> Option<MissingFolder> {
    let Some(path) = guest_agent_msi(arch) else {
        return Some(MissingFolder {
            driver: None,
            path: format!("guest-agent ({arch})"),
            problem: Problem::NotShipped,
            present: Vec::new(),
        });
    };
    match tree.get(path) {
        Some(entry) if !entry.is_dir => None,
        _ => Some(MissingFolder {
            driver: None,
            path: path.to_owned(),
            problem: Problem::Missing,
            present: Vec::new(),
        }),
    }
}

/// Checks the drivers ISO against everything `image` takes from it.
pub fn check_image_media(tree: &IsoTree, image: &crate::WindowsImage) -> Vec<MissingFolder> {
    let mut drivers: Vec<VirtioDriver> = image.drivers.winpe.clone();
    if image.guest_tools.drivers {
        drivers.extend(&image.drivers.post_install);
    }
    let mut missing = check_drivers(tree, image.version, image.arch, &drivers);
    if image.guest_tools.qemu_guest_agent {
        missing.extend(check_guest_agent(tree, image.arch));
    }
    missing
}

fn present_builds(tree: &IsoTree, driver: VirtioDriver) -> Vec<String> {
    let mut out = Vec::new();
    for os in tree.children(driver.dir_name()).filter(|e| e.is_dir) {
        for arch in tree.children(&os.path).filter(|e| e.is_dir) {
            out.push(format!("`{}`", arch.path));
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_2022_uses_its_own_folders_and_gets_no_qxldod() {
        let v = WindowsVersion::Server2022;
        assert_eq!(
            VirtioDriver::Viostor.folder(v, Arch::Amd64).unwrap(),
            "viostor/2k22/amd64"
        );
        assert_eq!(
            VirtioDriver::NetKvm.folder(v, Arch::Amd64).unwrap(),
            "NetKVM/2k22/amd64"
        );
        assert_eq!(
            VirtioDriver::Qemupciserial.folder(v, Arch::Amd64).unwrap(),
            "qemupciserial/2k22/amd64"
        );
        assert_eq!(VirtioDriver::Qxldod.folder(v, Arch::Amd64), None);
    }

    #[test]
    fn arm64_folders_are_upper_case_and_absent_for_older_servers() {
        assert_eq!(
            VirtioDriver::Viostor
                .folder(WindowsVersion::Windows11, Arch::Arm64)
                .unwrap(),
            "viostor/w11/ARM64"
        );
        assert_eq!(
            VirtioDriver::Viostor.folder(WindowsVersion::Server2022, Arch::Arm64),
            None
        );
        assert_eq!(
            VirtioDriver::Viostor.folder(WindowsVersion::Windows11, Arch::X86),
            None
        );
    }

    #[test]
    fn only_storage_and_network_load_in_winpe() {
        let winpe: Vec<_> = VirtioDriver::ALL
            .iter()
            .filter(|d| d.needed_in_winpe())
            .collect();
        assert_eq!(
            winpe,
            [
                &VirtioDriver::Viostor,
                &VirtioDriver::Vioscsi,
                &VirtioDriver::NetKvm
            ]
        );
    }
}
