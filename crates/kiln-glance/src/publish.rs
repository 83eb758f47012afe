//! Publishing a file as a Glance image, verified end to end.
//!
//! 1. Half-made images of the same name left by dead kiln runs are deleted (see [`crate::marker`]).
//! 2. Unless forced, an active image with the same sha512 (`os_hash_value`) owned by the project
//!    (and, by default, of the same name) is reused: its properties and tags are brought up to date
//!    and nothing is uploaded.
//! 3. Otherwise the image is created `queued` and the file is streamed with `Content-Length`; Glance's
//!    `size`, `checksum` and `os_hash_value` must then equal ours. When the md5 and sha512 are known
//!    (the cache recorded them as it wrote the artifact, or the caller states them) the file is sent
//!    as it is and Glance's record is checked against them: that compares the bytes Glance stored with
//!    the bytes kiln built, and leaves the CPU to Glance, whose own hashing bounds the upload. Otherwise
//!    they are computed in the same read as the upload. `protected` is set only after that.
//!
//! Any failure after the create (transport error, 415, mismatch, Ctrl-C) deletes the image: Glance
//! answers 500 to a second upload into the same image, so a retry always starts from a new one.
//! A server error (5xx) on the upload, or a failed import task, is retried that way, up to
//! [`UPLOAD_ATTEMPTS`] in all.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_cache::hash::{Algo, Digests, HashingReader, MultiHasher, hash_file};
use serde_json::{Value, json};

use crate::cancel::{Cancel, CancellableReader, Cancelled};
use crate::error::Error;
use crate::glance::{Glance, Image, ImageSpec};
use crate::marker;

/// The digests kiln computes for every upload.
pub const ALGOS: &[Algo] = &[Algo::Md5, Algo::Sha512];

/// How the data reaches Glance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UploadMethod {
    /// `PUT …/file`; when Glance forbids that (403: a cloud that takes data only through the
    /// interoperable import) and offers `glance-direct`, the import on a new image.
    #[default]
    Auto,
    /// `PUT /v2/images/{id}/file` only.
    Put,
    /// The interoperable import only: `PUT …/stage`, then `POST …/import` with `glance-direct`,
    /// then wait for `active`.
    GlanceDirect,
}

impl UploadMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            UploadMethod::Auto => "auto",
            UploadMethod::Put => "put",
            UploadMethod::GlanceDirect => "glance-direct",
        }
    }
}

impl std::str::FromStr for UploadMethod {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(UploadMethod::Auto),
            "put" => Ok(UploadMethod::Put),
            "glance-direct" => Ok(UploadMethod::GlanceDirect),
            _ => Err(format!(
                "upload method `{s}` is not one of `auto`, `put`, `glance-direct`"
            )),
        }
    }
}

/// The import method kiln uses.
const GLANCE_DIRECT: &str = "glance-direct";

/// How long an import may take after its data is staged: Glance copies and hashes the staged file
/// into the store in the background (~10 s per GiB on the test machine).
fn import_deadline(size: u64) -> Duration {
    Duration::from_secs(120) + Duration::from_secs(size / (5 << 20))
}

/// Which existing image with the same data may be reused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NamePolicy {
    /// Only one with the same name (the default).
    #[default]
    SameName,
    /// Any image of the project with the same data.
    AnyName,
}

/// One publish.
#[derive(Clone, Debug)]
pub struct PublishRequest<'a> {
    pub path: &'a Path,
    pub spec: ImageSpec,
    /// md5 and sha512 already known (from the cache, or stated by the user): the dedup lookup needs no
    /// read of the file, the upload computes no digest, and Glance's record must equal them.
    pub known: Option<Digests>,
    /// Upload even when an image with the same data exists.
    pub force: bool,
    pub name_policy: NamePolicy,
    pub method: UploadMethod,
    pub cancel: Cancel,
    /// Told the bytes sent so far while the file streams to Glance.
    pub progress: Option<UploadProgress>,
}

/// A callback told `(bytes sent, total bytes)` during an upload: at most once per MiB sent, and
/// once more when the last byte has gone.
#[derive(Clone)]
pub struct UploadProgress(Arc<dyn Fn(u64, u64) + Send + Sync>);

impl UploadProgress {
    pub fn new(f: impl Fn(u64, u64) + Send + Sync + 'static) -> Self {
        UploadProgress(Arc::new(f))
    }
}

impl std::fmt::Debug for UploadProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UploadProgress")
    }
}

