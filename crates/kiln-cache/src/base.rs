//! The Nova-compatible `_base` folder: fetch a source once, verify it, convert it to raw if asked, and
//! rename it into place; make qcow2 overlays backed by it.
//!
//! Protocol for one entry `<name>` (as `nova/virt/images.py:fetch_to_raw`, plus verification):
//! 1. take the lock `locks/<prefix><name>`; if `_base/<name>` exists, reuse it (a waiter reuses what the
//!    winner fetched);
//! 2. delete leftovers of a killed writer (`<name>.part`, `<name>.converted`: nobody else can own them
//!    while we hold the lock);
//! 3. stream the source into `<name>.part`, hashing on the fly; fsync;
//! 4. compare the declared checksum: on mismatch delete the `.part` and fail: nothing enters the cache;
//! 5. when a format is declared or conversion asked: `qemu-img info` probes the format — the one
//!    probe of a file's format in kiln; formats other than raw and qcow2, backing files and data
//!    files are refused; `iso` counts as `raw` — then `qemu-img convert -f <format> -O raw` into
//!    `<name>.converted`;
//! 6. rename into `_base/<name>`, fsync the folder, write the record `base-meta-v1/<name>.json`.
//!
//! A file is therefore complete exactly when `_base/<name>` exists.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{CacheError, IoContext};
use crate::fsutil::{self, now_secs, remove_if_exists};
use crate::hash::{Algo, Digests, HashingWriter, hash_file};
use crate::lock::EntryLock;
use crate::memo::{FileIdentity, HashMemo};
use crate::qemu_img::{DiskFormat, ImageInfo, QemuImg, check_self_contained};
use crate::root::CacheRoot;
use crate::source::{Checksum, Source, SourceId, canonical_url, redact};

/// Digests kiln records for every entry (Glance's md5 and sha512, and sha256).
pub const RECORD_ALGOS: [Algo; 3] = [Algo::Md5, Algo::Sha256, Algo::Sha512];

const FORMAT: u32 = 1;

/// What to put into `_base`.
#[derive(Debug)]
pub struct FetchRequest {
    pub source: Source,
    /// The checksum the pipeline declares for the fetched bytes.
    pub checksum: Option<Checksum>,
    /// The declared disk format (`iso` counts as `raw`); checked with `qemu-img info`.
    pub disk_format: Option<String>,
    /// Convert to raw (`qemu-img convert -O raw`) before the entry becomes visible.
    pub convert_to_raw: bool,
    /// Who uses the entry (a pipeline name), shown by `kiln cache ls`.
    pub user: Option<String>,
    /// Called with `(bytes written, bytes in all when known)` while a download or stream is
    /// copied into `_base` (after every chunk: the receiver rate-limits).
    pub progress: Option<FetchProgress>,
}

/// A fetch progress callback (see [`FetchRequest::progress`]).
pub struct FetchProgress(pub Box<dyn Fn(u64, Option<u64>) + Send + Sync>);

impl std::fmt::Debug for FetchProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FetchProgress")
    }
}

impl FetchRequest {
    pub fn new(source: Source) -> Self {
        FetchRequest {
            source,
            checksum: None,
            disk_format: None,
            convert_to_raw: false,
            user: None,
            progress: None,
        }
    }

    /// Reports the copy's progress to `f` (`bytes written`, `bytes in all` when known).
    pub fn progress(mut self, f: impl Fn(u64, Option<u64>) + Send + Sync + 'static) -> Self {
        self.progress = Some(FetchProgress(Box::new(f)));
        self
    }

    pub fn checksum(mut self, checksum: Checksum) -> Self {
        self.checksum = Some(checksum);
        self
    }

    pub fn disk_format(mut self, format: impl Into<String>) -> Self {
        self.disk_format = Some(format.into());
        self
    }

    pub fn convert_to_raw(mut self) -> Self {
        self.convert_to_raw = true;
        self
    }

    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }
}

