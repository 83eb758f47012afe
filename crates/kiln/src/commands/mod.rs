//! One file per command; each returns its exit status (see [`crate::exit_codes`]).

pub mod build;
pub mod cache;
pub mod check;
pub mod fmt;
pub mod graph;
pub mod plan;
pub mod publish;

use kiln_syntax::{LoadOptions, Overrides, RealFs, Workspace};

use crate::cli::{Cli, Command, PipelineArgs};

/// Runs the parsed command line.
pub fn dispatch(cli: Cli) -> u8 {
    match cli.command {
        Command::Check(args) => check::run(&cli.global, &args),
        Command::Fmt(args) => fmt::run(&cli.global, &args),
        Command::Plan(args) => plan::run(&cli.global, &args),
        Command::Graph(args) => graph::run(&cli.global, &args),
        Command::Build(args) => build::run(&cli.global, &args),
        Command::Cache(args) => cache::run(&args),
        Command::Publish(args) => publish::run(&cli.global, &args),
    }
}

/// Loads the pipelines named on the command line with `--var` and `KILN_VAR_*` overrides.
/// Commands that act on pipelines call this, print `diagnostics` when there are any, and stop.
pub fn load_pipelines(args: &PipelineArgs) -> Workspace {
    let mut overrides = Overrides::new().with_env(std::env::vars());
    for (name, value) in &args.vars {
        overrides.set_cli(name, value);
    }
    let project = (!args.allow_outside_project).then(|| {
        let first = args.paths.first().map_or(std::path::Path::new("."), |p| p);
        kiln_syntax::Project::of(first, &RealFs)
    });
    let options = LoadOptions { overrides, project };
    kiln_syntax::load(&args.paths, &options, &RealFs)
}
