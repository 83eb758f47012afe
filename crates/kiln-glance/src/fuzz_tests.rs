//! Fuzzing kiln-glance's readers of outside input: `clouds.yaml` / `secure.yaml`
//! ([`crate::config`]), Keystone's token responses and OpenStack error bodies
//! ([`crate::keystone`]) and Glance's image JSON ([`crate::glance`]). Seeds are the shapes the
//! tests and the local Keystone + Glance use, mutated byte-wise (see `tests/fuzz/mutate.rs`): no
//! panic, no hang, bounded memory. `KILN_FUZZ_CASES` sets the number of mutated inputs.

use std::time::Duration;

use serde_json::Value;

use crate::fuzz_mutate as mutate;

const CLOUDS: &[&str] = &[
    "
clouds:
  prod:
    auth:
      auth_url: https://keystone.example:5000
      username: alice
      project_name: images
      user_domain_name: Default
      project_domain_id: default
    region_name: RegionTwo
    interface: internal
    identity_api_version: 3
",
    "clouds:
  r:
    auth: {auth_url: 'http://k:5000', user_id: u1, password: p, project_id: p1}
    regions:
      - name: North
        values: {interface: admin}
    cacert: /etc/ssl/my-ca.pem
",
    "clouds:
  ac:
    auth_type: v3applicationcredential
    auth:
      auth_url: http://127.0.0.1:5000/v3
      application_credential_id: 0123abc
      application_credential_secret: s3cr3t
    verify: false
    region_name: RegionOne
",
    "clouds:\n  prod:\n    auth:\n      password: s3cret\n",
    "clouds: {a: {auth: {auth_url: 'http://x', username: u, password: p, domain_id: d, system_scope: all}}, b: [1, 2.5, ~, true, 'x']}\n",
];

/// Each cloud of a mutated `clouds.yaml`, as `load` reads it.
fn read_clouds(input: &[u8]) {
    let text = String::from_utf8_lossy(input);
    if let Ok(doc) = crate::yaml::yaml_to_json(&text)
        && let Some(clouds) = doc.get("clouds").and_then(Value::as_object)
    {
        for (name, entry) in clouds {
            let _ = crate::config::parse_cloud(name, entry);
        }
    }
}

#[test]
fn clouds_yaml_fuzz() {
    let seeds: Vec<Vec<u8>> = CLOUDS.iter().map(|s| s.as_bytes().to_vec()).collect();
    mutate::fuzz(
        "clouds.yaml",
        &seeds,
        20000,
        Duration::from_secs(2),
        512,
        read_clouds,
    );
}

const JSON: &[&str] = &[
    r#"{"token": {"issued_at": "2026-01-01T00:00:00.000000Z", "expires_at": "2026-01-01T01:00:00.000000Z",
        "project": {"id": "p1"}, "user": {"id": "u1"},
        "catalog": [
            {"type": "identity", "endpoints": [{"interface": "public", "region_id": "RegionOne", "url": "http://k/v3"}]},
            {"type": "image", "endpoints": [
                {"interface": "public", "region_id": "RegionOne", "url": "http://one:9292/"},
                {"interface": "internal", "region": "RegionTwo", "url": "http://two:9292"}]}]}}"#,
    r#"{"token": {"issued_at": "2026-01-01T00:00:00Z", "expires_at": "2025-01-01T00:00:00Z", "user": {"id": 5}}}"#,
    r#"{"error": {"code": 401, "message": "The request you have made requires authentication.", "title": "Unauthorized"}}"#,
    "<html><head><title>409 Conflict</title></head><body><h1>409 Conflict</h1>There was a conflict.<br /><br />\nImage storage media is full\n</body></html>",
    r#"{"id": "8a1c", "name": "debian-12", "status": "active", "checksum": "d41d8cd98f00b204e9800998ecf8427e",
        "os_hash_algo": "sha512", "os_hash_value": "cf83e1357eefb8bdf1542850d66d8007", "size": 1073741824,
        "disk_format": "qcow2", "container_format": "bare", "visibility": "private", "tags": ["kiln"],
        "min_disk": 20, "min_ram": 2048, "kiln_uploader": "kiln/0.1.0", "created_at": "2026-01-01T00:00:00Z"}"#,
    r#"{"images": [{"id": "a", "status": "queued"}, {"id": "b", "name": null}], "next": "/v2/images?marker=b"}"#,
];

/// A mutated response body through every JSON reader kiln-glance has.
fn read_json(input: &[u8]) {
    let _ = crate::keystone::parse_token_body(input);
    let _ = crate::keystone::error_text(&String::from_utf8_lossy(input));
    let _ = serde_json::from_slice::<crate::Image>(input);
}

#[test]
fn keystone_and_glance_json_fuzz() {
    let seeds: Vec<Vec<u8>> = JSON.iter().map(|s| s.as_bytes().to_vec()).collect();
    for s in &seeds[..1] {
        crate::keystone::parse_token_body(s).expect("the token seed parses");
    }
    mutate::fuzz(
        "keystone / glance json",
        &seeds,
        20000,
        Duration::from_secs(2),
        512,
        read_json,
    );
}

// A clouds.yaml of 100,000 nested `- ` (block sequences) overflowed the stack and aborted kiln;
// flow `[` and `{` were already refused by yaml-rust2's recursion limit. All three are refused.
#[test]
fn deeply_nested_clouds_yaml_is_an_error_not_a_stack_overflow() {
    let n = 100_000;
    for text in [
        format!("clouds: {}{}\n", "[".repeat(n), "]".repeat(n)),
        format!("clouds: {}x{}\n", "{a: ".repeat(n), "}".repeat(n)),
        format!("clouds:\n  {}x\n", "- ".repeat(n)),
    ] {
        let err = crate::yaml::yaml_to_json(&text).unwrap_err();
        assert!(
            err.contains("nested more than 64 levels") || err.contains("recursion limit exceeded"),
            "{err}"
        );
    }
}
