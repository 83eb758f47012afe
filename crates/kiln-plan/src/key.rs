//! Step keys: sha256 over one canonical, versioned description of a step.
//!
//! The description is the JSON object
//! `{"format":KEY_FORMAT_VERSION,"inputs":{role:key},"kind":..,"params":{..},"runner":N,"tools":{..}}`
//! written canonically (object keys sorted by their UTF-8 bytes, no whitespace, serde_json's string
//! escaping), then hashed. Nothing that is not in that object can change a key; see `docs/plan.md`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Version of the key description. Bump it whenever the description of any step changes shape or
/// meaning: every key changes with it, so old cache entries are never mistaken for new ones.
pub const KEY_FORMAT_VERSION: u32 = 1;

/// A step's content key: 32 bytes, shown as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StepKey([u8; 32]);

impl StepKey {
    /// The key of a canonical description (see [`canonical_json`]).
    pub fn of_description(description: &str) -> Self {
        StepKey(Sha256::digest(description.as_bytes()).into())
    }

    /// The raw bytes (for the cache's own key type).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        String::from_utf8(self.hex_bytes().to_vec()).expect("hex digits are ASCII")
    }

    /// 64 lowercase hex digits as ASCII bytes, without allocating.
    fn hex_bytes(&self) -> [u8; 64] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 64];
        for (i, b) in self.0.iter().enumerate() {
            out[2 * i] = DIGITS[usize::from(b >> 4)];
            out[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
        }
        out
    }

    /// The first 12 hex digits, for humans.
    pub fn short(&self) -> String {
        self.to_hex()[..12].to_string()
    }
}

impl fmt::Display for StepKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for StepKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StepKey({})", self.to_hex())
    }
}

/// A string that is not 64 lowercase hex digits.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a step key (64 lowercase hex digits)")]
pub struct BadStepKey(pub String);

impl FromStr for StepKey {
    type Err = BadStepKey;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadStepKey(s.to_string());
        if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| bad())?;
        Ok(StepKey(out))
    }
}

impl Serialize for StepKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for StepKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Versions of the external tools whose behaviour shapes a step's result. Passed in (the CLI probes
/// them; tests fix them) so planning stays free of I/O.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolVersions {
    /// `qemu-img --version`'s version (e.g. `8.2.2`); `None` when not installed. Enters the keys of
    /// steps whose output bytes qemu-img writes (create-disk, convert).
    pub qemu_img: Option<String>,
}

impl ToolVersions {
    /// From the first line of `qemu-img --version` (`qemu-img version 8.2.2 (Debian 1:8.2.2+ds-0)`):
    /// everything after `qemu-img version `, so a distribution's rebuild counts as another version.
    /// The CLI and the executor both use this, so `kiln plan` and `kiln build` compute equal keys.
    pub fn from_qemu_img_version_line(line: &str) -> Self {
        ToolVersions {
            qemu_img: line
                .trim()
                .strip_prefix("qemu-img version ")
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty()),
        }
    }

    /// Fixed versions for tests and reference keys.
    pub fn fixed(qemu_img: &str) -> Self {
        ToolVersions {
            qemu_img: Some(qemu_img.to_string()),
        }
    }
}

/// Writes `value` as canonical JSON: object keys sorted by their bytes, no insignificant whitespace.
/// Independent of whether serde_json preserves insertion order.
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::new();
    write_canonical(value, &mut out);
    into_string(out)
}

/// Only serde_json's writer and ASCII punctuation fill the buffer, so it is UTF-8.
fn into_string(out: Vec<u8>) -> String {
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// One JSON string or scalar, written by serde_json (its escaping and number format).
fn write_json<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    serde_json::to_writer(out, value).expect("writing JSON to memory cannot fail");
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let in_order =
                |a: &(&String, &Value), b: &(&String, &Value)| a.0.as_bytes() <= b.0.as_bytes();
            // serde_json's default map is a BTreeMap, already in byte order: skip the sort then.
            if map.iter().is_sorted_by(|a, b| in_order(a, b)) {
                write_object(map.iter(), out);
            } else {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                write_object(entries.into_iter(), out);
            }
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        scalar => write_json(scalar, out),
    }
}

/// Writes `entries`, already in key order, as a canonical JSON object.
fn write_object<'a>(entries: impl Iterator<Item = (&'a String, &'a Value)>, out: &mut Vec<u8>) {
    out.push(b'{');
    for (i, (k, v)) in entries.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json(k.as_str(), out);
        out.push(b':');
        write_canonical(v, out);
    }
    out.push(b'}');
}

