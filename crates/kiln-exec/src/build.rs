//! A build: a [`Plan`] run by the [`scheduler`](crate::scheduler) with the real
//! [`runners`](crate::runners), every output committed to kiln-cache's artifact store under its
//! step key (so a second build finds it), a run folder with every step's log, events to a
//! [`Sink`], and a summary of the images.

mod events;
mod summary;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use kiln_cache::{
    Artifact, ArtifactKey, ArtifactSpec, ArtifactStore, BaseCache, CacheError, CacheRoot,
};
use kiln_plan::{Plan, Step, StepKind, StepParams};

pub use events::{BuildEvent, JsonSink, PlainSink, Progress, ProgressSink, Sink, json_line};
pub use summary::{ImageRow, render_summary};

use crate::domain_xml::DiskFormat;
use crate::guest::Cancel;
use crate::host::{Host, resolve_accel};
use crate::libvirt::Libvirt;
use crate::runners::publish::{CLOUD_HELP, Clouds, PublishSettings, Published};
use crate::runners::{self, Env, GuestHost, Mkisofs, RunError, StepCx, StepLog, output_file};
use crate::scheduler::{self, Placement, Pools, Resource, Task, TaskError, TaskRunner, TaskStatus};

/// Something per input role of a step.
type ByRole<T> = BTreeMap<&'static str, T>;

/// Exit code of `kiln build` when every image was built or cached.
pub const EXIT_OK: i32 = 0;
/// Exit code when a step failed (after the CLI's 1–5 for pipeline, usage, I/O and cache errors).
pub const EXIT_FAILED: i32 = 6;
/// Exit code when the build was cancelled (SIGINT): 128 + 2, as shells report it.
pub const EXIT_CANCELLED: i32 = 130;

/// How to build.
pub struct BuildOptions {
    /// The cache (artifacts, `_base`); must be reachable by libvirt's QEMU user.
    pub cache: CacheRoot,
    /// Hosts guests run on.
    pub hosts: Vec<Host>,
    /// Local pools.
    pub pools: Pools,
    /// Where run folders go (`<runs_dir>/<run id>/`).
    pub runs_dir: PathBuf,
    /// The run id (domain names carry it): unique per process.
    pub run_id: String,
    /// Set on SIGINT.
    pub cancel: Cancel,
    /// Progress view.
    pub sink: Arc<dyn Sink>,
    /// How often guests are looked at.
    pub poll_interval: Duration,
    /// How publish steps and Glance sources reach their cloud; `None` leaves publish steps out
    /// (`--no-publish`).
    pub publish: Option<PublishSettings>,
    /// `kiln publish`: run only the publish steps, from images already in the cache; nothing is
    /// built (an image that is not built is an error before anything runs).
    pub publish_only: bool,
}

impl BuildOptions {
    /// Defaults for a cache at `cache`: the local host, this machine's pools, run folders in
    /// `<cache>/runs`, plain lines on stderr.
    #[must_use]
    pub fn new(cache: impl Into<PathBuf>) -> Self {
        let cache: PathBuf = cache.into();
        Self {
            runs_dir: CacheRoot::new(&cache).runs_dir(),
            cache: CacheRoot::new(cache),
            hosts: vec![Host::local()],
            pools: Pools::of_this_machine(),
            run_id: default_run_id(),
            cancel: Cancel::new(),
            sink: Arc::new(PlainSink),
            poll_interval: Duration::from_millis(50),
            publish: Some(PublishSettings::from_process()),
            publish_only: false,
        }
    }
}

/// `r<pid>-<seconds since epoch, base 36 tail>`: short, unique per process.
#[must_use]
pub fn default_run_id() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("r{}-{}", std::process::id(), secs % 1_000_000)
}

/// One step's result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepResult {
    /// Step id.
    pub id: String,
    /// Kind.
    pub kind: StepKind,
    /// Key (64 hex).
    pub key: String,
    /// What happened.
    #[serde(flatten)]
    pub status: TaskStatus,
    /// The step's log in the run folder.
    pub log: PathBuf,
    /// The artifact folder, when complete.
    pub artifact: Option<PathBuf>,
}

