//! Showing a plan: the text listing of `kiln plan`, its JSON form ([`PlanJson`], documented in
//! `docs/plan.md`), and the DAG as Graphviz DOT or Mermaid with one cluster per pipeline.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use kiln_syntax::source_map::SourceMap;
use kiln_syntax::units::ByteSize;
use serde::Serialize;

use crate::graph::Plan;
use crate::io::CacheQuery;
use crate::key::{KEY_FORMAT_VERSION, StepKey, ToolVersions};
use crate::step::{
    ExecInputs, HostRequirements, Owner, Step, StepId, StepInput, StepKind, StepParams,
};

/// Identifies the JSON document's shape; changes only with a breaking change of [`PlanJson`].
pub const PLAN_JSON_FORMAT: &str = "kiln-plan/1";

/// `kiln plan --format json`.
#[derive(Debug, Serialize)]
pub struct PlanJson<'a> {
    /// Always [`PLAN_JSON_FORMAT`].
    pub format: &'static str,
    /// [`KEY_FORMAT_VERSION`] the keys were computed with.
    pub key_format_version: u32,
    /// Tool versions that entered the keys.
    pub tools: &'a ToolVersions,
    /// Summary counts.
    pub summary: SummaryJson,
    /// One entry per planned matrix cell (image), parents first.
    pub images: Vec<ImageJson<'a>>,
    /// Every step, producers before consumers.
    pub steps: Vec<StepJson<'a>>,
}

/// Counts.
#[derive(Debug, Serialize)]
pub struct SummaryJson {
    /// Number of steps.
    pub steps: usize,
    /// Steps whose output is cached.
    pub cached: usize,
    /// Planned images (cells), including ancestors pulled in by a selection.
    pub images: usize,
}

/// A planned image (matrix cell).
#[derive(Debug, Serialize)]
pub struct ImageJson<'a> {
    /// Pipeline name as written.
    pub pipeline: &'a str,
    /// Image name (the pipeline name rendered for the cell).
    pub image: &'a str,
    /// `axis=value,...`, empty without a matrix.
    pub cell: &'a str,
    /// The step producing the image (`convert`).
    pub output: &'a StepId,
    /// False for ancestors pulled in by `--only`/`--except`.
    pub selected: bool,
}

/// A step.
#[derive(Debug, Serialize)]
pub struct StepJson<'a> {
    /// Unique id, `<image>/<kind>` of the first image needing it.
    pub id: &'a StepId,
    /// 64 hex digits.
    pub key: &'a StepKey,
    /// Kebab-case kind.
    pub kind: StepKind,
    /// Whether the artifact store holds this key's output.
    pub cached: bool,
    /// Images needing the step (more than one when deduplicated).
    pub owners: &'a [Owner],
    /// Where in the pipeline files it comes from.
    pub location: LocationJson,
    /// Consumed artifacts.
    pub inputs: &'a [StepInput],
    /// Produced artifacts.
    pub outputs: &'static [&'static str],
    /// What a host must offer.
    pub host: &'a HostRequirements,
    /// Kind-specific parameters: exactly what entered the key besides inputs and tools.
    pub params: &'a StepParams,
    /// Execution-only facts (not in the key).
    pub exec: &'a ExecInputs,
}

/// File, 1-based line and column.
#[derive(Debug, Serialize)]
pub struct LocationJson {
    /// As the file was given.
    pub file: String,
    /// Line.
    pub line: usize,
    /// Column in characters.
    pub column: usize,
}

/// The JSON form of a plan.
pub fn to_json<'a>(plan: &'a Plan, cache: &dyn CacheQuery, sources: &SourceMap) -> PlanJson<'a> {
    let steps: Vec<StepJson<'a>> = plan
        .steps()
        .map(|s| {
            let loc = sources.location(s.span);
            StepJson {
                id: &s.id,
                key: &s.key,
                kind: s.kind(),
                cached: cache.is_cached(&s.key),
                owners: &s.owners,
                location: LocationJson {
                    file: loc.file,
                    line: loc.line,
                    column: loc.column,
                },
                inputs: &s.inputs,
                outputs: s.outputs(),
                host: &s.host,
                params: &s.params,
                exec: &s.exec,
            }
        })
        .collect();
    let cached = steps.iter().filter(|s| s.cached).count();
    PlanJson {
        format: PLAN_JSON_FORMAT,
        key_format_version: KEY_FORMAT_VERSION,
        tools: plan.tools(),
        summary: SummaryJson {
            steps: steps.len(),
            cached,
            images: plan.cells().len(),
        },
        images: plan
            .cells()
            .iter()
            .map(|c| ImageJson {
                pipeline: &c.owner.pipeline,
                image: &c.owner.image,
                cell: &c.owner.cell,
                output: &c.output,
                selected: c.selected,
            })
            .collect(),
        steps,
    }
}

