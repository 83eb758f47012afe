//! `fetch-source` / `fetch-drivers`: a local file or an http(s) download into kiln-cache's `_base`
//! (hashed on the fly, the declared checksum verified, renamed into place only when complete),
//! then hard-linked into the step's artifact (no second copy on disk).

use kiln_cache::{Checksum, FetchRequest, Source, Staging};
use kiln_plan::StepParams;
use kiln_plan::step::OriginParams;

use super::{RunError, StepCx, fail};

pub(super) fn run(cx: &StepCx<'_>, staging: &mut Staging) -> Result<(), RunError> {
    let step = cx.step;
    let (origin, checksum, artifact) = match &step.params {
        StepParams::FetchSource(p) => (&p.origin, &p.checksum, "source"),
        StepParams::FetchDrivers(p) => (&p.origin, &p.checksum, "drivers"),
        _ => return fail(format!("step `{}` is not a fetch", step.id)),
    };
    let source = match origin {
        OriginParams::Local { path, .. } => {
            let Some(file) = step.exec.local_files.first() else {
                return fail(format!("step `{}`: no resolved path for `{path}`", step.id));
            };
            Source::Path(file.resolved.clone())
        }
        OriginParams::Url { url } => Source::Url(url.clone()),
        OriginParams::Glance { image, .. } => {
            return fail(format!(
                "step `{}`: Glance image sources (`{image}`) are not supported by `kiln build` yet",
                step.id
            ));
        }
    };
    let mut req = FetchRequest::new(source);
    if let Some(sum) = checksum {
        let sum: Checksum = sum
            .parse()
            .or_else(|e| fail(format!("step `{}`: {e}", step.id)))?;
        req = req.checksum(sum);
    }
    if let Some(owner) = step.owners.first() {
        req = req.user(owner.image.clone());
    }
    cx.log.line(format_args!("fetching {origin:?} into _base"));
    let entry = cx
        .env
        .base
        .ensure(req)
        .or_else(|e| fail(format!("step `{}`: {}", step.id, chain(&e))))?;
    cx.log.line(format_args!(
        "_base entry `{}` ({} bytes, {})",
        entry.path.display(),
        entry.record.size,
        if entry.reused { "reused" } else { "fetched" }
    ));
    let dest = staging.path(&format!("{artifact}.iso"));
    if std::fs::hard_link(&entry.path, &dest).is_err() {
        std::fs::copy(&entry.path, &dest).or_else(|e| {
            fail(format!(
                "step `{}`: copying `{}`: {e}",
                step.id,
                entry.path.display()
            ))
        })?;
    }
    Ok(())
}

/// An error with its causes, `: `-separated.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
