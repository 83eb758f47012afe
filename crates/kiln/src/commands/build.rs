//! `kiln build`: load → plan → run every step that is not cached, in parallel on libvirt hosts,
//! then print the summary (see docs/build.md). SIGINT and SIGTERM set the cancel flag: running
//! guests are destroyed, nothing incomplete is committed, and the exit status is 130.

use clap::{Args, ValueEnum};
use kiln_exec::build::{BuildOptions, build, render_summary};
use kiln_exec::runners::publish::render_published;
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
    /// A libvirt host to run guests on (repeatable). Replaces the project file's host list for
    /// this run; a URI the file configures keeps its accel and capacity. Default: the file's
    /// hosts, else the local `qemu:///system`.
    #[arg(long = "host", value_name = "URI")]
    pub hosts: Vec<String>,
    /// The project file with the hosts (default: `kiln.kdl` in the first pipeline path's folder
    /// or the nearest folder above it).
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Accelerator of every host, overriding the project file (`auto` boots a probe under KVM
    /// and falls back to TCG). Default: the file's, else `auto`.
    #[arg(long, value_enum)]
    pub accel: Option<AccelArg>,
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

/// The hosts from `--host`, `--config` / `kiln.kdl` and `--accel` (see docs/build.md, "Hosts").
fn hosts(global: &GlobalArgs, args: &BuildArgs) -> Result<Vec<Host>, u8> {
    let path = match &args.config {
        Some(p) => Some(p.clone()),
        None => {
            let search = args
                .pipelines
                .paths
                .first()
                .map(|p| kiln_exec::find_config(p))
                .unwrap_or_default();
            for (file, why) in &search.ignored {
                eprintln!(
                    "warning: ignoring `{}`: {why}\nhelp: kiln reads a kiln.kdl only when this user or root owns it and others cannot write it; pass `--config FILE` to use it anyway",
                    file.display()
                );
            }
            search.found
        }
    };
    let config = match path.as_deref().map(kiln_exec::load_config).transpose() {
        Ok(c) => c,
        Err(e @ kiln_exec::ConfigError::Io { .. }) => {
            eprintln!("error: {e}");
            return Err(exit_codes::IO_ERROR);
        }
        Err(e) => {
            eprint!("{}", e.render(crate::output::use_color(global.color)));
            return Err(exit_codes::INVALID_PIPELINES);
        }
    };
    let accel = args.accel.map(|a| match a {
        AccelArg::Auto => Accel::Auto,
        AccelArg::Kvm => Accel::Kvm,
        AccelArg::Tcg => Accel::Tcg,
    });
    kiln_exec::resolve_hosts(config.as_ref(), &args.hosts, accel, |uri| {
        if uri == kiln_exec::LOCAL_URI {
            return Ok(Host::local().capacity);
        }
        let lv = kiln_exec::Libvirt::connect(uri).map_err(|e| e.to_string())?;
        Host::from_libvirt(&lv, Accel::Auto)
            .map(|h| h.capacity)
            .map_err(|e| e.to_string())
    })
    .map_err(|(uri, why)| {
        eprintln!("error: host `{uri}`: {why}");
        exit_codes::IO_ERROR
    })
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
    opts.hosts = match hosts(global, args) {
        Ok(h) => h,
        Err(status) => return Ok(status),
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
        super::publish::print_failed_steps(&result.steps);
        if result.cancelled {
            eprintln!("\ncancelled: running guests were destroyed; nothing incomplete was kept");
        }
        eprintln!("run folder: {}", result.run_dir.display());
    }
    Ok(u8::try_from(result.exit_code()).unwrap_or(u8::MAX))
}
