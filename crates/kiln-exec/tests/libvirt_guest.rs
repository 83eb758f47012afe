//! run_guest against the real libvirt + QEMU (TCG) with the tiny fixtures.

mod common;

use std::time::Duration;

use common::*;
use kiln_exec::{Cancel, GuestError, Hypervisor, Pattern, Persistence, run_guest};

// The tiny installer writes to the disk through libvirt: the qcow2 must hold `INSTALLED` + count,
// and a second run (transient this time) must see the first one's write and count on.
#[test]
fn tiny_install_writes_the_root_disk() {
    let run = run_id("install");
    let hv = connect();
    let dir = workdir();
    let disk = qcow2(dir.path(), "root.qcow2");
    let spec = tiny_spec(
        &run,
        "install",
        dir.path(),
        &fixtures(dir.path()).tiny,
        Some(&disk),
    );
    let outcome = run_guest(&hv, &spec, &Cancel::new()).expect("tiny install");
    assert_eq!(outcome.success_line, "KILN-TINY: INSTALL OK count=1");
    assert!(
        outcome.console.contains("kiln-tiny: read LBA 0"),
        "{}",
        outcome.console
    );
    assert!(
        first_bytes(&disk).starts_with("00000000:  49 4e 53 54 41 4c 4c 45 44 20 01 00"),
        "{}",
        first_bytes(&disk)
    );
    assert_no_domains(&run);

    let again = kiln_exec::GuestSpec {
        persistence: Persistence::Transient,
        ..spec
    };
    let outcome = run_guest(&hv, &again, &Cancel::new()).expect("second tiny install");
    assert_eq!(outcome.success_line, "KILN-TINY: INSTALL OK count=2");
    assert!(
        first_bytes(&disk).contains("49 4e 53 54 41 4c 4c 45 44 20 02 00"),
        "{}",
        first_bytes(&disk)
    );
    assert_no_domains(&run);
}

// An installer that never powers off must hit the timeout; the error must name the step, show the
// console tail and a screenshot that exists, and the domain must be gone.
#[test]
fn hanging_installer_times_out_with_evidence() {
    let run = run_id("hang");
    let hv = connect();
    let dir = workdir();
    let disk = qcow2(dir.path(), "root.qcow2");
    let spec = kiln_exec::GuestSpec {
        timeout: Duration::from_secs(5),
        ..tiny_spec(
            &run,
            "debian.install",
            dir.path(),
            &fixtures(dir.path()).hang,
            Some(&disk),
        )
    };
    let err = run_guest(&hv, &spec, &Cancel::new()).expect_err("must time out");
    let message = err.to_string();
    assert!(matches!(err, GuestError::Timeout { .. }), "{message}");
    assert!(message.contains("step `debian.install`"), "{message}");
    assert!(message.contains("kiln-tiny: hanging forever"), "{message}");
    let evidence = err.evidence().unwrap();
    let shot = evidence.screenshot.as_ref().expect("a screenshot");
    assert!(message.contains(&shot.display().to_string()), "{message}");
    let bytes = std::fs::read(shot).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG") || bytes.starts_with(b"P6\n"),
        "not a PNG/PPM screenshot: {shot:?}"
    );
    assert!(bytes.len() > 1000, "screenshot of {} bytes", bytes.len());
    assert!(evidence.console_log.exists());
    assert_no_domains(&run);
}

