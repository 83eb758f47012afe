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
    tool.create_overlay(&overlay, &base, DiskFormat::Raw)
        .unwrap();
    let info = tool.info(&overlay).unwrap();
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
    tool.convert(&overlay, Some(DiskFormat::Qcow2), &out, &opts)
        .unwrap();
    let info = tool.info(&out).unwrap();
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
    let err = tool.info(&dir.path().join("missing.qcow2")).unwrap_err();
    assert!(matches!(err, QemuImgError::Failed { .. }), "{err}");
    assert!(err.to_string().contains("missing.qcow2"), "{err}");
    let err = QemuImg::at("/nonexistent/qemu-img").version().unwrap_err();
    assert!(matches!(err, QemuImgError::Spawn { .. }), "{err}");
}