/// Reports [`UploadProgress`] as the body is read.
struct ProgressReader<R> {
    inner: R,
    progress: Option<UploadProgress>,
    sent: u64,
    reported: u64,
    total: u64,
}

impl<R: Read> Read for ProgressReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sent += n as u64;
        if let Some(p) = &self.progress
            && (self.sent - self.reported >= 1 << 20
                || (self.sent >= self.total && self.sent > self.reported))
        {
            self.reported = self.sent;
            (p.0)(self.sent, self.total);
        }
        Ok(n)
    }
}

/// What [`publish`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Uploaded,
    Reused,
}

#[derive(Clone, Debug)]
pub struct PublishOutcome {
    pub image: Image,
    pub action: Action,
    pub size: u64,
    /// md5 and sha512 of the file, matching Glance's `checksum` and `os_hash_value`.
    pub digests: Digests,
    /// Ids of stale half-made images that were deleted first.
    pub removed_stale: Vec<String>,
    /// How long the successful `PUT …/file` took (the transfer alone, without auth, create and
    /// verify); `None` when nothing was uploaded.
    pub upload_time: Option<Duration>,
}

/// Publishes `req.path` as described above.
pub fn publish(glance: &Glance, req: &PublishRequest<'_>) -> Result<PublishOutcome, Error> {
    req.spec.validate()?;
    let io_err = |action: &'static str| {
        move |source| Error::Io {
            path: req.path.to_owned(),
            action,
            source,
        }
    };
    let size = std::fs::metadata(req.path).map_err(io_err("stat"))?.len();
    let removed_stale = remove_stale(glance, &req.spec.name)?;
    check(&req.cancel)?;

    let mut known = req.known.clone().filter(|d| d.covers(ALGOS));
    if !req.force {
        let digests = match &known {
            Some(d) => d.clone(),
            None => {
                let (_, d) = hash_file(req.path, ALGOS).map_err(io_err("hash"))?;
                known = Some(d.clone());
                d
            }
        };
        check(&req.cancel)?;
        if let Some(image) = find_reusable(glance, req, &digests)? {
            let image = bring_up_to_date(glance, &req.spec, image)?;
            return Ok(PublishOutcome {
                image,
                action: Action::Reused,
                size,
                digests,
                removed_stale,
                upload_time: None,
            });
        }
    }

    let mut import = match req.method {
        UploadMethod::GlanceDirect => {
            require_glance_direct(glance)?;
            true
        }
        UploadMethod::Auto | UploadMethod::Put => false,
    };
    let token = glance.session().token()?;
    let project = token.project_id.clone().unwrap_or_default();
    let who = marker::Uploader {
        user_id: &token.user_id,
        project_id: &project,
    };
    let marker = BTreeMap::from([(marker::PROPERTY.to_owned(), marker::current(who))]);
    let mut attempt = 1;
    loop {
        let image = match glance.create(&req.spec, &marker) {
            Ok(image) => image,
            Err(e) => {
                // A create answered 5xx (or cut off) may still have inserted a `queued` image.
                let e = remove_unanswered(glance, &req.spec.name, &marker, e);
                if attempt < UPLOAD_ATTEMPTS && is_transient(&e) {
                    std::thread::sleep(Duration::from_secs(1 << attempt));
                    check(&req.cancel)?;
                    attempt += 1;
                    continue;
                }
                return Err(e);
            }
        };
        let cause = match upload_and_verify(glance, req, &image, size, known.as_ref(), import) {
            Ok((image, digests, took)) => {
                return Ok(PublishOutcome {
                    image,
                    action: Action::Uploaded,
                    size,
                    digests,
                    removed_stale,
                    upload_time: Some(took),
                });
            }
            Err(cause) => cause,
        };
        if let Err(delete_error) = glance.delete(&image.id) {
            return Err(Error::CleanupFailed {
                id: image.id.clone(),
                cause: Box::new(cause),
                delete_error: Box::new(delete_error),
            });
        }
        if req.method == UploadMethod::Auto
            && !import
            && is_put_forbidden(&cause)
            && !req.cancel.is_cancelled()
            && glance.import_methods()?.iter().any(|m| m == GLANCE_DIRECT)
        {
            // The cloud takes data only through the interoperable import: not a retry, a switch.
            import = true;
            continue;
        }
        if attempt >= UPLOAD_ATTEMPTS
            || !(is_transient(&cause) || is_broken_upload(&cause))
            || req.cancel.is_cancelled()
        {
            return Err(cause);
        }
        // The half-made image is gone; the next attempt starts from a new one.
        std::thread::sleep(Duration::from_secs(1 << attempt));
        check(&req.cancel)?;
        attempt += 1;
    }
}

