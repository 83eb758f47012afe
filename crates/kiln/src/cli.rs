//! The command line as clap structs; no logic here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const AFTER_HELP: &str = "\
Examples:
  kiln check                       check every pipeline in pipelines/
  kiln check --format json a.kdl   machine-readable diagnostics
  kiln check --var version=12.9    override a variable
  kiln fmt --check                 fail when a file is not formatted

Exit codes: 0 ok, 1 invalid pipelines, 2 usage, 3 not formatted, 4 I/O error.
Docs: docs/cli.md and docs/pipeline-language.md";

/// kiln — declarative image pipelines for OpenStack.
///
/// Pipeline files (KDL) declare images: installer ISO, drivers, disk, unattended install,
/// cloud-init / cloudbase-init steps, boot test and the Glance target. kiln checks them,
/// plans them into cached steps and builds them.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, propagate_version = true, after_help = AFTER_HELP)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// When to use colours in diagnostics.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    pub color: ColorChoice,
}

/// When to colour output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// Colour when stderr is a terminal and `NO_COLOR` is unset.
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

/// kiln's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check pipeline files: syntax, types, references; all errors at once.
    Check(CheckArgs),
    /// Format pipeline files canonically, keeping comments.
    Fmt(FmtArgs),
    /// Show the planned steps: keys, inputs, host requirements, whether cached.
    Plan(PlanArgs),
    /// Render the step graph (DOT or Mermaid), one cluster per pipeline.
    Graph(GraphArgs),
    /// Build the images: run every step that is not cached, in parallel on libvirt hosts.
    Build(crate::commands::build::BuildArgs),
    /// Inspect and maintain the cache: list entries, verify them, prune old ones.
    Cache(crate::commands::cache::CacheArgs),
    /// Publish built images to Glance from the cache, without building (docs/glance.md).
    Publish(crate::commands::publish::PublishArgs),
}

/// Which pipelines to load, and variable overrides: shared by every command that reads pipelines.
#[derive(Debug, Clone, Args)]
pub struct PipelineArgs {
    /// Pipeline files or directories (searched for `*.kdl`).
    #[arg(value_name = "PATH", default_value = "pipelines")]
    pub paths: Vec<PathBuf>,
    /// Set a variable, overriding its default and `KILN_VAR_<name>` (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// Let pipelines read files outside the project (absolute paths, `..` above the repository
    /// root or, outside a repository, above the first PATH).
    #[arg(long)]
    pub allow_outside_project: bool,
}

fn parse_var(arg: &str) -> Result<(String, String), String> {
    kiln_syntax::Overrides::parse_arg(arg).map_err(|e| e.to_string())
}

/// `kiln check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Pipelines and variables.
    #[command(flatten)]
    pub pipelines: PipelineArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Text for people, JSON for machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Diagnostics rendered with source excerpts on stderr.
    Text,
    /// One JSON document on stdout (see docs/cli.md).
    Json,
}

/// `kiln fmt`.
#[derive(Debug, Args)]
pub struct FmtArgs {
    /// Files or directories (searched for `*.kdl`).
    #[arg(value_name = "PATH", default_value = "pipelines")]
    pub paths: Vec<PathBuf>,
    /// Change nothing; exit 3 when a file is not formatted.
    #[arg(long)]
    pub check: bool,
}

/// Which cells to plan, and the planner's limits: shared by `plan`, `graph` and `build`.
#[derive(Debug, Clone, Args)]
pub struct SelectArgs {
    /// Only these pipelines or cells, plus what they build on (repeatable). A selector is a
    /// pipeline name as written, an image name, or `NAME[axis=value,...]`.
    #[arg(long, value_name = "SELECTOR")]
    pub only: Vec<String>,
    /// Leave out these pipelines or cells (repeatable; same selectors as `--only`).
    #[arg(long, value_name = "SELECTOR")]
    pub except: Vec<String>,
    /// Refuse a pipeline whose matrix has more cells than this.
    #[arg(long, value_name = "N", default_value_t = kiln_plan::DEFAULT_MAX_CELLS)]
    pub max_cells: usize,
    /// The cache to ask whether steps are built (default `$XDG_CACHE_HOME/kiln`).
    #[arg(long, value_name = "DIR", env = "KILN_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// `kiln plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Pipelines and variables.
    #[command(flatten)]
    pub pipelines: PipelineArgs,
    /// Selection and limits.
    #[command(flatten)]
    pub select: SelectArgs,
    /// `text` lists the steps; `json` prints the plan document (docs/plan.md).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// With `--os-cloud`, ask Glance whether each publish step would create or reuse an image
    /// (read-only; step keys never depend on it).
    #[command(flatten)]
    pub cloud: crate::commands::publish::CloudArgs,
}

/// `kiln graph`.
#[derive(Debug, Args)]
pub struct GraphArgs {
    /// Pipelines and variables.
    #[command(flatten)]
    pub pipelines: PipelineArgs,
    /// Selection and limits.
    #[command(flatten)]
    pub select: SelectArgs,
    /// Graphviz DOT or a Mermaid flowchart.
    #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
    pub format: GraphFormat,
}

/// Graph output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    /// Graphviz DOT (`dot -Tsvg`).
    Dot,
    /// Mermaid flowchart (Markdown, GitHub).
    Mermaid,
}
