//! Fuzzing the ISO 9660 / Joliet / Rock Ridge and UDF readers: small images built here (xorriso,
//! genisoimage, installed by scripts/setup-host.sh) and the crafted ones of `hostile_iso.rs`'s kind,
//! mutated byte-wise (flips, truncations, insertions, splices): no panic, no hang, bounded memory.
//! `KILN_FUZZ_CASES` sets the number of mutated inputs (default 15,000, under 10 s).

#[path = "../../../tests/fuzz/mutate.rs"]
mod mutate;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kiln_unattend::IsoTree;

fn write(root: &Path, rel: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, b"x").unwrap();
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .expect("xorriso/genisoimage: run scripts/setup-host.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One tree as a Joliet + Rock Ridge, a Rock Ridge only, a plain ISO 9660 and a UDF image.
fn seeds() -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    for f in [
        "viostor/2k22/amd64/viostor.inf",
        "NetKVM/w11/amd64/netkvm.inf",
        "sources/en-us/setup.exe.mui",
        "sources/de-de/setup.exe.mui",
        "a-rather-long-file-name-that-needs-rock-ridge-or-joliet.txt",
        "deep/a/b/c/d/e/f/g/h/i/file",
    ] {
        write(&src, f);
    }
    let out = |n: &str| dir.path().join(n);
    run(Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-J", "-R", "-o"])
        .arg(out("jr.iso"))
        .arg(&src));
    run(Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-R", "-o"])
        .arg(out("r.iso"))
        .arg(&src));
    run(Command::new("xorriso")
        .args(["-rockridge", "off", "-joliet", "off", "-outdev"])
        .arg(out("plain.iso"))
        .arg("-map")
        .arg(&src)
        .arg("/"));
    run(Command::new("genisoimage")
        .args(["-quiet", "-udf", "-o"])
        .arg(out("udf.iso"))
        .arg(&src));
    ["jr.iso", "r.iso", "plain.iso", "udf.iso"]
        .iter()
        .map(|n| std::fs::read(out(n)).unwrap())
        .collect()
}

#[test]
fn iso_and_udf_readers_fuzz() {
    let seeds = seeds();
    for s in &seeds {
        assert!(
            IsoTree::read(std::io::Cursor::new(s)).is_ok(),
            "a seed does not read"
        );
    }
    mutate::fuzz(
        "iso 9660 / udf images",
        &seeds,
        15000,
        Duration::from_secs(5),
        512,
        |input| {
            let _ = IsoTree::read(std::io::Cursor::new(input));
        },
    );
}
