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

    /// A key from raw bytes (a secret's keyed digest taking an input's place).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        StepKey(bytes)
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

/// The canonical description of one step, as hashed into its key.
///
/// Written directly by [`CanonicalWriter`] rather than through a `serde_json::Value`; the text equals
/// `canonical_json` of the documented object (a test checks this).
pub fn describe<P: Serialize + ?Sized>(
    kind: &str,
    runner: u32,
    params: &P,
    inputs: &BTreeMap<&str, StepKey>,
    tools: &BTreeMap<&str, String>,
) -> String {
    let mut writer = CanonicalWriter::default();
    writer.describe(
        kind,
        runner,
        params,
        inputs.iter().map(|(r, k)| (*r, *k)),
        tools.iter().map(|(n, v)| (*n, v.as_str())),
    );
    into_string(writer.out)
}

/// Writes canonical JSON of any `Serialize` value straight into a byte buffer: no
/// `serde_json::Value` tree, no per-object allocation. Object members (struct fields, map entries,
/// internally tagged enums' `type`) are buffered in place and emitted sorted by their key's bytes;
/// strings use serde_json's escaping and integers its decimal form, so the text is byte-equal to
/// [`canonical_json`] of `serde_json::to_value` of the same value (a test checks this).
///
/// Reuse one writer for many descriptions: its buffers keep their capacity.
#[derive(Debug, Default)]
pub struct CanonicalWriter {
    /// The text written so far.
    out: Vec<u8>,
    /// An object's members while they are reordered.
    scratch: Vec<u8>,
    /// Open objects' members: key and the byte range of the value in `out`.
    members: Vec<Member>,
}

#[derive(Debug)]
struct Member {
    key: Key,
    start: usize,
    end: usize,
}

#[derive(Debug)]
enum Key {
    Static(&'static str),
    Owned(String),
}

impl Key {
    fn as_str(&self) -> &str {
        match self {
            Key::Static(s) => s,
            Key::Owned(s) => s,
        }
    }
}

impl CanonicalWriter {
    /// Clears the buffer for the next description.
    pub fn clear(&mut self) {
        self.out.clear();
    }

    /// The text written since the last [`Self::clear`] (always UTF-8).
    pub fn as_bytes(&self) -> &[u8] {
        &self.out
    }

    /// The text written since the last [`Self::clear`].
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.out).expect("the canonical writer writes UTF-8")
    }

    /// Appends canonical JSON of `value`.
    pub fn write<T: Serialize + ?Sized>(&mut self, value: &T) {
        value
            .serialize(&mut *self)
            .expect("step descriptions are JSON-serializable");
    }

    /// Appends the step description object (see [`describe`]); `inputs` and `tools` may come in any
    /// order.
    pub fn describe<'a, P: Serialize + ?Sized>(
        &mut self,
        kind: &str,
        runner: u32,
        params: &P,
        inputs: impl IntoIterator<Item = (&'a str, StepKey)>,
        tools: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) {
        let mut inputs: Vec<(&str, StepKey)> = inputs.into_iter().collect();
        inputs.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let mut tools: Vec<(&str, &str)> = tools.into_iter().collect();
        tools.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let out = &mut self.out;
        out.extend_from_slice(b"{\"format\":");
        write_u64(u64::from(KEY_FORMAT_VERSION), out);
        out.extend_from_slice(b",\"inputs\":{");
        for (i, (role, key)) in inputs.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(role, out);
            out.extend_from_slice(b":\"");
            out.extend_from_slice(&key.hex_bytes());
            out.push(b'"');
        }
        out.extend_from_slice(b"},\"kind\":");
        write_str(kind, out);
        out.extend_from_slice(b",\"params\":");
        self.write(params);
        let out = &mut self.out;
        out.extend_from_slice(b",\"runner\":");
        write_u64(u64::from(runner), out);
        out.extend_from_slice(b",\"tools\":{");
        for (i, (name, version)) in tools.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(name, out);
            out.push(b':');
            write_str(version, out);
        }
        out.extend_from_slice(b"}}");
    }

    /// Starts an object: its members are collected until [`Self::end_object`].
    fn begin_object(&mut self) -> ObjectStart {
        ObjectStart {
            bytes: self.out.len(),
            members: self.members.len(),
        }
    }

    /// Writes the members collected since `start` as one object, sorted by key bytes.
    fn end_object(&mut self, start: ObjectStart) {
        let members = &mut self.members[start.members..];
        members.sort_unstable_by(|a, b| a.key.as_str().as_bytes().cmp(b.key.as_str().as_bytes()));
        debug_assert!(
            members
                .windows(2)
                .all(|w| w[0].key.as_str() != w[1].key.as_str()),
            "an object with a repeated key"
        );
        self.scratch.clear();
        self.scratch.extend_from_slice(&self.out[start.bytes..]);
        self.out.truncate(start.bytes);
        self.out.push(b'{');
        for (i, m) in members.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            write_str(m.key.as_str(), &mut self.out);
            self.out.push(b':');
            let (a, b) = (m.start - start.bytes, m.end - start.bytes);
            self.out.extend_from_slice(&self.scratch[a..b]);
        }
        self.out.push(b'}');
        self.members.truncate(start.members);
    }

    /// Writes one member's value and records it under `key`.
    fn member<T: Serialize + ?Sized>(&mut self, key: Key, value: &T) -> Result<(), CanonicalError> {
        let start = self.out.len();
        value.serialize(&mut *self)?;
        let end = self.out.len();
        self.members.push(Member { key, start, end });
        Ok(())
    }
}

