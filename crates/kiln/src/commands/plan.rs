//! `kiln plan`: load pipelines, plan them, and list every step with its key, inputs, host
//! requirements and whether the artifact store already holds its output.
//!
//! Also the planning front door other commands share ([`plan_pipelines`]): real tool versions
//! (`qemu-img --version`), file digests through kiln-cache's hash memo, and the cache lookup
//! through kiln-cache's artifact store, and the Windows media checks (drivers ISO folders,
//! installer ISO languages) reading local ISOs' directory trees.

use std::path::Path;

use kiln_cache::{Algo, ArtifactKey, ArtifactStore, CacheRoot, HashMemo, QemuImg};
use kiln_exec::runners::publish::{preview_plan, render_preview};
use kiln_plan::windows::{IsoTree, MediaInspector};
use kiln_plan::{CacheQuery, ContentDigest, Plan, PlanOptions, StepKey, ToolVersions};
use kiln_syntax::Workspace;

use crate::cli::{Format, GlobalArgs, PipelineArgs, PlanArgs, SelectArgs};
use crate::exit_codes;
use crate::output::print_diagnostics;

/// The cache `--cache-dir` / `KILN_CACHE_DIR` / the XDG default names (`None` when no home).
pub fn cache_root(select: &SelectArgs) -> Option<CacheRoot> {
    match &select.cache_dir {
        Some(dir) => Some(CacheRoot::new(dir)),
        None => CacheRoot::from_env().ok(),
    }
}

/// File digests from the cache's hash memo (an unchanged ISO is not read twice), falling back to
/// reading the file when the memo cannot be used.
pub struct MemoDigests(Option<HashMemo>, Option<CacheRoot>);

impl ContentDigest for MemoDigests {
    fn secret_mac(&self, secret: &kiln_syntax::SecretRef) -> Option<[u8; 32]> {
        let value = secret.resolve().ok()?;
        self.1.as_ref()?.secret_mac(value.expose().as_bytes()).ok()
    }

    fn sha256(&self, path: &Path) -> std::io::Result<String> {
        if let Some(memo) = &self.0
            && let Ok(hashed) = memo.hash(path, &[Algo::Sha256])
            && let Some(hex) = hashed.digests.get(Algo::Sha256)
        {
            return Ok(hex.to_string());
        }
        let (_, digests) = kiln_cache::hash_file(path, &[Algo::Sha256])?;
        digests
            .get(Algo::Sha256)
            .map(str::to_string)
            .ok_or_else(|| std::io::Error::other("no sha256 computed"))
    }
}

/// "Is this step built?", asked of the artifact store; no store means nothing is cached.
pub struct StoreQuery(Option<ArtifactStore>);

impl CacheQuery for StoreQuery {
    fn is_cached(&self, key: &StepKey) -> bool {
        let Some(store) = &self.0 else {
            return false;
        };
        matches!(
            store.peek(&ArtifactKey::from_bytes(*key.as_bytes())),
            Ok(Some(_))
        )
    }
}

/// The versions of the tools that shape step outputs, as found on this host.
pub fn tool_versions() -> ToolVersions {
    match QemuImg::from_env().version() {
        Ok(line) => ToolVersions::from_qemu_img_version_line(&line),
        Err(_) => ToolVersions::default(),
    }
}

/// Reads CD images' directory trees for the plan-time checks of Windows media (directory
/// records only, never file contents: 0.3 ms for a 1 GiB virtio-win-shaped ISO, where reading
/// its bytes takes 400 ms; `just bench-unattend`).
pub struct IsoInspector;

impl MediaInspector for IsoInspector {
    fn tree(&self, path: &Path) -> Result<Option<IsoTree>, String> {
        if !path.is_file() {
            return Ok(None);
        }
        IsoTree::open(path).map(Some).map_err(|e| {
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg.push_str(&format!(": {s}"));
                source = s.source();
            }
            msg
        })
    }
}

