//! `fetch-source` / `fetch-drivers`: a local file or an http(s) download into kiln-cache's `_base`
//! (hashed on the fly, the declared checksum verified, renamed into place only when complete),
//! then hard-linked into the step's artifact (no second copy on disk). A Glance image source is
//! downloaded into `_base/sha1(<image id>)` — Nova's name — through kiln-glance's verified stream:
//! size, md5 and sha512 are checked against Glance's record as the bytes arrive, and a mismatch
//! fails the fetch before anything is renamed into place (kiln-cache deletes the `.part` file).

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
        // The keyed URL has its userinfo redacted; the request needs the full one.
        OriginParams::Url { url } => Source::Url(
            step.exec
                .url
                .as_ref()
                .map_or_else(|| url.clone(), |u| u.expose().to_owned()),
        ),
        OriginParams::Glance { image, by } => glance_source(cx, image, by)?,
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
    let progress = cx.progress();
    req = req.progress(move |done, total| progress.update(done, total));
    cx.log.line(format_args!("fetching {origin:?} into _base"));
    let entry = cx.env.base.ensure(req).or_else(|e| {
        if cx.env.cancel.is_cancelled() {
            Err(RunError::Cancelled)
        } else {
            fail(format!("step `{}`: {}", step.id, chain(&e)))
        }
    })?;
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

/// A Glance image (by id, or by a name that must match exactly one active image of the project)
/// as a `_base` source read through a verified stream.
fn glance_source(cx: &StepCx<'_>, image: &str, by: &str) -> Result<Source, RunError> {
    let step = cx.step;
    let Some(clouds) = cx.env.clouds.as_deref() else {
        return fail(format!(
            "step `{}`: the source is Glance image `{image}` but publishing and Glance are turned \
             off (`--no-publish`); build without `--no-publish` and with a cloud configured",
            step.id
        ));
    };
    let cloud = clouds.default_cloud();
    let glance = clouds
        .connect(cloud.as_deref())
        .or_else(|e| fail(format!("step `{}`: Glance source `{image}`: {e}", step.id)))?;
    let id = if by == "name" {
        let found = glance
            .list(&[("name", image), ("status", "active")])
            .or_else(|e| {
                fail(format!(
                    "step `{}`: looking up Glance image `{image}`: {}",
                    step.id,
                    chain(&e)
                ))
            })?;
        match found.as_slice() {
            [one] => one.id.clone(),
            [] => {
                return fail(format!(
                    "step `{}`: no active Glance image is named `{image}` (the source `glance:{image}`)",
                    step.id
                ));
            }
            many => {
                return fail(format!(
                    "step `{}`: {} active Glance images are named `{image}` ({}); name the one to use by its id: `glance:<id>`",
                    step.id,
                    many.len(),
                    many.iter()
                        .map(|i| i.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    } else {
        image.to_owned()
    };
    cx.log.line(format_args!("Glance image `{image}` is {id}"));
    let cancel = kiln_glance::Cancel::from_flag(cx.env.cancel.flag());
    let open_id = id.clone();
    Ok(Source::Glance {
        image_id: id,
        open: Box::new(move || {
            kiln_glance::open_verified(&glance, &open_id, &cancel)
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>)
                .map_err(std::io::Error::other)
        }),
    })
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
