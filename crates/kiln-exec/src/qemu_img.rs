//! Disk images through `qemu-img`, behind the [`DiskTool`] trait: create, overlays, convert, info,
//! and the tool's version for step keys.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use crate::domain_xml::DiskFormat;

/// Compression for qcow2 output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// qcow2's default deflate: readable by every qemu.
    Zlib,
    /// zstd (qcow2 `compression_type=zstd`, qemu ≥ 5.1): several times faster to write.
    Zstd,
}

/// Options of [`DiskTool::convert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConvertOptions {
    /// Output format.
    pub format: DiskFormat,
    /// Compress (qcow2 output only).
    pub compression: Option<Compression>,
    /// Parallel coroutines (`-m`), 1..=16.
    pub coroutines: u8,
    /// Out-of-order writes (`-W`).
    pub out_of_order: bool,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        Self {
            format: DiskFormat::Qcow2,
            compression: None,
            coroutines: 8,
            out_of_order: true,
        }
    }
}

/// Facts from `qemu-img info --output=json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ImageInfo {
    /// Format name (`qcow2`, `raw`, ...).
    pub format: String,
    /// Guest-visible size in bytes.
    pub virtual_size: u64,
    /// Bytes used on the host.
    #[serde(default)]
    pub actual_size: Option<u64>,
    /// The backing file, for overlays.
    #[serde(default)]
    pub backing_filename: Option<String>,
    /// The backing file's format.
    #[serde(default)]
    pub backing_filename_format: Option<String>,
    /// Set when the image was not closed cleanly (lazy refcounts).
    #[serde(default)]
    pub dirty_flag: Option<bool>,
}

/// A failed `qemu-img` run.
#[derive(Debug, thiserror::Error)]
pub enum QemuImgError {
    /// Could not run the program.
    #[error("running `{program}`: {source}")]
    Spawn {
        /// Program path.
        program: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Non-zero exit.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// Output that was not what `qemu-img` prints.
    #[error("`{command}` printed unexpected output: {detail}")]
    Output {
        /// The command line.
        command: String,
        /// What was wrong.
        detail: String,
    },
}

/// Disk image operations.
pub trait DiskTool: Send + Sync {
    /// The tool's version line, e.g. `qemu-img version 7.2.22 (Debian ...)`: part of step keys.
    ///
    /// # Errors
    /// The tool does not run.
    fn version(&self) -> Result<String, QemuImgError>;

    /// A new empty image of `size` bytes.
    ///
    /// # Errors
    /// The tool failed.
    fn create(&self, path: &Path, format: DiskFormat, size: u64) -> Result<(), QemuImgError>;

    /// A qcow2 overlay on `backing` (absolute path recorded), same virtual size.
    ///
    /// # Errors
    /// The tool failed.
    fn create_overlay(
        &self,
        path: &Path,
        backing: &Path,
        backing_format: DiskFormat,
    ) -> Result<(), QemuImgError>;

    /// Converts `src` (format detected by `src_format` if given) into a new image at `dest`.
    ///
    /// # Errors
    /// The tool failed.
    fn convert(
        &self,
        src: &Path,
        src_format: Option<DiskFormat>,
        dest: &Path,
        opts: &ConvertOptions,
    ) -> Result<(), QemuImgError>;

    /// Facts about an image.
    ///
    /// # Errors
    /// The tool failed or printed something unexpected.
    fn info(&self, path: &Path) -> Result<ImageInfo, QemuImgError>;
}

/// The real `qemu-img`.
#[derive(Debug, Clone)]
pub struct QemuImg {
    program: PathBuf,
}

impl Default for QemuImg {
    fn default() -> Self {
        Self {
            program: PathBuf::from("qemu-img"),
        }
    }
}

impl QemuImg {
    /// `qemu-img` at a given path.
    #[must_use]
    pub fn at(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
        }
    }

