//! The references a qcow2 file makes to other files, read from its header in-process: the backing
//! file name and the external data file name. Nothing else of the image is read.
//!
//! Every offset and length comes from the file and is checked before use: the reader reads at most
//! the first cluster (≤ 2 MiB), never follows a name, and fails with a typed error on a header that
//! qemu itself would refuse. See `docs/decisions/qcow2-header-reader.md` for why this is not
//! qcow2-rs.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStringExt as _;
use std::path::Path;

const MAGIC: &[u8; 4] = b"QFI\xfb";
/// Header length of version 2 (and the minimum of version 3).
const V2_HEADER_LEN: usize = 72;
/// qemu refuses longer backing file names.
const MAX_BACKING_NAME: usize = 1023;
const EXT_END: u32 = 0;
const EXT_DATA_FILE: u32 = 0x4441_5441;
const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
/// Incompatible feature bit 2: the image's data lives in an external data file.
const INCOMPAT_DATA_FILE: u64 = 1 << 2;

/// What a qcow2 header says about other files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Qcow2Refs {
    /// The backing file name as stored (absolute, or relative to the image's folder).
    pub backing: Option<OsString>,
    /// The backing file's format, when the header names it (`raw`, `qcow2`).
    pub backing_format: Option<String>,
    /// The external data file, when the image has one (`Some(empty)` when the feature bit is set
    /// but the name extension is missing).
    pub data_file: Option<OsString>,
}

/// A header that is not a valid qcow2 header.
#[derive(Debug, thiserror::Error)]
pub enum Qcow2Error {
    #[error("the header is truncated: {what} needs bytes up to {end}, the file has {len}")]
    Truncated {
        what: &'static str,
        end: u64,
        len: u64,
    },
    #[error("unsupported qcow2 version {0} (expected 2 or 3)")]
    Version(u32),
    #[error("cluster_bits {0} is out of range (9..=21)")]
    ClusterBits(u32),
    #[error("header_length {0} is out of range")]
    HeaderLength(u32),
    #[error("the backing file name is {0} bytes long (at most 1023)")]
    BackingNameTooLong(u32),
    #[error(
        "the backing file name at offset {offset} ({size} bytes) lies outside the first cluster"
    )]
    BackingOutOfBounds { offset: u64, size: u32 },
    #[error(
        "header extension {ext_type:#010x} at offset {offset} ({len} bytes) runs past the first cluster"
    )]
    Extension {
        ext_type: u32,
        offset: u64,
        len: u32,
    },
    #[error("reading the header failed")]
    Io(#[from] io::Error),
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The references of the qcow2 image at `path`, or `None` if the file is not qcow2 (no magic).
pub fn read_refs(path: &Path) -> Result<Option<Qcow2Refs>, Qcow2Error> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut head = Vec::with_capacity(V2_HEADER_LEN);
    file.take(V2_HEADER_LEN as u64).read_to_end(&mut head)?;
    if head.len() < 4 || &head[..4] != MAGIC {
        return Ok(None);
    }
    if head.len() < V2_HEADER_LEN {
        return Err(Qcow2Error::Truncated {
            what: "the header",
            end: V2_HEADER_LEN as u64,
            len,
        });
    }
    let cluster_bits = be32(&head, 20);
    if !(9..=21).contains(&cluster_bits) {
        return Err(Qcow2Error::ClusterBits(cluster_bits));
    }
    // Everything this reader needs lies in the first cluster; read no further.
    let cluster = 1usize << cluster_bits;
    let mut first = Vec::with_capacity(cluster.min(len as usize));
    File::open(path)?
        .take(cluster as u64)
        .read_to_end(&mut first)?;
    parse(&first, len).map(Some)
}

