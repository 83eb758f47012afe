//! Backing chains across cache entries, with real `qemu-img` overlays: prune keeps or removes a chain
//! together (by age and by size), verify reports dangling, foreign and changed bases, and damaged
//! records neither block a key nor stop `verify`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kiln_cache::maintain::{PruneReason, Verdict, prune_at};
use kiln_cache::{ArtifactKey, ArtifactStore, CacheRoot, PrunePolicy, list, verify};

const NOW: u64 = 10_000_000;
const DAY: u64 = 86_400;

fn qemu_img(args: &[&str]) {
    let out = Command::new("qemu-img").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "qemu-img {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `qemu-img info` opens the whole backing chain: it fails on a dangling overlay.
fn opens(path: &Path) -> bool {
    Command::new("qemu-img")
        .args(["info", "--backing-chain", "-U"])
        .arg(path)
        .output()
        .unwrap()
        .status
        .success()
}

struct Cache {
    _dir: tempfile::TempDir,
    root: CacheRoot,
    store: ArtifactStore,
}

impl Cache {
    fn new() -> Cache {
        let dir = tempfile::tempdir().unwrap();
        let root = CacheRoot::new(dir.path().join("cache"));
        let store = ArtifactStore::new(root.clone());
        Cache {
            _dir: dir,
            root,
            store,
        }
    }

    /// An entry holding a standalone qcow2 `disk.qcow2` with `fill` written into it.
    fn disk(&self, n: u8, fill: &str) -> ArtifactKey {
        let key = ArtifactKey::from_bytes([n; 32]);
        self.store
            .get_or_build(&key, Default::default(), |s| {
                let p = s.path("disk.qcow2");
                qemu_img(&["create", "-q", "-f", "qcow2", p.to_str().unwrap(), "4M"]);
                // Make each disk distinct (and a few clusters big) so sizes and digests differ.
                let io = format!("write -P {} 0 {}", fill.len() % 250 + 1, 65536 * fill.len());
                let out = Command::new("qemu-io")
                    .args(["-f", "qcow2", "-c", &io])
                    .arg(&p)
                    .output();
                if !matches!(out, Ok(o) if o.status.success()) {
                    fs::write(s.path("fill.txt"), fill)?;
                }
                Ok::<(), std::io::Error>(())
            })
            .unwrap();
        key
    }

    /// An entry holding a qcow2 overlay on `base`'s `disk.qcow2`, as the customize step makes it.
    fn overlay(&self, n: u8, base: &ArtifactKey) -> ArtifactKey {
        let key = ArtifactKey::from_bytes([n; 32]);
        let backing = self.disk_path(base);
        self.store
            .get_or_build(&key, Default::default(), |s| {
                let p = s.path("disk.qcow2");
                qemu_img(&[
                    "create",
                    "-q",
                    "-f",
                    "qcow2",
                    "-b",
                    backing.to_str().unwrap(),
                    "-F",
                    "qcow2",
                    p.to_str().unwrap(),
                ]);
                Ok::<(), std::io::Error>(())
            })
            .unwrap();
        key
    }

    fn disk_path(&self, key: &ArtifactKey) -> PathBuf {
        self.store.entry_dir(key).join("disk.qcow2")
    }

    fn set_last_used(&self, key: &ArtifactKey, t: u64) {
        let path = self.store.entry_dir(key).join("record.json");
        let mut rec: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        rec["last_used"] = t.into();
        fs::write(&path, serde_json::to_vec(&rec).unwrap()).unwrap();
    }

    fn present(&self, key: &ArtifactKey) -> bool {
        self.store.peek(key).unwrap().is_some()
    }

    fn usage(&self, key: &ArtifactKey) -> u64 {
        list(&self.root)
            .unwrap()
            .entries
            .iter()
            .find(|e| e.name == key.to_hex())
            .unwrap()
            .disk_usage
    }

    /// Every remaining artifact's qcow2 files open with their whole backing chain.
    fn assert_all_open(&self) {
        for e in list(&self.root).unwrap().entries {
            let disk = e.path.join("disk.qcow2");
            assert!(opens(&disk), "{} does not open", disk.display());
        }
    }
}

fn removed_names(report: &kiln_cache::PruneReport) -> Vec<String> {
    report
        .removed
        .iter()
        .filter_map(|p| p.name.clone())
        .collect()
}

#[test]
fn prune_by_age_keeps_an_old_install_under_a_fresh_customize_overlay() {
    // Pruning the install and keeping the overlay left a dangling chain under a published image.
    let c = Cache::new();
    let install = c.disk(1, "install");
    let custom = c.overlay(2, &install);
    c.set_last_used(&install, NOW - 10 * DAY);
    c.set_last_used(&custom, NOW);
    let report = prune_at(
        &c.root,
        &PrunePolicy {
            max_age: Some(Duration::from_secs(7 * DAY)),
            ..Default::default()
        },
        NOW,
    )
    .unwrap();
    assert!(removed_names(&report).is_empty(), "{report:?}");
    assert!(c.present(&install) && c.present(&custom));
    assert!(opens(&c.disk_path(&custom)));
    // The report says why the old install stayed.
    assert_eq!(report.kept.len(), 1);
    assert_eq!(report.kept[0].name, install.to_hex());
    assert_eq!(report.kept[0].backs, [custom.to_hex()]);
}

#[test]
fn prune_by_age_removes_an_old_chain_whole_overlay_first() {
    // When every member is old the chain goes together; the overlay never outlives its base.
    let c = Cache::new();
    let install = c.disk(1, "install");
    let custom = c.overlay(2, &install);
    let again = c.overlay(3, &custom);
    for k in [&install, &custom, &again] {
        c.set_last_used(k, NOW - 10 * DAY);
    }
    let report = prune_at(
        &c.root,
        &PrunePolicy {
            max_age: Some(Duration::from_secs(7 * DAY)),
            ..Default::default()
        },
        NOW,
    )
    .unwrap();
    assert_eq!(
        removed_names(&report),
        [again.to_hex(), custom.to_hex(), install.to_hex()]
    );
    assert!(list(&c.root).unwrap().entries.is_empty());
}

#[test]
fn prune_by_size_takes_an_unrelated_entry_before_the_base_of_a_fresh_overlay() {
    // Least recently used by its own record, the install is in use through its overlay.
    let c = Cache::new();
    let install = c.disk(1, "install-a-bit-bigger");
    let other = c.disk(2, "other");
    let custom = c.overlay(3, &install);
    c.set_last_used(&install, NOW - 3 * DAY);
    c.set_last_used(&other, NOW - 2 * DAY);
    c.set_last_used(&custom, NOW);
    let fit = c.usage(&install) + c.usage(&custom);
    let report = prune_at(
        &c.root,
        &PrunePolicy {
            max_size: Some(fit),
            ..Default::default()
        },
        NOW,
    )
    .unwrap();
    assert_eq!(removed_names(&report), [other.to_hex()]);
    assert!(c.present(&install) && c.present(&custom));
    c.assert_all_open();

    // Room for less than the chain: it goes whole, the overlay before its base.
    let report = prune_at(
        &c.root,
        &PrunePolicy {
            max_size: Some(c.usage(&install) - 1),
            ..Default::default()
        },
        NOW,
    )
    .unwrap();
    assert_eq!(removed_names(&report), [custom.to_hex(), install.to_hex()]);
    assert!(report.removed.iter().all(|p| p.reason == PruneReason::Size));
    c.assert_all_open();
}

#[test]
fn prune_keeps_a_base_whose_overlay_is_busy_and_says_why() {
    // A live build holding the overlay's lock keeps the overlay, so its base must stay too.
    let c = Cache::new();
    let install = c.disk(1, "install");
    let custom = c.overlay(2, &install);
    c.set_last_used(&install, NOW - 10 * DAY);
    c.set_last_used(&custom, NOW - 10 * DAY);
    let held = kiln_cache::EntryLock::acquire(&c.root.lock_path(&custom.to_hex())).unwrap();
    let report = prune_at(
        &c.root,
        &PrunePolicy {
            max_age: Some(Duration::from_secs(DAY)),
            ..Default::default()
        },
        NOW,
    )
    .unwrap();
    drop(held);
    assert!(removed_names(&report).is_empty(), "{report:?}");
    assert_eq!(report.kept.len(), 1);
    assert_eq!(report.kept[0].name, install.to_hex());
    assert_eq!(report.kept[0].backs, [custom.to_hex()]);
    c.assert_all_open();
}

#[test]
fn verify_reports_a_dangling_overlay() {
    // An overlay whose base was deleted by hand (or by an older kiln's prune) cannot boot.
    let c = Cache::new();
    let install = c.disk(1, "install");
    let custom = c.overlay(2, &install);
    fs::remove_dir_all(c.store.entry_dir(&install)).unwrap();
    let v = verify(&c.root).unwrap();
    let got = &v
        .iter()
        .find(|v| v.name == custom.to_hex())
        .unwrap()
        .verdict;
    assert_eq!(
        got,
        &Verdict::Dangling {
            file: "disk.qcow2".into(),
            kind: kiln_cache::chain::RefKind::Backing,
            target: c.disk_path(&install),
        }
    );
    assert!(got.is_bad());
}

#[test]
fn verify_reports_a_base_rebuilt_under_an_overlay() {
    // The same key rebuilt with other content is a silently different base under the image.
    let c = Cache::new();
    let install = c.disk(1, "install");
    let custom = c.overlay(2, &install);
    fs::remove_dir_all(c.store.entry_dir(&install)).unwrap();
    c.store
        .get_or_build(&install, Default::default(), |s| {
            let p = s.path("disk.qcow2");
            qemu_img(&["create", "-q", "-f", "qcow2", p.to_str().unwrap(), "8M"]);
            Ok::<(), std::io::Error>(())
        })
        .unwrap();
    let v = verify(&c.root).unwrap();
    let got = &v
        .iter()
        .find(|v| v.name == custom.to_hex())
        .unwrap()
        .verdict;
    assert!(
        matches!(got, Verdict::BaseChanged { file, .. } if file == "disk.qcow2"),
        "{got:?}"
    );
    let ok = &v
        .iter()
        .find(|v| v.name == install.to_hex())
        .unwrap()
        .verdict;
    assert_eq!(ok, &Verdict::Ok);
}

#[test]
fn verify_reports_an_overlay_on_a_file_outside_the_cache() {
    // A backing path outside the cache (e.g. a guest-written header pointing at /etc) is reported.
    let c = Cache::new();
    let outside = c.root.path().parent().unwrap().join("outside.raw");
    fs::write(&outside, vec![0u8; 1 << 20]).unwrap();
    let key = ArtifactKey::from_bytes([9; 32]);
    c.store
        .get_or_build(&key, Default::default(), |s| {
            let p = s.path("disk.qcow2");
            qemu_img(&[
                "create",
                "-q",
                "-f",
                "qcow2",
                "-b",
                outside.to_str().unwrap(),
                "-F",
                "raw",
                p.to_str().unwrap(),
            ]);
            Ok::<(), std::io::Error>(())
        })
        .unwrap();
    let v = verify(&c.root).unwrap();
    assert!(
        matches!(&v[0].verdict, Verdict::Foreign { target, .. } if *target == outside),
        "{v:?}"
    );
}

#[test]
fn a_damaged_record_is_listed_reported_and_pruned_so_the_key_builds_again() {
    // A torn or hand-edited record.json used to hide the entry from ls and block its key forever.
    let c = Cache::new();
    let key = c.disk(1, "x");
    fs::write(c.store.entry_dir(&key).join("record.json"), b"{ not json").unwrap();
    assert!(
        c.store.peek(&key).is_err(),
        "a damaged record reads as an error"
    );

    let listing = list(&c.root).unwrap();
    assert_eq!(listing.entries.len(), 1);
    assert!(listing.entries[0].damaged.is_some());

    let v = verify(&c.root).unwrap();
    assert!(matches!(v[0].verdict, Verdict::BadRecord { .. }), "{v:?}");

    // No age or size limit: damaged entries go anyway.
    let report = prune_at(&c.root, &PrunePolicy::default(), NOW).unwrap();
    assert_eq!(report.removed.len(), 1);
    assert_eq!(report.removed[0].reason, PruneReason::Damaged);
    assert!(c.store.peek(&key).unwrap().is_none());
    assert_eq!(c.disk(1, "x"), key);
    assert!(c.present(&key));
}

#[test]
fn a_raw_disk_whose_guest_wrote_a_qcow2_header_is_not_taken_for_an_overlay() {
    // A raw disk's first bytes are the guest's: a forged header must not pin another entry forever.
    let c = Cache::new();
    let install = c.disk(1, "install");
    let custom = c.overlay(2, &install);
    let header = fs::read(c.disk_path(&custom)).unwrap();
    let key = ArtifactKey::from_bytes([7; 32]);
    c.store
        .get_or_build(&key, Default::default(), |s| {
            fs::write(s.path("disk.raw"), &header[..4096])
        })
        .unwrap();
    fs::remove_dir_all(c.store.entry_dir(&custom)).unwrap();
    let listing = list(&c.root).unwrap();
    assert!(listing.entries.iter().all(|e| e.refs.is_empty()));
    c.set_last_used(&install, NOW - 10 * DAY);
    c.set_last_used(&key, NOW);
    let report = prune_at(
        &c.root,
        &PrunePolicy {
            max_age: Some(Duration::from_secs(7 * DAY)),
            ..Default::default()
        },
        NOW,
    )
    .unwrap();
    assert_eq!(removed_names(&report), [install.to_hex()]);
    assert!(verify(&c.root).unwrap().iter().all(|v| !v.verdict.is_bad()));
}