/// Uploads tried before giving up when Glance answers the create or upload with a server error (a busy
/// database, an overloaded store: 500, 502, 503, 504). Each attempt uses a new image.
pub const UPLOAD_ATTEMPTS: u32 = 3;

/// Worth another attempt with a new image: a server error, or an import task that failed (Glance
/// reports every import failure, a busy database as much as bad data, as "Internal Error").
/// Anything else the client caused (4xx, a hash mismatch, Ctrl-C) is not.
fn is_transient(e: &Error) -> bool {
    matches!(
        e,
        Error::Http {
            status: 500..=599,
            ..
        } | Error::ImportFailed { .. }
    )
}

/// The connection broke while the image data was sent. Besides a network fault, this is how a
/// refusal that Glance sends before reading the body (a 403 by policy, seen under load) can reach
/// the client: the server answers and closes while the client still writes, and the client sees
/// the broken pipe instead of the answer. A new attempt (with a new image) gets either the data
/// through or the answer itself.
fn is_broken_upload(e: &Error) -> bool {
    matches!(e, Error::Transport { method: "PUT", url, .. } if url.ends_with("/file") || url.ends_with("/stage"))
}

/// Glance refused `PUT …/file` by policy (clouds that allow only the interoperable import).
fn is_put_forbidden(e: &Error) -> bool {
    matches!(e, Error::Http { method: "PUT", status: 403, url, .. } if url.ends_with("/file"))
}

fn require_glance_direct(glance: &Glance) -> Result<(), Error> {
    let offered = glance.import_methods()?;
    if offered.iter().any(|m| m == GLANCE_DIRECT) {
        Ok(())
    } else {
        Err(Error::ImportUnavailable {
            method: GLANCE_DIRECT,
            offered: if offered.is_empty() {
                "none".to_owned()
            } else {
                offered.join(", ")
            },
        })
    }
}

