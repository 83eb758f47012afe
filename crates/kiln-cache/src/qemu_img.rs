//! `qemu-img`, the one place kiln runs it: image inspection, creation, qcow2 overlays, conversion
//! (with progress). kiln-exec's `DiskTool` is a typed layer over this.
//!
//! Every call states the image's format (`-f`, `backing_fmt=`): kiln made the image or learned
//! its format once, on arrival ([`QemuImg::probe`], the only call that lets qemu-img guess).
//! A guest writes whatever it likes into its disk, a qcow2 header naming `/etc/shadow` as its
//! backing file included; probed, such a raw disk would read that host file into the image.
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

/// The format of a disk image kiln hands to qemu-img (and libvirt): always stated, never probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DiskFormat {
    /// qcow2.
    Qcow2,
    /// raw.
    Raw,
}

impl DiskFormat {
    /// The name qemu and libvirt use.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Raw => "raw",
        }
    }

    /// The format qemu names `name`, if kiln handles it.
    #[must_use]
    pub fn from_qemu(name: &str) -> Option<Self> {
        match name {
            "qcow2" => Some(DiskFormat::Qcow2),
            "raw" => Some(DiskFormat::Raw),
            _ => None,
        }
    }
}

impl std::fmt::Display for DiskFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
pub struct Convert {
    /// Input format (`-f`): always stated, the input may hold what a guest wrote.
    pub src_format: DiskFormat,
    /// Output format (`-O`).
    pub format: DiskFormat,
    /// Compress (qcow2 output only; ignored otherwise).
    pub compression: Option<Compression>,
    /// Parallel coroutines (`-m`), clamped to 1..=16.
    pub coroutines: u8,
    /// Out-of-order writes (`-W`).
    pub out_of_order: bool,
}

