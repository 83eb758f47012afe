//! Build events and where they go: a terminal progress view (a line per running step with its
//! elapsed time, and bytes and bytes/s for transfers), plain lines when stderr is not a terminal,
//! or a JSON event stream for CI. Runners report transfers through a [`Progress`].

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressStyle};
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
    /// A transfer of a running step advanced (fetch, convert, publish): at most one a second
    /// per step, and one when it completes.
    Progress {
        /// Step id.
        step: String,
        /// Bytes done.
        done: u64,
        /// Bytes in all, when known.
        #[serde(skip_serializing_if = "Option::is_none")]
        total: Option<u64>,
        /// Average bytes per second since the transfer started.
        rate: u64,
        /// Plain output shows this one (every [`PLAIN_EVERY`], and the last).
        #[serde(skip)]
        plain: bool,
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

/// How often a transfer reports to the sink.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// How often plain (non-terminal) output prints a transfer's progress.
pub const PLAIN_EVERY: Duration = Duration::from_secs(10);

/// A step's transfer progress, handed to runners (`StepCx::progress`): call [`Progress::update`]
/// as often as convenient; events reach the sink at a modest rate.
pub struct Progress {
    step: String,
    sink: Arc<dyn Sink>,
    state: Mutex<ProgressState>,
}

struct ProgressState {
    started: Instant,
    last: Option<Instant>,
    last_plain: Instant,
    finished: bool,
}

impl Progress {
    /// Progress of step `step`, reported to `sink`.
    #[must_use]
    pub fn new(step: impl Into<String>, sink: Arc<dyn Sink>) -> Self {
        let now = Instant::now();
        Self {
            step: step.into(),
            sink,
            state: Mutex::new(ProgressState {
                started: now,
                last: None,
                last_plain: now,
                finished: false,
            }),
        }
    }

    /// `done` of `total` bytes (total when known). Reports at most every [`PROGRESS_EVERY`],
    /// and always when `done` reaches `total`.
    pub fn update(&self, done: u64, total: Option<u64>) {
        let now = Instant::now();
        let event = {
            let mut st = self
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let complete = total.is_some_and(|t| done >= t);
            if st.finished || !(complete || st.last.is_none_or(|l| now - l >= PROGRESS_EVERY)) {
                return;
            }
            st.last = Some(now);
            st.finished = complete;
            let plain = complete || now - st.last_plain >= PLAIN_EVERY;
            if plain {
                st.last_plain = now;
            }
            let secs = (now - st.started).as_secs_f64();
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss,
                reason = "a rate in bytes/s"
            )]
            let rate = if secs > 0.0 {
                (done as f64 / secs) as u64
            } else {
                0
            };
            BuildEvent::Progress {
                step: self.step.clone(),
                done,
                total,
                rate,
                plain,
            }
        };
        self.sink.event(&event);
    }
}

fn transfer_text(done: u64, total: Option<u64>, rate: u64) -> String {
    match total {
        Some(t) => format!(
            "{} / {}, {}/s",
            HumanBytes(done),
            HumanBytes(t),
            HumanBytes(rate)
        ),
        None => format!("{}, {}/s", HumanBytes(done), HumanBytes(rate)),
    }
}

/// Receives events (from several threads).
pub trait Sink: Send + Sync {
    /// One event.
    fn event(&self, event: &BuildEvent);
}

/// One JSON object per line on stdout.
#[derive(Debug, Default)]
pub struct JsonSink;

/// The `--json` line of an event: URL credentials redacted, whatever text the event carries.
#[must_use]
pub fn json_line(event: &BuildEvent) -> String {
    let line = serde_json::to_string(event).expect("events serialize");
    kiln_syntax::redact_userinfo(&line).into_owned()
}

impl Sink for JsonSink {
    fn event(&self, event: &BuildEvent) {
        let line = json_line(event);
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
        BuildEvent::Progress {
            step,
            done,
            total,
            rate,
            plain,
        } => {
            if !plain {
                return None;
            }
            format!("progress {step}: {}", transfer_text(*done, *total, *rate))
        }
        BuildEvent::Finished { elapsed, .. } => {
            format!("finished in {:.2}s", elapsed.as_secs_f64())
        }
    })
}

