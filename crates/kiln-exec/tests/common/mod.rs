//! Test harness for tests against the real libvirt + QEMU: starts the daemons if they do not
//! answer, builds the tiny fixtures from source, makes work folders libvirt's QEMU user can reach,
//! and checks that a test left no domains behind.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the harness"
)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use kiln_exec::{
    BootFrom, Completion, Disk, DiskFormat, DomainSpec, DomainType, Firmware, GuestSpec, Libvirt,
    Machine, OnReboot, Pattern, Persistence,
};

pub const URI: &str = "qemu:///system";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs a fixture script of the repository (`fixtures/debian/build.sh`, ...) with `args` and
/// returns the path it prints: the fixture, built or found in its cache.
pub fn fixture(script: &str, args: &[&std::ffi::OsStr]) -> PathBuf {
    let out = Command::new(repo_root().join(script))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// Plans `file` and builds it into `cache` on the local host under TCG (plain progress on
/// stderr), then checks that no domain of the run is left.
pub fn build_tcg(file: &Path, cache: &Path, run: &str) -> kiln_exec::build::BuildResult {
    ensure_libvirt();
    let mut o = kiln_exec::build::BuildOptions::new(cache);
    o.run_id = run.to_owned();
    let mut host = kiln_exec::Host::local();
    host.accel = kiln_exec::Accel::Tcg;
    o.hosts = vec![host];
    o.sink = std::sync::Arc::new(kiln_exec::build::PlainSink);
    let r = kiln_exec::build::build(&plan_files(&[file.to_owned()], cache), &o).unwrap();
    assert_no_domains(run);
    r
}

/// Loads and plans pipeline files with fixed tool versions, digests memoized in `cache`.
pub fn plan_files(files: &[PathBuf], cache: &Path) -> kiln_plan::Plan {
    let ws = kiln_syntax::load(
        files,
        &kiln_syntax::LoadOptions::default(),
        &kiln_syntax::RealFs,
    );
    assert!(ws.is_ok(), "{}", ws.render(false));
    let digests = kiln_exec::build::MemoDigests::new(&kiln_cache::CacheRoot::new(cache));
    let options = kiln_plan::PlanOptions {
        tools: kiln_plan::ToolVersions::fixed("test"),
        ..kiln_plan::PlanOptions::default()
    };
    kiln_plan::plan(&ws.pipelines, &options, &digests).expect("plan")
}

/// Starts libvirtd through the repo's script unless `qemu:///system` already answers.
pub fn ensure_libvirt() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        let status = Command::new(repo_root().join("scripts/start-libvirt.sh"))
            .status()
            .expect("run scripts/start-libvirt.sh");
        assert!(status.success(), "scripts/start-libvirt.sh failed");
    });
}

pub fn connect() -> Libvirt {
    ensure_libvirt();
    Libvirt::connect(URI).expect("connect to qemu:///system")
}

/// A temp folder under /tmp that libvirt's QEMU user can enter (tempdir makes 0700 folders).
pub fn workdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("kiln-exec-test-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// The tiny fixtures, built from fixtures/tiny/boot.asm into `dir` (0.5 s).
pub struct Fixtures {
    pub tiny: PathBuf,
    pub hang: PathBuf,
    pub probe: PathBuf,
    /// Writes a qcow2 header naming a host file (`/etc/hostname` here) as its backing file
    /// over LBA 0 of its disk.
    pub hostile: PathBuf,
}

pub fn fixtures(dir: &Path) -> Fixtures {
    build_tiny(dir, None)
}

/// The tiny fixtures, with the hostile installer's qcow2 header naming `backing` (an absolute
/// host path) as its backing file.
pub fn fixtures_with_backing(dir: &Path, backing: &Path) -> Fixtures {
    build_tiny(dir, Some(backing))
}

fn build_tiny(dir: &Path, backing: Option<&Path>) -> Fixtures {
    let mut cmd = Command::new(repo_root().join("fixtures/tiny/build.sh"));
    cmd.arg(dir);
    if let Some(b) = backing {
        cmd.env("TINY_HOSTILE_BACKING", b);
    }
    let status = cmd.status().expect("run fixtures/tiny/build.sh");
    assert!(status.success(), "fixtures/tiny/build.sh failed");
    Fixtures {
        tiny: dir.join("tiny.iso"),
        hang: dir.join("tiny-hang.iso"),
        probe: dir.join("tiny-probe.iso"),
        hostile: dir.join("tiny-hostile.iso"),
    }
}

/// A unique run id per test so parallel tests (and other projects' guests) never collide.
pub fn run_id(test: &str) -> String {
    format!("t{}-{test}", std::process::id())
}

/// Domains of this run that still exist, per `virsh list --all --name` (the user's view).
pub fn leftover_domains(run: &str) -> Vec<String> {
    let out = Command::new("virsh")
        .args(["-c", URI, "list", "--all", "--name"])
        .output()
        .expect("run virsh");
    assert!(
        out.status.success(),
        "virsh list failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let prefix = format!("kiln-{run}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

/// Asserts that no domain of `run` remains. A transient domain whose QEMU has exited is removed
/// by libvirt itself once PID 1 has reaped QEMU (up to ~2 s on these machines, see
/// docs/decisions/guest-runner.md), so this waits up to 15 s for that.
pub fn assert_no_domains(run: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let left = leftover_domains(run);
        if left.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "domains left behind: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn qcow2(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let status = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&path)
        .arg("16M")
        .status()
        .unwrap();
    assert!(status.success());
    path
}

/// The first 16 bytes of a qcow2 image, through qemu-io (no conversion).
pub fn first_bytes(disk: &Path) -> String {
    let out = Command::new("qemu-io")
        .args(["-f", "qcow2", "-r", "-c", "read -v 0 16"])
        .arg(disk)
        .output()
        .expect("run qemu-io");
    assert!(
        out.status.success(),
        "qemu-io: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The tiny install: tiny ISO on `hda`, the disk on `vda`, TCG.
pub fn tiny_spec(run: &str, step: &str, dir: &Path, iso: &Path, disk: Option<&Path>) -> GuestSpec {
    GuestSpec {
        step: step.into(),
        domain: DomainSpec {
            name: kiln_exec::domain_name(run, step),
            domain_type: DomainType::Qemu,
            machine: Machine::Pc,
            firmware: Firmware::Bios,
            tpm: false,
            vcpus: 1,
            memory_mib: 64,
            root_disk: disk.map(|d| Disk {
                path: d.to_owned(),
                format: DiskFormat::Qcow2,
            }),
            installer_iso: Some(iso.to_owned()),
            drivers_iso: None,
            extra_media: Vec::new(),
            serial_log: dir.join(format!("{step}.console.log")),
            boot: BootFrom::Cdrom,
            on_reboot: OnReboot::Destroy,
            disk_bus: kiln_exec::DiskBus::Virtio,
            kernel_boot: None,
            nic: None,
        },
        success: Pattern::regex(r"^KILN-TINY: INSTALL OK count=\d+$").unwrap(),
        failure: Some(Pattern::substring("INSTALL FAILED")),
        completion: Completion::PowerOff,
        timeout: Duration::from_secs(60),
        inactivity: None,
        persistence: Persistence::Persistent,
        poll_interval: Duration::from_millis(50),
        key_presses: None,
        console_limit: kiln_exec::MAX_CONSOLE_BYTES,
    }
}
