//! Inter-process entry locks: POSIX record locks on `locks/<prefix><name>`, as Nova's oslo lock takes them.
//!
//! kiln takes open-file-description locks (`F_OFD_SETLKW`). They live in the same kernel lock table as the
//! classic `fcntl`/`lockf` record locks oslo takes, so a kiln and a nova-compute locking the same file
//! exclude each other; unlike classic locks they belong to the open file, so two threads of one process
//! exclude each other too, and closing some other descriptor of the file does not drop the lock. The
//! kernel releases the lock when the holder dies, so a killed writer never leaves a stale lock. Lock
//! files are never deleted (deleting one races with a process that has just opened it).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{CacheError, IoContext};

/// An exclusive lock, held until dropped.
#[derive(Debug)]
pub struct EntryLock {
    _file: File,
    path: PathBuf,
}

impl EntryLock {
    /// Waits for and takes the lock on `path` (created if missing).
    pub fn acquire(path: &Path) -> Result<Self, CacheError> {
        let file = open(path)?;
        loop {
            match set_lock(&file, libc::F_OFD_SETLKW) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).at(path),
            }
        }
        Ok(EntryLock {
            _file: file,
            path: path.to_owned(),
        })
    }

    /// Takes the lock if nobody holds it.
    pub fn try_acquire(path: &Path) -> Result<Option<Self>, CacheError> {
        let file = open(path)?;
        match set_lock(&file, libc::F_OFD_SETLK) {
            Ok(()) => Ok(Some(EntryLock {
                _file: file,
                path: path.to_owned(),
            })),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => Ok(None),
            Err(e) => Err(e).at(path),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Opens (creates `0600`) a lock file in a `0700` folder, never through a symlink: another user can
/// neither create the file first nor point it elsewhere, so nobody else can hold a kiln key's lock.
fn open(path: &Path) -> Result<File, CacheError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = path.parent()
        && !dir.is_dir()
    {
        crate::private::private_dir(dir).at(dir)?;
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(crate::private::FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .at(path)
}

fn set_lock(file: &File, cmd: libc::c_int) -> io::Result<()> {
    // SAFETY: `flock` is plain old data; all-zero is a valid value that we then fill in.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 0;
    fl.l_len = 0; // the whole file, as `lockf(fd, F_LOCK, 0)` from offset 0
    fl.l_pid = 0; // required for OFD locks
    // SAFETY: the descriptor is open for the duration of the call and `fl` is a valid `flock`.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), cmd, &mut fl) };
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_in_the_same_process_is_refused_until_the_first_drops() {
        // Classic POSIX locks would let a second open in the same process through; OFD locks must not.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locks").join("kiln-x");
        let first = EntryLock::acquire(&path).unwrap();
        assert!(EntryLock::try_acquire(&path).unwrap().is_none());
        let waiter = {
            let path = path.clone();
            std::thread::spawn(move || EntryLock::acquire(&path).map(|_| ()))
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            !waiter.is_finished(),
            "the waiter got the lock while it was held"
        );
        drop(first);
        waiter.join().unwrap().unwrap();
        assert!(EntryLock::try_acquire(&path).unwrap().is_some());
    }

    #[test]
    fn a_lock_file_planted_as_a_symlink_is_refused_and_the_locks_folder_is_private() {
        // A symlink in `locks/` would let its owner's file (which they can hold open) stand for a key.
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let locks = dir.path().join("locks");
        let held = EntryLock::acquire(&locks.join("kiln-a")).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&locks), 0o700);
        assert_eq!(mode(held.path()), 0o600);
        let elsewhere = dir.path().join("theirs");
        std::fs::write(&elsewhere, b"").unwrap();
        std::os::unix::fs::symlink(&elsewhere, locks.join("kiln-b")).unwrap();
        let err = EntryLock::try_acquire(&locks.join("kiln-b")).unwrap_err();
        let CacheError::Io { source, .. } = err else {
            panic!("{err}")
        };
        assert_eq!(source.raw_os_error(), Some(libc::ELOOP));
    }
}
