//! Low-level reading of KDL nodes and values into spanned Rust values, recording every problem.
//!
//! Each extractor returns `None` after recording a diagnostic, so callers keep going and the user
//! sees every error of a file at once.

use std::path::Path;
use std::time::Duration;

use kdl::{KdlDocument, KdlEntry, KdlNode, KdlValue};

use crate::diagnostic::Diagnostic;
use crate::model::LocalPath;
use crate::project::Project;
use crate::secret::SecretRef;
use crate::span::{FileId, Span, Spanned};
use crate::suggest::{closest, one_of};
use crate::template::Template;
use crate::units::{self, ByteSize};

/// Decoding context for one file: where spans point and where diagnostics go.
pub(crate) struct Cx<'a> {
    pub file: FileId,
    pub dir: &'a Path,
    pub diags: &'a mut Vec<Diagnostic>,
    /// Local paths must stay inside this project, when given.
    pub project: Option<&'a Project>,
}

impl Cx<'_> {
    pub fn span(&self, s: miette::SourceSpan) -> Span {
        Span::new(self.file, s.offset(), s.offset() + s.len())
    }

    pub fn emit(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    /// A path written in the file, resolved against the file's folder; one outside the project
    /// is an error here (and an `include` of it is not read).
    pub fn local_path(&mut self, written: &str, span: Span) -> LocalPath {
        let path = LocalPath {
            written: written.to_string(),
            span,
            resolved: self.dir.join(written),
        };
        if let Some(project) = self.project
            && !project.contains(&path.resolved)
        {
            self.emit(
                Diagnostic::new(
                    "outside-project",
                    span,
                    format!(
                        "`{written}` is outside the project `{}`",
                        project.root().display()
                    ),
                )
                .label(format!(
                    "resolves to `{}`",
                    project.absolute(&path.resolved).display()
                ))
                .help(
                    "keep the files a pipeline reads inside the project (the repository root, or \
                     the folder given); pass `--allow-outside-project` to read this one anyway",
                ),
            );
        }
        path
    }
}

/// The kind of a KDL value, for "expected X, found Y" messages.
pub fn kind_of(value: &KdlValue) -> &'static str {
    match value {
        KdlValue::String(_) => "a string",
        KdlValue::Integer(_) => "an integer",
        KdlValue::Float(_) => "a number",
        KdlValue::Bool(_) => "a boolean",
        KdlValue::Null => "`#null`",
    }
}

/// One entry's value with its exact span.
#[derive(Clone, Copy)]
pub(crate) struct Val<'a> {
    pub value: &'a KdlValue,
    /// The value's own span (without `key=`).
    pub span: Span,
    /// The whole entry (`key=value`).
    pub entry_span: Span,
    /// The value as written.
    pub repr: &'a str,
    /// The property name, for messages.
    pub key: Option<&'a str>,
}

impl<'a> Val<'a> {
    pub fn of(cx: &Cx<'_>, entry: &'a KdlEntry) -> Val<'a> {
        let entry_span = cx.span(entry.span());
        let repr = entry.format().map(|f| f.value_repr.as_str()).unwrap_or("");
        let span = if !repr.is_empty() && repr.len() <= entry_span.len() {
            Span::new(
                cx.file,
                entry_span.end as usize - repr.len(),
                entry_span.end as usize,
            )
        } else {
            entry_span
        };
        Val {
            value: entry.value(),
            span,
            entry_span,
            repr,
            key: entry.name().map(|n| n.value()),
        }
    }

    fn what(&self) -> String {
        match self.key {
            Some(k) => format!("`{k}`"),
            None => "this argument".to_string(),
        }
    }

    /// Maps a byte range of the decoded string to its span in the file, exactly when the string
    /// was written without escapes, else to the whole value.
    pub fn locate(&self, text: &str, start: usize, end: usize) -> Span {
        let repr = self.repr;
        let offset = if repr == text {
            Some(0)
        } else if repr.len() == text.len() + 2
            && repr.starts_with('"')
            && &repr[1..repr.len() - 1] == text
        {
            Some(1)
        } else {
            let hashes = repr.bytes().take_while(|b| *b == b'#').count();
            let inner = repr.get(hashes + 1..repr.len().saturating_sub(hashes + 1));
            (hashes > 0 && inner == Some(text)).then_some(hashes + 1)
        };
        match offset {
            Some(o) => self.span.sub(o + start, end - start),
            None => self.span,
        }
    }
}

