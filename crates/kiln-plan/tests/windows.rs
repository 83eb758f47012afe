//! The Windows media checks ([`kiln_plan::windows::check_windows_media`]) with fake ISO trees, and
//! how a Windows install is lowered (cloudbase-init folded into the install, secrets by reference).

mod common;
#[path = "../../kiln/tests/support/virtio.rs"]
mod virtio;

use common::{load_at, plan_ok};
use kiln_plan::StepParams;
use kiln_plan::windows::{FakeMedia, NoMedia, check_windows_media, image_from_params};
use virtio::VIRTIO_DRIVERS;

const PIPELINE: &str = r#"pipeline "ws-{language}" {
    matrix {
        language "en-US" "de-DE"
    }
    source "win.iso" checksum="sha256:0000000000000000000000000000000000000000000000000000000000000000"
    drivers "virtio.iso" kind="virtio-win" checksum="sha256:1111111111111111111111111111111111111111111111111111111111111111"
    disk size="40GiB"
    install autounattend timeout="2h" {
        version "server-2022"
        image name="Windows Server 2022 SERVERSTANDARD"
        language "{language}"
        computer-name "KILN-{language}"
        admin-password env="KILN_TEST_ADMIN_PASSWORD"
    }
    customize cloudbase-init {
        installer "cbi.msi" checksum="sha256:2222222222222222222222222222222222222222222222222222222222222222"
        plugin "cloudbaseinit.plugins.common.mtu.MTUPlugin"
        plugin "cloudbaseinit.plugins.windows.createuser.CreateUserPlugin"
        run "Write-Output {language}"
    }
}
"#;

/// Every folder Server 2022 amd64 takes from virtio-win, each with an `.inf`, and the agent MSI.
fn full_virtio(skip: &str) -> Vec<(String, bool)> {
    let mut entries = Vec::new();
    for driver in VIRTIO_DRIVERS {
        let dir = format!("{driver}/2k22/amd64");
        if dir == skip {
            // An older ISO: the driver is there, for 2k19 only.
            entries.push((format!("{driver}/2k19/amd64/{driver}.inf"), false));
            continue;
        }
        entries.push((format!("{dir}/{driver}.inf"), false));
    }
    entries.push(("guest-agent/qemu-ga-x86_64.msi".to_owned(), false));
    entries
}

fn media(skip: &str, languages: &[&str]) -> FakeMedia {
    let virtio = full_virtio(skip);
    let win: Vec<(String, bool)> = languages
        .iter()
        .map(|l| (format!("sources/{l}/setup.exe.mui"), false))
        .chain([("sources/install.wim".to_owned(), false)])
        .collect();
    FakeMedia::new()
        .with("virtio.iso", virtio.iter().map(|(p, d)| (p.as_str(), *d)))
        .with("win.iso", win.iter().map(|(p, d)| (p.as_str(), *d)))
}

fn report(media: &FakeMedia) -> (String, Vec<String>) {
    let ws = load_at("p", &[("ws.kdl", PIPELINE.to_owned())]);
    let r = check_windows_media(&ws.pipelines, media);
    (
        kiln_syntax::render_text(&r.diagnostics, &ws.sources, false),
        r.notes,
    )
}

#[test]
fn complete_media_pass_and_say_where_languages_come_from() {
    let (diags, notes) = report(&media("", &["en-us", "de-de", "fr-fr"]));
    assert_eq!(diags, "");
    assert_eq!(
        notes,
        [
            "`ws-{language}`: drivers ISO `virtio.iso` has every virtio folder for Windows 2k22 amd64 (WinPE: viostor, vioscsi, NetKVM; 6 first-logon drivers; guest agent)",
            "`ws-{language}`: languages from installer ISO `win.iso`: de-DE, en-US; from language packs: none",
        ]
    );
}

#[test]
fn a_missing_winpe_folder_fails_at_the_drivers_node() {
    let (diags, _) = report(&media("viostor/2k22/amd64", &["en-us", "de-de"]));
    insta::assert_snapshot!(diags);
}

#[test]
fn a_language_not_on_the_iso_fails_at_the_language_value() {
    let (diags, _) = report(&media("", &["en-us"]));
    insta::assert_snapshot!(diags);
}

#[test]
fn media_not_available_are_not_checked_and_a_note_says_so() {
    let (diags, notes) = report(&FakeMedia::new());
    assert_eq!(diags, "");
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(notes[0].contains("is not there yet"), "{notes:?}");
    let ws = load_at("p", &[("ws.kdl", PIPELINE.to_owned())]);
    assert!(
        check_windows_media(&ws.pipelines, &NoMedia)
            .diagnostics
            .is_empty()
    );
}

#[test]
fn an_unreadable_drivers_iso_is_an_error_not_a_silent_pass() {
    let m = media("", &["en-us", "de-de"]).unreadable("virtio.iso", "not an iso 9660 image");
    let (diags, _) = report(&m);
    assert!(diags.contains("unreadable-drivers-iso"), "{diags}");
    assert!(diags.contains("not an iso 9660 image"), "{diags}");
}

