//! Secrets and credentials in plans: a rotated secret changes the keys of what it shapes (through
//! a keyed digest, never the value), URL credentials never reach a key or the plan, and package
//! names cannot smuggle options into the guest's package manager.

mod common;

use common::{corpus, load_at, tools};
use kiln_plan::{FakeDigests, Plan, PlanOptions};
use kiln_syntax::Workspace;

const PASSWORD_PIPELINE: &str = r#"
pipeline "img" {
    source "https://deb.example.org/d.iso" checksum="sha256:c46bd60226f6ebdaf9c038e5059f84a869760d2984e926a69f23811234a41511"
    disk size="10GiB"
    install preseed file="preseed.cfg"
    customize cloud-init {
        user "ops" {
            password env="OPS_PASSWORD"
        }
    }
}
"#;

fn workspace(text: &str) -> Workspace {
    load_at(
        "p",
        &[
            ("img.kdl", text.to_owned()),
            ("preseed.cfg", corpus("valid/preseed.cfg")),
        ],
    )
}

fn plan(ws: &Workspace, digests: &FakeDigests) -> Plan {
    let options = PlanOptions {
        tools: tools(),
        ..PlanOptions::default()
    };
    match kiln_plan::plan(&ws.pipelines, &options, digests) {
        Ok(p) => p,
        Err(d) => panic!("{}", kiln_syntax::render_text(&d, &ws.sources, false)),
    }
}

fn digests(mac: Option<[u8; 32]>) -> FakeDigests {
    let d = FakeDigests::new().with("preseed.cfg", &corpus("valid/preseed.cfg"));
    match mac {
        Some(m) => d.with_secret_mac("env:OPS_PASSWORD", m),
        None => d,
    }
}

fn key(plan: &Plan, id: &str) -> String {
    plan.step(id).expect(id).key.to_hex()
}

// Rotating a password must rebuild the seed and the customized disk; an unchanged one must not.
#[test]
fn a_rotated_secret_changes_the_keys_of_the_steps_it_shapes() {
    let ws = workspace(PASSWORD_PIPELINE);
    let a = plan(&ws, &digests(Some([1; 32])));
    let a_again = plan(&ws, &digests(Some([1; 32])));
    let b = plan(&ws, &digests(Some([2; 32])));
    for id in ["img/customize-seed", "img/customize", "img/convert"] {
        assert_eq!(
            key(&a, id),
            key(&a_again, id),
            "{id}: same secret, same key"
        );
        assert_ne!(key(&a, id), key(&b, id), "{id}: rotated secret, new key");
    }
    for id in ["img/fetch-source", "img/install"] {
        assert_eq!(
            key(&a, id),
            key(&b, id),
            "{id} does not depend on the secret"
        );
    }
}

// The keyed digest is in the key's description, as an input; the value and the reference's
// plain hash never are, and the plan shows the reference only.
#[test]
fn plans_show_the_secret_reference_never_its_digest() {
    let ws = workspace(PASSWORD_PIPELINE);
    let p = plan(&ws, &digests(Some([0xab; 32])));
    let seed = p.step("img/customize-seed").unwrap();
    assert!(
        seed.description.contains(&format!(
            "\"secret:user:ops:password\":\"{}\"",
            "ab".repeat(32)
        )),
        "{}",
        seed.description
    );
    let json =
        serde_json::to_string(&kiln_plan::to_json(&p, &kiln_plan::NoCache, &ws.sources)).unwrap();
    assert!(json.contains("env:OPS_PASSWORD"));
    assert!(!json.contains(&"ab".repeat(32)), "{json}");
}

// Credentials in a source URL are no part of the content's identity and must not be printed.
#[test]
fn url_credentials_are_neither_keyed_nor_shown() {
    let with = PASSWORD_PIPELINE.replace(
        "https://deb.example.org/",
        "https://user:s3cr3t-t0ken@deb.example.org/",
    );
    let other = PASSWORD_PIPELINE.replace(
        "https://deb.example.org/",
        "https://user:another@deb.example.org/",
    );
    let ws = workspace(&with);
    let p = plan(&ws, &digests(None));
    let q = plan(&workspace(&other), &digests(None));
    let fetch = p.step("img/fetch-source").unwrap();
    assert_eq!(fetch.key, q.step("img/fetch-source").unwrap().key);
    assert!(!fetch.description.contains("s3cr3t-t0ken"));
    assert_eq!(
        fetch.exec.url.as_ref().map(|u| u.expose()),
        Some("https://user:s3cr3t-t0ken@deb.example.org/d.iso")
    );
    let text = kiln_plan::to_text(&p, &kiln_plan::NoCache, &ws.sources);
    let json =
        serde_json::to_string(&kiln_plan::to_json(&p, &kiln_plan::NoCache, &ws.sources)).unwrap();
    let debug = format!("{p:?}");
    for shown in [&text, &json, &debug] {
        assert!(!shown.contains("s3cr3t-t0ken"), "{shown}");
    }
    assert!(text.contains("https://***@deb.example.org/d.iso"), "{text}");
}

