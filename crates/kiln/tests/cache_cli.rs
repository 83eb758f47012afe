//! `kiln cache ls | verify | prune` run as the real binary against a real cache folder.

use std::fs;
use std::process::{Command, Output};

use kiln_cache::{ArtifactKey, ArtifactStore, BaseCache, CacheRoot, FetchRequest, QemuImg, Source};

fn kiln(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("cache")
        .arg("--dir")
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn cache_commands_list_verify_and_prune_a_real_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let root = CacheRoot::new(&dir);
    let src = tmp.path().join("installer.iso");
    fs::write(&src, vec![7u8; 50_000]).unwrap();
    let entry = BaseCache::new(root.clone(), QemuImg::from_env())
        .ensure(FetchRequest::new(Source::Path(src)).user("win11"))
        .unwrap();
    ArtifactStore::new(root.clone())
        .get_or_build(&ArtifactKey::from_bytes([9; 32]), Default::default(), |s| {
            fs::write(s.path("disk.raw"), b"disk")
        })
        .unwrap();
    // A download a killed kiln left behind.
    let stray = root.base_dir().join(format!("{}.part", "ab".repeat(20)));
    fs::write(&stray, b"half").unwrap();

    let ls = kiln(&dir, &["ls"]);
    assert_eq!(
        ls.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ls.stderr)
    );
    let text = stdout(&ls);
    assert!(text.contains("2 entries"), "{text}");
    assert!(text.contains("win11"), "{text}");
    assert!(text.contains(&stray.display().to_string()), "{text}");

    let json: serde_json::Value =
        serde_json::from_slice(&kiln(&dir, &["--format", "json", "ls"]).stdout).unwrap();
    assert_eq!(json["entries"].as_array().unwrap().len(), 2);
    assert_eq!(json["strays"].as_array().unwrap().len(), 1);

    assert_eq!(kiln(&dir, &["verify"]).status.code(), Some(0));
    let mut bytes = fs::read(&entry.path).unwrap();
    bytes[0] ^= 0xff;
    fs::write(&entry.path, &bytes).unwrap();
    let verify = kiln(&dir, &["verify"]);
    assert_eq!(
        verify.status.code(),
        Some(5),
        "a corrupt entry must fail verify"
    );
    assert!(stdout(&verify).contains("CORRUPT"), "{}", stdout(&verify));

    let dry = kiln(&dir, &["prune", "--dry-run", "--max-size", "0"]);
    assert_eq!(dry.status.code(), Some(0));
    assert!(
        stdout(&dry).contains("would remove 3 items"),
        "{}",
        stdout(&dry)
    );
    assert!(
        stray.exists() && entry.path.exists(),
        "a dry run removed something"
    );

    let prune = kiln(&dir, &["prune", "--max-size", "0"]);
    assert_eq!(prune.status.code(), Some(0));
    assert!(!stray.exists());
    assert!(!entry.path.exists());
    assert!(stdout(&kiln(&dir, &["ls"])).contains("no entries"));

    let bad = kiln(&dir, &["prune", "--max-age", "3y"]);
    assert_eq!(bad.status.code(), Some(2), "a bad age is a usage error");
}

fn qcow2_entry(store: &ArtifactStore, n: u8, backing: Option<&std::path::Path>) -> ArtifactKey {
    let key = ArtifactKey::from_bytes([n; 32]);
    store
        .get_or_build(&key, Default::default(), |s| {
            let mut cmd = Command::new("qemu-img");
            cmd.args(["create", "-q", "-f", "qcow2"]);
            if let Some(b) = backing {
                cmd.arg("-b").arg(b).args(["-F", "qcow2"]);
            }
            cmd.arg(s.path("disk.qcow2"));
            if backing.is_none() {
                cmd.arg("1M");
            }
            let status = cmd.status()?;
            assert!(status.success());
            Ok::<(), std::io::Error>(())
        })
        .unwrap();
    key
}

#[test]
fn verify_names_a_dangling_overlay_and_prune_says_which_base_it_keeps() {
    // The user must see why a chain is broken, and why an old entry was not pruned.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let store = ArtifactStore::new(CacheRoot::new(&dir));
    let base = qcow2_entry(&store, 1, None);
    let base_disk = store.entry_dir(&base).join("disk.qcow2");
    let overlay = qcow2_entry(&store, 2, Some(&base_disk));
    // The base was used long ago, the overlay is fresh.
    let record = store.entry_dir(&base).join("record.json");
    let mut rec: serde_json::Value = serde_json::from_slice(&fs::read(&record).unwrap()).unwrap();
    rec["last_used"] = 1.into();
    fs::write(&record, serde_json::to_vec(&rec).unwrap()).unwrap();

    let prune = kiln(&dir, &["prune", "--max-age", "1d"]);
    assert_eq!(prune.status.code(), Some(0));
    let text = stdout(&prune);
    assert!(
        text.contains(&format!(
            "kept {} (the base of {}, which remains)",
            store.entry_dir(&base).display(),
            &overlay.to_hex()[..12]
        )),
        "{text}"
    );
    assert!(base_disk.exists());

    fs::remove_dir_all(store.entry_dir(&base)).unwrap();
    let verify = kiln(&dir, &["verify"]);
    assert_eq!(verify.status.code(), Some(5));
    let text = stdout(&verify);
    assert!(
        text.contains(&format!(
            "DANGLING `disk.qcow2`: its backing file `{}` is gone",
            base_disk.display()
        )),
        "{text}"
    );
    assert!(text.contains("1 corrupt, missing or broken"), "{text}");
}
