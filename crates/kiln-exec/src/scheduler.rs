//! The scheduler: walks a DAG of tasks and runs every task whose inputs are ready, in parallel up
//! to the capacity of the hosts (guest tasks) and of two local pools (CPU-heavy work such as
//! conversion and hashing; light I/O work such as fetches and small media).
//!
//! It is pure logic over a [`TaskRunner`]: no libvirt, no files. The build ([`crate::build`])
//! supplies the real runner; the unit tests below use fakes.
//!
//! Rules:
//! - a cached task never runs and takes no slot; a task that is not cached runs only when it is an
//!   output (a sink of the DAG) or a task that runs needs it, so a cached output makes its whole
//!   upstream unnecessary;
//! - on failure, independent branches finish, every dependent is skipped, and all failures are
//!   reported at the end;
//! - on cancellation nothing new starts; running tasks see the same [`Cancel`] flag (guests are
//!   destroyed by `run_guest`) and the run ends as cancelled.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::guest::Cancel;
use crate::host::Capacity;

/// What a task needs while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Resource {
    /// A guest on some host: one guest slot, `vcpus` and `memory_mib` of its capacity.
    Guest {
        /// vCPUs.
        vcpus: u32,
        /// Memory in MiB.
        memory_mib: u64,
    },
    /// A slot of the local CPU pool (conversion, hashing).
    Cpu,
    /// A slot of the local I/O pool (fetches, media, small files).
    Io,
}

/// One node of the DAG.
#[derive(Debug, Clone)]
pub struct Task {
    /// Name for events and the report (a plan step id).
    pub name: String,
    /// Indices of the tasks whose outputs it consumes.
    pub deps: Vec<usize>,
    /// What it occupies while running.
    pub resource: Resource,
}

/// Limits of the local pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pools {
    /// CPU-heavy tasks at once.
    pub cpu: usize,
    /// I/O tasks at once.
    pub io: usize,
}

impl Pools {
    /// Half the CPUs for CPU-heavy work (qemu-img convert runs several coroutines itself), four
    /// I/O tasks.
    #[must_use]
    pub fn of_this_machine() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        Self {
            cpu: (cpus / 2).max(1),
            io: 4,
        }
    }
}

/// Where a task runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Placement {
    /// On host number `n` of the list given to [`run`].
    Host(usize),
    /// In a local pool.
    Local,
}

/// How a task that ran ended.
#[derive(Debug)]
pub enum TaskError {
    /// It failed; the message is shown in the final report.
    Failed(String),
    /// It stopped because the run was cancelled.
    Cancelled,
}

/// The side of the scheduler that does the work.
pub trait TaskRunner: Sync {
    /// Whether task `i`'s outputs are already complete in the cache (asked once, before the run).
    fn is_cached(&self, i: usize) -> bool;

    /// Runs task `i` at `placement`. Called from a worker thread; may take as long as it needs.
    ///
    /// # Errors
    /// The task failed or saw the cancel flag.
    fn run(&self, i: usize, placement: Placement) -> Result<(), TaskError>;

    /// An event, for progress views (called from the scheduler's thread and workers).
    fn event(&self, _event: &Event) {}
}

/// What happened to one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum TaskStatus {
    /// Ran and succeeded.
    Built {
        /// Wall-clock time.
        #[serde(with = "secs")]
        elapsed: Duration,
    },
    /// Its outputs came from the cache.
    Cached,
    /// Not needed: everything downstream was cached.
    NotNeeded,
    /// Ran and failed.
    Failed {
        /// Why.
        error: String,
        /// Wall-clock time.
        #[serde(with = "secs")]
        elapsed: Duration,
    },
    /// Not run because an input failed (or the run was cancelled).
    Skipped {
        /// The failed task upstream, or `cancelled`.
        because: String,
    },
    /// Was running when the run was cancelled.
    Cancelled,
}

mod secs {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
    }
}

/// A scheduler event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Task `i` started at a placement.
    Started {
        /// Task index.
        task: usize,
        /// Where.
        placement: Placement,
    },
    /// Task `i` ended (with the status recorded in the report).
    Ended {
        /// Task index.
        task: usize,
        /// Its status.
        status: TaskStatus,
    },
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct Report {
    /// One status per task, by index.
    pub statuses: Vec<TaskStatus>,
    /// True when the cancel flag was seen.
    pub cancelled: bool,
}