/// After `POST …/import`: polls the image until Glance has imported the staged data (`active`), the
/// import failed (`os_glance_failed_import` set, or a status an import does not pass through), the
/// deadline passed, or Ctrl-C.
fn wait_imported(
    glance: &Glance,
    req: &PublishRequest<'_>,
    id: &str,
    size: u64,
) -> Result<(), Error> {
    let started = Instant::now();
    let deadline = import_deadline(size);
    let mut delay = Duration::from_millis(100);
    loop {
        check(&req.cancel)?;
        let image = glance.get(id)?;
        let failed = image
            .extra
            .get("os_glance_failed_import")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        match (image.status.as_str(), failed) {
            ("active", _) => return Ok(()),
            ("importing" | "uploading", None) => {}
            (status, failed) => {
                return Err(Error::ImportFailed {
                    id: id.to_owned(),
                    status: status.to_owned(),
                    message: import_failure(glance, id, failed),
                    disk_format: req.spec.disk_format.clone(),
                });
            }
        }
        if started.elapsed() >= deadline {
            return Err(Error::ImportTimeout {
                id: id.to_owned(),
                status: image.status,
                waited: started.elapsed().as_secs(),
            });
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// Why an import failed, as far as Glance says: the message of the image's failed task, else the
/// stores it failed for.
fn import_failure(glance: &Glance, id: &str, failed_stores: Option<&str>) -> String {
    let task = glance.image_tasks(id).ok().and_then(|tasks| {
        tasks
            .into_iter()
            .rev()
            .filter(|t| t.status == "failure")
            .find_map(|t| t.message.filter(|m| !m.is_empty()))
    });
    match (task, failed_stores) {
        (Some(m), _) => m,
        (None, Some(stores)) => format!("the import into store(s) `{stores}` failed"),
        (None, None) => "glance gave no reason".to_owned(),
    }
}

fn check(cancel: &Cancel) -> Result<(), Error> {
    if cancel.is_cancelled() {
        Err(Error::Cancelled)
    } else {
        Ok(())
    }
}

/// After a create that failed without an answer kiln can trust (a 5xx, a broken connection):
/// deletes the `queued` images named `name` that carry exactly this process's `marker` (Glance may
/// have inserted the image before failing). Returns `cause`, or, when such an image cannot be
/// deleted (or not even looked for), an error naming it so the user can.
fn remove_unanswered(
    glance: &Glance,
    name: &str,
    marker: &BTreeMap<String, String>,
    cause: Error,
) -> Error {
    if !matches!(
        cause,
        Error::Http {
            status: 500..=599,
            ..
        } | Error::Transport { .. }
    ) {
        return cause;
    }
    let ours = marker.get(marker::PROPERTY).map(String::as_str);
    let images = match glance.list(&[("name", name), ("status", "queued")]) {
        Ok(images) => images,
        Err(e) => {
            return Error::CreateUnclear {
                name: name.to_owned(),
                cause: Box::new(cause),
                lookup_error: Box::new(e),
            };
        }
    };
    for image in images {
        if image.extra.get(marker::PROPERTY).and_then(|v| v.as_str()) != ours {
            continue;
        }
        if let Err(delete_error) = glance.delete(&image.id) {
            return Error::CleanupFailed {
                id: image.id,
                cause: Box::new(cause),
                delete_error: Box::new(delete_error),
            };
        }
    }
    cause
}

/// Deletes half-made images named `name` that this user uploaded into this project and whose
/// kiln uploader is gone (see [`crate::marker`]); returns their ids.
pub fn remove_stale(glance: &Glance, name: &str) -> Result<Vec<String>, Error> {
    let token = glance.session().token()?;
    let Some(project) = token.project_id.as_deref() else {
        return Ok(Vec::new());
    };
    let who = marker::Uploader {
        user_id: &token.user_id,
        project_id: project,
    };
    let mut removed = Vec::new();
    for status in marker::HALF_MADE {
        for image in glance.list(&[("name", name), ("status", status)])? {
            if marker::is_stale(&image, who) {
                glance.delete(&image.id)?;
                removed.push(image.id);
            }
        }
    }
    Ok(removed)
}

fn find_reusable(
    glance: &Glance,
    req: &PublishRequest<'_>,
    digests: &Digests,
) -> Result<Option<Image>, Error> {
    let Some(sha512) = digests.get(Algo::Sha512) else {
        return Ok(None);
    };
    let project = glance.session().token()?.project_id;
    let mut filters = vec![("os_hash_value", sha512), ("status", "active")];
    if req.name_policy == NamePolicy::SameName {
        filters.push(("name", req.spec.name.as_str()));
    }
    let candidates = glance.list(&filters)?;
    Ok(candidates.into_iter().find(|i| {
        i.owner.is_some()
            && i.owner == project
            && i.checksum.as_deref() == digests.get(Algo::Md5)
            && i.disk_format.as_deref() == Some(req.spec.disk_format.as_str())
    }))
}

/// JSON-patch operations that make `image` carry `spec`'s mutable attributes, properties and tags.
fn update_ops(spec: &ImageSpec, image: &Image) -> Vec<Value> {
    let mut ops = Vec::new();
    let current = image.properties();
    for (k, v) in &spec.properties {
        match current.get(k) {
            Some(old) if old == v => {}
            Some(_) => ops.push(json!({ "op": "replace", "path": format!("/{k}"), "value": v })),
            None => ops.push(json!({ "op": "add", "path": format!("/{k}"), "value": v })),
        }
    }
    let tags: Vec<&String> = spec.tags.iter().collect();
    let mut have: Vec<&String> = image.tags.iter().collect();
    have.sort();
    if tags.iter().any(|t| !have.contains(t)) {
        let mut all: Vec<&String> = have.clone();
        all.extend(tags.iter().copied().filter(|t| !have.contains(t)));
        all.sort();
        ops.push(json!({ "op": "replace", "path": "/tags", "value": all }));
    }
    if let Some(v) = spec.visibility
        && image.visibility.as_deref() != Some(v.as_str())
    {
        ops.push(json!({ "op": "replace", "path": "/visibility", "value": v.as_str() }));
    }
    for (key, want, have) in [
        ("min_disk", spec.min_disk, image.min_disk),
        ("min_ram", spec.min_ram, image.min_ram),
    ] {
        if let Some(w) = want
            && have != Some(w)
        {
            ops.push(json!({ "op": "replace", "path": format!("/{key}"), "value": w }));
        }
    }
    if spec.protected && !image.protected {
        ops.push(json!({ "op": "replace", "path": "/protected", "value": true }));
    }
    ops
}

fn bring_up_to_date(glance: &Glance, spec: &ImageSpec, image: Image) -> Result<Image, Error> {
    let ops = update_ops(spec, &image);
    if ops.is_empty() {
        Ok(image)
    } else {
        glance.patch(&image.id, &ops)
    }
}

fn upload_and_verify(
    glance: &Glance,
    req: &PublishRequest<'_>,
    image: &Image,
    size: u64,
    known: Option<&Digests>,
    import: bool,
) -> Result<(Image, Digests, Duration), Error> {
    let file = File::open(req.path).map_err(|source| Error::Io {
        path: req.path.to_owned(),
        action: "open",
        source,
    })?;
    let file = BufReader::with_capacity(1 << 20, file);
    let known = known.filter(|d| d.covers(ALGOS));
    let mut handle = None;
    let started = Instant::now();
    let send = |body: ProgressReader<CancellableReader<Box<dyn Read + Send>>>| {
        if import {
            glance.stage(&image.id, body, size)?;
            glance.import(&image.id, GLANCE_DIRECT)?;
            wait_imported(glance, req, &image.id, size)
        } else {
            glance.upload(&image.id, body, size)
        }
    };
    let sent = match known {
        Some(_) => send(body(Box::new(file), req, size)),
        None => {
            // One digest thread: the upload is bound by Glance (~110 MiB/s here), which one core
            // hashes md5 + sha512 well ahead of; a second thread would take CPU from Glance in
            // bursts when both run on the same machine.
            let mut reader = HashingReader::with_hasher(file, MultiHasher::with_threads(ALGOS, 1));
            handle = Some(reader.handle());
            send(body(Box::new(reader), req, size))
        }
    };
    let took = started.elapsed();
    if req.cancel.is_cancelled() {
        return Err(Error::Cancelled);
    }
    if let Err(e) = sent {
        return Err(match e {
            Error::Http {
                status: 415,
                message,
                ..
            } => Error::FormatRejected {
                name: req.spec.name.clone(),
                disk_format: req.spec.disk_format.clone(),
                message,
            },
            Error::Transport { source, .. } if is_cancel(&source) => Error::Cancelled,
            other => other,
        });
    }
    let Some(handle) = handle else {
        // Nothing was hashed here: Glance's record must equal the known digests, which proves the
        // bytes it stored are the ones they were computed from.
        let known = known
            .expect("no hashing handle means the digests were known")
            .clone();
        return finish_upload(glance, req, image, size, known, took, true);
    };
    // reqwest stops reading at `Content-Length` without seeing end of input, so the digests are
    // published when it drops the reader, which can be a moment after the response arrived.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut result = handle.get();
    while result.is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
        result = handle.get();
    }
    let (bytes, digests) = result.ok_or_else(|| Error::Protocol {
        method: "PUT",
        url: format!("{}/images/{}/file", glance.base_url(), image.id),
        message: "the request body was not read to the end".to_owned(),
    })?;
    let subject = format!("`{}`", req.path.display());
    if bytes != size {
        return Err(Error::Mismatch {
            what: "size (the file changed during the upload)",
            subject,
            expected: size.to_string(),
            actual: bytes.to_string(),
        });
    }
    finish_upload(glance, req, image, size, digests, took, false)
}

/// The upload's body: the file (or its hashing reader), stoppable by Ctrl-C, reporting progress.
fn body<R: Read + Send + 'static>(
    inner: R,
    req: &PublishRequest<'_>,
    size: u64,
) -> ProgressReader<CancellableReader<R>> {
    ProgressReader {
        inner: CancellableReader::new(inner, req.cancel.clone()),
        progress: req.progress.clone(),
        sent: 0,
        reported: 0,
        total: size,
    }
}

/// After a successful PUT or import: Glance's record must match `digests` (`recorded`: the cache's
/// record, see [`verify_against`]); then, in one PATCH, the `kiln_uploader` marker is removed (it
/// only matters while an image is half-made) and `protected` set when asked for.
fn finish_upload(
    glance: &Glance,
    req: &PublishRequest<'_>,
    image: &Image,
    size: u64,
    digests: Digests,
    took: Duration,
    recorded: bool,
) -> Result<(Image, Digests, Duration), Error> {
    let stored = glance.get(&image.id)?;
    verify_against(&stored, size, &digests, recorded)?;
    let mut ops = Vec::new();
    if stored.extra.contains_key(marker::PROPERTY) {
        ops.push(json!({ "op": "remove", "path": format!("/{}", marker::PROPERTY) }));
    }
    if req.spec.protected {
        ops.push(json!({ "op": "replace", "path": "/protected", "value": true }));
    }
    let stored = if ops.is_empty() {
        stored
    } else {
        glance.patch(&image.id, &ops)?
    };
    Ok((stored, digests, took))
}

fn is_cancel(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<Cancelled>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// Glance's record of an uploaded image must match what was sent.
pub fn verify_stored(stored: &Image, size: u64, digests: &Digests) -> Result<(), Error> {
    verify_against(stored, size, digests, false)
}

/// [`verify_stored`] with `recorded`: the digests are the cache's record of the file (nothing was
/// hashed while sending), so a mismatch means the file differs from its recorded digest.
fn verify_against(
    stored: &Image,
    size: u64,
    digests: &Digests,
    recorded: bool,
) -> Result<(), Error> {
    let id = stored.id.clone();
    if stored.status != "active" {
        return Err(Error::NotActive {
            id,
            status: stored.status.clone(),
        });
    }
    if stored.size != Some(size) {
        return Err(Error::Mismatch {
            what: "size",
            subject: format!("glance image `{id}`"),
            expected: size.to_string(),
            actual: stored
                .size
                .map_or_else(|| "none".to_owned(), |s| s.to_string()),
        });
    }
    let md5 = stored.checksum.as_deref().ok_or(Error::Unverifiable {
        id: id.clone(),
        field: "checksum",
    })?;
    match stored.os_hash_algo.as_deref() {
        Some("sha512") => {}
        Some(other) => {
            return Err(Error::UnsupportedHashAlgo {
                id,
                algo: other.to_owned(),
            });
        }
        None => {
            return Err(Error::Unverifiable {
                id,
                field: "os_hash_algo",
            });
        }
    }
    let sha512 = stored.os_hash_value.as_deref().ok_or(Error::Unverifiable {
        id: id.clone(),
        field: "os_hash_value",
    })?;
    let (md5_what, sha512_what) = if recorded {
        (
            "md5 (the file differs from its recorded digest; glance `checksum`)",
            "sha512 (the file differs from its recorded digest; glance `os_hash_value`)",
        )
    } else {
        ("md5 (glance `checksum`)", "sha512 (glance `os_hash_value`)")
    };
    for (what, theirs, ours) in [
        (md5_what, md5, digests.get(Algo::Md5)),
        (sha512_what, sha512, digests.get(Algo::Sha512)),
    ] {
        let ours = ours.unwrap_or_default();
        if !theirs.eq_ignore_ascii_case(ours) {
            return Err(Error::Mismatch {
                what,
                subject: format!("glance image `{id}`"),
                expected: ours.to_owned(),
                actual: theirs.to_owned(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn image(v: Value) -> Image {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn reuse_patches_only_what_differs() {
        let mut spec = ImageSpec::new("n", "qcow2");
        spec.properties = BTreeMap::from([
            ("os_type".into(), "linux".into()),
            ("hw_disk_bus".into(), "virtio".into()),
            ("kept".into(), "same".into()),
        ]);
        spec.tags = BTreeSet::from(["kiln".into(), "new".into()]);
        spec.min_disk = Some(2);
        let img = image(
            json!({"id": "i", "status": "active", "os_type": "windows", "kept": "same",
            "tags": ["kiln", "other"], "min_disk": 2}),
        );
        assert_eq!(
            update_ops(&spec, &img),
            vec![
                json!({"op": "add", "path": "/hw_disk_bus", "value": "virtio"}),
                json!({"op": "replace", "path": "/os_type", "value": "linux"}),
                json!({"op": "replace", "path": "/tags", "value": ["kiln", "new", "other"]}),
            ]
        );
    }

    // A mismatch must name both values, so the user can tell which side is wrong.
    #[test]
    fn stored_hash_mismatch_is_reported_with_both_values() {
        let digests = Digests {
            md5: Some("aa".into()),
            sha512: Some("bb".into()),
            ..Digests::default()
        };
        let stored = image(
            json!({"id": "i", "status": "active", "size": 3, "checksum": "aa",
            "os_hash_algo": "sha512", "os_hash_value": "cc"}),
        );
        assert_eq!(
            verify_stored(&stored, 3, &digests).unwrap_err().to_string(),
            "sha512 (glance `os_hash_value`) mismatch for glance image `i`: expected `bb`, got `cc`"
        );
        let ok = image(
            json!({"id": "i", "status": "active", "size": 3, "checksum": "AA",
            "os_hash_algo": "sha512", "os_hash_value": "bb"}),
        );
        assert!(verify_stored(&ok, 3, &digests).is_ok());
        assert!(matches!(
            verify_stored(&ok, 4, &digests),
            Err(Error::Mismatch { what: "size", .. })
        ));
    }
}
