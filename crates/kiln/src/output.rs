//! Printing diagnostics for people (miette, coloured on terminals) and machines (JSON).

use std::io::IsTerminal;

use kiln_syntax::{Diagnostic, SourceMap};
use serde::Serialize;

use crate::cli::ColorChoice;

/// Whether to colour what goes to stderr.
pub fn use_color(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::io::stderr().is_terminal()
        }
    }
}

/// Prints diagnostics to stderr.
pub fn print_diagnostics(diagnostics: &[Diagnostic], sources: &SourceMap, color: ColorChoice) {
    if diagnostics.is_empty() {
        return;
    }
    eprint!(
        "{}",
        kiln_syntax::render_text(diagnostics, sources, use_color(color))
    );
}

/// A diagnostic as `kiln check --format json` prints it.
#[derive(Debug, Serialize)]
pub struct JsonDiagnostic {
    /// Stable kind, e.g. `unknown-node`.
    pub code: &'static str,
    /// Always `error` (kiln has no warnings: unknown things are errors).
    pub severity: &'static str,
    /// The message.
    pub message: String,
    /// File path as given; `null` for problems outside files.
    pub file: Option<String>,
    /// 1-based line of the primary span.
    pub line: Option<usize>,
    /// 1-based column (characters) of the primary span.
    pub column: Option<usize>,
    /// 1-based line where the primary span ends.
    pub end_line: Option<usize>,
    /// 1-based column where the primary span ends (exclusive).
    pub end_column: Option<usize>,
    /// Primary label.
    pub label: Option<String>,
    /// The `help:` line.
    pub help: Option<String>,
    /// Secondary labels.
    pub related: Vec<JsonLabel>,
}

/// A secondary label.
#[derive(Debug, Serialize)]
pub struct JsonLabel {
    /// File path.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Label text.
    pub label: String,
}

impl JsonDiagnostic {
    /// Flattens a diagnostic with lines and columns.
    pub fn new(d: &Diagnostic, sources: &SourceMap) -> Self {
        let (file, line, column, end_line, end_column) = match d.span {
            Some(span) => {
                let f = sources.get(span.file);
                let (l, c) = f.line_col(span.start as usize);
                let (el, ec) = f.line_col(span.end as usize);
                (Some(f.name()), Some(l), Some(c), Some(el), Some(ec))
            }
            None => (None, None, None, None, None),
        };
        JsonDiagnostic {
            code: d.code,
            severity: "error",
            message: d.message.clone(),
            file,
            line,
            column,
            end_line,
            end_column,
            label: d.span.map(|_| d.label.clone()),
            help: d.help.clone(),
            related: d
                .secondary
                .iter()
                .map(|(span, label)| {
                    let loc = sources.location(*span);
                    JsonLabel {
                        file: loc.file,
                        line: loc.line,
                        column: loc.column,
                        label: label.clone(),
                    }
                })
                .collect(),
        }
    }
}
