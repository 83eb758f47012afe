//! `--only` / `--except` selectors: which cells the user wants built.
//!
//! A selector is `NAME` or `NAME[axis=value,...]`. `NAME` matches a pipeline by its name as written
//! (`ws2022-{language}`: all its cells) or a single cell by its image name (`ws2022-de-DE`). The
//! bracket part keeps the cells whose axes have those values (`ws2022-{language}[language=de-DE]`).
//! `--only` keeps the cells any selector matches (all when none is given), then `--except` drops
//! the cells any of its selectors match. The plan holds the kept cells' steps and exactly the steps
//! they depend on (a parent image's steps up to its output, not its boot test or publish).

use kiln_syntax::diagnostic::Diagnostic;

use crate::cells::Cell;
use crate::suggest::closest;

/// A parsed selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    /// As given.
    pub text: String,
    /// Pipeline name as written, or image name.
    pub name: String,
    /// `axis=value` conditions.
    pub axes: Vec<(String, String)>,
}

/// A selector that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("selector `{text}` is not `NAME` or `NAME[axis=value,...]`: {reason}")]
pub struct BadSelector {
    /// As given.
    pub text: String,
    /// What is wrong.
    pub reason: &'static str,
}

impl Selector {
    /// Parses `NAME` or `NAME[axis=value,...]`.
    pub fn parse(text: &str) -> Result<Selector, BadSelector> {
        let bad = |reason| BadSelector {
            text: text.to_string(),
            reason,
        };
        let (name, axes) = match text.find('[') {
            // A `[` inside braces belongs to the name template; selectors' brackets come last.
            Some(open) if text.ends_with(']') => {
                let inner = &text[open + 1..text.len() - 1];
                let mut axes = Vec::new();
                for part in inner.split(',') {
                    let (axis, value) = part
                        .split_once('=')
                        .ok_or_else(|| bad("each condition is `axis=value`"))?;
                    let (axis, value) = (axis.trim(), value.trim());
                    if axis.is_empty() || value.is_empty() {
                        return Err(bad("each condition is `axis=value`"));
                    }
                    axes.push((axis.to_string(), value.to_string()));
                }
                (&text[..open], axes)
            }
            Some(_) => return Err(bad("`[` without a closing `]` at the end")),
            None => (text, Vec::new()),
        };
        if name.is_empty() {
            return Err(bad("the name is empty"));
        }
        Ok(Selector {
            text: text.to_string(),
            name: name.to_string(),
            axes,
        })
    }

    /// Whether the cell is selected.
    pub(crate) fn matches(&self, cell: &Cell<'_>) -> bool {
        let named = self.name == cell.owner.pipeline || self.name == cell.owner.image;
        named
            && self.axes.iter().all(|(axis, value)| {
                cell.vars
                    .get(axis)
                    .is_some_and(|v| v == value && is_axis(cell, axis))
            })
    }
}

fn is_axis(cell: &Cell<'_>, axis: &str) -> bool {
    cell.pipeline
        .matrix
        .as_ref()
        .is_some_and(|m| m.axes.iter().any(|a| a.name.value == axis))
}

/// Which cells are selected; reports selectors that don't parse or match nothing.
pub(crate) fn select(
    cells: &[Cell<'_>],
    only: &[String],
    except: &[String],
    diags: &mut Vec<Diagnostic>,
) -> Vec<bool> {
    let mut parse = |texts: &[String], flag: &str| -> Vec<Selector> {
        let mut out = Vec::new();
        for text in texts {
            match Selector::parse(text) {
                Ok(s) => out.push(s),
                Err(e) => diags.push(
                    Diagnostic::global("bad-selector", format!("{flag}: {e}"))
                        .help("write a pipeline name, an image name, or `name[axis=value]`"),
                ),
            }
        }
        out
    };
    let only = parse(only, "--only");
    let except = parse(except, "--except");
    for (flag, selectors) in [("--only", &only), ("--except", &except)] {
        for s in selectors {
            if cells.iter().any(|c| s.matches(c)) {
                continue;
            }
            let names = cells
                .iter()
                .flat_map(|c| [c.owner.pipeline.as_str(), c.owner.image.as_str()]);
            let help = match closest(&s.name, names) {
                Some(n) if n != s.name => format!("did you mean `{n}`?"),
                _ => "name a pipeline as written, an image, or `name[axis=value]`; `kiln plan` lists them".into(),
            };
            diags.push(
                Diagnostic::global(
                    "unknown-selector",
                    format!("{flag} `{}` matches no pipeline or cell", s.text),
                )
                .help(help),
            );
        }
    }
    cells
        .iter()
        .map(|c| {
            (only.is_empty() || only.iter().any(|s| s.matches(c)))
                && !except.iter().any(|s| s.matches(c))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse_names_and_axis_conditions() {
        let s = Selector::parse("ws2022-{language}[language=de-DE, edition=core]").unwrap();
        assert_eq!(s.name, "ws2022-{language}");
        assert_eq!(
            s.axes,
            [
                ("language".to_string(), "de-DE".to_string()),
                ("edition".to_string(), "core".to_string())
            ]
        );
        assert_eq!(Selector::parse("debian-12").unwrap().axes, []);
        assert!(Selector::parse("x[language]").is_err());
        assert!(Selector::parse("x[a=b").is_err());
        assert!(Selector::parse("[a=b]").is_err());
    }
}
