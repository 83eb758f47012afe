//! The shape of planned graphs, stated as tables of expected edges (producer => consumer).

mod common;

use common::{edges, load_corpus, plan_ok};
use kiln_plan::StepKind;

#[test]
fn linux_pipeline_has_one_chain_from_iso_to_glance() {
    let plan = plan_ok(&load_corpus(&["debian.kdl"]));
    assert_eq!(
        edges(&plan),
        deps! {
            "debian-12/fetch-source" => "debian-12/install",
            "debian-12/create-disk" => "debian-12/install",
            "debian-12/answer-media" => "debian-12/install",
            "debian-12/install" => "debian-12/customize",
            "debian-12/customize-seed" => "debian-12/customize",
            "debian-12/customize" => "debian-12/convert",
            "debian-12/convert" => "debian-12/boot-test",
            "debian-12/convert" => "debian-12/publish",
            "debian-12/boot-test" => "debian-12/publish",
        }
    );
    assert_eq!(plan.len(), 9);
}

#[test]
fn windows_matrix_fetches_iso_and_drivers_once_and_installs_five_times() {
    let plan = plan_ok(&load_corpus(&["windows.kdl"]));
    let count = |kind| plan.steps().filter(|s| s.kind() == kind).count();
    assert_eq!(
        count(StepKind::FetchSource),
        2,
        "the ISO and the cloudbase-init MSI"
    );
    assert_eq!(count(StepKind::FetchDrivers), 1);
    assert_eq!(
        count(StepKind::CreateDisk),
        1,
        "a blank 40GiB disk is the same for all"
    );
    assert_eq!(
        count(StepKind::AnswerMedia),
        5,
        "one autounattend per language"
    );
    assert_eq!(count(StepKind::Install), 5);
    // cloudbase-init is installed and configured at the install's first logon (the MSI goes
    // onto the answer media): no customize boot.
    assert_eq!(count(StepKind::CustomizeSeed), 0);
    assert_eq!(count(StepKind::Customize), 0);
    assert_eq!(count(StepKind::Publish), 5);
    let iso = plan.step("ws2022-en-US/fetch-source").expect("iso fetch");
    assert_eq!(iso.owners.len(), 5);
    let mut expected = deps! {
        "ws2022-en-US/fetch-source" => "ws2022-en-US/install",
        "ws2022-en-US/fetch-drivers" => "ws2022-en-US/install",
        "ws2022-en-US/create-disk" => "ws2022-en-US/install",
        "ws2022-en-US/answer-media" => "ws2022-en-US/install",
        "ws2022-en-US/fetch-source~2" => "ws2022-en-US/install",
        "ws2022-en-US/install" => "ws2022-en-US/convert",
        "ws2022-en-US/convert" => "ws2022-en-US/publish",
    };
    for lang in ["de-DE", "fr-FR", "ja-JP", "zh-CN"] {
        let own = |kind: &str| format!("ws2022-{lang}/{kind}");
        let shared = |kind: &str| format!("ws2022-en-US/{kind}");
        expected.extend([
            (shared("fetch-source"), own("install")),
            (shared("fetch-drivers"), own("install")),
            (shared("create-disk"), own("install")),
            (own("answer-media"), own("install")),
            (shared("fetch-source~2"), own("install")),
            (own("install"), own("convert")),
            (own("convert"), own("publish")),
        ]);
    }
    expected.sort();
    assert_eq!(edges(&plan), expected);
}

#[test]
fn derived_image_starts_from_its_parents_output() {
    let plan = plan_ok(&load_corpus(&["debian.kdl", "web.kdl"]));
    let web: Vec<(String, String)> = edges(&plan)
        .into_iter()
        .filter(|(_, to)| to.starts_with("debian-12-web/"))
        .collect();
    assert_eq!(
        web,
        deps! {
            "debian-12/convert" => "debian-12-web/customize",
            "debian-12-web/customize-seed" => "debian-12-web/customize",
            "debian-12-web/customize" => "debian-12-web/convert",
            "debian-12-web/convert" => "debian-12-web/publish",
        }
    );
    // No install of its own: everything before customize is the parent's.
    assert!(plan.step("debian-12-web/install").is_none());
    assert!(plan.step("debian-12-web/fetch-source").is_none());
    assert_eq!(plan.len(), 9 + 4);
}
