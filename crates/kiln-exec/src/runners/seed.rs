//! `customize-seed`: the pipeline's cloud-init steps as a NoCloud seed ISO (label `cidata`,
//! `user-data` + `meta-data`).
//!
//! Actions map to cloud-config modules: `file` → `write_files`, `package` → `packages`, `user` →
//! `users`, `run` → `runcmd` (in order). cloud-init runs modules in its own order (files and users
//! before packages before commands), not in the order of the pipeline across kinds. The seed ends
//! with a `power_state` whose condition runs once cloud-init has exited: when every module
//! succeeded it generalizes (`cloud-init clean --logs`, empty `/etc/machine-id`) if asked and prints
//! `KILN-CUSTOMIZE-OK` on ttyS0; otherwise `KILN-CUSTOMIZE-FAILED: <reason>`; then the guest powers
//! off. The customize runner takes those lines as its evidence.

use kiln_cache::Staging;
use kiln_plan::StepParams;
use kiln_plan::step::{CustomizeSeedParams, FileContentParams, SeedAction};
use serde_json::{Value, json};

use super::media::build_iso;
use super::{RunError, StepCx, fail};

/// The customize success line.
pub const CUSTOMIZE_OK: &str = r"^KILN-CUSTOMIZE-OK$";
/// The customize failure line.
pub const CUSTOMIZE_FAILED: &str = r"^KILN-CUSTOMIZE-FAILED: .*$";

/// The secret role of user `name`'s password (as kiln-plan names it).
#[must_use]
pub fn password_role(name: &str) -> String {
    format!("user:{name}:password")
}

/// What stands for the hash of secret `role` in the cached seed. Should it ever reach a guest,
/// it is no valid crypt hash: the account cannot log in with a password.
#[must_use]
pub fn placeholder(role: &str) -> String {
    kiln_plan::installer::secret_placeholder(role)
}

/// A SHA-512 crypt hash (`$6$…`) of `value` with a random 16-character salt.
///
/// # Errors
/// The OS's random source cannot be read.
pub fn crypt_sha512(value: &str) -> Result<String, String> {
    use sha_crypt::PasswordHasher as _;
    use std::io::Read as _;
    let mut salt = [0u8; 12];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut salt))
        .map_err(|e| format!("reading `/dev/urandom` for a salt: {e}"))?;
    sha_crypt::ShaCrypt::SHA512
        .hash_password_with_salt(value.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("hashing a password: {e}"))
}

/// `user_data` with the placeholder of each `(role, value)` replaced by a crypt hash of the
/// value. Every placeholder of `user_data` must be replaced.
///
/// # Errors
/// A placeholder has no secret, or hashing failed.
pub fn with_secret_hashes(
    user_data: &str,
    secrets: &[(&str, kiln_syntax::SecretValue)],
) -> Result<String, String> {
    let mut out = user_data.to_owned();
    for (role, value) in secrets {
        let hash = crypt_sha512(value.expose())?;
        out = out.replace(&placeholder(role), &hash);
    }
    if let Some(at) = out.find("!KILN-SECRET-HASH(") {
        let rest = &out[at..];
        let end = rest.find(')').map_or(rest.len(), |i| i + 1);
        return Err(format!(
            "the seed names a secret the step has none for: `{}`",
            &rest[..end]
        ));
    }
    Ok(out)
}

/// What the step log says of a seed: sizes and names, never contents (files, users' secrets and
/// commands may hold credentials).
#[must_use]
pub fn describe(p: &CustomizeSeedParams, user_data: &str) -> String {
    let mut files = Vec::new();
    let (mut packages, mut users, mut commands) = (0, Vec::new(), 0);
    for action in &p.actions {
        match action {
            SeedAction::File { path, .. } => files.push(path.as_str()),
            SeedAction::Packages { names } => packages += names.len(),
            SeedAction::User { name, password, .. } => users.push(if password.is_some() {
                format!(
                    "{name} (password from {})",
                    password.as_deref().unwrap_or_default()
                )
            } else {
                name.clone()
            }),
            SeedAction::Run { .. } => commands += 1,
            SeedAction::Plugin { .. } => {}
        }
    }
    format!(
        "user-data: {} bytes (contents not logged); files: [{}]; packages: {packages}; users: [{}]; commands: {commands}",
        user_data.len(),
        files.join(", "),
        users.join(", "),
    )
}