// A package named `-o…` would be an option to apt or dnf: refused where it is written.
#[test]
fn a_package_name_starting_with_a_dash_is_an_error_at_its_node() {
    let text = PASSWORD_PIPELINE.replace(
        "user \"ops\" {\n            password env=\"OPS_PASSWORD\"\n        }",
        "package \"nginx\" \"{extra}\"",
    );
    let text = text.replace(
        "pipeline \"img\" {",
        "pipeline \"img\" {\n    variables { extra \"-oAPT::Get::AllowUnauthenticated=1\" }",
    );
    let ws = workspace(&text);
    let options = PlanOptions {
        tools: tools(),
        ..PlanOptions::default()
    };
    let diags = kiln_plan::plan(&ws.pipelines, &options, &digests(None)).unwrap_err();
    let rendered = kiln_syntax::render_text(&diags, &ws.sources, false);
    assert!(rendered.contains("invalid-package-name"), "{rendered}");
    assert!(rendered.contains("starts with `-`"), "{rendered}");
    assert!(rendered.contains("img.kdl:"), "{rendered}");
}

// A preseed's root password is a secret reference: the plan shows the reference, the answer
// media's text gets only a placeholder, and a rotated password reinstalls.
#[test]
fn a_preseed_root_password_is_referenced_placeheld_and_keyed_by_its_digest() {
    let text = PASSWORD_PIPELINE.replace(
        "install preseed file=\"preseed.cfg\"",
        "install preseed file=\"preseed.cfg\" {\n        root-password env=\"ROOT_PW\"\n    }",
    );
    let ws = workspace(&text);
    let mac = |b: u8| digests(Some([1; 32])).with_secret_mac("env:ROOT_PW", [b; 32]);
    let a = plan(&ws, &mac(7));
    let b = plan(&ws, &mac(8));
    for id in [
        "img/answer-media",
        "img/install",
        "img/customize",
        "img/convert",
    ] {
        assert_ne!(
            key(&a, id),
            key(&b, id),
            "{id}: rotated root password, new key"
        );
    }
    assert_eq!(key(&a, "img/customize-seed"), key(&b, "img/customize-seed"));
    let install = a.step("img/install").unwrap();
    assert!(
        install
            .exec
            .secrets
            .iter()
            .any(|s| s.role == "root-password" && s.identity == "env:ROOT_PW")
    );
    let out = kiln_plan::installer::with_root_password(
        kiln_plan::installer::InstallerProfile::DebianInstaller,
        "d-i passwd/make-user boolean false\n",
    )
    .unwrap();
    assert!(
        out.ends_with(
            "d-i passwd/root-password-crypted password !KILN-SECRET-HASH(root-password)\n"
        ),
        "{out}"
    );
    let ks = kiln_plan::installer::with_root_password(
        kiln_plan::installer::InstallerProfile::Anaconda,
        "text\n%post\necho hi\n%end\n",
    )
    .unwrap();
    assert!(
        ks.contains("rootpw --iscrypted !KILN-SECRET-HASH(root-password)\ntext\n"),
        "{ks}"
    );
}

// The block of a preseed install takes secrets only; a typo is a located error.
#[test]
fn an_unknown_node_in_a_preseed_block_is_an_error() {
    let text = PASSWORD_PIPELINE.replace(
        "install preseed file=\"preseed.cfg\"",
        "install preseed file=\"preseed.cfg\" {\n        root-pasword env=\"ROOT_PW\"\n    }",
    );
    let mut fs = kiln_syntax::MemoryFs::new();
    fs.insert(std::path::Path::new("p/img.kdl").to_path_buf(), text);
    fs.insert(
        std::path::Path::new("p/preseed.cfg").to_path_buf(),
        corpus("valid/preseed.cfg"),
    );
    let ws = kiln_syntax::load(
        &[std::path::PathBuf::from("p")],
        &kiln_syntax::LoadOptions::default(),
        &fs,
    );
    let rendered = ws.render(false);
    assert!(!ws.is_ok());
    assert!(
        rendered.contains("root-pasword") && rendered.contains("root-password"),
        "{rendered}"
    );
}

// A value inserted into a `run` line used to become shell syntax in the guest: a `--var` of
// `x; curl … | sh` ran its own command as root. Values are now one `sh` word each.
#[test]
fn a_variable_in_a_run_line_is_one_shell_word() {
    let text = PASSWORD_PIPELINE.replace(
        "user \"ops\" {\n            password env=\"OPS_PASSWORD\"\n        }",
        "run \"echo hello {who} >/etc/motd\"",
    );
    let text = text.replace(
        "pipeline \"img\" {",
        "pipeline \"img\" {\n    variables { who \"it's me; touch /owned\" }",
    );
    let ws = workspace(&text);
    let p = plan(&ws, &digests(None));
    let seed = p.step("img/customize-seed").unwrap();
    let kiln_plan::step::StepParams::CustomizeSeed(params) = &seed.params else {
        panic!("not a customize seed");
    };
    let commands: Vec<&str> = params
        .actions
        .iter()
        .filter_map(|a| match a {
            kiln_plan::step::SeedAction::Run { command } => Some(command.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        commands,
        [r"echo hello 'it'\''s me; touch /owned' >/etc/motd"]
    );
}
