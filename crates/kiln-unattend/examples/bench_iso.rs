//! `just bench-unattend`: what the plan-time drivers check costs next to hashing the same ISO.
//!
//! Builds (xorriso) a virtio-win-shaped ISO — every driver folder for every Windows version and
//! architecture virtio-win ships, each with an `.inf`, plus one payload file of `KILN_BENCH_MIB`
//! MiB (default 1024) standing in for the rest of a real ISO — then times, side by side, best of
//! five: reading the directory tree and checking a Server 2022 image against it
//! (`IsoTree::open` + `check_image_media`), and reading every byte of the file (the floor of any
//! content digest, which is what planning a local ISO without a checksum costs). Prints both and
//! the ratio.

use std::io::Read as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kiln_unattend::{
    Arch, Firmware, ImageSelector, IsoTree, SecretRef, VirtioDriver, WindowsImage, WindowsVersion,
    check_image_media,
};

fn best_of(n: usize, mut f: impl FnMut()) -> Duration {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .expect("n > 0")
}

fn main() {
    let mib: u64 = std::env::var("KILN_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let tmp = std::env::temp_dir().join(format!("kiln-bench-iso-{}", std::process::id()));
    let root = tmp.join("tree");
    let mut dirs = 0;
    for driver in VirtioDriver::ALL {
        for version in WindowsVersion::ALL {
            for &arch in version.arches() {
                if let Some(folder) = driver.folder(version, arch) {
                    let d = root.join(&folder);
                    std::fs::create_dir_all(&d).expect("mkdir");
                    for ext in ["inf", "cat", "sys", "pdb"] {
                        std::fs::write(d.join(format!("{}.{ext}", driver.dir_name())), ext)
                            .expect("write");
                    }
                    dirs += 1;
                }
            }
        }
    }
    std::fs::create_dir_all(root.join("guest-agent")).expect("mkdir");
    std::fs::write(root.join("guest-agent/qemu-ga-x86_64.msi"), "msi").expect("write");
    let payload = std::fs::File::create(root.join("payload.bin")).expect("payload");
    payload.set_len(mib << 20).expect("payload size");
    let iso = tmp.join("virtio-win.iso");
    let st = Command::new("xorriso")
        .args([
            "-as",
            "mkisofs",
            "-quiet",
            "-J",
            "-R",
            "-V",
            "virtio-win",
            "-o",
        ])
        .arg(&iso)
        .arg(&root)
        .status()
        .expect("xorriso (scripts/setup-host.sh installs it)");
    assert!(st.success(), "xorriso failed");
    let size = std::fs::metadata(&iso).expect("iso").len();

    let image = WindowsImage::new(
        WindowsVersion::Server2022,
        Arch::Amd64,
        ImageSelector::Index(1),
        &"de-DE".parse().expect("tag"),
        Firmware::Bios,
        SecretRef::new("pw").expect("name"),
    );
    let mut entries = 0;
    let check = best_of(5, || {
        let tree = IsoTree::open(&iso).expect("tree");
        entries = tree.len();
        assert!(check_image_media(&tree, &image).is_empty());
    });
    let read = best_of(5, || read_all(&iso));
    println!(
        "virtio-win-shaped ISO: {} MiB, {dirs} driver folders, {entries} entries",
        size >> 20
    );
    println!(
        "drivers check (tree + check_image_media): {:>9.3} ms",
        check.as_secs_f64() * 1e3
    );
    println!(
        "reading every byte (digest floor):        {:>9.3} ms",
        read.as_secs_f64() * 1e3
    );
    println!(
        "ratio: the check costs 1/{:.0} of reading the file",
        read.as_secs_f64() / check.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&tmp);
}

fn read_all(path: &Path) {
    let mut f = std::fs::File::open(path).expect("open");
    let mut buf = vec![0u8; 1 << 20];
    while f.read(&mut buf).expect("read") > 0 {}
}