impl Report {
    /// True when every needed task was built or cached.
    #[must_use]
    pub fn ok(&self) -> bool {
        !self.cancelled
            && self.statuses.iter().all(|s| {
                matches!(
                    s,
                    TaskStatus::Built { .. } | TaskStatus::Cached | TaskStatus::NotNeeded
                )
            })
    }

    /// Indices and errors of the tasks that failed.
    #[must_use]
    pub fn failures(&self) -> Vec<(usize, &str)> {
        self.statuses
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                TaskStatus::Failed { error, .. } => Some((i, error.as_str())),
                _ => None,
            })
            .collect()
    }
}

/// Checks that `deps` point backwards (tasks come producers first), so the graph has no cycle.
///
/// # Errors
/// The first task with a dependency that is not an earlier task.
pub fn check_order(tasks: &[Task]) -> Result<(), String> {
    for (i, t) in tasks.iter().enumerate() {
        if let Some(d) = t.deps.iter().find(|&&d| d >= i) {
            return Err(format!(
                "task `{}` depends on task #{d}, which does not come before it",
                t.name
            ));
        }
    }
    Ok(())
}

/// Which tasks must run: not cached, and an output or needed by a task that runs.
fn needed(tasks: &[Task], cached: &[bool]) -> Vec<bool> {
    let mut consumers = vec![0usize; tasks.len()];
    for t in tasks {
        for &d in &t.deps {
            consumers[d] += 1;
        }
    }
    let mut need = vec![false; tasks.len()];
    for i in (0..tasks.len()).rev() {
        let demanded = consumers[i] == 0 || need[i];
        need[i] = demanded && !cached[i];
        if need[i] {
            for &d in &tasks[i].deps {
                need[d] = true;
            }
        }
    }
    // `need[d] = true` above only marks demand; a cached dependency still does not run.
    for i in 0..tasks.len() {
        if cached[i] {
            need[i] = false;
        }
    }
    need
}

#[derive(Debug, Clone, Copy)]
struct Free {
    guests: u32,
    vcpus: u32,
    memory_mib: u64,
}

