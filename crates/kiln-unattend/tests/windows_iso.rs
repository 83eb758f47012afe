//! Windows installation ISOs keep their files in UDF. A Windows-shaped UDF image built here with
//! genisoimage (installed by scripts/setup-host.sh) must list its Setup languages and files.

use std::path::Path;
use std::process::Command;

use kiln_unattend::{IsoTree, Naming, installer_languages};

fn write(root: &Path, rel: &str, contents: &[u8]) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap();
}

/// Builds the Windows-shaped UDF image; returns the temp dir holding it and its path.
fn windows_iso() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    write(&src, "setup.exe", b"MZ");
    write(&src, "sources/install.wim", &vec![7u8; 1 << 20]);
    write(&src, "sources/en-us/setup.exe.mui", b"x");
    write(&src, "sources/de-de/setup.exe.mui", b"x");
    write(&src, "sources/ja-jp/setup.exe.mui", b"x");
    // Enough entries that the `sources` directory spans several blocks.
    for i in 0..120 {
        write(
            &src,
            &format!("sources/a-rather-long-file-name-for-udf-{i:03}.dll"),
            b"d",
        );
    }
    write(&src, "efi/microsoft/boot/efisys.bin", b"e");
    let iso = dir.path().join("windows.iso");
    let output = Command::new("genisoimage")
        .args(["-quiet", "-udf", "-V", "CCCOMA_X64FRE_EN-US_DV9", "-o"])
        .arg(&iso)
        .arg(&src)
        .output()
        .expect("genisoimage not found: run scripts/setup-host.sh");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    (dir, iso)
}

#[test]
fn udf_windows_iso_lists_setup_languages_and_long_names() {
    let (_dir, iso) = windows_iso();
    let tree = IsoTree::open(&iso).unwrap();
    assert_eq!(tree.naming(), Naming::Udf);
    let langs: Vec<String> = installer_languages(&tree)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(langs, ["de-DE", "en-US", "ja-JP"]);
    assert_eq!(tree.get("sources/install.wim").unwrap().size, 1 << 20);
    assert!(
        tree.get("SOURCES/A-RATHER-LONG-FILE-NAME-FOR-UDF-119.DLL")
            .is_some()
    );
    assert_eq!(tree.children("sources").count(), 124);
    assert!(tree.get("efi/microsoft/boot").unwrap().is_dir);
}

/// Damaged UDF structures must give an error or a tree, never a panic or a huge allocation.
#[test]
fn corrupted_udf_descriptors_never_panic() {
    let (_dir, iso) = windows_iso();
    let mut data = std::fs::read(&iso).unwrap();
    // Anchor, volume descriptors, file set, file entries and directories sit before the file data;
    // genisoimage puts them within the first ~400 blocks of this image.
    let end = (400 * 2048).min(data.len());
    let mut x: u64 = 0x9E37_79B9;
    let mut outcomes = (0, 0);
    for _ in 0..300 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let pos = 256 * 2048 + (x >> 33) as usize % (end - 256 * 2048);
        let original = data[pos];
        for byte in [0x00, 0xFF] {
            data[pos] = byte;
            match IsoTree::read(std::io::Cursor::new(&data[..])) {
                Ok(_) => outcomes.0 += 1,
                Err(_) => outcomes.1 += 1,
            }
        }
        data[pos] = original;
    }
    eprintln!("udf corruption outcomes (ok, err): {outcomes:?}");
    assert_eq!(outcomes.0 + outcomes.1, 600);
    // A destroyed anchor is an error, not an empty tree.
    data[256 * 2048] = 0;
    let err = IsoTree::read(std::io::Cursor::new(&data[..])).unwrap_err();
    assert!(err.to_string().contains("anchor"), "{err}");
}
