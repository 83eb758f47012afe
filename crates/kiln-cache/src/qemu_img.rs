//! `qemu-img`, the one place kiln runs it: image inspection, creation, qcow2 overlays, conversion
//! (with progress). kiln-exec's `DiskTool` is a typed layer over this.
//!
//! Children are started with `PR_SET_PDEATHSIG = SIGKILL`, so a kiln that is killed mid-conversion does
//! not leave a `qemu-img` writing into the cache behind it. (The signal follows the thread that started
//! the child; every call here waits for the child on that thread.)

use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde::Deserialize;

use crate::error::CacheError;

/// What `qemu-img info --output=json` says about an image.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ImageInfo {
    pub format: String,
    pub virtual_size: u64,
    #[serde(default)]
    pub actual_size: Option<u64>,
    #[serde(default)]
    pub backing_filename: Option<String>,
    #[serde(default)]
    pub full_backing_filename: Option<String>,
    #[serde(default)]
    pub backing_filename_format: Option<String>,
    /// Set when the image was not closed cleanly (lazy refcounts).
    #[serde(default)]
    pub dirty_flag: Option<bool>,
    #[serde(default)]
    pub format_specific: Option<FormatSpecific>,
}

/// Compression for qcow2 output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// qcow2's default deflate: readable by every qemu.
    Zlib,
    /// zstd (qcow2 `compression_type=zstd`, qemu ≥ 5.1): several times faster to write.
    Zstd,
}

/// What [`QemuImg::convert`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Convert<'a> {
    /// Input format (`-f`), probed when `None`.
    pub src_format: Option<&'a str>,
    /// Output format (`-O`).
    pub format: &'a str,
    /// Compress (qcow2 output only; ignored otherwise).
    pub compression: Option<Compression>,
    /// Parallel coroutines (`-m`), clamped to 1..=16.
    pub coroutines: u8,
    /// Out-of-order writes (`-W`).
    pub out_of_order: bool,
}

