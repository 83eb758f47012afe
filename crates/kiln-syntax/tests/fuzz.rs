//! Fuzzing the pipeline parser, decoder and formatter from the repository's `.kdl` files (valid
//! and invalid corpora, bundled pipelines), mutated byte-wise: no panic, no hang, bounded memory.
//! `KILN_FUZZ_CASES` sets the number of mutated inputs (default 4,000, under 10 s).

#[path = "../../../tests/fuzz/mutate.rs"]
mod mutate;

use std::path::Path;
use std::time::Duration;

use kiln_syntax::{LoadOptions, MemoryFs, load_text};

#[test]
fn pipeline_files_fuzz() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut seeds = mutate::files(&root.join("tests/corpus"), &[".kdl"]);
    seeds.extend(mutate::files(&root.join("pipelines"), &[".kdl"]));
    let mut fs = MemoryFs::new();
    fs.insert("fragments/base.kdl", "fragment {\n    machine cpus=2\n}\n");
    mutate::fuzz(
        "pipeline files",
        &seeds,
        4000,
        Duration::from_secs(2),
        512,
        |input| {
            let text = String::from_utf8_lossy(input);
            let ws = load_text("fuzz.kdl", &text, &LoadOptions::default(), &fs);
            let _ = ws.render(false);
            if let Ok(once) = kiln_syntax::format::format(&text) {
                assert!(
                    kiln_syntax::format::format(&once).is_ok(),
                    "formatted output does not parse:\n{once}"
                );
            }
        },
    );
}