/// Builds the seed the customize step attaches when the pipeline's users have passwords: the
/// cached seed's `user-data` with its placeholders replaced by SHA-512 crypt hashes of the
/// secrets (resolved now), written `0600` into `scratch` and removed with the returned guard.
pub(crate) fn secret_seed(
    cx: &StepCx<'_>,
    cached: &std::path::Path,
    scratch: &std::path::Path,
) -> Result<super::windows_media::SecretMedia, RunError> {
    use super::windows_media::{RemoveDir, SecretMedia, write_files};
    let step = cx.step;
    let tree = kiln_unattend::IsoTree::open(cached)
        .or_else(|e| fail(format!("step `{}`: reading the seed: {e}", step.id)))?;
    let read = |name: &str| {
        tree.read_file(cached, name, MAX_SEED_FILE).or_else(|e| {
            fail(format!(
                "step `{}`: reading `{name}` from the seed: {e}",
                step.id
            ))
        })
    };
    let user_data = String::from_utf8(read("user-data")?).or_else(|_| {
        fail(format!(
            "step `{}`: the seed's user-data is not UTF-8",
            step.id
        ))
    })?;
    let meta = read("meta-data")?;
    let secrets = super::resolve_secrets(step)?;
    let user_data = with_secret_hashes(&user_data, &secrets)
        .or_else(|e| fail(format!("step `{}`: {e}", step.id)))?;
    let dir = scratch.join("seed-secret");
    let _ = std::fs::remove_dir_all(&dir);
    let _remove = RemoveDir(dir.clone());
    let files = [
        kiln_unattend::MediaFile {
            path: "user-data".into(),
            contents: user_data.into_bytes(),
            secret: true,
        },
        kiln_unattend::MediaFile {
            path: "meta-data".into(),
            contents: meta,
            secret: false,
        },
    ];
    write_files(&dir, &files).or_else(|e| fail(format!("step `{}`: {e}", step.id)))?;
    let guard = SecretMedia::create(scratch.join("seed-secret.iso"))?;
    build_iso(&cx.env.mkisofs, &dir, "cidata", guard.iso())?;
    cx.log.line(format_args!(
        "seed with password hashes (SHA-512 crypt) for {}; deleted after the step",
        super::secret_sources(step)
    ));
    Ok(guard)
}

/// Seed files larger than this are refused when the seed is read back.
const MAX_SEED_FILE: u64 = 64 << 20;

/// The `user-data` for a customize seed. `read` gives the bytes of `file` sources by role.
///
/// # Errors
/// An action the agent cannot do, or a file source that cannot be read.
pub fn user_data(
    p: &CustomizeSeedParams,
    read: &dyn Fn(&str) -> Result<Vec<u8>, String>,
) -> Result<String, String> {
    if p.agent != kiln_syntax::model::Agent::CloudInit {
        return Err(format!(
            "agent `{}` is not supported by `kiln build` yet (cloud-init only)",
            p.agent
        ));
    }
    let mut write_files = Vec::new();
    let mut packages: Vec<Value> = Vec::new();
    let mut users: Vec<Value> = Vec::new();
    let mut runcmd: Vec<Value> = Vec::new();
    for action in &p.actions {
        match action {
            SeedAction::File {
                path,
                content,
                mode,
                owner,
            } => {
                let mut f = json!({ "path": path });
                match content {
                    FileContentParams::Inline { text } => f["content"] = json!(text),
                    FileContentParams::Source { .. } => {
                        let bytes = read(&format!("file:{path}"))?;
                        f["content"] = json!(b64(&bytes));
                        f["encoding"] = json!("b64");
                    }
                }
                if let Some(m) = mode {
                    f["permissions"] = json!(m);
                }
                if let Some(o) = owner {
                    f["owner"] = json!(o);
                }
                write_files.push(f);
            }
            SeedAction::Packages { names } => packages.extend(names.iter().map(|n| json!(n))),
            SeedAction::Run { command } => runcmd.push(json!(["sh", "-c", command])),
            SeedAction::User {
                name,
                groups,
                ssh_keys,
                password,
                admin,
                shell,
            } => {
                let mut u = json!({ "name": name, "lock_passwd": password.is_none() });
                if password.is_some() {
                    // The cached seed holds a placeholder; the customize step puts the hash in.
                    u["hashed_passwd"] = json!(placeholder(&password_role(name)));
                }
                if !groups.is_empty() {
                    u["groups"] = json!(groups.join(", "));
                }
                if !ssh_keys.is_empty() {
                    u["ssh_authorized_keys"] = json!(ssh_keys);
                }
                if *admin {
                    u["sudo"] = json!("ALL=(ALL) NOPASSWD:ALL");
                }
                if let Some(s) = shell {
                    u["shell"] = json!(s);
                }
                users.push(u);
            }
            SeedAction::Plugin { name } => {
                return Err(format!(
                    "`plugin {name}` is for cloudbase-init, not cloud-init"
                ));
            }
        }
    }
    let clean = if p.generalize {
        "cloud-init clean --logs && truncate -s 0 /etc/machine-id && sync && "
    } else {
        "sync && "
    };
    let condition = format!(
        "if cloud-init status >/dev/null 2>&1; then {clean}echo KILN-CUSTOMIZE-OK > /dev/ttyS0 \
         || echo 'KILN-CUSTOMIZE-FAILED: generalizing failed' > /dev/ttyS0; \
         else cloud-init status --long > /dev/ttyS0 2>&1; \
         echo 'KILN-CUSTOMIZE-FAILED: cloud-init reported errors' > /dev/ttyS0; fi; true"
    );
    let mut doc = serde_json::Map::new();
    // The image keeps the host name its installer gave it; the cloud names each instance.
    doc.insert("preserve_hostname".into(), Value::Bool(true));
    if !write_files.is_empty() {
        doc.insert("write_files".into(), Value::Array(write_files));
    }
    if !packages.is_empty() {
        doc.insert("packages".into(), Value::Array(packages));
    }
    if !users.is_empty() {
        users.insert(0, json!("default"));
        doc.insert("users".into(), Value::Array(users));
    }
    if !runcmd.is_empty() {
        doc.insert("runcmd".into(), Value::Array(runcmd));
    }
    doc.insert(
        "power_state".into(),
        json!({ "mode": "poweroff", "delay": "now", "timeout": 120, "condition": condition }),
    );
    // JSON is YAML: no hand-written quoting.
    let body = serde_json::to_string_pretty(&Value::Object(doc)).expect("json");
    Ok(format!("#cloud-config\n{body}\n"))
}