fn host_text(h: &HostRequirements) -> String {
    let mut parts = Vec::new();
    if let Some(vm) = &h.vm {
        let mut vm_parts = vec![
            format!("{} cpus", vm.cpus),
            ByteSize(vm.memory_bytes).to_string(),
            vm.firmware.to_string(),
        ];
        if vm.secure_boot {
            vm_parts.push("secure boot".into());
        }
        if vm.tpm {
            vm_parts.push("tpm".into());
        }
        parts.push(format!("vm ({})", vm_parts.join(", ")));
    }
    if h.qemu_img {
        parts.push("qemu-img".into());
    }
    if h.network {
        parts.push("network".into());
    }
    if parts.is_empty() {
        "local".into()
    } else {
        parts.join(", ")
    }
}

fn owners_text(owners: &[Owner]) -> String {
    let names: Vec<&str> = owners.iter().map(|o| o.image.as_str()).collect();
    if names.len() <= 4 {
        names.join(", ")
    } else {
        format!("{}, … ({} images)", names[..3].join(", "), names.len())
    }
}

/// What a step is about, in a few words (for the listing and graph labels).
pub fn summary(step: &Step) -> String {
    use crate::step::OriginParams;
    let origin = |o: &OriginParams| match o {
        OriginParams::Local { path, .. } => path.clone(),
        OriginParams::Url { url } => url.clone(),
        OriginParams::Glance { image, .. } => format!("glance:{image}"),
    };
    match &step.params {
        StepParams::FetchSource(p) => origin(&p.origin),
        StepParams::FetchDrivers(p) => format!("{} ({})", origin(&p.origin), p.driver_kind),
        StepParams::CreateDisk(p) => format!("{} {}", ByteSize(p.size_bytes), p.format),
        StepParams::AnswerMedia(p) => match &p.windows {
            Some(w) => format!("{} {} {}", p.method, w.version, w.language),
            None => p.method.to_string(),
        },
        StepParams::Install(p) => format!("{} on {}", p.method, p.machine.firmware),
        StepParams::CustomizeSeed(p) => format!("{}, {} actions", p.agent, p.actions.len()),
        StepParams::Customize(p) => p.agent.to_string(),
        StepParams::BootTest(p) => {
            if p.expect.is_empty() {
                "agent success message".into()
            } else {
                format!("{} expected lines", p.expect.len())
            }
        }
        StepParams::Convert(p) => format!("{}, compression {}", p.format, p.compression),
        StepParams::Publish(p) => format!("glance `{}` ({})", p.name, p.visibility),
    }
}

/// The listing `kiln plan` prints.
pub fn to_text(plan: &Plan, cache: &dyn CacheQuery, sources: &SourceMap) -> String {
    let cached = plan.steps().filter(|s| cache.is_cached(&s.key)).count();
    let mut out = String::new();
    let qemu_img = plan.tools().qemu_img.as_deref().unwrap_or("absent");
    let plural = |n: usize, word: &str| {
        if n == 1 {
            format!("{n} {word}")
        } else {
            format!("{n} {word}s")
        }
    };
    let _ = writeln!(
        out,
        "{} for {}, {cached} cached (key format v{KEY_FORMAT_VERSION}, qemu-img {qemu_img})",
        plural(plan.len(), "step"),
        plural(plan.cells().len(), "image"),
    );
    for step in plan.steps() {
        let loc = sources.location(step.span);
        let mark = if cache.is_cached(&step.key) {
            "cached"
        } else {
            "to build"
        };
        let _ = writeln!(out, "\n{}  [{}]  {mark}", step.id, summary(step));
        let _ = writeln!(out, "  key      {}", step.key);
        if step.inputs.is_empty() {
            let _ = writeln!(out, "  inputs   none");
        } else {
            for (i, input) in step.inputs.iter().enumerate() {
                let head = if i == 0 { "inputs" } else { "" };
                let _ = writeln!(
                    out,
                    "  {head:<8} {} ← {} ({})",
                    input.role, input.step, input.artifact
                );
            }
        }
        let _ = writeln!(out, "  outputs  {}", step.outputs().join(", "));
        let _ = writeln!(out, "  host     {}", host_text(&step.host));
        let _ = writeln!(out, "  for      {}", owners_text(&step.owners));
        let _ = writeln!(out, "  at       {}:{}:{}", loc.file, loc.line, loc.column);
    }
    out
}