/// The plan-time media checks (Windows media, `kiln_plan::windows`; installer kernels,
/// `kiln_plan::installer`): prints their notes to stderr, returns their errors.
pub fn check_media(
    pipelines: &[kiln_syntax::Pipeline],
    notes: bool,
) -> Vec<kiln_syntax::Diagnostic> {
    let mut report = kiln_plan::windows::check_windows_media(pipelines, &IsoInspector);
    let installers = kiln_plan::installer::check_installer_media(pipelines, &IsoInspector);
    report.diagnostics.extend(installers.diagnostics);
    report.notes.extend(installers.notes);
    if notes {
        for note in &report.notes {
            eprintln!("note: {note}");
        }
    }
    report.diagnostics
}

/// Loads and plans; prints diagnostics and returns the exit status on failure.
pub fn plan_pipelines(
    global: &GlobalArgs,
    pipelines: &PipelineArgs,
    select: &SelectArgs,
) -> Result<(Workspace, Plan, StoreQuery), u8> {
    let ws = super::load_pipelines(pipelines);
    if !ws.is_ok() {
        print_diagnostics(&ws.diagnostics, &ws.sources, global.color);
        eprintln!("error: the pipelines have errors; nothing planned");
        return Err(exit_codes::INVALID_PIPELINES);
    }
    let root = cache_root(select);
    let digests = MemoDigests(
        root.as_ref().map(|r| HashMemo::new(r.memo_dir())),
        root.clone(),
    );
    let options = PlanOptions {
        max_cells: select.max_cells,
        only: select.only.clone(),
        except: select.except.clone(),
        tools: tool_versions(),
    };
    let media = check_media(&ws.pipelines, true);
    match kiln_plan::plan(&ws.pipelines, &options, &digests) {
        Ok(_) if !media.is_empty() => {
            print_diagnostics(&media, &ws.sources, global.color);
            eprintln!(
                "error: {} problem{} found in the installation media",
                media.len(),
                if media.len() == 1 { "" } else { "s" }
            );
            Err(exit_codes::INVALID_PIPELINES)
        }
        Ok(plan) => {
            let query = StoreQuery(root.map(ArtifactStore::new));
            Ok((ws, plan, query))
        }
        Err(mut diags) => {
            diags.extend(media);
            kiln_syntax::diagnostic::sort(&mut diags);
            print_diagnostics(&diags, &ws.sources, global.color);
            eprintln!(
                "error: {} problem{} found while planning",
                diags.len(),
                if diags.len() == 1 { "" } else { "s" }
            );
            Err(exit_codes::INVALID_PIPELINES)
        }
    }
}

/// Runs `kiln plan`.
pub fn run(global: &GlobalArgs, args: &PlanArgs) -> u8 {
    let (ws, plan, cache) = match plan_pipelines(global, &args.pipelines, &args.select) {
        Ok(x) => x,
        Err(status) => return status,
    };
    // Only with `--os-cloud`: asking Glance is read-only and never changes a key.
    let publish = args.cloud.os_cloud.as_ref().map(|_| {
        let store = cache_root(&args.select).map(ArtifactStore::new);
        match store {
            Some(store) => preview_plan(&plan, &store, &args.cloud.settings(false, false)),
            None => Vec::new(),
        }
    });
    match args.format {
        Format::Text => {
            print!("{}", kiln_plan::to_text(&plan, &cache, &ws.sources));
            if let Some(publish) = &publish {
                print!("{}", render_preview(publish));
            }
        }
        Format::Json => {
            let mut doc = serde_json::to_value(kiln_plan::to_json(&plan, &cache, &ws.sources))
                .unwrap_or_default();
            if let (Some(publish), Some(obj)) = (&publish, doc.as_object_mut()) {
                obj.insert(
                    "publish".to_owned(),
                    serde_json::to_value(publish).unwrap_or_default(),
                );
            }
            match serde_json::to_string_pretty(&doc) {
                Ok(json) => println!("{json}"),
                Err(e) => {
                    eprintln!("error: cannot encode the plan: {e}");
                    return exit_codes::IO_ERROR;
                }
            }
        }
    }
    exit_codes::SUCCESS
}
