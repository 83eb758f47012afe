//! Glance as a source: stream an image's data into a caller-given path, computing md5 + sha512 on
//! the way and comparing them with Glance's `checksum` and `os_hash_value`. The data goes to a
//! temporary file beside the destination and is renamed into place only after it verified; on any
//! failure (mismatch, broken connection, Ctrl-C) nothing is left behind. Where the file lives (the
//! cache's `_base/sha1(image id)`) is the caller's business.

use std::io;
use std::path::Path;

use kiln_cache::hash::{Digests, HashingWriter};

use crate::cancel::{Cancel, CancellableWriter};
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
        let broke = source.get_ref().is_some_and(|e| e.is::<reqwest::Error>());
        Error::Io {
            path: dest.to_owned(),
            action: if broke {
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
