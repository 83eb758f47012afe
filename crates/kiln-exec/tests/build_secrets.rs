//! Secrets end to end, against real libvirt + QEMU (TCG) and the Debian fixture: the installer
//! ISO is downloaded from a URL with credentials (a local HTTP server on 127.0.0.1 that demands
//! them), the preseed gets a root password and cloud-init gives user `ops` one, both read from
//! secret files (the install boots with its own copy of the answer, hash included). The image holds a
//! SHA-512 crypt hash of the password; the cache (run folder, artifacts, `_base` records), the
//! `--json` events and the plan hold neither the password nor the URL's token; rotating the
//! secret changes the keys of the steps it shapes and an unchanged secret does not.

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use common::workdir;
use kiln_exec::build::{BuildEvent, BuildOptions, Sink, build, json_line};

const PASSWORD: &str = "kiln-test-Pa55word-e2e";
const ROOT_PASSWORD: &str = "kiln-test-R00t-e2e";
const TOKEN: &str = "tok3n-never-printed";

/// Records every event as the `--json` line it would print.
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Sink for Recorder {
    fn event(&self, event: &BuildEvent) {
        self.0.lock().unwrap().push(json_line(event));
    }
}

/// Serves `file` at `/installer.iso` on 127.0.0.1 to a few requests that carry basic-auth
/// credentials; returns the port and the `Authorization` headers seen.
fn serve(file: &Path) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let file = file.to_owned();
    let record = Arc::clone(&seen);
    std::thread::spawn(move || {
        // Bounded: the build makes one request; a few more are tolerated, then the thread ends.
        for stream in listener.incoming().take(4) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut auth = None;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("authorization:") {
                    auth = Some(v.trim().to_owned());
                }
            }
            let Some(auth) = auth else {
                let _ = stream.write_all(
                    b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                continue;
            };
            record.lock().unwrap().push(auth);
            let mut f = std::fs::File::open(&file).unwrap();
            let len = f.metadata().unwrap().len();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
            );
            let _ = std::io::copy(&mut f, &mut stream);
        }
    });
    (port, seen)
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

fn pipeline(port: u16, checksum: &str) -> String {
    format!(
        r#"pipeline "sec" {{
    source "http://kiln:{TOKEN}@127.0.0.1:{port}/installer.iso" checksum="sha256:{checksum}"
    disk size="2GiB"
    machine cpus=2 memory="1GiB"
    install "preseed" file="preseed.cfg" timeout="30m" {{
        root-password file="root-password.txt"
    }}
    customize "cloud-init" timeout="30m" {{
        user "ops" {{
            password file="ops-password.txt"
        }}
    }}
    output format="qcow2" compression="zstd"
}}
"#
    )
}

const PRESEED: &str = "d-i debian-installer/locale string en_US.UTF-8\n\
    d-i keyboard-configuration/xkb-keymap select us\n\
    d-i netcfg/get_hostname string kiln-sec\n\
    d-i netcfg/get_domain string example.org\n\
    d-i passwd/root-password-crypted password !\n\
    d-i passwd/make-user boolean false\n\
    d-i time/zone string Etc/UTC\n\
    d-i partman-auto/disk string /dev/vda\n\
    d-i partman-auto/method string regular\n\
    d-i partman-auto/choose_recipe select atomic\n\
    d-i partman/confirm boolean true\n\
    d-i grub-installer/bootdev string default\n\
    d-i preseed/late_command string in-target truncate -s 0 /etc/machine-id\n";

/// `/etc/shadow` of the image's root filesystem (partition 1 at 1 MiB), via debugfs.
fn shadow(image: &Path, dir: &Path) -> String {
    let raw = dir.join("check.raw");
    let st = Command::new("qemu-img")
        .args(["convert", "-O", "raw"])
        .arg(image)
        .arg(&raw)
        .status()
        .unwrap();
    assert!(st.success());
    let out = Command::new("debugfs")
        .args(["-R", "cat /etc/shadow"])
        .arg(format!("{}?offset=1048576", raw.display()))
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&raw);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Files under `dir` whose bytes contain `needle` (grep -r: binary files included).
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let out = Command::new("grep")
        .args(["-r", "-l", "-a", "-F", needle])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn key(plan: &kiln_plan::Plan, id: &str) -> kiln_plan::StepKey {
    plan.step(id).unwrap_or_else(|| panic!("step {id}")).key
}

