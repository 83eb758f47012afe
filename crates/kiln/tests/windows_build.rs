//! The Windows path of `kiln build` on real libvirt + QEMU (TCG), without Windows (no Windows ISO
//! can be obtained here; see docs/windows.md): a five-language matrix pipeline whose installer is
//! kiln's Debian fixture in its Windows-shaped mode. The fixture reads the `autounattend.xml` kiln
//! generated from the attached answer media as Windows Setup would, checks that every
//! `DriverPaths` folder it names is on the attached virtio-win-shaped drivers CD (built here),
//! records the cloudbase-init MSI it found on the media, and writes the language into the disk.
//!
//! Proven: each output image holds its own language (read from the disk with `debugfs`), the
//! installer ISO, drivers ISO and MSI were fetched once for five images, installs ran in parallel
//! (the test timestamps the JSON events as they arrive), no secret value is anywhere in the run
//! folder, the cache, the events or the plan, the secret-bearing media are gone after the build,
//! no domain is left behind, and the five images land in a real Glance (kiln-glance's Keystone +
//! Glance harness) named per language, with the Windows image's properties.
//!
//! The fixture runs in quick mode (`/kiln/quick` on a remastered copy of its ISO: no root file
//! system copy), so the five installs take minutes, not an hour. Needs root, libvirtd, xorriso,
//! qemu-img, debugfs, and the fixture (`fixtures/debian/build.sh`).

#[allow(dead_code, reason = "the harness serves several test binaries")]
#[path = "../../kiln-glance/tests/common/mod.rs"]
mod openstack;
mod support;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::virtio::VIRTIO_DRIVERS;
use support::{libvirt_tempdir, mkisofs, repo, walk};

const LANGUAGES: [&str; 5] = ["en-US", "de-DE", "fr-FR", "ja-JP", "pt-BR"];

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sha256(path: &Path) -> String {
    run(Command::new("sha256sum").arg(path))
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// The Debian fixture ISO remastered as the Windows-shaped installer in quick mode
/// (`fixtures/windows-prompt/remaster.sh`: its boot goes straight into Setup mode on BIOS, as
/// Windows media boot straight into Setup; on UEFI behind Microsoft's "press any key" prompt).
fn quick_installer(dir: &Path) -> PathBuf {
    let iso = run(&mut Command::new(repo().join("fixtures/debian/build.sh")));
    let out = dir.join("installer.iso");
    run(
        Command::new(repo().join("fixtures/windows-prompt/remaster.sh"))
            .arg(iso.trim())
            .arg(&out)
            .arg("--quick"),
    );
    out
}

/// A virtio-win-shaped ISO: every folder Server 2022 amd64 takes, each with an `.inf`.
fn drivers_iso(dir: &Path) -> PathBuf {
    let root = dir.join("virtio-win");
    for driver in VIRTIO_DRIVERS {
        let d = root.join(driver).join("2k22/amd64");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(format!("{}.inf", driver.to_lowercase())), "; inf\n").unwrap();
    }
    std::fs::create_dir_all(root.join("guest-agent")).unwrap();
    std::fs::write(root.join("guest-agent/qemu-ga-x86_64.msi"), "msi").unwrap();
    let out = dir.join("virtio-win.iso");
    mkisofs(&root, "virtio-win", &out);
    out
}

const CLOUD: &str = "kiln-alpha";

/// `kiln build` of the five images, publishing them.
const BUILD: [&str; 7] = [
    "build",
    "--json",
    "--accel",
    "tcg",
    "--os-cloud",
    CLOUD,
    "ws2022.kdl",
];

fn pipeline(prefix: &str, installer: &str, drivers: &str, msi: &str) -> String {
    format!(
        r#"pipeline "ws2022-{{language}}" {{
    matrix {{
        language {langs}
    }}
    source "installer.iso" checksum="sha256:{installer}"
    drivers "virtio-win.iso" kind="virtio-win" checksum="sha256:{drivers}"
    disk size="1GiB"
    machine cpus=1 memory="768MiB" firmware="bios" type="pc"
    install autounattend timeout="40m" {{
        version "server-2022"
        image name="Windows Server 2022 SERVERSTANDARD"
        language "{{language}}"
        computer-name "KILN-{{language}}"
        admin-password env="KILN_TEST_WINDOWS_PASSWORD"
    }}
    customize cloudbase-init {{
        installer "CloudbaseInitSetup_x64.msi" checksum="sha256:{msi}"
        plugin "cloudbaseinit.plugins.common.mtu.MTUPlugin"
        plugin "cloudbaseinit.plugins.windows.createuser.CreateUserPlugin"
        plugin "cloudbaseinit.plugins.common.setuserpassword.SetUserPasswordPlugin"
        run "Write-Output customized {{language}}"
    }}
    output format="qcow2" compression="none"
    publish glance name="{prefix}-ws2022-{{language}}" min-disk="1GiB" {{
        property kiln_test="windows-wiring"
        tag "windows" "{{language}}"
    }}
}}
"#,
        langs = LANGUAGES
            .iter()
            .map(|l| format!("\"{l}\""))
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// `/etc/kiln/install.txt` of a qcow2 image holding the fixture's ext4 partition at 1 MiB.
fn install_record(image: &Path, scratch: &Path) -> String {
    let raw = scratch.join("disk.raw");
    run(Command::new("qemu-img")
        .args(["convert", "-O", "raw"])
        .arg(image)
        .arg(&raw));
    let text = run(Command::new("debugfs")
        .arg("-R")
        .arg("cat /etc/kiln/install.txt")
        .arg(format!("{}?offset=1048576", raw.display())));
    std::fs::remove_file(&raw).unwrap();
    text
}

