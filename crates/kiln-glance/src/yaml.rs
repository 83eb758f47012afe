//! clouds.yaml and secure.yaml text → JSON values, with YAML alias expansion bounded before
//! anything is expanded (a "billion laughs" file is refused, ordinary anchors work).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// The most nodes a clouds.yaml may hold once its aliases are expanded. Real files have a few
/// hundred; a "billion laughs" file (aliases of aliases) would expand exponentially.
pub const MAX_YAML_NODES: u64 = 100_000;

/// Deepest nesting of sequences and mappings read (clouds.yaml uses four levels): deeper
/// documents would overflow the stack when converted or dropped.
pub const MAX_YAML_NESTING: usize = 64;

/// Counts the nodes of `text` with every alias expanded, from the parser's events (nothing is
/// expanded, nothing recurses); `Err` once the count passes [`MAX_YAML_NODES`] or sequences and
/// mappings nest deeper than [`MAX_YAML_NESTING`].
fn expanded_nodes(text: &str) -> Result<u64, String> {
    use yaml_rust2::Event;
    use yaml_rust2::parser::Parser;
    let mut parser = Parser::new_from_str(text);
    let mut anchors: BTreeMap<usize, u64> = BTreeMap::new();
    // One frame per open sequence or mapping: its anchor and its node count so far.
    let mut open: Vec<(usize, u64)> = vec![(0, 0)];
    loop {
        let (event, mark) = parser.next_token().map_err(|e| e.to_string())?;
        let (anchor, size) = match event {
            Event::StreamEnd => break,
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                open.push((anchor, 1));
                if open.len() - 1 > MAX_YAML_NESTING {
                    return Err(format!(
                        "sequences and mappings nested more than {MAX_YAML_NESTING} levels deep at line {} column {}",
                        mark.line(),
                        mark.col() + 1
                    ));
                }
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => match open.pop() {
                Some(frame) if !open.is_empty() => frame,
                _ => continue,
            },
            Event::Scalar(_, _, anchor, _) => (anchor, 1),
            Event::Alias(id) => (0, anchors.get(&id).copied().unwrap_or(1)),
            _ => continue,
        };
        if anchor > 0 {
            anchors.insert(anchor, size);
        }
        if let Some(parent) = open.last_mut() {
            parent.1 = parent.1.saturating_add(size);
        }
        let total: u64 = open.iter().map(|f| f.1).fold(0, u64::saturating_add);
        if total > MAX_YAML_NODES {
            return Err(format!(
                "line {}: its aliases expand to more than {MAX_YAML_NODES} values; kiln refuses \
                 such files (a \"billion laughs\" file would exhaust memory)",
                mark.line()
            ));
        }
    }
    Ok(open.iter().map(|f| f.1).sum())
}

/// Parses one YAML document into a JSON value (clouds.yaml uses no YAML-only features). Aliases
/// are expanded, up to [`MAX_YAML_NODES`] values in all.
pub(crate) fn yaml_to_json(text: &str) -> Result<Value, String> {
    use yaml_rust2::{Yaml, YamlLoader};
    expanded_nodes(text)?;
    fn convert(y: &Yaml) -> Result<Value, String> {
        Ok(match y {
            Yaml::Null => Value::Null,
            Yaml::Boolean(b) => Value::Bool(*b),
            Yaml::Integer(i) => Value::from(*i),
            Yaml::Real(r) => r
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map_or_else(|| Value::String(r.clone()), Value::Number),
            Yaml::String(s) => Value::String(s.clone()),
            Yaml::Array(a) => Value::Array(a.iter().map(convert).collect::<Result<_, _>>()?),
            Yaml::Hash(h) => {
                let mut m = Map::new();
                for (k, v) in h {
                    let key = match k {
                        Yaml::String(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        Yaml::Boolean(b) => b.to_string(),
                        other => return Err(format!("unsupported mapping key `{other:?}`")),
                    };
                    m.insert(key, convert(v)?);
                }
                Value::Object(m)
            }
            Yaml::Alias(_) | Yaml::BadValue => return Err("unsupported YAML alias".to_owned()),
        })
    }
    let docs = YamlLoader::load_from_str(text).map_err(|e| e.to_string())?;
    match docs.first() {
        Some(doc) => convert(doc),
        None => Ok(Value::Object(Map::new())),
    }
}
