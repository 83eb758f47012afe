//! `answer-media`: the install answer file on an ISO attached as an extra CD-ROM.
//!
//! | method | volume label | file name(s) at the root |
//! |---|---|---|
//! | `kickstart` | `OEMDRV` (Anaconda loads `ks.cfg` from it by itself) | `ks.cfg` |
//! | `preseed` | `KILNCFG` | `preseed.cfg` |
//! | `autoinstall` | `cidata` (NoCloud, as Subiquity expects) | `user-data`, `meta-data` |
//! | `autounattend` | `KILNCFG` (Windows Setup scans every removable root) | `autounattend.xml` |
//! | `kiln-install` | `KILNCFG` (kiln's Debian fixture installer) | `kiln-install.cfg` |
//!
//! A generated Windows answer (`install autounattend { ... }` without a file) is rendered by
//! kiln-unattend: this step's cached output is the render with secret placeholders, and the install
//! step writes the real media itself (see [`super::windows_media`]).
//!
//! An answer given as a file is also written under its own file name, so an installer that reads
//! a file of its own name finds it: the Debian fixture's installer reads `kiln-install.cfg` from the
//! medium labelled `KILNCFG` (see `fixtures/debian/README.md`).

use kiln_cache::Staging;
use kiln_plan::StepParams;
use kiln_plan::step::AnswerParams;

use super::media::build_iso;
use super::{RunError, StepCx, fail};

/// Label and conventional file name of a method's medium.
pub(crate) fn layout(method: &str) -> (&'static str, &'static str) {
    match method {
        "kickstart" => ("OEMDRV", "ks.cfg"),
        "autoinstall" => ("cidata", "user-data"),
        "autounattend" => ("KILNCFG", "autounattend.xml"),
        "kiln-install" => ("KILNCFG", "kiln-install.cfg"),
        _ => ("KILNCFG", "preseed.cfg"),
    }
}

pub(super) fn run(cx: &StepCx<'_>, staging: &mut Staging) -> Result<(), RunError> {
    let step = cx.step;
    let StepParams::AnswerMedia(p) = &step.params else {
        return fail(format!("step `{}` is not answer-media", step.id));
    };
    let (label, name) = layout(p.method);
    let (text, own_name) = match &p.answer {
        Some(AnswerParams::Inline { text }) => (text.clone().into_bytes(), None),
        Some(AnswerParams::File { path, .. }) => {
            let Some(file) = step
                .exec
                .local_files
                .iter()
                .find(|f| f.role == "answer-file")
            else {
                return fail(format!("step `{}`: no resolved path for `{path}`", step.id));
            };
            let bytes = std::fs::read(&file.resolved).or_else(|e| {
                fail(format!(
                    "step `{}`: reading answer file `{}`: {e}",
                    step.id,
                    file.resolved.display()
                ))
            })?;
            let own = file
                .resolved
                .file_name()
                .map(|n| n.to_string_lossy().into_owned());
            (bytes, own)
        }
        None => match &p.windows {
            // Generated Windows media: this cached artifact is the render with placeholders
            // (`KILN-SECRET(admin-password)`), for inspection; the install writes the real media,
            // secrets included, right before it boots and deletes them after.
            Some(w) => return windows_placeholder_media(cx, w, staging),
            None => {
                return fail(format!(
                    "step `{}`: `{}` needs an answer file: give `file=` or `inline=`",
                    step.id, p.method
                ));
            }
        },
    };
    let scratch = cx.scratch()?;
    let dir = scratch.join("answer");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .or_else(|e| fail(format!("creating `{}`: {e}", dir.display())))?;
    let write = |n: &str, bytes: &[u8]| {
        std::fs::write(dir.join(n), bytes)
            .or_else(|e| fail(format!("step `{}`: writing `{n}`: {e}", step.id)))
    };
    write(name, &text)?;
    if p.method == "autoinstall" {
        write(
            "meta-data",
            format!("instance-id: kiln-install-{}\n", step.key.short()).as_bytes(),
        )?;
    }
    if let Some(own) = own_name.filter(|n| n != name) {
        write(&own, &text)?;
    }
    let out = staging.path("answer-media.iso");
    cx.log
        .line(format_args!("answer medium: label `{label}`, `{name}`"));
    build_iso(&cx.env.mkisofs, &dir, label, &out)?;
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

/// The generated Windows media with placeholders instead of secrets: what the install attaches,
/// minus the secret values and the cloudbase-init MSI.
fn windows_placeholder_media(
    cx: &StepCx<'_>,
    w: &kiln_plan::step::WindowsParams,
    staging: &mut Staging,
) -> Result<(), RunError> {
    let step = cx.step;
    let image = super::windows_media::image(step, w)?;
    let media = kiln_unattend::answer_media(&image, kiln_unattend::SecretSource::Placeholders)
        .or_else(|e| {
            fail(format!(
                "step `{}`: rendering the answer media: {e}",
                step.id
            ))
        })?;
    let scratch = cx.scratch()?;
    let dir = scratch.join("answer");
    let _ = std::fs::remove_dir_all(&dir);
    super::windows_media::write_files(&dir, &media.files)
        .or_else(|e| fail(format!("step `{}`: {e}", step.id)))?;
    let out = staging.path("answer-media.iso");
    cx.log.line(format_args!(
        "answer medium (placeholders for secrets): {} files, language {}",
        media.files.len(),
        image.locale.ui
    ));
    build_iso(&cx.env.mkisofs, &dir, layout("autounattend").0, &out)?;
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}
