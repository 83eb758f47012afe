//! Key stability: fixed reference keys, and properties of what may and may not change a key.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{corpus, load_at, plan_ok, plan_with};
use kiln_plan::{FakeDigests, Plan, PlanOptions, ToolVersions};
use proptest::prelude::*;

fn keys(plan: &Plan) -> BTreeMap<String, String> {
    plan.steps()
        .map(|s| (s.id.to_string(), s.key.to_hex()))
        .collect()
}

fn reference() -> Vec<(&'static str, String)> {
    vec![
        ("debian.kdl", corpus("valid/debian.kdl")),
        ("web.kdl", corpus("valid/web.kdl")),
        ("preseed.cfg", corpus("valid/preseed.cfg")),
    ]
}

/// The keys of the reference pipelines. They are the cache's addresses: if this test fails, a
/// change altered what a key means. Either undo it, or make it a conscious decision: bump
/// `KEY_FORMAT_VERSION` (or the kind's `runner_version`) and update this table.
#[test]
fn reference_keys_are_fixed() {
    let plan = plan_ok(&load_at("pipelines", &reference()));
    let got: Vec<String> = plan
        .steps()
        .map(|s| format!("{} {}", s.key, s.id))
        .collect();
    let expected: &[&str] = &[
        "f56f84e2ae3db62e307f853e7f53ae3ee53334abc41090841803483e93e32329 debian-12/fetch-source",
        "56d6ec08c30c48004eaf9d2f9058c4095510a24adaec6503d32ddca64ab45583 debian-12/create-disk",
        "49fc5c42ef84d949d9269252130f3822cf98085d45a98872b6338a8a94ccfae7 debian-12/answer-media",
        "f6e30f7dfadfb9ec5cc62152d0679d46372981fe98ab26d1ac352252f521b75e debian-12/install",
        "81a4561e40fe0b9ea2bbc39eda8281b66981940577d514b9803aeb404f2285e5 debian-12/customize-seed",
        "adb5246200433663bcfd516d22fe749d1193904e55b4961d8b2631c4268e9ae1 debian-12/customize",
        "866cdac21f9822e0e02dbf59a1678d52a4b5611fe1cd1f77867a96f1d7289e78 debian-12/convert",
        "56b4617d29afefad45a2878706d0800aa2f6cb5688bfe95a23d2a894babb4c87 debian-12/boot-test",
        "3f8d154cbe29b6c0ac83c77f774d80185c3ff40b53e48d708bf3b2e5f6ee3929 debian-12/publish",
        "1fe0c7abc2027c61ee4830607b44a844ef19f59b1035ba608688a3713a8cd14b debian-12-web/customize-seed",
        "dd91ca1327e82d0119db6a0cf1ed4c7771c5963ec0516db362996ad296d7134e debian-12-web/customize",
        "efa0907314dedefa4729f864b7d592e4869842ba5f7d3168332b93d2adbb2008 debian-12-web/convert",
        "2eb8864daec07ad382b04df5a0a05128e1f9c2df128677f18df436450e5e638e debian-12-web/publish",
    ];
    assert_eq!(got, expected);
}

/// The install step's canonical description, as hashed: a reviewer sees exactly what a key covers.
#[test]
fn install_description_is_canonical_json() {
    let plan = plan_ok(&load_at("pipelines", &reference()));
    let install = plan.step("debian-12/install").expect("install step");
    insta::assert_snapshot!(install.description);
}

/// The Debian pipeline written as separate top-level nodes, so tests can reorder and annotate them.
const NODES: &[&str] = &[
    r#"source "https://deb.example.org/debian-12.8.0-amd64-netinst.iso" checksum="sha256:SUM""#,
    r#"disk size="10GiB" format="qcow2""#,
    r#"machine cpus=2 memory="2GiB" firmware="bios""#,
    r#"install preseed file="preseed.cfg" timeout="30m""#,
    "customize cloud-init {\n        package \"qemu-guest-agent\" \"curl\"\n        run \"systemctl enable qemu-guest-agent\"\n    }",
    r#"boot-test timeout="10m""#,
    r#"output format="qcow2" compression="zstd""#,
    "publish glance name=\"debian-12\" visibility=\"private\" {\n        property os_distro=\"debian\" os_type=\"linux\"\n        tag \"kiln\"\n    }",
];

const SUM: &str = "0d5b0d7c4d9b3b0a2d5c6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c";

fn pipeline_text(nodes: &[String], comment: Option<&str>) -> String {
    let mut text = String::new();
    if let Some(c) = comment {
        text.push_str(&format!("// {c}\n"));
    }
    text.push_str("pipeline \"debian-12\" {\n");
    for n in nodes {
        text.push_str("    ");
        text.push_str(&n.replace("SUM", SUM));
        if let Some(c) = comment {
            text.push_str(&format!(" // {c}"));
        }
        text.push('\n');
    }
    text.push_str("}\n");
    text
}

fn base_nodes() -> Vec<String> {
    NODES.iter().map(|s| s.to_string()).collect()
}

