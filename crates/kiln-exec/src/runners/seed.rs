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
                if password.is_some() {
                    return Err(format!(
                        "user `{name}`: passwords are not supported by `kiln build` yet; use ssh keys"
                    ));
                }
                let mut u = json!({ "name": name, "lock_passwd": true });
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
    cx.log.line(format_args!("user-data:\n{user_data}"));
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

    use super::user_data;

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

    #[test]
    fn cloudbase_init_is_refused_with_a_reason() {
        let mut p = params(true);
        p.agent = kiln_syntax::model::Agent::CloudbaseInit;
        let e = user_data(&p, &|_| Ok(Vec::new())).unwrap_err();
        assert!(e.contains("`cloudbase-init` is not supported"), "{e}");
    }
}
