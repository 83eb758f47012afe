//! `kiln fmt`: canonical layout for pipeline files that keeps every comment.
//!
//! Canonical means: one node per line, four spaces per level, one space between entries,
//! `key=value` without spaces, `{` on the node's line, at most one blank line between nodes and
//! none at the start of a block. Values keep their spelling (quoted, raw or bare strings,
//! multi-line strings) because changing it could change meaning. Comments (`//`, `/* */`, `/-`)
//! stay where they were relative to the nodes; lines inside a block comment are re-indented.

use std::path::Path;

use kdl::{KdlDocument, KdlEntry, KdlError, KdlIdentifier, KdlNode};

use crate::diagnostic::Diagnostic;
use crate::source_map::SourceMap;

const INDENT: &str = "    ";

/// Formats a KDL document. Fails when the text does not parse.
pub fn format(text: &str) -> Result<String, KdlError> {
    crate::nesting::check_nesting(text)?;
    let doc: KdlDocument = text.parse()?;
    let mut w = Writer::default();
    let fmt = doc.format().cloned().unwrap_or_default();
    let mut at_line_start = true;
    w.gap(&fmt.leading, &mut at_line_start, 0);
    w.nodes(doc.nodes(), 0, &mut at_line_start);
    w.gap(&fmt.trailing, &mut at_line_start, 0);
    Ok(w.finish())
}

/// Formats a file's text; parse errors come back as diagnostics located in `sources` (the file
/// is registered there either way).
pub fn format_file(
    sources: &mut SourceMap,
    path: &Path,
    text: &str,
) -> Result<String, Vec<Diagnostic>> {
    let id = sources.add(path.to_path_buf(), text.to_string());
    format(text).map_err(|err| crate::decode::kdl_errors::map(id, text, &err))
}

#[derive(Default)]
struct Writer {
    out: String,
    /// A line has text and no newline yet.
    open: bool,
    /// The last line written opens a block (`{`), or nothing was written yet.
    after_open: bool,
    pending_blank: bool,
}

impl Writer {
    fn finish(mut self) -> String {
        self.newline();
        self.out
    }

    fn newline(&mut self) {
        if self.open {
            self.out.push('\n');
            self.open = false;
        }
    }

    fn line(&mut self, level: usize, text: &str) {
        self.newline();
        if self.pending_blank && !self.after_open && !self.out.is_empty() {
            self.out.push('\n');
        }
        self.pending_blank = false;
        for _ in 0..level {
            self.out.push_str(INDENT);
        }
        self.out.push_str(text);
        self.open = true;
        self.after_open = false;
    }

    fn append(&mut self, text: &str) {
        if self.open {
            self.out.push(' ');
            self.out.push_str(text);
        } else {
            self.line(0, text);
        }
    }

    /// Whitespace and comments between nodes: comments become lines at `level`, a trailing
    /// comment stays on the line it was on, blank lines collapse to one.
    fn gap(&mut self, text: &str, at_line_start: &mut bool, level: usize) {
        if text.is_empty() {
            return;
        }
        let segments: Vec<&str> = text.split('\n').collect();
        let last = segments.len() - 1;
        for (i, seg) in segments.iter().enumerate() {
            let content = seg.trim();
            let on_previous_line = i == 0 && !*at_line_start;
            if content.is_empty() {
                // A whitespace-only line between two newlines is a blank line.
                if i != last && (i != 0 || *at_line_start) {
                    self.pending_blank = true;
                }
                continue;
            }
            if on_previous_line && self.open {
                self.append(content);
            } else {
                self.line(level, content);
            }
            if i == last {
                // Text right before the next node on the same line (`/* c */ node`): its own line.
                self.newline();
            }
        }
        update_line_start(at_line_start, text);
    }

    fn nodes(&mut self, nodes: &[KdlNode], level: usize, at_line_start: &mut bool) {
        for node in nodes {
            self.node(node, level, at_line_start);
        }
    }