/// kiln's record of a `_base` entry, `base-meta-v1/<name>.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseRecord {
    pub format: u32,
    pub name: String,
    /// `glance`, `url` or `content`.
    pub source_kind: String,
    /// The string whose SHA-1 is `name`.
    pub source_id: String,
    /// Where it came from (URL without credentials, local path, or Glance image id).
    pub origin: String,
    /// Size of the file in `_base`.
    pub size: u64,
    /// Format of the file in `_base`, when it was inspected.
    pub disk_format: Option<String>,
    /// Digests of the bytes as fetched (what a declared checksum refers to).
    pub fetched: Digests,
    /// Digests of the file in `_base` (differ from `fetched` after conversion).
    pub digests: Digests,
    pub tools: BTreeMap<String, String>,
    pub created: u64,
    pub last_used: u64,
    pub users: BTreeSet<String>,
}

/// A complete `_base` entry.
#[derive(Clone, Debug)]
pub struct BaseEntry {
    pub path: PathBuf,
    pub record: BaseRecord,
    /// True when the entry was already there (nothing fetched).
    pub reused: bool,
}

impl BaseEntry {
    pub fn name(&self) -> &str {
        &self.record.name
    }
}

/// The `_base` folder of a cache root.
#[derive(Debug)]
pub struct BaseCache {
    root: CacheRoot,
    qemu: QemuImg,
    memo: HashMemo,
    http: OnceLock<reqwest::blocking::Client>,
    /// A download that receives nothing for this long fails ([`crate::stall::StallGuard`]).
    stall: Duration,
}

/// How long a source download may receive nothing before it fails.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A source resolved to its id, ready to fetch.
enum Resolved {
    Http(String),
    Local {
        path: PathBuf,
        identity: FileIdentity,
    },
    Stream(crate::source::OpenFn),
}

impl BaseCache {
    pub fn new(root: CacheRoot, qemu: QemuImg) -> Self {
        let memo = HashMemo::new(root.memo_dir());
        BaseCache {
            root,
            qemu,
            memo,
            http: OnceLock::new(),
            stall: DEFAULT_STALL_TIMEOUT,
        }
    }

    /// The same cache with another stall timeout for source downloads.
    #[must_use]
    pub fn with_stall_timeout(mut self, stall: Duration) -> Self {
        self.stall = stall;
        self
    }

    pub fn root(&self) -> &CacheRoot {
        &self.root
    }

    /// The path `_base/<name>`.
    pub fn entry_path(&self, name: &str) -> PathBuf {
        self.root.base_dir().join(name)
    }

    /// Makes sure the source is in `_base`, fetching it at most once across processes.
    pub fn ensure(&self, req: FetchRequest) -> Result<BaseEntry, CacheError> {
        let FetchRequest {
            source,
            checksum,
            disk_format,
            convert_to_raw,
            user,
            progress,
        } = req;
        let mut algos = RECORD_ALGOS.to_vec();
        if let Some(c) = &checksum {
            algos.push(c.algo);
        }

        // Resolve the source id; a local file is hashed here (through the memo) and its checksum checked
        // before anything is written.
        let mut local_digests = None;
        let (id, origin, resolved) = match source {
            Source::Glance { image_id, open } => (
                SourceId::Glance(image_id.clone()),
                format!("glance image {image_id}"),
                Resolved::Stream(open),
            ),
            Source::Url(raw) => {
                let url = canonical_url(&raw)?;
                if url.scheme() == "file" {
                    let path = url
                        .to_file_path()
                        .map_err(|()| CacheError::UnsupportedScheme {
                            url: redact(&url),
                            scheme: "file".into(),
                        })?;
                    self.local(path, &algos, checksum.as_ref(), &mut local_digests)?
                } else {
                    let id = redact(&url);
                    (
                        SourceId::Url(id.clone()),
                        id,
                        Resolved::Http(url.to_string()),
                    )
                }
            }
            Source::Path(path) => {
                self.local(path, &algos, checksum.as_ref(), &mut local_digests)?
            }
        };

        let name = id.base_name();
        self.root.create_dirs()?;
        let _lock = EntryLock::acquire(&self.root.lock_path(&name))?;
        let final_path = self.entry_path(&name);

        if final_path.exists()
            && let Some(entry) = self.reuse(
                &name,
                &final_path,
                &id,
                &origin,
                checksum.as_ref(),
                user.as_deref(),
            )?
        {
            return Ok(entry);
        }

        let part = self.root.base_dir().join(format!("{name}.part"));
        let converted = self.root.base_dir().join(format!("{name}.converted"));
        remove_if_exists(&part)?;
        remove_if_exists(&converted)?;

        let result = self.fetch_into_place(FetchJob {
            origin: &origin,
            resolved,
            local_digests,
            algos: &algos,
            checksum: checksum.as_ref(),
            disk_format: disk_format.as_deref(),
            convert_to_raw,
            part: &part,
            converted: &converted,
            final_path: &final_path,
            progress: progress.as_ref(),
        });
        let (size, fetched, digests, stored_format, tools) = match result {
            Ok(r) => r,
            Err(e) => {
                let _ = remove_if_exists(&part);
                let _ = remove_if_exists(&converted);
                return Err(e);
            }
        };
        let now = now_secs();
        let record = BaseRecord {
            format: FORMAT,
            name: name.clone(),
            source_kind: id.kind().to_owned(),
            source_id: id.as_str().to_owned(),
            origin,
            size,
            disk_format: stored_format,
            fetched,
            digests,
            tools,
            created: now,
            last_used: now,
            users: user.into_iter().collect(),
        };
        self.write_record(&record)?;
        Ok(BaseEntry {
            path: final_path,
            record,
            reused: false,
        })
    }

