//! `customize`: boots the installed disk through a qcow2 overlay (the install's artifact stays
//! pristine; the overlay is this step's artifact, backed by it) with the NoCloud seed, until the
//! guest powers off after `KILN-CUSTOMIZE-OK` (see [`super::seed`]).

use std::time::Duration;

use kiln_cache::Staging;
use kiln_plan::StepParams;

use super::guest_step::GuestStep;
use super::seed::{CUSTOMIZE_FAILED, CUSTOMIZE_OK};
use super::{RunError, StepCx, fail};
use crate::domain_xml::DiskFormat;
use crate::qemu_img::DiskTool as _;

/// Used when the plan gives none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

pub(super) fn run(cx: &StepCx<'_>, staging: &mut Staging) -> Result<(), RunError> {
    let step = cx.step;
    let StepParams::Customize(p) = &step.params else {
        return fail(format!("step `{}` is not customize", step.id));
    };
    let guest = GuestStep::prepare(cx)?;
    let base = cx.input("disk")?;
    let disk = staging.path("disk.qcow2");
    overlay(cx, base, &disk, p.grow_to_bytes)?;
    let domain = guest.seeded_domain(disk, cx.input("seed")?.to_owned());
    let spec = guest.until_power_off(domain, CUSTOMIZE_OK, CUSTOMIZE_FAILED, DEFAULT_TIMEOUT);
    cx.log
        .line(format_args!("customize: overlay on `{}`", base.display()));
    guest.run(&spec)?;
    Ok(())
}

/// A qcow2 overlay at `dest` on `base` (format from `qemu-img info`), grown to `grow_to` bytes.
pub(crate) fn overlay(
    cx: &StepCx<'_>,
    base: &std::path::Path,
    dest: &std::path::Path,
    grow_to: Option<u64>,
) -> Result<(), RunError> {
    let id = &cx.step.id;
    let qemu = &cx.env.qemu_img;
    let info = qemu
        .info(base)
        .or_else(|e| fail(format!("step `{id}`: {e}")))?;
    let format = if info.format == "raw" {
        DiskFormat::Raw
    } else {
        DiskFormat::Qcow2
    };
    let base = std::path::absolute(base).or_else(|e| fail(format!("step `{id}`: {e}")))?;
    qemu.create_overlay(dest, &base, format)
        .or_else(|e| fail(format!("step `{id}`: {e}")))?;
    if let Some(size) = grow_to.filter(|&s| s > info.virtual_size) {
        resize(dest, size).or_else(|e| fail(format!("step `{id}`: {e}")))?;
    }
    Ok(())
}

/// `qemu-img resize` (growing only).
pub(crate) fn resize(path: &std::path::Path, size: u64) -> Result<(), String> {
    let out = std::process::Command::new("qemu-img")
        .args(["resize", "-q"])
        .arg(path)
        .arg(size.to_string())
        .output()
        .map_err(|e| format!("running `qemu-img resize`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`qemu-img resize {} {size}` failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}