pub(crate) fn expected(cx: &mut Cx<'_>, v: &Val<'_>, what: &str, help: Option<String>) {
    cx.emit(
        Diagnostic::new(
            "wrong-type",
            v.span,
            format!("{} must be {what}, found {}", v.what(), kind_of(v.value)),
        )
        .label(format!("expected {what}"))
        .maybe_help(help),
    );
}

pub(crate) fn string<'a>(cx: &mut Cx<'_>, v: &Val<'a>) -> Option<Spanned<String>> {
    match v.value {
        KdlValue::String(s) => Some(Spanned::new(s.clone(), v.span)),
        other => {
            let help = match other {
                KdlValue::Integer(_) | KdlValue::Float(_) | KdlValue::Bool(_) => Some(format!(
                    "quote it: `\"{}\"`",
                    v.repr.trim_start_matches('#')
                )),
                _ => None,
            };
            expected(cx, v, "a string", help);
            None
        }
    }
}

/// A non-empty string.
pub(crate) fn nonempty(cx: &mut Cx<'_>, v: &Val<'_>) -> Option<Spanned<String>> {
    let s = string(cx, v)?;
    if s.value.trim().is_empty() {
        cx.emit(
            Diagnostic::new(
                "empty-value",
                v.span,
                format!("{} must not be empty", v.what()),
            )
            .label("empty"),
        );
        return None;
    }
    Some(s)
}

pub(crate) fn template(cx: &mut Cx<'_>, v: &Val<'_>) -> Option<Template> {
    let s = string(cx, v)?;
    match Template::parse(&s.value, v.span, &|a, b| v.locate(&s.value, a, b)) {
        Ok(t) => Some(t),
        Err(errors) => {
            for e in errors {
                cx.emit(
                    Diagnostic::new("bad-template", e.span, e.message)
                        .label("here")
                        .help(e.help),
                );
            }
            None
        }
    }
}

pub(crate) fn nonempty_template(cx: &mut Cx<'_>, v: &Val<'_>) -> Option<Template> {
    let t = template(cx, v)?;
    if t.raw.trim().is_empty() {
        cx.emit(
            Diagnostic::new(
                "empty-value",
                v.span,
                format!("{} must not be empty", v.what()),
            )
            .label("empty"),
        );
        return None;
    }
    Some(t)
}

pub(crate) fn boolean(cx: &mut Cx<'_>, v: &Val<'_>) -> Option<Spanned<bool>> {
    match v.value {
        KdlValue::Bool(b) => Some(Spanned::new(*b, v.span)),
        KdlValue::String(s) if s == "true" || s == "false" => {
            expected(
                cx,
                v,
                "a boolean",
                Some(format!("KDL 2 booleans are written `#{s}`")),
            );
            None
        }
        _ => {
            expected(cx, v, "a boolean", Some("write `#true` or `#false`".into()));
            None
        }
    }
}

pub(crate) fn integer(cx: &mut Cx<'_>, v: &Val<'_>, min: u32, max: u32) -> Option<Spanned<u32>> {
    let n = match v.value {
        KdlValue::Integer(n) => *n,
        KdlValue::String(s) if s.parse::<i128>().is_ok() => {
            expected(cx, v, "an integer", Some(format!("drop the quotes: `{s}`")));
            return None;
        }
        _ => {
            expected(
                cx,
                v,
                "an integer",
                Some(format!("a whole number from {min} to {max}")),
            );
            return None;
        }
    };
    if n < i128::from(min) || n > i128::from(max) {
        cx.emit(
            Diagnostic::new(
                "out-of-range",
                v.span,
                format!("{} is {n}, outside {min}..={max}", v.what()),
            )
            .label(format!("must be from {min} to {max}"))
            .help(format!("valid range: {min} to {max}")),
        );
        return None;
    }
    Some(Spanned::new(
        u32::try_from(n).expect("range checked"),
        v.span,
    ))
}