/// Graph output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphFormat {
    /// Graphviz DOT.
    Dot,
    /// Mermaid flowchart.
    Mermaid,
}

/// Steps grouped by pipeline: `Some(pipeline)` when all owners share one, `None` for shared steps.
/// Steps (with their position) by cluster: `Some((pipeline index, name))`, or `None` when shared.
type Clusters<'a> = BTreeMap<Option<(usize, String)>, Vec<(usize, &'a Step)>>;

fn clusters(plan: &Plan) -> Clusters<'_> {
    let mut out: Clusters<'_> = BTreeMap::new();
    for (i, step) in plan.steps().enumerate() {
        let first = &step.owners[0];
        let shared = step
            .owners
            .iter()
            .any(|o| o.pipeline_index != first.pipeline_index);
        let cluster = (!shared).then(|| (first.pipeline_index, first.pipeline.clone()));
        out.entry(cluster).or_default().push((i, step));
    }
    out
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn mermaid_escape(s: &str) -> String {
    s.replace('"', "#quot;")
        .replace('<', "#lt;")
        .replace('>', "#gt;")
}

/// Renders the DAG; cached steps are drawn filled.
pub fn to_graph(plan: &Plan, format: GraphFormat, cache: &dyn CacheQuery) -> String {
    let groups = clusters(plan);
    let graph = plan.graph();
    let mut edge_list: Vec<(usize, usize, &str)> = graph
        .edge_indices()
        .filter_map(|e| {
            let (a, b) = graph.edge_endpoints(e)?;
            Some((a.index(), b.index(), graph[e]))
        })
        .collect();
    edge_list.sort();
    let label = |s: &Step| format!("{}\n{}", s.id, s.key.short());
    let mut out = String::new();
    match format {
        GraphFormat::Dot => {
            out.push_str(
                "digraph kiln {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n",
            );
            for (n, (cluster, steps)) in groups.iter().enumerate() {
                let indent = if cluster.is_some() { "    " } else { "  " };
                if let Some((_, name)) = cluster {
                    let _ = writeln!(
                        out,
                        "  subgraph \"cluster_{n}\" {{\n    label=\"{}\";",
                        dot_escape(name)
                    );
                }
                for (i, step) in steps {
                    let style = if cache.is_cached(&step.key) {
                        ", style=filled, fillcolor=\"#d9f2d9\""
                    } else {
                        ""
                    };
                    let _ = writeln!(
                        out,
                        "{indent}n{i} [label=\"{}\"{style}];",
                        dot_escape(&label(step)).replace('\n', "\\n")
                    );
                }
                if cluster.is_some() {
                    out.push_str("  }\n");
                }
            }
            for (from, to, role) in &edge_list {
                let _ = writeln!(out, "  n{from} -> n{to} [label=\"{role}\"];");
            }
            out.push_str("}\n");
        }
        GraphFormat::Mermaid => {
            out.push_str("flowchart LR\n");
            for (n, (cluster, steps)) in groups.iter().enumerate() {
                let indent = if cluster.is_some() { "    " } else { "  " };
                if let Some((_, name)) = cluster {
                    let _ = writeln!(out, "  subgraph p{n}[\"{}\"]", mermaid_escape(name));
                }
                for (i, step) in steps {
                    let _ = writeln!(
                        out,
                        "{indent}n{i}[\"{}\"]",
                        mermaid_escape(&label(step)).replace('\n', "<br/>")
                    );
                }
                if cluster.is_some() {
                    out.push_str("  end\n");
                }
            }
            for (from, to, role) in &edge_list {
                let _ = writeln!(out, "  n{from} -->|{role}| n{to}");
            }
            let cached: Vec<String> = plan
                .steps()
                .enumerate()
                .filter(|(_, s)| cache.is_cached(&s.key))
                .map(|(i, _)| format!("n{i}"))
                .collect();
            if !cached.is_empty() {
                out.push_str("  classDef cached fill:#d9f2d9\n");
                let _ = writeln!(out, "  class {} cached", cached.join(","));
            }
        }
    }
    out
}
