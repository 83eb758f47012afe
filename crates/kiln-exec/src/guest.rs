//! Runs one guest to a verdict: define, start, watch the console and the domain state, decide
//! success only from evidence on the serial console, and always remove the domain.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::console::{Console, Pattern};
use crate::domain_xml::{DomainSpec, DomainXmlError, domain_xml};
use crate::hypervisor::{DomainState, Hypervisor, HypervisorError, LifecycleEvent};

/// Lines of console shown in errors.
const TAIL_LINES: usize = 20;

/// After QEMU exited without the success line on the console yet: how long the console must stay
/// unchanged (virtlogd may still be writing it), and the most to wait.
const CONSOLE_SETTLE: Duration = Duration::from_millis(500);
const CONSOLE_DRAIN: Duration = Duration::from_secs(3);

/// How long QEMU may take to exit after the guest powered off or was destroyed, before the
/// runner falls back to asking libvirt for the domain's state.
const EXIT_BOUND: Duration = Duration::from_secs(10);

/// Set from a SIGINT handler (or anywhere) to stop running guests; they are destroyed and the
/// runner returns [`GuestError::Cancelled`].
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A flag that is not set.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every runner holding this flag to stop. Async-signal-safe (one atomic store).
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`Cancel::cancel`] was called.
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// The shared flag, e.g. for `signal_hook::flag::register`.
    #[must_use]
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.0)
    }
}

/// When a guest has done its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// The guest powers off and the success line was printed (installs, customize).
    PowerOff,
    /// As soon as the success line appears; the guest is then destroyed (probes, boot tests).
    SuccessLine,
}

/// Persistent domains can be inspected with `virsh` while they run and keep their shut-off state;
/// transient ones vanish on their own when QEMU exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// `define` + `start`, then `undefine`.
    Persistent,
    /// `create` (one call), gone when stopped.
    Transient,
}

/// One guest run.
#[derive(Debug, Clone)]
pub struct GuestSpec {
    /// The plan step's name, for messages.
    pub step: String,
    /// The domain; `domain.name` should come from [`domain_name`].
    pub domain: DomainSpec,
    /// The line that proves success.
    pub success: Pattern,
    /// A line that proves failure (the step fails as soon as it appears).
    pub failure: Option<Pattern>,
    /// When the guest is done.
    pub completion: Completion,
    /// Whole-run limit.
    pub timeout: Duration,
    /// Fail when the console prints nothing for this long.
    pub inactivity: Option<Duration>,
    /// Persistent or transient domain.
    pub persistence: Persistence,
    /// How often the domain state and console are looked at.
    pub poll_interval: Duration,
    /// Keys to press while the guest boots (a boot prompt that waits for one), if any.
    pub key_presses: Option<KeyPresses>,
    /// Console output (bytes, across log rotations) after which the guest is stopped with
    /// [`GuestError::ConsoleFlood`]; [`crate::MAX_CONSOLE_BYTES`] unless a test wants less.
    pub console_limit: u64,
}

/// Pressing a key again and again for a while after the guest starts: what gets Windows' UEFI
/// media past "Press any key to boot from CD or DVD..." (the prompt shows for a few seconds on the
/// screen only, so there is nothing on the console to wait for; see
/// docs/decisions/windows-boot-prompt.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPresses {
    /// The Linux input keycode pressed (57: space).
    pub keycode: u32,
    /// Time between two presses.
    pub every: Duration,
    /// Presses stop this long after the start.
    pub until: Duration,
}

/// What a successful run saw.
#[derive(Debug, Clone)]
pub struct GuestOutcome {
    /// The console line that matched the success pattern.
    pub success_line: String,
    /// The console output, as the guest wrote it: all of it, or the last [`crate::MAX_CONSOLE_KEPT`]
    /// bytes of a longer one.
    pub console: String,
    /// Where each part of the run's time went.
    pub timings: Timings,
}