pub(crate) fn size(
    cx: &mut Cx<'_>,
    v: &Val<'_>,
    min: ByteSize,
    max: ByteSize,
) -> Option<Spanned<ByteSize>> {
    let text = match v.value {
        KdlValue::String(s) => s,
        KdlValue::Integer(n) => {
            expected(
                cx,
                v,
                "a size string",
                Some(format!("write the unit: `\"{n}GiB\"` or `\"{n}B\"`")),
            );
            return None;
        }
        _ => {
            expected(cx, v, "a size string", Some("e.g. `\"40GiB\"`".into()));
            return None;
        }
    };
    match units::parse_size(text) {
        Ok(size) if size < min || size > max => {
            cx.emit(
                Diagnostic::new(
                    "out-of-range",
                    v.span,
                    format!(
                        "{} is {text}, {} {}",
                        v.what(),
                        if size < min {
                            "below the minimum of"
                        } else {
                            "above the maximum of"
                        },
                        if size < min { min } else { max }
                    ),
                )
                .label(format!("must be from {min} to {max}"))
                .help(format!("valid range: {min} to {max}")),
            );
            None
        }
        Ok(size) => Some(Spanned::new(size, v.span)),
        Err(e) => {
            cx.emit(
                Diagnostic::new("bad-size", v.span, e.message)
                    .label("not a size")
                    .help(e.help),
            );
            None
        }
    }
}

pub(crate) fn duration(
    cx: &mut Cx<'_>,
    v: &Val<'_>,
    min: Duration,
    max: Duration,
) -> Option<Spanned<Duration>> {
    let text = match v.value {
        KdlValue::String(s) => s,
        KdlValue::Integer(n) => {
            expected(
                cx,
                v,
                "a duration string",
                Some(format!("write the unit: `\"{n}s\"` or `\"{n}m\"`")),
            );
            return None;
        }
        _ => {
            expected(cx, v, "a duration string", Some("e.g. `\"90m\"`".into()));
            return None;
        }
    };
    match units::parse_duration(text) {
        Ok(d) if d < min || d > max => {
            let (lo, hi) = (units::format_duration(min), units::format_duration(max));
            cx.emit(
                Diagnostic::new(
                    "out-of-range",
                    v.span,
                    format!("{} is {text}, outside {lo}..={hi}", v.what()),
                )
                .label(format!("must be from {lo} to {hi}"))
                .help(format!("valid range: {lo} to {hi}")),
            );
            None
        }
        Ok(d) => Some(Spanned::new(d, v.span)),
        Err(e) => {
            cx.emit(
                Diagnostic::new("bad-duration", v.span, e.message)
                    .label("not a duration")
                    .help(e.help),
            );
            None
        }
    }
}

/// A string naming one of `choices`.
pub(crate) fn choice<T: Copy>(
    cx: &mut Cx<'_>,
    v: &Val<'_>,
    choices: &[(&str, T)],
) -> Option<Spanned<T>> {
    let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
    let KdlValue::String(s) = v.value else {
        expected(cx, v, &format!("one of {}", one_of(&names)), None);
        return None;
    };
    if let Some((_, value)) = choices.iter().find(|(n, _)| *n == s) {
        return Some(Spanned::new(*value, v.span));
    }
    let help = match closest(s, names.iter().copied()) {
        Some(c) => format!("did you mean `{c}`? expected {}", one_of(&names)),
        None => format!("expected {}", one_of(&names)),
    };
    cx.emit(
        Diagnostic::new(
            "unknown-value",
            v.span,
            format!("unknown value `{s}` for {}", v.what()),
        )
        .label("unknown value")
        .help(help),
    );
    None
}

/// A node with its entries split into arguments and properties.
pub(crate) struct NodeView<'a> {
    pub node: &'a KdlNode,
    pub name: &'a str,
    pub span: Span,
    pub name_span: Span,
    pub args: Vec<Val<'a>>,
    pub props: Vec<Val<'a>>,
}

