//! `kiln fmt`: rewrite pipeline files in canonical layout, or `--check` that they are.

use std::path::Path;

use kiln_syntax::{RealFs, SourceMap};

use crate::cli::{FmtArgs, GlobalArgs};
use crate::exit_codes;
use crate::output::print_diagnostics;

/// Runs `kiln fmt`.
pub fn run(global: &GlobalArgs, args: &FmtArgs) -> u8 {
    let (files, mut diags) = kiln_syntax::collect_files(&args.paths, &RealFs);
    let mut sources = SourceMap::new();
    let mut io_error = false;
    let mut unformatted = 0usize;
    let mut changed = 0usize;
    for path in &files {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: cannot read `{}`: {e}", path.display());
                io_error = true;
                continue;
            }
        };
        let formatted = match kiln_syntax::format::format_file(&mut sources, path, &text) {
            Ok(f) => f,
            Err(mut d) => {
                diags.append(&mut d);
                continue;
            }
        };
        if formatted == text {
            continue;
        }
        if args.check {
            println!("not formatted: {}", path.display());
            unformatted += 1;
        } else if let Err(e) = write_atomic(path, &formatted) {
            eprintln!("error: cannot write `{}`: {e}", path.display());
            io_error = true;
        } else {
            println!("formatted: {}", path.display());
            changed += 1;
        }
    }
    print_diagnostics(&diags, &sources, global.color);
    if !diags.is_empty() {
        return exit_codes::INVALID_PIPELINES;
    }
    if io_error {
        return exit_codes::IO_ERROR;
    }
    if unformatted > 0 {
        eprintln!(
            "error: {unformatted} of {} files not formatted; run `kiln fmt`",
            files.len()
        );
        return exit_codes::NOT_FORMATTED;
    }
    if !args.check && changed == 0 {
        println!("ok: {} files already formatted", files.len());
    } else if args.check {
        println!("ok: {} files formatted", files.len());
    }
    exit_codes::SUCCESS
}

/// Writes via a temporary file in the same directory and a rename, so a crash never leaves half a
/// pipeline file.
fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("pipeline.kdl");
    let tmp = path.with_file_name(format!(".{name}.kiln-fmt.tmp"));
    std::fs::write(&tmp, text)?;
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(&tmp, meta.permissions());
    }
    std::fs::rename(&tmp, path)
}
