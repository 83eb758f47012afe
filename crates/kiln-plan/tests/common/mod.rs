//! Helpers shared by the planner's integration tests: loading pipelines from the corpus in
//! `tests/plan/` (or from text) into memory, and planning them with fixed tool versions.

#![allow(dead_code, reason = "each test binary uses a subset")]

use std::path::{Path, PathBuf};

use kiln_plan::{FakeDigests, Plan, PlanOptions, ToolVersions};
use kiln_syntax::{Diagnostic, LoadOptions, MemoryFs, Workspace};

/// The tool versions every test plans with.
pub fn tools() -> ToolVersions {
    ToolVersions::fixed("8.2.2")
}

/// The repository's `tests/plan/` folder.
pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/plan")
}

/// The text of a corpus file.
pub fn corpus(path: &str) -> String {
    std::fs::read_to_string(corpus_dir().join(path)).expect("corpus file exists")
}

/// Digests of the local files the valid corpus uses.
pub fn digests() -> FakeDigests {
    FakeDigests::new().with("preseed.cfg", &corpus("valid/preseed.cfg"))
}

/// Loads `(path, text)` files placed under `root`, asserting the syntax stage is happy.
pub fn load_at(root: &str, files: &[(&str, String)]) -> Workspace {
    let mut fs = MemoryFs::new();
    for (path, text) in files {
        fs.insert(Path::new(root).join(path), text.clone());
    }
    let ws = kiln_syntax::load(&[PathBuf::from(root)], &LoadOptions::default(), &fs);
    assert!(ws.is_ok(), "syntax errors:\n{}", ws.render(false));
    ws
}

/// Loads valid-corpus files by name, under `pipelines/`.
pub fn load_corpus(names: &[&str]) -> Workspace {
    let mut files: Vec<(&str, String)> = names
        .iter()
        .map(|n| (*n, corpus(&format!("valid/{n}"))))
        .collect();
    files.push(("preseed.cfg", corpus("valid/preseed.cfg")));
    load_at("pipelines", &files)
}

/// Plans a workspace with default options and fixed tools.
pub fn plan(ws: &Workspace) -> Result<Plan, Vec<Diagnostic>> {
    plan_with(ws, &PlanOptions::default())
}

/// Plans with `options` (tools forced to [`tools`]).
pub fn plan_with(ws: &Workspace, options: &PlanOptions) -> Result<Plan, Vec<Diagnostic>> {
    let mut options = options.clone();
    options.tools = tools();
    kiln_plan::plan(&ws.pipelines, &options, &digests())
}

/// Plans and panics with the rendered diagnostics on failure.
pub fn plan_ok(ws: &Workspace) -> Plan {
    match plan(ws) {
        Ok(p) => p,
        Err(d) => panic!("{}", kiln_syntax::render_text(&d, &ws.sources, false)),
    }
}

/// Edges of a plan as `(producer, consumer)` strings, sorted.
pub fn edges(plan: &Plan) -> Vec<(String, String)> {
    let mut e: Vec<(String, String)> = plan
        .edges()
        .into_iter()
        .map(|(a, b, _)| (a.to_string(), b.to_string()))
        .collect();
    e.sort();
    e.dedup();
    e
}

/// `deps! { "a" => "b", ... }`: an expected edge table, sorted like [`edges`].
#[macro_export]
macro_rules! deps {
    ($($from:literal => $to:literal),* $(,)?) => {{
        let mut v: Vec<(String, String)> = vec![$(($from.to_string(), $to.to_string())),*];
        v.sort();
        v
    }};
}
