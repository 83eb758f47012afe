//! The final summary: one row per image (planned cell) with its key, path, size, md5, sha512, the
//! time its steps took in this run, and whether anything was built.

use std::path::PathBuf;
use std::time::Duration;

use kiln_cache::Algo;
use kiln_plan::Plan;
use serde::Serialize;

use super::{Runner, StepResult};
use crate::runners::output_file;
use crate::scheduler::TaskStatus;

/// One image of the build.
#[derive(Debug, Clone, Serialize)]
pub struct ImageRow {
    /// Image name (the cell's).
    pub image: String,
    /// Key of the step producing it (64 hex).
    pub key: String,
    /// The image file, when it exists.
    pub path: Option<PathBuf>,
    /// Bytes.
    pub size: Option<u64>,
    /// md5 hex.
    pub md5: Option<String>,
    /// sha512 hex.
    pub sha512: Option<String>,
    /// Time the image's steps ran in this build.
    #[serde(serialize_with = "secs")]
    pub time: Duration,
    /// `built`, `cached`, `failed`, `cancelled` or `skipped`.
    pub state: &'static str,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

pub(super) fn rows(plan: &Plan, runner: &Runner<'_>, results: &[StepResult]) -> Vec<ImageRow> {
    let mut rows = Vec::new();
    for cell in plan.cells().iter().filter(|c| c.selected) {
        let Some(&i) = runner.index.get(cell.output.as_str()) else {
            continue;
        };
        let res = &results[i];
        let mut row = ImageRow {
            image: cell.owner.image.clone(),
            key: res.key.clone(),
            path: None,
            size: None,
            md5: None,
            sha512: None,
            time: Duration::ZERO,
            state: "skipped",
        };
        let mut built = false;
        let mut failed = false;
        let mut cancelled = false;
        for (j, step) in runner.steps.iter().enumerate() {
            // A publish does not make the image; its outcome is listed apart.
            if step.kind() == kiln_plan::StepKind::Publish
                || !step.owners.iter().any(|o| o.image == cell.owner.image)
            {
                continue;
            }
            match &results[j].status {
                TaskStatus::Built { elapsed } => {
                    built = true;
                    row.time += *elapsed;
                }
                TaskStatus::Failed { elapsed, .. } => {
                    failed = true;
                    row.time += *elapsed;
                }
                TaskStatus::Cancelled => cancelled = true,
                TaskStatus::Skipped { because } if because == "cancelled" => cancelled = true,
                TaskStatus::Skipped { .. } => failed = true,
                TaskStatus::Cached | TaskStatus::NotNeeded => {}
            }
        }
        if let Ok(a) = runner.artifact(i)
            && let Some(name) = output_file(a.record.outputs.keys(), "image")
        {
            let out = &a.record.outputs[name];
            row.path = Some(a.output(name));
            row.size = Some(out.size);
            row.md5 = out.digests.get(Algo::Md5).map(str::to_owned);
            row.sha512 = out.digests.get(Algo::Sha512).map(str::to_owned);
        }
        row.state = if cancelled && !failed {
            "cancelled"
        } else if failed {
            "failed"
        } else if built {
            "built"
        } else if row.path.is_some() {
            "cached"
        } else {
            "skipped"
        };
        rows.push(row);
    }
    rows
}

/// The summary as a text table (hashes shortened to 16 digits; `--json` has them whole).
#[must_use]
pub fn render_summary(rows: &[ImageRow]) -> String {
    let short = |s: &Option<String>, n: usize| {
        s.as_deref()
            .map_or_else(|| "-".to_owned(), |h| h[..n.min(h.len())].to_owned())
    };
    let mut table: Vec<[String; 8]> = vec![[
        "IMAGE".into(),
        "KEY".into(),
        "PATH".into(),
        "SIZE".into(),
        "MD5".into(),
        "SHA512".into(),
        "TIME".into(),
        "STATE".into(),
    ]];
    for r in rows {
        table.push([
            r.image.clone(),
            r.key[..12].to_owned(),
            r.path
                .as_ref()
                .map_or_else(|| "-".to_owned(), |p| p.display().to_string()),
            r.size.map_or_else(|| "-".to_owned(), human),
            short(&r.md5, 32),
            short(&r.sha512, 16),
            format!("{:.1}s", r.time.as_secs_f64()),
            r.state.to_owned(),
        ]);
    }
    let mut widths = [0usize; 8];
    for row in &table {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for row in &table {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    #[expect(clippy::cast_precision_loss, reason = "display only")]
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