impl Sink for PlainSink {
    fn event(&self, event: &BuildEvent) {
        if let Some(line) = plain_line(event) {
            eprintln!("{}", kiln_syntax::redact_userinfo(&line));
        }
    }
}

/// Progress bars on a terminal: a spinner line per running step with its elapsed time (and bytes
/// and bytes/s while it transfers); ended steps print a plain line above them.
pub struct ProgressSink {
    multi: MultiProgress,
    bars: Mutex<BTreeMap<String, (ProgressBar, String)>>,
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
                let label = match host {
                    Some(h) => format!("{step} on {h}"),
                    None => step.clone(),
                };
                bar.set_message(label.clone());
                bar.enable_steady_tick(Duration::from_millis(200));
                bars.insert(step.clone(), (bar, label));
            }
            BuildEvent::Progress {
                step,
                done,
                total,
                rate,
                ..
            } => {
                if let Some((bar, label)) = bars.get(step) {
                    bar.set_message(format!("{label}  {}", transfer_text(*done, *total, *rate)));
                }
            }
            BuildEvent::Ended { step, .. } => {
                if let Some((bar, _)) = bars.remove(step) {
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

#[cfg(test)]
mod tests {
    use super::*;

    // A failure's text may quote reqwest's error, URL and credentials included: `--json` must not.
    #[test]
    fn json_lines_carry_no_url_credentials() {
        let e = BuildEvent::Ended {
            step: "img/fetch-source".into(),
            kind: kiln_plan::StepKind::FetchSource,
            status: TaskStatus::Failed {
                error: "error sending request for url (https://u:t0ken@mirror.example.org/x.iso)"
                    .into(),
                elapsed: Duration::ZERO,
            },
            bytes: None,
        };
        let line = json_line(&e);
        assert!(!line.contains("t0ken"), "{line}");
        assert!(
            line.contains("https://***@mirror.example.org/x.iso"),
            "{line}"
        );
    }

    // Whatever a runner logs, the step log holds no URL credentials.
    #[test]
    fn step_log_lines_carry_no_url_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let log = crate::runners::StepLog::create(dir.path().join("s.log"));
        log.line(format_args!(
            "GET http://kiln:t0ken@127.0.0.1:8080/a.iso failed"
        ));
        let text = std::fs::read_to_string(dir.path().join("s.log")).unwrap();
        assert_eq!(text, "GET http://***@127.0.0.1:8080/a.iso failed\n");
    }

    #[derive(Default)]
    struct Collect(Mutex<Vec<BuildEvent>>);

    impl Sink for Collect {
        fn event(&self, event: &BuildEvent) {
            self.0.lock().unwrap().push(event.clone());
        }
    }

    // Many updates make one event a second, plus one when the transfer completes; JSON carries
    // bytes, total and rate; plain output shows only the completion here.
    #[test]
    fn progress_is_rate_limited() {
        let sink = Arc::new(Collect::default());
        let progress = Progress::new("a/fetch-source", Arc::clone(&sink) as Arc<dyn Sink>);
        for i in 0..1000 {
            progress.update(i, Some(1 << 20));
        }
        progress.update(1 << 20, Some(1 << 20));
        progress.update(1 << 20, Some(1 << 20));
        let events = sink.0.lock().unwrap().clone();
        assert_eq!(events.len(), 2, "{events:?}");
        let json = serde_json::to_value(&events[1]).unwrap();
        assert_eq!(json["event"], "progress");
        assert_eq!(json["done"], 1 << 20);
        assert_eq!(json["total"], 1 << 20);
        assert!(json["rate"].as_u64().unwrap() > 0);
        assert!(json.get("plain").is_none());
        assert_eq!(plain_line(&events[0]), None);
        assert_eq!(
            plain_line(&events[1]).unwrap().split(',').next().unwrap(),
            "progress a/fetch-source: 1.00 MiB / 1.00 MiB"
        );
    }
}