// A guest that stops printing is reported as inactive long before the overall timeout.
#[test]
fn silent_guest_fails_on_console_inactivity() {
    let run = run_id("quiet");
    let hv = connect();
    let dir = workdir();
    let spec = kiln_exec::GuestSpec {
        inactivity: Some(Duration::from_secs(4)),
        ..tiny_spec(&run, "quiet", dir.path(), &fixtures(dir.path()).hang, None)
    };
    let started = std::time::Instant::now();
    let err = run_guest(&hv, &spec, &Cancel::new()).expect_err("must fail");
    assert!(matches!(err, GuestError::Inactive { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        err.to_string().contains("kiln-tiny: hanging forever"),
        "{err}"
    );
    assert_no_domains(&run);
}

// A guest that writes more to its console than the cap is stopped, with evidence, and its
// domain removed: its log file cannot grow without bound (the cap is tiny here, 16 bytes; the
// tiny guest writes 45).
#[test]
fn console_flood_stops_the_guest() {
    let run = run_id("flood");
    let hv = connect();
    let dir = workdir();
    let spec = kiln_exec::GuestSpec {
        console_limit: 16,
        ..tiny_spec(&run, "flood", dir.path(), &fixtures(dir.path()).hang, None)
    };
    let started = std::time::Instant::now();
    let err = run_guest(&hv, &spec, &Cancel::new()).expect_err("must be stopped");
    let message = err.to_string();
    assert!(
        matches!(err, GuestError::ConsoleFlood { written, limit: 16, .. } if written > 16),
        "{message}"
    );
    assert!(message.contains("more than the 16 allowed"), "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert!(err.evidence().is_some());
    assert_no_domains(&run);
}

// Powering off is not success: without the success line the step fails, with the console tail.
#[test]
fn power_off_without_success_line_fails() {
    let run = run_id("noev");
    let hv = connect();
    let dir = workdir();
    let disk = qcow2(dir.path(), "root.qcow2");
    let spec = kiln_exec::GuestSpec {
        success: Pattern::substring("THIS LINE IS NEVER PRINTED"),
        ..tiny_spec(
            &run,
            "noev",
            dir.path(),
            &fixtures(dir.path()).tiny,
            Some(&disk),
        )
    };
    let err = run_guest(&hv, &spec, &Cancel::new()).expect_err("must fail");
    assert!(matches!(err, GuestError::NoEvidence { .. }), "{err}");
    assert!(
        err.to_string().contains("KILN-TINY: INSTALL OK count=1"),
        "{err}"
    );
    assert_no_domains(&run);
}

// The installer's own failure line fails the step at once (no root disk: the BIOS read fails).
#[test]
fn failure_line_fails_the_step() {
    let run = run_id("fail");
    let hv = connect();
    let dir = workdir();
    let spec = tiny_spec(&run, "fail", dir.path(), &fixtures(dir.path()).tiny, None);
    let err = run_guest(&hv, &spec, &Cancel::new()).expect_err("must fail");
    match &err {
        GuestError::FailureLine { line, .. } => assert_eq!(line, "KILN-TINY: INSTALL FAILED"),
        other => panic!("wrong error: {other}"),
    }
    assert_no_domains(&run);
}

// Two guests at once on one host, each on its own disk.
#[test]
fn two_guests_in_parallel() {
    let run = run_id("par");
    let hv = connect();
    let dir = workdir();
    let specs: Vec<_> = ["a", "b"]
        .iter()
        .map(|s| {
            let disk = qcow2(dir.path(), &format!("{s}.qcow2"));
            (
                disk.clone(),
                tiny_spec(&run, s, dir.path(), &fixtures(dir.path()).tiny, Some(&disk)),
            )
        })
        .collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = specs
            .iter()
            .map(|(_, spec)| scope.spawn(|| run_guest(&hv, spec, &Cancel::new())))
            .collect();
        for h in handles {
            let outcome = h.join().unwrap().expect("parallel install");
            assert_eq!(outcome.success_line, "KILN-TINY: INSTALL OK count=1");
        }
    });
    for (disk, _) in &specs {
        assert!(first_bytes(disk).contains("49 4e 53 54 41 4c 4c 45 44 20 01 00"));
    }
    assert_no_domains(&run);
}

// Ctrl-C: the caller's SIGINT handler sets the flag; the running guest is destroyed promptly.
#[test]
fn cancel_destroys_the_running_guest() {
    let run = run_id("cancel");
    let hv = connect();
    let dir = workdir();
    let spec = tiny_spec(&run, "cancel", dir.path(), &fixtures(dir.path()).hang, None);
    let cancel = Cancel::new();
    let started = std::time::Instant::now();
    let err = std::thread::scope(|scope| {
        let guest = scope.spawn(|| run_guest(&hv, &spec, &cancel));
        // Wait until the guest is really up before pulling the plug.
        while leftover_domains(&run).is_empty() && started.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(500));
        cancel.cancel();
        guest.join().unwrap().expect_err("cancelled")
    });
    assert!(matches!(err, GuestError::Cancelled { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_no_domains(&run);
}

/// Real libvirt, but `state()` panics once the guest runs: stands in for a bug in the caller's
/// thread while a guest is up.
struct PanicsOnState<'a>(&'a kiln_exec::Libvirt);

impl Hypervisor for PanicsOnState<'_> {
    fn uri(&self) -> &str {
        self.0.uri()
    }
    fn define(&self, xml: &str) -> Result<(), kiln_exec::HypervisorError> {
        self.0.define(xml)
    }
    fn create_transient(&self, xml: &str) -> Result<(), kiln_exec::HypervisorError> {
        self.0.create_transient(xml)
    }
    fn start(&self, name: &str) -> Result<(), kiln_exec::HypervisorError> {
        self.0.start(name)
    }
    fn state(
        &self,
        _name: &str,
    ) -> Result<(kiln_exec::DomainState, bool), kiln_exec::HypervisorError> {
        panic!("injected panic while the guest runs")
    }
    fn destroy(&self, name: &str) -> Result<(), kiln_exec::HypervisorError> {
        self.0.destroy(name)
    }
    fn undefine(&self, name: &str) -> Result<(), kiln_exec::HypervisorError> {
        self.0.undefine(name)
    }
    fn send_key(&self, name: &str, keycodes: &[u32]) -> Result<(), kiln_exec::HypervisorError> {
        self.0.send_key(name, keycodes)
    }
    fn screenshot(
        &self,
        name: &str,
        stem: &std::path::Path,
    ) -> Result<std::path::PathBuf, kiln_exec::HypervisorError> {
        self.0.screenshot(name, stem)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, kiln_exec::HypervisorError> {
        self.0.list(prefix)
    }
}

// A panic while a guest runs must still destroy and undefine its domain.
#[test]
fn panic_while_running_removes_the_domain() {
    let run = run_id("panic");
    let hv = connect();
    let dir = workdir();
    let spec = tiny_spec(&run, "panic", dir.path(), &fixtures(dir.path()).hang, None);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_guest(&PanicsOnState(&hv), &spec, &Cancel::new())
    }));
    assert!(result.is_err(), "the injected panic must propagate");
    assert_no_domains(&run);
}

// Files under a folder libvirt's QEMU user cannot enter are refused up front, with the folder named.
#[test]
fn unreachable_paths_are_refused_before_defining() {
    use std::os::unix::fs::PermissionsExt as _;
    let run = run_id("perm");
    let hv = connect();
    let dir = workdir();
    let private = dir.path().join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let disk = qcow2(&private, "root.qcow2");
    let spec = tiny_spec(
        &run,
        "perm",
        dir.path(),
        &fixtures(dir.path()).tiny,
        Some(&disk),
    );
    let err = run_guest(&hv, &spec, &Cancel::new()).expect_err("must refuse");
    match &err {
        GuestError::Unreachable { folder, .. } => assert_eq!(folder, &private),
        other => panic!("wrong error: {other}"),
    }
    assert_no_domains(&run);
}
