//! `answer-media`: the install answer file where the method's installer profile wants it
//! (see `kiln_plan::installer`):
//!
//! | method (profile) | artifact | what is in it |
//! |---|---|---|
//! | `preseed` (debian-installer) | `answer-media.cpio.gz` | a gzip'd newc cpio holding `preseed.cfg`, appended to the installer's initrd by the install step (virt-install's `--initrd-inject`) |
//! | `kickstart` (anaconda) | `answer-media.iso`, label `OEMDRV` | `ks.cfg` |
//! | `autoinstall` (subiquity) | `answer-media.iso`, label `cidata` (NoCloud) | `user-data`, `meta-data` |
//! | `autounattend` (windows-setup) | `answer-media.iso`, label `KILNCFG` (Setup scans every removable root) | `autounattend.xml` |
//!
//! The preseed and the kickstart gain the profile's lines (power off at the end, print
//! `KILN-INSTALL-OK` on the serial console once the system is written) after the user's own.
//!
//! A generated Windows answer (`install autounattend { ... }` without a file) is rendered by
//! kiln-unattend: this step's cached output is the render with secret placeholders, and the install
//! step writes the real media itself (see [`super::windows_media`]).
//!
//! An answer given as a file on a medium is also written under its own file name, so an installer
//! that reads a file of its own name finds it.

use std::io::Write as _;

use kiln_cache::Staging;
use kiln_plan::StepParams;
use kiln_plan::installer::AnswerPlacement;
use kiln_plan::step::AnswerParams;

use super::media::build_iso;
use super::{RunError, StepCx, fail};

pub(super) fn run(cx: &StepCx<'_>, staging: &mut Staging) -> Result<(), RunError> {
    let step = cx.step;
    let StepParams::AnswerMedia(p) = &step.params else {
        return fail(format!("step `{}` is not answer-media", step.id));
    };
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
    let text = match p.profile.augment_answer(&String::from_utf8_lossy(&text)) {
        Some(augmented) => {
            cx.log.line(format_args!(
                "{} profile: power-off and the `KILN-INSTALL-OK` line added after the answer file's own lines",
                p.profile.name()
            ));
            augmented.into_bytes()
        }
        None => text,
    };
    // The root password's placeholder; the install step puts the hash in (never cached).
    let text = match (
        &p.root_password,
        kiln_plan::installer::with_root_password(p.profile, &String::from_utf8_lossy(&text)),
    ) {
        (Some(reference), Some(with)) => {
            cx.log.line(format_args!(
                "root password from {reference}: a placeholder here, hashed into the install's own copy"
            ));
            with.into_bytes()
        }
        (Some(_), None) => {
            return fail(format!(
                "step `{}`: install method `{}` has no root password setting kiln can fill in",
                step.id, p.method
            ));
        }
        (None, _) => text,
    };
    match p.profile.answer_placement() {
        AnswerPlacement::Initrd { name } => {
            let out = staging.path("answer-media.cpio.gz");
            cx.log.line(format_args!(
                "initrd overlay: `/{name}` ({} bytes) in a gzip'd newc cpio",
                text.len()
            ));
            let bytes = initrd_overlay(name, &text)
                .or_else(|e| fail(format!("step `{}`: building the cpio: {e}", step.id)))?;
            std::fs::write(&out, bytes).or_else(|e| {
                fail(format!(
                    "step `{}`: writing `{}`: {e}",
                    step.id,
                    out.display()
                ))
            })
        }
        AnswerPlacement::Volume { label, file: name } => {
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
            if label == "cidata" {
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
        AnswerPlacement::Nothing => fail(format!(
            "step `{}`: install method `{}` takes no answer file",
            step.id, p.method
        )),
    }
}

/// A gzip'd newc cpio archive holding one file `name` (mode 0644, root-owned, mtime 0, so the
/// bytes depend on the content only) with `content`: appended to an initrd, the kernel unpacks
/// it after the initrd's own archive, so the file appears at `/name` in the installer.
pub(crate) fn initrd_overlay(name: &str, content: &[u8]) -> std::io::Result<Vec<u8>> {
    let size = u32::try_from(content.len())
        .map_err(|_| std::io::Error::other("answer file larger than 4 GiB"))?;
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut w = cpio::newc::Builder::new(name)
        .mode(0o100_644)
        .nlink(1)
        .write(gz, size);
    w.write_all(content)?;
    let gz = cpio::newc::trailer(w.finish()?)?;
    gz.finish()
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
    build_iso(&cx.env.mkisofs, &dir, super::windows_media::label(), &out)?;
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}
