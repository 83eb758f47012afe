//! A fast path for parsing the plain KDL 2 that pipeline files are made of.
//!
//! The `kdl` crate's parser (winnow with error recovery) spends thousands of instructions per byte
//! of input; parsing was ~90% of loading. Pipeline files use a small, plain part of KDL 2: ASCII
//! bare identifiers, quoted strings with simple escapes, decimal integers, `#true`/`#false`/`#null`,
//! properties, children blocks and `//` comments, with spaces, tabs and `\n` between them.
//! [`parse`] reads exactly that part itself and builds the same [`KdlDocument`] kdl's parser builds
//! — the same values, spans and formatting (leading/trailing whitespace, value representations) —
//! so decoding, diagnostics and `kiln fmt` cannot tell the difference. On anything else (`\r`,
//! Unicode spaces, newlines or direction controls anywhere, non-ASCII outside strings and comments,
//! raw or multi-line strings, other escapes, floats, type annotations, slashdash or block comments,
//! line continuations, any syntax error, ...) it gives up and kdl's parser runs, so every error
//! still comes from kdl.
//!
//! Tests compare the two parsers' documents (debug form, spans included) over the repository's
//! `.kdl` files and over generated documents.

use kdl::{
    KdlDocument, KdlDocumentFormat, KdlEntry, KdlEntryFormat, KdlError, KdlIdentifier, KdlNode,
    KdlNodeFormat, KdlValue,
};

/// Parses `text` as KDL 2: the fast path when it covers the text, else kdl's parser.
pub(crate) fn parse(text: &str) -> Result<KdlDocument, KdlError> {
    match parse_plain(text) {
        Some(doc) => Ok(doc),
        None => KdlDocument::parse(text),
    }
}

/// The fast path alone: `None` when the text uses anything it does not cover.
pub(crate) fn parse_plain(text: &str) -> Option<KdlDocument> {
    // Tab, newline, printable ASCII, and other Unicode only where it is plain text (quoted strings
    // and comments; anywhere else the parser below gives up on it): no `\r`, no Unicode spaces or
    // newlines, no disallowed code points to consider below.
    let plain = text
        .bytes()
        .all(|b| b == b'\t' || b == b'\n' || (0x20..0x7f).contains(&b) || b >= 0x80);
    if !plain || (!text.is_ascii() && text.chars().any(special_unicode)) {
        return None;
    }
    let mut p = Parser {
        src: text,
        bytes: text.as_bytes(),
        pos: 0,
        depth: 0,
    };
    let doc = p.nodes()?;
    (p.pos == p.bytes.len()).then_some(doc)
}

/// Non-ASCII code points KDL gives a meaning (spaces, newlines) or forbids (direction controls,
/// a BOM), with some room around them.
fn special_unicode(c: char) -> bool {
    matches!(
        c,
        '\u{80}'..='\u{a0}' | '\u{1680}' | '\u{2000}'..='\u{200f}'
            | '\u{2028}'..='\u{202f}'
            | '\u{205f}'..='\u{206f}' | '\u{3000}' | '\u{feff}'
    )
}

/// Children blocks nested deeper than this go to kdl's parser.
const MAX_DEPTH: usize = 32;

