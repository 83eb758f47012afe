//! Generated Windows answer media (kiln-unattend): `autounattend.xml`, the sysprep answer file,
//! cloudbase-init's configuration and the first-logon scripts, plus the fetched cloudbase-init MSI.
//!
//! The media holding secret values (administrator password, product key) exist only while the
//! install runs: the install step resolves the secrets from the environment or files, renders the
//! files into its scratch folder (folder `0700`, secret files `0600`), builds the ISO (`0600`;
//! libvirt's dynamic ownership hands it to QEMU's user), removes the folder at once and the ISO
//! when the install ends, however it ends. They are never committed to the artifact store; the
//! cached `answer-media` artifact is the same render with placeholders. Logs and events name the
//! secrets, never their values.
//!
//! A hard kill (SIGKILL, power loss) runs no destructor: the ISO and the rendered folder would stay
//! in the dead run's scratch folder. Every build therefore starts with [`remove_leftovers`], which
//! deletes them from every run folder whose build is over (its run lock is free).

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use kiln_plan::Step;
use kiln_plan::step::WindowsParams;
use kiln_unattend::{MediaFile, SecretRef, SecretSource, SecretValue, Secrets, WindowsImage};

use super::media::build_iso;
use super::{RunError, StepCx, fail};

/// The kiln-unattend image of the step's cell.
pub(crate) fn image(step: &Step, w: &WindowsParams) -> Result<WindowsImage, RunError> {
    kiln_plan::windows::image_from_params(w).or_else(|problems| {
        fail(format!(
            "step `{}`: the Windows image is invalid: {}",
            step.id,
            problems
                .iter()
                .map(|p| p.message.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        ))
    })
}

/// Writes `files` under `dir` (created `0700`): secret files `0600`, the others `0644`.
pub(crate) fn write_files(dir: &Path, files: &[MediaFile]) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| format!("creating `{}`: {e}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("chmod `{}`: {e}", dir.display()))?;
    for file in files {
        write_one(dir, &file.path, &file.contents, file.secret)?;
    }
    Ok(())
}

fn write_one(dir: &Path, rel: &str, contents: &[u8], secret: bool) -> Result<(), String> {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| format!("creating `{}`: {e}", parent.display()))?;
    }
    let mode = if secret { 0o600 } else { 0o644 };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&path)
        .map_err(|e| format!("writing `{rel}`: {e}"))?;
    f.write_all(contents)
        .map_err(|e| format!("writing `{rel}`: {e}"))?;
    Ok(())
}

/// The answer media of one install, with secrets: deleted when dropped.
pub(crate) struct SecretMedia {
    iso: PathBuf,
}

impl SecretMedia {
    /// Creates `iso` empty with mode `0600` (before xorriso writes into it); the file is removed
    /// when the guard drops.
    pub(crate) fn create(iso: PathBuf) -> Result<Self, RunError> {
        let guard = SecretMedia { iso };
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&guard.iso)
            .or_else(|e| fail(format!("creating `{}`: {e}", guard.iso.display())))?;
        fs::set_permissions(&guard.iso, fs::Permissions::from_mode(0o600))
            .or_else(|e| fail(format!("chmod `{}`: {e}", guard.iso.display())))?;
        Ok(guard)
    }

    /// The ISO to attach.
    pub(crate) fn iso(&self) -> &Path {
        &self.iso
    }
}

impl Drop for SecretMedia {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.iso);
    }
}

/// Removes a folder when dropped (the rendered files, once they are in the ISO or on failure).
pub(crate) struct RemoveDir(pub(crate) PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Resolves the step's secrets, renders the media and builds their ISO in `scratch`.
pub(crate) fn prepare(
    cx: &StepCx<'_>,
    w: &WindowsParams,
    scratch: &Path,
) -> Result<SecretMedia, RunError> {
    let step = cx.step;
    let image = image(step, w)?;
    let mut secrets = Secrets::new();
    for (role, value) in super::resolve_secrets(step)? {
        let name = SecretRef::new(role).or_else(|e| fail(format!("step `{}`: {e}", step.id)))?;
        secrets.insert(&name, SecretValue::new(value.expose()));
    }
    let media =
        kiln_unattend::answer_media(&image, SecretSource::Values(&secrets)).or_else(|e| {
            fail(format!(
                "step `{}`: rendering the answer media: {e}",
                step.id
            ))
        })?;
    let dir = scratch.join(DIR_NAME);
    let _ = fs::remove_dir_all(&dir);
    let _remove = RemoveDir(dir.clone());
    write_files(&dir, &media.files).or_else(|e| fail(format!("step `{}`: {e}", step.id)))?;
    if let Some(msi_path) = &media.msi_path {
        let Some(msi) = cx.inputs.get("agent-installer") else {
            return fail(format!(
                "step `{}`: cloudbase-init needs its MSI: name it in `customize cloudbase-init {{ installer \"...\" }}`",
                step.id
            ));
        };
        let to = dir.join(msi_path);
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent)
                .or_else(|e| fail(format!("creating `{}`: {e}", parent.display())))?;
        }
        fs::copy(msi, &to).or_else(|e| {
            fail(format!(
                "step `{}`: copying the cloudbase-init MSI `{}`: {e}",
                step.id,
                msi.display()
            ))
        })?;
    }
    let iso = scratch.join(ISO_NAME);
    let guard = SecretMedia::create(iso.clone())?;
    build_iso(&cx.env.mkisofs, &dir, label(), &iso)?;
    cx.log.line(format_args!(
        "answer medium: {} files ({} with secrets: {}), language {}{}; deleted after the install",
        media.files.len(),
        media.files.iter().filter(|f| f.secret).count(),
        step.exec
            .secrets
            .iter()
            .map(|s| format!("{} from {}", s.role, s.identity))
            .collect::<Vec<_>>()
            .join(", "),
        image.locale.ui,
        if media.msi_path.is_some() {
            ", cloudbase-init MSI"
        } else {
            ""
        }
    ));
    Ok(guard)
}