impl Convert {
    /// The `qemu-img` arguments (without `-p`).
    pub fn args(&self, src: &Path, dest: &Path) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "convert".into(),
            "-f".into(),
            self.src_format.as_str().into(),
            "-O".into(),
            self.format.as_str().into(),
        ];
        if self.format == DiskFormat::Qcow2 {
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

    /// Facts about the image at `path`, read as `format` (`qemu-img info -f <format>`). Only the
    /// image itself is opened, never its backing file.
    pub fn info(&self, path: &Path, format: DiskFormat) -> Result<ImageInfo, CacheError> {
        self.info_args(&[
            "info".as_ref(),
            "-f".as_ref(),
            format.as_str().as_ref(),
            "--output=json".as_ref(),
            "-U".as_ref(),
            path.as_os_str(),
        ])
    }

    /// Facts about a file that came from outside (a download, a Glance image, a local path),
    /// letting qemu-img probe its format: the one place kiln learns a format. Call it once, on
    /// arrival, and pass the result to [`check_self_contained`]; everything after states it.
    pub fn probe(&self, path: &Path) -> Result<ImageInfo, CacheError> {
        self.info_args(&[
            "info".as_ref(),
            "--output=json".as_ref(),
            "-U".as_ref(),
            path.as_os_str(),
        ])
    }

    fn info_args(&self, args: &[&OsStr]) -> Result<ImageInfo, CacheError> {
        let out = self.run(args.iter().copied())?;
        serde_json::from_slice(&out.stdout).map_err(|e| CacheError::ToolOutput {
            command: self.describe(args.iter().copied()),
            detail: e.to_string(),
        })
    }

    /// `qemu-img convert -f <format> -O raw <src> <dst>`.
    pub fn convert_to_raw(
        &self,
        src: &Path,
        format: DiskFormat,
        dst: &Path,
    ) -> Result<(), CacheError> {
        self.run([
            "convert".as_ref(),
            "-f".as_ref(),
            OsStr::new(format.as_str()),
            "-O".as_ref(),
            "raw".as_ref(),
            src.as_os_str(),
            dst.as_os_str(),
        ])
        .map(drop)
    }

    /// `qemu-img create -q -f <format> <path> <size>`: a new empty image.
    pub fn create(&self, path: &Path, format: DiskFormat, size: u64) -> Result<(), CacheError> {
        let size = size.to_string();
        self.run([
            "create".as_ref(),
            "-q".as_ref(),
            "-f".as_ref(),
            OsStr::new(format.as_str()),
            path.as_os_str(),
            OsStr::new(&size),
        ])
        .map(drop)
    }

    /// `qemu-img resize -q -f <format> <path> <size>`: grows the image to `size` bytes.
    pub fn resize(&self, path: &Path, format: DiskFormat, size: u64) -> Result<(), CacheError> {
        let size = size.to_string();
        self.run([
            "resize".as_ref(),
            "-q".as_ref(),
            "-f".as_ref(),
            OsStr::new(format.as_str()),
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
        how: &Convert,
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

    /// `qemu-img create -f qcow2 -o backing_file=<backing>,backing_fmt=<fmt> <dest> [size]`, then
    /// checks (`qemu-img info -f qcow2`) that the new overlay names exactly that backing file and
    /// format and no data file, and returns its facts. `backing` must be absolute (a relative one
    /// would be resolved against the overlay's folder by whoever opens it).
    pub fn create_overlay(
        &self,
        backing: &Path,
        backing_fmt: DiskFormat,
        dest: &Path,
        size: Option<u64>,
    ) -> Result<ImageInfo, CacheError> {
        let opts = format!(
            "backing_file={},backing_fmt={}",
            escape_opt(&backing.to_string_lossy()),
            backing_fmt.as_str()
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
        self.run(args)?;
        let info = self.info(dest, DiskFormat::Qcow2)?;
        check_overlay(dest, &info, backing, backing_fmt)?;
        Ok(info)
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
        format: DiskFormat,
        count: u32,
        dest: &Path,
    ) -> Result<(), CacheError> {
        let input = format!("if={}", src.to_string_lossy());
        let output = format!("of={}", dest.to_string_lossy());
        let count = format!("count={count}");
        let args: [&OsStr; 9] = [
            "dd".as_ref(),
            "-f".as_ref(),
            format.as_str().as_ref(),
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

/// Refuses an image from outside that reads other files: a backing file or an external data file
/// (qcow2 `data-file`) would let it pull any host file into what kiln builds. `origin` names it in
/// the error.
pub fn check_self_contained(origin: &str, info: &ImageInfo) -> Result<(), CacheError> {
    if let Some(b) = info
        .full_backing_filename
        .as_deref()
        .or(info.backing_filename.as_deref())
    {
        return Err(CacheError::UnsafeImage {
            origin: origin.to_owned(),
            what: format!("backing file {b}"),
        });
    }
    if let Some(d) = info.data_file() {
        return Err(CacheError::UnsafeImage {
            origin: origin.to_owned(),
            what: format!("data file {d}"),
        });
    }
    Ok(())
}

/// An overlay kiln made must name exactly the backing file and format kiln gave it, and no data
/// file.
fn check_overlay(
    overlay: &Path,
    info: &ImageInfo,
    backing: &Path,
    backing_fmt: DiskFormat,
) -> Result<(), CacheError> {
    let want = backing.to_string_lossy();
    let found = info
        .full_backing_filename
        .as_deref()
        .or(info.backing_filename.as_deref());
    let found_fmt = info.backing_filename_format.as_deref();
    if info.format != "qcow2"
        || found != Some(want.as_ref())
        || found_fmt != Some(backing_fmt.as_str())
        || info.data_file().is_some()
    {
        return Err(CacheError::UnexpectedBacking {
            overlay: overlay.to_owned(),
            expected: format!("{want} ({backing_fmt})"),
            found: match (found, info.data_file()) {
                (_, Some(d)) => format!("data file {d}"),
                (Some(b), None) => format!("{b} ({})", found_fmt.unwrap_or("format not stated")),
                (None, None) => "no backing file".to_owned(),
            },
        });
    }
    Ok(())
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
            src_format: DiskFormat::Raw,
            format: DiskFormat::Qcow2,
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
            src_format: DiskFormat::Qcow2,
            format: DiskFormat::Raw,
            compression: Some(Compression::Zlib),
            coroutines: 1,
            out_of_order: false,
        };
        assert_eq!(
            raw.args(Path::new("/a"), Path::new("/b")).join(" "),
            "convert -f qcow2 -O raw -m 1 /a /b"
        );
    }

    #[test]
    fn progress_lines() {
        assert_eq!(parse_progress("    (0.00/100%)"), Some(0.0));
        assert_eq!(parse_progress("    (50.00/100%)\r"), Some(0.5));
        assert_eq!(parse_progress("    (100.00/100%)"), Some(1.0));
        assert_eq!(parse_progress("qemu-img: error"), None);
    }

    fn overlay_info(
        backing: Option<&str>,
        fmt: Option<&str>,
        data_file: Option<&str>,
    ) -> ImageInfo {
        let mut json = serde_json::json!({"virtual-size": 16_777_216, "format": "qcow2"});
        if let Some(b) = backing {
            json["backing-filename"] = b.into();
            json["full-backing-filename"] = b.into();
        }
        if let Some(f) = fmt {
            json["backing-filename-format"] = f.into();
        }
        if let Some(d) = data_file {
            json["format-specific"] =
                serde_json::json!({"type": "qcow2", "data": {"data-file": d}});
        }
        serde_json::from_value(json).unwrap()
    }

    // An overlay is used only when it names exactly the backing kiln set: a different file, a
    // different or missing backing format, or a data file is refused.
    #[test]
    fn overlay_check_accepts_only_the_backing_kiln_set() {
        let o = Path::new("/c/o.qcow2");
        let base = Path::new("/c/_base/abc");
        let ok = overlay_info(Some("/c/_base/abc"), Some("raw"), None);
        check_overlay(o, &ok, base, DiskFormat::Raw).unwrap();
        for (bad, why) in [
            (
                overlay_info(Some("/etc/shadow"), Some("raw"), None),
                "/etc/shadow (raw)",
            ),
            (
                overlay_info(Some("/c/_base/abc"), Some("qcow2"), None),
                "/c/_base/abc (qcow2)",
            ),
            (
                overlay_info(Some("/c/_base/abc"), None, None),
                "format not stated",
            ),
            (overlay_info(None, None, None), "no backing file"),
            (
                overlay_info(Some("/c/_base/abc"), Some("raw"), Some("/etc/shadow")),
                "data file /etc/shadow",
            ),
        ] {
            let err = check_overlay(o, &bad, base, DiskFormat::Raw).unwrap_err();
            assert!(err.to_string().contains(why), "{err}");
            assert!(err.to_string().contains("/c/_base/abc (raw)"), "{err}");
        }
    }

    // A source from outside that reads another host file is refused, naming that file.
    #[test]
    fn sources_with_a_backing_or_data_file_are_refused() {
        check_self_contained("x.img", &overlay_info(None, None, None)).unwrap();
        let err = check_self_contained("x.img", &overlay_info(Some("/etc/shadow"), None, None))
            .unwrap_err();
        assert!(
            err.to_string().contains("backing file /etc/shadow"),
            "{err}"
        );
        let err = check_self_contained(
            "x.img",
            &overlay_info(None, None, Some("/root/.ssh/id_ed25519")),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("data file /root/.ssh/id_ed25519"),
            "{err}"
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
        assert_eq!(info.dirty_flag, Some(false));
    }
}
