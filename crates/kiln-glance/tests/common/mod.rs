//! A real Keystone + Glance shared by every test of this binary, whether the tests run as threads
//! of one process (`cargo test`) or as one process each (`cargo nextest`).
//!
//! The servers live in `$CARGO_TARGET_TMPDIR/kiln-openstack/state`, started by
//! `scripts/openstack/start.sh` under an flock. Each test holds a lease file while it runs;
//! `scripts/openstack/watchdog.sh` stops the servers (`stop.sh`, by PID) once no lease has been
//! held for [`IDLE_SECS`], i.e. shortly after the last test of the run.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use kiln_glance::{CloudConfig, ConfigSources, Glance, Session, config};

/// Seconds without a lease after which the watchdog stops the servers.
pub const IDLE_SECS: u32 = 20;

pub struct OpenStack {
    pub state: PathBuf,
    pub env: BTreeMap<String, String>,
    lease: PathBuf,
}

impl Drop for OpenStack {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.lease);
    }
}

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/openstack")
}

fn read_env(state: &Path) -> Option<BTreeMap<String, String>> {
    let text = fs::read_to_string(state.join("env")).ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    )
}

fn alive(env: &BTreeMap<String, String>) -> bool {
    ["KEYSTONE_PID", "GLANCE_PID"].iter().all(|k| {
        env.get(*k)
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
    })
}

/// The shared servers, started if they are not running; hold the value for the whole test.
pub fn openstack() -> OpenStack {
    static LEASES: AtomicU64 = AtomicU64::new(0);
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kiln-openstack");
    let state = root.join("state");
    let leases = root.join("leases");
    fs::create_dir_all(&leases).unwrap();
    let lock_path = root.join("lock");
    let lock = File::create(&lock_path).unwrap();
    lock.lock().unwrap();

    let env = match read_env(&state).filter(alive) {
        Some(env) => env,
        None => {
            let stop = Command::new(scripts().join("stop.sh"))
                .arg(&state)
                .status()
                .unwrap();
            assert!(stop.success(), "stop.sh failed");
            let _ = fs::remove_dir_all(&state);
            let start = Command::new(scripts().join("start.sh"))
                .arg(&state)
                .stdin(Stdio::null())
                .status()
                .unwrap();
            assert!(start.success(), "scripts/openstack/start.sh failed");
            // Detached (own session, no inherited pipes) so the test runner does not wait for it.
            let st = Command::new("setsid")
                .arg("--fork")
                .arg(scripts().join("watchdog.sh"))
                .arg(&state)
                .arg(&lock_path)
                .arg(&leases)
                .arg(IDLE_SECS.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap();
            assert!(st.success(), "cannot start watchdog.sh");
            read_env(&state).expect("start.sh wrote no env file")
        }
    };
    let lease = leases.join(format!(
        "{}-{}",
        std::process::id(),
        LEASES.fetch_add(1, Ordering::Relaxed)
    ));
    File::create(&lease).unwrap();
    lock.unlock().unwrap();
    OpenStack { state, env, lease }
}

impl OpenStack {
    /// Configuration sources that see only this harness's clouds.yaml and secure.yaml.
    pub fn sources(&self) -> ConfigSources {
        ConfigSources {
            cwd: self.state.join("no-cwd"),
            home: None,
            site_dir: self.state.join("no-etc"),
            env: BTreeMap::from([
                (
                    "OS_CLIENT_CONFIG_FILE".to_owned(),
                    self.state.join("clouds.yaml").display().to_string(),
                ),
                (
                    "OS_CLIENT_SECURE_FILE".to_owned(),
                    self.state.join("secure.yaml").display().to_string(),
                ),
            ]),
        }
    }

    pub fn cloud(&self, name: &str) -> CloudConfig {
        config::load(&self.sources(), Some(name)).unwrap()
    }

    pub fn glance(&self, cloud: &str) -> Glance {
        Glance::connect(Arc::new(Session::new(self.cloud(cloud)).unwrap())).unwrap()
    }

    /// Environment for a `kiln-glance` child process using cloud `cloud`.
    pub fn child_env(&self, cloud: &str) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self.sources().env.into_iter().collect();
        v.push(("OS_CLOUD".to_owned(), cloud.to_owned()));
        v
    }
}

/// A name no other test (or earlier run) uses.
pub fn unique(name: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "kiln-test-{name}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// `md5sum` / `sha512sum` of a file, computed by coreutils (not by kiln's own hashing).
pub fn coreutils_digest(tool: &str, path: &Path) -> String {
    let out = Command::new(tool).arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// A small real qcow2 holding `mib` MiB of random data, made with qemu-img.
pub fn make_qcow2(dir: &Path, mib: usize) -> PathBuf {
    let raw = dir.join("disk.raw");
    random_file(&raw, mib << 20);
    let qcow2 = dir.join("disk.qcow2");
    let st = Command::new("qemu-img")
        .args(["convert", "-q", "-f", "raw", "-O", "qcow2"])
        .arg(&raw)
        .arg(&qcow2)
        .status()
        .unwrap();
    assert!(st.success(), "qemu-img convert failed");
    fs::remove_file(raw).unwrap();
    qcow2
}

/// `len` bytes of pseudo-random data (xorshift; fast and incompressible enough for Glance).
pub fn random_file(path: &Path, len: usize) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(File::create(path).unwrap());
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ (std::process::id() as u64) ^ len as u64;
    let mut buf = vec![0u8; 1 << 16];
    let mut left = len;
    while left > 0 {
        for chunk in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        let n = left.min(buf.len());
        f.write_all(&buf[..n]).unwrap();
        left -= n;
    }
    f.flush().unwrap();
}

/// Images of the project named `name`, whatever their status.
/// The images named `name` that exist: listed, and not `deleted`. The harness's sqlite Glance can
/// leave a row `deleted` but still listed when a delete races with its own cleanup ("database is
/// locked" half-way); such an image has no data and cannot be used, so it is not a leak.
pub fn images_named(glance: &Glance, name: &str) -> Vec<kiln_glance::Image> {
    let mut images = glance.list(&[("name", name)]).unwrap();
    images.retain(|i| !matches!(i.status.as_str(), "deleted" | "pending_delete"));
    images
}