#[derive(Clone, Copy)]
struct ObjectStart {
    bytes: usize,
    members: usize,
}

/// Writes a string with serde_json's escaping: `"` and `\\`, and control characters below U+0020
/// (`\\b \\t \\n \\f \\r` short, the rest as `\\u00xx`); everything else as is.
fn write_str(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(s.len() + 2);
    out.push(b'"');
    let bytes = s.as_bytes();
    // Most strings need no escape: find the first byte that does, a word at a time.
    let mut plain = 0;
    let first = first_escape(bytes);
    for (i, &b) in bytes.iter().enumerate().skip(first) {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x09 => b"\\t",
            0x0a => b"\\n",
            0x0c => b"\\f",
            0x0d => b"\\r",
            0x00..=0x1f => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ],
            _ => continue,
        };
        out.extend_from_slice(&bytes[plain..i]);
        out.extend_from_slice(escape);
        plain = i + 1;
    }
    out.extend_from_slice(&bytes[plain..]);
    out.push(b'"');
}

/// The index of the first byte JSON escapes (`"`, `\\`, below U+0020), or the length.
fn first_escape(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A byte of `x` below `n` (n <= 0x80) sets its high bit in `(x - n*ONES) & !x & HIGH`; a
    // borrow can flag bytes after a real hit too, which only ends the word scan early.
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH;
    let mut i = 0;
    while let Some(word) = bytes.get(i..i + 8) {
        let w = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        if below(w ^ (ONES * u64::from(b'"')), 1)
            | below(w ^ (ONES * u64::from(b'\\')), 1)
            | below(w, 0x20)
            != 0
        {
            break;
        }
        i += 8;
    }
    while i < bytes.len() && !matches!(bytes[i], b'"' | b'\\' | 0x00..=0x1f) {
        i += 1;
    }
    i
}

fn write_u64(mut n: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

fn write_i64(n: i64, out: &mut Vec<u8>) {
    if n < 0 {
        out.push(b'-');
    }
    write_u64(n.unsigned_abs(), out);
}

/// A value JSON cannot hold (a map key that is not a string or number).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CanonicalError(String);

impl serde::ser::Error for CanonicalError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        CanonicalError(msg.to_string())
    }
}

/// Sequences and objects in progress.
pub struct Compound<'w> {
    writer: &'w mut CanonicalWriter,
    kind: CompoundKind,
}

enum CompoundKind {
    /// An array; `first` until the first element is written.
    Array { first: bool },
    /// An object; `close_outer` when it is the value of `{"variant": ...}`.
    Object {
        start: ObjectStart,
        pending_key: Option<String>,
        close_outer: bool,
    },
    /// `{"variant":[...]}`.
    VariantArray { first: bool },
}