fn keys_of(
    root: &str,
    text: String,
    preseed: &str,
    tools: &ToolVersions,
) -> BTreeMap<String, String> {
    let files = vec![("debian.kdl", text), ("preseed.cfg", preseed.to_string())];
    let ws = load_at(root, &files);
    let options = PlanOptions {
        tools: tools.clone(),
        ..PlanOptions::default()
    };
    let plan = kiln_plan::plan(
        &ws.pipelines,
        &options,
        &FakeDigests::new().with("preseed.cfg", preseed),
    )
    .unwrap_or_else(|d| panic!("{}", kiln_syntax::render_text(&d, &ws.sources, false)));
    keys(&plan)
}

const PRESEED: &str = "d-i debian-installer/exit/poweroff boolean true\n";

fn baseline() -> BTreeMap<String, String> {
    keys_of(
        "pipelines",
        pipeline_text(&base_nodes(), None),
        PRESEED,
        &common::tools(),
    )
}

/// Swaps the `key=value` properties of a node line into the order given by `order`.
fn reorder_props(node: &str, seed: usize) -> String {
    let (head, block) = match node.find(" {") {
        Some(i) => (&node[..i], &node[i..]),
        None => (node, ""),
    };
    let mut words: Vec<&str> = head.split(' ').collect();
    let first_prop = words
        .iter()
        .position(|w| w.contains('='))
        .unwrap_or(words.len());
    let props = &mut words[first_prop..];
    if !props.is_empty() {
        props.rotate_left(seed % props.len());
    }
    format!("{}{block}", words.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    /// Writing the nodes of a pipeline, or the properties of a node, in another order is the same
    /// pipeline: no key may change.
    #[test]
    fn reordering_nodes_and_properties_keeps_keys(
        order in Just((0..NODES.len()).collect::<Vec<_>>()).prop_shuffle(),
        rotations in proptest::collection::vec(0usize..4, NODES.len()),
    ) {
        let nodes: Vec<String> = order
            .iter()
            .zip(&rotations)
            .map(|(&i, &r)| reorder_props(NODES[i], r))
            .collect();
        let got = keys_of("pipelines", pipeline_text(&nodes, None), PRESEED, &common::tools());
        prop_assert_eq!(got, baseline());
    }

    /// Keys name content, not where the checkout lives.
    #[test]
    fn moving_the_checkout_keeps_keys(dirs in proptest::collection::vec("[a-z][a-z0-9_-]{0,7}", 1..4)) {
        let root = format!("/{}/pipelines", dirs.join("/"));
        let got = keys_of(&root, pipeline_text(&base_nodes(), None), PRESEED, &common::tools());
        prop_assert_eq!(got, baseline());
    }

    /// Comments are for humans.
    #[test]
    fn changing_comments_keeps_keys(comment in "[a-zA-Z0-9 ,.:;!?()-]{0,40}") {
        let got = keys_of("pipelines", pipeline_text(&base_nodes(), Some(&comment)), PRESEED, &common::tools());
        prop_assert_eq!(got, baseline());
    }

    /// Changing a result-affecting parameter changes the key of its step and of every step
    /// downstream, and of nothing else.
    #[test]
    fn a_parameter_changes_its_step_and_everything_downstream(
        which in 0..MUTATIONS.len(),
        word in "[a-z][a-z0-9]{2,8}",
        number in 11u64..400,
    ) {
        check_mutation(which, &word, number)?;
    }
}

/// Applies mutation `which` and checks that exactly its steps and their downstream change keys.
fn check_mutation(which: usize, word: &str, number: u64) -> Result<(), TestCaseError> {
    let (node, from, to, root) = MUTATIONS[which];
    let to = to.replace("WORD", word).replace("NUM", &number.to_string());
    let mut nodes = base_nodes();
    let mut preseed = PRESEED.to_string();
    let mut tools = common::tools();
    match node {
        PRESEED_FILE => preseed.push_str(&format!("# {word}\n")),
        TOOLS => tools = ToolVersions::fixed(&format!("9.{number}.0")),
        n => {
            prop_assert!(nodes[n].contains(from), "{} not in {}", from, nodes[n]);
            nodes[n] = nodes[n].replace(from, &to);
        }
    }
    let before = baseline();
    let after = keys_of("pipelines", pipeline_text(&nodes, None), &preseed, &tools);
    let changed: BTreeSet<&String> = before
        .iter()
        .filter(|(id, key)| after.get(*id) != Some(key))
        .map(|(id, _)| id)
        .collect();
    let base_plan = plan_ok(&load_at(
        "pipelines",
        &[
            ("debian.kdl", pipeline_text(&base_nodes(), None)),
            ("preseed.cfg", PRESEED.to_string()),
        ],
    ));
    let mut expected = BTreeSet::new();
    let mut stack: Vec<String> = root.iter().map(|r| format!("debian-12/{r}")).collect();
    while let Some(id) = stack.pop() {
        for d in base_plan.dependents(&id) {
            stack.push(d.id.to_string());
        }
        expected.insert(id);
    }
    let expected: BTreeSet<&String> = expected.iter().collect();
    prop_assert!(!expected.is_empty());
    prop_assert_eq!(changed, expected);
    Ok(())
}

/// Every mutation of the table, once each (the property test draws them at random).
#[test]
fn every_listed_parameter_changes_its_step_and_everything_downstream() {
    for (which, mutation) in MUTATIONS.iter().enumerate() {
        if let Err(e) = check_mutation(which, "zeta", 42) {
            panic!("mutation {which} ({:?}): {e}", mutation.1);
        }
    }
}

const PRESEED_FILE: usize = 100;
const TOOLS: usize = 101;

/// (node index, text to replace, replacement, steps whose own params change).
const MUTATIONS: &[(usize, &str, &str, &[&str])] = &[
    (0, "debian-12.8.0", "debian-WORD", &["fetch-source"]),
    (0, "sha256:SUM", "sha512:SUMSUM", &["fetch-source"]),
    (1, "10GiB", "NUMGiB", &["create-disk"]),
    (
        1,
        "format=\"qcow2\"",
        "format=\"raw\"",
        &["create-disk", "install"],
    ),
    (PRESEED_FILE, "", "", &["answer-media"]),
    (
        3,
        "preseed file",
        "kickstart file",
        &["answer-media", "install"],
    ),
    (2, "firmware=\"bios\"", "firmware=\"uefi\"", &["install"]),
    (
        4,
        "qemu-guest-agent\" \"curl",
        "qemu-guest-agent\" \"WORD",
        &["customize-seed"],
    ),
    (4, "systemctl enable", "systemctl WORD", &["customize-seed"]),
    (6, "zstd", "zlib", &["convert"]),
    (
        6,
        "format=\"qcow2\" compression=\"zstd\"",
        "format=\"raw\" compression=\"none\"",
        &["convert"],
    ),
    (
        7,
        "name=\"debian-12\"",
        "name=\"debian-12-WORD\"",
        &["publish"],
    ),
    (
        7,
        "os_distro=\"debian\"",
        "os_distro=\"WORD\"",
        &["publish"],
    ),
    (7, "tag \"kiln\"", "tag \"WORD\"", &["publish"]),
    (
        5,
        "timeout=\"10m\"",
        "timeout=\"10m\" {\n        expect \"WORD\"\n    }",
        &["boot-test"],
    ),
    (TOOLS, "", "", &["create-disk", "convert"]),
];

/// What only changes how fast or how patiently a step runs is not in its key.
#[test]
fn vm_size_and_timeouts_do_not_change_keys() {
    let mut nodes = base_nodes();
    nodes[2] = r#"machine cpus=8 memory="16GiB" firmware="bios""#.to_string();
    nodes[3] = r#"install preseed file="preseed.cfg" timeout="2h""#.to_string();
    nodes[5] = r#"boot-test timeout="45m""#.to_string();
    let got = keys_of(
        "pipelines",
        pipeline_text(&nodes, None),
        PRESEED,
        &common::tools(),
    );
    assert_eq!(got, baseline());
}

/// Changing the parent image changes the derived image's steps too (they build on its output).
#[test]
fn a_parent_change_reaches_derived_images() {
    let mut files = reference();
    let before = keys(&plan_ok(&load_at("pipelines", &files)));
    files[0].1 = files[0].1.replace("\"curl\"", "\"wget\"");
    let after = keys(&plan_ok(&load_at("pipelines", &files)));
    for id in [
        "debian-12-web/customize",
        "debian-12-web/convert",
        "debian-12-web/publish",
    ] {
        assert_ne!(before[id], after[id], "{id} must change");
    }
    for id in [
        "debian-12-web/customize-seed",
        "debian-12/install",
        "debian-12/fetch-source",
    ] {
        assert_eq!(before[id], after[id], "{id} must not change");
    }
}

/// Secrets enter keys by reference only: the value is never read while planning.
#[test]
fn secret_values_never_enter_keys() {
    let text = corpus("valid/windows.kdl");
    let ws = load_at("pipelines", &[("windows.kdl", text.clone())]);
    let plan = plan_with(&ws, &PlanOptions::default()).expect("plans");
    let media = plan
        .step("ws2022-en-US/answer-media")
        .expect("answer media");
    assert!(
        media
            .description
            .contains("\"admin_password\":\"env:KILN_WINDOWS_ADMIN_PASSWORD\"")
    );
    let renamed = text.replace("KILN_WINDOWS_ADMIN_PASSWORD", "OTHER_PASSWORD");
    let plan2 = plan_with(
        &load_at("pipelines", &[("windows.kdl", renamed)]),
        &PlanOptions::default(),
    )
    .expect("plans");
    let media2 = plan2
        .step("ws2022-en-US/answer-media")
        .expect("answer media");
    assert_ne!(
        media.key, media2.key,
        "the secret's identity is part of the key"
    );
}