    fn run(&self, args: &[String]) -> Result<String, QemuImgError> {
        let command = format!("{} {}", self.program.display(), args.join(" "));
        let out = Command::new(&self.program)
            .args(args)
            .output()
            .map_err(|source| QemuImgError::Spawn {
                program: self.program.display().to_string(),
                source,
            })?;
        if !out.status.success() {
            return Err(QemuImgError::Failed {
                command,
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        String::from_utf8(out.stdout).map_err(|_| QemuImgError::Output {
            command,
            detail: "not UTF-8".into(),
        })
    }
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// `qemu-img create` arguments.
#[must_use]
pub fn create_args(path: &Path, format: DiskFormat, size: u64) -> Vec<String> {
    vec![
        "create".into(),
        "-q".into(),
        "-f".into(),
        format.as_str().into(),
        p(path),
        size.to_string(),
    ]
}

/// `qemu-img create` arguments for an overlay.
#[must_use]
pub fn overlay_args(path: &Path, backing: &Path, backing_format: DiskFormat) -> Vec<String> {
    vec![
        "create".into(),
        "-q".into(),
        "-f".into(),
        "qcow2".into(),
        "-b".into(),
        p(backing),
        "-F".into(),
        backing_format.as_str().into(),
        p(path),
    ]
}

/// `qemu-img convert` arguments.
#[must_use]
pub fn convert_args(
    src: &Path,
    src_format: Option<DiskFormat>,
    dest: &Path,
    opts: &ConvertOptions,
) -> Vec<String> {
    let mut args: Vec<String> = vec!["convert".into()];
    if let Some(f) = src_format {
        args.extend(["-f".into(), f.as_str().into()]);
    }
    args.extend(["-O".into(), opts.format.as_str().into()]);
    if opts.format == DiskFormat::Qcow2 {
        match opts.compression {
            Some(Compression::Zstd) => {
                args.extend(["-c".into(), "-o".into(), "compression_type=zstd".into()])
            }
            Some(Compression::Zlib) => args.push("-c".into()),
            None => {}
        }
    }
    args.extend(["-m".into(), opts.coroutines.clamp(1, 16).to_string()]);
    if opts.out_of_order {
        args.push("-W".into());
    }
    args.extend([p(src), p(dest)]);
    args
}

impl DiskTool for QemuImg {
    fn version(&self) -> Result<String, QemuImgError> {
        let out = self.run(&["--version".into()])?;
        out.lines()
            .next()
            .filter(|l| l.starts_with("qemu-img version "))
            .map(str::to_owned)
            .ok_or_else(|| QemuImgError::Output {
                command: "qemu-img --version".into(),
                detail: out.clone(),
            })
    }

    fn create(&self, path: &Path, format: DiskFormat, size: u64) -> Result<(), QemuImgError> {
        self.run(&create_args(path, format, size)).map(drop)
    }

    fn create_overlay(
        &self,
        path: &Path,
        backing: &Path,
        backing_format: DiskFormat,
    ) -> Result<(), QemuImgError> {
        self.run(&overlay_args(path, backing, backing_format))
            .map(drop)
    }

    fn convert(
        &self,
        src: &Path,
        src_format: Option<DiskFormat>,
        dest: &Path,
        opts: &ConvertOptions,
    ) -> Result<(), QemuImgError> {
        self.run(&convert_args(src, src_format, dest, opts))
            .map(drop)
    }

    fn info(&self, path: &Path) -> Result<ImageInfo, QemuImgError> {
        let args = vec!["info".into(), "--output=json".into(), "-U".into(), p(path)];
        let out = self.run(&args)?;
        serde_json::from_str(&out).map_err(|e| QemuImgError::Output {
            command: format!("qemu-img {}", args.join(" ")),
            detail: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn convert_arguments() {
        let opts = ConvertOptions {
            compression: Some(Compression::Zstd),
            coroutines: 32,
            ..ConvertOptions::default()
        };
        let args = convert_args(
            Path::new("/a.raw"),
            Some(DiskFormat::Raw),
            Path::new("/b.qcow2"),
            &opts,
        );
        assert_eq!(
            args.join(" "),
            "convert -f raw -O qcow2 -c -o compression_type=zstd -m 16 -W /a.raw /b.qcow2"
        );
        // Compression is a qcow2 feature: raw output ignores it rather than failing in qemu-img.
        let raw = ConvertOptions {
            format: DiskFormat::Raw,
            compression: Some(Compression::Zlib),
            coroutines: 1,
            out_of_order: false,
        };
        assert_eq!(
            convert_args(Path::new("/a"), None, Path::new("/b"), &raw).join(" "),
            "convert -O raw -m 1 /a /b"
        );
    }

    #[test]
    fn parses_overlay_info() {
        let json = r#"{"virtual-size": 16777216, "filename": "/t/o.qcow2", "cluster-size": 65536,
            "format": "qcow2", "actual-size": 200704, "backing-filename": "/t/base.raw",
            "backing-filename-format": "raw", "dirty-flag": false}"#;
        let info: ImageInfo = serde_json::from_str(json).unwrap();
        assert_eq!(info.virtual_size, 16_777_216);
        assert_eq!(info.backing_filename.as_deref(), Some("/t/base.raw"));
        assert_eq!(info.backing_filename_format.as_deref(), Some("raw"));
    }
}