    /// Makes a qcow2 overlay at `dest` backed by `entry` (`qemu-img create -f qcow2 -o
    /// backing_file=...,backing_fmt=...`), `size` bytes large (default: the base's virtual size). A size
    /// smaller than the base is refused, as Nova's `FlavorDiskSmallerThanImage`.
    pub fn overlay(
        &self,
        entry: &BaseEntry,
        dest: &Path,
        size: Option<u64>,
    ) -> Result<ImageInfo, CacheError> {
        let base = std::path::absolute(&entry.path).at(&entry.path)?;
        // The format learned on arrival; an entry kiln did not inspect (seeded by Nova) is
        // inspected now, with the same refusals as on arrival.
        let format = match entry.record.disk_format.as_deref() {
            Some(f) => known_format(&entry.record.origin, f)?,
            None => {
                let info = self.qemu.probe(&base)?;
                check_self_contained(&entry.record.origin, &info)?;
                known_format(&entry.record.origin, &info.format)?
            }
        };
        let info = self.qemu.info(&base, format)?;
        if let Some(size) = size
            && size < info.virtual_size
        {
            return Err(CacheError::DiskSmallerThanImage {
                requested: size,
                virtual_size: info.virtual_size,
            });
        }
        self.qemu.create_overlay(&base, format, dest, size)
    }

    /// Reads the record of entry `name`, if kiln wrote one.
    pub fn record(&self, name: &str) -> Result<Option<BaseRecord>, CacheError> {
        read_record(&self.meta_path(name))
    }

    fn meta_path(&self, name: &str) -> PathBuf {
        self.root.base_meta_dir().join(format!("{name}.json"))
    }

    fn write_record(&self, record: &BaseRecord) -> Result<(), CacheError> {
        let json = serde_json::to_vec_pretty(record).expect("records serialise");
        fsutil::write_atomic(&self.meta_path(&record.name), &json)
    }

    fn local(
        &self,
        path: PathBuf,
        algos: &[Algo],
        checksum: Option<&Checksum>,
        out: &mut Option<Digests>,
    ) -> Result<(SourceId, String, Resolved), CacheError> {
        let origin = path.display().to_string();
        let hashed = self.memo.hash(&path, algos)?;
        verify(&origin, checksum, &hashed.digests)?;
        let sha256 = hashed
            .digests
            .sha256
            .clone()
            .expect("sha256 is always computed");
        *out = Some(hashed.digests);
        Ok((
            SourceId::Content(format!("sha256:{sha256}")),
            origin,
            Resolved::Local {
                path,
                identity: hashed.identity,
            },
        ))
    }

