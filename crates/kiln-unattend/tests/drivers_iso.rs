//! The ISO 9660 reader and the virtio-win check, on small ISOs built here with xorriso
//! (installed by scripts/setup-host.sh).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_unattend::{
    Arch, IsoTree, Naming, Problem, VirtioDriver, WindowsVersion, check_drivers, check_guest_agent,
};

/// Builds a drivers-ISO-shaped directory: `driver/os/arch/driver.inf` for each folder, plus the
/// guest agent MSI and a 4 MiB payload file that a directory listing must never read.
fn drivers_tree(root: &Path, folders: &[String], extra: &[&str]) {
    for folder in folders {
        let dir = root.join(folder);
        std::fs::create_dir_all(&dir).unwrap();
        let inf = folder.split('/').next().unwrap().to_lowercase();
        std::fs::write(dir.join(format!("{inf}.inf")), "[Version]\r\n").unwrap();
    }
    for file in extra {
        let path = root.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
    }
    std::fs::write(root.join("virtio-win-gt-x64.msi"), vec![0u8; 4 << 20]).unwrap();
}

/// `flags` empty: a plain ISO 9660 image (native xorriso, Rock Ridge off; its mkisofs emulation
/// always writes Rock Ridge). Otherwise mkisofs-style flags (`-J`, `-R`).
fn xorriso(src: &Path, out: &Path, flags: &[&str]) {
    let mut cmd = Command::new("xorriso");
    if flags.is_empty() {
        cmd.args(["-rockridge", "off", "-joliet", "off", "-outdev"])
            .arg(out)
            .arg("-map")
            .arg(src)
            .arg("/");
    } else {
        cmd.args(["-as", "mkisofs", "-quiet", "-V", "virtio-win-test"])
            .args(flags)
            .arg("-o")
            .arg(out)
            .arg(src);
    }
    let output = cmd
        .output()
        .expect("xorriso not found: run scripts/setup-host.sh");
    assert!(
        output.status.success(),
        "xorriso failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn folders(version: WindowsVersion, arch: Arch) -> Vec<String> {
    VirtioDriver::ALL
        .iter()
        .filter_map(|d| d.folder(version, arch))
        .collect()
}

struct Fixture {
    _dir: tempfile::TempDir,
    complete: PathBuf,
    broken: PathBuf,
}

/// One complete ISO (2k22 and w11 for amd64) and one where `NetKVM/2k22/amd64` is missing (only
/// `2k19` is there), `vioscsi/2k22/amd64` has no `.inf`, and the guest agent is absent.
fn fixture(flags: &[&str]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut all = folders(WindowsVersion::Server2022, Arch::Amd64);
    all.extend(folders(WindowsVersion::Windows11, Arch::Amd64));
    let complete_src = dir.path().join("complete");
    drivers_tree(&complete_src, &all, &["guest-agent/qemu-ga-x86_64.msi"]);

    let broken_src = dir.path().join("broken");
    let mut some: Vec<String> = all
        .iter()
        .filter(|f| !f.starts_with("NetKVM/2k22") && !f.starts_with("vioscsi/2k22"))
        .cloned()
        .collect();
    some.push("NetKVM/2k19/amd64".to_owned());
    drivers_tree(&broken_src, &some, &["vioscsi/2k22/amd64/readme.txt"]);

    let complete = dir.path().join("complete.iso");
    let broken = dir.path().join("broken.iso");
    xorriso(&complete_src, &complete, flags);
    xorriso(&broken_src, &broken, flags);
    Fixture {
        _dir: dir,
        complete,
        broken,
    }
}

#[test]
fn complete_drivers_iso_passes_the_check_for_2022_and_11() {
    let f = fixture(&["-J", "-R"]);
    let tree = IsoTree::open(&f.complete).unwrap();
    assert_eq!(tree.naming(), Naming::Joliet);
    for version in [WindowsVersion::Server2022, WindowsVersion::Windows11] {
        let missing = check_drivers(
            &tree,
            version,
            Arch::Amd64,
            &VirtioDriver::ALL
                .iter()
                .copied()
                .filter(|d| d.folder(version, Arch::Amd64).is_some())
                .collect::<Vec<_>>(),
        );
        assert!(missing.is_empty(), "{version}: {missing:?}");
    }
    assert_eq!(check_guest_agent(&tree, Arch::Amd64), None);
    // Mixed-case names survive: `NetKVM`, `Balloon`, and the 13-letter `qemupciserial`.
    assert_eq!(
        tree.get("netkvm/2k22/amd64").unwrap().path,
        "NetKVM/2k22/amd64"
    );
    assert!(
        tree.get("qemupciserial/w11/amd64/qemupciserial.inf")
            .is_some()
    );
    assert_eq!(tree.get("virtio-win-gt-x64.msi").unwrap().size, 4 << 20);
}

#[test]
fn missing_folder_is_reported_without_falling_back_to_another_version() {
    let f = fixture(&["-J", "-R"]);
    let tree = IsoTree::open(&f.broken).unwrap();
    let needed = [
        VirtioDriver::Viostor,
        VirtioDriver::Vioscsi,
        VirtioDriver::NetKvm,
    ];
    let missing = check_drivers(&tree, WindowsVersion::Server2022, Arch::Amd64, &needed);
    let summary: Vec<_> = missing
        .iter()
        .map(|m| (m.path.as_str(), m.problem))
        .collect();
    assert_eq!(
        summary,
        [
            ("vioscsi/2k22/amd64", Problem::NoInf),
            ("NetKVM/2k22/amd64", Problem::Missing)
        ]
    );
    let netkvm = &missing[1];
    assert_eq!(
        netkvm.present,
        ["`NetKVM/2k19/amd64`", "`NetKVM/w11/amd64`"]
    );
    assert_eq!(
        netkvm.to_string(),
        "the drivers iso has no `NetKVM/2k22/amd64` (it has `NetKVM/2k19/amd64`, `NetKVM/w11/amd64`; kiln never substitutes another version)"
    );
    let ga = check_guest_agent(&tree, Arch::Amd64).unwrap();
    assert_eq!(ga.path, "guest-agent/qemu-ga-x86_64.msi");
}

#[test]
fn rock_ridge_names_are_used_when_there_is_no_joliet() {
    let f = fixture(&["-R"]);
    let tree = IsoTree::open(&f.complete).unwrap();
    assert_eq!(tree.naming(), Naming::RockRidge);
    assert_eq!(
        tree.get("NETKVM/2K22/AMD64").unwrap().path,
        "NetKVM/2k22/amd64"
    );
    assert!(
        tree.get("qemupciserial/2k22/amd64/qemupciserial.inf")
            .is_some()
    );
    let missing = check_drivers(
        &tree,
        WindowsVersion::Server2022,
        Arch::Amd64,
        &[VirtioDriver::Qemupciserial],
    );
    assert!(missing.is_empty(), "{missing:?}");
}

#[test]
fn plain_iso9660_names_are_read_without_extensions() {
    let f = fixture(&[]);
    let tree = IsoTree::open(&f.complete).unwrap();
    assert_eq!(tree.naming(), Naming::Iso9660);
    // Level-1 names are upper case and 8.3; short ones still match, case-insensitively.
    assert!(tree.get("viostor/2k22/amd64").unwrap().is_dir);
    let missing = check_drivers(
        &tree,
        WindowsVersion::Server2022,
        Arch::Amd64,
        &[VirtioDriver::Viostor],
    );
    assert!(missing.is_empty(), "{missing:?}");
}

/// Counts the bytes a reader hands out.
struct Counting<R> {
    inner: R,
    read: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

impl<R: Seek> Seek for Counting<R> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}

#[test]
fn listing_reads_directory_records_only_never_file_contents() {
    let f = fixture(&["-J", "-R"]);
    let size = std::fs::metadata(&f.complete).unwrap().len();
    let mut counting = Counting {
        inner: std::fs::File::open(&f.complete).unwrap(),
        read: 0,
    };
    let tree = IsoTree::read(&mut counting).unwrap();
    assert!(tree.len() > 50, "{}", tree.len());
    assert!(size > 4 << 20);
    // Descriptors plus ~40 directories of one 2 KiB block each.
    assert!(
        counting.read < 256 << 10,
        "read {} of {size} bytes",
        counting.read
    );
}

#[test]
fn truncated_iso_is_an_error_not_a_partial_tree() {
    let f = fixture(&["-J", "-R"]);
    let data = std::fs::read(&f.complete).unwrap();
    // Keep the volume descriptors, cut off the directory extents.
    let cut = &data[..18 * 2048];
    let err = IsoTree::read(std::io::Cursor::new(cut)).unwrap_err();
    assert!(
        err.to_string().contains("beyond the end of the image"),
        "{err}"
    );
}

/// A damaged ISO must give an error or a tree, never a panic or a hang: the planner reads ISOs
/// users hand it.
#[test]
fn corrupted_directory_records_never_panic() {
    let f = fixture(&["-J", "-R"]);
    let mut data = std::fs::read(&f.complete).unwrap();
    // Volume descriptors and the directory extents sit in the first ~60 blocks.
    let end = (60 * 2048).min(data.len());
    let mut outcomes = (0, 0);
    // 300 positions from a fixed LCG: enough to hit descriptors, record lengths, extents, sizes,
    // names and Rock Ridge areas, cheap enough for a debug build.
    let mut x: u64 = 0x2545_F491;
    for _ in 0..300 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let pos = 16 * 2048 + (x >> 33) as usize % (end - 16 * 2048);
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
    assert_eq!(outcomes.0 + outcomes.1, 600);

    // Targeted damage must be reported, not read as an empty or partial tree.
    let mut bad = data.clone();
    bad[16 * 2048 + 1] = b'X';
    assert!(matches!(
        IsoTree::read(std::io::Cursor::new(&bad[..])),
        Err(kiln_unattend::IsoError::NotIso)
    ));
    // The root directory size (both byte orders) of the Joliet descriptor, the one names come from.
    let joliet = (16..20).find(|&vd| data[vd * 2048] == 2).unwrap() * 2048;
    let mut bad = data.clone();
    bad[joliet + 156 + 10..joliet + 156 + 18].fill(0xFF);
    let err = IsoTree::read(std::io::Cursor::new(&bad[..])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "malformed iso 9660 image: directory of `4294967295` bytes (at most 16777216 are read)"
    );
}
