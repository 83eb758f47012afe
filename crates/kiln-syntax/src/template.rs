//! Strings with `{var}` interpolation: parsed once, with the span of every reference, rendered per
//! matrix cell by later stages.
//!
//! Syntax: `{name}` inserts a variable (`name` = letters, digits, `_` and `-`, not starting with a
//! digit or `-`); `{{` and `}}` write literal braces. Anything else with a brace is an error.

use std::collections::BTreeMap;
use std::fmt;

use crate::span::Span;

/// A reference to a variable inside a template.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct VarRef {
    /// The variable name, without braces.
    pub name: String,
    /// The span of `{name}` including the braces.
    pub span: Span,
}

/// A piece of a template.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TemplatePart {
    /// Text written as is (braces already unescaped).
    Literal(String),
    /// A `{name}` reference.
    Var(VarRef),
}

/// A string value that may reference variables.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Template {
    /// The decoded string as written (escapes of KDL resolved, braces not).
    pub raw: String,
    /// The span of the whole value.
    pub span: Span,
    /// Literal text and references, in order.
    pub parts: Vec<TemplatePart>,
}

/// A template problem found while parsing: a message and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateSyntaxError {
    /// What is wrong (lowercase).
    pub message: String,
    /// The offending brace or name.
    pub span: Span,
    /// How to fix it.
    pub help: String,
}

/// Rendering failed: a referenced variable has no value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("variable `{name}` has no value")]
pub struct RenderError {
    /// The missing variable.
    pub name: String,
    /// Where it is referenced.
    pub span: Span,
}

impl Template {
    /// A template without references (for values built in code).
    pub fn literal(text: impl Into<String>, span: Span) -> Self {
        let raw = text.into();
        let parts = if raw.is_empty() {
            Vec::new()
        } else {
            vec![TemplatePart::Literal(raw.clone())]
        };
        Template { raw, span, parts }
    }

