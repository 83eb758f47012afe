//! `kiln build`: load → plan → run every step that is not cached, in parallel on libvirt hosts,
//! then print the summary (see docs/build.md). SIGINT and SIGTERM set the cancel flag: running
//! guests are destroyed, nothing incomplete is committed, and the exit status is 130.

use clap::{Args, ValueEnum};
use kiln_exec::build::{BuildOptions, build, render_summary};
use kiln_exec::runners::publish::render_published;
use kiln_exec::scheduler::TaskStatus;
use kiln_exec::{Accel, Host};

use crate::cli::{GlobalArgs, PipelineArgs, SelectArgs};
use crate::exit_codes;

/// `kiln build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Pipelines and variables.
    #[command(flatten)]
    pub pipelines: PipelineArgs,
    /// Selection, limits and the cache (`--cache-dir` / `KILN_CACHE_DIR`; libvirt's QEMU user must
    /// be able to reach it, so not under /root).
    #[command(flatten)]
    pub select: SelectArgs,
    /// A libvirt host to run guests on (repeatable); default the local `qemu:///system`.
    #[arg(long = "host", value_name = "URI")]
    pub hosts: Vec<String>,
    /// Accelerator: `auto` boots a probe under KVM and falls back to TCG.
    #[arg(long, value_enum, default_value_t = AccelArg::Auto)]
    pub accel: AccelArg,
    /// One JSON event per line on stdout (and a final `summary` object) instead of progress.
    #[arg(long)]
    pub json: bool,
    /// The cloud of publish steps and Glance sources.
    #[command(flatten)]
    pub cloud: crate::commands::publish::CloudArgs,
    /// Leave the publish steps out (no cloud needed).
    #[arg(long)]
    pub no_publish: bool,
    /// Publish steps upload even when an identical image exists in Glance.
    #[arg(long, conflicts_with = "no_publish")]
    pub force_publish: bool,
}

/// `--accel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AccelArg {
    /// KVM when a probe boots under it, else TCG.
    Auto,
    /// Always KVM.
    Kvm,
    /// Always TCG.
    Tcg,
}

/// Runs `kiln build`.
pub fn run(global: &GlobalArgs, args: &BuildArgs) -> u8 {
    match run_inner(global, args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            exit_codes::IO_ERROR
        }
    }
}

fn run_inner(global: &GlobalArgs, args: &BuildArgs) -> Result<u8, Box<dyn std::error::Error>> {
    // The same loading, selection, tool versions and digests as `kiln plan`, so both agree on keys.
    let (_ws, plan, _) = match super::plan::plan_pipelines(global, &args.pipelines, &args.select) {
        Ok(x) => x,
        Err(status) => return Ok(status),
    };
    let Some(root) = super::plan::cache_root(&args.select) else {
        return Err("no cache folder: give `--cache-dir` or set `KILN_CACHE_DIR`".into());
    };
    let mut opts = BuildOptions::new(root.path());
    let accel = match args.accel {
        AccelArg::Auto => Accel::Auto,
        AccelArg::Kvm => Accel::Kvm,
        AccelArg::Tcg => Accel::Tcg,
    };
    opts.hosts = if args.hosts.is_empty() {
        vec![Host {
            accel,
            ..Host::local()
        }]
    } else {
        let mut hosts = Vec::new();
        for uri in &args.hosts {
            let lv = kiln_exec::Libvirt::connect(uri)?;
            hosts.push(Host::from_libvirt(&lv, accel)?);
        }
        hosts
    };
    opts.sink = super::publish::sink(args.json);
    opts.publish = (!args.no_publish).then(|| args.cloud.settings(args.force_publish, false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, opts.cancel.flag())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, opts.cancel.flag())?;
    let result = match build(&plan, &opts) {
        Ok(r) => r,
        Err(e) => return Ok(super::publish::build_error_status(&e)),
    };
    if args.json {
        let summary = serde_json::json!({
            "event": "summary",
            "run_dir": result.run_dir,
            "exit_code": result.exit_code(),
            "images": result.images,
            "published": result.published,
            "steps": result.steps,
        });
        println!("{summary}");
    } else {
        print!("{}", render_summary(&result.images));
        print!("{}", render_published(&result.published));
        for s in &result.steps {
            if let TaskStatus::Failed { error, .. } = &s.status {
                eprintln!("\nerror: {error}\n  log: {}", s.log.display());
            }
        }
        if result.cancelled {
            eprintln!("\ncancelled: running guests were destroyed; nothing incomplete was kept");
        }
        eprintln!("run folder: {}", result.run_dir.display());
    }
    Ok(u8::try_from(result.exit_code()).unwrap_or(u8::MAX))
}
