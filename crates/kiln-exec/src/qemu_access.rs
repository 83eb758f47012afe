//! What libvirt's system QEMU may reach in kiln's private folders.
//!
//! The cache and run folders are `0700` (see `kiln_cache::private`). Under `qemu:///system` QEMU runs
//! as its own user (`user` in `/etc/libvirt/qemu.conf`, `libvirt-qemu` on Debian); libvirt's dynamic
//! ownership hands it each file of a guest (disks and their backing chain, ISOs, kernel, NVRAM, the
//! console log) while the guest runs, but not the folders above. Before a guest starts, kiln gives
//! that user search on exactly the folders between its roots (the cache, the run folder) and those
//! files: an ACL entry `u:<qemu>:x`, nothing else. Folders above the roots are not kiln's to change;
//! they must already be searchable.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::domain_xml::{DiskFormat, DomainSpec, Firmware};

/// Where libvirt's QEMU driver names its user.
const QEMU_CONF: &str = "/etc/libvirt/qemu.conf";
/// libvirt's default on Debian when `qemu.conf` sets none.
const DEFAULT_USER: &str = "libvirt-qemu";
/// Longest backing chain followed.
const MAX_CHAIN: usize = 16;

/// True for a URI of this machine's system QEMU driver (`qemu:///system`,
/// `qemu+unix:///system?socket=...`), where QEMU runs as its own user and opens kiln's files.
pub(crate) fn is_local_system(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return false;
    };
    let driver = scheme.split('+').next().unwrap_or_default();
    let transport = scheme.split_once('+').map(|(_, t)| t);
    driver == "qemu"
        && matches!(transport, None | Some("unix"))
        && (rest == "/system" || rest.starts_with("/system?"))
}

/// The uid system QEMU runs as on this machine, or `None` when it cannot be found (no libvirt).
pub(crate) fn qemu_uid() -> Option<u32> {
    static UID: OnceLock<Option<u32>> = OnceLock::new();
    *UID.get_or_init(|| {
        let conf = std::fs::read_to_string(QEMU_CONF).unwrap_or_default();
        let user = conf_user(&conf).unwrap_or_else(|| DEFAULT_USER.to_owned());
        if let Ok(uid) = user.trim_start_matches('+').parse::<u32>() {
            return Some(uid);
        }
        let out = std::process::Command::new("id")
            .args(["-u", &user])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
            .flatten()
    })
}

/// `user = "name"` from qemu.conf text (comments and other keys ignored).
fn conf_user(conf: &str) -> Option<String> {
    conf.lines().find_map(|line| {
        let line = line.split('#').next()?.trim();
        let (key, value) = line.split_once('=')?;
        (key.trim() == "user").then(|| value.trim().trim_matches('"').to_owned())
    })
}

/// Every file QEMU opens for `spec`, backing files of its root disk included.
pub(crate) fn spec_files(spec: &DomainSpec) -> Vec<PathBuf> {
    let mut files = vec![spec.serial_log.clone()];
    if let Some(disk) = &spec.root_disk {
        files.push(disk.path.clone());
        // Follow the chain as QEMU will: only through images it opens as qcow2 (a raw disk's
        // header is whatever its guest wrote).
        let mut at = (disk.format == DiskFormat::Qcow2).then(|| disk.path.clone());
        for _ in 0..MAX_CHAIN {
            let Some(here) = at.take() else { break };
            let Ok(Some(refs)) = kiln_cache::qcow2::read_refs(&here) else {
                break;
            };
            let Some(backing) = refs.backing else { break };
            let next = here.parent().unwrap_or(Path::new("/")).join(backing);
            files.push(next.clone());
            if refs.backing_format.as_deref() == Some("qcow2") {
                at = Some(next);
            }
        }
    }
    files.extend(spec.installer_iso.clone());
    files.extend(spec.drivers_iso.clone());
    files.extend(spec.extra_media.iter().map(|m| m.path.clone()));
    if let Some(k) = &spec.kernel_boot {
        files.push(k.kernel.clone());
        files.push(k.initrd.clone());
    }
    if let Firmware::Uefi { nvram, .. } = &spec.firmware {
        files.push(nvram.clone());
    }
    files
}

/// Gives QEMU's user search on the folders from each of `roots` down to each file of `spec`.
pub(crate) fn grant(spec: &DomainSpec, roots: &[PathBuf]) -> Result<(), String> {
    let Some(uid) = qemu_uid() else {
        return Ok(());
    };
    for file in spec_files(spec) {
        grant_path(&file, roots, uid)?;
    }
    Ok(())
}

/// Gives user `uid` search on each folder above `path` that lies within one of `roots` (the root
/// itself included).
pub(crate) fn grant_path(path: &Path, roots: &[PathBuf], uid: u32) -> Result<(), String> {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
    let path = abs(path);
    for root in roots {
        let root = abs(root);
        if !path.starts_with(&root) {
            continue;
        }
        for folder in path.ancestors().skip(1) {
            if !folder.starts_with(&root) {
                break;
            }
            kiln_cache::private::grant_traverse(folder, uid).map_err(|e| {
                format!(
                    "giving libvirt's QEMU user (uid {uid}) search on `{}`: {e}",
                    folder.display()
                )
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_machines_system_driver_gets_acl_entries() {
        // A second local host spelled with a socket path must be treated like qemu:///system.
        assert!(is_local_system("qemu:///system"));
        assert!(is_local_system(
            "qemu+unix:///system?socket=/run/libvirt/libvirt-sock"
        ));
        assert!(!is_local_system("qemu:///session"));
        assert!(!is_local_system("qemu+ssh://builder/system"));
        assert!(!is_local_system("test:///default"));
    }

    #[test]
    fn the_qemu_user_is_read_from_qemu_conf_or_defaults() {
        // A site that runs QEMU as another user must get its ACL entries, not libvirt-qemu's.
        assert_eq!(
            conf_user("# user = \"root\"\nuser = \"qemu\"\ngroup = \"kvm\"\n").as_deref(),
            Some("qemu")
        );
        assert_eq!(conf_user("#user = \"root\"\n"), None);
    }
}