/// What a build did.
#[derive(Debug, Clone)]
pub struct BuildResult {
    /// The run folder.
    pub run_dir: PathBuf,
    /// Steps in plan order.
    pub steps: Vec<StepResult>,
    /// The images (one per planned cell).
    pub images: Vec<ImageRow>,
    /// Cancelled by the user.
    pub cancelled: bool,
    /// Wall-clock time.
    pub elapsed: Duration,
    /// Guests started (0 on a fully cached build).
    pub guests_run: usize,
    /// What the publish steps did (created or reused images), in plan order.
    pub published: Vec<Published>,
}

impl BuildResult {
    /// [`EXIT_OK`], [`EXIT_FAILED`] or [`EXIT_CANCELLED`].
    #[must_use]
    pub fn exit_code(&self) -> i32 {
        if self.cancelled {
            EXIT_CANCELLED
        } else if self.steps.iter().all(|s| {
            matches!(
                s.status,
                TaskStatus::Built { .. } | TaskStatus::Cached | TaskStatus::NotNeeded
            )
        }) {
            EXIT_OK
        } else {
            EXIT_FAILED
        }
    }

    /// Every failure, `step: message`.
    #[must_use]
    pub fn failures(&self) -> Vec<(String, String)> {
        self.steps
            .iter()
            .filter_map(|s| match &s.status {
                TaskStatus::Failed { error, .. } => Some((s.id.clone(), error.clone())),
                _ => None,
            })
            .collect()
    }
}

/// Setting up the build failed before any step ran.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The cache or run folder could not be made.
    #[error("preparing `{path}`: {source}")]
    Prepare {
        /// The folder.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The cache could not be read.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// A publish step's cloud is not configured or not reachable (checked before any step runs).
    #[error("publish step `{step}` cannot reach its cloud: {message}\n  help: {help}")]
    Publish {
        /// The step.
        step: String,
        /// Why.
        message: String,
        /// What to do.
        help: &'static str,
    },
    /// `kiln publish` of images that are not (completely) built.
    #[error(
        "not built: {}\n  help: build first: `kiln build` with the same pipelines and selection",
        .0.join("; ")
    )]
    NotBuilt(Vec<String>),
    /// `kiln publish` with publishing turned off, or nothing to publish.
    #[error("nothing to publish: {0}")]
    NothingToPublish(String),
}

/// `kiln publish`: the publish steps and the steps they read (which must all be cached).
fn publish_only<'p>(plan: &'p Plan, store: &ArtifactStore) -> Result<Vec<&'p Step>, BuildError> {
    let publish: Vec<&Step> = plan
        .steps()
        .filter(|s| s.kind() == StepKind::Publish)
        .collect();
    if publish.is_empty() {
        return Err(BuildError::NothingToPublish(
            "no selected pipeline has a `publish` node".to_owned(),
        ));
    }
    let mut needed: Vec<&str> = Vec::new();
    let mut missing = Vec::new();
    for step in &publish {
        for input in &step.inputs {
            let Some(dep) = plan.step(input.step.as_str()) else {
                continue;
            };
            if matches!(store.peek(&artifact_key(dep)), Ok(Some(_))) {
                needed.push(dep.id.as_str());
            } else {
                let image = step.owners.first().map_or("?", |o| o.image.as_str());
                missing.push(format!(
                    "`{image}` has no cached `{}` step ({})",
                    dep.kind(),
                    dep.id
                ));
            }
        }
    }
    if !missing.is_empty() {
        return Err(BuildError::NotBuilt(missing));
    }
    Ok(plan
        .steps()
        .filter(|s| s.kind() == StepKind::Publish || needed.contains(&s.id.as_str()))
        .collect())
}

/// The steps a build runs: all of them, or all but `publish` with `--no-publish`.
fn buildable(plan: &Plan, publish: bool) -> Vec<&Step> {
    plan.steps()
        .filter(|s| publish || s.kind() != StepKind::Publish)
        .collect()
}