    /// The existing entry, if it can be reused; `None` when it must be fetched again (its record cannot
    /// confirm the declared checksum, or contradicts it: the content behind the URL changed).
    fn reuse(
        &self,
        name: &str,
        final_path: &Path,
        id: &SourceId,
        origin: &str,
        checksum: Option<&Checksum>,
        user: Option<&str>,
    ) -> Result<Option<BaseEntry>, CacheError> {
        let now = now_secs();
        let mut record = match self.record(name)? {
            Some(r) => r,
            None => {
                // Seeded by Nova (or a kiln killed between rename and record): adopt it. Its bytes are the
                // fetched bytes unless kiln converted them, which it would have recorded.
                let (size, digests) = hash_file(final_path, &RECORD_ALGOS).at(final_path)?;
                let created = fs::metadata(final_path)
                    .ok()
                    .and_then(|m| m.modified().ok())
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(now, |d| d.as_secs());
                BaseRecord {
                    format: FORMAT,
                    name: name.to_owned(),
                    source_kind: id.kind().to_owned(),
                    source_id: id.as_str().to_owned(),
                    origin: origin.to_owned(),
                    size,
                    disk_format: None,
                    fetched: digests.clone(),
                    digests,
                    tools: BTreeMap::new(),
                    created,
                    last_used: now,
                    users: BTreeSet::new(),
                }
            }
        };
        if let Some(c) = checksum
            && record.fetched.get(c.algo) != Some(c.hex.as_str())
        {
            return Ok(None);
        }
        record.last_used = now;
        if let Some(u) = user {
            record.users.insert(u.to_owned());
        }
        self.write_record(&record)?;
        Ok(Some(BaseEntry {
            path: final_path.to_owned(),
            record,
            reused: true,
        }))
    }

    fn http(&self) -> &reqwest::blocking::Client {
        self.http.get_or_init(|| {
            reqwest::blocking::Client::builder()
                .timeout(None::<Duration>)
                .connect_timeout(Duration::from_secs(30))
                .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
                .build()
                .expect("building the HTTP client")
        })
    }

    /// Steps 3–6 of the protocol; returns (size, fetched digests, stored digests, format, tools).
    fn fetch_into_place(&self, job: FetchJob<'_>) -> Result<FetchOutcome, CacheError> {
        let FetchJob {
            origin,
            resolved,
            local_digests,
            algos,
            checksum,
            disk_format,
            convert_to_raw,
            part,
            converted,
            final_path,
            progress,
        } = job;

        let fetched = match resolved {
            Resolved::Local { path, identity } => {
                fs::copy(&path, part).at(part)?;
                crate::private::private_file(part).at(part)?;
                // The copy is the bytes we hashed only if the source did not change meanwhile.
                if FileIdentity::stat(&path)? != identity {
                    return Err(CacheError::SourceChanged {
                        origin: origin.to_owned(),
                    });
                }
                File::open(part).at(part)?.sync_all().at(part)?;
                local_digests.expect("local sources are hashed first")
            }
            Resolved::Http(url) => {
                let resp = self
                    .http()
                    .get(&url)
                    .send()
                    .map_err(|source| CacheError::Http {
                        url: origin.to_owned(),
                        source,
                    })?;
                if !resp.status().is_success() {
                    return Err(CacheError::HttpStatus {
                        url: origin.to_owned(),
                        status: resp.status().as_u16(),
                    });
                }
                let total = resp.content_length();
                // A server that stops sending mid-body must not hang the build forever.
                let body = crate::stall::StallGuard::new(resp, self.stall);
                stream_to(body, part, algos, origin, progress, total)?
            }
            Resolved::Stream(open) => {
                let reader = open().map_err(|source| CacheError::Source {
                    origin: origin.to_owned(),
                    source,
                })?;
                stream_to(reader, part, algos, origin, progress, None)?
            }
        };
        verify(origin, checksum, &fetched)?;

        let mut tools = BTreeMap::new();
        let mut stored_format = None;
        let mut digests = fetched.clone();
        let mut ready = part;
        if disk_format.is_some() || convert_to_raw {
            tools.insert("qemu-img".to_owned(), self.qemu.version()?);
            // The one probe: the bytes came from outside; from here on the format is stated.
            let info = self.qemu.probe(part)?;
            check_self_contained(origin, &info)?;
            if let Some(declared) = disk_format {
                let expected = if declared == "iso" { "raw" } else { declared };
                if expected != info.format {
                    return Err(CacheError::FormatMismatch {
                        origin: origin.to_owned(),
                        declared: declared.to_owned(),
                        actual: info.format,
                    });
                }
            }
            let format = known_format(origin, &info.format)?;
            if convert_to_raw && format != DiskFormat::Raw {
                self.qemu.convert_to_raw(part, format, converted)?;
                File::open(converted)
                    .at(converted)?
                    .sync_all()
                    .at(converted)?;
                remove_if_exists(part)?;
                digests = hash_file(converted, &RECORD_ALGOS).at(converted)?.1;
                ready = converted;
                stored_format = Some("raw".to_owned());
            } else {
                stored_format = Some(format.as_str().to_owned());
            }
        }
        crate::private::private_file(ready).at(ready)?;
        fs::rename(ready, final_path).at(final_path)?;
        fsutil::sync_parent(final_path)?;
        let size = fs::metadata(final_path).at(final_path)?.len();
        Ok((size, fetched, digests, stored_format, tools))
    }
}

