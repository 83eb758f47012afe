//! Private modes for everything kiln keeps, and the one narrow opening QEMU needs.
//!
//! The cache holds built disks, rendered answer files, seeds and logs: folders are `0700` and files
//! `0600`, set explicitly (never left to the umask). libvirt's system QEMU runs as another user
//! (`libvirt-qemu`); its dynamic ownership hands each disk, ISO and log file to that user while a
//! guest runs, but not the folders above them. [`grant_traverse`] gives that one user search (`x`)
//! on a folder through a POSIX access ACL entry: it can open a file whose name it is given, list
//! nothing, and nobody else gains anything.
//!
//! The ACL is written as the `system.posix_acl_access` extended attribute (Linux's stable binary
//! form, `acl_ea_header` + `acl_ea_entry`, little endian), as `setfacl -m u:<uid>:x` would write it;
//! see `docs/decisions/private-cache.md`.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;

/// Folder mode.
pub const DIR_MODE: u32 = 0o700;
/// File mode.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents) and sets its mode to `0700`, whatever the umask. A folder
/// that is already private is left as it is: a chmod would reset the ACL mask and take back the
/// search right [`grant_traverse`] gave QEMU's user, under a guest another thread is starting.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let mode = fs::metadata(dir)?.mode() & 0o777;
    // `0700`, or `0710` when the group bits show an ACL mask of search only.
    if mode & !0o010 == DIR_MODE {
        return Ok(());
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))
}

/// Sets `file`'s mode to `0600` (for files written by external tools with the umask's mode).
pub fn private_file(file: &Path) -> io::Result<()> {
    fs::set_permissions(file, fs::Permissions::from_mode(FILE_MODE))
}

const XATTR: &str = "system.posix_acl_access";
const ACL_EA_VERSION: u32 = 2;
const ACL_USER_OBJ: u16 = 0x01;
const ACL_USER: u16 = 0x02;
const ACL_GROUP_OBJ: u16 = 0x04;
const ACL_GROUP: u16 = 0x08;
const ACL_MASK: u16 = 0x10;
const ACL_OTHER: u16 = 0x20;
const ACL_UNDEFINED_ID: u32 = u32::MAX;
const X: u16 = 0o1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    tag: u16,
    perm: u16,
    id: u32,
}

/// The access ACL of `path` (the one derived from its mode when it has none).
fn read_acl(path: &Path, mode: u32) -> io::Result<Vec<Entry>> {
    let mut buf = vec![0u8; 4 + 8 * 64];
    let n = match rustix::fs::getxattr(path, XATTR, &mut buf) {
        Ok(n) => n,
        Err(e) if e == rustix::io::Errno::NODATA => {
            let bits = |shift: u32| ((mode >> shift) & 0o7) as u16;
            return Ok(vec![
                Entry {
                    tag: ACL_USER_OBJ,
                    perm: bits(6),
                    id: ACL_UNDEFINED_ID,
                },
                Entry {
                    tag: ACL_GROUP_OBJ,
                    perm: bits(3),
                    id: ACL_UNDEFINED_ID,
                },
                Entry {
                    tag: ACL_OTHER,
                    perm: bits(0),
                    id: ACL_UNDEFINED_ID,
                },
            ]);
        }
        Err(e) => return Err(e.into()),
    };
    parse_acl(&buf[..n])
}

