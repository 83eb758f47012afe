//! Disk images that come from outside are probed once, on arrival, and refused when they would
//! read other host files (a backing file, a qcow2 data file, a vmdk's extents); after that every
//! `qemu-img` call states the format. Real files and the real `qemu-img`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_cache::{BaseCache, CacheError, CacheRoot, FetchRequest, QemuImg, Source};

fn qemu_img(args: &[&str]) {
    let out = Command::new("qemu-img").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "qemu-img {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn cache(dir: &Path) -> BaseCache {
    BaseCache::new(CacheRoot::new(dir.join("c")), QemuImg::from_env())
}

/// Nothing of a refused source stays in `_base`: no entry, no `.part`, no `.converted`.
fn base_is_empty(dir: &Path) -> bool {
    fs::read_dir(dir.join("c/_base"))
        .map(|d| d.count() == 0)
        .unwrap_or(true)
}

fn secret(dir: &Path) -> PathBuf {
    let p = dir.join("host-secret");
    fs::write(&p, "KILN-HOST-SECRET\n").unwrap();
    p
}

// A qcow2 source naming a host file as its backing file is refused on arrival, naming the file.
#[test]
fn a_qcow2_source_with_a_backing_file_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let secret = secret(dir.path());
    let src = dir.path().join("src.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        &format!("backing_file={},backing_fmt=raw", secret.display()),
        src.to_str().unwrap(),
        "1M",
    ]);
    let err = cache(dir.path())
        .ensure(FetchRequest::new(Source::Path(src)).disk_format("qcow2"))
        .unwrap_err();
    assert!(matches!(err, CacheError::UnsafeImage { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("backing file {}", secret.display())),
        "{err}"
    );
    assert!(base_is_empty(dir.path()));
}

// A qcow2 source with an external data file is refused on arrival, naming the data file.
#[test]
fn a_qcow2_source_with_a_data_file_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.raw");
    let src = dir.path().join("src.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        &format!("data_file={}", data.display()),
        src.to_str().unwrap(),
        "1M",
    ]);
    let err = cache(dir.path())
        .ensure(
            FetchRequest::new(Source::Path(src))
                .disk_format("qcow2")
                .convert_to_raw(),
        )
        .unwrap_err();
    assert!(matches!(err, CacheError::UnsafeImage { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("data file {}", data.display())),
        "{err}"
    );
    assert!(base_is_empty(dir.path()));
}

// Formats other than raw and qcow2 are refused on arrival: a vmdk names its extents, other files
// qemu-img would read.
#[test]
fn a_vmdk_source_is_refused_on_arrival() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.vmdk");
    qemu_img(&["create", "-q", "-f", "vmdk", src.to_str().unwrap(), "1M"]);
    let err = cache(dir.path())
        .ensure(FetchRequest::new(Source::Path(src)).convert_to_raw())
        .unwrap_err();
    assert!(
        matches!(err, CacheError::UnsupportedImageFormat { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("`vmdk`"), "{err}");
    assert!(base_is_empty(dir.path()));
}

// A raw `_base` entry whose bytes begin with a qcow2 header (what a guest may write) keeps its
// recorded format: its size is the raw file's, not the 1 MiB the header claims, so a smaller
// root disk is refused and the overlay reads the raw bytes.
#[test]
fn a_raw_entry_holding_a_qcow2_header_is_overlaid_as_raw() {
    let dir = tempfile::tempdir().unwrap();
    let secret = secret(dir.path());
    // A raw 16 MiB image whose first sector is a qcow2 header backed by the secret.
    let hostile = dir.path().join("hostile.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        &format!("backing_file={},backing_fmt=raw", secret.display()),
        hostile.to_str().unwrap(),
        "1M",
    ]);
    let header = fs::read(&hostile).unwrap();
    let src = dir.path().join("src.raw");
    let mut bytes = header[..512].to_vec();
    bytes.resize(16 << 20, 0);
    fs::write(&src, &bytes).unwrap();
    // Arrives declared raw but probes as qcow2: refused.
    let c = cache(dir.path());
    let err = c
        .ensure(FetchRequest::new(Source::Path(src.clone())).disk_format("raw"))
        .unwrap_err();
    assert!(
        matches!(
            err,
            CacheError::UnsafeImage { .. } | CacheError::FormatMismatch { .. }
        ),
        "{err}"
    );
    // Arrives inside a clean qcow2 (the guest's disk, converted): stored raw, recorded raw.
    let wrapped = dir.path().join("wrapped.qcow2");
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "qcow2",
        src.to_str().unwrap(),
        wrapped.to_str().unwrap(),
    ]);
    let entry = c
        .ensure(
            FetchRequest::new(Source::Path(wrapped))
                .disk_format("qcow2")
                .convert_to_raw(),
        )
        .unwrap();
    assert_eq!(entry.record.disk_format.as_deref(), Some("raw"));
    let err = c
        .overlay(&entry, &dir.path().join("small.qcow2"), Some(2 << 20))
        .unwrap_err();
    assert!(
        matches!(
            err,
            CacheError::DiskSmallerThanImage {
                virtual_size: 16_777_216,
                ..
            }
        ),
        "{err}"
    );
    let info = c
        .overlay(&entry, &dir.path().join("disk.qcow2"), None)
        .unwrap();
    assert_eq!(info.virtual_size, 16 << 20);
    assert_eq!(info.backing_filename_format.as_deref(), Some("raw"));
}
