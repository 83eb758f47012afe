//! Build events and where they go: a terminal progress view (a line per running step with its
//! elapsed time), plain lines when stderr is not a terminal, or a JSON event stream for CI.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use kiln_plan::StepKind;
use serde::Serialize;

use crate::scheduler::TaskStatus;

/// Something that happened during a build.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum BuildEvent {
    /// A host was connected and its accelerator chosen.
    Host {
        /// URI.
        uri: String,
        /// `kvm` or `qemu`.
        accel: String,
        /// Why.
        reason: String,
    },
    /// A step started.
    Started {
        /// Step id.
        step: String,
        /// Kind.
        kind: StepKind,
        /// Host URI for guest steps.
        #[serde(skip_serializing_if = "Option::is_none")]
        host: Option<String>,
    },
    /// A step ended: built, cached, failed, skipped, cancelled or not needed.
    Ended {
        /// Step id.
        step: String,
        /// Kind.
        kind: StepKind,
        /// Outcome.
        #[serde(flatten)]
        status: TaskStatus,
        /// Bytes written (built steps).
        #[serde(skip_serializing_if = "Option::is_none")]
        bytes: Option<u64>,
    },
    /// A publish step created or reused a Glance image.
    Published {
        /// What it did and the image as Glance holds it.
        image: Box<crate::runners::publish::Published>,
    },
    /// The build ended.
    Finished {
        /// The process exit code it implies.
        exit_code: i32,
        /// Wall-clock time.
        #[serde(serialize_with = "secs")]
        elapsed: Duration,
    },
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

/// Receives events (from several threads).
pub trait Sink: Send + Sync {
    /// One event.
    fn event(&self, event: &BuildEvent);
}

/// One JSON object per line on stdout.
#[derive(Debug, Default)]
pub struct JsonSink;

impl Sink for JsonSink {
    fn event(&self, event: &BuildEvent) {
        let line = serde_json::to_string(event).expect("events serialize");
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// A line per event on stderr.
#[derive(Debug, Default)]
pub struct PlainSink;

/// The plain text of an event, or `None` for events plain output does not show.
#[must_use]
pub fn plain_line(event: &BuildEvent) -> Option<String> {
    Some(match event {
        BuildEvent::Host { uri, accel, reason } => format!("host {uri}: {accel} ({reason})"),
        BuildEvent::Started { step, host, .. } => match host {
            Some(h) => format!("start    {step} on {h}"),
            None => format!("start    {step}"),
        },
        BuildEvent::Ended {
            step,
            status,
            bytes,
            ..
        } => match status {
            TaskStatus::Built { elapsed } => format!(
                "built    {step} in {:.1}s{}",
                elapsed.as_secs_f64(),
                bytes.map_or_else(String::new, |b| format!(", {b} bytes"))
            ),
            TaskStatus::Cached => format!("cached   {step}"),
            TaskStatus::NotNeeded => return None,
            TaskStatus::Failed { elapsed, .. } => {
                format!("FAILED   {step} after {:.1}s", elapsed.as_secs_f64())
            }
            TaskStatus::Skipped { because } => format!("skipped  {step} (because of {because})"),
            TaskStatus::Cancelled => format!("cancelled {step}"),
        },
        BuildEvent::Published { image } => format!(
            "{}  {} as glance image {} (`{}`)",
            if image.action == "created" {
                "published"
            } else {
                "reused   "
            },
            image.step,
            image.id,
            image.name
        ),
        BuildEvent::Finished { elapsed, .. } => {
            format!("finished in {:.2}s", elapsed.as_secs_f64())
        }
    })
}

impl Sink for PlainSink {
    fn event(&self, event: &BuildEvent) {
        if let Some(line) = plain_line(event) {
            eprintln!("{line}");
        }
    }
}

/// Progress bars on a terminal: a spinner line per running step with its elapsed time; ended
/// steps print a plain line above them.
pub struct ProgressSink {
    multi: MultiProgress,
    bars: Mutex<BTreeMap<String, ProgressBar>>,
}

impl Default for ProgressSink {
    fn default() -> Self {
        Self {
            multi: MultiProgress::new(),
            bars: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Sink for ProgressSink {
    fn event(&self, event: &BuildEvent) {
        let mut bars = self
            .bars
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match event {
            BuildEvent::Started { step, host, .. } => {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} [{elapsed:>4}] {msg}")
                        .expect("valid template"),
                );
                bar.set_message(match host {
                    Some(h) => format!("{step} on {h}"),
                    None => step.clone(),
                });
                bar.enable_steady_tick(Duration::from_millis(200));
                bars.insert(step.clone(), bar);
            }
            BuildEvent::Ended { step, .. } => {
                if let Some(bar) = bars.remove(step) {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
                if let Some(line) = plain_line(event) {
                    let _ = self.multi.println(line);
                }
            }
            other => {
                if let Some(line) = plain_line(other) {
                    let _ = self.multi.println(line);
                }
            }
        }
    }
}