impl<'w> Compound<'w> {
    fn array(writer: &'w mut CanonicalWriter, variant: Option<&str>) -> Self {
        if let Some(v) = variant {
            writer.out.push(b'{');
            write_str(v, &mut writer.out);
            writer.out.push(b':');
        }
        writer.out.push(b'[');
        let kind = if variant.is_some() {
            CompoundKind::VariantArray { first: true }
        } else {
            CompoundKind::Array { first: true }
        };
        Compound { writer, kind }
    }

    fn object(writer: &'w mut CanonicalWriter, variant: Option<&str>) -> Self {
        if let Some(v) = variant {
            writer.out.push(b'{');
            write_str(v, &mut writer.out);
            writer.out.push(b':');
        }
        let start = writer.begin_object();
        Compound {
            writer,
            kind: CompoundKind::Object {
                start,
                pending_key: None,
                close_outer: variant.is_some(),
            },
        }
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CanonicalError> {
        match &mut self.kind {
            CompoundKind::Array { first } | CompoundKind::VariantArray { first } => {
                if !std::mem::replace(first, false) {
                    self.writer.out.push(b',');
                }
                value.serialize(&mut *self.writer)
            }
            CompoundKind::Object { .. } => unreachable!("elements go into arrays"),
        }
    }

    fn field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), CanonicalError> {
        self.writer.member(Key::Static(key), value)
    }

    fn finish(self) -> Result<(), CanonicalError> {
        match self.kind {
            CompoundKind::Array { .. } => self.writer.out.push(b']'),
            CompoundKind::VariantArray { .. } => self.writer.out.extend_from_slice(b"]}"),
            CompoundKind::Object {
                start, close_outer, ..
            } => {
                self.writer.end_object(start);
                if close_outer {
                    self.writer.out.push(b'}');
                }
            }
        }
        Ok(())
    }
}

impl serde::ser::SerializeSeq for Compound<'_> {
    type Ok = ();
    type Error = CanonicalError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Self::Error> {
        self.element(value)
    }
    fn end(self) -> Result<(), Self::Error> {
        self.finish()
    }
}

impl serde::ser::SerializeTuple for Compound<'_> {
    type Ok = ();
    type Error = CanonicalError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Self::Error> {
        self.element(value)
    }
    fn end(self) -> Result<(), Self::Error> {
        self.finish()
    }
}

impl serde::ser::SerializeTupleStruct for Compound<'_> {
    type Ok = ();
    type Error = CanonicalError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Self::Error> {
        self.element(value)
    }
    fn end(self) -> Result<(), Self::Error> {
        self.finish()
    }
}

impl serde::ser::SerializeTupleVariant for Compound<'_> {
    type Ok = ();
    type Error = CanonicalError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Self::Error> {
        self.element(value)
    }
    fn end(self) -> Result<(), Self::Error> {
        self.finish()
    }
}

impl serde::ser::SerializeStruct for Compound<'_> {
    type Ok = ();
    type Error = CanonicalError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Self::Error> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), Self::Error> {
        self.finish()
    }
}

impl serde::ser::SerializeStructVariant for Compound<'_> {
    type Ok = ();
    type Error = CanonicalError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Self::Error> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), Self::Error> {
        self.finish()
    }
}

impl serde::ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = CanonicalError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Self::Error> {
        let CompoundKind::Object { pending_key, .. } = &mut self.kind else {
            unreachable!("keys go into objects");
        };
        *pending_key = Some(key.serialize(MapKey)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Self::Error> {
        let CompoundKind::Object { pending_key, .. } = &mut self.kind else {
            unreachable!("values go into objects");
        };
        let key = pending_key.take().expect("serde calls serialize_key first");
        self.writer.member(Key::Owned(key), value)
    }
    fn end(self) -> Result<(), Self::Error> {
        self.finish()
    }
}

impl<'w> serde::Serializer for &'w mut CanonicalWriter {
    type Ok = ();
    type Error = CanonicalError;
    type SerializeSeq = Compound<'w>;
    type SerializeTuple = Compound<'w>;
    type SerializeTupleStruct = Compound<'w>;
    type SerializeTupleVariant = Compound<'w>;
    type SerializeMap = Compound<'w>;
    type SerializeStruct = Compound<'w>;
    type SerializeStructVariant = Compound<'w>;

