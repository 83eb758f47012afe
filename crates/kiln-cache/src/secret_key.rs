//! The cache's secret key: 32 random bytes in `<root>/secret-key` (mode `0600`), created on first
//! use. Steps shaped by a secret (a password hashed into an image) are keyed by an HMAC-SHA256 of
//! the secret's value under this key: a rotated secret changes the key and rebuilds, while the
//! value, or a plain hash someone could test guesses against, never reaches a key, a plan or the
//! artifact store.

use std::fs;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use hmac::{KeyInit as _, Mac as _};

use crate::error::{CacheError, IoContext};
use crate::root::CacheRoot;

/// Bytes in the key.
pub const SECRET_KEY_LEN: usize = 32;

impl CacheRoot {
    /// `<root>/secret-key`.
    pub fn secret_key_path(&self) -> std::path::PathBuf {
        self.path().join("secret-key")
    }

    /// The cache's secret key, created from the OS's random source on first use (written `0600`
    /// to a temporary file, then linked into place, so two processes agree on one key). A key
    /// file that others may read is refused: fix its mode (`chmod 600`) or delete it.
    pub fn secret_key(&self) -> Result<[u8; SECRET_KEY_LEN], CacheError> {
        let path = self.secret_key_path();
        if let Some(key) = read_key(&path)? {
            return Ok(key);
        }
        fs::create_dir_all(self.path()).at(self.path())?;
        let mut key = [0u8; SECRET_KEY_LEN];
        fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut key))
            .at("/dev/urandom")?;
        let tmp = self
            .path()
            .join(format!(".secret-key.{}.tmp", std::process::id()));
        let _ = fs::remove_file(&tmp);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .at(&tmp)?;
        f.write_all(&key).and_then(|()| f.sync_all()).at(&tmp)?;
        drop(f);
        // `link` does not replace: whoever linked first wins and everyone reads that key.
        let linked = fs::hard_link(&tmp, &path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(key),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                read_key(&path)?.ok_or_else(|| CacheError::Io {
                    path: path.clone(),
                    source: std::io::Error::other("the secret key vanished while it was created"),
                })
            }
            Err(e) => Err(e).at(&path),
        }
    }

    /// HMAC-SHA256 of `value` under [`Self::secret_key`].
    pub fn secret_mac(&self, value: &[u8]) -> Result<[u8; 32], CacheError> {
        Ok(mac(&self.secret_key()?, value))
    }
}

/// HMAC-SHA256 of `value` under `key`.
pub fn mac(key: &[u8; SECRET_KEY_LEN], value: &[u8]) -> [u8; 32] {
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(value);
    m.finalize().into_bytes().into()
}

fn read_key(path: &Path) -> Result<Option<[u8; SECRET_KEY_LEN]>, CacheError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).at(path),
    };
    let mode = fs::metadata(path).at(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(CacheError::Io {
            path: path.to_owned(),
            source: std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "the cache's secret key is readable by others (mode {:o}); run `chmod 600` on it or delete it",
                    mode & 0o777
                ),
            ),
        });
    }
    let key: [u8; SECRET_KEY_LEN] = bytes.try_into().map_err(|b: Vec<u8>| CacheError::Io {
        path: path.to_owned(),
        source: std::io::Error::other(format!(
            "the cache's secret key has {} bytes, not {SECRET_KEY_LEN}; delete it to make a new one",
            b.len()
        )),
    })?;
    Ok(Some(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The key is what keeps a step key from being a guessable hash of a password.
    #[test]
    fn secret_key_is_created_once_0600_and_reused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = CacheRoot::new(tmp.path().join("cache"));
        let a = root.secret_key().unwrap();
        let b = root.secret_key().unwrap();
        assert_eq!(a, b);
        assert_ne!(a, [0u8; SECRET_KEY_LEN]);
        let mode = fs::metadata(root.secret_key_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let other = CacheRoot::new(tmp.path().join("other"));
        assert_ne!(other.secret_key().unwrap(), a, "each cache has its own key");
    }

    #[test]
    fn macs_change_with_the_value_and_the_cache_and_are_not_plain_hashes() {
        use sha2::Digest as _;
        let tmp = tempfile::tempdir().unwrap();
        let one = CacheRoot::new(tmp.path().join("one"));
        let two = CacheRoot::new(tmp.path().join("two"));
        let m = one.secret_mac(b"hunter2").unwrap();
        assert_eq!(m, one.secret_mac(b"hunter2").unwrap());
        assert_ne!(m, one.secret_mac(b"hunter3").unwrap());
        assert_ne!(m, two.secret_mac(b"hunter2").unwrap());
        let plain: [u8; 32] = sha2::Sha256::digest(b"hunter2").into();
        assert_ne!(m, plain);
    }

    #[test]
    fn a_key_others_can_read_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = CacheRoot::new(tmp.path());
        root.secret_key().unwrap();
        fs::set_permissions(root.secret_key_path(), fs::Permissions::from_mode(0o644)).unwrap();
        let e = root.secret_key().unwrap_err();
        let text = format!("{:?}", e);
        assert!(text.contains("chmod 600"), "{text}");
    }

    // RFC 4231 test case 2: the HMAC is the standard one.
    #[test]
    fn mac_is_hmac_sha256() {
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        // With a 4-byte key zero-padded to 32 bytes HMAC equals the 4-byte key's HMAC.
        assert_eq!(
            hex::encode(mac(&key, b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
