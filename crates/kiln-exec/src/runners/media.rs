//! ISO 9660 media (answer files, NoCloud seeds) built with `xorriso -as mkisofs` from a folder.
//!
//! xorriso rather than an in-process writer: it is already a dependency of the fixtures and of
//! `scripts/setup-host.sh`, it writes Joliet and Rock Ridge names that every installer reads, and
//! it is the tool the fixtures' protocol documents (`fixtures/debian/README.md`).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{RunError, fail};

/// The ISO builder.
#[derive(Debug, Clone)]
pub struct Mkisofs {
    program: PathBuf,
}

impl Default for Mkisofs {
    fn default() -> Self {
        Self {
            program: PathBuf::from("xorriso"),
        }
    }
}

/// Builds `out` from the files in `dir`, with volume label `label`.
///
/// # Errors
/// xorriso is missing or failed.
pub fn build_iso(tool: &Mkisofs, dir: &Path, label: &str, out: &Path) -> Result<(), RunError> {
    let output = Command::new(&tool.program)
        .args(["-as", "mkisofs", "-quiet", "-V", label, "-J", "-R", "-o"])
        .arg(out)
        .arg(dir)
        .output()
        .or_else(|e| {
            fail(format!(
                "running `{}` (install it with scripts/setup-host.sh): {e}",
                tool.program.display()
            ))
        })?;
    if !output.status.success() {
        return fail(format!(
            "`xorriso -as mkisofs -V {label}` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(())
}