/// Wall-clock time of each phase of a run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    /// Rendering and defining the domain (zero for transient domains).
    pub define: Duration,
    /// `start` (or transient `create`) until libvirt returned: QEMU is up.
    pub start: Duration,
    /// From start until the verdict (guest shut off, or the success line).
    pub run: Duration,
    /// From the guest printing its success line until libvirt reported it shut off.
    pub shutdown_lag: Duration,
    /// Destroy + undefine.
    pub teardown: Duration,
}

/// What the console and screen showed when a guest failed.
#[derive(Debug, Clone)]
pub struct Evidence {
    /// The console log file (kept).
    pub console_log: PathBuf,
    /// Its last lines.
    pub console_tail: String,
    /// The screenshot taken, or why there is none.
    pub screenshot: Result<PathBuf, String>,
}

impl std::fmt::Display for Evidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.screenshot {
            Ok(p) => writeln!(f, "screenshot: `{}`", p.display())?,
            Err(why) => writeln!(f, "no screenshot: {why}")?,
        }
        write!(f, "console `{}`, last lines:", self.console_log.display())?;
        if self.console_tail.is_empty() {
            write!(f, " (empty)")
        } else {
            for line in self.console_tail.lines() {
                write!(f, "\n  | {line}")?;
            }
            Ok(())
        }
    }
}

/// Why a guest run failed.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// The spec cannot be turned into a domain.
    #[error("step `{step}`: invalid domain: {source}")]
    Xml {
        /// Step.
        step: String,
        /// Cause.
        #[source]
        source: DomainXmlError,
    },
    /// libvirt's QEMU user could not open a file (dynamic ownership needs every parent folder
    /// to be searchable by it; kiln grants that inside its cache and run folders only).
    #[error(
        "step `{step}`: `{path}` is not reachable by libvirt's qemu user: folder `{folder}` is not searchable by it; help: put the cache under a folder others can search (e.g. /var/lib/kiln or /tmp), not under /root"
    )]
    Unreachable {
        /// Step.
        step: String,
        /// The file.
        path: PathBuf,
        /// The folder lacking o+x.
        folder: PathBuf,
    },
    /// A libvirt call failed.
    #[error("step `{step}`: {source}")]
    Hypervisor {
        /// Step.
        step: String,
        /// Cause.
        #[source]
        source: HypervisorError,
    },
    /// The console log could not be read.
    #[error("step `{step}`: reading console `{path}`: {source}")]
    Console {
        /// Step.
        step: String,
        /// Log file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Over the whole-run limit.
    #[error(
        "step `{step}`: guest `{domain}` timed out after {after:?} without its success line {success}\n{evidence}"
    )]
    Timeout {
        /// Step.
        step: String,
        /// Domain name.
        domain: String,
        /// The limit.
        after: Duration,
        /// Pattern that never showed.
        success: String,
        /// Console and screen.
        evidence: Box<Evidence>,
    },
    /// The console stayed silent too long.
    #[error(
        "step `{step}`: guest `{domain}` printed nothing on its console for {quiet:?}\n{evidence}"
    )]
    Inactive {
        /// Step.
        step: String,
        /// Domain name.
        domain: String,
        /// The inactivity limit.
        quiet: Duration,
        /// Console and screen.
        evidence: Box<Evidence>,
    },
    /// The failure pattern showed.
    #[error("step `{step}`: guest `{domain}` reported failure: `{line}`\n{evidence}")]
    FailureLine {
        /// Step.
        step: String,
        /// Domain name.
        domain: String,
        /// The matching line.
        line: String,
        /// Console and screen.
        evidence: Box<Evidence>,
    },
    /// The guest wrote more to its console than [`crate::MAX_CONSOLE_BYTES`]; it was stopped.
    #[error(
        "step `{step}`: guest `{domain}` wrote {written} bytes to its console, more than the {limit} allowed; it was stopped\n{evidence}"
    )]
    ConsoleFlood {
        /// Step.
        step: String,
        /// Domain name.
        domain: String,
        /// Bytes written so far.
        written: u64,
        /// The cap.
        limit: u64,
        /// Console and screen.
        evidence: Box<Evidence>,
    },
    /// Powered off (or reset with `on_reboot=destroy`) without the success line.
    #[error(
        "step `{step}`: guest `{domain}` shut off without its success line {success}\n{evidence}"
    )]
    NoEvidence {
        /// Step.
        step: String,
        /// Domain name.
        domain: String,
        /// Pattern that never showed.
        success: String,
        /// Console (no screen: the guest is gone).
        evidence: Box<Evidence>,
    },
    /// Crashed, or paused by the hypervisor (a KVM emulation failure looks like this).
    #[error(
        "step `{step}`: guest `{domain}` stopped unexpectedly ({state:?}; a paused guest usually means a KVM emulation failure or a disk I/O error)\n{evidence}"
    )]
    Crashed {
        /// Step.
        step: String,
        /// Domain name.
        domain: String,
        /// The state seen.
        state: DomainState,
        /// Console and screen.
        evidence: Box<Evidence>,
    },
    /// Stopped through [`Cancel`].
    #[error("step `{step}`: cancelled; guest `{domain}` destroyed")]
    Cancelled {
        /// Step.
        step: String,
        /// Domain name.
        domain: String,
    },
}