struct Parser<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    /// Open children blocks.
    depth: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn peek_at(&self, n: usize) -> Option<u8> {
        self.bytes.get(self.pos + n).copied()
    }

    fn at_eof(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    /// `node-space*`: spaces and tabs. `None` on what would need kdl (line continuations, block
    /// comments).
    fn node_space0(&mut self) -> Option<()> {
        loop {
            match self.peek() {
                Some(b' ' | b'\t') => self.pos += 1,
                Some(b'\\') => return None,
                Some(b'/') if self.peek_at(1) == Some(b'*') => return None,
                _ => return Some(()),
            }
        }
    }

    /// A `//` comment through its newline (or the end of the text).
    fn line_comment(&mut self) {
        match self.bytes[self.pos..].iter().position(|&b| b == b'\n') {
            Some(i) => self.pos += i + 1,
            None => self.pos = self.bytes.len(),
        }
    }

    /// `line-space*`: spaces, tabs, newlines and `//` comments.
    fn line_space0(&mut self) -> Option<()> {
        loop {
            self.node_space0()?;
            match self.peek() {
                Some(b'\n') => self.pos += 1,
                Some(b'/') if self.peek_at(1) == Some(b'/') => self.line_comment(),
                Some(b'/') if self.peek_at(1) == Some(b'-') => return None,
                _ => return Some(()),
            }
        }
    }

    /// The length of a node terminator at the current position (`;`, a newline, a `//` comment
    /// with its newline), without consuming it; `0` when there is none.
    fn terminator_len(&self) -> usize {
        match self.peek() {
            Some(b';' | b'\n') => 1,
            Some(b'/') if self.peek_at(1) == Some(b'/') => {
                match self.bytes[self.pos..].iter().position(|&b| b == b'\n') {
                    Some(i) => i + 1,
                    None => self.bytes.len() - self.pos,
                }
            }
            _ => 0,
        }
    }

    /// `nodes := (line-space* node)* line-space*`, as kdl builds it: the first node takes the
    /// leading space, the span runs from the first node to the end of the last one.
    fn nodes(&mut self) -> Option<KdlDocument> {
        let lead_start = self.pos;
        self.line_space0()?;
        let mut leading = &self.src[lead_start..self.pos];
        let start = self.pos;
        let mut nodes: Vec<KdlNode> = Vec::new();
        let mut end = start;
        if !self.at_eof() && self.peek() != Some(b'}') {
            nodes.push(self.base_node("")?);
            end = self.pos;
            loop {
                let before_terminator = self.pos;
                let len = self.terminator_len();
                if len == 0 {
                    break;
                }
                self.pos += len;
                let node_lead = self.pos;
                self.line_space0()?;
                if self.at_eof() || self.peek() == Some(b'}') {
                    self.pos = before_terminator;
                    break;
                }
                let node_leading = &self.src[node_lead..self.pos];
                nodes.push(self.base_node(node_leading)?);
                end = self.pos;
            }
        }
        self.pos += self.terminator_len();
        let trail_start = self.pos;
        self.line_space0()?;
        let trailing = &self.src[trail_start..self.pos];
        if let Some(first) = nodes.first_mut()
            && let Some(fmt) = first.format_mut()
        {
            fmt.leading = leading.into();
            leading = "";
        }
        let mut doc = KdlDocument::new();
        *doc.nodes_mut() = nodes;
        doc.set_format(KdlDocumentFormat {
            leading: leading.into(),
            trailing: trailing.into(),
        });
        doc.set_span(start..end);
        Some(doc)
    }

    fn base_node(&mut self, leading: &str) -> Option<KdlNode> {
        let start = self.pos;
        if matches!(self.peek(), Some(b'{' | b'(')) {
            return None;
        }
        let name = self.identifier()?;
        let mut node = KdlNode::new(name);
        // Entries: each preceded by node space.
        loop {
            let before = self.pos;
            if !matches!(self.peek(), Some(b' ' | b'\t')) {
                break;
            }
            self.node_space0()?;
            let entry_leading = &self.src[before..self.pos];
            if !self.entry_starts() {
                self.pos = before;
                break;
            }
            let entry = self.entry(entry_leading)?;
            node.entries_mut().push(entry);
        }
        let space_start = self.pos;
        self.node_space0()?;
        let space = &self.src[space_start..self.pos];
        let (before_children, before_terminator, terminator);
        if self.peek() == Some(b'{') {
            self.pos += 1;
            // Deep nesting is no pipeline: leave it to kdl rather than recurse without bound.
            if self.depth >= MAX_DEPTH {
                return None;
            }
            self.depth += 1;
            let children = self.nodes()?;
            self.depth -= 1;
            if self.peek() != Some(b'}') {
                return None;
            }
            self.pos += 1;
            node.set_children(children);
            before_children = space;
            before_terminator = "";
        } else {
            before_children = "";
            before_terminator = space;
        }
        // kdl peeks at the terminator right where the node's own text ends.
        terminator = &self.src[self.pos..self.pos + self.terminator_len()];
        self.node_space0()?;
        match self.peek() {
            None | Some(b';' | b'\n' | b'}') => {}
            Some(b'/') if self.peek_at(1) == Some(b'/') => {}
            _ => return None,
        }
        node.set_format(KdlNodeFormat {
            leading: leading.into(),
            before_children: before_children.into(),
            before_terminator: before_terminator.into(),
            terminator: terminator.into(),
            ..KdlNodeFormat::default()
        });
        node.set_span(start..self.pos);
        Some(node)
    }

    /// Whether an entry (argument or property) starts here.
    fn entry_starts(&self) -> bool {
        match self.peek() {
            None | Some(b'{' | b'}' | b';' | b'\n') => false,
            Some(b'/') => self.peek_at(1) != Some(b'/'),
            Some(_) => true,
        }
    }

    fn entry(&mut self, leading: &str) -> Option<KdlEntry> {
        let start = self.pos;
        let value_only = self.peek()? == b'#' || self.number_starts();
        let mut entry = if value_only {
            let value = self.value()?;
            let mut entry = KdlEntry::new(value);
            entry.set_format(KdlEntryFormat {
                value_repr: self.src[start..self.pos].into(),
                ..KdlEntryFormat::default()
            });
            entry
        } else {
            // A string: a property's key when `=` follows, else an argument.
            let ident = self.identifier()?;
            if self.peek() == Some(b'=') {
                self.pos += 1;
                let value_start = self.pos;
                let value = self.value()?;
                let mut entry = KdlEntry::new_prop(ident, value);
                entry.set_format(KdlEntryFormat {
                    value_repr: self.src[value_start..self.pos].into(),
                    ..KdlEntryFormat::default()
                });
                entry
            } else {
                let repr = ident.repr().unwrap_or(ident.value()).to_string();
                let mut entry = KdlEntry::new(KdlValue::String(ident.value().to_string()));
                entry.set_format(KdlEntryFormat {
                    value_repr: repr,
                    ..KdlEntryFormat::default()
                });
                entry
            }
        };
        if let Some(fmt) = entry.format_mut() {
            fmt.leading = leading.into();
        }
        entry.set_span(start..self.pos);
        Some(entry)
    }

    /// `-` followed by a digit, or a digit.
    fn number_starts(&self) -> bool {
        match self.peek() {
            Some(b'0'..=b'9') => true,
            Some(b'-') => matches!(self.peek_at(1), Some(b'0'..=b'9')),
            _ => false,
        }
    }

    /// A property's value: a string, a decimal integer or `#true`/`#false`/`#null`.
    fn value(&mut self) -> Option<KdlValue> {
        match self.peek()? {
            b'#' => {
                let rest = &self.src[self.pos + 1..];
                let (value, len) = if rest.starts_with("true") {
                    (KdlValue::Bool(true), 4)
                } else if rest.starts_with("false") {
                    (KdlValue::Bool(false), 5)
                } else if rest.starts_with("null") {
                    (KdlValue::Null, 4)
                } else {
                    return None;
                };
                self.pos += 1 + len;
                self.value_end()?;
                Some(value)
            }
            _ if self.number_starts() => {
                let start = self.pos;
                if self.peek() == Some(b'-') {
                    self.pos += 1;
                }
                while matches!(self.peek(), Some(b'0'..=b'9')) {
                    self.pos += 1;
                }
                let n: i128 = self.src[start..self.pos].parse().ok()?;
                self.value_end()?;
                Some(KdlValue::Integer(n))
            }
            b'"' => {
                let s = self.quoted()?;
                self.value_end()?;
                Some(KdlValue::String(s))
            }
            _ => {
                let ident = self.bare()?;
                self.value_end()?;
                Some(KdlValue::String(ident.to_string()))
            }
        }
    }

    /// What may follow a value: node space, a terminator, the end of a block or of the text.
    fn value_end(&self) -> Option<()> {
        match self.peek() {
            None | Some(b' ' | b'\t' | b'\n' | b';' | b'}') => Some(()),
            Some(b'/') if self.peek_at(1) == Some(b'/') => Some(()),
            _ => None,
        }
    }

    /// A node name or property key: a bare identifier or a quoted string, with its raw text and
    /// span. Must be followed by what ends a value (or `=` for a key).
    fn identifier(&mut self) -> Option<KdlIdentifier> {
        let start = self.pos;
        let value = if self.peek() == Some(b'"') {
            self.quoted()?
        } else {
            self.bare()?.to_string()
        };
        if self.peek() != Some(b'=') {
            self.value_end()?;
        }
        let mut ident = KdlIdentifier::from(value);
        ident.set_repr(&self.src[start..self.pos]);
        ident.set_span(start..self.pos);
        Some(ident)
    }

    /// A bare identifier string (ASCII): not a number, not a keyword.
    fn bare(&mut self) -> Option<&'a str> {
        let start = self.pos;
        match self.peek()? {
            b'0'..=b'9' | b'.' | b'+' => return None,
            b'-' if matches!(self.peek_at(1), Some(b'0'..=b'9' | b'.')) => return None,
            _ => {}
        }
        while let Some(b) = self.peek() {
            let ident_char = (0x21..0x7f).contains(&b)
                && !matches!(
                    b,
                    b'\\'
                        | b'/'
                        | b'('
                        | b')'
                        | b'{'
                        | b'}'
                        | b'['
                        | b']'
                        | b';'
                        | b'"'
                        | b'#'
                        | b'='
                );
            if !ident_char {
                break;
            }
            self.pos += 1;
        }
        let text = &self.src[start..self.pos];
        if text.is_empty() || matches!(text, "true" | "false" | "null" | "inf" | "-inf" | "nan") {
            return None;
        }
        Some(text)
    }

    /// A single-line quoted string with the escapes `\" \\ \b \f \n \r \t \s`.
    fn quoted(&mut self) -> Option<String> {
        if self.bytes[self.pos..].starts_with(b"\"\"\"") {
            return None;
        }
        self.pos += 1;
        let mut out = String::new();
        let mut plain = self.pos;
        loop {
            match self.peek()? {
                b'"' => {
                    out.push_str(&self.src[plain..self.pos]);
                    self.pos += 1;
                    return Some(out);
                }
                b'\\' => {
                    out.push_str(&self.src[plain..self.pos]);
                    let c = match self.peek_at(1)? {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b's' => ' ',
                        _ => return None,
                    };
                    out.push(c);
                    self.pos += 2;
                    plain = self.pos;
                }
                b'\n' => return None,
                _ => self.pos += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast path's document, or `None`; panics when it differs from kdl's.
    fn check(text: &str) -> Option<KdlDocument> {
        let fast = parse_plain(text);
        if let Some(doc) = &fast {
            let slow = KdlDocument::parse(text)
                .unwrap_or_else(|e| panic!("fast path accepted what kdl rejects: {text:?}: {e:?}"));
            assert_eq!(
                format!("{doc:#?}"),
                format!("{slow:#?}"),
                "documents differ for {text:?}"
            );
            assert_eq!(
                doc.to_string(),
                slow.to_string(),
                "printed form of {text:?}"
            );
        }
        fast
    }

    #[test]
    fn plain_pipelines_take_the_fast_path_and_equal_kdls_documents() {
        let texts = [
            "",
            "\n\n",
            "// just a comment",
            "a",
            "a\n",
            "a;b;c",
            "a; b ;c\n",
            "a 1 -2 #true #false #null\n",
            "node \"quoted \\\"x\\\" \\n\\t\\\\ \\s\\b\\f\\r\" bare-word x=1 y=\"z\" k=v\n",
            "  // lead\n\n  pipeline \"p-{x}\" {\n    source \"https://a/b.iso\" checksum=\"sha256:00\"  \n    disk size=\"20GiB\"\n  }  \n// trail\n\n",
            "a {\n}\n",
            "a {}\n",
            "a { }",
            "a { b; c }\n",
            "a { b 1 }",
            "a {\n  b {\n    c x=\"1\" // comment\n  }\n}\n\n",
            "a 1 // comment\nb\n",
            "a 1// comment",
            "\"quoted name\" 1\n",
            "a \"\" \"\"\n",
            "-a -b --c\n",
            "description \"Übersicht für Käse — 日本語\" k=\"é\" // commentaire: ça\nb\n",
            "a\t1\t{\tb\t}\t\n",
            "fragment {\n    machine cpus=2 memory=\"2GiB\"\n    output format=\"qcow2\" compression=\"zstd\"\n    boot-test timeout=\"10m\"\n}\n",
        ];
        for t in texts {
            assert!(check(t).is_some(), "fast path should cover {t:?}");
        }
    }

    /// Every `.kdl` file in the repository (pipelines, valid and invalid corpora): where the fast
    /// path takes a file, its document is kdl's. The plain pipelines must take it.
    #[test]
    fn repository_files_parse_as_kdl_parses_them() {
        fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).expect("readable") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    walk(&path, out);
                } else if path.extension().is_some_and(|e| e == "kdl") {
                    out.push(path);
                }
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut files = Vec::new();
        for dir in ["pipelines", "tests"] {
            walk(&root.join(dir), &mut files);
        }
        assert!(files.len() > 50, "found {} files", files.len());
        let mut fast = 0;
        for f in &files {
            let text = std::fs::read_to_string(f).expect("readable");
            if check(&text).is_some() {
                fast += 1;
            }
        }
        assert!(
            fast * 2 > files.len(),
            "most files are plain KDL: {fast} of {} took the fast path",
            files.len()
        );
    }

    #[test]
    fn anything_else_is_left_to_kdl() {
        let texts = [
            "a 1.5",
            "a 1_000",
            "a 0x10",
            "a +1",
            "a #inf",
            "a true",
            "(ty)a",
            "a (ty)1",
            "a /- b",
            "/- a\nb",
            "a /* c */ b",
            "a \\\n b",
            "a \"\"\"\nx\n\"\"\"",
            "a #\"raw\"#",
            "a \"\\u{41}\"",
            "a\r\nb",
            "a {",
            "a }",
            "}",
            "a b=",
            "a b =1",
            "a b= 1",
            "a \"x\"y",
            "a 1b",
            "a é",
            "é 1",
            "a x=é",
            "a \"x\u{2028}y\"",
            "a // x\u{2028}b\n",
            "a \"\u{a0}\"",
            "a \"\u{200e}\"",
            "{ a }",
            "a { b } c",
            "a x=(t)1",
            "a #tru",
            "a {}b",
            "a [x]",
            "a\u{0}",
        ];
        for t in texts {
            assert!(check(t).is_none(), "fast path should decline {t:?}");
            // kdl still decides: the public entry point equals kdl's result.
            assert_eq!(
                format!("{:?}", parse(t).map(|d| format!("{d:?}"))),
                format!("{:?}", KdlDocument::parse(t).map(|d| format!("{d:?}")))
            );
        }
        // Nesting: plain up to a depth, kdl's beyond.
        let nested = |n: usize| format!("{}{}", "a {".repeat(n), "}".repeat(n));
        assert!(check(&nested(8)).is_some());
        assert!(check(&nested(40)).is_none());
    }

    /// A node in the covered syntax: a name, entries, maybe children, a terminator.
    fn node_strategy(
        children: proptest::strategy::BoxedStrategy<String>,
    ) -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let name = prop_oneof![
            Just("a".to_string()),
            Just("boot-test".to_string()),
            Just("\"q n\"".to_string()),
            "[a-z][a-z0-9_.-]{0,5}",
        ];
        let value = prop_oneof![
            Just("\"v\"".to_string()),
            Just("\"\"".to_string()),
            Just("\"x\\ty\\\"z\\\\\"".to_string()),
            Just("\"é—日\"".to_string()),
            Just("#true".to_string()),
            Just("#null".to_string()),
            Just("-7".to_string()),
            Just("0".to_string()),
            "[a-z][a-z0-9-]{0,4}",
            "-?[0-9]{1,6}",
        ];
        let entry = prop_oneof![
            value.clone(),
            ("[a-z][a-z-]{0,4}", value).prop_map(|(k, v)| format!("{k}={v}")),
        ];
        let space = prop_oneof![Just(" "), Just("  "), Just("\t")];
        let entries = proptest::collection::vec((space.clone(), entry), 0..4).prop_map(|es| {
            es.into_iter()
                .map(|(s, e)| format!("{s}{e}"))
                .collect::<String>()
        });
        let block = proptest::option::of((space.clone(), children, space.clone()));
        let terminator = prop_oneof![
            Just("\n"),
            Just(";"),
            Just(" // c\n"),
            Just(" // ça — ok\n"),
            Just("//x\n"),
            Just("  \n"),
            Just("\n\n"),
            Just(""),
        ];
        (name, entries, block, terminator).prop_map(|(n, e, b, t)| {
            let block = b
                .map(|(s1, c, s2)| format!("{s1}{{{c}{s2}}}"))
                .unwrap_or_default();
            format!("{n}{e}{block}{t}")
        })
    }

    fn document_strategy() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let leaf = node_strategy(Just(String::new()).boxed()).boxed();
        let inner = proptest::collection::vec(leaf, 0..4)
            .prop_map(|ns| ns.concat())
            .boxed();
        let middle = node_strategy(inner).boxed();
        let kids = proptest::collection::vec(middle, 0..3)
            .prop_map(|ns| ns.concat())
            .boxed();
        let lead = prop_oneof![Just(""), Just("\n"), Just("// head\n\n"), Just("  ")];
        (
            lead,
            proptest::collection::vec(node_strategy(kids), 0..4),
            lead_trail(),
        )
            .prop_map(|(l, ns, t)| format!("{l}{}{t}", ns.concat()))
    }

    fn lead_trail() -> impl proptest::strategy::Strategy<Value = &'static str> {
        use proptest::prelude::*;
        prop_oneof![Just(""), Just("\n"), Just("// end"), Just("\n  \n")]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]
        /// Documents built from the covered syntax: mostly taken by the fast path, always equal to
        /// kdl's.
        #[test]
        fn structured_documents_equal_kdls(text in document_strategy()) {
            check(&text);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// Random documents from pieces of the covered syntax (and some that are not): whenever the
        /// fast path accepts one, kdl's document is the same.
        #[test]
        fn fast_path_documents_equal_kdls(pieces in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::strategy::Just("a".to_string()),
                proptest::strategy::Just("node-1".to_string()),
                proptest::strategy::Just("\"q s\"".to_string()),
                proptest::strategy::Just("\"e\\\"\\n\"".to_string()),
                proptest::strategy::Just("-1".to_string()),
                proptest::strategy::Just("42".to_string()),
                proptest::strategy::Just("#true".to_string()),
                proptest::strategy::Just("#null".to_string()),
                proptest::strategy::Just("k=v".to_string()),
                proptest::strategy::Just("k=\"v w\"".to_string()),
                proptest::strategy::Just("k=7".to_string()),
                proptest::strategy::Just("=".to_string()),
                proptest::strategy::Just(" ".to_string()),
                proptest::strategy::Just("  ".to_string()),
                proptest::strategy::Just("\t".to_string()),
                proptest::strategy::Just("\n".to_string()),
                proptest::strategy::Just(";".to_string()),
                proptest::strategy::Just("{".to_string()),
                proptest::strategy::Just("}".to_string()),
                proptest::strategy::Just("{ }".to_string()),
                proptest::strategy::Just("// c\n".to_string()),
                proptest::strategy::Just("//c".to_string()),
                proptest::strategy::Just("/".to_string()),
                proptest::strategy::Just("-".to_string()),
                proptest::strategy::Just("#".to_string()),
                proptest::strategy::Just("\"".to_string()),
                "[a-z0-9\"=#{}; \\n/.-]{1,3}",
            ],
            0..24,
        )) {
            let text: String = pieces.concat();
            check(&text);
            // Also as a node's children, where `}` and nesting matter.
            check(&format!("n {{{text}}}\n"));
        }
    }
}
