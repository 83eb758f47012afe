//! Glance as a source: stream an image's data into a caller-given path, computing md5 + sha512 on
//! the way and comparing them with Glance's `checksum` and `os_hash_value`. The data goes to a
//! temporary file beside the destination and is renamed into place only after it verified; on any
//! failure (mismatch, broken connection, Ctrl-C) nothing is left behind. Where the file lives (the
//! cache's `_base/sha1(image id)`) is the caller's business.

use std::io;
use std::path::Path;

use kiln_cache::hash::{Digests, HashingWriter, MultiHasher};

use crate::cancel::{Cancel, CancellableReader, CancellableWriter};
use crate::error::Error;
use crate::glance::{Glance, Image};
use crate::publish::{ALGOS, verify_stored};

/// A verified download.
#[derive(Clone, Debug)]
pub struct Downloaded {
    pub image: Image,
    pub size: u64,
    pub digests: Digests,
}

/// Downloads image `id` to `dest` (replacing it), verified against Glance's record.
pub fn download(
    glance: &Glance,
    id: &str,
    dest: &Path,
    cancel: &Cancel,
) -> Result<Downloaded, Error> {
    let image = glance.get(id)?;
    if image.status != "active" {
        return Err(Error::NotActive {
            id: id.to_owned(),
            status: image.status,
        });
    }
    let size = image.size.ok_or(Error::Unverifiable {
        id: id.to_owned(),
        field: "size",
    })?;
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let io_err = |action: &'static str| {
        move |source| Error::Io {
            path: dest.to_owned(),
            action,
            source,
        }
    };
    let tmp = tempfile::Builder::new()
        .prefix(".kiln-download-")
        .tempfile_in(dir)
        .map_err(io_err("create a temporary file beside"))?;
    let mut resp = glance.download(id)?;
    let writer = HashingWriter::new(io::BufWriter::with_capacity(1 << 20, tmp), ALGOS);
    let mut writer = CancellableWriter::new(writer, cancel.clone());
    let copied = io::copy(&mut resp, &mut writer);
    if cancel.is_cancelled() {
        return Err(Error::Cancelled);
    }
    copied.map_err(|source| {
        let http = source.get_ref().is_some_and(|e| e.is::<reqwest::Error>());
        Error::Io {
            path: dest.to_owned(),
            action: if source.kind() == io::ErrorKind::TimedOut {
                "download (glance stopped sending)"
            } else if http {
                "download (the connection broke)"
            } else {
                "write"
            },
            source,
        }
    })?;
    let (buffered, bytes, digests) = writer.into_inner().into_parts();
    let tmp = buffered.into_inner().map_err(|e| Error::Io {
        path: dest.to_owned(),
        action: "write",
        source: e.into_error(),
    })?;
    tmp.as_file().sync_all().map_err(io_err("sync"))?;
    if bytes != size {
        return Err(Error::Mismatch {
            what: "size",
            subject: format!("the download of glance image `{id}`"),
            expected: size.to_string(),
            actual: bytes.to_string(),
        });
    }
    // The checks made after an upload: md5 = `checksum`, sha512 = `os_hash_value`; here Glance's
    // values are the expected ones.
    verify_stored(&image, size, &digests).map_err(|e| match e {
        Error::Mismatch {
            what,
            expected,
            actual,
            ..
        } => Error::Mismatch {
            what,
            subject: format!("the download of glance image `{id}`"),
            expected: actual,
            actual: expected,
        },
        other => other,
    })?;
    tmp.persist(dest).map_err(|e| Error::Io {
        path: dest.to_owned(),
        action: "rename into place",
        source: e.error,
    })?;
    // Make the rename durable; a failure here loses nothing that a re-download can't restore.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(Downloaded {
        image,
        size,
        digests,
    })
}

/// Image data read straight from Glance and checked on the way: at the end of the stream the byte
/// count, md5 and sha512 must equal Glance's `size`, `checksum` and `os_hash_value`, else the final
/// read fails (`io::ErrorKind::InvalidData`, the message names both values). For callers that own
/// where the bytes go (kiln-cache's `_base` writes a `.part` file and deletes it on any read error),
/// so nothing unverified is ever renamed into place.
pub struct VerifiedStream {
    inner: CancellableReader<Box<dyn io::Read + Send>>,
    image: Image,
    size: u64,
    hasher: Option<MultiHasher>,
}

