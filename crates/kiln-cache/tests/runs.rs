//! `kiln cache prune` removes old run folders, never one whose build still runs.

use std::fs;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kiln_cache::maintain::{PruneReason, RunLock, idle_runs, prune_at};
use kiln_cache::{CacheRoot, PrunePolicy};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn prune_removes_old_run_folders_but_not_one_whose_build_holds_its_lock() {
    // runs/ grew forever (logs, consoles, scratch disks of failed steps); a live run must survive.
    let dir = tempfile::tempdir().unwrap();
    let root = CacheRoot::new(dir.path());
    root.create_dirs().unwrap();
    for run in ["r1-dead", "r2-live"] {
        let d = root.runs_dir().join(run).join("install.work");
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("disk.qcow2"), vec![1u8; 8192]).unwrap();
        fs::write(root.runs_dir().join(run).join("install.log"), b"log").unwrap();
    }
    let live = RunLock::acquire(&root.runs_dir().join("r2-live")).unwrap();
    let week = Duration::from_secs(7 * 86_400);
    let policy = PrunePolicy {
        max_age: Some(week),
        ..Default::default()
    };

    // Nothing is a week old yet.
    let report = prune_at(&root, &policy, now()).unwrap();
    assert!(report.removed.is_empty(), "{report:?}");

    // Eight days later: the dead run goes, the live one stays and is reported busy.
    let later = now() + 8 * 86_400;
    let idle: Vec<_> = idle_runs(&root.runs_dir()).unwrap();
    assert_eq!(idle.len(), 1, "only the dead run is idle");
    drop(idle);
    let report = prune_at(&root, &policy, later).unwrap();
    assert_eq!(report.removed.len(), 1, "{report:?}");
    assert_eq!(report.removed[0].reason, PruneReason::Run);
    assert_eq!(report.removed[0].name.as_deref(), Some("r1-dead"));
    assert!(report.removed[0].disk_usage >= 8192);
    assert!(!root.runs_dir().join("r1-dead").exists());
    assert_eq!(report.busy, [root.runs_dir().join("r2-live")]);
    assert!(root.runs_dir().join("r2-live/install.log").exists());

    drop(live);
    let report = prune_at(&root, &policy, later).unwrap();
    assert_eq!(report.removed.len(), 1);
    assert!(!root.runs_dir().join("r2-live").exists());
}