fn parse_acl(b: &[u8]) -> io::Result<Vec<Entry>> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed POSIX ACL");
    if b.len() < 4 || !(b.len() - 4).is_multiple_of(8) {
        return Err(bad());
    }
    if u32::from_le_bytes(b[..4].try_into().expect("4")) != ACL_EA_VERSION {
        return Err(bad());
    }
    Ok(b[4..]
        .chunks_exact(8)
        .map(|c| Entry {
            tag: u16::from_le_bytes([c[0], c[1]]),
            perm: u16::from_le_bytes([c[2], c[3]]),
            id: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect())
}

fn encode_acl(entries: &[Entry]) -> Vec<u8> {
    let mut out = ACL_EA_VERSION.to_le_bytes().to_vec();
    for e in entries {
        out.extend_from_slice(&e.tag.to_le_bytes());
        out.extend_from_slice(&e.perm.to_le_bytes());
        out.extend_from_slice(&e.id.to_le_bytes());
    }
    out
}

/// `entries` with user `uid` granted search, and the mask recomputed as `setfacl` does (the union
/// of the group class), so no other entry's effective rights change.
fn with_search(mut entries: Vec<Entry>, uid: u32) -> Vec<Entry> {
    match entries
        .iter_mut()
        .find(|e| e.tag == ACL_USER && e.id == uid)
    {
        Some(e) => e.perm |= X,
        None => entries.push(Entry {
            tag: ACL_USER,
            perm: X,
            id: uid,
        }),
    }
    let group_class = entries
        .iter()
        .filter(|e| matches!(e.tag, ACL_USER | ACL_GROUP_OBJ | ACL_GROUP))
        .fold(0, |m, e| m | e.perm);
    entries.retain(|e| e.tag != ACL_MASK);
    entries.push(Entry {
        tag: ACL_MASK,
        perm: group_class,
        id: ACL_UNDEFINED_ID,
    });
    entries.sort_by_key(|e| (e.tag, e.id));
    entries
}

/// True if user `uid` may search folder `dir`, by its mode or its ACL.
pub fn can_search(dir: &Path, uid: u32) -> io::Result<bool> {
    let meta = fs::metadata(dir)?;
    if uid == 0 {
        return Ok(true);
    }
    if meta.uid() == uid {
        return Ok(meta.mode() & 0o100 != 0);
    }
    let acl = read_acl(dir, meta.mode())?;
    let mask = acl.iter().find(|e| e.tag == ACL_MASK).map(|e| e.perm);
    if let Some(e) = acl.iter().find(|e| e.tag == ACL_USER && e.id == uid) {
        return Ok(e.perm & mask.unwrap_or(0o7) & X != 0);
    }
    // Group entries would need the user's groups; only the other class is certain.
    Ok(meta.mode() & 0o001 != 0)
}

/// Gives user `uid` search (`x`) on folder `dir` through an ACL entry, changing nothing else.
pub fn grant_traverse(dir: &Path, uid: u32) -> io::Result<()> {
    if can_search(dir, uid)? {
        return Ok(());
    }
    let meta = fs::metadata(dir)?;
    let acl = with_search(read_acl(dir, meta.mode())?, uid);
    let bytes = encode_acl(&acl);
    rustix::fs::setxattr(dir, XATTR, &bytes, rustix::fs::XattrFlags::empty())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn granting_search_adds_one_user_entry_and_a_mask_and_widens_nothing_else() {
        // The mask must not open the owning group or others: only the named user gains `x`.
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("p");
        private_dir(&d).unwrap();
        assert!(!can_search(&d, 4242).unwrap());
        grant_traverse(&d, 4242).unwrap();
        assert!(can_search(&d, 4242).unwrap());
        assert!(!can_search(&d, 4243).unwrap());
        let mode = fs::metadata(&d).unwrap().mode();
        let acl = read_acl(&d, mode).unwrap();
        let none = ACL_UNDEFINED_ID;
        assert_eq!(
            acl,
            [
                Entry {
                    tag: ACL_USER_OBJ,
                    perm: 0o7,
                    id: none
                },
                Entry {
                    tag: ACL_USER,
                    perm: X,
                    id: 4242
                },
                Entry {
                    tag: ACL_GROUP_OBJ,
                    perm: 0,
                    id: none
                },
                Entry {
                    tag: ACL_MASK,
                    perm: X,
                    id: none
                },
                Entry {
                    tag: ACL_OTHER,
                    perm: 0,
                    id: none
                },
            ]
        );
        // The group bits of the mode show the mask (`drwx--x---+`); others have nothing.
        assert_eq!(mode & 0o777, 0o710);
        // Idempotent.
        grant_traverse(&d, 4242).unwrap();
        assert_eq!(read_acl(&d, mode).unwrap().len(), 5);
    }

    // Parallel guests: one step's staging made `artifacts-v1` private again (chmod 0700) while
    // another step's guest was starting, zeroing the ACL mask; libvirt then failed with
    // "Cannot access storage file … (as uid:64055 …): Permission denied".
    #[test]
    fn making_a_granted_folder_private_again_keeps_the_grant() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("p");
        private_dir(&d).unwrap();
        grant_traverse(&d, 4242).unwrap();
        private_dir(&d).unwrap();
        assert!(can_search(&d, 4242).unwrap());
        assert_eq!(fs::metadata(&d).unwrap().mode() & 0o777, 0o710);
        // A folder left open by an older kiln is still closed.
        let open = dir.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&open).unwrap();
        assert_eq!(fs::metadata(&open).unwrap().mode() & 0o777, 0o700);
    }

    #[test]
    fn modes_are_private_whatever_the_umask() {
        // A umask of 0 must not leave a world-readable cache.
        let dir = tempfile::tempdir().unwrap();
        let old = rustix::process::umask(rustix::fs::Mode::empty());
        let d = dir.path().join("a/b");
        private_dir(&d).unwrap();
        let f = d.join("f");
        fs::write(&f, b"x").unwrap();
        private_file(&f).unwrap();
        rustix::process::umask(old);
        assert_eq!(fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
        assert_eq!(fs::metadata(&f).unwrap().mode() & 0o777, 0o600);
    }
}