/// Writes a map whose keys are already in byte order (a `BTreeMap<&str, _>`) as a JSON object.
fn write_sorted_strings<'a>(entries: impl Iterator<Item = (&'a str, &'a str)>, out: &mut Vec<u8>) {
    out.push(b'{');
    for (i, (k, v)) in entries.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json(k, out);
        out.push(b':');
        write_json(v, out);
    }
    out.push(b'}');
}

/// The canonical description of one step, as hashed into its key.
///
/// Written directly rather than through a `serde_json::Map`: the top-level keys below are listed in
/// byte order, and `str`'s `Ord` is byte order, so the text equals `canonical_json` of that object.
pub fn describe(
    kind: &str,
    runner: u32,
    params: &Value,
    inputs: &BTreeMap<&str, StepKey>,
    tools: &BTreeMap<&str, String>,
) -> String {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"{\"format\":");
    write_json(&KEY_FORMAT_VERSION, &mut out);
    out.extend_from_slice(b",\"inputs\":");
    let hexes: Vec<(&str, [u8; 64])> = inputs.iter().map(|(r, k)| (*r, k.hex_bytes())).collect();
    write_sorted_strings(
        hexes
            .iter()
            .map(|(r, h)| (*r, std::str::from_utf8(h).expect("hex digits are ASCII"))),
        &mut out,
    );
    out.extend_from_slice(b",\"kind\":");
    write_json(kind, &mut out);
    out.extend_from_slice(b",\"params\":");
    write_canonical(params, &mut out);
    out.extend_from_slice(b",\"runner\":");
    write_json(&runner, &mut out);
    out.extend_from_slice(b",\"tools\":");
    write_sorted_strings(tools.iter().map(|(n, v)| (*n, v.as_str())), &mut out);
    out.push(b'}');
    into_string(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":{"y":[2,{"d":1,"c":"x"}],"x":null}}"#)
            .expect("valid json");
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"x":null,"y":[2,{"c":"x","d":1}]},"b":1}"#
        );
    }

    #[test]
    fn describe_equals_canonical_json_of_the_description_object() {
        // `describe` writes the object by hand for speed; it must stay byte-equal to the
        // canonical form of the documented object, or every key would silently change.
        let params: Value =
            serde_json::from_str(r#"{"z":"\u00e9\"\n","a":[1,2.5,{"y":null,"b":true}]}"#)
                .expect("valid json");
        let inputs = BTreeMap::from([
            ("disk", StepKey::of_description("a")),
            ("base", StepKey::of_description("b")),
        ]);
        let tools = BTreeMap::from([("qemu-img", "8.2.2 \"x\"".to_string())]);
        let doc = serde_json::json!({
            "format": KEY_FORMAT_VERSION,
            "inputs": {
                "disk": StepKey::of_description("a").to_hex(),
                "base": StepKey::of_description("b").to_hex(),
            },
            "kind": "convert",
            "params": params,
            "runner": 3,
            "tools": {"qemu-img": "8.2.2 \"x\""},
        });
        assert_eq!(
            describe("convert", 3, &params, &inputs, &tools),
            canonical_json(&doc)
        );
        assert_eq!(
            describe(
                "fetch",
                1,
                &Value::Object(Default::default()),
                &BTreeMap::new(),
                &BTreeMap::new()
            ),
            r#"{"format":1,"inputs":{},"kind":"fetch","params":{},"runner":1,"tools":{}}"#
        );
    }

    #[test]
    fn qemu_img_version_lines_parse_to_the_version_and_build() {
        let v = ToolVersions::from_qemu_img_version_line(
            "qemu-img version 8.2.2 (Debian 1:8.2.2+ds-0ubuntu1.4)\n",
        );
        assert_eq!(
            v.qemu_img.as_deref(),
            Some("8.2.2 (Debian 1:8.2.2+ds-0ubuntu1.4)")
        );
        assert_eq!(
            ToolVersions::from_qemu_img_version_line("bash: not found").qemu_img,
            None
        );
    }

    #[test]
    fn keys_round_trip_through_hex() {
        let key = StepKey::of_description("x");
        let hex = key.to_hex();
        assert_eq!(hex.len(), 64);
        assert_eq!(hex.parse::<StepKey>(), Ok(key));
        assert!("ABC".parse::<StepKey>().is_err());
        assert!(hex.to_uppercase().parse::<StepKey>().is_err());
    }

    #[test]
    fn sha256_of_the_description_is_the_key() {
        // Known sha256 of "abc": guards against a silent change of the hash function.
        assert_eq!(
            StepKey::of_description("abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