/// Every file under `dir` (recursively) holding `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return hits;
    };
    for e in entries.flatten() {
        let p = e.path();
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            hits.extend(files_containing(&p, needle));
        } else if ft.is_file() {
            let bytes = std::fs::read(&p).unwrap_or_default();
            if bytes.windows(needle.len()).any(|w| w == needle) {
                hits.push(p);
            }
        }
    }
    hits
}

#[test]
fn five_language_matrix_builds_five_images_each_with_its_own_language() {
    let os = openstack::openstack();
    let glance = os.glance(CLOUD);
    let prefix = openstack::unique("kiln-win");
    let tmp = libvirt_tempdir("kiln-windows-test-");
    let dir = tmp.path();
    let installer = quick_installer(dir);
    let drivers = drivers_iso(dir);
    let msi = dir.join("CloudbaseInitSetup_x64.msi");
    std::fs::write(&msi, format!("not really an msi {:?}\n", Instant::now())).unwrap();
    let (installer_sum, drivers_sum, msi_sum) =
        (sha256(&installer), sha256(&drivers), sha256(&msi));
    std::fs::write(
        dir.join("ws2022.kdl"),
        pipeline(&prefix, &installer_sum, &drivers_sum, &msi_sum),
    )
    .unwrap();
    let secret = format!("Pw-{}-not-for-logs", std::process::id());
    let cache = dir.join("cache");
    let kiln = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
        c.args(args)
            .current_dir(dir)
            .env("NO_COLOR", "1")
            .env("KILN_TEST_WINDOWS_PASSWORD", &secret)
            .env("KILN_CACHE_DIR", &cache)
            .env_remove("OS_CLOUD")
            .envs(os.sources().env)
            .stdin(Stdio::null());
        c
    };

    // check and plan read both ISOs; the plan holds no secret.
    let check = kiln(&["check", "ws2022.kdl"]).output().unwrap();
    let check_err = String::from_utf8_lossy(&check.stderr).into_owned();
    assert!(check.status.success(), "{check_err}");
    assert!(
        check_err.contains("has every virtio folder for Windows 2k22 amd64"),
        "{check_err}"
    );
    let plan = kiln(&["plan", "--format", "json", "ws2022.kdl"])
        .output()
        .unwrap();
    assert!(plan.status.success());
    assert!(
        !String::from_utf8_lossy(&plan.stdout).contains(&secret),
        "the plan holds the secret"
    );

    // The build, events timestamped as they arrive.
    let t0 = Instant::now();
    let mut child = kiln(&BUILD)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut events: Vec<(Duration, serde_json::Value)> = Vec::new();
    let mut raw_events = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        raw_events.push_str(&line);
        raw_events.push('\n');
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
            events.push((t0.elapsed(), v));
        }
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let wall = t0.elapsed();
    // Glance answers a busy sqlite database with 500; kiln retries the upload with a new image
    // (kiln-glance's UPLOAD_ATTEMPTS), so every step must succeed.
    assert!(
        out.status.success(),
        "kiln build failed: {stderr}\n{raw_events}"
    );
    eprintln!("build wall time: {:.1} s", wall.as_secs_f64());

    let summary = &events.last().expect("events").1;
    assert_eq!(summary["event"], "summary", "{raw_events}");
    let run_dir = PathBuf::from(summary["run_dir"].as_str().unwrap());
    let run_id = run_dir.file_name().unwrap().to_string_lossy().into_owned();

    // Fetched once for five images.
    let started = |kind: &str| -> Vec<String> {
        events
            .iter()
            .filter(|(_, e)| e["event"] == "started" && e["kind"] == kind)
            .map(|(_, e)| e["step"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(started("fetch-drivers").len(), 1, "{raw_events}");
    // The installer ISO and the cloudbase-init MSI.
    assert_eq!(started("fetch-source").len(), 2, "{raw_events}");
    assert_eq!(started("install").len(), 5, "{raw_events}");
    assert!(started("customize").is_empty(), "{raw_events}");

    // Installs overlapped: at some moment two or more were running.
    let mut running = 0usize;
    let mut most = 0usize;
    for (at, e) in &events {
        if e["kind"] != "install" {
            continue;
        }
        if e["event"] == "started" {
            running += 1;
            most = most.max(running);
            eprintln!("{:7.1} s  started {}", at.as_secs_f64(), e["step"]);
        } else if e["event"] == "ended" {
            running -= 1;
            eprintln!("{:7.1} s  ended   {}", at.as_secs_f64(), e["step"]);
        }
    }
    assert!(most >= 2, "installs never overlapped: {raw_events}");

    // Each image holds its own language, the driver folders the fixture found, and the MSI.
    let images = summary["images"].as_array().unwrap();
    assert_eq!(images.len(), 5, "{summary}");
    let scratch = tempfile::tempdir().unwrap();
    for lang in LANGUAGES {
        let name = format!("ws2022-{lang}");
        let row = images
            .iter()
            .find(|r| r["image"] == name.as_str() || r["name"] == name.as_str())
            .unwrap_or_else(|| panic!("no summary row for {name}: {summary}"));
        let path = row["path"]
            .as_str()
            .or_else(|| row["file"].as_str())
            .unwrap_or_else(|| panic!("no image path in {row}"));
        let record = install_record(Path::new(path), scratch.path());
        eprintln!("{name}:\n{record}");
        assert!(record.contains("answer-file=autounattend.xml"), "{record}");
        assert!(
            record.contains(&format!("windows-language={lang}\n")),
            "{name}: {record}"
        );
        for other in LANGUAGES.iter().filter(|l| **l != lang) {
            assert!(!record.contains(other), "{name} holds {other}: {record}");
        }
        assert!(
            record.contains(&format!("hostname=KILN-{lang}\n")),
            "{record}"
        );
        assert!(
            record.contains(r"driver-path=E:\viostor\2k22\amd64"),
            "{record}"
        );
        assert!(
            record.contains(r"driver-path=E:\NetKVM\2k22\amd64"),
            "{record}"
        );
        assert!(
            record.contains(&format!("cloudbase-init-msi=sha256:{msi_sum}")),
            "{record}"
        );
        assert!(record.contains("install-mode=quick"), "{record}");
    }

    // Five images in Glance, named per language, with the image's properties.
    let published = summary["published"]
        .as_array()
        .expect("published list")
        .len();
    assert_eq!(published, 5, "{summary}");
    // A second build runs no guest, fetches nothing and reuses the five images.
    let rerun = kiln(&BUILD).output().unwrap();
    let text = String::from_utf8_lossy(&rerun.stdout).into_owned();
    assert!(rerun.status.success(), "rerun failed: {text}");
    assert!(!text.contains(&secret));
    for kind in ["install", "fetch-source", "fetch-drivers", "answer-media"] {
        assert!(
            !text.lines().any(|l| l.contains(r#""event":"started""#)
                && l.contains(&format!(r#""kind":"{kind}""#))),
            "{kind} ran again: {text}"
        );
    }
    let again = support::summary(&rerun.stdout);
    assert_eq!(
        again["published"].as_array().map_or(0, Vec::len),
        5,
        "{again}"
    );
    for lang in LANGUAGES {
        let name = format!("{prefix}-ws2022-{lang}");
        let images = openstack::images_named(&glance, &name);
        assert_eq!(images.len(), 1, "{name}: {images:?}");
        let image = &images[0];
        assert_eq!(image.status, "active");
        let props = image.properties();
        let get = |k: &str| props.get(k).cloned().unwrap_or_default();
        assert_eq!(get("os_language"), lang, "{name}");
        assert_eq!(get("os_type"), "windows");
        assert_eq!(get("os_distro"), "windows");
        assert_eq!(get("os_version"), "2022");
        assert_eq!(get("hw_machine_type"), "pc");
        assert_eq!(get("hw_firmware_type"), "bios");
        assert_eq!(get("hw_disk_bus"), "virtio");
        assert_eq!(get("os_admin_user"), "Admin");
        assert_eq!(get("kiln_test"), "windows-wiring");
        let mut tags = image.tags.clone();
        tags.sort();
        assert_eq!(tags, [lang.to_owned(), "windows".to_owned()]);
        eprintln!("glance: {name} = {} ({})", image.id, get("os_language"));
    }

    // Secrets: nowhere in the run folder, the cache, the events or stderr; media gone.
    let needle = secret.as_bytes();
    assert!(!raw_events.contains(&secret), "events hold the secret");
    assert!(!stderr.contains(&secret), "stderr holds the secret");
    let hits = files_containing(&cache, needle);
    assert!(hits.is_empty(), "the secret is in {hits:?}");
    let hits = files_containing(&run_dir, needle);
    assert!(hits.is_empty(), "the secret is in {hits:?}");
    let leftovers: Vec<PathBuf> = walk(&run_dir)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "answer-media.iso"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "secret media left behind: {leftovers:?}"
    );

    for lang in LANGUAGES {
        for image in openstack::images_named(&glance, &format!("{prefix}-ws2022-{lang}")) {
            glance.delete(&image.id).unwrap();
        }
    }

    let domains = run(Command::new("virsh").args(["list", "--all", "--name"]));
    assert!(
        !domains.lines().any(|d| d.contains(&run_id)),
        "leftover domains: {domains}"
    );
}