/// Names of the secret media in a step's scratch folder.
const ISO_NAME: &str = "answer-media.iso";
const DIR_NAME: &str = "answer-media";
/// What a guest step's scratch folder may hold with secrets in it, removed once its run is over
/// (a hard kill runs no destructor): Windows answer media, Linux seeds and answers with password
/// hashes (runners/seed.rs, runners/linux_answer.rs) and the initrd a preseed was appended to.
const SECRET_LEFTOVERS: &[&str] = &[
    ISO_NAME,
    DIR_NAME,
    "seed-secret.iso",
    "seed-secret",
    "answer-secret.cpio.gz",
    "answer-secret.iso",
    "answer-secret",
    "initrd",
];

/// Removes secret answer media left in the scratch folders (`<run>/<step>.work/`) of runs whose
/// build is over; returns what it removed. A run in progress holds its lock and is left alone.
pub fn remove_leftovers(runs_dir: &Path) -> Result<Vec<PathBuf>, String> {
    let idle = kiln_cache::maintain::idle_runs(runs_dir).map_err(|e| super::error_chain(&e))?;
    let mut removed = Vec::new();
    for (run, _lock) in idle {
        let Ok(rd) = fs::read_dir(&run) else { continue };
        for scratch in rd.flatten() {
            let is_work = scratch.file_name().to_string_lossy().ends_with(".work")
                && scratch.file_type().is_ok_and(|t| t.is_dir());
            if !is_work {
                continue;
            }
            for name in SECRET_LEFTOVERS {
                let path = scratch.path().join(name);
                let Ok(meta) = fs::symlink_metadata(&path) else {
                    continue;
                };
                let removal = if meta.is_dir() {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
                removal.map_err(|e| format!("removing `{}`: {e}", path.display()))?;
                removed.push(path);
            }
        }
    }
    Ok(removed)
}

/// The volume label of Windows answer media (Setup reads any removable root; the label is kiln's).
pub(crate) fn label() -> &'static str {
    use kiln_plan::installer::{AnswerPlacement, InstallerProfile};
    match InstallerProfile::WindowsSetup.answer_placement() {
        AnswerPlacement::Volume { label, .. } => label,
        AnswerPlacement::Initrd { .. } | AnswerPlacement::Nothing => "KILNCFG",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_files_are_0600_others_0644_in_a_0700_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("media");
        let files = [
            MediaFile {
                path: "autounattend.xml".into(),
                contents: b"<unattend/>".to_vec(),
                secret: true,
            },
            MediaFile {
                path: "kiln/kiln-media.txt".into(),
                contents: b"marker".to_vec(),
                secret: false,
            },
        ];
        write_files(&dir, &files).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("autounattend.xml")), 0o600);
        assert_eq!(mode(&dir.join("kiln/kiln-media.txt")), 0o644);
        assert_eq!(
            fs::read(dir.join("kiln/kiln-media.txt")).unwrap(),
            b"marker"
        );
    }

    #[test]
    fn secret_media_left_by_a_killed_run_are_removed_but_a_live_runs_are_not() {
        // SIGKILL runs no destructor: the next build must delete the dead run's password-bearing ISO.
        let tmp = tempfile::tempdir().unwrap();
        let runs = tmp.path().join("runs");
        let plant = |run: &str| {
            let work = runs.join(run).join("win.install.work");
            fs::create_dir_all(work.join(DIR_NAME)).unwrap();
            fs::write(work.join(ISO_NAME), b"password").unwrap();
            fs::write(work.join(DIR_NAME).join("autounattend.xml"), b"password").unwrap();
            fs::write(work.join("nvram.fd"), b"").unwrap();
            // A Linux customize's seed with password hashes.
            let linux = runs.join(run).join("deb.customize.work");
            fs::create_dir_all(linux.join("seed-secret")).unwrap();
            fs::write(linux.join("seed-secret.iso"), b"$6$hash").unwrap();
            work
        };
        let dead = plant("r1-killed");
        let live = plant("r2-running");
        let held = kiln_cache::maintain::RunLock::acquire(&runs.join("r2-running")).unwrap();
        let removed = remove_leftovers(&runs).unwrap();
        let dead_linux = dead.with_file_name("deb.customize.work");
        let mut expected = vec![
            dead.join(ISO_NAME),
            dead.join(DIR_NAME),
            dead_linux.join("seed-secret.iso"),
            dead_linux.join("seed-secret"),
        ];
        let mut removed = removed;
        expected.sort();
        removed.sort();
        assert_eq!(removed, expected);
        assert!(!dead.join(ISO_NAME).exists() && !dead.join(DIR_NAME).exists());
        assert!(dead.join("nvram.fd").exists(), "only the secret media go");
        assert!(live.join(ISO_NAME).exists() && live.join(DIR_NAME).exists());
        drop(held);
        assert_eq!(remove_leftovers(&runs).unwrap().len(), 4);
        assert!(
            remove_leftovers(&tmp.path().join("none"))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn secret_media_are_deleted_when_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let iso = tmp.path().join("answer-media.iso");
        fs::write(&iso, "iso").unwrap();
        drop(SecretMedia { iso: iso.clone() });
        assert!(!iso.exists());
        let dir = tmp.path().join("d");
        fs::create_dir(&dir).unwrap();
        drop(RemoveDir(dir.clone()));
        assert!(!dir.exists());
    }
}