    fn node(&mut self, node: &KdlNode, level: usize, at_line_start: &mut bool) {
        let fmt = node.format().cloned().unwrap_or_default();
        self.gap(&fmt.leading, at_line_start, level);
        let mut head = String::new();
        if let Some(ty) = node.ty() {
            head.push('(');
            head.push_str(&ident(ty));
            head.push(')');
        }
        head.push_str(&ident(node.name()));
        for entry in node.entries() {
            entry_text(&mut head, entry);
        }
        push_comment(&mut head, &fmt.before_children);
        self.line(level, &head);
        if let Some(children) = node.children() {
            let cfmt = children.format().cloned().unwrap_or_default();
            let empty =
                children.nodes().is_empty() && is_blank(&cfmt.leading) && is_blank(&cfmt.trailing);
            if empty {
                self.out.push_str(" {}");
            } else {
                self.out.push_str(" {");
                self.after_open = true;
                let mut inner = false;
                self.gap(&cfmt.leading, &mut inner, level + 1);
                self.nodes(children.nodes(), level + 1, &mut inner);
                self.gap(&cfmt.trailing, &mut inner, level + 1);
                self.pending_blank = false;
                self.line(level, "}");
            }
        }
        let mut tail = String::new();
        push_comment(&mut tail, &fmt.before_terminator);
        let term = fmt.terminator.trim();
        if !term.is_empty() && term != ";" {
            push_comment(&mut tail, term);
        }
        if !tail.is_empty() {
            self.out.push_str(&tail);
        }
        update_line_start(at_line_start, &fmt.terminator);
        if fmt.terminator.is_empty() && fmt.before_terminator.contains('\n') {
            *at_line_start = true;
        }
        self.gap(&fmt.trailing, at_line_start, level);
    }
}

fn update_line_start(at_line_start: &mut bool, text: &str) {
    let t = text.trim_end_matches([' ', '\t']);
    if !t.is_empty() {
        *at_line_start = t.ends_with('\n');
    }
}

fn is_blank(s: &str) -> bool {
    s.trim().is_empty()
}

fn ident(id: &KdlIdentifier) -> String {
    id.repr()
        .map(str::to_string)
        .unwrap_or_else(|| id.to_string())
}

/// Appends ` <comment>` when `raw` holds more than whitespace and line continuations.
fn push_comment(out: &mut String, raw: &str) {
    let without_continuations = strip_continuations(raw);
    let content = without_continuations.trim();
    if !content.is_empty() {
        out.push(' ');
        out.push_str(content);
    }
}

/// Removes `\` line continuations (a backslash, optional blanks, a newline) that only lay out
/// entries over several lines.
fn strip_continuations(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let after = rest[i + 1..].trim_start_matches([' ', '\t']);
        if let Some(next) = after.strip_prefix('\n') {
            out.push(' ');
            rest = next;
        } else if let Some(next) = after.strip_prefix("\r\n") {
            out.push(' ');
            rest = next;
        } else {
            out.push('\\');
            rest = &rest[i + 1..];
        }
    }
    out.push_str(rest);
    out
}

fn entry_text(out: &mut String, entry: &KdlEntry) {
    let fmt = entry.format().cloned().unwrap_or_default();
    push_comment(out, &fmt.leading);
    out.push(' ');
    if let Some(name) = entry.name() {
        out.push_str(&ident(name));
        let after_key = strip_continuations(&fmt.after_key);
        if !after_key.trim().is_empty() {
            out.push(' ');
            out.push_str(after_key.trim());
        }
        out.push('=');
        let after_eq = strip_continuations(&fmt.after_eq);
        if !after_eq.trim().is_empty() {
            out.push_str(after_eq.trim());
            out.push(' ');
        }
    }
    if let Some(ty) = entry.ty() {
        out.push('(');
        out.push_str(&ident(ty));
        out.push(')');
    }
    if fmt.value_repr.is_empty() {
        out.push_str(&entry.value().to_string());
    } else {
        out.push_str(&fmt.value_repr);
    }
    push_comment(out, &fmt.trailing);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same_document(a: &str, b: &str) {
        let mut x: KdlDocument = a.parse().unwrap();
        let mut y: KdlDocument = b.parse().unwrap();
        x.clear_format_recursive();
        y.clear_format_recursive();
        assert_eq!(x, y, "formatting changed the document:\n{b}");
    }

    #[test]
    fn layout_is_canonical_and_comments_stay() {
        let input = "// leading comment\n\n\n/* block\n   comment */\npipeline \"ws\" /* inline */ {   // after brace\n  source \"a.iso\"   checksum = \"sha256:abc\"  // trailing\n\n\n    /- disabled node\n    disk size=\"1G\" /-format=\"raw\"; machine cpus=1\n    // last inside\n}\n// final\n";
        let out = format(input).unwrap();
        assert_eq!(
            out,
            "// leading comment\n\n/* block\ncomment */\npipeline \"ws\" /* inline */ { // after brace\n    source \"a.iso\" checksum=\"sha256:abc\" // trailing\n\n    /- disabled node\n    disk size=\"1G\" /-format=\"raw\"\n    machine cpus=1\n    // last inside\n}\n// final\n"
        );
        same_document(input, &out);
        assert_eq!(format(&out).unwrap(), out);
    }

    #[test]
    fn empty_blocks_and_continuations() {
        let input = "a {\n}\nb 1 \\\n   2\n";
        let out = format(input).unwrap();
        assert_eq!(out, "a {}\nb 1 2\n");
        same_document(input, &out);
    }
}