impl Convert<'_> {
    /// The `qemu-img` arguments (without `-p`).
    pub fn args(&self, src: &Path, dest: &Path) -> Vec<String> {
        let mut args: Vec<String> = vec!["convert".into()];
        if let Some(f) = self.src_format {
            args.extend(["-f".into(), f.into()]);
        }
        args.extend(["-O".into(), self.format.into()]);
        if self.format == "qcow2" {
            match self.compression {
                Some(Compression::Zstd) => {
                    args.extend(["-c".into(), "-o".into(), "compression_type=zstd".into()]);
                }
                Some(Compression::Zlib) => args.push("-c".into()),
                None => {}
            }
        }
        args.extend(["-m".into(), self.coroutines.clamp(1, 16).to_string()]);
        if self.out_of_order {
            args.push("-W".into());
        }
        args.extend([
            src.to_string_lossy().into_owned(),
            dest.to_string_lossy().into_owned(),
        ]);
        args
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct FormatSpecific {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub data: serde_json::Map<String, serde_json::Value>,
}

impl ImageInfo {
    /// An external data file (qcow2 `data-file`), which would let an image read other host files.
    pub fn data_file(&self) -> Option<&str> {
        self.format_specific
            .as_ref()?
            .data
            .get("data-file")?
            .as_str()
    }
}

/// The `qemu-img` program.
#[derive(Clone, Debug)]
pub struct QemuImg {
    program: PathBuf,
}

impl Default for QemuImg {
    fn default() -> Self {
        QemuImg::from_env()
    }
}

impl QemuImg {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        QemuImg {
            program: program.into(),
        }
    }

    /// `$KILN_QEMU_IMG` if set, else `qemu-img` from `PATH`.
    pub fn from_env() -> Self {
        Self::new(std::env::var_os("KILN_QEMU_IMG").unwrap_or_else(|| "qemu-img".into()))
    }

    /// The first line of `qemu-img --version`, e.g. `qemu-img version 7.2.22 (Debian ...)`.
    pub fn version(&self) -> Result<String, CacheError> {
        let out = self.run([OsStr::new("--version")])?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned())
    }

    /// Inspects `path`, letting qemu-img probe the format.
    pub fn info(&self, path: &Path) -> Result<ImageInfo, CacheError> {
        let args: [&OsStr; 4] = [
            "info".as_ref(),
            "--output=json".as_ref(),
            "-U".as_ref(),
            path.as_os_str(),
        ];
        let out = self.run(args)?;
        serde_json::from_slice(&out.stdout).map_err(|e| CacheError::ToolOutput {
            command: self.describe(args),
            detail: e.to_string(),
        })
    }

    /// `qemu-img convert -f <format> -O raw <src> <dst>`.
    pub fn convert_to_raw(&self, src: &Path, format: &str, dst: &Path) -> Result<(), CacheError> {
        self.run([
            "convert".as_ref(),
            "-f".as_ref(),
            OsStr::new(format),
            "-O".as_ref(),
            "raw".as_ref(),
            src.as_os_str(),
            dst.as_os_str(),
        ])
        .map(drop)
    }

    /// `qemu-img create -q -f <format> <path> <size>`: a new empty image.
    pub fn create(&self, path: &Path, format: &str, size: u64) -> Result<(), CacheError> {
        let size = size.to_string();
        self.run([
            "create".as_ref(),
            "-q".as_ref(),
            "-f".as_ref(),
            OsStr::new(format),
            path.as_os_str(),
            OsStr::new(&size),
        ])
        .map(drop)
    }

    /// `qemu-img convert` of `src` into a new image at `dest`. With `progress`, runs with `-p`
    /// and calls it with the fraction done (0.0–1.0) as qemu-img reports it.
    pub fn convert(
        &self,
        src: &Path,
        dest: &Path,
        how: &Convert<'_>,
        progress: Option<&mut dyn FnMut(f64)>,
    ) -> Result<(), CacheError> {
        let mut args: Vec<String> = how.args(src, dest);
        let Some(progress) = progress else {
            return self.run(args.iter().map(OsStr::new)).map(drop);
        };
        args.insert(1, "-p".into());
        let mut cmd = Command::new(&self.program);
        cmd.args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        die_with_parent(&mut cmd);
        let spawn_err = |source| CacheError::Spawn {
            program: self.program.to_string_lossy().into_owned(),
            source,
        };
        let mut child = cmd.spawn().map_err(spawn_err)?;
        // stderr is small (an error message): read it on a thread so neither pipe can fill up.
        let mut stderr = child.stderr.take().expect("piped");
        let errs = std::thread::spawn(move || {
            let mut buf = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut buf);
            buf
        });
        let mut stdout = child.stdout.take().expect("piped");
        let mut pending = Vec::new();
        let mut buf = [0u8; 512];
        loop {
            let n = match std::io::Read::read(&mut stdout, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            pending.extend_from_slice(&buf[..n]);
            while let Some(end) = pending.iter().position(|&b| b == b'\r' || b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                if let Some(f) = parse_progress(&String::from_utf8_lossy(&line)) {
                    progress(f);
                }
            }
        }
        let status = child.wait().map_err(spawn_err)?;
        let stderr = errs.join().unwrap_or_default();
        if !status.success() {
            return Err(CacheError::Tool {
                command: self.describe(args.iter().map(OsStr::new)),
                status: status.to_string(),
                stderr: stderr.trim().to_owned(),
            });
        }
        Ok(())
    }

    /// `qemu-img create -f qcow2 -o backing_file=<backing>,backing_fmt=<fmt> <dest> [size]`.
    pub fn create_overlay(
        &self,
        backing: &Path,
        backing_fmt: &str,
        dest: &Path,
        size: Option<u64>,
    ) -> Result<(), CacheError> {
        let opts = format!(
            "backing_file={},backing_fmt={backing_fmt}",
            escape_opt(&backing.to_string_lossy())
        );
        let size = size.map(|s| s.to_string());
        let mut args: Vec<&OsStr> = vec![
            "create".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
            "-o".as_ref(),
            opts.as_ref(),
            dest.as_os_str(),
        ];
        if let Some(size) = &size {
            args.push(size.as_ref());
        }
        self.run(args).map(drop)
    }

    /// The first `count` 512-byte sectors of the image at `src`, read as `format` (stated, never
    /// probed: the image may hold what a guest wrote) into the raw file `dest`
    /// (`qemu-img dd`).
    ///
    /// # Errors
    /// The tool failed.
    pub fn head(
        &self,
        src: &Path,
        format: &str,
        count: u32,
        dest: &Path,
    ) -> Result<(), CacheError> {
        let input = format!("if={}", src.to_string_lossy());
        let output = format!("of={}", dest.to_string_lossy());
        let count = format!("count={count}");
        let args: [&OsStr; 9] = [
            "dd".as_ref(),
            "-f".as_ref(),
            format.as_ref(),
            "-O".as_ref(),
            "raw".as_ref(),
            "bs=512".as_ref(),
            count.as_ref(),
            input.as_ref(),
            output.as_ref(),
        ];
        self.run(args).map(drop)
    }

    fn describe<'a>(&self, args: impl IntoIterator<Item = &'a OsStr>) -> String {
        let mut s = self.program.to_string_lossy().into_owned();
        for a in args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }

    fn run<'a, I>(&self, args: I) -> Result<Output, CacheError>
    where
        I: IntoIterator<Item = &'a OsStr> + Clone,
    {
        let mut cmd = Command::new(&self.program);
        cmd.args(args.clone());
        die_with_parent(&mut cmd);
        let out = cmd.output().map_err(|source| CacheError::Spawn {
            program: self.program.to_string_lossy().into_owned(),
            source,
        })?;
        if !out.status.success() {
            return Err(CacheError::Tool {
                command: self.describe(args),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(out)
    }
}

/// The child gets `SIGKILL` when the thread that started it exits.
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure only calls `prctl`, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// `    (12.34/100%)` → `0.1234`.
fn parse_progress(line: &str) -> Option<f64> {
    let inner = line.trim().strip_prefix('(')?.strip_suffix("/100%)")?;
    let pct: f64 = inner.trim().parse().ok()?;
    Some((pct / 100.0).clamp(0.0, 1.0))
}

/// qemu's option syntax separates options with `,`; a literal comma is written `,,`.
fn escape_opt(s: &str) -> String {
    s.replace(',', ",,")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn convert_arguments() {
        let how = Convert {
            src_format: Some("raw"),
            format: "qcow2",
            compression: Some(Compression::Zstd),
            coroutines: 32,
            out_of_order: true,
        };
        assert_eq!(
            how.args(Path::new("/a.raw"), Path::new("/b.qcow2"))
                .join(" "),
            "convert -f raw -O qcow2 -c -o compression_type=zstd -m 16 -W /a.raw /b.qcow2"
        );
        // Compression is a qcow2 feature: raw output ignores it rather than failing in qemu-img.
        let raw = Convert {
            src_format: None,
            format: "raw",
            compression: Some(Compression::Zlib),
            coroutines: 1,
            out_of_order: false,
        };
        assert_eq!(
            raw.args(Path::new("/a"), Path::new("/b")).join(" "),
            "convert -O raw -m 1 /a /b"
        );
    }

    #[test]
    fn progress_lines() {
        assert_eq!(parse_progress("    (0.00/100%)"), Some(0.0));
        assert_eq!(parse_progress("    (50.00/100%)\r"), Some(0.5));
        assert_eq!(parse_progress("    (100.00/100%)"), Some(1.0));
        assert_eq!(parse_progress("qemu-img: error"), None);
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
        assert_eq!(info.dirty_flag, Some(false));
    }
}
