//! What users and the executor read: the JSON plan (documented in `docs/plan.md`), the text
//! listing, DOT and Mermaid, and selection.

mod common;

use common::{edges, load_corpus, plan_ok, plan_with};
use kiln_plan::{FakeCache, GraphFormat, NoCache, PlanOptions, to_graph, to_json, to_text};

/// The JSON schema is a contract with scripts and the executor: any change shows up here.
#[test]
fn json_plan_of_linux_and_derived_images() {
    let ws = load_corpus(&["debian.kdl", "web.kdl"]);
    let plan = plan_ok(&ws);
    let cached = FakeCache(vec![
        plan.step("debian-12/fetch-source").expect("fetch").key,
    ]);
    let json = serde_json::to_string_pretty(&to_json(&plan, &cached, &ws.sources)).expect("json");
    insta::assert_snapshot!(json);
}

#[test]
fn text_listing_marks_cached_steps() {
    let ws = load_corpus(&["debian.kdl"]);
    let plan = plan_ok(&ws);
    let cached = FakeCache(vec![
        plan.step("debian-12/fetch-source").expect("fetch").key,
    ]);
    let text = to_text(&plan, &cached, &ws.sources);
    assert!(text.starts_with("9 steps for 1 image, 1 cached"), "{text}");
    insta::assert_snapshot!(text);
}

/// Shared steps (the ISO, the drivers) sit outside the per-pipeline clusters only when several
/// pipelines share them; within one pipeline's matrix they stay in its cluster.
#[test]
fn dot_and_mermaid_cluster_steps_per_pipeline() {
    let ws = load_corpus(&["debian.kdl", "web.kdl"]);
    let plan = plan_ok(&ws);
    let dot = to_graph(&plan, GraphFormat::Dot, &NoCache);
    assert_eq!(dot.matches("subgraph \"cluster_").count(), 2);
    assert_eq!(dot.matches(" -> ").count(), plan.edges().len());
    insta::assert_snapshot!("dot", dot);
    let mermaid = to_graph(&plan, GraphFormat::Mermaid, &NoCache);
    assert_eq!(mermaid.matches("  subgraph ").count(), 2);
    insta::assert_snapshot!("mermaid", mermaid);
}

/// `--only` a derived image pulls in exactly the parent's steps it builds on: not the parent's
/// boot test or publish.
#[test]
fn only_a_derived_image_pulls_in_exactly_its_ancestors() {
    let ws = load_corpus(&["debian.kdl", "web.kdl"]);
    let options = PlanOptions {
        only: vec!["debian-12-web".into()],
        ..PlanOptions::default()
    };
    let plan = plan_with(&ws, &options).expect("plans");
    let mut ids: Vec<&str> = plan.steps().map(|s| s.id.as_str()).collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "debian-12-web/convert",
            "debian-12-web/customize",
            "debian-12-web/customize-seed",
            "debian-12-web/publish",
            "debian-12/answer-media",
            "debian-12/convert",
            "debian-12/create-disk",
            "debian-12/customize",
            "debian-12/customize-seed",
            "debian-12/fetch-source",
            "debian-12/install",
        ]
    );
    let selected: Vec<(&str, bool)> = plan
        .cells()
        .iter()
        .map(|c| (c.owner.image.as_str(), c.selected))
        .collect();
    assert_eq!(selected, [("debian-12", false), ("debian-12-web", true)]);
}

/// Cell selectors pick matrix cells; shared steps stay shared among the kept cells.
#[test]
fn cell_selectors_and_except() {
    let ws = load_corpus(&["windows.kdl", "debian.kdl"]);
    let only = PlanOptions {
        only: vec![
            "ws2022-{language}[language=de-DE]".into(),
            "ws2022-ja-JP".into(),
        ],
        ..PlanOptions::default()
    };
    let plan = plan_with(&ws, &only).expect("plans");
    let images: Vec<&str> = plan
        .cells()
        .iter()
        .map(|c| c.owner.image.as_str())
        .collect();
    assert_eq!(images, ["ws2022-de-DE", "ws2022-ja-JP"]);
    assert_eq!(
        plan.steps()
            .filter(|s| s.id.as_str().ends_with("/install"))
            .count(),
        2
    );

    let except = PlanOptions {
        except: vec!["ws2022-{language}".into()],
        ..PlanOptions::default()
    };
    let plan = plan_with(&ws, &except).expect("plans");
    assert!(
        edges(&plan)
            .iter()
            .all(|(a, b)| a.starts_with("debian-12/") && b.starts_with("debian-12/"))
    );
    assert_eq!(plan.len(), 9);
}
