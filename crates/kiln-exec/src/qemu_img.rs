//! Disk images behind the [`DiskTool`] trait: create, overlays, convert (with progress), info,
//! and the tool's version for step keys. The one `qemu-img` runner is kiln-cache's
//! [`kiln_cache::QemuImg`]; this is a layer typed with [`DiskFormat`].
//!
//! Every operation takes the format of each image it reads as a required [`DiskFormat`]: kiln
//! made these images, so it knows, and a guest-written disk is never handed to qemu-img's format
//! probe (a raw disk holding a qcow2 header that names a host file would read that file).

use std::path::Path;

pub use kiln_cache::{Compression, ImageInfo};

use crate::domain_xml::DiskFormat;

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
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// An image kiln refuses to use: an overlay that does not name the backing kiln gave it.
    #[error("{0}")]
    Refused(String),
    /// Output that was not what `qemu-img` prints.
    #[error("`{command}` printed unexpected output: {detail}")]
    Output {
        /// The command line.
        command: String,
        /// What was wrong.
        detail: String,
    },
}

impl From<kiln_cache::CacheError> for QemuImgError {
    fn from(e: kiln_cache::CacheError) -> Self {
        match e {
            kiln_cache::CacheError::Spawn { program, source } => Self::Spawn { program, source },
            kiln_cache::CacheError::Tool {
                command,
                status,
                stderr,
            } => Self::Failed {
                command,
                status,
                stderr,
            },
            kiln_cache::CacheError::ToolOutput { command, detail } => {
                Self::Output { command, detail }
            }
            e @ (kiln_cache::CacheError::UnexpectedBacking { .. }
            | kiln_cache::CacheError::UnsafeImage { .. }) => Self::Refused(e.to_string()),
            other => Self::Output {
                command: "qemu-img".into(),
                detail: other.to_string(),
            },
        }
    }
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

    /// A qcow2 overlay on `backing` (an absolute path, with `backing_fmt` recorded), same virtual
    /// size; checked afterwards to name exactly that backing file and format and no data file.
    ///
    /// # Errors
    /// The tool failed, or the overlay names another backing.
    fn create_overlay(
        &self,
        path: &Path,
        backing: &Path,
        backing_format: DiskFormat,
    ) -> Result<ImageInfo, QemuImgError>;

    /// Grows the image at `path` (of `format`) to `size` bytes.
    ///
    /// # Errors
    /// The tool failed.
    fn resize(&self, path: &Path, format: DiskFormat, size: u64) -> Result<(), QemuImgError>;

    /// Converts `src`, read as `src_format` (never probed), into a new image at `dest`.
    ///
    /// # Errors
    /// The tool failed.
    fn convert(
        &self,
        src: &Path,
        src_format: DiskFormat,
        dest: &Path,
        opts: &ConvertOptions,
    ) -> Result<(), QemuImgError> {
        self.convert_with_progress(src, src_format, dest, opts, &mut |_| {})
    }

    /// [`DiskTool::convert`], calling `progress` with the fraction done (0.0–1.0).
    ///
    /// # Errors
    /// The tool failed.
    fn convert_with_progress(
        &self,
        src: &Path,
        src_format: DiskFormat,
        dest: &Path,
        opts: &ConvertOptions,
        progress: &mut dyn FnMut(f64),
    ) -> Result<(), QemuImgError>;

    /// Facts about the image at `path`, read as `format` (never probed; its backing file, if
    /// any, is not opened).
    ///
    /// # Errors
    /// The tool failed or printed something unexpected.
    fn info(&self, path: &Path, format: DiskFormat) -> Result<ImageInfo, QemuImgError>;

    /// The first `sectors` 512-byte sectors of the image at `path`, read as `format`.
    ///
    /// # Errors
    /// The tool failed, or its output could not be read.
    fn head(&self, path: &Path, format: DiskFormat, sectors: u32) -> Result<Vec<u8>, QemuImgError>;
}

/// The real `qemu-img` (kiln-cache's runner: children die with kiln).
#[derive(Debug, Clone, Default)]
pub struct QemuImg(kiln_cache::QemuImg);

impl QemuImg {
    /// `qemu-img` at a given path.
    #[must_use]
    pub fn at(program: impl Into<std::path::PathBuf>) -> Self {
        Self(kiln_cache::QemuImg::new(program))
    }
}

fn convert_how(src_format: DiskFormat, opts: &ConvertOptions) -> kiln_cache::Convert {
    kiln_cache::Convert {
        src_format,
        format: opts.format,
        compression: opts.compression,
        coroutines: opts.coroutines,
        out_of_order: opts.out_of_order,
    }
}

/// `qemu-img convert` arguments.
#[must_use]
pub fn convert_args(
    src: &Path,
    src_format: DiskFormat,
    dest: &Path,
    opts: &ConvertOptions,
) -> Vec<String> {
    convert_how(src_format, opts).args(src, dest)
}

impl DiskTool for QemuImg {
    fn version(&self) -> Result<String, QemuImgError> {
        let line = self.0.version()?;
        if line.starts_with("qemu-img version ") {
            Ok(line)
        } else {
            Err(QemuImgError::Output {
                command: "qemu-img --version".into(),
                detail: line,
            })
        }
    }

    fn create(&self, path: &Path, format: DiskFormat, size: u64) -> Result<(), QemuImgError> {
        Ok(self.0.create(path, format, size)?)
    }

    fn create_overlay(
        &self,
        path: &Path,
        backing: &Path,
        backing_format: DiskFormat,
    ) -> Result<ImageInfo, QemuImgError> {
        Ok(self.0.create_overlay(backing, backing_format, path, None)?)
    }

    fn resize(&self, path: &Path, format: DiskFormat, size: u64) -> Result<(), QemuImgError> {
        Ok(self.0.resize(path, format, size)?)
    }

    fn convert_with_progress(
        &self,
        src: &Path,
        src_format: DiskFormat,
        dest: &Path,
        opts: &ConvertOptions,
        progress: &mut dyn FnMut(f64),
    ) -> Result<(), QemuImgError> {
        Ok(self
            .0
            .convert(src, dest, &convert_how(src_format, opts), Some(progress))?)
    }

    fn info(&self, path: &Path, format: DiskFormat) -> Result<ImageInfo, QemuImgError> {
        Ok(self.0.info(path, format)?)
    }

    fn head(&self, path: &Path, format: DiskFormat, sectors: u32) -> Result<Vec<u8>, QemuImgError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let tmp = dir.join(format!(
            ".head-{}-{}.raw",
            std::process::id(),
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ));
        let result = self
            .0
            .head(path, format, sectors, &tmp)
            .map_err(QemuImgError::from)
            .and_then(|()| {
                std::fs::read(&tmp).map_err(|e| QemuImgError::Output {
                    command: format!("qemu-img dd of={}", tmp.display()),
                    detail: e.to_string(),
                })
            });
        let _ = std::fs::remove_file(&tmp);
        result
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
            DiskFormat::Raw,
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
            convert_args(Path::new("/a"), DiskFormat::Qcow2, Path::new("/b"), &raw).join(" "),
            "convert -f qcow2 -O raw -m 1 /a /b"
        );
    }
}