/// Runs the DAG. `tasks` must list producers before consumers ([`check_order`]).
///
/// # Panics
/// When `tasks` is not in order (a programming error of the caller).
pub fn run(
    tasks: &[Task],
    hosts: &[Capacity],
    pools: Pools,
    runner: &dyn TaskRunner,
    cancel: &Cancel,
) -> Report {
    check_order(tasks).expect("tasks in dependency order");
    let n = tasks.len();
    let cached: Vec<bool> = (0..n).map(|i| runner.is_cached(i)).collect();
    let need = needed(tasks, &cached);
    let mut status: Vec<Option<TaskStatus>> = vec![None; n];
    for i in 0..n {
        if !need[i] {
            let s = if cached[i] {
                TaskStatus::Cached
            } else {
                TaskStatus::NotNeeded
            };
            runner.event(&Event::Ended {
                task: i,
                status: s.clone(),
            });
            status[i] = Some(s);
        }
    }
    let mut free_hosts: Vec<Free> = hosts
        .iter()
        .map(|c| Free {
            guests: c.guests,
            vcpus: c.vcpus,
            memory_mib: c.memory_mib,
        })
        .collect();
    let mut free_cpu = pools.cpu.max(1);
    let mut free_io = pools.io.max(1);
    let mut running = 0usize;
    let mut cancelled = false;
    // Tasks that cannot fit on any host even when idle fail at once instead of waiting forever.
    for i in 0..n {
        if status[i].is_none()
            && let Resource::Guest { vcpus, memory_mib } = tasks[i].resource
            && !hosts
                .iter()
                .any(|h| h.guests >= 1 && h.vcpus >= vcpus && h.memory_mib >= memory_mib)
        {
            let s = TaskStatus::Failed {
                error: format!(
                    "no host can run a guest of {vcpus} vCPUs and {memory_mib} MiB (hosts: {})",
                    describe_hosts(hosts)
                ),
                elapsed: Duration::ZERO,
            };
            runner.event(&Event::Ended {
                task: i,
                status: s.clone(),
            });
            status[i] = Some(s);
        }
    }

    let (tx, rx) = mpsc::channel::<(usize, Placement, Result<(), TaskError>, Duration)>();
    let mut is_running = vec![false; n];
    std::thread::scope(|scope| {
        loop {
            if cancel.is_cancelled() {
                cancelled = true;
            }
            // Skip dependents of failures; start ready tasks in index order while they fit.
            for i in 0..n {
                if status[i].is_some() || is_running[i] {
                    continue;
                }
                let mut ready = true;
                for &d in &tasks[i].deps {
                    match &status[d] {
                        Some(TaskStatus::Built { .. } | TaskStatus::Cached) => {}
                        Some(TaskStatus::Skipped { because }) => {
                            let s = TaskStatus::Skipped {
                                because: because.clone(),
                            };
                            runner.event(&Event::Ended {
                                task: i,
                                status: s.clone(),
                            });
                            status[i] = Some(s);
                            ready = false;
                            break;
                        }
                        Some(
                            TaskStatus::Failed { .. }
                            | TaskStatus::Cancelled
                            | TaskStatus::NotNeeded,
                        ) => {
                            let s = TaskStatus::Skipped {
                                because: tasks[d].name.clone(),
                            };
                            runner.event(&Event::Ended {
                                task: i,
                                status: s.clone(),
                            });
                            status[i] = Some(s);
                            ready = false;
                            break;
                        }
                        None => ready = false,
                    }
                }
                if !ready || cancelled {
                    continue;
                }
                let placement = match tasks[i].resource {
                    Resource::Guest { vcpus, memory_mib } => {
                        match free_hosts.iter().position(|f| {
                            f.guests >= 1 && f.vcpus >= vcpus && f.memory_mib >= memory_mib
                        }) {
                            Some(h) => {
                                free_hosts[h].guests -= 1;
                                free_hosts[h].vcpus -= vcpus;
                                free_hosts[h].memory_mib -= memory_mib;
                                Placement::Host(h)
                            }
                            None => continue,
                        }
                    }
                    Resource::Cpu if free_cpu > 0 => {
                        free_cpu -= 1;
                        Placement::Local
                    }
                    Resource::Io if free_io > 0 => {
                        free_io -= 1;
                        Placement::Local
                    }
                    Resource::Cpu | Resource::Io => continue,
                };
                is_running[i] = true;
                running += 1;
                runner.event(&Event::Started { task: i, placement });
                let tx = tx.clone();
                scope.spawn(move || {
                    let t = Instant::now();
                    let r = runner.run(i, placement);
                    let _ = tx.send((i, placement, r, t.elapsed()));
                });
            }
            if running == 0 {
                break;
            }
            // Wake up for a finished task, or now and then to notice the cancel flag.
            let Ok((i, placement, result, elapsed)) = rx.recv_timeout(Duration::from_millis(100))
            else {
                continue;
            };
            running -= 1;
            is_running[i] = false;
            match (placement, tasks[i].resource) {
                (Placement::Host(h), Resource::Guest { vcpus, memory_mib }) => {
                    free_hosts[h].guests += 1;
                    free_hosts[h].vcpus += vcpus;
                    free_hosts[h].memory_mib += memory_mib;
                }
                (_, Resource::Cpu) => free_cpu += 1,
                _ => free_io += 1,
            }
            let s = match result {
                Ok(()) => TaskStatus::Built { elapsed },
                // Failure text may quote a library's error with a URL in it: no credentials.
                Err(TaskError::Failed(error)) => TaskStatus::Failed {
                    error: kiln_syntax::redact_userinfo(&error).into_owned(),
                    elapsed,
                },
                Err(TaskError::Cancelled) => {
                    cancelled = true;
                    TaskStatus::Cancelled
                }
            };
            runner.event(&Event::Ended {
                task: i,
                status: s.clone(),
            });
            status[i] = Some(s);
        }
    });
    if cancel.is_cancelled() {
        cancelled = true;
    }
    let statuses = status
        .into_iter()
        .map(|s| {
            s.unwrap_or(TaskStatus::Skipped {
                because: "cancelled".into(),
            })
        })
        .collect();
    Report {
        statuses,
        cancelled,
    }
}

fn describe_hosts(hosts: &[Capacity]) -> String {
    if hosts.is_empty() {
        return "none".into();
    }
    hosts
        .iter()
        .map(|h| format!("{} guests/{} vCPUs/{} MiB", h.guests, h.vcpus, h.memory_mib))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