type FetchOutcome = (
    u64,
    Digests,
    Digests,
    Option<String>,
    BTreeMap<String, String>,
);

struct FetchJob<'a> {
    origin: &'a str,
    resolved: Resolved,
    local_digests: Option<Digests>,
    algos: &'a [Algo],
    checksum: Option<&'a Checksum>,
    disk_format: Option<&'a str>,
    convert_to_raw: bool,
    part: &'a Path,
    converted: &'a Path,
    final_path: &'a Path,
    progress: Option<&'a FetchProgress>,
}

/// A format kiln reads (raw, qcow2); any other is refused, naming `origin`.
fn known_format(origin: &str, format: &str) -> Result<DiskFormat, CacheError> {
    DiskFormat::from_qemu(format).ok_or_else(|| CacheError::UnsupportedImageFormat {
        origin: origin.to_owned(),
        format: format.to_owned(),
    })
}

/// Copies `reader` into a new file at `part`, hashing on the way; fsyncs it.
fn stream_to(
    mut reader: impl Read,
    part: &Path,
    algos: &[Algo],
    origin: &str,
    progress: Option<&FetchProgress>,
    total: Option<u64>,
) -> Result<Digests, CacheError> {
    let file = File::create(part).at(part)?;
    crate::private::private_file(part).at(part)?;
    let mut writer = HashingWriter::new(io::BufWriter::with_capacity(1 << 20, file), algos);
    let report = |done| {
        if let Some(p) = progress {
            (p.0)(done, total);
        }
    };
    copy(&mut reader, &mut writer, &report).map_err(|e| match e {
        CopyError::Read(source) => CacheError::Source {
            origin: origin.to_owned(),
            source,
        },
        CopyError::Write(source) => CacheError::Io {
            path: part.to_owned(),
            source,
        },
    })?;
    let (buf, _, digests) = writer.into_parts();
    let file = buf.into_inner().map_err(|e| e.into_error()).at(part)?;
    file.sync_all().at(part)?;
    Ok(digests)
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// `io::copy` that says which side failed, with a 256 KiB buffer.
fn copy(
    reader: &mut impl Read,
    writer: &mut impl io::Write,
    report: &dyn Fn(u64),
) -> Result<u64, CopyError> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        writer.write_all(&buf[..n]).map_err(CopyError::Write)?;
        total += n as u64;
        report(total);
    }
}

/// Compares a declared checksum with what was computed.
fn verify(origin: &str, checksum: Option<&Checksum>, got: &Digests) -> Result<(), CacheError> {
    let Some(c) = checksum else { return Ok(()) };
    let actual = got.get(c.algo).unwrap_or_default();
    if actual == c.hex {
        return Ok(());
    }
    Err(CacheError::ChecksumMismatch {
        origin: origin.to_owned(),
        algo: c.algo,
        expected: c.hex.clone(),
        actual: actual.to_owned(),
    })
}

/// Reads a JSON record; `None` if the file does not exist.
pub(crate) fn read_record<T: serde::de::DeserializeOwned>(
    path: &Path,
) -> Result<Option<T>, CacheError> {
    match fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| CacheError::Record {
                    path: path.to_owned(),
                    source,
                })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).at(path),
    }
}
