//! The entry point: pipelines → validated [`Plan`], or every problem at once.

use std::collections::HashSet;

use kiln_syntax::diagnostic::{self, Diagnostic};
use kiln_syntax::model::Pipeline;

use crate::cells::{check_cycles, check_publish, expand, parent_first_order, resolve_parents};
use crate::graph::{Builder, Plan, PlannedCell};
use crate::io::ContentDigest;
use crate::key::ToolVersions;
use crate::lower::{CellCx, lower_cell};
use crate::step::StepId;

/// Default for [`PlanOptions::max_cells`].
pub const DEFAULT_MAX_CELLS: usize = 256;

/// How to plan.
#[derive(Clone, Debug)]
pub struct PlanOptions {
    /// A pipeline whose matrix has more cells is an error (a typo'd axis can explode a build).
    pub max_cells: usize,
    /// `--only` selectors (see [`crate::Selector`]); empty means all.
    pub only: Vec<String>,
    /// `--except` selectors.
    pub except: Vec<String>,
    /// Tool versions entering the keys.
    pub tools: ToolVersions,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            max_cells: DEFAULT_MAX_CELLS,
            only: Vec::new(),
            except: Vec::new(),
            tools: ToolVersions::default(),
        }
    }
}

/// Plans `pipelines` (as loaded by kiln-syntax, without errors). Local files are identified by
/// `digests`. Returns every problem found, sorted by location, when any.
pub fn plan(
    pipelines: &[Pipeline],
    options: &PlanOptions,
    digests: &dyn ContentDigest,
) -> Result<Plan, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let (mut cells, skipped) = expand(pipelines, options.max_cells, &mut diags);
    resolve_parents(&mut cells, skipped, &mut diags);
    check_cycles(&mut cells, &mut diags);
    check_publish(&cells, &mut diags);
    let selected = crate::select::select(&cells, &options.only, &options.except, &mut diags);
    let filtered = !options.only.is_empty() || !options.except.is_empty();

    let mut builder = Builder::new(options.tools.clone());
    let mut outputs = vec![None; cells.len()];
    for i in parent_first_order(&cells, &selected) {
        let cell = &cells[i];
        let parent = match cell.parent {
            Some(p) => match outputs[p] {
                Some(ix) => Some(ix),
                // The parent failed; its problem is reported.
                None => continue,
            },
            None => None,
        };
        let mut cx = CellCx {
            pipeline: cell.pipeline,
            owner: &cell.owner,
            vars: &cell.vars,
            digests,
            diags: &mut diags,
            failed: false,
        };
        outputs[i] = lower_cell(&mut builder, &mut cx, parent);
        if let Some(ix) = outputs[i] {
            let output = builder.id(ix).clone();
            builder.cell(PlannedCell {
                owner: cell.owner.clone(),
                output,
                selected: selected[i],
            });
        }
    }
    if !diags.is_empty() {
        diagnostic::sort(&mut diags);
        return Err(diags);
    }
    let mut plan = builder.finish();
    if filtered {
        // Keep the selected cells' steps and their ancestors only.
        let wanted: HashSet<(usize, &str)> = cells
            .iter()
            .zip(&selected)
            .filter(|(_, sel)| **sel)
            .map(|(c, _)| (c.owner.pipeline_index, c.owner.cell.as_str()))
            .collect();
        let roots: Vec<StepId> = plan
            .steps()
            .filter(|s| {
                s.owners
                    .iter()
                    .any(|o| wanted.contains(&(o.pipeline_index, o.cell.as_str())))
            })
            .map(|s| s.id.clone())
            .collect();
        plan.retain_ancestors_of(&roots);
    }
    Ok(plan)
}
