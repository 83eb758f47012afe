//! A bound on how deeply children blocks nest, checked before any KDL parser sees the text.
//!
//! Both parsers kiln uses (its own fast path and the `kdl` crate's) descend one call per `{`, and
//! dropping the document they build does too: a file of a few thousand `{` overflows the stack and
//! aborts the process. Real pipelines and `kiln.kdl` files nest a handful of levels, so anything
//! deeper than [`MAX_NESTING`](crate::limits::MAX_NESTING) is refused here with a located error,
//! scanning the text once without recursion.

use std::sync::Arc;

use kdl::{KdlDiagnostic, KdlDocument, KdlError};
use miette::Severity;

use crate::limits::MAX_NESTING;

/// Parses `text` as KDL 2 (the fast path where it covers the text, else the `kdl` crate), after
/// checking that blocks nest at most [`MAX_NESTING`] levels deep. The one entry point for every
/// KDL file kiln reads (pipelines, fragments, `kiln.kdl`, `kiln fmt`).
///
/// # Errors
/// kdl's parse errors, or one error located at the `{` that opens the first block too deep.
pub fn parse_kdl(text: &str) -> Result<KdlDocument, KdlError> {
    check_nesting(text)?;
    crate::decode::fast_kdl::parse(text)
}

/// Fails, as a KDL parse error, when a children block opens more than [`MAX_NESTING`] levels deep.
///
/// # Errors
/// One diagnostic located at the `{` that opens the first block too deep.
pub fn check_nesting(text: &str) -> Result<(), KdlError> {
    let Some(at) = too_deep(text, MAX_NESTING) else {
        return Ok(());
    };
    let input = Arc::new(text.to_string());
    Err(KdlError {
        input: Arc::clone(&input),
        diagnostics: vec![KdlDiagnostic {
            input,
            span: (at, 1).into(),
            message: Some(format!(
                "blocks are nested more than {MAX_NESTING} levels deep"
            )),
            label: Some(format!("block {} opens here", MAX_NESTING + 1)),
            help: Some(format!(
                "kiln files need a few levels of `{{ }}`; at most {MAX_NESTING} are read (is a `}}` missing?)"
            )),
            severity: Severity::Error,
        }],
    })
}

/// The byte offset of the first `{` that opens block `max + 1`, counting only braces outside
/// strings and comments; `None` when nesting stays within `max`. Unterminated strings or comments
/// end the scan: the parser reports those.
fn too_deep(text: &str, max: usize) -> Option<usize> {
    let b = text.as_bytes();
    let mut i = 0;
    let mut depth = 0usize;
    while i < b.len() {
        match b[i] {
            b'{' => {
                depth += 1;
                if depth > max {
                    return Some(i);
                }
                i += 1;
            }
            b'}' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'"' => i = skip_quoted(b, i)?,
            b'#' if raw_string_hashes(b, i).is_some() => {
                let hashes = raw_string_hashes(b, i)?;
                i = skip_raw(b, i + hashes, hashes)?;
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                i += b[i..].iter().position(|&c| c == b'\n')? + 1;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => i = skip_block_comment(b, i)?,
            _ => i += 1,
        }
    }
    None
}

/// After a quoted string (single-line or `"""` multi-line) starting at `start`, honouring `\`
/// escapes.
fn skip_quoted(b: &[u8], start: usize) -> Option<usize> {
    let multi = b[start..].starts_with(b"\"\"\"");
    let mut i = start + if multi { 3 } else { 1 };
    loop {
        match *b.get(i)? {
            b'\\' => i += 2,
            b'"' if !multi => return Some(i + 1),
            b'"' if b[i..].starts_with(b"\"\"\"") => return Some(i + 3),
            _ => i += 1,
        }
    }
}

/// How many `#` open a raw string at `i` (`#"`, `##"""`, ...), if one opens there.
fn raw_string_hashes(b: &[u8], i: usize) -> Option<usize> {
    let hashes = b[i..].iter().take_while(|&&c| c == b'#').count();
    (b.get(i + hashes) == Some(&b'"')).then_some(hashes)
}

/// After a raw string whose quote is at `quote`, closed by `"` and `hashes` `#`.
fn skip_raw(b: &[u8], quote: usize, hashes: usize) -> Option<usize> {
    let mut i = quote + 1;
    loop {
        let q = i + b.get(i..)?.iter().position(|&c| c == b'"')?;
        let closing = b[q + 1..]
            .iter()
            .take(hashes)
            .take_while(|&&c| c == b'#')
            .count();
        if closing == hashes {
            return Some(q + 1 + hashes);
        }
        i = q + 1;
    }
}

/// After a `/* */` comment (they nest in KDL) starting at `start`.
fn skip_block_comment(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 2;
    let mut open = 1usize;
    while open > 0 {
        match (b.get(i)?, b.get(i + 1)) {
            (b'/', Some(b'*')) => {
                open += 1;
                i += 2;
            }
            (b'*', Some(b'/')) => {
                open -= 1;
                i += 2;
            }
            _ => i += 1,
        }
    }
    Some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(n: usize) -> String {
        format!("{}{}", "a {".repeat(n), "}".repeat(n))
    }

    // The limit itself is fine, one more is refused at the `{` that goes past it.
    #[test]
    fn depth_up_to_the_limit_parses_and_one_more_is_located() {
        assert!(parse_kdl(&nested(MAX_NESTING)).is_ok());
        let text = nested(MAX_NESTING + 1);
        let err = parse_kdl(&text).unwrap_err();
        assert_eq!(err.diagnostics.len(), 1);
        assert_eq!(err.diagnostics[0].span.offset(), 3 * MAX_NESTING + 2);
    }

    // Braces in strings and comments are text, not blocks.
    #[test]
    fn braces_in_strings_and_comments_do_not_count() {
        let deep = "{".repeat(MAX_NESTING * 2);
        for text in [
            format!("a \"{deep}\"\n"),
            format!("a \"\\\"{deep}\"\n"),
            format!("a #\"{deep}\"\"#\n"),
            format!("a ##\"{deep}\"#\"##\n"),
            format!("a \"\"\"\n{deep}\"\n\"\"\"\n"),
            format!("a // {deep}\nb\n"),
            format!("a /* /* {deep} */ {deep} */ b\n"),
        ] {
            assert_eq!(too_deep(&text, MAX_NESTING), None, "{text:?}");
        }
        assert_eq!(
            too_deep(&format!("\"x\" {}", nested(MAX_NESTING + 1)), MAX_NESTING),
            Some(4 + 3 * MAX_NESTING + 2)
        );
    }
}