/// Connects to the cloud of every publish step before anything runs, so a missing or wrong
/// configuration fails the build before a guest starts.
fn connect_publish_clouds(steps: &[&Step], clouds: &Clouds) -> Result<(), BuildError> {
    for step in steps.iter().filter(|s| s.kind() == StepKind::Publish) {
        let StepParams::Publish(p) = &step.params else {
            continue;
        };
        clouds
            .connect(clouds.cloud_for(p).as_deref())
            .map_err(|message| BuildError::Publish {
                step: step.id.to_string(),
                message,
                help: CLOUD_HELP,
            })?;
    }
    Ok(())
}

fn resource(step: &Step) -> Resource {
    match step.kind() {
        StepKind::Install | StepKind::Customize | StepKind::BootTest => {
            let vm = step.host.vm.as_ref();
            Resource::Guest {
                vcpus: vm.map_or(1, |v| v.cpus),
                memory_mib: vm.map_or(1024, |v| v.memory_bytes / (1024 * 1024)),
            }
        }
        StepKind::Convert => Resource::Cpu,
        _ => Resource::Io,
    }
}

fn artifact_key(step: &Step) -> ArtifactKey {
    ArtifactKey::from_bytes(*step.key.as_bytes())
}

/// Connection and accelerator of a host, made on first use (a fully cached build never connects).
struct HostSlot {
    host: Host,
    conn: OnceLock<Result<GuestHost, String>>,
}

struct Runner<'a> {
    steps: Vec<&'a Step>,
    index: BTreeMap<&'a str, usize>,
    store: ArtifactStore,
    env: Env,
    hosts: Vec<HostSlot>,
    artifacts: Mutex<Vec<Option<Artifact>>>,
    logs: Vec<StepLog>,
    sink: Arc<dyn Sink>,
    started: Mutex<Vec<Option<Instant>>>,
    guests_run: std::sync::atomic::AtomicUsize,
    published: Mutex<Vec<Option<Published>>>,
}