impl GuestError {
    /// The failure's evidence, when there is any.
    #[must_use]
    pub fn evidence(&self) -> Option<&Evidence> {
        match self {
            GuestError::Timeout { evidence, .. }
            | GuestError::Inactive { evidence, .. }
            | GuestError::FailureLine { evidence, .. }
            | GuestError::NoEvidence { evidence, .. }
            | GuestError::Crashed { evidence, .. }
            | GuestError::ConsoleFlood { evidence, .. } => Some(evidence.as_ref()),
            _ => None,
        }
    }
}

/// `kiln-<run>-<step>`, with characters libvirt names should not have replaced by `_`.
#[must_use]
pub fn domain_name(run: &str, step: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!(
        "{}{}-{}",
        crate::domain_xml::DOMAIN_PREFIX,
        clean(run),
        clean(step)
    )
}

/// Destroys and undefines the domain when dropped (also while unwinding from a panic).
struct DomainGuard<'h> {
    hv: &'h dyn Hypervisor,
    name: String,
    armed: bool,
}

impl DomainGuard<'_> {
    fn release(mut self) -> Result<(), HypervisorError> {
        self.armed = false;
        let destroyed = self.hv.destroy(&self.name);
        let undefined = self.hv.undefine(&self.name);
        destroyed.and(undefined)
    }

    /// Nothing left to remove: a transient domain whose QEMU has exited.
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for DomainGuard<'_> {
    fn drop(&mut self) {
        self.hv.unwatch(&self.name);
        if self.armed {
            let _ = self.hv.destroy(&self.name);
            let _ = self.hv.undefine(&self.name);
        }
    }
}

