//! The cache and run folders are private to kiln's user while libvirt's system QEMU still reaches
//! what a guest needs: a real TCG build of the tiny ISO into a `0700` cache, then the modes of
//! everything it left, and another local user trying to read an artifact and a log and to take a
//! key's lock.

mod common;

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{fixtures, workdir};

const OTHER: &str = "kiln-h14-other";

/// A local user created for the test and removed after it.
struct OtherUser;

impl OtherUser {
    fn create() -> OtherUser {
        let _ = Command::new("userdel").arg(OTHER).output();
        let out = Command::new("useradd")
            .args(["--no-create-home", "--shell", "/bin/sh", OTHER])
            .output()
            .expect("run useradd");
        assert!(
            out.status.success(),
            "useradd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        OtherUser
    }

    /// Runs `sh -c script` as the other user; true if it succeeded.
    fn can(&self, script: &str) -> bool {
        Command::new("runuser")
            .args(["-u", OTHER, "--", "sh", "-c", script])
            .output()
            .expect("run runuser")
            .status
            .success()
    }
}

impl Drop for OtherUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(OTHER).output();
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        out.push(p.clone());
        if e.file_type().unwrap().is_dir() {
            walk(&p, out);
        }
    }
}

#[test]
fn a_real_build_leaves_a_cache_only_kiln_and_qemu_can_reach_and_no_other_user_can_read_or_lock() {
    // Built disks, answer files and logs were 0644 in 0755 folders: any local user could read them.
    let dir = workdir();
    fixtures(dir.path());
    let file = dir.path().join("tiny.kdl");
    std::fs::write(
        &file,
        r#"pipeline "priv" {
    source "tiny.iso"
    disk size="1GiB"
    machine cpus=1 memory="256MiB"
    install "none" timeout="120s"
    output format="qcow2"
}
"#,
    )
    .unwrap();
    let cache = dir.path().join("cache");
    let run = common::run_id("private");
    // What a Windows install killed by SIGKILL leaves: its answer ISO (administrator password).
    let killed = cache.join("runs/r0-killed/win.install.work");
    std::fs::create_dir_all(&killed).unwrap();
    std::fs::write(killed.join("answer-media.iso"), b"password").unwrap();
    // As the killed kiln left them (the test made them: the cache root is still the test's).
    let runs = cache.join("runs");
    let run0 = runs.join("r0-killed");
    for p in [&cache, &runs, &run0, &killed] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    // A permissive umask must not matter.
    let old = rustix::process::umask(rustix::fs::Mode::empty());
    let result = common::build_tcg(&file, &cache, &run);
    rustix::process::umask(old);
    assert_eq!(result.exit_code(), 0, "{:?}", result.failures());
    assert_eq!(result.guests_run, 1, "the guest ran under qemu:///system");
    assert!(
        !killed.join("answer-media.iso").exists(),
        "the next run removed the killed run's secret answer ISO"
    );

    let mut paths = vec![cache.clone()];
    walk(&cache, &mut paths);
    let (mut dirs, mut files) = (0, 0);
    for p in &paths {
        let meta = std::fs::symlink_metadata(p).unwrap();
        let mode = meta.mode() & 0o777;
        if meta.is_dir() {
            dirs += 1;
            // 0700, plus at most the ACL mask `x` (shown in the group bits) for QEMU's user.
            assert_eq!(mode & !0o010, 0o700, "{} is {mode:o}", p.display());
        } else if meta.is_file() {
            files += 1;
            assert_eq!(mode, 0o600, "{} is {mode:o}", p.display());
        }
    }
    let run_dir = cache.join("runs").join(&run);
    let install_log = std::fs::read_dir(&run_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".log") && !p.to_string_lossy().contains("console"))
        .expect("a step log");
    let console = std::fs::read_dir(&run_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".console.log"))
        .expect("a console log");
    assert!(paths.contains(&console), "the console log was checked");
    let image = result.images[0].path.clone().expect("image path");
    eprintln!("{dirs} folders and {files} files checked");
    assert!(files >= 5, "only {files} files");

    let other = OtherUser::create();
    assert!(other.can("true"), "the other user can run commands");
    for secret in [&image, &install_log, &console] {
        assert!(
            !other.can(&format!("cat '{}' > /dev/null", secret.display())),
            "{OTHER} read {}",
            secret.display()
        );
    }
    assert!(!other.can(&format!("ls '{}'", cache.display())));
    // A lock file another user creates (or holds open) would block the key for kiln.
    let key = result.steps[0].key.clone();
    let lock = cache.join("locks").join(format!("kiln-{key}"));
    let stranger = cache.join("locks").join(format!("kiln-{}", "0".repeat(64)));
    assert!(!other.can(&format!("exec 9>>'{}'", lock.display())));
    assert!(!other.can(&format!("exec 9>>'{}'", stranger.display())));
    assert!(!stranger.exists());
}
