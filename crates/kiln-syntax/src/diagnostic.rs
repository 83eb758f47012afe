//! Located diagnostics: every problem found in pipeline files, with a label on its exact span and a
//! `help:` line; rendering through miette (text) and a flat form for JSON.
//!
//! Diagnostics store spans only; [`Diagnostic::render`] attaches the file text from the
//! [`SourceMap`] and computes lines and columns. Later stages (the planner) build the same type, so
//! every stage's errors look alike.

use std::fmt;
use std::sync::Arc;

use miette::{LabeledSpan, NamedSource, SourceCode};

use crate::source_map::{Location, SourceMap};
use crate::span::Span;

/// One problem in the pipeline files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// A stable, kebab-case identifier of the kind of problem (e.g. `unknown-node`).
    pub code: &'static str,
    /// What is wrong (lowercase, values in backticks).
    pub message: String,
    /// The primary location; `None` for problems outside any file (e.g. a bad `--var`).
    pub span: Option<Span>,
    /// Text of the primary label.
    pub label: String,
    /// More locations with their labels (e.g. the first definition of a duplicate).
    pub secondary: Vec<(Span, String)>,
    /// How to fix it.
    pub help: Option<String>,
}

impl Diagnostic {
    /// A diagnostic at `span`.
    pub fn new(code: &'static str, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            message: message.into(),
            span: Some(span),
            label: String::from("here"),
            secondary: Vec::new(),
            help: None,
        }
    }

    /// A diagnostic not located in any file.
    pub fn global(code: &'static str, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            message: message.into(),
            span: None,
            label: String::new(),
            secondary: Vec::new(),
            help: None,
        }
    }

    /// Sets the primary label.
    #[must_use]
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// Adds a secondary label.
    #[must_use]
    pub fn with(mut self, span: Span, label: impl Into<String>) -> Self {
        self.secondary.push((span, label.into()));
        self
    }

    /// Sets the `help:` line.
    #[must_use]
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Sets the `help:` line when there is one.
    #[must_use]
    pub fn maybe_help(mut self, help: Option<String>) -> Self {
        if help.is_some() {
            self.help = help;
        }
        self
    }

    /// File, line and column of the primary span.
    pub fn location(&self, sources: &SourceMap) -> Option<Location> {
        self.span.map(|s| sources.location(s))
    }

    /// A miette diagnostic carrying the file text, for the graphical or JSON handlers.
    pub fn render(&self, sources: &SourceMap) -> RenderedDiagnostic {
        let mut rendered = RenderedDiagnostic {
            code: self.code,
            message: self.message.clone(),
            help: self.help.clone(),
            source: None,
            labels: Vec::new(),
            related: Vec::new(),
        };
        let Some(primary) = self.span else {
            return rendered;
        };
        let file = sources.get(primary.file);
        rendered.source = Some(NamedSource::new(file.name(), file.text().clone()));
        rendered.labels.push(LabeledSpan::new_primary_with_span(
            Some(self.label.clone()),
            primary,
        ));
        for (span, label) in &self.secondary {
            if span.file == primary.file {
                rendered
                    .labels
                    .push(LabeledSpan::new_with_span(Some(label.clone()), *span));
            } else {
                let other = sources.get(span.file);
                rendered.related.push(RenderedDiagnostic {
                    code: self.code,
                    message: label.clone(),
                    help: None,
                    source: Some(NamedSource::new(other.name(), other.text().clone())),
                    labels: vec![LabeledSpan::new_primary_with_span(
                        Some(label.clone()),
                        *span,
                    )],
                    related: Vec::new(),
                });
            }
        }
        rendered
    }
}

/// A [`Diagnostic`] with its file text attached; implements [`miette::Diagnostic`].
#[derive(Debug)]
pub struct RenderedDiagnostic {
    code: &'static str,
    message: String,
    help: Option<String>,
    source: Option<NamedSource<Arc<str>>>,
    labels: Vec<LabeledSpan>,
    related: Vec<RenderedDiagnostic>,
}

impl fmt::Display for RenderedDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RenderedDiagnostic {}

impl miette::Diagnostic for RenderedDiagnostic {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(format!("kiln::{}", self.code)))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h.as_str()) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.source.as_ref().map(|s| s as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.labels.is_empty() {
            None
        } else {
            Some(Box::new(self.labels.iter().cloned()))
        }
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn miette::Diagnostic> + 'a>> {
        if self.related.is_empty() {
            None
        } else {
            Some(Box::new(
                self.related.iter().map(|d| d as &dyn miette::Diagnostic),
            ))
        }
    }
}

/// Renders diagnostics as text the way `kiln check` prints them (`color` for terminals).
pub fn render_text(diagnostics: &[Diagnostic], sources: &SourceMap, color: bool) -> String {
    let theme = if color {
        miette::GraphicalTheme::unicode()
    } else {
        miette::GraphicalTheme::unicode_nocolor()
    };
    let handler = miette::GraphicalReportHandler::new_themed(theme)
        .with_width(100)
        .with_links(false);
    let mut out = String::new();
    for diagnostic in diagnostics {
        let rendered = diagnostic.render(sources);
        if handler.render_report(&mut out, &rendered).is_err() {
            out.push_str(&format!("error: {}\n", diagnostic.message));
        }
    }
    out
}

/// Sorts diagnostics by file, then position, then message; keeps global ones first.
pub fn sort(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by(|a, b| {
        let key = |d: &Diagnostic| d.span.map(|s| (s.file, s.start, s.end));
        key(a).cmp(&key(b)).then_with(|| a.message.cmp(&b.message))
    });
}
