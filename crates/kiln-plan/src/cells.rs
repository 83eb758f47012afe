//! Matrix cells and the checks on them that need no step: matrix explosions, image-name clashes,
//! `from` parents (missing ones with "did you mean", cycles naming the edge to cut) and conflicting
//! publish targets. Every problem is recorded; the planner goes on with the cells that are sound.

use std::collections::{BTreeMap, HashMap, HashSet};

use kiln_syntax::diagnostic::Diagnostic;
use kiln_syntax::model::{MatrixCell, Pipeline};
use kiln_syntax::span::Span;
use petgraph::algo::tarjan_scc;
use petgraph::graph::DiGraph;

use crate::step::Owner;
use crate::suggest::closest;

/// One matrix cell of one pipeline, with its variables rendered.
#[derive(Clone, Debug)]
pub(crate) struct Cell<'a> {
    pub pipeline: &'a Pipeline,
    pub owner: Owner,
    pub vars: BTreeMap<String, String>,
    /// The parent cell (index into the cell list) for `from` pipelines, once resolved.
    pub parent: Option<usize>,
    /// True when this cell cannot be planned (bad parent, cycle, …).
    pub broken: bool,
}

/// Expands every pipeline into cells, reporting matrices above `max_cells` and image-name clashes.
/// Returns the cells and whether a pipeline was left unexpanded.
pub(crate) fn expand<'a>(
    pipelines: &'a [Pipeline],
    max_cells: usize,
    diags: &mut Vec<Diagnostic>,
) -> (Vec<Cell<'a>>, bool) {
    let mut cells = Vec::new();
    let mut skipped = false;
    let mut names: HashMap<String, (Span, String)> = HashMap::new();
    for (index, pipeline) in pipelines.iter().enumerate() {
        if let Some(matrix) = &pipeline.matrix {
            let n = matrix.len();
            if n > max_cells {
                let sizes: Vec<String> = matrix
                    .axes
                    .iter()
                    .map(|a| format!("{} `{}`", a.values.len(), a.name.value))
                    .collect();
                diags.push(
                    Diagnostic::new(
                        "matrix-too-large",
                        matrix.span,
                        format!(
                            "matrix of `{}` has {n} cells, more than the limit of {max_cells}",
                            pipeline.name.raw
                        ),
                    )
                    .label(format!("{} cells", sizes.join(" × ")))
                    .help("split the pipeline, drop axis values, or raise the limit with `--max-cells`"),
                );
                skipped = true;
                continue;
            }
        }
        for cell in pipeline.cells() {
            let vars = match pipeline.vars_for(&cell) {
                Ok(vars) => vars,
                Err(e) => {
                    diags.push(
                        Diagnostic::new(
                            "unrendered-variable",
                            e.span,
                            format!("variable `{}` has no value", e.name),
                        )
                        .label("no value")
                        .help(format!("give it one with `--var {}=...`", e.name)),
                    );
                    continue;
                }
            };
            let image = vars.get("pipeline").cloned().unwrap_or_default();
            let label = cell_label(&cell);
            if let Some((first_span, first_cell)) = names.get(&image) {
                let which = |c: &str| {
                    if c.is_empty() {
                        String::new()
                    } else {
                        format!(" (cell `{c}`)")
                    }
                };
                diags.push(
                    Diagnostic::new(
                        "duplicate-image-name",
                        pipeline.name.span,
                        format!("two pipelines make an image named `{image}`"),
                    )
                    .label(format!("`{image}` again{}", which(&label)))
                    .with(*first_span, format!("first made here{}", which(first_cell)))
                    .help(
                        "image names must be unique: use the matrix axes in the name or rename one",
                    ),
                );
                continue;
            }
            names.insert(image.clone(), (pipeline.name.span, label.clone()));
            cells.push(Cell {
                pipeline,
                owner: Owner {
                    pipeline: pipeline.name.raw.clone(),
                    image,
                    cell: label,
                    pipeline_index: index,
                },
                vars,
                parent: None,
                broken: false,
            });
        }
    }
    (cells, skipped)
}