/// Boots the guest and waits for its verdict. The domain never outlives this call.
///
/// # Errors
/// See [`GuestError`]: every failure names the step; those where the guest ran carry the console
/// tail and, when the guest was still up, a screenshot saved beside the console log.
pub fn run_guest(
    hv: &dyn Hypervisor,
    spec: &GuestSpec,
    cancel: &Cancel,
) -> Result<GuestOutcome, GuestError> {
    let step = spec.step.clone();
    let name = spec.domain.name.clone();
    let xml = domain_xml(&spec.domain).map_err(|source| GuestError::Xml {
        step: step.clone(),
        source,
    })?;
    if crate::qemu_access::is_local_system(hv.uri()) {
        check_reachable(&spec.domain, &step)?;
    }
    let hv_err = |source| GuestError::Hypervisor {
        step: step.clone(),
        source,
    };
    let log = &spec.domain.serial_log;
    // A stale log from an earlier run must not count as evidence before QEMU truncates it.
    match std::fs::remove_file(log) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(GuestError::Console {
                step,
                path: log.clone(),
                source,
            });
        }
    }
    let mut console = Console::new(log);
    let mut timings = Timings::default();

    let t = Instant::now();
    hv.watch(&name);
    let guard = DomainGuard {
        hv,
        name: name.clone(),
        armed: true,
    };
    match spec.persistence {
        Persistence::Persistent => {
            hv.define(&xml).map_err(hv_err)?;
            timings.define = t.elapsed();
            let t = Instant::now();
            hv.start(&name).map_err(hv_err)?;
            timings.start = t.elapsed();
        }
        Persistence::Transient => {
            hv.create_transient(&xml).map_err(hv_err)?;
            timings.start = t.elapsed();
        }
    }
    // On the local host the run ends when QEMU has exited (disk closed), not when libvirt has
    // finished its bookkeeping, which waits for PID 1 to reap QEMU (see the guest-runner record).
    let qemu = hv.local_process(&name);
    // A transient domain whose QEMU has exited is removed by libvirt itself.
    let vanishes = |exited: bool| exited && spec.persistence == Persistence::Transient;

    let started = Instant::now();
    let mut next_key = spec.key_presses.map(|_| started);
    console.reset_clock();
    let mut success_line: Option<(String, Instant)> = None;
    // The guest powered off (event or state), and whether its local QEMU was then seen to exit.
    let mut powered_off = false;
    let mut qemu_exited: Option<bool> = None;
    let evidence = |console: &Console, shot: bool| {
        Box::new(Evidence {
            console_log: log.clone(),
            console_tail: console.tail(TAIL_LINES),
            screenshot: if shot {
                let name = &spec.domain.name;
                hv.screenshot(name, &log.with_file_name(format!("{name}.screen")))
                    .map_err(|e| e.message)
            } else {
                Err("the guest was no longer running".into())
            },
        })
    };
    loop {
        if cancel.is_cancelled() {
            drop(guard);
            return Err(GuestError::Cancelled { step, domain: name });
        }
        if let (Some(keys), Some(at)) = (spec.key_presses, next_key) {
            let now = Instant::now();
            if now.duration_since(started) > keys.until {
                next_key = None;
            } else if now >= at {
                // A press that fails (the guest just shut off) is no error of its own: the state
                // check below says what happened.
                let _ = hv.send_key(&name, &[keys.keycode]);
                next_key = Some(at + keys.every);
            }
        }
        console.poll().map_err(|source| GuestError::Console {
            step: step.clone(),
            path: log.clone(),
            source,
        })?;
        let found = match &spec.failure {
            Some(failure) => console.scan(&[&spec.success, failure]),
            None => console.scan(&[&spec.success]),
        };
        // A guest that floods its console is stopped before its log fills the disk.
        let written = console.written();
        if written > spec.console_limit {
            let evidence = evidence(&console, true);
            drop(guard);
            return Err(GuestError::ConsoleFlood {
                step,
                domain: name,
                written,
                limit: spec.console_limit,
                evidence,
            });
        }
        if let Some(Some(line)) = found.get(1) {
            let evidence = evidence(&console, true);
            return Err(GuestError::FailureLine {
                step,
                domain: name,
                line: crate::printable(line),
                evidence,
            });
        }
        if success_line.is_none()
            && let Some(Some(line)) = found.first()
        {
            success_line = Some((line.clone(), Instant::now()));
        }
        if spec.completion == Completion::SuccessLine
            && let Some((line, _)) = success_line.take()
        {
            timings.run = started.elapsed();
            let t = Instant::now();
            let exited = match qemu {
                Some(q) if spec.persistence == Persistence::Transient => {
                    hv.destroy_detached(&name);
                    q.wait_exit(EXIT_BOUND)
                }
                _ => false,
            };
            if vanishes(exited) {
                guard.disarm();
            } else {
                guard.release().map_err(hv_err)?;
            }
            timings.teardown = t.elapsed();
            return Ok(GuestOutcome {
                success_line: line,
                console: console.text(),
                timings,
            });
        }

        if powered_off && qemu_exited.is_none() {
            qemu_exited = qemu.map(|q| q.wait_exit(EXIT_BOUND));
        }
        let state = if qemu_exited == Some(true) {
            DomainState::ShutOff
        } else {
            hv.state(&name).map_err(hv_err)?.0
        };
        match state {
            DomainState::ShutOff => {
                timings.run = started.elapsed();
                // libvirt routes file consoles through virtlogd, which may still be writing the
                // last lines when QEMU has exited: without the verdict yet, read until it shows
                // or the console has been still for a while.
                let drain = Instant::now();
                let mut still_since = Instant::now();
                while success_line.is_none() {
                    let grew = console.poll().map_err(|source| GuestError::Console {
                        step: step.clone(),
                        path: log.clone(),
                        source,
                    })?;
                    if grew {
                        still_since = Instant::now();
                    }
                    let found = match &spec.failure {
                        Some(failure) => console.scan(&[&spec.success, failure]),
                        None => console.scan(&[&spec.success]),
                    };
                    if let Some(Some(line)) = found.get(1) {
                        drop(guard);
                        return Err(GuestError::FailureLine {
                            step,
                            domain: name,
                            line: crate::printable(line),
                            evidence: evidence(&console, false),
                        });
                    }
                    if let Some(Some(line)) = found.first() {
                        success_line = Some((line.clone(), Instant::now()));
                    } else if still_since.elapsed() >= CONSOLE_SETTLE
                        || drain.elapsed() >= CONSOLE_DRAIN
                    {
                        break;
                    } else {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
                if let Some((_, seen)) = &success_line {
                    timings.shutdown_lag = seen.elapsed();
                }
                let t = Instant::now();
                if vanishes(qemu_exited == Some(true)) {
                    guard.disarm();
                } else {
                    guard.release().map_err(hv_err)?;
                }
                timings.teardown = t.elapsed();
                return match success_line {
                    Some((line, _)) => Ok(GuestOutcome {
                        success_line: line,
                        console: console.text(),
                        timings,
                    }),
                    None => Err(GuestError::NoEvidence {
                        step,
                        domain: name,
                        success: spec.success.to_string(),
                        evidence: evidence(&console, false),
                    }),
                };
            }
            DomainState::Crashed | DomainState::Paused | DomainState::PmSuspended => {
                let evidence = evidence(&console, true);
                return Err(GuestError::Crashed {
                    step,
                    domain: name,
                    state,
                    evidence,
                });
            }
            DomainState::ShuttingDown if qemu.is_some() && qemu_exited.is_none() => {
                // Powered off: wait for QEMU's exit right away.
                powered_off = true;
                continue;
            }
            DomainState::Running | DomainState::ShuttingDown | DomainState::Unknown => {}
        }
        if started.elapsed() > spec.timeout {
            let evidence = evidence(&console, true);
            return Err(GuestError::Timeout {
                step,
                domain: name,
                after: spec.timeout,
                success: spec.success.to_string(),
                evidence,
            });
        }
        if let Some(quiet) = spec.inactivity
            && console.last_growth().elapsed() > quiet
        {
            let evidence = evidence(&console, true);
            return Err(GuestError::Inactive {
                step,
                domain: name,
                quiet,
                evidence,
            });
        }
        // Sleeps `poll_interval` unless a lifecycle event arrives first.
        for event in hv.wait_events(&name, spec.poll_interval) {
            if matches!(event, LifecycleEvent::Shutdown | LifecycleEvent::Stopped) {
                powered_off = true;
            }
        }
    }
}

/// With dynamic ownership libvirt chowns files to its QEMU user but leaves the folders alone: every
/// parent folder must be searchable by that user (by an ACL entry kiln gave it, or by others' `x`).
fn check_reachable(spec: &DomainSpec, step: &str) -> Result<(), GuestError> {
    use std::os::unix::fs::PermissionsExt as _;
    let uid = crate::qemu_access::qemu_uid();
    for file in crate::qemu_access::spec_files(spec) {
        for folder in file.ancestors().skip(1) {
            if folder.as_os_str().is_empty() {
                continue;
            }
            let Ok(meta) = std::fs::metadata(folder) else {
                continue;
            };
            let searchable = match uid {
                Some(uid) => kiln_cache::private::can_search(folder, uid).unwrap_or(false),
                None => meta.permissions().mode() & 0o001 != 0,
            };
            if !searchable {
                return Err(GuestError::Unreachable {
                    step: step.to_owned(),
                    path: file.clone(),
                    folder: folder.to_owned(),
                });
            }
        }
    }
    Ok(())
}
