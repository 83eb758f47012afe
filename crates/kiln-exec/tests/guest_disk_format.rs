//! Guest-written disks are never format-probed: a `format="raw"` disk whose "installer" wrote a
//! qcow2 header naming a host file as its backing file is converted as raw, so no byte of that
//! host file reaches the built image. Real libvirt + QEMU (TCG) and the real qemu-img.

mod common;

use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use common::{fixtures_with_backing, workdir};
use kiln_plan::StepKind;

/// A host file only this test knows: mode 0600, random content (as an ssh key would be).
fn secret_file(dir: &Path) -> (std::path::PathBuf, String) {
    let mut random = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut random)
        .unwrap();
    let token: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let path = dir.join("id_host_secret");
    std::fs::write(&path, format!("KILN-HOST-SECRET-{token}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    (path, token)
}

/// The whole guest-visible content of a qcow2 image, read as qcow2 into a raw file.
fn as_raw(image: &Path, raw: &Path) {
    let out = Command::new("qemu-img")
        .args(["convert", "-f", "qcow2", "-O", "raw"])
        .arg(image)
        .arg(raw)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether `needle` occurs anywhere in `file` (grep reads a sparse GiB in well under a second).
fn contains(file: &Path, needle: &str) -> bool {
    let st = Command::new("grep")
        .args(["-a", "-F", "-q", needle])
        .arg(file)
        .status()
        .unwrap();
    assert!(st.code().is_some_and(|c| c <= 1), "grep failed: {st}");
    st.success()
}

// The hole this guards: `qemu-img convert` without `-f` probed the guest's raw disk, found the
// guest's qcow2 header and read the host file it named into the published image.
#[test]
fn raw_disk_with_a_guest_written_qcow2_header_converts_as_raw_without_host_bytes() {
    let dir = workdir();
    let secrets = tempfile::tempdir().unwrap();
    let (secret, token) = secret_file(secrets.path());
    fixtures_with_backing(dir.path(), &secret);
    let file = dir.path().join("hostile.kdl");
    std::fs::write(
        &file,
        r#"pipeline "hostile" {
    source "tiny-hostile.iso"
    disk size="1GiB" format="raw"
    machine cpus=1 memory="256MiB"
    install "none" timeout="60s"
    output format="qcow2" compression="zstd"
}
"#,
    )
    .unwrap();
    let run = common::run_id("hostile");
    let r = common::build_tcg(&file, &dir.path().join("cache"), &run);
    assert_eq!(r.exit_code(), 0, "{:?}", r.failures());
    assert_eq!(r.guests_run, 1);
    let image = r.images[0].path.clone().expect("image path");

    let raw = dir.path().join("check.raw");
    as_raw(&image, &raw);
    assert!(
        !contains(&raw, &token) && !contains(&raw, "KILN-HOST-SECRET"),
        "the host file's content is inside the built image"
    );
    // The image is what the guest wrote to its raw disk: 1 GiB whose first bytes are the qcow2
    // header as data, not the 1 MiB qcow2 image that header describes.
    assert_eq!(std::fs::metadata(&raw).unwrap().len(), 1 << 30);
    let mut head = [0u8; 4];
    std::fs::File::open(&raw)
        .unwrap()
        .read_exact(&mut head)
        .unwrap();
    assert_eq!(&head, b"QFI\xfb");

    // kiln says it converted the disk as raw.
    let convert = r
        .steps
        .iter()
        .find(|s| s.kind == StepKind::Convert)
        .unwrap();
    let log = std::fs::read_to_string(&convert.log).unwrap();
    assert!(log.contains("-f raw"), "{log}");
    assert!(log.contains("input disk format: raw"), "{log}");
}
