//! The cache against real processes, real files, a real HTTP server and the real `qemu-img`: crash
//! safety (SIGKILL mid-fetch, mid-convert, mid-build), one download for N concurrent processes, Nova
//! compatibility of `_base` names, overlays and locks, checksum mismatches, verify and prune.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use kiln_cache::maintain::{EntryKind, PruneReason, Verdict, prune_at};
use kiln_cache::{
    Algo, ArtifactKey, BaseCache, CacheError, CacheRoot, Checksum, EntryLock, FetchRequest,
    PrunePolicy, QemuImg, Source, hash_file, list, prune, verify,
};
use sha2::Digest;

const PROBE: &str = env!("CARGO_BIN_EXE_kiln-cache-probe");

// ---------------------------------------------------------------------------------------------------
// A tiny HTTP/1.1 server that counts requests per path and can stall a response half-way.

#[derive(Clone)]
struct Route {
    body: Arc<Vec<u8>>,
    /// Send this many bytes, then wait until the route is released.
    stall_after: Option<usize>,
    /// Pause between 64 KiB pieces, so concurrent clients overlap.
    piece_delay: Duration,
}

#[derive(Default)]
struct ServerState {
    routes: Mutex<HashMap<String, Route>>,
    hits: Mutex<HashMap<String, usize>>,
    released: AtomicBool,
}

struct Server {
    port: u16,
    state: Arc<ServerState>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(ServerState::default());
        let st = Arc::clone(&state);
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let st = Arc::clone(&st);
                thread::spawn(move || serve(stream, &st));
            }
        });
        Server { port, state }
    }

    fn route(&self, path: &str, body: Vec<u8>) -> String {
        self.route_with(path, body, None, Duration::ZERO)
    }

    fn route_with(
        &self,
        path: &str,
        body: Vec<u8>,
        stall_after: Option<usize>,
        piece_delay: Duration,
    ) -> String {
        self.state.routes.lock().unwrap().insert(
            path.to_owned(),
            Route {
                body: Arc::new(body),
                stall_after,
                piece_delay,
            },
        );
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn hits(&self, path: &str) -> usize {
        self.state
            .hits
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// Lets stalled responses go on and stops stalling new ones.
    fn release(&self) {
        self.state.released.store(true, Ordering::SeqCst);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.release();
    }
}

fn serve(mut stream: TcpStream, st: &ServerState) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
    }
    *st.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    let route = st.routes.lock().unwrap().get(&path).cloned();
    let Some(route) = route else {
        let _ = stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
        route.body.len()
    );
    if stream.write_all(head.as_bytes()).is_err() {
        return;
    }
    let stall = if st.released.load(Ordering::SeqCst) {
        None
    } else {
        route.stall_after
    };
    let mut sent = 0;
    for piece in route.body.chunks(64 * 1024) {
        if let Some(n) = stall
            && sent >= n
        {
            while !st.released.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(20));
            }
        }
        if stream.write_all(piece).is_err() {
            return;
        }
        sent += piece.len();
        thread::sleep(route.piece_delay);
    }
}

// ---------------------------------------------------------------------------------------------------
// Helpers.

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
}