pub(super) fn run(cx: &StepCx<'_>, staging: &mut Staging) -> Result<(), RunError> {
    let step = cx.step;
    let StepParams::CustomizeSeed(p) = &step.params else {
        return fail(format!("step `{}` is not customize-seed", step.id));
    };
    let read = |role: &str| -> Result<Vec<u8>, String> {
        let f = step
            .exec
            .local_files
            .iter()
            .find(|f| f.role == role)
            .ok_or_else(|| format!("no resolved path for `{role}`"))?;
        std::fs::read(&f.resolved).map_err(|e| format!("reading `{}`: {e}", f.resolved.display()))
    };
    let user_data = user_data(p, &read).or_else(|e| fail(format!("step `{}`: {e}", step.id)))?;
    let scratch = cx.scratch()?;
    let dir = scratch.join("seed");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .or_else(|e| fail(format!("creating `{}`: {e}", dir.display())))?;
    let meta = format!("instance-id: kiln-customize-{}\n", step.key.short());
    for (name, text) in [
        ("user-data", user_data.as_str()),
        ("meta-data", meta.as_str()),
    ] {
        std::fs::write(dir.join(name), text)
            .or_else(|e| fail(format!("step `{}`: writing `{name}`: {e}", step.id)))?;
    }
    cx.log.line(describe(p, &user_data));
    build_iso(&cx.env.mkisofs, &dir, "cidata", &staging.path("seed.iso"))?;
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

/// Standard base64 (RFC 4648, padded), as cloud-init's `encoding: b64` expects.
fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[cfg(test)]
#[test]
fn b64_encodes_like_rfc_4648() {
    assert_eq!(b64(b""), "");
    assert_eq!(b64(b"f"), "Zg==");
    assert_eq!(b64(b"fo"), "Zm8=");
    assert_eq!(b64(b"foo"), "Zm9v");
    assert_eq!(b64(b"foobar"), "Zm9vYmFy");
}

#[cfg(test)]
mod tests {
    use kiln_plan::step::{CustomizeSeedParams, FileContentParams, SeedAction};

    use kiln_syntax::SecretValue;

    use super::{describe, placeholder, user_data, with_secret_hashes};

    fn params(generalize: bool) -> CustomizeSeedParams {
        CustomizeSeedParams {
            agent: kiln_syntax::model::Agent::CloudInit,
            actions: vec![
                SeedAction::File {
                    path: "/etc/motd".into(),
                    content: FileContentParams::Inline {
                        text: "hi \"there\"\n".into(),
                    },
                    mode: Some("0644".into()),
                    owner: None,
                },
                SeedAction::File {
                    path: "/etc/blob".into(),
                    content: FileContentParams::Source {
                        path: "blob".into(),
                        content: "sha256:00".into(),
                    },
                    mode: None,
                    owner: None,
                },
                SeedAction::Run {
                    command: "echo 'a b' > /x".into(),
                },
            ],
            generalize,
        }
    }

    fn parse(ud: &str) -> serde_json::Value {
        let body = ud
            .strip_prefix("#cloud-config\n")
            .expect("cloud-config header");
        serde_json::from_str(body).expect("JSON, hence YAML")
    }

    // The seed is what cloud-init acts on: paths, contents, commands and the verdict must survive.
    #[test]
    fn user_data_carries_files_commands_and_the_verdict() {
        let ud = user_data(&params(true), &|role| {
            assert_eq!(role, "file:/etc/blob");
            Ok(b"bin".to_vec())
        })
        .unwrap();
        let v = parse(&ud);
        assert_eq!(v["write_files"][0]["path"], "/etc/motd");
        assert_eq!(v["write_files"][0]["content"], "hi \"there\"\n");
        assert_eq!(v["write_files"][0]["permissions"], "0644");
        assert_eq!(v["write_files"][1]["content"], "Ymlu");
        assert_eq!(v["write_files"][1]["encoding"], "b64");
        assert_eq!(v["runcmd"][0][2], "echo 'a b' > /x");
        assert_eq!(v["preserve_hostname"], true);
        let cond = v["power_state"]["condition"].as_str().unwrap();
        assert!(cond.contains("cloud-init clean --logs"));
        assert!(cond.contains("KILN-CUSTOMIZE-OK"));
        assert!(cond.contains("KILN-CUSTOMIZE-FAILED"));
    }

    #[test]
    fn without_generalize_the_image_is_not_cleaned() {
        let ud = user_data(&params(false), &|_| Ok(Vec::new())).unwrap();
        let cond = parse(&ud)["power_state"]["condition"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(!cond.contains("cloud-init clean"));
        assert!(cond.contains("KILN-CUSTOMIZE-OK"));
    }

    fn with_password() -> CustomizeSeedParams {
        let mut p = params(true);
        p.actions.push(SeedAction::User {
            name: "ops".into(),
            groups: vec![],
            ssh_keys: vec![],
            password: Some("env:OPS_PASSWORD".into()),
            admin: false,
            shell: None,
        });
        p
    }

    // The cached seed holds a placeholder, never a hash: cached media must not carry secrets.
    #[test]
    fn a_user_password_is_a_placeholder_in_the_cached_seed() {
        let ud = user_data(&with_password(), &|_| Ok(b"bin".to_vec())).unwrap();
        let v = parse(&ud);
        assert_eq!(v["users"][1]["name"], "ops");
        assert_eq!(v["users"][1]["lock_passwd"], false);
        assert_eq!(
            v["users"][1]["hashed_passwd"],
            placeholder("user:ops:password")
        );
    }

    // What the guest gets: a SHA-512 crypt hash of the secret, salted at random.
    #[test]
    fn the_secret_seed_holds_a_sha512_crypt_hash_of_the_password() {
        use sha_crypt::PasswordVerifier as _;
        let ud = user_data(&with_password(), &|_| Ok(Vec::new())).unwrap();
        let secret = [("user:ops:password", SecretValue::new("hunter2-Very-Secret"))];
        let a = with_secret_hashes(&ud, &secret).unwrap();
        let b = with_secret_hashes(&ud, &secret).unwrap();
        assert!(!a.contains("hunter2-Very-Secret"));
        let hash = parse(&a)["users"][1]["hashed_passwd"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(hash.starts_with("$6$"), "{hash}");
        let parsed = sha_crypt::PasswordHash::new(&hash).unwrap();
        sha_crypt::ShaCrypt::SHA512
            .verify_password(b"hunter2-Very-Secret", &parsed)
            .expect("the hash verifies");
        assert!(
            sha_crypt::ShaCrypt::SHA512
                .verify_password(b"wrong", &parsed)
                .is_err()
        );
        assert_ne!(a, b, "a fresh salt each time");
        let e = with_secret_hashes(&ud, &[]).unwrap_err();
        assert!(e.contains("user:ops:password"), "{e}");
    }

    // The step log used to hold the whole user-data: file contents, commands, keys.
    #[test]
    fn the_step_log_names_the_seed_parts_without_their_contents() {
        let p = with_password();
        let ud = user_data(&p, &|_| Ok(b"bin".to_vec())).unwrap();
        let line = describe(&p, &ud);
        assert!(
            line.contains("/etc/motd") && line.contains("ops (password from env:OPS_PASSWORD)")
        );
        for hidden in ["hi \"there\"", "echo 'a b'", "Ymlu", "KILN-SECRET"] {
            assert!(!line.contains(hidden), "{line}");
        }
    }

    #[test]
    fn cloudbase_init_is_refused_with_a_reason() {
        let mut p = params(true);
        p.agent = kiln_syntax::model::Agent::CloudbaseInit;
        let e = user_data(&p, &|_| Ok(Vec::new())).unwrap_err();
        assert!(e.contains("`cloudbase-init` is not supported"), "{e}");
    }
}
