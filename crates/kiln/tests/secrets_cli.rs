//! `kiln plan` run as the real binary on a pipeline with a credentialed source URL and secret
//! references: text and JSON output show `***` and the references, never the token or the values;
//! the cache's secret key is created `0600`; rotating the secret changes the plan's keys.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

const TOKEN: &str = "s3cr3t-cli-t0ken";

fn pipeline() -> String {
    format!(
        r#"pipeline "img" {{
    source "https://user:{TOKEN}@deb.example.org/d.iso" checksum="sha256:c46bd60226f6ebdaf9c038e5059f84a869760d2984e926a69f23811234a41511"
    disk size="10GiB"
    install preseed file="preseed.cfg" {{
        root-password env="KILN_CLI_ROOT_PW"
    }}
    customize cloud-init {{
        user "ops" {{
            password file="ops.txt"
        }}
    }}
}}
"#
    )
}

/// `kiln plan <dir> [--format json]` with `KILN_CLI_ROOT_PW=root_pw`.
fn plan(dir: &Path, cache: &Path, root_pw: &str, json: bool) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
    cmd.arg("plan").arg(dir).args(["--color", "never"]);
    if json {
        cmd.args(["--format", "json"]);
    }
    let out = cmd
        .env("KILN_CACHE_DIR", cache)
        .env("KILN_QEMU_IMG", "/nonexistent/qemu-img")
        .env("KILN_CLI_ROOT_PW", root_pw)
        .env_remove("XDG_CACHE_HOME")
        .output()
        .expect("kiln runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn install_key(json: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(json).expect("plan JSON");
    v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "img/install")
        .map(|s| s["key"].as_str().unwrap().to_owned())
        .expect("install step")
}

// Tokens and passwords in a pipeline's inputs must never be printed by `kiln plan`.
#[test]
fn plan_shows_references_and_redacted_urls_never_tokens_or_values() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("img.kdl"), pipeline()).unwrap();
    std::fs::write(
        dir.join("preseed.cfg"),
        "d-i passwd/make-user boolean false\n",
    )
    .unwrap();
    std::fs::write(dir.join("ops.txt"), "ops-Value-7\n").unwrap();
    let cache = tmp.path().join("cache");

    let text = plan(&dir, &cache, "root-Value-9", false);
    assert_eq!(text.0, 0, "{}", text.2);
    let json = plan(&dir, &cache, "root-Value-9", true);
    assert_eq!(json.0, 0, "{}", json.2);
    for out in [&text, &json] {
        for secret in [TOKEN, "root-Value-9", "ops-Value-7"] {
            assert!(!out.1.contains(secret), "{secret} in stdout:\n{}", out.1);
            assert!(!out.2.contains(secret), "{secret} in stderr:\n{}", out.2);
        }
    }
    assert!(
        text.1.contains("https://***@deb.example.org/d.iso"),
        "{}",
        text.1
    );
    assert!(json.1.contains("env:KILN_CLI_ROOT_PW"), "{}", json.1);
    assert!(json.1.contains("file:ops.txt"), "{}", json.1);
    let mode = std::fs::metadata(cache.join("secret-key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // Same secret, same key; a rotated one, a new key.
    let same = plan(&dir, &cache, "root-Value-9", true);
    let rotated = plan(&dir, &cache, "root-Value-10", true);
    assert_eq!(install_key(&json.1), install_key(&same.1));
    assert_ne!(install_key(&json.1), install_key(&rotated.1));
}
