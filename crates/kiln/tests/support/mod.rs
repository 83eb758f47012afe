//! Helpers shared by kiln's CLI test binaries: each declares `mod support;` and takes what it needs.

#![allow(dead_code, reason = "each test binary uses part of the helpers")]

pub mod virtio;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Exit code, stdout and stderr of a run as one text, with `dir` shown as `[TMP]` (for snapshots).
pub fn transcript(out: &Output, dir: &Path) -> String {
    let text = format!(
        "exit code: {}\n---- stdout ----\n{}---- stderr ----\n{}",
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    text.replace(&dir.display().to_string(), "[TMP]")
}

/// Builds the ISO `out` (Joliet + Rock Ridge, volume label `volume`) from the folder `root`.
pub fn mkisofs(root: &Path, volume: &str, out: &Path) {
    let done = Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-J", "-R", "-V", volume, "-o"])
        .arg(out)
        .arg(root)
        .output()
        .expect("xorriso (scripts/setup-host.sh installs it)");
    assert!(
        done.status.success(),
        "xorriso failed: {}",
        String::from_utf8_lossy(&done.stderr)
    );
}

/// Starts libvirtd if needed and makes a folder under /tmp that libvirt's QEMU user can enter.
pub fn libvirt_tempdir(prefix: &str) -> tempfile::TempDir {
    let st = Command::new(repo().join("scripts/start-libvirt.sh"))
        .status()
        .expect("scripts/start-libvirt.sh");
    assert!(st.success(), "scripts/start-libvirt.sh failed");
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// The `summary` event of a `--json` run's stdout.
pub fn summary(stdout: &[u8]) -> serde_json::Value {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "summary")
        .expect("a summary line")
}

/// Every file under `dir`, recursively (nothing if it cannot be read).
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