impl<'a> NodeView<'a> {
    pub fn new(cx: &mut Cx<'_>, node: &'a KdlNode) -> NodeView<'a> {
        let name_span = cx.span(node.name().span());
        let mut span = cx.span(node.span());
        // kdl includes trailing blanks in a node's span; labels read better without them.
        if let Some(last) = node.entries().last() {
            let end = cx.span(last.span()).end;
            if node.children().is_none() && end > span.start {
                span.end = end;
            }
        } else if node.children().is_none() {
            span.end = name_span.end;
        }
        if let Some(ty) = node.ty() {
            cx.emit(
                Diagnostic::new(
                    "type-annotation",
                    cx.span(ty.span()),
                    format!("type annotation `({})` is not used by kiln", ty.value()),
                )
                .label("remove this")
                .help("kiln infers every type from the node; write the value alone"),
            );
        }
        let mut args = Vec::new();
        let mut props = Vec::new();
        for entry in node.entries() {
            if let Some(ty) = entry.ty() {
                cx.emit(
                    Diagnostic::new(
                        "type-annotation",
                        cx.span(ty.span()),
                        format!("type annotation `({})` is not used by kiln", ty.value()),
                    )
                    .label("remove this")
                    .help("kiln infers every type from the node; write the value alone"),
                );
            }
            let v = Val::of(cx, entry);
            if entry.name().is_some() {
                props.push(v);
            } else {
                args.push(v);
            }
        }
        NodeView {
            node,
            name: node.name().value(),
            span,
            name_span,
            args,
            props,
        }
    }

    /// Reports properties not in `allowed` (with a suggestion) and repeated properties.
    pub fn check_props(&self, cx: &mut Cx<'_>, allowed: &[&str]) {
        for (i, p) in self.props.iter().enumerate() {
            let key = p.key.unwrap_or_default();
            if !allowed.contains(&key) {
                let name_span = Span::new(
                    cx.file,
                    p.entry_span.start as usize,
                    p.entry_span.start as usize + key.len(),
                );
                let help = if allowed.is_empty() {
                    format!("`{}` takes no properties", self.name)
                } else {
                    match closest(key, allowed.iter().copied()) {
                        Some(c) => format!(
                            "did you mean `{c}`? `{}` takes {}",
                            self.name,
                            one_of(allowed)
                        ),
                        None => format!("`{}` takes {}", self.name, one_of(allowed)),
                    }
                };
                cx.emit(
                    Diagnostic::new(
                        "unknown-property",
                        name_span,
                        format!("unknown property `{key}` on `{}`", self.name),
                    )
                    .label("unknown property")
                    .help(help),
                );
                continue;
            }
            if let Some(first) = self.props[..i].iter().find(|q| q.key == p.key) {
                cx.emit(
                    Diagnostic::new(
                        "duplicate-property",
                        p.entry_span,
                        format!("property `{key}` is given twice on `{}`", self.name),
                    )
                    .label("second value")
                    .with(first.entry_span, "first value")
                    .help("keep one of them"),
                );
            }
        }
    }

    /// The first value of property `key` (duplicates are reported by [`Self::check_props`]).
    pub fn prop(&self, key: &str) -> Option<Val<'a>> {
        self.props.iter().find(|p| p.key == Some(key)).copied()
    }

    /// Reports arguments beyond `max`, and fewer than `min` (`what` describes the expected ones).
    pub fn check_args(&self, cx: &mut Cx<'_>, min: usize, max: usize, what: &str) -> bool {
        let mut ok = true;
        for extra in self.args.iter().skip(max) {
            ok = false;
            let message = if max == 0 {
                format!("`{}` takes no arguments", self.name)
            } else {
                format!(
                    "`{}` takes at most {max} argument{}",
                    self.name,
                    if max == 1 { "" } else { "s" }
                )
            };
            cx.emit(
                Diagnostic::new("unexpected-argument", extra.span, message)
                    .label("unexpected argument")
                    .help(format!("`{}` takes {what}", self.name)),
            );
        }
        if self.args.len() < min {
            ok = false;
            cx.emit(
                Diagnostic::new(
                    "missing-argument",
                    self.name_span,
                    format!("`{}` needs {what}", self.name),
                )
                .label("argument missing")
                .help(format!("write `{}` followed by {what}", self.name)),
            );
        }
        ok
    }

    /// Reports a children block on a node that takes none.
    pub fn no_children(&self, cx: &mut Cx<'_>) {
        if let Some(children) = self.node.children() {
            cx.emit(
                Diagnostic::new(
                    "unexpected-children",
                    cx.span(children.span()),
                    format!("`{}` takes no children block", self.name),
                )
                .label("unexpected block")
                .help(format!(
                    "remove the braces; `{}` is configured by its arguments and properties",
                    self.name
                )),
            );
        }
    }

    /// The children, or an empty slice.
    pub fn children(&self) -> &'a [KdlNode] {
        self.node.children().map(KdlDocument::nodes).unwrap_or(&[])
    }

    /// Reports an unknown child node with a suggestion.
    pub fn unknown_child(&self, cx: &mut Cx<'_>, child: &KdlNode, known: &[&str]) {
        let name = child.name().value();
        let help = match closest(name, known.iter().copied()) {
            Some(c) => format!(
                "did you mean `{c}`? `{}` takes {}",
                self.name,
                one_of(known)
            ),
            None => format!("`{}` takes {}", self.name, one_of(known)),
        };
        cx.emit(
            Diagnostic::new(
                "unknown-node",
                cx.span(child.name().span()),
                format!("unknown node `{name}` in `{}`", self.name),
            )
            .label("unknown node")
            .help(help),
        );
    }
}