/// Parses the first cluster (or less, if the file is shorter) of a qcow2 file `len` bytes long.
fn parse(b: &[u8], len: u64) -> Result<Qcow2Refs, Qcow2Error> {
    let truncated = |what, end: usize| Qcow2Error::Truncated {
        what,
        end: end as u64,
        len,
    };
    if b.len() < V2_HEADER_LEN {
        return Err(truncated("the header", V2_HEADER_LEN));
    }
    let version = be32(b, 4);
    let cluster = 1usize << be32(b, 20).clamp(9, 21);
    let (header_len, incompat) = match version {
        2 => (V2_HEADER_LEN, 0),
        3 => {
            if b.len() < 104 {
                return Err(truncated("the version 3 header", 104));
            }
            let hl = be32(b, 100);
            if hl < 104 || !hl.is_multiple_of(8) || hl as usize > cluster {
                return Err(Qcow2Error::HeaderLength(hl));
            }
            (hl as usize, be64(b, 72))
        }
        v => return Err(Qcow2Error::Version(v)),
    };
    let mut refs = Qcow2Refs::default();

    let backing_offset = be64(b, 8);
    let backing_size = be32(b, 16);
    if backing_offset != 0 && backing_size != 0 {
        if backing_size as usize > MAX_BACKING_NAME {
            return Err(Qcow2Error::BackingNameTooLong(backing_size));
        }
        let end = backing_offset.checked_add(u64::from(backing_size));
        let Some(end) = end.filter(|&e| e <= cluster as u64) else {
            return Err(Qcow2Error::BackingOutOfBounds {
                offset: backing_offset,
                size: backing_size,
            });
        };
        let (start, end) = (backing_offset as usize, end as usize);
        if end > b.len() {
            return Err(truncated("the backing file name", end));
        }
        refs.backing = Some(OsString::from_vec(b[start..end].to_vec()));
    }

    // Header extensions: type, length, data padded to 8 bytes, until type 0.
    let mut at = header_len;
    loop {
        if at + 8 > b.len() {
            // The file (or the first cluster) ends here: no further extension can exist.
            break;
        }
        let ext_type = be32(b, at);
        let ext_len = be32(b, at + 4);
        if ext_type == EXT_END {
            break;
        }
        let data = at + 8;
        let padded = (ext_len as usize).div_ceil(8) * 8;
        let Some(next) = data.checked_add(padded).filter(|&n| n <= cluster) else {
            return Err(Qcow2Error::Extension {
                ext_type,
                offset: at as u64,
                len: ext_len,
            });
        };
        if data + ext_len as usize > b.len() {
            return Err(truncated("a header extension", data + ext_len as usize));
        }
        let value = &b[data..data + ext_len as usize];
        let value = value.split(|&c| c == 0).next().unwrap_or_default();
        match ext_type {
            EXT_DATA_FILE => refs.data_file = Some(OsString::from_vec(value.to_vec())),
            EXT_BACKING_FORMAT => {
                refs.backing_format = Some(String::from_utf8_lossy(value).into_owned());
            }
            _ => {}
        }
        at = next;
    }
    if incompat & INCOMPAT_DATA_FILE != 0 && refs.data_file.is_none() {
        refs.data_file = Some(OsString::new());
    }
    Ok(refs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn qemu_img(args: &[&str]) {
        let out = Command::new("qemu-img").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "qemu-img {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn s(p: &Path) -> &str {
        p.to_str().unwrap()
    }

    #[test]
    fn backing_names_of_real_v2_and_v3_overlays_are_read_as_qemu_img_wrote_them() {
        // The chain check in prune and verify stands on this reader agreeing with qemu-img.
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.raw");
        std::fs::write(&base, vec![0u8; 1 << 20]).unwrap();
        let v3 = dir.path().join("v3.qcow2");
        let v2 = dir.path().join("v2.qcow2");
        qemu_img(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            s(&base),
            "-F",
            "raw",
            s(&v3),
        ]);
        qemu_img(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            "compat=0.10",
            "-b",
            "base.raw",
            "-F",
            "raw",
            s(&v2),
        ]);
        let refs = read_refs(&v3).unwrap().unwrap();
        assert_eq!(refs.backing, Some(base.clone().into_os_string()));
        assert_eq!(refs.backing_format.as_deref(), Some("raw"));
        assert_eq!(
            read_refs(&v2).unwrap().unwrap().backing,
            Some(OsString::from("base.raw"))
        );
        let plain = dir.path().join("plain.qcow2");
        qemu_img(&["create", "-q", "-f", "qcow2", s(&plain), "1M"]);
        assert_eq!(read_refs(&plain).unwrap(), Some(Qcow2Refs::default()));
        assert_eq!(read_refs(&base).unwrap(), None, "a raw file is not qcow2");
    }

    #[test]
    fn an_external_data_file_is_reported_as_a_reference() {
        // A qcow2 whose data lives in another file points outside its entry just as a backing file does.
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("d.qcow2");
        let data = dir.path().join("d.data");
        qemu_img(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            &format!("data_file={}", s(&data)),
            s(&img),
            "1M",
        ]);
        let refs = read_refs(&img).unwrap().unwrap();
        assert_eq!(refs.data_file, Some(data.into_os_string()));
        assert_eq!(refs.backing, None);
    }

    fn header(version: u32) -> Vec<u8> {
        let mut b = vec![0u8; 512];
        b[..4].copy_from_slice(MAGIC);
        b[4..8].copy_from_slice(&version.to_be_bytes());
        b[20..24].copy_from_slice(&16u32.to_be_bytes());
        if version == 3 {
            b[100..104].copy_from_slice(&104u32.to_be_bytes());
        }
        b
    }

    #[test]
    fn hostile_headers_are_refused_with_a_reason_not_a_panic() {
        // Artifacts are written by guests' tools; a crafted header must not crash or mislead prune.
        let len = 512;
        let mut b = header(3);
        b[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
        b[16..20].copy_from_slice(&8u32.to_be_bytes());
        assert!(matches!(
            parse(&b, len),
            Err(Qcow2Error::BackingOutOfBounds { .. })
        ));

        let mut b = header(3);
        b[8..16].copy_from_slice(&200u64.to_be_bytes());
        b[16..20].copy_from_slice(&5000u32.to_be_bytes());
        assert!(matches!(
            parse(&b, len),
            Err(Qcow2Error::BackingNameTooLong(5000))
        ));

        let mut b = header(3);
        b[8..16].copy_from_slice(&400u64.to_be_bytes());
        b[16..20].copy_from_slice(&200u32.to_be_bytes());
        assert!(matches!(parse(&b, len), Err(Qcow2Error::Truncated { .. })));

        let mut b = header(3);
        b[104..108].copy_from_slice(&EXT_DATA_FILE.to_be_bytes());
        b[108..112].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(parse(&b, len), Err(Qcow2Error::Extension { .. })));

        let mut b = header(3);
        b[100..104].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(parse(&b, len), Err(Qcow2Error::HeaderLength(_))));

        assert!(matches!(
            parse(&header(7), len),
            Err(Qcow2Error::Version(7))
        ));
        assert!(matches!(
            parse(&header(3)[..50], 50),
            Err(Qcow2Error::Truncated { .. })
        ));

        let mut b = header(3);
        b[72..80].copy_from_slice(&INCOMPAT_DATA_FILE.to_be_bytes());
        assert_eq!(parse(&b, len).unwrap().data_file, Some(OsString::new()));
        assert_eq!(parse(&header(2), len).unwrap(), Qcow2Refs::default());
    }
}