fn sha1_of_string_by_coreutils(s: &str) -> String {
    let mut child = Command::new("sha1sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

fn probe(args: &[&str]) -> Command {
    let mut cmd = Command::new(PROBE);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

fn run_ok(mut cmd: Command) -> serde_json::Value {
    let out = cmd.output().unwrap();
    assert_ok(&out)
}

fn assert_ok(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "probe failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// SIGKILLs a child and reaps it.
fn kill(mut child: Child) {
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn qemu_img(args: &[&str]) -> Vec<u8> {
    let out = Command::new("qemu-img").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "qemu-img {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn qemu_info(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&qemu_img(&[
        "info",
        "--output=json",
        "-U",
        path.to_str().unwrap(),
    ]))
    .unwrap()
}

/// A 16 MiB qcow2 image whose first MiB is 0xab.
fn qcow2_fixture(dir: &Path) -> PathBuf {
    let path = dir.join("src.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", path.to_str().unwrap(), "16M"]);
    let out = Command::new("qemu-io")
        .args([
            "-f",
            "qcow2",
            "-c",
            "write -P 0xab 0 1M",
            path.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "qemu-io: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

fn pid_alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s.rsplit(')').next().unwrap_or("").split_whitespace().next();
            state != Some("Z") && state != Some("X")
        })
        .unwrap_or(false)
}

// ---------------------------------------------------------------------------------------------------
// Concurrency.

#[test]
fn concurrent_processes_fetching_one_url_download_it_once() {
    // The whole point of the entry lock: N builds starting together must not download N times.
    let server = Server::start();
    let body = noise(4 << 20, 1);
    let url = server.route_with("/win.iso", body.clone(), None, Duration::from_millis(5));
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let checksum = format!("checksum=sha256:{}", sha256_hex(&body));
    let children: Vec<Child> = (0..4)
        .map(|_| {
            probe(&["fetch", root.to_str().unwrap(), &url, &checksum])
                .spawn()
                .unwrap()
        })
        .collect();
    let results: Vec<serde_json::Value> = children
        .into_iter()
        .map(|c| assert_ok(&c.wait_with_output().unwrap()))
        .collect();

    assert_eq!(
        server.hits("/win.iso"),
        1,
        "the source was downloaded more than once"
    );
    let fresh = results.iter().filter(|r| r["reused"] == false).count();
    assert_eq!(
        fresh, 1,
        "exactly one process fetches, the others reuse: {results:?}"
    );
    for r in &results {
        assert_eq!(r["name"], results[0]["name"]);
        assert_eq!(r["sha256"], sha256_hex(&body));
        assert_eq!(fs::read(r["path"].as_str().unwrap()).unwrap(), body);
    }
    // Nothing but the entry in _base.
    assert_eq!(
        names_in(&root.join("_base")),
        vec![results[0]["name"].as_str().unwrap().to_owned()]
    );
}

// ---------------------------------------------------------------------------------------------------
// Crash safety.

#[test]
fn a_writer_killed_mid_fetch_leaves_no_entry_and_only_that_fetch_is_redone() {
    let server = Server::start();
    let a = noise(300_000, 2);
    let b = noise(3 << 20, 3);
    let url_a = server.route("/a.img", a.clone());
    let url_b = server.route_with("/b.img", b.clone(), Some(2 << 20), Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let root_dir = dir.path().join("cache");
    let root_s = root_dir.to_str().unwrap();

    let first_a = run_ok(probe(&["fetch", root_s, &url_a]));
    let name_b = kiln_cache::source::base_name(&url_b);
    let part = root_dir.join("_base").join(format!("{name_b}.part"));
    let child = probe(&["fetch", root_s, &url_b]).spawn().unwrap();
    wait_for("a half-written .part", Duration::from_secs(30), || {
        fs::metadata(&part).is_ok_and(|m| m.len() >= 1 << 20)
    });
    kill(child);

    // Nothing visible as complete.
    assert!(!root_dir.join("_base").join(&name_b).exists());
    let root = CacheRoot::new(&root_dir);
    let listing = list(&root).unwrap();
    assert_eq!(
        listing.entries.len(),
        1,
        "only `a` is an entry: {listing:?}"
    );
    assert_eq!(listing.entries[0].name, first_a["name"].as_str().unwrap());
    assert_eq!(listing.strays.len(), 1);
    assert_eq!(listing.strays[0].path, part);

    // Prune removes the stray .part (the dead writer's lock is gone with it) and nothing else.
    let dry = prune(
        &root,
        &PrunePolicy {
            dry_run: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(dry.removed.len(), 1);
    assert!(part.exists(), "a dry run deleted something");
    let report = prune(&root, &PrunePolicy::default()).unwrap();
    assert_eq!(report.removed.len(), 1);
    assert_eq!(report.removed[0].reason, PruneReason::Stray);
    assert!(!part.exists());
    assert!(Path::new(first_a["path"].as_str().unwrap()).exists());

    // The rerun fetches `b` again and reuses `a` without a request.
    server.release();
    let again_a = run_ok(probe(&["fetch", root_s, &url_a]));
    let again_b = run_ok(probe(&["fetch", root_s, &url_b]));
    assert_eq!(again_a["reused"], true);
    assert_eq!(again_b["reused"], false);
    assert_eq!(server.hits("/a.img"), 1);
    assert_eq!(server.hits("/b.img"), 2);
    assert_eq!(fs::read(again_b["path"].as_str().unwrap()).unwrap(), b);
}

#[test]
fn a_writer_killed_mid_convert_leaves_no_entry_and_no_qemu_img_behind() {
    let dir = tempfile::tempdir().unwrap();
    let root_dir = dir.path().join("cache");
    let root_s = root_dir.to_str().unwrap();
    let qcow2 = qcow2_fixture(dir.path());
    let other = dir.path().join("other.raw");
    fs::write(&other, noise(100_000, 4)).unwrap();

    // A qemu-img that finishes converting, then hangs before kiln can rename the result.
    let marker = dir.path().join("converted");
    let wrapper = dir.path().join("slow-qemu-img");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nif [ \"$1\" = convert ]; then qemu-img \"$@\" || exit $?; echo $$ > {m}; exec sleep 600; fi\nexec qemu-img \"$@\"\n",
            m = marker.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();

    let done = run_ok(probe(&[
        "fetch",
        root_s,
        &format!("glance:img-other={}", other.display()),
        "format=raw",
        "raw",
    ]));
    let id = "0f4e6c1a-2b3d-4e5f-8a9b-0c1d2e3f4a5b";
    let spec = format!("glance:{id}={}", qcow2.display());
    let child = probe(&["fetch", root_s, &spec, "raw"])
        .env("KILN_QEMU_IMG", &wrapper)
        .spawn()
        .unwrap();
    wait_for("the conversion", Duration::from_secs(60), || {
        fs::read_to_string(&marker).is_ok_and(|s| s.ends_with('\n'))
    });
    let sleeper: u32 = fs::read_to_string(&marker).unwrap().trim().parse().unwrap();
    kill(child);
    // PR_SET_PDEATHSIG: the tool dies with the writer instead of running on unsupervised.
    wait_for(
        "qemu-img to die with its parent",
        Duration::from_secs(10),
        || !pid_alive(sleeper),
    );

    let name = kiln_cache::source::base_name(id);
    let base = root_dir.join("_base");
    assert!(!base.join(&name).exists(), "a half-done entry is visible");
    assert!(base.join(format!("{name}.converted")).exists());
    let root = CacheRoot::new(&root_dir);
    let strays = list(&root).unwrap().strays;
    assert_eq!(strays.len(), 2, "{strays:?}"); // .part and .converted

    // The rerun (real qemu-img) converts again, reuses the other entry, and leaves no stray.
    let again = run_ok(probe(&["fetch", root_s, &spec, "raw"]));
    assert_eq!(again["reused"], false);
    let other_again = run_ok(probe(&[
        "fetch",
        root_s,
        &format!("glance:img-other={}", other.display()),
        "format=raw",
        "raw",
    ]));
    assert_eq!(other_again["reused"], true);
    assert_eq!(other_again["path"], done["path"]);
    assert_eq!(names_in(&base).len(), 2, "{:?}", names_in(&base));
    assert!(list(&root).unwrap().strays.is_empty());
    let raw = fs::read(base.join(&name)).unwrap();
    assert_eq!(raw.len(), 16 << 20);
    assert!(raw[..1 << 20].iter().all(|&b| b == 0xab));
}

#[test]
fn a_builder_killed_mid_build_leaves_only_a_staging_folder() {
    let dir = tempfile::tempdir().unwrap();
    let root_dir = dir.path().join("cache");
    let root_s = root_dir.to_str().unwrap();
    let key = "7".repeat(64);
    let marker = dir.path().join("stalled");
    let child = probe(&[
        "build",
        root_s,
        &key,
        "2000000",
        &format!("stall={}", marker.display()),
    ])
    .spawn()
    .unwrap();
    wait_for("the builder to stall", Duration::from_secs(30), || {
        marker.exists()
    });
    kill(child);

    let root = CacheRoot::new(&root_dir);
    let store = kiln_cache::ArtifactStore::new(root.clone());
    let key: ArtifactKey = key.parse().unwrap();
    assert!(store.peek(&key).unwrap().is_none());
    assert!(!root_dir.join("artifacts-v1").join(key.to_hex()).exists());
    let listing = list(&root).unwrap();
    assert!(listing.entries.is_empty());
    assert_eq!(listing.strays.len(), 1);

    let built = run_ok(probe(&["build", root_s, &key.to_hex(), "2000000"]));
    assert_eq!(built["reused"], false);
    assert_eq!(names_in(&root_dir.join("artifacts-v1")), vec![key.to_hex()]);
    let a = store.peek(&key).unwrap().unwrap();
    assert_eq!(a.record.outputs["out.bin"].size, 2_000_000);
    assert_eq!(
        run_ok(probe(&["build", root_s, &key.to_hex(), "1"]))["reused"],
        true
    );
}

// ---------------------------------------------------------------------------------------------------
// Nova compatibility.

#[test]
fn glance_sourced_base_is_named_and_layered_as_nova_does() {
    let dir = tempfile::tempdir().unwrap();
    let root = CacheRoot::new(dir.path().join("instances"));
    let qcow2 = qcow2_fixture(dir.path());
    let id = "6a5c8f2e-1d3b-4c7a-9e0f-2b4d6f8a0c1e";
    let cache = BaseCache::new(root.clone(), QemuImg::from_env());
    let src = qcow2.clone();
    let entry = cache
        .ensure(
            FetchRequest::new(Source::Glance {
                image_id: id.to_owned(),
                open: Box::new(move || Ok(Box::new(fs::File::open(src)?) as Box<dyn Read + Send>)),
            })
            .disk_format("qcow2")
            .convert_to_raw()
            .user("win11"),
        )
        .unwrap();

    // Name: sha1 of the image id string, computed independently by coreutils.
    assert_eq!(entry.name(), sha1_of_string_by_coreutils(id));
    assert_eq!(entry.path, root.base_dir().join(entry.name()));
    let base_info = qemu_info(&entry.path);
    assert_eq!(base_info["format"], "raw");
    assert_eq!(base_info["virtual-size"], 16 << 20);
    // The record keeps both the fetched (qcow2) and stored (raw) digests.
    let (_, fetched) = hash_file(&qcow2, &[Algo::Sha256]).unwrap();
    assert_eq!(entry.record.fetched.sha256, fetched.sha256);
    assert_eq!(
        entry.record.digests,
        hash_file(&entry.path, &kiln_cache::base::RECORD_ALGOS)
            .unwrap()
            .1
    );

    // Overlay: backing file inside _base, as `qemu-img info` reports it.
    let disk = dir.path().join("disk");
    let info = cache.overlay(&entry, &disk, Some(32 << 20)).unwrap();
    let reported = qemu_info(&disk);
    assert_eq!(reported["format"], "qcow2");
    assert_eq!(reported["virtual-size"], 32 << 20);
    assert_eq!(reported["backing-filename-format"], "raw");
    let backing = PathBuf::from(reported["backing-filename"].as_str().unwrap());
    assert_eq!(backing, fs::canonicalize(&entry.path).unwrap());
    assert_eq!(backing.parent().unwrap().file_name().unwrap(), "_base");
    assert_eq!(info.backing_filename.as_deref(), backing.to_str());
    // The overlay reads the base's bytes.
    let flat = dir.path().join("flat.raw");
    qemu_img(&[
        "convert",
        "-O",
        "raw",
        disk.to_str().unwrap(),
        flat.to_str().unwrap(),
    ]);
    assert!(
        fs::read(&flat).unwrap()[..1 << 20]
            .iter()
            .all(|&b| b == 0xab)
    );

    // A root disk smaller than the image is refused, as Nova's FlavorDiskSmallerThanImage.
    let err = cache
        .overlay(&entry, &dir.path().join("small"), Some(8 << 20))
        .unwrap_err();
    assert!(
        matches!(err, CacheError::DiskSmallerThanImage { .. }),
        "{err}"
    );
}

#[test]
fn a_nova_lockf_lock_on_the_same_entry_excludes_kiln() {
    // kiln and nova-compute sharing an instances path must not both write one `_base` entry.
    let dir = tempfile::tempdir().unwrap();
    let root = CacheRoot::new(dir.path()).with_lock_prefix("nova-");
    let name = kiln_cache::source::base_name("some-image-id");
    let lock = root.lock_path(&name);
    assert_eq!(lock, dir.path().join("locks").join(format!("nova-{name}")));
    fs::create_dir_all(lock.parent().unwrap()).unwrap();
    let mut nova = probe(&["lockf", lock.to_str().unwrap()])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(nova.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked");
    assert!(
        EntryLock::try_acquire(&lock).unwrap().is_none(),
        "kiln got a lock Nova holds"
    );
    drop(nova.stdin.take()); // release
    assert!(nova.wait().unwrap().success());
    assert!(EntryLock::try_acquire(&lock).unwrap().is_some());
}

// ---------------------------------------------------------------------------------------------------
// Checksums.

#[test]
fn a_checksum_mismatch_names_both_digests_and_the_source_and_caches_nothing() {
    let server = Server::start();
    let body = noise(200_000, 5);
    let url = server.route("/x.iso", body.clone());
    let dir = tempfile::tempdir().unwrap();
    let root = CacheRoot::new(dir.path().join("cache"));
    let cache = BaseCache::new(root.clone(), QemuImg::from_env());
    let wrong = sha256_hex(b"something else");
    let err = cache
        .ensure(
            FetchRequest::new(Source::Url(url.clone()))
                .checksum(format!("sha256:{wrong}").parse::<Checksum>().unwrap()),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "checksum mismatch for `{url}`: expected sha256 `{wrong}`, got `{}`; nothing was cached",
            sha256_hex(&body)
        )
    );
    assert!(
        names_in(&root.base_dir()).is_empty(),
        "{:?}",
        names_in(&root.base_dir())
    );
    assert!(names_in(&root.base_meta_dir()).is_empty());

    // A local file with the wrong checksum fails before anything is copied.
    let local = dir.path().join("local.iso");
    fs::write(&local, &body).unwrap();
    let md5 = "00000000000000000000000000000000";
    let err = cache
        .ensure(FetchRequest::new(Source::Path(local.clone())).checksum(md5.parse().unwrap()))
        .unwrap_err();
    assert!(
        matches!(&err, CacheError::ChecksumMismatch { origin, algo: Algo::Md5, .. } if origin == &local.display().to_string()),
        "{err}"
    );
    assert!(names_in(&root.base_dir()).is_empty());
}

// A download reports its progress chunk by chunk, ending at the full size the server announced.
#[test]
fn a_download_reports_progress_up_to_its_length() {
    let server = Server::start();
    let body = noise(1_500_000, 9);
    let url = server.route("/big.iso", body.clone());
    let dir = tempfile::tempdir().unwrap();
    let cache = BaseCache::new(CacheRoot::new(dir.path()), QemuImg::from_env());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = std::sync::Arc::clone(&seen);
    cache
        .ensure(
            FetchRequest::new(Source::Url(url))
                .progress(move |done, total| record.lock().unwrap().push((done, total))),
        )
        .unwrap();
    let seen = seen.lock().unwrap();
    let len = body.len() as u64;
    assert!(seen.len() > 1, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "{seen:?}");
    assert_eq!(seen.last(), Some(&(len, Some(len))));
}

#[test]
fn a_changed_checksum_for_the_same_url_fetches_the_new_content() {
    // "latest" URLs change content; the pipeline's new checksum must not be satisfied by the old file.
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let cache = BaseCache::new(CacheRoot::new(dir.path()), QemuImg::from_env());
    let v1 = noise(50_000, 6);
    let url = server.route("/latest.iso", v1.clone());
    let req = |sum: &str| {
        FetchRequest::new(Source::Url(url.clone()))
            .checksum(format!("sha256:{sum}").parse().unwrap())
    };
    let first = cache.ensure(req(&sha256_hex(&v1))).unwrap();
    assert!(cache.ensure(req(&sha256_hex(&v1))).unwrap().reused);
    let v2 = noise(60_000, 7);
    server.route("/latest.iso", v2.clone());
    let second = cache.ensure(req(&sha256_hex(&v2))).unwrap();
    assert!(!second.reused);
    assert_eq!(second.path, first.path);
    assert_eq!(fs::read(&second.path).unwrap(), v2);
    assert_eq!(server.hits("/latest.iso"), 2);
}

#[test]
fn local_files_are_named_by_content_and_copied() {
    let dir = tempfile::tempdir().unwrap();
    let cache = BaseCache::new(CacheRoot::new(dir.path().join("c")), QemuImg::from_env());
    let data = noise(70_000, 8);
    let one = dir.path().join("one.iso");
    let two = dir.path().join("two.iso");
    fs::write(&one, &data).unwrap();
    fs::write(&two, &data).unwrap();
    let a = cache
        .ensure(FetchRequest::new(Source::Path(one.clone())))
        .unwrap();
    let b = cache
        .ensure(FetchRequest::new(Source::Url(format!(
            "file://{}",
            two.display()
        ))))
        .unwrap();
    assert_eq!(a.record.source_id, format!("sha256:{}", sha256_hex(&data)));
    assert_eq!(a.name(), kiln_cache::source::base_name(&a.record.source_id));
    assert_eq!(b.name(), a.name(), "same content, same entry");
    assert!(b.reused);
    assert_eq!(fs::read(&a.path).unwrap(), data);
}

// ---------------------------------------------------------------------------------------------------
// Maintenance.

#[test]
fn verify_reports_corrupt_and_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = CacheRoot::new(dir.path());
    let cache = BaseCache::new(root.clone(), QemuImg::from_env());
    let src = dir.path().join("src.bin");
    fs::write(&src, noise(10_000, 9)).unwrap();
    let entry = cache.ensure(FetchRequest::new(Source::Path(src))).unwrap();
    let store = kiln_cache::ArtifactStore::new(root.clone());
    let key = ArtifactKey::from_bytes([3; 32]);
    let art = store
        .get_or_build(&key, Default::default(), |s| {
            fs::write(s.path("a.bin"), b"artifact")
        })
        .unwrap();
    assert!(
        verify(&root)
            .unwrap()
            .iter()
            .all(|v| v.verdict == Verdict::Ok)
    );

    // Flip one byte of the base file, delete the artifact's output.
    let mut bytes = fs::read(&entry.path).unwrap();
    bytes[100] ^= 1;
    fs::write(&entry.path, &bytes).unwrap();
    fs::remove_file(art.output("a.bin")).unwrap();
    let report = verify(&root).unwrap();
    let base = report.iter().find(|v| v.kind == EntryKind::Base).unwrap();
    let Verdict::Corrupt {
        expected, actual, ..
    } = &base.verdict
    else {
        panic!("expected corruption, got {:?}", base.verdict)
    };
    assert_eq!(
        expected,
        &format!(
            "sha256:{} (10000 bytes)",
            entry.record.digests.sha256.as_deref().unwrap()
        )
    );
    assert_eq!(
        actual,
        &format!("sha256:{} (10000 bytes)", sha256_hex(&bytes))
    );
    let a = report
        .iter()
        .find(|v| v.kind == EntryKind::Artifact)
        .unwrap();
    assert_eq!(
        a.verdict,
        Verdict::Missing {
            file: "a.bin".into()
        }
    );
}

#[test]
fn prune_removes_old_entries_then_least_recently_used_until_under_the_size() {
    let dir = tempfile::tempdir().unwrap();
    let root = CacheRoot::new(dir.path());
    let store = kiln_cache::ArtifactStore::new(root.clone());
    let mut keys = Vec::new();
    for i in 0..3u8 {
        let key = ArtifactKey::from_bytes([i; 32]);
        store
            .get_or_build(&key, Default::default(), |s| {
                fs::write(s.path("o"), noise(64 * 1024, i.into()))
            })
            .unwrap();
        keys.push(key);
    }
    // Ages: key0 used 3 days ago, key1 2 days ago, key2 now.
    let now = 10_000_000;
    for (key, age) in keys.iter().zip([3 * 86_400, 2 * 86_400, 0]) {
        let path = store.entry_dir(key).join("record.json");
        let mut rec: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        rec["last_used"] = (now - age).into();
        fs::write(&path, serde_json::to_vec(&rec).unwrap()).unwrap();
    }
    let day = Duration::from_secs(86_400);
    let by_age = PrunePolicy {
        max_age: Some(day * 2 + Duration::from_secs(1)),
        ..Default::default()
    };

    let dry = prune_at(
        &root,
        &PrunePolicy {
            dry_run: true,
            ..by_age.clone()
        },
        now,
    )
    .unwrap();
    assert_eq!(dry.removed.len(), 1);
    assert!(
        store.peek(&keys[0]).unwrap().is_some(),
        "dry run removed an entry"
    );

    let report = prune_at(&root, &by_age, now).unwrap();
    assert_eq!(
        report.removed.iter().map(|p| p.reason).collect::<Vec<_>>(),
        [PruneReason::Age]
    );
    assert!(store.peek(&keys[0]).unwrap().is_none());
    assert!(store.peek(&keys[1]).unwrap().is_some());

    // One entry's worth of room: the least recently used of the two remaining goes.
    let one = list(&root).unwrap().entries[0].disk_usage;
    let by_size = PrunePolicy {
        max_size: Some(one),
        ..Default::default()
    };
    let report = prune_at(&root, &by_size, now).unwrap();
    assert_eq!(report.removed.len(), 1);
    assert_eq!(report.removed[0].reason, PruneReason::Size);
    assert_eq!(
        report.removed[0].name.as_deref(),
        Some(keys[1].to_hex().as_str())
    );
    assert!(store.peek(&keys[2]).unwrap().is_some());
    assert_eq!(names_in(&root.artifacts_dir()), vec![keys[2].to_hex()]);
}

#[test]
fn prune_leaves_a_live_writers_files_alone() {
    // A stray is only a stray if no live process holds its entry's lock.
    let dir = tempfile::tempdir().unwrap();
    let root = CacheRoot::new(dir.path());
    root.create_dirs().unwrap();
    let name = kiln_cache::source::base_name("busy");
    let part = root.base_dir().join(format!("{name}.part"));
    fs::write(&part, b"downloading").unwrap();
    let held = EntryLock::acquire(&root.lock_path(&name)).unwrap();
    let report = prune(&root, &PrunePolicy::default()).unwrap();
    assert!(report.removed.is_empty());
    assert_eq!(report.busy, vec![part.clone()]);
    assert!(part.exists());
    drop(held);
    assert_eq!(
        prune(&root, &PrunePolicy::default()).unwrap().removed.len(),
        1
    );
    assert!(!part.exists());
}

// A server that stopped sending mid-body used to hang `kiln build` for ever (no read timeout on
// source downloads); now the download fails after the stall timeout and leaves no entry.
#[test]
fn a_source_download_that_stalls_fails_and_leaves_no_entry() {
    let server = Server::start();
    let body = noise(300_000, 11);
    let url = server.route_with("/stall.iso", body, Some(64 * 1024), Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let root = CacheRoot::new(dir.path());
    let cache = BaseCache::new(root.clone(), QemuImg::from_env())
        .with_stall_timeout(Duration::from_secs(1));
    let started = Instant::now();
    let err = cache
        .ensure(FetchRequest::new(Source::Url(url.clone())))
        .unwrap_err();
    let waited = started.elapsed();
    server.release();
    assert!(err.to_string().contains("stall.iso"), "{err}");
    let chain = {
        let mut s = err.to_string();
        let mut src = std::error::Error::source(&err);
        while let Some(e) = src {
            s.push_str(&format!(": {e}"));
            src = e.source();
        }
        s
    };
    assert!(chain.contains("no data for 1 s"), "{chain}");
    assert!(waited < Duration::from_secs(30), "{waited:?}");
    let left: Vec<_> = fs::read_dir(root.base_dir())
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "no entry and no .part: {left:?}");
}