#[test]
fn an_invalid_image_is_located_at_its_setting() {
    let text = PIPELINE.replace(r#"version "server-2022""#, r#"version "11""#);
    let ws = load_at("p", &[("ws.kdl", text)]);
    let r = check_windows_media(&ws.pipelines, &NoMedia);
    let rendered = kiln_syntax::render_text(&r.diagnostics, &ws.sources, false);
    // Windows 11 needs UEFI Secure Boot and a TPM: located at the (default) firmware.
    assert!(rendered.contains("invalid-windows-image"), "{rendered}");
    assert!(rendered.contains("w11"), "{rendered}");
}

#[test]
fn windows_installs_fold_cloudbase_init_into_the_install_and_key_secrets_by_reference() {
    let ws = load_at("p", &[("ws.kdl", PIPELINE.to_owned())]);
    let plan = plan_ok(&ws);
    let kinds: Vec<String> = plan
        .steps()
        .filter(|s| s.owners[0].image == "ws-de-DE")
        .map(|s| s.kind().to_string())
        .collect();
    // No customize boot: cloudbase-init is installed and configured at first logon.
    assert!(
        !kinds.iter().any(|k| k.starts_with("customize")),
        "{kinds:?}"
    );
    let install = plan
        .steps()
        .find(|s| s.id.as_str() == "ws-de-DE/install")
        .expect("install step");
    let roles: Vec<&str> = install.inputs.iter().map(|i| i.role).collect();
    assert!(roles.contains(&"agent-installer"), "{roles:?}");
    assert_eq!(install.exec.secrets.len(), 1);
    assert_eq!(install.exec.secrets[0].role, "admin-password");
    let StepParams::Install(p) = &install.params else {
        panic!("not an install");
    };
    let w = p.windows.as_ref().expect("windows params");
    assert_eq!(w.language, "de-DE");
    assert_eq!(w.admin_password, "env:KILN_TEST_ADMIN_PASSWORD");
    let cb = w.cloudbase_init.as_ref().expect("cloudbase-init");
    assert_eq!(cb.commands, ["Write-Output 'de-DE'"]);
    let image = image_from_params(w).expect("valid image");
    assert_eq!(image.locale.ui.as_str(), "de-DE");
    assert_eq!(image.first_logon.len(), 1);
    assert!(image.first_logon[0].command.contains("-EncodedCommand"));
    // The MSI fetch is shared by both languages.
    assert_eq!(
        plan.steps()
            .filter(|s| s.kind() == kiln_plan::StepKind::FetchSource)
            .count(),
        2
    );
}

#[test]
fn windows_publish_steps_get_the_images_glance_properties_and_keep_the_pipelines_own() {
    let ws = common::load_corpus(&["windows.kdl"]);
    let plan = plan_ok(&ws);
    let publish = plan
        .steps()
        .find(|s| s.id.as_str() == "ws2022-ja-JP/publish")
        .expect("publish step");
    let StepParams::Publish(p) = &publish.params else {
        panic!("not a publish step");
    };
    let get = |k: &str| p.properties.get(k).map(String::as_str);
    assert_eq!(get("os_language"), Some("ja-JP"));
    assert_eq!(get("os_distro"), Some("windows"));
    assert_eq!(get("os_admin_user"), Some("Admin"));
    // The corpus pipeline is UEFI + TPM on q35.
    assert_eq!(get("hw_machine_type"), Some("q35"));
    assert_eq!(get("hw_tpm_version"), Some("2.0"));
    assert_eq!(get("hw_firmware_type"), Some("uefi"));
    // Written by the pipeline itself.
    assert_eq!(get("os_type"), Some("windows"));
}

#[test]
fn windows_only_steps_the_first_logon_can_run_and_no_boot_test() {
    let text = PIPELINE
        .replace(
            r#"run "Write-Output {language}""#,
            r#"run "Write-Output {language}"
        file "C:\\kiln.txt" content="x""#,
        )
        .replace(
            "    customize cloudbase-init {",
            "    boot-test timeout=\"10m\"\n    customize cloudbase-init {",
        )
        .replace(
            r#"        installer "cbi.msi" checksum="sha256:2222222222222222222222222222222222222222222222222222222222222222"
"#,
            "",
        );
    let ws = load_at("p", &[("ws.kdl", text)]);
    let r = check_windows_media(&ws.pipelines, &NoMedia);
    let codes: Vec<&str> = r.diagnostics.iter().map(|d| d.code).collect();
    assert_eq!(
        codes,
        [
            "windows-boot-test",
            "missing-cloudbase-init-installer",
            "unsupported-windows-customize-step"
        ],
        "{}",
        kiln_syntax::render_text(&r.diagnostics, &ws.sources, false)
    );
}