#[test]
fn secrets_reach_the_guest_hashed_and_no_log_event_plan_or_cache_entry() {
    let dir = workdir();
    let iso = common::fixture("fixtures/debian/build.sh", &[]);
    let (port, seen) = serve(&iso);
    let file = dir.path().join("sec.kdl");
    std::fs::write(&file, pipeline(port, &sha256(&iso))).unwrap();
    std::fs::write(dir.path().join("preseed.cfg"), PRESEED).unwrap();
    std::fs::write(dir.path().join("ops-password.txt"), format!("{PASSWORD}\n")).unwrap();
    std::fs::write(dir.path().join("root-password.txt"), ROOT_PASSWORD).unwrap();
    let cache = dir.path().join("cache");
    let run = common::run_id("secrets");

    common::ensure_libvirt();
    let plan = common::plan_files(std::slice::from_ref(&file), &cache);
    let recorder = Arc::new(Recorder::default());
    let mut o = BuildOptions::new(&cache);
    o.run_id = run.clone();
    let mut host = kiln_exec::Host::local();
    host.accel = kiln_exec::Accel::Tcg;
    o.hosts = vec![host];
    o.sink = Arc::clone(&recorder) as Arc<dyn Sink>;
    let result = build(&plan, &o).unwrap();
    common::assert_no_domains(&run);
    assert_eq!(result.exit_code(), 0, "{:#?}", result.failures());

    // The download carried the credentials (basic auth of `kiln:<token>`).
    let auth = seen.lock().unwrap().clone();
    assert_eq!(auth.len(), 1, "{auth:?}");
    assert!(auth[0].starts_with("basic "), "{auth:?}");

    // The guest got a SHA-512 crypt hash that verifies the password.
    let image = result.images[0].path.clone().expect("image");
    let shadow = shadow(&image, dir.path());
    let line = shadow
        .lines()
        .find(|l| l.starts_with("ops:"))
        .unwrap_or_else(|| panic!("no ops in /etc/shadow:\n{shadow}"));
    let hash = line.split(':').nth(1).unwrap();
    assert!(hash.starts_with("$6$"), "{line}");
    {
        use sha_crypt::PasswordVerifier as _;
        let parsed = sha_crypt::PasswordHash::new(hash).unwrap();
        sha_crypt::ShaCrypt::SHA512
            .verify_password(PASSWORD.as_bytes(), &parsed)
            .expect("the image's hash is the password's");
    }

    // Nothing kiln wrote holds the password, its hash or the token.
    let ws = kiln_syntax::load(
        std::slice::from_ref(&file),
        &kiln_syntax::LoadOptions::default(),
        &kiln_syntax::RealFs,
    );
    let plan_text = kiln_plan::to_text(&plan, &kiln_plan::NoCache, &ws.sources);
    let plan_json =
        serde_json::to_string(&kiln_plan::to_json(&plan, &kiln_plan::NoCache, &ws.sources))
            .unwrap();
    assert!(plan_text.contains("http://***@127.0.0.1"), "{plan_text}");
    for needle in [PASSWORD, ROOT_PASSWORD, TOKEN, hash] {
        if needle != hash {
            assert_eq!(
                files_containing(&cache, needle),
                Vec::<String>::new(),
                "{needle}"
            );
        } else {
            // The hash is in the image (it must be); nowhere else in the cache.
            let holders: Vec<String> = files_containing(&cache, needle)
                .into_iter()
                .filter(|f| !f.ends_with(".qcow2"))
                .collect();
            assert_eq!(holders, Vec::<String>::new(), "the hash outside the image");
        }
        let events = recorder.0.lock().unwrap().join("\n");
        assert!(!events.contains(needle), "{needle} in events:\n{events}");
        assert!(!plan_text.contains(needle), "{plan_text}");
        assert!(!plan_json.contains(needle), "{plan_json}");
    }
    let install_log = walk(&cache)
        .into_iter()
        .find(|p| p.ends_with("sec_install.log"))
        .expect("install log");
    let install_log = std::fs::read_to_string(install_log).unwrap();
    assert!(
        install_log.contains("answer with password hashes (SHA-512 crypt) for root-password from file:root-password.txt"),
        "{install_log}"
    );
    let leftovers: Vec<_> = walk(&cache)
        .into_iter()
        .filter(|p| {
            p.contains("seed-secret") || p.contains("answer-secret") || p.ends_with("/initrd")
        })
        .collect();
    assert_eq!(leftovers, Vec::<String>::new(), "secret media left behind");

    // Same secret, same keys; a rotated secret rebuilds what it shaped and nothing before it.
    let again = common::plan_files(std::slice::from_ref(&file), &cache);
    std::fs::write(dir.path().join("ops-password.txt"), "rotated-Pa55").unwrap();
    let rotated = common::plan_files(std::slice::from_ref(&file), &cache);
    for id in ["sec/customize-seed", "sec/customize", "sec/convert"] {
        assert_eq!(key(&plan, id), key(&again, id), "{id}");
        assert_ne!(key(&plan, id), key(&rotated, id), "{id}");
    }
    for id in ["sec/fetch-source", "sec/install"] {
        assert_eq!(key(&plan, id), key(&rotated, id), "{id}");
    }
    std::fs::write(dir.path().join("root-password.txt"), "rotated-R00t").unwrap();
    let root_rotated = common::plan_files(std::slice::from_ref(&file), &cache);
    for id in [
        "sec/answer-media",
        "sec/install",
        "sec/customize",
        "sec/convert",
    ] {
        assert_ne!(key(&rotated, id), key(&root_rotated, id), "{id}");
    }
    assert_eq!(
        key(&rotated, "sec/customize-seed"),
        key(&root_rotated, "sec/customize-seed")
    );
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            out.push(p.display().to_string());
            if p.is_dir() {
                out.extend(walk(&p));
            }
        }
    }
    out
}
