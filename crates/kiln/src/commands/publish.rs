//! `kiln publish`: publish images that are already built, from the cache, without building
//! anything (see docs/glance.md). The same selection as `kiln build` (`--only`, `--except`); an
//! image whose output (or boot test) is not in the cache is an error before anything is uploaded.
//! Also the cloud options `kiln build` and `kiln plan` share.

use std::io::IsTerminal as _;
use std::sync::Arc;

use clap::Args;
use kiln_exec::build::{
    BuildError, BuildOptions, JsonSink, PlainSink, ProgressSink, Sink, StepResult, build,
};
use kiln_exec::runners::publish::{PublishSettings, render_published};
use kiln_exec::scheduler::TaskStatus;
use kiln_glance::{NamePolicy, UploadMethod};

use crate::cli::{GlobalArgs, PipelineArgs, SelectArgs};
use crate::exit_codes;

/// Which cloud publish steps and Glance sources use; never part of a step key.
#[derive(Debug, Clone, Args)]
pub struct CloudArgs {
    /// The `clouds.yaml` cloud for publish steps without `cloud=` and for Glance sources
    /// (default: `OS_CLOUD`, else the `OS_*` variables).
    #[arg(long, value_name = "NAME")]
    pub os_cloud: Option<String>,
    /// How image data reaches Glance: `put` (`PUT …/file`), `glance-direct` (the interoperable
    /// import: stage, import, wait for `active`), or `auto`: `put`, switching to the import when
    /// the cloud forbids `put`.
    #[arg(long, value_name = "METHOD", default_value = "auto")]
    pub upload_method: UploadMethod,
}

impl CloudArgs {
    /// Settings for kiln-exec: the process's clouds.yaml search path and environment.
    #[must_use]
    pub fn settings(&self, force: bool, reuse_any_name: bool) -> PublishSettings {
        PublishSettings {
            os_cloud: self.os_cloud.clone(),
            force,
            name_policy: if reuse_any_name {
                NamePolicy::AnyName
            } else {
                NamePolicy::SameName
            },
            upload_method: self.upload_method,
            ..PublishSettings::from_process()
        }
    }
}

/// `kiln publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Pipelines and variables.
    #[command(flatten)]
    pub pipelines: PipelineArgs,
    /// Selection (same selectors as `kiln build --only`) and the cache.
    #[command(flatten)]
    pub select: SelectArgs,
    /// The cloud.
    #[command(flatten)]
    pub cloud: CloudArgs,
    /// Upload even when an identical image (same sha512, md5, disk format and name) exists.
    #[arg(long)]
    pub force: bool,
    /// Reuse an identical image of the project whatever its name.
    #[arg(long)]
    pub reuse_any_name: bool,
    /// One JSON event per line on stdout and a final `summary` object.
    #[arg(long)]
    pub json: bool,
}

/// The sink for `--json`, a terminal, or plain lines.
pub fn sink(json: bool) -> Arc<dyn Sink> {
    if json {
        Arc::new(JsonSink)
    } else if std::io::stderr().is_terminal() {
        Arc::new(ProgressSink::default())
    } else {
        Arc::new(PlainSink)
    }
}

/// The exit status of a build error (before any step ran), after printing it.
pub fn build_error_status(e: &BuildError) -> u8 {
    eprintln!("error: {e}");
    match e {
        BuildError::Publish { .. } => exit_codes::NO_CLOUD,
        BuildError::NotBuilt(_) | BuildError::NothingToPublish(_) => exit_codes::NOT_BUILT,
        _ => exit_codes::IO_ERROR,
    }
}

/// Each failed step's error and log, on stderr (`kiln build` and `kiln publish`).
pub fn print_failed_steps(steps: &[StepResult]) {
    for s in steps {
        if let TaskStatus::Failed { error, .. } = &s.status {
            eprintln!("\nerror: {error}\n  log: {}", s.log.display());
        }
    }
}

/// Runs `kiln publish`.
pub fn run(global: &GlobalArgs, args: &PublishArgs) -> u8 {
    let (_ws, plan, _) = match super::plan::plan_pipelines(global, &args.pipelines, &args.select) {
        Ok(x) => x,
        Err(status) => return status,
    };
    let Some(root) = super::plan::cache_root(&args.select) else {
        eprintln!("error: no cache folder: give `--cache-dir` or set `KILN_CACHE_DIR`");
        return exit_codes::IO_ERROR;
    };
    let mut opts = BuildOptions::new(root.path());
    opts.publish = Some(args.cloud.settings(args.force, args.reuse_any_name));
    opts.publish_only = true;
    opts.sink = sink(args.json);
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, opts.cancel.flag()) {
            eprintln!("error: installing the signal handler: {e}");
            return exit_codes::IO_ERROR;
        }
    }
    let result = match build(&plan, &opts) {
        Ok(r) => r,
        Err(e) => return build_error_status(&e),
    };
    if args.json {
        let summary = serde_json::json!({
            "event": "summary",
            "run_dir": result.run_dir,
            "exit_code": result.exit_code(),
            "published": result.published,
            "steps": result.steps,
        });
        println!("{summary}");
    } else {
        print!("{}", render_published(&result.published));
        print_failed_steps(&result.steps);
        if result.cancelled {
            eprintln!("\ncancelled: the half-made image was deleted");
        }
    }
    u8::try_from(result.exit_code()).unwrap_or(u8::MAX)
}
