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
    let (base, base_format) = cx.disk("disk")?;
    let disk = staging.path("disk.qcow2");
    overlay(cx, base, base_format, &disk, p.grow_to_bytes)?;
    // Users with passwords: the cached seed holds placeholders; the seed with the hashes is
    // written now and removed when `secret_seed` drops, whatever the outcome.
    let cached_seed = cx.input("seed")?.to_owned();
    let secret_seed = if step.exec.secrets.is_empty() {
        None
    } else {
        Some(super::seed::secret_seed(cx, &cached_seed, &guest.scratch)?)
    };
    let seed = secret_seed
        .as_ref()
        .map_or(cached_seed, |s| s.iso().to_owned());
    let domain = guest.seeded_domain(disk, seed);
    let spec = guest.until_power_off(domain, CUSTOMIZE_OK, CUSTOMIZE_FAILED, DEFAULT_TIMEOUT);
    guest.run(&spec)?;
    Ok(())
}

/// A qcow2 overlay at `dest` on `base`, whose format kiln knows (it made it), grown to `grow_to`
/// bytes. The overlay records `backing_fmt`, so neither qemu nor libvirt probes the base, and is
/// used only when `qemu-img info` shows exactly the backing kiln set.
pub(crate) fn overlay(
    cx: &StepCx<'_>,
    base: &std::path::Path,
    base_format: DiskFormat,
    dest: &std::path::Path,
    grow_to: Option<u64>,
) -> Result<(), RunError> {
    let id = &cx.step.id;
    let qemu = &cx.env.qemu_img;
    let info = qemu
        .info(base, base_format)
        .or_else(|e| fail(format!("step `{id}`: {e}")))?;
    let base = std::path::absolute(base).or_else(|e| fail(format!("step `{id}`: {e}")))?;
    qemu.create_overlay(dest, &base, base_format)
        .or_else(|e| fail(format!("step `{id}`: {e}")))?;
    cx.log.line(format_args!(
        "overlay `{}` on `{}` ({base_format}, as kiln made it)",
        dest.display(),
        base.display()
    ));
    if let Some(size) = grow_to.filter(|&s| s > info.virtual_size) {
        qemu.resize(dest, DiskFormat::Qcow2, size)
            .or_else(|e| fail(format!("step `{id}`: {e}")))?;
    }
    Ok(())
}
