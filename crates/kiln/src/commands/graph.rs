//! `kiln graph`: the planned step DAG as Graphviz DOT or Mermaid, one cluster per pipeline,
//! cached steps filled.

use crate::cli::{GlobalArgs, GraphArgs, GraphFormat};
use crate::exit_codes;

/// Runs `kiln graph`.
pub fn run(global: &GlobalArgs, args: &GraphArgs) -> u8 {
    let (_, plan, cache) = match super::plan::plan_pipelines(global, &args.pipelines, &args.select)
    {
        Ok(x) => x,
        Err(status) => return status,
    };
    let format = match args.format {
        GraphFormat::Dot => kiln_plan::GraphFormat::Dot,
        GraphFormat::Mermaid => kiln_plan::GraphFormat::Mermaid,
    };
    print!("{}", kiln_plan::to_graph(&plan, format, &cache));
    exit_codes::SUCCESS
}