impl Runner<'_> {
    fn host(&self, h: usize) -> Result<&GuestHost, String> {
        let slot = &self.hosts[h];
        slot.conn
            .get_or_init(|| {
                let lv = Libvirt::connect(&slot.host.uri).map_err(|e| e.to_string())?;
                // One folder per host: hosts connect concurrently.
                let probe_dir = self.env.run_dir.join(format!("accel-probe-{h}"));
                runners::private_dir(&probe_dir).map_err(|e| e.to_string())?;
                if crate::qemu_access::is_local_system(&slot.host.uri)
                    && let Some(uid) = crate::qemu_access::qemu_uid()
                {
                    crate::qemu_access::grant_path(
                        &probe_dir.join("probe"),
                        &self.env.private_roots(),
                        uid,
                    )?;
                }
                let choice = resolve_accel(&slot.host, &lv, &probe_dir);
                let _ = std::fs::remove_dir_all(&probe_dir);
                self.sink.event(&BuildEvent::Host {
                    uri: slot.host.uri.clone(),
                    accel: format!("{:?}", choice.domain_type).to_lowercase(),
                    reason: choice.reason.clone(),
                });
                Ok(GuestHost {
                    hv: Arc::new(lv),
                    domain_type: choice.domain_type,
                })
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The artifact of step `i`, from this run or the cache.
    fn artifact(&self, i: usize) -> Result<Artifact, String> {
        if let Some(a) = &self.artifacts.lock().expect("lock")[i] {
            return Ok(a.clone());
        }
        let step = self.steps[i];
        let user = step.owners.first().map(|o| o.image.as_str());
        match self.store.get(&artifact_key(step), user) {
            Ok(Some(a)) => {
                self.artifacts.lock().expect("lock")[i] = Some(a.clone());
                Ok(a)
            }
            Ok(None) => Err(format!("the output of `{}` is not in the cache", step.id)),
            Err(e) => Err(format!("reading the output of `{}`: {e}", step.id)),
        }
    }

    /// The step's input files by role, and the format of those that are disk images (from the
    /// producing step's parameters).
    fn inputs(&self, step: &Step) -> Result<(ByRole<PathBuf>, ByRole<DiskFormat>), String> {
        let mut inputs = BTreeMap::new();
        let mut formats = BTreeMap::new();
        for input in &step.inputs {
            let Some(&j) = self.index.get(input.step.as_str()) else {
                return Err(format!("input step `{}` is not in the build", input.step));
            };
            let a = self.artifact(j)?;
            let Some(name) = output_file(a.record.outputs.keys(), input.artifact) else {
                return Err(format!(
                    "the output of `{}` has no `{}` (it has: {})",
                    input.step,
                    input.artifact,
                    a.record
                        .outputs
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            };
            inputs.insert(input.role, a.output(name));
            if let Some(f) = runners::disk_output_format(&self.steps[j].params) {
                formats.insert(input.role, f);
            }
        }
        Ok((inputs, formats))
    }

    /// The digests the artifact store recorded for a step's `image` input (the converted file).
    fn image_digests(&self, step: &Step) -> Option<kiln_cache::Digests> {
        let input = step.inputs.iter().find(|i| i.role == "image")?;
        let a = self.artifact(*self.index.get(input.step.as_str())?).ok()?;
        let name = output_file(a.record.outputs.keys(), input.artifact)?;
        Some(a.record.outputs[name].digests.clone())
    }

    /// Runs publish step `i` (no artifact: Glance is its record).
    fn publish(&self, i: usize, cx: &StepCx<'_>) -> Result<(), TaskError> {
        let step = self.steps[i];
        let log = &self.logs[i];
        let Some(clouds) = self.env.clouds.as_deref() else {
            let msg = format!("step `{}`: publishing is turned off", step.id);
            log.line(&msg);
            return Err(TaskError::Failed(msg));
        };
        match runners::publish::run(cx, clouds, self.image_digests(step)) {
            Ok(p) => {
                self.sink.event(&BuildEvent::Published {
                    image: Box::new(p.clone()),
                });
                self.published.lock().expect("lock")[i] = Some(p);
                Ok(())
            }
            Err(RunError::Cancelled) => Err(TaskError::Cancelled),
            Err(RunError::Failed(m)) => {
                log.line(&m);
                Err(TaskError::Failed(m))
            }
        }
    }
}

impl TaskRunner for Runner<'_> {
    fn is_cached(&self, i: usize) -> bool {
        // A publish is never cached: it asks Glance every time (and reuses an identical image).
        self.steps[i].kind() != StepKind::Publish
            && matches!(self.store.peek(&artifact_key(self.steps[i])), Ok(Some(_)))
    }

    fn run(&self, i: usize, placement: Placement) -> Result<(), TaskError> {
        let step = self.steps[i];
        let log = &self.logs[i];
        log.line(format_args!(
            "step `{}` ({}), key {}",
            step.id,
            step.kind(),
            step.key
        ));
        let (inputs, disk_formats) = self.inputs(step).map_err(|e| {
            log.line(&e);
            TaskError::Failed(format!("step `{}`: {e}", step.id))
        })?;
        let host = match placement {
            Placement::Host(h) => Some(self.host(h).map_err(|e| {
                let msg = format!("step `{}`: host `{}`: {e}", step.id, self.hosts[h].host.uri);
                log.line(&msg);
                TaskError::Failed(msg)
            })?),
            Placement::Local => None,
        };
        if host.is_some() {
            self.guests_run
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        let cx = StepCx {
            step,
            inputs,
            disk_formats,
            env: &self.env,
            host,
            log,
        };
        if step.kind() == StepKind::Publish {
            return self.publish(i, &cx);
        }
        let spec = ArtifactSpec {
            kind: step.kind().name().to_owned(),
            inputs: step
                .inputs
                .iter()
                .filter_map(|inp| {
                    let j = *self.index.get(inp.step.as_str())?;
                    Some((inp.role.to_owned(), self.steps[j].key.to_hex()))
                })
                .collect(),
            tools: BTreeMap::new(),
            user: step.owners.first().map(|o| o.image.clone()),
        };
        match self
            .store
            .get_or_build(&artifact_key(step), spec, |staging| {
                runners::run_step(&cx, staging)
            }) {
            Ok(a) => {
                log.line(format_args!(
                    "committed `{}` ({} bytes{})",
                    a.dir.display(),
                    a.record.size(),
                    if a.reused {
                        ", built by another process"
                    } else {
                        ""
                    }
                ));
                self.artifacts.lock().expect("lock")[i] = Some(a);
                Ok(())
            }
            Err(CacheError::Builder { source, .. }) => match source.downcast::<RunError>() {
                Ok(e) => match *e {
                    RunError::Cancelled => {
                        log.line("cancelled");
                        Err(TaskError::Cancelled)
                    }
                    RunError::Failed(m) => {
                        log.line(&m);
                        Err(TaskError::Failed(m))
                    }
                },
                Err(other) => {
                    log.line(&other);
                    Err(TaskError::Failed(format!("step `{}`: {other}", step.id)))
                }
            },
            Err(e) => {
                let msg = format!("step `{}`: cache: {e}", step.id);
                log.line(&msg);
                Err(TaskError::Failed(msg))
            }
        }
    }

    fn event(&self, event: &scheduler::Event) {
        match event {
            scheduler::Event::Started { task, placement } => {
                self.started.lock().expect("lock")[*task] = Some(Instant::now());
                let step = self.steps[*task];
                self.sink.event(&BuildEvent::Started {
                    step: step.id.to_string(),
                    kind: step.kind(),
                    host: match placement {
                        Placement::Host(h) => Some(self.hosts[*h].host.uri.clone()),
                        Placement::Local => None,
                    },
                });
            }
            scheduler::Event::Ended { task, status } => {
                let step = self.steps[*task];
                let log = &self.logs[*task];
                match status {
                    TaskStatus::Cached => log.line(format_args!(
                        "step `{}`: cached in `{}`",
                        step.id,
                        self.store.entry_dir(&artifact_key(step)).display()
                    )),
                    TaskStatus::NotNeeded => log.line(format_args!(
                        "step `{}`: not needed (everything that uses it is cached)",
                        step.id
                    )),
                    TaskStatus::Skipped { because } => {
                        log.line(format_args!("step `{}`: skipped ({because})", step.id));
                    }
                    _ => {}
                }
                let bytes = match status {
                    TaskStatus::Built { .. } => self.artifacts.lock().expect("lock")[*task]
                        .as_ref()
                        .map(|a| a.record.size()),
                    _ => None,
                };
                self.sink.event(&BuildEvent::Ended {
                    step: step.id.to_string(),
                    kind: step.kind(),
                    status: status.clone(),
                    bytes,
                });
            }
        }
    }
}

/// Runs the build of `plan`.
///
/// # Errors
/// The cache or run folder cannot be prepared. Step failures are in the result, not errors.
pub fn build(plan: &Plan, opts: &BuildOptions) -> Result<BuildResult, BuildError> {
    let t0 = Instant::now();
    let prepare = |path: &PathBuf| -> Result<(), BuildError> {
        runners::private_dir(path).map_err(|source| BuildError::Prepare {
            path: path.clone(),
            source,
        })
    };
    // The layout, private (except Nova's own folders of a cache shared with Nova).
    opts.cache.create_dirs()?;
    prepare(&opts.runs_dir)?;
    let run_dir = opts.runs_dir.join(&opts.run_id);
    prepare(&run_dir)?;
    // Held until the build returns: `kiln cache prune` leaves a run folder alone while it is held.
    let _run_lock = kiln_cache::maintain::RunLock::acquire(&run_dir)?;
    // Secret answer media of runs killed before they could delete them.
    runners::remove_secret_leftovers(&opts.runs_dir).map_err(|detail| BuildError::Prepare {
        path: opts.runs_dir.clone(),
        source: std::io::Error::other(detail),
    })?;

    let clouds = opts.publish.clone().map(|s| Arc::new(Clouds::new(s)));
    let steps = if opts.publish_only {
        if clouds.is_none() {
            return Err(BuildError::NothingToPublish(
                "publishing is turned off".to_owned(),
            ));
        }
        publish_only(plan, &ArtifactStore::new(opts.cache.clone()))?
    } else {
        buildable(plan, clouds.is_some())
    };
    if let Some(clouds) = &clouds {
        connect_publish_clouds(&steps, clouds)?;
    }
    let index: BTreeMap<&str, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let tasks: Vec<Task> = steps
        .iter()
        .map(|s| Task {
            name: s.id.to_string(),
            deps: s
                .inputs
                .iter()
                .filter_map(|inp| index.get(inp.step.as_str()).copied())
                .collect(),
            resource: resource(s),
        })
        .collect();
    let logs: Vec<StepLog> = steps
        .iter()
        .map(|s| {
            StepLog::create(run_dir.join(format!("{}.log", runners::file_stem(s.id.as_str()))))
        })
        .collect();
    let runner = Runner {
        index: index.clone(),
        store: ArtifactStore::new(opts.cache.clone()),
        env: Env {
            base: BaseCache::new(opts.cache.clone(), kiln_cache::QemuImg::default()),
            qemu_img: crate::qemu_img::QemuImg::default(),
            mkisofs: Mkisofs::default(),
            run_id: opts.run_id.clone(),
            run_dir: run_dir.clone(),
            cancel: opts.cancel.clone(),
            poll_interval: opts.poll_interval,
            sink: Arc::clone(&opts.sink),
            clouds,
        },
        hosts: opts
            .hosts
            .iter()
            .map(|h| HostSlot {
                host: h.clone(),
                conn: OnceLock::new(),
            })
            .collect(),
        artifacts: Mutex::new(vec![None; steps.len()]),
        logs,
        sink: Arc::clone(&opts.sink),
        started: Mutex::new(vec![None; steps.len()]),
        guests_run: std::sync::atomic::AtomicUsize::new(0),
        published: Mutex::new(vec![None; steps.len()]),
        steps,
    };
    let capacities: Vec<_> = opts.hosts.iter().map(|h| h.capacity).collect();
    let report = scheduler::run(&tasks, &capacities, opts.pools, &runner, &opts.cancel);

    let mut results = Vec::with_capacity(runner.steps.len());
    for (i, step) in runner.steps.iter().enumerate() {
        let status = report.statuses[i].clone();
        let artifact = match status {
            TaskStatus::Built { .. } | TaskStatus::Cached => runner.artifact(i).ok().map(|a| a.dir),
            _ => None,
        };
        results.push(StepResult {
            id: step.id.to_string(),
            kind: step.kind(),
            key: step.key.to_hex(),
            status,
            log: runner.logs[i].path().to_path_buf(),
            artifact,
        });
    }
    let images = summary::rows(plan, &runner, &results);
    let result = BuildResult {
        run_dir,
        steps: results,
        images,
        cancelled: report.cancelled,
        elapsed: t0.elapsed(),
        guests_run: runner.guests_run.load(std::sync::atomic::Ordering::SeqCst),
        published: std::mem::take(&mut *runner.published.lock().expect("lock"))
            .into_iter()
            .flatten()
            .collect(),
    };
    opts.sink.event(&BuildEvent::Finished {
        exit_code: result.exit_code(),
        elapsed: result.elapsed,
    });
    Ok(result)
}

/// Content digests of local files for the planner, remembered in the cache's hash memo so an
/// unchanged multi-GB ISO is not read again on the next build.
#[derive(Debug, Clone)]
pub struct MemoDigests(kiln_cache::HashMemo, CacheRoot);

impl MemoDigests {
    /// The memo of the cache at `root`.
    #[must_use]
    pub fn new(root: &CacheRoot) -> Self {
        Self(kiln_cache::HashMemo::new(root.memo_dir()), root.clone())
    }
}

impl kiln_plan::ContentDigest for MemoDigests {
    /// HMAC-SHA256 of the secret's value under the cache's secret key; `None` when the secret
    /// cannot be read now (the step that needs it then fails and says why).
    fn secret_mac(&self, secret: &kiln_syntax::SecretRef) -> Option<[u8; 32]> {
        let value = secret.resolve().ok()?;
        self.1.secret_mac(value.expose().as_bytes()).ok()
    }

    fn sha256(&self, path: &std::path::Path) -> std::io::Result<String> {
        let hashed = self
            .0
            .hash(path, &[kiln_cache::Algo::Sha256])
            .map_err(std::io::Error::other)?;
        hashed
            .digests
            .get(kiln_cache::Algo::Sha256)
            .map(str::to_owned)
            .ok_or_else(|| std::io::Error::other("no sha256 computed"))
    }
}