fn cell_label(cell: &MatrixCell) -> String {
    cell.label()
}

/// Finds each `from` cell's parent; reports missing parents (unless `quiet`, when a skipped
/// pipeline might have been the parent).
pub(crate) fn resolve_parents(cells: &mut [Cell<'_>], quiet: bool, diags: &mut Vec<Diagnostic>) {
    let by_name: HashMap<String, usize> = cells
        .iter()
        .enumerate()
        .map(|(i, c)| (c.owner.image.clone(), i))
        .collect();
    let mut reported: HashSet<(Span, String)> = HashSet::new();
    for cell in cells.iter_mut() {
        let Some(from) = &cell.pipeline.from else {
            continue;
        };
        let parent = match from.name.render(&cell.vars) {
            Ok(p) => p,
            Err(e) => {
                diags.push(
                    Diagnostic::new(
                        "unrendered-variable",
                        e.span,
                        format!("variable `{}` has no value", e.name),
                    )
                    .label("no value"),
                );
                cell.broken = true;
                continue;
            }
        };
        match by_name.get(&parent) {
            Some(&p) => cell.parent = Some(p),
            None => {
                cell.broken = true;
                if quiet || !reported.insert((from.name.span, parent.clone())) {
                    continue;
                }
                let suggestion = closest(&parent, by_name.keys().map(String::as_str));
                let help = match suggestion {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "`from` names the image of another pipeline (its name rendered for a matrix cell)".to_string(),
                };
                diags.push(
                    Diagnostic::new(
                        "missing-parent",
                        from.name.span,
                        format!("no pipeline makes an image named `{parent}`"),
                    )
                    .label("unknown parent")
                    .help(help),
                );
            }
        }
    }
}

/// Reports `from` cycles, one diagnostic per cycle of pipelines, naming the edge to cut; marks
/// every cell on a cycle broken.
pub(crate) fn check_cycles(cells: &mut [Cell<'_>], diags: &mut Vec<Diagnostic>) {
    let mut graph = DiGraph::<usize, ()>::with_capacity(cells.len(), cells.len());
    let nodes: Vec<_> = (0..cells.len()).map(|i| graph.add_node(i)).collect();
    for (i, c) in cells.iter().enumerate() {
        if let Some(p) = c.parent {
            graph.add_edge(nodes[i], nodes[p], ());
        }
    }
    let mut reported: HashSet<Vec<Span>> = HashSet::new();
    for scc in tarjan_scc(&graph) {
        let members: Vec<usize> = scc.iter().map(|n| graph[*n]).collect();
        let cyclic = members.len() > 1 || cells[members[0]].parent == Some(members[0]);
        if !cyclic {
            continue;
        }
        for &m in &members {
            cells[m].broken = true;
        }
        // The edge to cut: the `from` written last (by file, then position) among the cycle.
        let cut = *members
            .iter()
            .max_by_key(|&&m| {
                let s = from_span(&cells[m]);
                (s.file, s.start, std::cmp::Reverse(m))
            })
            .expect("non-empty scc");
        let mut chain = vec![cut];
        let mut at = cells[cut].parent.expect("on a cycle");
        while at != cut && chain.len() <= members.len() {
            chain.push(at);
            at = cells[at].parent.expect("on a cycle");
        }
        let mut spans: Vec<Span> = chain.iter().map(|&m| from_span(&cells[m])).collect();
        spans.sort();
        spans.dedup();
        if !reported.insert(spans) {
            continue;
        }
        let names: Vec<String> = chain
            .iter()
            .chain(std::iter::once(&cut))
            .map(|&m| format!("`{}`", cells[m].owner.image))
            .collect();
        let parent = cells[cut].parent.expect("on a cycle");
        let mut d = Diagnostic::new(
            "from-cycle",
            from_span(&cells[cut]),
            format!("images build on each other in a cycle: {}", names.join(" → ")),
        )
        .label(format!(
            "cut this edge: `{}` builds on `{}`",
            cells[cut].owner.image, cells[parent].owner.image
        ))
        .help(format!(
            "remove this `from` (give `{}` a `source` and `install`), or point it at an image outside the cycle",
            cells[cut].owner.image
        ));
        let mut seen = HashSet::from([from_span(&cells[cut])]);
        for &m in &chain[1..] {
            let span = from_span(&cells[m]);
            if seen.insert(span) {
                let p = cells[m].parent.expect("on a cycle");
                d = d.with(
                    span,
                    format!(
                        "`{}` builds on `{}`",
                        cells[m].owner.image, cells[p].owner.image
                    ),
                );
            }
        }
        diags.push(d);
    }
    // Children of broken cells cannot be planned either (their problem is already reported).
    let mut changed = true;
    while changed {
        changed = false;
        for i in 0..cells.len() {
            if !cells[i].broken
                && let Some(p) = cells[i].parent
                && cells[p].broken
            {
                cells[i].broken = true;
                changed = true;
            }
        }
    }
}

fn from_span(cell: &Cell<'_>) -> Span {
    cell.pipeline
        .from
        .as_ref()
        .map(|f| f.name.span)
        .unwrap_or(cell.pipeline.name.span)
}

/// Reports two cells publishing to the same Glance image name on the same cloud.
pub(crate) fn check_publish(cells: &[Cell<'_>], diags: &mut Vec<Diagnostic>) {
    let mut targets: HashMap<(Option<String>, String), (usize, Span)> = HashMap::new();
    let mut reported: HashSet<(Span, Span)> = HashSet::new();
    for (i, cell) in cells.iter().enumerate() {
        let Some(publish) = &cell.pipeline.publish else {
            continue;
        };
        let Ok(name) = publish.name.render(&cell.vars) else {
            continue;
        };
        let cloud = publish.cloud.as_ref().map(|c| c.value.clone());
        let target = (cloud.clone(), name.clone());
        match targets.get(&target) {
            None => {
                targets.insert(target, (i, publish.name.span));
            }
            Some(&(first, first_span)) => {
                if !reported.insert((first_span, publish.name.span)) {
                    continue;
                }
                let who = |c: &Cell<'_>| {
                    if c.owner.cell.is_empty() {
                        format!("`{}`", c.owner.image)
                    } else {
                        format!("`{}` (cell `{}`)", c.owner.image, c.owner.cell)
                    }
                };
                let on = match &cloud {
                    Some(c) => format!(" on cloud `{c}`"),
                    None => String::new(),
                };
                diags.push(
                    Diagnostic::new(
                        "conflicting-publish",
                        publish.name.span,
                        format!("two images are published as `{name}`{on}"),
                    )
                    .label(format!("{} publishes `{name}`", who(cell)))
                    .with(first_span, format!("{} publishes `{name}` too", who(&cells[first])))
                    .help("each published image needs its own name: add the matrix axes to `publish name=`"),
                );
            }
        }
    }
}

/// Cells in an order where every parent comes before its children (broken cells left out).
pub(crate) fn parent_first_order(cells: &[Cell<'_>], wanted: &[bool]) -> Vec<usize> {
    let mut order = Vec::with_capacity(cells.len());
    let mut state = vec![0u8; cells.len()];
    for start in 0..cells.len() {
        if !wanted[start] || cells[start].broken {
            continue;
        }
        let mut stack = vec![(start, false)];
        while let Some((i, expanded)) = stack.pop() {
            if expanded {
                if state[i] != 2 {
                    state[i] = 2;
                    order.push(i);
                }
                continue;
            }
            if state[i] != 0 {
                continue;
            }
            state[i] = 1;
            stack.push((i, true));
            if let Some(p) = cells[i].parent
                && state[p] == 0
            {
                stack.push((p, false));
            }
        }
    }
    order
}