impl std::fmt::Debug for VerifiedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedStream")
            .field("image", &self.image.id)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl VerifiedStream {
    /// Wraps `data`, the bytes of `image` (which must be `active`, with a size).
    pub fn new(
        image: Image,
        data: Box<dyn io::Read + Send>,
        cancel: Cancel,
    ) -> Result<Self, Error> {
        if image.status != "active" {
            return Err(Error::NotActive {
                id: image.id.clone(),
                status: image.status,
            });
        }
        let size = image.size.ok_or(Error::Unverifiable {
            id: image.id.clone(),
            field: "size",
        })?;
        Ok(VerifiedStream {
            inner: CancellableReader::new(data, cancel),
            image,
            size,
            hasher: Some(MultiHasher::new(ALGOS)),
        })
    }

    /// Glance's record of the image being read.
    pub fn image(&self) -> &Image {
        &self.image
    }

    fn verify(&mut self) -> io::Result<()> {
        let Some(hasher) = self.hasher.take() else {
            return Ok(());
        };
        let bytes = hasher.byte_count();
        let digests = hasher.finish();
        let id = &self.image.id;
        let result = if bytes == self.size {
            verify_stored(&self.image, bytes, &digests)
        } else {
            Err(Error::Mismatch {
                what: "size",
                subject: format!("the download of glance image `{id}`"),
                expected: self.size.to_string(),
                actual: bytes.to_string(),
            })
        };
        result.map_err(|e| {
            let e = match e {
                // Glance's values are the expected ones here.
                Error::Mismatch {
                    what,
                    subject,
                    expected,
                    actual,
                } if what != "size" => Error::Mismatch {
                    what,
                    subject: subject.replace(
                        &format!("glance image `{id}`"),
                        &format!("the download of glance image `{id}`"),
                    ),
                    expected: actual,
                    actual: expected,
                },
                other => other,
            };
            io::Error::new(io::ErrorKind::InvalidData, e)
        })
    }
}

impl io::Read for VerifiedStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        match (&mut self.hasher, n) {
            (_, 0) => self.verify()?,
            (Some(h), n) => h.update(&buf[..n]),
            (None, _) => {}
        }
        Ok(n)
    }
}

/// Opens image `id` for a verified read (see [`VerifiedStream`]).
pub fn open_verified(glance: &Glance, id: &str, cancel: &Cancel) -> Result<VerifiedStream, Error> {
    let image = glance.get(id)?;
    if image.status != "active" {
        return Err(Error::NotActive {
            id: id.to_owned(),
            status: image.status,
        });
    }
    let resp = glance.download(id)?;
    VerifiedStream::new(image, Box::new(resp), cancel.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use io::Read as _;

    fn image(size: u64, md5: &str, sha512: &str) -> Image {
        serde_json::from_value(serde_json::json!({
            "id": "img", "status": "active", "size": size, "checksum": md5,
            "os_hash_algo": "sha512", "os_hash_value": sha512,
        }))
        .unwrap()
    }

    const ABC_MD5: &str = "900150983cd24fb0d6963f7d28e17f72";
    const ABC_SHA512: &str = "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
                              2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f";

    fn read_all(img: Image, data: &'static [u8]) -> io::Result<Vec<u8>> {
        let mut s = VerifiedStream::new(img, Box::new(data), Cancel::new()).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).map(|_| out)
    }

    #[test]
    fn matching_data_reads_through() {
        assert_eq!(
            read_all(image(3, ABC_MD5, ABC_SHA512), b"abc").unwrap(),
            b"abc"
        );
    }

    #[test]
    fn a_mismatch_fails_the_final_read_naming_both_values() {
        let err = read_all(image(3, ABC_MD5, &"0".repeat(128)), b"abc").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let msg = err.to_string();
        assert!(msg.contains("the download of glance image `img`"), "{msg}");
        assert!(
            msg.contains(&format!("expected `{}`", "0".repeat(128))),
            "{msg}"
        );
        let err = read_all(image(4, ABC_MD5, ABC_SHA512), b"abc").unwrap_err();
        assert!(err.to_string().starts_with("size mismatch"), "{err}");
    }
}
