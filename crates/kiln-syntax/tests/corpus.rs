//! File-driven tests over `tests/corpus/`: every invalid file has a snapshot of its rendered report
//! (source excerpts, lines, columns, help lines; no colour); every valid file checks clean and keeps
//! its layout under `kiln fmt`.

use std::path::{Path, PathBuf};

use kiln_syntax::{LoadOptions, RealFs, load};

fn corpus(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/corpus")
        .join(kind)
}

/// Top-level `*.kdl` files of a corpus folder (fragments live in subfolders).
fn files(kind: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus(kind))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "kdl"))
        .collect();
    files.sort();
    files
}

/// Loads one corpus file with paths relative to the corpus folder, so reports show `name.kdl`.
fn check(kind: &str, file: &Path) -> kiln_syntax::Workspace {
    let dir = corpus(kind);
    let rel = file.strip_prefix(&dir).unwrap().to_path_buf();
    let cwd_guard = CwdPaths { dir };
    cwd_guard.load(&rel)
}

struct CwdPaths {
    dir: PathBuf,
}

impl CwdPaths {
    /// Loads through a file system rooted at the corpus folder.
    fn load(&self, rel: &Path) -> kiln_syntax::Workspace {
        let fs = Rooted {
            root: self.dir.clone(),
        };
        load(&[rel.to_path_buf()], &LoadOptions::default(), &fs)
    }
}

/// The real file system with relative paths taken from `root` (tests must not `chdir`: they run in
/// parallel).
struct Rooted {
    root: PathBuf,
}

impl kiln_syntax::FileSystem for Rooted {
    fn read_to_string(&self, path: &Path) -> std::io::Result<String> {
        RealFs.read_to_string(&self.root.join(path))
    }
    fn is_dir(&self, path: &Path) -> bool {
        RealFs.is_dir(&self.root.join(path))
    }
    fn is_file(&self, path: &Path) -> bool {
        RealFs.is_file(&self.root.join(path))
    }
    fn read_dir(&self, path: &Path) -> std::io::Result<Vec<PathBuf>> {
        Ok(RealFs
            .read_dir(&self.root.join(path))?
            .into_iter()
            .map(|p| p.strip_prefix(&self.root).unwrap().to_path_buf())
            .collect())
    }
}

#[test]
fn invalid_files_report_every_error_at_its_place() {
    let files = files("invalid");
    assert!(
        files.len() >= 40,
        "the invalid corpus has {} files",
        files.len()
    );
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(corpus("invalid").join("snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        for file in &files {
            let ws = check("invalid", file);
            let name = file.file_stem().unwrap().to_str().unwrap();
            assert!(!ws.is_ok(), "{name} checked clean");
            let source = std::fs::read_to_string(file).unwrap();
            let report = ws.render(false);
            insta::assert_snapshot!(name, format!("{source}\n---- kiln check ----\n{report}"));
        }
    });
}

#[test]
fn valid_files_check_clean() {
    let files = files("valid");
    assert!(files.len() >= 4);
    for file in &files {
        let ws = check("valid", file);
        assert!(ws.is_ok(), "{}:\n{}", file.display(), ws.render(false));
        assert!(!ws.pipelines.is_empty());
    }
}

#[test]
fn formatting_valid_files_is_idempotent_and_keeps_meaning() {
    for file in files("valid").iter().chain(files("invalid").iter()) {
        let text = std::fs::read_to_string(file).unwrap();
        let Ok(once) = kiln_syntax::format::format(&text) else {
            continue;
        };
        let twice = kiln_syntax::format::format(&once).unwrap();
        assert_eq!(once, twice, "{} is not stable under fmt", file.display());
        let mut a: kdl::KdlDocument = text.parse().unwrap();
        let mut b: kdl::KdlDocument = once.parse().unwrap();
        a.clear_format_recursive();
        b.clear_format_recursive();
        assert_eq!(a, b, "fmt changed the meaning of {}", file.display());
    }
}

#[test]
fn bundled_pipelines_check_clean() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines");
    let ws = load(&[dir], &LoadOptions::default(), &RealFs);
    assert!(ws.is_ok(), "{}", ws.render(false));
    let names: Vec<&str> = ws.pipelines.iter().map(|p| p.name.raw.as_str()).collect();
    for expected in [
        "debian-12-app",
        "debian-12-server",
        "win11-pro-{release}",
        "ws2022-{language}",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    let ws2022 = ws
        .pipelines
        .iter()
        .find(|p| p.name.raw == "ws2022-{language}")
        .unwrap();
    assert_eq!(ws2022.cells().len(), 5);
}
