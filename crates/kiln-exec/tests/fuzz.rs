//! Fuzzing the `kiln.kdl` reader (`parse_config`): valid and broken configurations and the
//! repository's pipeline corpus (KDL that is no config), mutated byte-wise: no panic, no hang,
//! bounded memory, and every error located in the file. `KILN_FUZZ_CASES` sets the number of
//! mutated inputs (default 6,000, under 10 s).

#[path = "../../../tests/fuzz/mutate.rs"]
mod mutate;

use std::path::Path;
use std::time::Duration;

#[test]
fn kiln_kdl_fuzz() {
    let mut seeds: Vec<Vec<u8>> = [
        "// hosts\nhost \"qemu:///system\" accel=\"tcg\" guests=2 vcpus=2 memory=\"16GiB\"\nhost \"qemu+tcp://10.0.0.2/system\" accel=\"kvm\"\n",
        "host \"qemu:///system\" guests=1 vcpus=2 memory=\"1GiB\" accel=\"tcg\"\nhost \"qemu+tcp://b/system\" guests=3\n",
        "host \"qemu:///system\" acel=\"kvm\"\nhost \"qemu:///system\"\nhost \"qemu:///x\" accel=\"fast\" guests=0 memory=\"4gb\"\nhosts\nhost\n",
        "host \"qemu:///system\" guests=2\nhost \"unterminated\n",
        "host 42 memory=1024\n",
        "host \"qemu+ssh://user@build-1/system\" accel=\"auto\" memory=\"0.5TiB\" vcpus=256\n",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    seeds.extend(
        mutate::files(&root.join("tests/corpus/invalid"), &[".kdl"])
            .into_iter()
            .take(8),
    );
    mutate::fuzz(
        "kiln.kdl",
        &seeds,
        6000,
        Duration::from_secs(2),
        512,
        |input| {
            let text = String::from_utf8_lossy(input);
            if let Err(e) = kiln_exec::parse_config(Path::new("proj/kiln.kdl"), &text) {
                let message = e.to_string();
                assert!(
                    message.contains("kiln.kdl"),
                    "an unlocated error: {message}"
                );
            }
        },
    );
}
