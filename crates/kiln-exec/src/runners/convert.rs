//! `convert`: `qemu-img convert` of the final disk (flattening overlays) into the output format,
//! qcow2 compressed with zstd or zlib where asked. The input's format is the one kiln made it in
//! (`-f`), never probed: the disk holds what a guest wrote. The artifact store then reads the result once,
//! computing md5, sha256 and sha512 in the same pass (one thread per digest), for the summary and
//! Glance.

use kiln_cache::Staging;
use kiln_plan::StepParams;

use super::create_disk::disk_format;
use super::{RunError, StepCx, fail};
use crate::qemu_img::{Compression, ConvertOptions, DiskTool as _, convert_args};

pub(super) fn run(cx: &StepCx<'_>, staging: &mut Staging) -> Result<(), RunError> {
    let step = cx.step;
    let StepParams::Convert(p) = &step.params else {
        return fail(format!("step `{}` is not convert", step.id));
    };
    let (src, src_format) = cx.disk("disk")?;
    let format = disk_format(p.format);
    let dest = staging.path(&format!("image.{}", format.as_str()));
    let opts = ConvertOptions {
        format,
        compression: match p.compression {
            kiln_syntax::model::Compression::Zstd => Some(Compression::Zstd),
            kiln_syntax::model::Compression::Zlib => Some(Compression::Zlib),
            kiln_syntax::model::Compression::None => None,
        },
        ..ConvertOptions::default()
    };
    cx.log.line(format_args!(
        "input disk format: {src_format} (as kiln made it; never probed)"
    ));
    cx.log.line(format_args!(
        "qemu-img {} ({} {})",
        convert_args(src, src_format, &dest, &opts).join(" "),
        p.format,
        p.compression
    ));
    // Progress in guest bytes: qemu-img reports the fraction of the source's virtual size done.
    let total = cx
        .env
        .qemu_img
        .info(src, src_format)
        .ok()
        .map(|i| i.virtual_size);
    let progress = cx.progress();
    cx.env
        .qemu_img
        .convert_with_progress(src, src_format, &dest, &opts, &mut |fraction| {
            if let Some(t) = total {
                #[allow(
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    clippy::cast_precision_loss,
                    reason = "a byte count from a fraction"
                )]
                progress.update((fraction * t as f64) as u64, Some(t));
            }
        })
        .or_else(|e| fail(format!("step `{}`: {e}", step.id)))?;
    if let Some(size) = p.grow_to_bytes {
        cx.env
            .qemu_img
            .resize(&dest, format, size)
            .or_else(|e| fail(format!("step `{}`: {e}", step.id)))?;
    }
    Ok(())
}