    fn serialize_bool(self, v: bool) -> Result<(), CanonicalError> {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), CanonicalError> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i16(self, v: i16) -> Result<(), CanonicalError> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i32(self, v: i32) -> Result<(), CanonicalError> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i64(self, v: i64) -> Result<(), CanonicalError> {
        write_i64(v, &mut self.out);
        Ok(())
    }
    fn serialize_i128(self, v: i128) -> Result<(), CanonicalError> {
        self.out.extend_from_slice(v.to_string().as_bytes());
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<(), CanonicalError> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u16(self, v: u16) -> Result<(), CanonicalError> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u32(self, v: u32) -> Result<(), CanonicalError> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u64(self, v: u64) -> Result<(), CanonicalError> {
        write_u64(v, &mut self.out);
        Ok(())
    }
    fn serialize_u128(self, v: u128) -> Result<(), CanonicalError> {
        self.out.extend_from_slice(v.to_string().as_bytes());
        Ok(())
    }
    fn serialize_f32(self, v: f32) -> Result<(), CanonicalError> {
        // Through a `Value`, an f32 is widened to f64 first; do the same.
        self.serialize_f64(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<(), CanonicalError> {
        write_json(&v, &mut self.out);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), CanonicalError> {
        write_str(v.encode_utf8(&mut [0; 4]), &mut self.out);
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), CanonicalError> {
        write_str(v, &mut self.out);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), CanonicalError> {
        use serde::ser::SerializeSeq as _;
        let mut seq = self.serialize_seq(Some(v.len()))?;
        for b in v {
            seq.serialize_element(b)?;
        }
        seq.end()
    }
    fn serialize_none(self) -> Result<(), CanonicalError> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), CanonicalError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), CanonicalError> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), CanonicalError> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), CanonicalError> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), CanonicalError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), CanonicalError> {
        self.out.push(b'{');
        write_str(variant, &mut self.out);
        self.out.push(b':');
        value.serialize(&mut *self)?;
        self.out.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'w>, CanonicalError> {
        Ok(Compound::array(self, None))
    }
    fn serialize_tuple(self, _len: usize) -> Result<Compound<'w>, CanonicalError> {
        Ok(Compound::array(self, None))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Compound<'w>, CanonicalError> {
        Ok(Compound::array(self, None))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'w>, CanonicalError> {
        Ok(Compound::array(self, Some(variant)))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'w>, CanonicalError> {
        Ok(Compound::object(self, None))
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Compound<'w>, CanonicalError> {
        Ok(Compound::object(self, None))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'w>, CanonicalError> {
        Ok(Compound::object(self, Some(variant)))
    }
}

/// Map keys as serde_json's `Value` has them: strings, and numbers, chars and bools as text.
struct MapKey;

impl serde::Serializer for MapKey {
    type Ok = String;
    type Error = CanonicalError;
    type SerializeSeq = serde::ser::Impossible<String, CanonicalError>;
    type SerializeTuple = serde::ser::Impossible<String, CanonicalError>;
    type SerializeTupleStruct = serde::ser::Impossible<String, CanonicalError>;
    type SerializeTupleVariant = serde::ser::Impossible<String, CanonicalError>;
    type SerializeMap = serde::ser::Impossible<String, CanonicalError>;
    type SerializeStruct = serde::ser::Impossible<String, CanonicalError>;
    type SerializeStructVariant = serde::ser::Impossible<String, CanonicalError>;

