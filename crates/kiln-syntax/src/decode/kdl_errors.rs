//! Maps the `kdl` crate's parse diagnostics into kiln diagnostics, with spans narrowed to the
//! offending token where kdl reports a wider one.

use kdl::KdlError;

use crate::diagnostic::Diagnostic;
use crate::span::{FileId, Span};

/// One diagnostic per kdl diagnostic, deduplicated, in file order.
pub(crate) fn map(file: FileId, text: &str, err: &KdlError) -> Vec<Diagnostic> {
    let mut out: Vec<Diagnostic> = Vec::new();
    for d in &err.diagnostics {
        let start = d.span.offset().min(text.len());
        let end = (start + d.span.len()).min(text.len());
        let (start, end) = narrow(text, start, end);
        let mut message = d
            .message
            .clone()
            .unwrap_or_else(|| "invalid KDL".to_string());
        if let Some(first) = message.get(..1) {
            let rest = &message[1..];
            if rest.chars().next().is_some_and(char::is_lowercase) {
                message = format!("{}{rest}", first.to_lowercase());
            }
        }
        let message = message.trim_end_matches('.').to_string();
        let mut diag = Diagnostic::new("kdl-syntax", Span::new(file, start, end), message)
            .label(d.label.clone().unwrap_or_else(|| "here".into()));
        let help = d.help.clone().or_else(|| v1_hint(text, start, end));
        diag = diag.maybe_help(help);
        if !out
            .iter()
            .any(|o| o.span == diag.span && o.message == diag.message)
        {
            out.push(diag);
        }
    }
    out.sort_by_key(|d| d.span.map(|s| (s.start, s.end)));
    out
}

/// A span that covers more than one line is narrowed to its last line's first token, where kdl's
/// recovering parser actually gave up; a span that starts on whitespace is moved to the next token.
fn narrow(text: &str, start: usize, end: usize) -> (usize, usize) {
    let (mut start, mut end) = (start, end);
    let slice = &text[start..end];
    if slice.trim_end().contains('\n') {
        let trimmed_end = start + slice.trim_end().len();
        let line_start = text[..trimmed_end].rfind('\n').map_or(0, |i| i + 1);
        start = line_start.max(start);
        end = trimmed_end;
    }
    while start < end && text[start..].starts_with(|c: char| c.is_whitespace()) {
        start += text[start..].chars().next().map_or(1, char::len_utf8);
    }
    while end > start && text[..end].ends_with(|c: char| c.is_whitespace()) {
        end -= text[..end].chars().next_back().map_or(1, char::len_utf8);
    }
    (start, end)
}

/// KDL 1 habits that KDL 2 rejects.
fn v1_hint(text: &str, start: usize, end: usize) -> Option<String> {
    let token = text.get(start..end)?;
    let word: String = text[start..]
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    match word.as_str() {
        "true" | "false" | "null" => Some(format!(
            "KDL 2 writes `#{word}`; a bare `{word}` is not a value"
        )),
        _ if token.starts_with('r') && token.contains('"') => {
            Some("KDL 2 raw strings are written `#\"...\"#`".into())
        }
        _ => None,
    }
}
