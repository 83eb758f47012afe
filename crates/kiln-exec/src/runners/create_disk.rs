//! `create-disk`: a blank root disk of the declared size and format (`qemu-img create`).

use kiln_cache::Staging;
use kiln_plan::StepParams;

use super::{RunError, StepCx, fail};
use crate::domain_xml::DiskFormat;
use crate::qemu_img::DiskTool as _;

pub(super) fn run(cx: &StepCx<'_>, staging: &mut Staging) -> Result<(), RunError> {
    let StepParams::CreateDisk(p) = &cx.step.params else {
        return fail(format!("step `{}` is not create-disk", cx.step.id));
    };
    let format = disk_format(p.format);
    let path = staging.path(&format!("disk.{}", format.as_str()));
    cx.log.line(format_args!(
        "qemu-img create -f {} {} {}",
        format.as_str(),
        path.display(),
        p.size_bytes
    ));
    cx.env
        .qemu_img
        .create(&path, format, p.size_bytes)
        .or_else(|e| fail(format!("step `{}`: {e}", cx.step.id)))
}

/// The plan's image format as libvirt's and qemu-img's.
pub(crate) fn disk_format(format: kiln_syntax::model::ImageFormat) -> DiskFormat {
    match format {
        kiln_syntax::model::ImageFormat::Raw => DiskFormat::Raw,
        kiln_syntax::model::ImageFormat::Qcow2 => DiskFormat::Qcow2,
    }
}