    fn serialize_bool(self, v: bool) -> Result<String, CanonicalError> {
        Ok(v.to_string())
    }
    fn serialize_i8(self, v: i8) -> Result<String, CanonicalError> {
        Ok(v.to_string())
    }
    fn serialize_i16(self, v: i16) -> Result<String, CanonicalError> {
        Ok(v.to_string())
    }
    fn serialize_i32(self, v: i32) -> Result<String, CanonicalError> {
        Ok(v.to_string())
    }
    fn serialize_i64(self, v: i64) -> Result<String, CanonicalError> {
        Ok(v.to_string())
    }
    fn serialize_i128(self, v: i128) -> Result<String, CanonicalError> {
        Ok(v.to_string())
    }
    fn serialize_u8(self, v: u8) -> Result<String, CanonicalError> {
        Ok(v.to_string())
    }
    fn serialize_u16(self, v: u16) -> Result<String, CanonicalError> {
        Ok(v.to_string())
    }
    fn serialize_u32(self, v: u32) -> Result<String, CanonicalError> {
        Ok(v.to_string())
    }
    fn serialize_u64(self, v: u64) -> Result<String, CanonicalError> {
        Ok(v.to_string())
    }
    fn serialize_u128(self, v: u128) -> Result<String, CanonicalError> {
        Ok(v.to_string())
    }
    fn serialize_f32(self, _v: f32) -> Result<String, CanonicalError> {
        Err(key_must_be_a_string())
    }
    fn serialize_f64(self, _v: f64) -> Result<String, CanonicalError> {
        Err(key_must_be_a_string())
    }
    fn serialize_char(self, v: char) -> Result<String, CanonicalError> {
        Ok(v.to_string())
    }
    fn serialize_str(self, v: &str) -> Result<String, CanonicalError> {
        Ok(v.to_string())
    }
    fn serialize_bytes(self, _v: &[u8]) -> Result<String, CanonicalError> {
        Err(key_must_be_a_string())
    }
    fn serialize_none(self) -> Result<String, CanonicalError> {
        Err(key_must_be_a_string())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _v: &T) -> Result<String, CanonicalError> {
        Err(key_must_be_a_string())
    }
    fn serialize_unit(self) -> Result<String, CanonicalError> {
        Err(key_must_be_a_string())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<String, CanonicalError> {
        Err(key_must_be_a_string())
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<String, CanonicalError> {
        Ok(variant.to_string())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<String, CanonicalError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<String, CanonicalError> {
        Err(key_must_be_a_string())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, CanonicalError> {
        Err(key_must_be_a_string())
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, CanonicalError> {
        Err(key_must_be_a_string())
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, CanonicalError> {
        Err(key_must_be_a_string())
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, CanonicalError> {
        Err(key_must_be_a_string())
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, CanonicalError> {
        Err(key_must_be_a_string())
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, CanonicalError> {
        Err(key_must_be_a_string())
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, CanonicalError> {
        Err(key_must_be_a_string())
    }
}

fn key_must_be_a_string() -> CanonicalError {
    CanonicalError("a JSON object key must be a string".into())
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

    /// The writer's text for `value` equals `canonical_json` of its `serde_json::Value`.
    fn same_as_value_path<T: Serialize>(value: &T) {
        let mut w = CanonicalWriter::default();
        w.write(value);
        let via_value = canonical_json(&serde_json::to_value(value).expect("serializable"));
        assert_eq!(w.as_str(), via_value);
    }

    #[test]
    fn canonical_writer_equals_the_value_path_for_every_step_kind() {
        use crate::step::*;
        let machine = MachineParams {
            firmware: kiln_syntax::model::Firmware::Uefi,
            secure_boot: true,
            machine_type: kiln_syntax::model::MachineType::Q35,
            tpm: false,
            disk_bus: kiln_syntax::model::DiskBus::Virtio,
            nic: kiln_syntax::model::NicModel::E1000,
        };
        let local = OriginParams::Local {
            path: "isos/a b.iso".into(),
            content: "sha256:00ff".into(),
        };
        let all = vec![
            StepParams::FetchSource(FetchParams {
                origin: local.clone(),
                checksum: None,
            }),
            StepParams::FetchSource(FetchParams {
                origin: OriginParams::Url {
                    url: "https://x/\u{e9}\"\\\n".into(),
                },
                checksum: Some("sha256:ab".into()),
            }),
            StepParams::FetchDrivers(FetchDriversParams {
                origin: OriginParams::Glance {
                    image: "virtio".into(),
                    by: "name",
                },
                checksum: None,
                driver_kind: "virtio-win",
            }),
            StepParams::CreateDisk(CreateDiskParams {
                size_bytes: u64::MAX,
                format: kiln_syntax::model::ImageFormat::Qcow2,
            }),
            StepParams::AnswerMedia(AnswerMediaParams {
                method: kiln_syntax::model::InstallMethod::Kickstart,
                profile: crate::installer::InstallerProfile::Anaconda,
                answer: Some(AnswerParams::Inline {
                    text: "a\tb\u{1}\u{1f}\u{7f}\u{2028}".into(),
                }),
                windows: None,
                root_password: None,
            }),
            StepParams::AnswerMedia(AnswerMediaParams {
                method: kiln_syntax::model::InstallMethod::Preseed,
                profile: crate::installer::InstallerProfile::DebianInstaller,
                answer: Some(AnswerParams::File {
                    path: "p.cfg".into(),
                    content: "sha256:1".into(),
                }),
                windows: None,
                root_password: None,
            }),
        ];
        for p in &all {
            same_as_value_path(p);
        }
        let seed = StepParams::CustomizeSeed(CustomizeSeedParams {
            agent: kiln_syntax::model::Agent::CloudInit,
            actions: vec![
                SeedAction::Packages {
                    names: vec!["curl".into(), "z".into()],
                },
                SeedAction::File {
                    path: "/etc/motd".into(),
                    content: FileContentParams::Inline {
                        text: "hi\n".into(),
                    },
                    mode: Some("0644".into()),
                    owner: None,
                },
                SeedAction::File {
                    path: "/x".into(),
                    content: FileContentParams::Source {
                        path: "x".into(),
                        content: "sha256:2".into(),
                    },
                    mode: None,
                    owner: Some("root:root".into()),
                },
                SeedAction::Run {
                    command: "echo \"{x}\"".into(),
                },
                SeedAction::User {
                    name: "u".into(),
                    groups: vec!["a".into()],
                    ssh_keys: vec![],
                    password: Some("env:P".into()),
                    admin: true,
                    shell: None,
                },
                SeedAction::Plugin { name: "p.q".into() },
            ],
            generalize: true,
        });
        same_as_value_path(&seed);
        same_as_value_path(&StepParams::Customize(CustomizeParams {
            agent: kiln_syntax::model::Agent::CloudbaseInit,
            machine: machine.clone(),
            disk_format: kiln_syntax::model::ImageFormat::Raw,
            grow_to_bytes: Some(1 << 40),
        }));
        same_as_value_path(&StepParams::BootTest(BootTestParams {
            expect: vec!["login:".into(), "".into()],
            agent: None,
            machine: machine.clone(),
        }));
        same_as_value_path(&StepParams::Convert(ConvertParams {
            format: kiln_syntax::model::ImageFormat::Qcow2,
            compression: kiln_syntax::model::Compression::Zstd,
            grow_to_bytes: None,
        }));
        same_as_value_path(&StepParams::Publish(PublishParams {
            target: "glance",
            cloud: Some("prod".into()),
            name: "img".into(),
            disk_format: "qcow2",
            container_format: "bare",
            visibility: "private",
            min_disk_gib: Some(20),
            min_ram_mib: None,
            protected: false,
            properties: BTreeMap::from([
                ("os_type".to_string(), "linux".to_string()),
                ("a\"b".to_string(), "".to_string()),
                ("Z".to_string(), "\u{e9}".to_string()),
            ]),
            tags: vec!["b".into(), "a".into()],
        }));
        same_as_value_path(&machine);
    }

    #[test]
    fn planned_descriptions_are_canonical_json_of_the_step_params() {
        use kiln_syntax::{LoadOptions, MemoryFs};
        let mut fs = MemoryFs::new();
        for (name, text) in [
            (
                "debian.kdl",
                include_str!("../../../tests/plan/valid/debian.kdl"),
            ),
            ("web.kdl", include_str!("../../../tests/plan/valid/web.kdl")),
            (
                "windows.kdl",
                include_str!("../../../tests/plan/valid/windows.kdl"),
            ),
            (
                "preseed.cfg",
                include_str!("../../../tests/plan/valid/preseed.cfg"),
            ),
        ] {
            fs.insert(std::path::Path::new("p").join(name), text);
        }
        let ws = kiln_syntax::load(&["p".into()], &LoadOptions::default(), &fs);
        assert!(ws.is_ok(), "{}", ws.render(false));
        let options = crate::PlanOptions {
            tools: ToolVersions::fixed("8.2.2 \"x\""),
            ..crate::PlanOptions::default()
        };
        let digests = crate::FakeDigests::new().with("preseed.cfg", "d-i");
        let plan =
            crate::plan(&ws.pipelines, &options, &digests).unwrap_or_else(|d| panic!("{d:?}"));
        let kinds: std::collections::BTreeSet<_> = plan.steps().map(|s| s.kind()).collect();
        assert!(
            kinds.len() >= 9,
            "the corpus covers the step kinds: {kinds:?}"
        );
        for step in plan.steps() {
            let parsed: Value = serde_json::from_str(&step.description).expect("JSON");
            assert_eq!(canonical_json(&parsed), step.description);
            assert_eq!(
                parsed["params"],
                serde_json::to_value(&step.params).expect("params serialize"),
                "{}",
                step.id
            );
            assert_eq!(StepKey::of_description(&step.description), step.key);
        }
    }

    #[test]
    fn canonical_writer_equals_the_value_path_for_other_serde_shapes() {
        #[derive(Serialize)]
        enum E {
            Unit,
            New(u8),
            Tuple(i32, String),
            Struct { z: bool, a: Option<f64> },
        }
        #[derive(Serialize)]
        struct S {
            zeta: Vec<E>,
            alpha: (u16, char),
            #[serde(skip_serializing_if = "Option::is_none")]
            gone: Option<u8>,
            mid: BTreeMap<u32, i64>,
            neg: i64,
        }
        same_as_value_path(&S {
            zeta: vec![
                E::Unit,
                E::New(7),
                E::Tuple(-3, "t".into()),
                E::Struct {
                    z: false,
                    a: Some(1.5),
                },
                E::Struct { z: true, a: None },
            ],
            alpha: (65535, '\u{1}'),
            gone: None,
            mid: BTreeMap::from([(10, -1), (9, i64::MIN)]),
            neg: i64::MIN,
        });
    }

    proptest::proptest! {
        #[test]
        fn canonical_writer_escapes_strings_as_serde_json(s in "\\PC*|[\\x00-\\x7f]*") {
            let mut w = CanonicalWriter::default();
            w.write(&s);
            proptest::prop_assert_eq!(w.as_str(), serde_json::to_string(&s).expect("string"));
        }

        #[test]
        fn canonical_writer_sorts_map_keys_as_serde_json(
            m in proptest::collection::btree_map("[a-zA-Z_\"\\\\\u{e9}\u{1}]{0,6}", "[a-z]{0,3}", 0..8),
            n in proptest::num::u64::ANY,
        ) {
            let value = (m, n);
            let mut w = CanonicalWriter::default();
            w.write(&value);
            let via_value = canonical_json(&serde_json::to_value(&value).expect("serializable"));
            proptest::prop_assert_eq!(w.as_str(), via_value);
        }
    }

    #[test]
    fn first_escape_finds_the_first_escaped_byte_at_every_offset() {
        for len in 0..24 {
            let plain: Vec<u8> = (0..len).map(|i| [b'a', b' ', 0x7f, b'~'][i % 4]).collect();
            assert_eq!(first_escape(&plain), len);
            for at in 0..len {
                for special in [0x00, 0x0a, 0x1f, b'"', b'\\'] {
                    let mut bytes = plain.clone();
                    bytes[at] = special;
                    // A later special byte must not hide the first.
                    if at + 1 < len {
                        bytes[len - 1] = b'"';
                    }
                    assert_eq!(first_escape(&bytes), at, "{bytes:?}");
                }
            }
        }
        assert_eq!(first_escape("é\u{2028}\u{7f}xxxxxxxx".as_bytes()), 14);
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
