//! `qemu-img`: image inspection, conversion to raw and qcow2 overlays on a `_base` file.
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
    #[serde(default, rename = "backing-filename-format")]
    pub backing_format: Option<String>,
    #[serde(default)]
    pub format_specific: Option<FormatSpecific>,
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
        // SAFETY: the closure only calls `prctl`, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
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

/// qemu's option syntax separates options with `,`; a literal comma is written `,,`.
fn escape_opt(s: &str) -> String {
    s.replace(',', ",,")
}