/// A `secret-name env="VAR"` or `file="path"` node.
pub(crate) fn secret(cx: &mut Cx<'_>, node: &NodeView<'_>) -> Option<SecretRef> {
    node.check_props(cx, &["env", "file"]);
    node.check_args(cx, 0, 0, "`env=\"VAR\"` or `file=\"path\"`");
    node.no_children(cx);
    if let Some(arg) = node.args.first() {
        if arg.value.is_string() {
            cx.emit(
                Diagnostic::new(
                    "inline-secret",
                    arg.span,
                    format!("`{}` must not be written inline", node.name),
                )
                .label("secret written in the file")
                .help(format!(
                    "reference it instead: `{} env=\"VAR\"` or `{} file=\"path\"`; pipeline files get committed",
                    node.name, node.name
                )),
            );
        }
        return None;
    }
    match (node.prop("env"), node.prop("file")) {
        (Some(env), None) => {
            let name = nonempty(cx, &env)?;
            if !name
                .value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
                || name.value.starts_with(|c: char| c.is_ascii_digit())
            {
                cx.emit(
                    Diagnostic::new(
                        "bad-env-name",
                        name.span,
                        format!("`{}` is not an environment variable name", name.value),
                    )
                    .label("not a variable name")
                    .help("use letters, digits and `_`, not starting with a digit"),
                );
                return None;
            }
            Some(SecretRef::Env(name))
        }
        (None, Some(file)) => {
            let path = nonempty(cx, &file)?;
            Some(SecretRef::File(cx.local_path(&path.value, path.span)))
        }
        (Some(env), Some(file)) => {
            cx.emit(
                Diagnostic::new(
                    "conflicting-properties",
                    file.entry_span,
                    format!("`{}` takes `env` or `file`, not both", node.name),
                )
                .label("second source")
                .with(env.entry_span, "first source")
                .help("keep one of them"),
            );
            None
        }
        (None, None) => {
            if node.args.is_empty() {
                cx.emit(
                    Diagnostic::new(
                        "missing-property",
                        node.name_span,
                        format!("`{}` needs `env=\"VAR\"` or `file=\"path\"`", node.name),
                    )
                    .label("no source for the secret")
                    .help("secrets are read from an environment variable or a file at build time"),
                );
            }
            None
        }
    }
}