    /// Parses `raw`. `locate(start, end)` maps a byte range of `raw` to its span in the file.
    pub fn parse(
        raw: &str,
        span: Span,
        locate: &dyn Fn(usize, usize) -> Span,
    ) -> Result<Template, Vec<TemplateSyntaxError>> {
        let mut parts = Vec::new();
        let mut errors = Vec::new();
        let mut literal = String::new();
        let bytes = raw.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'{' if bytes.get(i + 1) == Some(&b'{') => {
                    literal.push('{');
                    i += 2;
                }
                b'}' if bytes.get(i + 1) == Some(&b'}') => {
                    literal.push('}');
                    i += 2;
                }
                b'{' => {
                    let Some(close) = raw[i + 1..].find('}').map(|c| c + i + 1) else {
                        errors.push(TemplateSyntaxError {
                            message: "unclosed `{` in string".into(),
                            span: locate(i, i + 1),
                            help:
                                "write `{name}` to insert a variable, or `{{` for a literal brace"
                                    .into(),
                        });
                        break;
                    };
                    let name = &raw[i + 1..close];
                    if is_var_name(name) {
                        if !literal.is_empty() {
                            parts.push(TemplatePart::Literal(std::mem::take(&mut literal)));
                        }
                        parts.push(TemplatePart::Var(VarRef {
                            name: name.to_string(),
                            span: locate(i, close + 1),
                        }));
                    } else {
                        errors.push(TemplateSyntaxError {
                            message: format!("`{{{name}}}` is not a variable reference"),
                            span: locate(i, close + 1),
                            help: "variable names are letters, digits, `_` and `-`; write `{{` and `}}` for literal braces".into(),
                        });
                    }
                    i = close + 1;
                }
                b'}' => {
                    errors.push(TemplateSyntaxError {
                        message: "unmatched `}` in string".into(),
                        span: locate(i, i + 1),
                        help: "write `}}` for a literal brace".into(),
                    });
                    i += 1;
                }
                _ => {
                    let ch = raw[i..].chars().next().expect("in bounds");
                    literal.push(ch);
                    i += ch.len_utf8();
                }
            }
        }
        if !literal.is_empty() {
            parts.push(TemplatePart::Literal(literal));
        }
        if errors.is_empty() {
            Ok(Template {
                raw: raw.to_string(),
                span,
                parts,
            })
        } else {
            Err(errors)
        }
    }

    /// The variables this template references, in order (repeats included).
    pub fn refs(&self) -> impl Iterator<Item = &VarRef> {
        self.parts.iter().filter_map(|p| match p {
            TemplatePart::Var(v) => Some(v),
            TemplatePart::Literal(_) => None,
        })
    }

    /// True when the template references no variable.
    pub fn is_literal(&self) -> bool {
        self.refs().next().is_none()
    }

    /// The text when the template references no variable.
    pub fn as_literal(&self) -> Option<String> {
        self.is_literal()
            .then(|| self.render_with(|_| None).unwrap_or_default())
    }

    /// Renders with values from `vars` (matrix cell values, variables and builtins).
    pub fn render(&self, vars: &BTreeMap<String, String>) -> Result<String, RenderError> {
        self.render_with(|name| vars.get(name).map(String::as_str))
    }

    /// Renders with values from `vars`, each value passed through `quote` (the literal text is
    /// kept as written): for commands, where a value must stay one word of the command's shell.
    pub fn render_quoted(
        &self,
        vars: &BTreeMap<String, String>,
        quote: impl Fn(&str) -> String,
    ) -> Result<String, RenderError> {
        let mut out = String::with_capacity(self.raw.len());
        for part in &self.parts {
            match part {
                TemplatePart::Literal(text) => out.push_str(text),
                TemplatePart::Var(var) => match vars.get(&var.name) {
                    Some(value) => out.push_str(&quote(value)),
                    None => {
                        return Err(RenderError {
                            name: var.name.clone(),
                            span: var.span,
                        });
                    }
                },
            }
        }
        Ok(out)
    }

    /// Renders, asking `lookup` for each referenced variable.
    pub fn render_with<'a>(
        &self,
        lookup: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<String, RenderError> {
        let mut out = String::with_capacity(self.raw.len());
        for part in &self.parts {
            match part {
                TemplatePart::Literal(text) => out.push_str(text),
                TemplatePart::Var(var) => match lookup(&var.name) {
                    Some(value) => out.push_str(value),
                    None => {
                        return Err(RenderError {
                            name: var.name.clone(),
                            span: var.span,
                        });
                    }
                },
            }
        }
        Ok(out)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// Whether `name` is a valid variable name (also used for matrix axes).
pub fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::FileId;

    fn span(a: usize, b: usize) -> Span {
        Span::new(FileId(0), a, b)
    }

    fn parse(s: &str) -> Result<Template, Vec<TemplateSyntaxError>> {
        Template::parse(s, span(0, s.len()), &|a, b| span(a, b))
    }

    #[test]
    fn references_carry_their_own_spans() {
        let t = parse("ws-{language}-{edition}").unwrap();
        let refs: Vec<_> = t
            .refs()
            .map(|r| (r.name.as_str(), r.span.range()))
            .collect();
        assert_eq!(refs, [("language", 3..13), ("edition", 14..23)]);
    }

    #[test]
    fn doubled_braces_are_literal() {
        let t = parse("{{json}} {x}").unwrap();
        let vars = BTreeMap::from([("x".to_string(), "1".to_string())]);
        assert_eq!(t.render(&vars).unwrap(), "{json} 1");
    }

    #[test]
    fn render_reports_the_missing_variable() {
        let t = parse("a-{b}").unwrap();
        let err = t.render(&BTreeMap::new()).unwrap_err();
        assert_eq!((err.name.as_str(), err.span.range()), ("b", 2..5));
    }

    #[test]
    fn stray_braces_are_errors() {
        let errs = parse("a{ b } }").unwrap_err();
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].span.range(), 1..6);
        assert_eq!(errs[1].span.range(), 7..8);
        assert!(parse("x{").is_err());
    }
}
