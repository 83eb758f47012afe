//! Linux answer files with secrets: a preseed's or kickstart's root password
//! (`install preseed file=… { root-password env=… }`).
//!
//! The cached `answer-media` artifact holds a placeholder where the crypt hash goes (see
//! `kiln_plan::installer::with_root_password`). Right before it boots, the install step reads that
//! answer back, puts in SHA-512 crypt hashes of the secrets (resolved now, random salt) and writes
//! the media it attaches into its scratch folder, `0600`: the d-i initrd overlay or the kickstart
//! `OEMDRV` volume. They are removed when the install ends, never cached, and logs name the
//! secrets, never their values or hashes.

use std::io::Read as _;
use std::path::Path;

use kiln_plan::installer::AnswerPlacement;
use kiln_plan::step::InstallParams;

use super::answer_media::initrd_overlay;
use super::media::build_iso;
use super::seed::with_secret_hashes;
use super::windows_media::{RemoveDir, SecretMedia, write_files};
use super::{RunError, StepCx, fail};

/// Answer files larger than this are refused when read back.
const MAX_ANSWER: u64 = 16 << 20;

/// `name`'s content in a gzip'd newc cpio archive (the d-i initrd overlay).
pub(crate) fn read_overlay(bytes: &[u8], name: &str) -> Result<Vec<u8>, String> {
    let mut rest: Box<dyn std::io::Read> = Box::new(flate2::read::GzDecoder::new(bytes));
    loop {
        let mut entry =
            cpio::newc::Reader::new(rest).map_err(|e| format!("reading the cpio: {e}"))?;
        if entry.entry().is_trailer() {
            return Err(format!("no `{name}` in the answer's cpio"));
        }
        if entry.entry().name() == name {
            if u64::from(entry.entry().file_size()) > MAX_ANSWER {
                return Err(format!("`{name}` is larger than {MAX_ANSWER} bytes"));
            }
            let mut out = Vec::new();
            entry
                .read_to_end(&mut out)
                .map_err(|e| format!("reading `{name}` from the cpio: {e}"))?;
            return Ok(out);
        }
        rest = entry
            .to_writer(std::io::sink())
            .map_err(|e| format!("reading the cpio: {e}"))?;
    }
}

/// The answer medium with the secrets' hashes in place of their placeholders, written `0600`
/// into `scratch`; removed when the returned guard drops.
pub(crate) fn prepare(
    cx: &StepCx<'_>,
    p: &InstallParams,
    cached: &Path,
    scratch: &Path,
) -> Result<SecretMedia, RunError> {
    let step = cx.step;
    let secrets = super::resolve_secrets(step)?;
    let hashed = |text: Vec<u8>| -> Result<Vec<u8>, RunError> {
        let text = String::from_utf8(text)
            .or_else(|_| fail(format!("step `{}`: the answer file is not UTF-8", step.id)))?;
        with_secret_hashes(&text, &secrets)
            .map(String::into_bytes)
            .or_else(|e| fail(format!("step `{}`: {e}", step.id)))
    };
    let media = match p.profile.answer_placement() {
        AnswerPlacement::Initrd { name } => {
            let bytes = std::fs::read(cached).or_else(|e| {
                fail(format!(
                    "step `{}`: reading `{}`: {e}",
                    step.id,
                    cached.display()
                ))
            })?;
            let text =
                read_overlay(&bytes, name).or_else(|e| fail(format!("step `{}`: {e}", step.id)))?;
            let overlay = initrd_overlay(name, &hashed(text)?)
                .or_else(|e| fail(format!("step `{}`: building the cpio: {e}", step.id)))?;
            let media = SecretMedia::create(scratch.join("answer-secret.cpio.gz"))?;
            std::fs::write(media.iso(), overlay)
                .or_else(|e| fail(format!("step `{}`: writing the answer: {e}", step.id)))?;
            media
        }
        AnswerPlacement::Volume { label, file } => {
            let tree = kiln_unattend::IsoTree::open(cached).or_else(|e| {
                fail(format!(
                    "step `{}`: reading the answer medium: {e}",
                    step.id
                ))
            })?;
            let text = tree
                .read_file(cached, file, MAX_ANSWER)
                .or_else(|e| fail(format!("step `{}`: reading `{file}`: {e}", step.id)))?;
            let dir = scratch.join("answer-secret");
            let _ = std::fs::remove_dir_all(&dir);
            let _remove = RemoveDir(dir.clone());
            let files = [kiln_unattend::MediaFile {
                path: file.to_owned(),
                contents: hashed(text)?,
                secret: true,
            }];
            write_files(&dir, &files).or_else(|e| fail(format!("step `{}`: {e}", step.id)))?;
            let media = SecretMedia::create(scratch.join("answer-secret.iso"))?;
            build_iso(&cx.env.mkisofs, &dir, label, media.iso())?;
            media
        }
        AnswerPlacement::Nothing => {
            return fail(format!(
                "step `{}`: install method `{}` takes no answer file, so it has no place for secrets",
                step.id, p.method
            ));
        }
    };
    cx.log.line(format_args!(
        "answer with password hashes (SHA-512 crypt) for {}; deleted after the install",
        super::secret_sources(step)
    ));
    Ok(media)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The install reads the cached preseed back out of its overlay to put the hash in.
    #[test]
    fn the_preseed_is_read_back_from_its_initrd_overlay() {
        let text = b"d-i passwd/root-password-crypted password !KILN-SECRET-HASH(root-password)\n";
        let gz = initrd_overlay("preseed.cfg", text).unwrap();
        assert_eq!(read_overlay(&gz, "preseed.cfg").unwrap(), text);
        let e = read_overlay(&gz, "other.cfg").unwrap_err();
        assert!(e.contains("no `other.cfg`"), "{e}");
    }
}
