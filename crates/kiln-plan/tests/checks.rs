//! The planner's checks, snapshot-tested as rendered reports located in the pipeline files: one
//! snapshot per file of `tests/plan/invalid/`, holding the source and every diagnostic.

mod common;

use common::{corpus, corpus_dir, load_at, plan, plan_with};
use kiln_plan::PlanOptions;
use kiln_syntax::{LoadOptions, MemoryFs};

fn report(name: &str) -> String {
    let text = corpus(&format!("invalid/{name}"));
    let ws = load_at("invalid", &[(name, text.clone())]);
    let diags = match plan(&ws) {
        Ok(p) => panic!("{name} planned {} steps without complaint", p.len()),
        Err(d) => d,
    };
    format!(
        "{text}\n----- {} problem(s) -----\n{}",
        diags.len(),
        kiln_syntax::render_text(&diags, &ws.sources, false)
    )
}

#[test]
fn every_invalid_file_has_a_snapshot() {
    let mut names: Vec<String> = std::fs::read_dir(corpus_dir().join("invalid"))
        .expect("corpus")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".kdl"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "from-cycle.kdl",
            "matrix-explosion.kdl",
            "publish-conflict.kdl"
        ]
    );
}

/// A cycle through `from` is one diagnostic naming the edge to cut, with the other edges labelled.
#[test]
fn from_cycle() {
    insta::assert_snapshot!(report("from-cycle.kdl"));
}

/// Two cells publishing one Glance name: both places labelled, one report per clash.
#[test]
fn publish_conflict() {
    insta::assert_snapshot!(report("publish-conflict.kdl"));
}

/// A matrix above `--max-cells` is refused before expanding it.
#[test]
fn matrix_explosion() {
    insta::assert_snapshot!(report("matrix-explosion.kdl"));
}

/// The limit is configurable: the same matrix plans with a higher one.
#[test]
fn max_cells_is_configurable() {
    let ws = load_at(
        "invalid",
        &[(
            "matrix-explosion.kdl",
            corpus("invalid/matrix-explosion.kdl"),
        )],
    );
    let options = PlanOptions {
        max_cells: 343,
        ..PlanOptions::default()
    };
    let plan = plan_with(&ws, &options).expect("plans under a higher limit");
    assert_eq!(plan.cells().len(), 343);
    // The cells differ only in their names, which no step's result depends on: the 343 images
    // are one fetch, one disk, one install and one convert.
    assert_eq!(plan.len(), 4);
    assert_eq!(
        plan.step("img-1-1-1/convert")
            .expect("convert")
            .owners
            .len(),
        343
    );
}

/// A parent that no pipeline makes gets "did you mean" (the syntax stage reports it too, but the
/// planner is a library of its own and must not trust its caller).
#[test]
fn missing_parent_suggests_the_nearest_name() {
    let mut fs = MemoryFs::new();
    let text = corpus("valid/web.kdl").replace("\"debian-12\"", "\"debian-21\"");
    fs.insert("p/web.kdl", text);
    fs.insert("p/debian.kdl", corpus("valid/debian.kdl"));
    fs.insert("p/preseed.cfg", corpus("valid/preseed.cfg"));
    let ws = kiln_syntax::load(&["p".into()], &LoadOptions::default(), &fs);
    let diags = plan(&ws).expect_err("missing parent");
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert_eq!(diags[0].code, "missing-parent");
    assert_eq!(diags[0].help.as_deref(), Some("did you mean `debian-12`?"));
    let loc = diags[0].location(&ws.sources).expect("located");
    assert_eq!(
        (loc.file.as_str(), loc.line, loc.column),
        ("p/web.kdl", 3, 10)
    );
}

/// Every problem of every file is reported in one pass.
#[test]
fn all_problems_are_reported_together() {
    let files: Vec<(&str, String)> = [
        "from-cycle.kdl",
        "publish-conflict.kdl",
        "matrix-explosion.kdl",
    ]
    .into_iter()
    .map(|n| (n, corpus(&format!("invalid/{n}"))))
    .collect();
    let ws = load_at("invalid", &files);
    let codes: Vec<&str> = plan(&ws)
        .expect_err("invalid")
        .iter()
        .map(|d| d.code)
        .collect();
    assert_eq!(
        codes,
        [
            "from-cycle",
            "matrix-too-large",
            "conflicting-publish",
            "conflicting-publish"
        ]
    );
}

/// Selectors that match nothing are errors with a suggestion, not an empty plan.
#[test]
fn unknown_selector_suggests_a_name() {
    let ws = common::load_corpus(&["debian.kdl", "web.kdl"]);
    let options = PlanOptions {
        only: vec!["debian-12-wbe".into()],
        ..PlanOptions::default()
    };
    let diags = plan_with(&ws, &options).expect_err("no match");
    assert_eq!(diags.len(), 1);
    assert_eq!(
        diags[0].message,
        "--only `debian-12-wbe` matches no pipeline or cell"
    );
    assert_eq!(
        diags[0].help.as_deref(),
        Some("did you mean `debian-12-web`?")
    );
}
