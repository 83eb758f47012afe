//! `kiln check`: load, decode and check pipeline files; report every problem.

use serde::Serialize;

use crate::cli::{CheckArgs, Format, GlobalArgs};
use crate::exit_codes;
use crate::output::{JsonDiagnostic, print_diagnostics};

/// The JSON document `kiln check --format json` prints.
#[derive(Debug, Serialize)]
struct Report {
    ok: bool,
    files: Vec<String>,
    pipelines: Vec<JsonPipeline>,
    diagnostics: Vec<JsonDiagnostic>,
    /// What the media checks found or could not check.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    notes: Vec<String>,
}

#[derive(Debug, Serialize)]
struct JsonPipeline {
    name: String,
    file: String,
    line: usize,
    images: Vec<String>,
}

/// Runs `kiln check`.
pub fn run(global: &GlobalArgs, args: &CheckArgs) -> u8 {
    let mut ws = super::load_pipelines(&args.pipelines);
    // Installation media (Windows drivers ISO folders and languages, installer kernels) are
    // checked when the files are there; only pipelines that loaded cleanly get this far.
    let mut notes = Vec::new();
    if ws.is_ok() {
        let inspector = super::plan::IsoInspector;
        for report in [
            kiln_plan::windows::check_windows_media(&ws.pipelines, &inspector),
            kiln_plan::installer::check_installer_media(&ws.pipelines, &inspector),
        ] {
            ws.diagnostics.extend(report.diagnostics);
            notes.extend(report.notes);
        }
        kiln_syntax::diagnostic::sort(&mut ws.diagnostics);
    }
    let status = if ws.is_ok() {
        exit_codes::SUCCESS
    } else {
        exit_codes::INVALID_PIPELINES
    };
    let images = |p: &kiln_syntax::Pipeline| -> Vec<String> {
        p.cells()
            .iter()
            .filter_map(|c| p.vars_for(c).ok().and_then(|mut v| v.remove("pipeline")))
            .collect()
    };
    match args.format {
        Format::Json => {
            let report = Report {
                ok: ws.is_ok(),
                files: ws
                    .checked
                    .iter()
                    .map(|f| ws.sources.get(*f).name())
                    .collect(),
                pipelines: ws
                    .pipelines
                    .iter()
                    .map(|p| {
                        let loc = ws.sources.location(p.name.span);
                        JsonPipeline {
                            name: p.name.raw.clone(),
                            file: loc.file,
                            line: loc.line,
                            images: images(p),
                        }
                    })
                    .collect(),
                diagnostics: ws
                    .diagnostics
                    .iter()
                    .map(|d| JsonDiagnostic::new(d, &ws.sources))
                    .collect(),
                notes,
            };
            match serde_json::to_string_pretty(&report) {
                Ok(json) => println!("{json}"),
                Err(e) => {
                    eprintln!("error: cannot encode the report: {e}");
                    return exit_codes::IO_ERROR;
                }
            }
        }
        Format::Text => {
            for note in &notes {
                eprintln!("note: {note}");
            }
            print_diagnostics(&ws.diagnostics, &ws.sources, global.color);
            let files = ws.checked.len();
            if ws.is_ok() {
                let cells: usize = ws.pipelines.iter().map(|p| images(p).len()).sum();
                println!(
                    "ok: {} pipeline{} ({cells} image{}) in {files} file{}",
                    ws.pipelines.len(),
                    plural(ws.pipelines.len()),
                    plural(cells),
                    plural(files)
                );
            } else {
                let bad: std::collections::BTreeSet<_> = ws
                    .diagnostics
                    .iter()
                    .filter_map(|d| d.span.map(|s| s.file))
                    .collect();
                eprintln!(
                    "error: {} problem{} in {} of {files} file{}",
                    ws.diagnostics.len(),
                    plural(ws.diagnostics.len()),
                    bad.len(),
                    plural(files)
                );
            }
        }
    }
    status
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
