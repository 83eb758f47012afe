//! `QemuImg` against the real qemu-img and qemu-io.

mod common;

use std::process::Command;

use kiln_exec::{Compression, ConvertOptions, DiskFormat, DiskTool, QemuImg, QemuImgError};

fn write_pattern(disk: &std::path::Path, fmt: &str, byte: u8, offset: &str) {
    let out = Command::new("qemu-io")
        .args(["-f", fmt, "-c", &format!("write -P {byte} {offset} 64k")])
        .arg(disk)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn reads_pattern(disk: &std::path::Path, fmt: &str, byte: u8, offset: &str) -> bool {
    Command::new("qemu-io")
        .args([
            "-f",
            fmt,
            "-r",
            "-c",
            &format!("read -P {byte} {offset} 64k"),
        ])
        .arg(disk)
        .output()
        .map(|o| {
            o.status.success()
                && !String::from_utf8_lossy(&o.stdout).contains("Pattern verification failed")
        })
        .unwrap()
}

// The whole Nova-style chain: raw base → qcow2 overlay (writes land in the overlay only) →
// zstd-compressed qcow2 holding both layers' data.
#[test]
fn create_overlay_convert_and_info() {
    let tool = QemuImg::default();
    let dir = common::workdir();
    let base = dir.path().join("base.raw");
    tool.create(&base, DiskFormat::Raw, 32 << 20).unwrap();
    write_pattern(&base, "raw", 0xaa, "0");

    let overlay = dir.path().join("overlay.qcow2");
    let made = tool
        .create_overlay(&overlay, &base, DiskFormat::Raw)
        .unwrap();
    let info = tool.info(&overlay, DiskFormat::Qcow2).unwrap();
    assert_eq!(made, info);
    assert_eq!(info.format, "qcow2");
    assert_eq!(info.virtual_size, 32 << 20);
    assert_eq!(
        info.backing_filename.as_deref(),
        Some(base.to_str().unwrap())
    );
    assert_eq!(info.backing_filename_format.as_deref(), Some("raw"));
    write_pattern(&overlay, "qcow2", 0x55, "1M");
    assert!(
        !reads_pattern(&base, "raw", 0x55, "1M"),
        "overlay write reached the base"
    );

    let out = dir.path().join("out.qcow2");
    let opts = ConvertOptions {
        compression: Some(Compression::Zstd),
        ..ConvertOptions::default()
    };
    tool.convert(&overlay, DiskFormat::Qcow2, &out, &opts)
        .unwrap();
    let info = tool.info(&out, DiskFormat::Qcow2).unwrap();
    assert_eq!(info.format, "qcow2");
    assert_eq!(
        info.backing_filename, None,
        "convert must flatten the chain"
    );
    assert!(reads_pattern(&out, "qcow2", 0xaa, "0"));
    assert!(reads_pattern(&out, "qcow2", 0x55, "1M"));
    let json = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&json.stdout).contains("\"compression-type\": \"zstd\""));
}

#[test]
fn version_and_errors() {
    let tool = QemuImg::default();
    assert!(tool.version().unwrap().starts_with("qemu-img version "));
    let dir = common::workdir();
    let err = tool
        .info(&dir.path().join("missing.qcow2"), DiskFormat::Qcow2)
        .unwrap_err();
    assert!(matches!(err, QemuImgError::Failed { .. }), "{err}");
    assert!(err.to_string().contains("missing.qcow2"), "{err}");
    let err = QemuImg::at("/nonexistent/qemu-img").version().unwrap_err();
    assert!(matches!(err, QemuImgError::Spawn { .. }), "{err}");
}

/// The sector a hostile guest writes over LBA 0 of its raw disk: a qcow2 v2 header for a 1 MiB
/// image whose clusters are all unallocated (L1 and refcount tables in zeroed clusters), so a
/// reader that takes it for qcow2 reads `backing` instead.
fn hostile_qcow2_header(backing: &std::path::Path) -> Vec<u8> {
    let name = backing.to_str().unwrap().as_bytes();
    let mut h = Vec::new();
    h.extend_from_slice(b"QFI\xfb");
    h.extend_from_slice(&2u32.to_be_bytes()); // version
    h.extend_from_slice(&72u64.to_be_bytes()); // backing_file_offset
    h.extend_from_slice(&u32::try_from(name.len()).unwrap().to_be_bytes());
    h.extend_from_slice(&16u32.to_be_bytes()); // cluster_bits
    h.extend_from_slice(&(1u64 << 20).to_be_bytes()); // size
    h.extend_from_slice(&0u32.to_be_bytes()); // crypt_method
    h.extend_from_slice(&1u32.to_be_bytes()); // l1_size
    h.extend_from_slice(&0x10000u64.to_be_bytes()); // l1_table_offset
    h.extend_from_slice(&0x20000u64.to_be_bytes()); // refcount_table_offset
    h.extend_from_slice(&1u32.to_be_bytes()); // refcount_table_clusters
    h.extend_from_slice(&0u32.to_be_bytes()); // nb_snapshots
    h.extend_from_slice(&0u64.to_be_bytes()); // snapshots_offset
    assert_eq!(h.len(), 72);
    h.extend_from_slice(name);
    h.resize(512, 0);
    h
}

fn file_contains(file: &std::path::Path, needle: &str) -> bool {
    Command::new("grep")
        .args(["-a", "-F", "-q", needle])
        .arg(file)
        .status()
        .unwrap()
        .success()
}

// A raw disk a guest wrote a qcow2 header into stays raw through every qemu-img call kiln makes
// (info, overlay, convert, head): none of them reads the host file the header names.
#[test]
fn a_raw_disk_holding_a_guest_written_qcow2_header_is_read_as_raw() {
    let tool = QemuImg::default();
    let dir = common::workdir();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "KILN-HOST-SECRET-5f1c0e9a\n").unwrap();
    let disk = dir.path().join("disk.raw");
    tool.create(&disk, DiskFormat::Raw, 16 << 20).unwrap();
    let header = hostile_qcow2_header(&secret);
    let mut f = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
    std::io::Write::write_all(&mut f, &header).unwrap();
    drop(f);
    // What a format probe makes of it: a 1 MiB qcow2 backed by the host file.
    let probed = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(&disk)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&probed.stdout).contains(secret.to_str().unwrap()));

    let info = tool.info(&disk, DiskFormat::Raw).unwrap();
    assert_eq!((info.format.as_str(), info.virtual_size), ("raw", 16 << 20));
    assert_eq!(info.backing_filename, None);

    let overlay = dir.path().join("overlay.qcow2");
    let made = tool
        .create_overlay(&overlay, &disk, DiskFormat::Raw)
        .unwrap();
    assert_eq!(made.virtual_size, 16 << 20);
    assert_eq!(made.backing_filename_format.as_deref(), Some("raw"));
    assert_eq!(&tool.head(&overlay, DiskFormat::Qcow2, 1).unwrap(), &header);

    let out = dir.path().join("out.raw");
    let opts = ConvertOptions {
        format: DiskFormat::Raw,
        ..ConvertOptions::default()
    };
    tool.convert(&overlay, DiskFormat::Qcow2, &out, &opts)
        .unwrap();
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 16 << 20);
    assert!(!file_contains(&out, "KILN-HOST-SECRET"));
    assert_eq!(&std::fs::read(&out).unwrap()[..512], &header[..]);
}
