//! The narrow hypervisor interface the guest runner needs, keyed by domain name.
//!
//! The real implementation is [`crate::Libvirt`]; the trait exists so the runner's logic can be
//! unit-tested and so remote hosts can be added without touching the runner.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a domain is doing, as far as the runner cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainState {
    /// Running (or blocked on I/O).
    Running,
    /// Paused by the hypervisor. With KVM this is how an emulation failure shows.
    Paused,
    /// Shutting down: the guest powered off and QEMU is on its way out.
    ShuttingDown,
    /// Shut off (also: a transient domain that no longer exists).
    ShutOff,
    /// Crashed (guest panic with `on_crash=preserve`, or QEMU died).
    Crashed,
    /// Suspended to RAM by the guest.
    PmSuspended,
    /// The hypervisor did not say.
    Unknown,
}

/// A domain lifecycle event (libvirt's `VIR_DOMAIN_EVENT_*`), as far as the runner cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleEvent {
    /// The guest powered off (or reset with `on_reboot=destroy`): QEMU stopped running it and
    /// is about to be told to exit. Sent before libvirt's own stop processing.
    Shutdown,
    /// The domain stopped (libvirt's stop processing finished).
    Stopped,
    /// Paused (a KVM emulation failure or an I/O error pauses the guest).
    Suspended,
    /// Crashed (guest panic with `on_crash=preserve`).
    Crashed,
    /// Anything else (started, resumed, defined, ...).
    Other,
}

/// A failed hypervisor call.
#[derive(Debug, thiserror::Error)]
#[error("libvirt `{uri}`: {op} failed: {message}")]
pub struct HypervisorError {
    /// Connection URI.
    pub uri: String,
    /// What was being done, e.g. ``define `kiln-r-s` ``.
    pub op: String,
    /// libvirt's message.
    pub message: String,
    /// The named domain does not exist.
    pub no_domain: bool,
}

/// Define, start, watch and remove guests on one host.
pub trait Hypervisor: Send + Sync {
    /// The connection URI, for messages.
    fn uri(&self) -> &str;

    /// Defines a persistent domain (not started).
    ///
    /// # Errors
    /// libvirt rejected the XML or the connection failed.
    fn define(&self, xml: &str) -> Result<(), HypervisorError>;

    /// Creates and starts a transient domain: it disappears once it stops.
    ///
    /// # Errors
    /// libvirt rejected the XML or QEMU did not start.
    fn create_transient(&self, xml: &str) -> Result<(), HypervisorError>;

    /// Starts a defined domain.
    ///
    /// # Errors
    /// QEMU did not start.
    fn start(&self, name: &str) -> Result<(), HypervisorError>;

    /// The domain's state; a domain that does not exist is [`DomainState::ShutOff`] with
    /// `exists == false`.
    ///
    /// # Errors
    /// The call itself failed.
    fn state(&self, name: &str) -> Result<(DomainState, bool), HypervisorError>;

    /// Hard power-off. Succeeds when the domain is not running or does not exist.
    ///
    /// # Errors
    /// The call failed for another reason.
    fn destroy(&self, name: &str) -> Result<(), HypervisorError>;

    /// Removes a persistent definition (and its UEFI variable store and TPM state). Succeeds
    /// when the domain does not exist.
    ///
    /// # Errors
    /// The call failed for another reason.
    fn undefine(&self, name: &str) -> Result<(), HypervisorError>;

    /// Saves the domain's screen to `stem` plus an extension from the image type libvirt
    /// returns (`.ppm` for QEMU) and returns the path written.
    ///
    /// # Errors
    /// The domain is not running or has no display.
    fn screenshot(&self, name: &str, stem: &Path) -> Result<PathBuf, HypervisorError>;

    /// Presses and releases the keys `keycodes` (Linux input keycodes, e.g. 57 for space) together
    /// on the domain's keyboard (`virDomainSendKey`).
    ///
    /// # Errors
    /// The domain is not running, or the host cannot send keys.
    fn send_key(&self, name: &str, keycodes: &[u32]) -> Result<(), HypervisorError>;

    /// Starts collecting lifecycle events of domain `name` (call before creating it). Returns
    /// whether this host delivers events; without them the runner polls the domain state.
    fn watch(&self, _name: &str) -> bool {
        false
    }

    /// Waits up to `timeout` for lifecycle events of a watched domain and returns those that
    /// arrived (empty after the timeout). Without events this just sleeps.
    fn wait_events(&self, _name: &str, timeout: Duration) -> Vec<LifecycleEvent> {
        std::thread::sleep(timeout);
        Vec::new()
    }

    /// Stops collecting events of `name`.
    fn unwatch(&self, _name: &str) {}

    /// The QEMU process of a running domain, when the host is this machine and libvirt's pid
    /// file is readable (`qemu:///system` as root); `None` otherwise.
    fn local_process(&self, _name: &str) -> Option<LocalProcess> {
        None
    }

    /// Destroys a domain without waiting for libvirt's stop processing (which waits until the
    /// exited QEMU has been reaped by PID 1: up to 2 s on machines whose init reaps slowly).
    /// The default waits like [`Hypervisor::destroy`].
    fn destroy_detached(&self, name: &str) {
        let _ = self.destroy(name);
    }

    /// Names of all domains (running or not) starting with `prefix`.
    ///
    /// # Errors
    /// The call failed.
    fn list(&self, prefix: &str) -> Result<Vec<String>, HypervisorError>;
}

/// A local QEMU process, identified by pid and start time (so a reused pid is not mistaken for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalProcess {
    /// Process id.
    pub pid: u32,
    /// Start time in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub start_ticks: u64,
}

impl LocalProcess {
    /// The process `pid` as it is now, if it runs.
    #[must_use]
    pub fn of_pid(pid: u32) -> Option<Self> {
        let (state, start_ticks) = proc_stat(pid)?;
        (state != 'Z' && state != 'X').then_some(Self { pid, start_ticks })
    }

    /// Whether the process has exited (a zombie waiting to be reaped counts as exited: its
    /// files, including disk images and their locks, are closed).
    #[must_use]
    pub fn has_exited(&self) -> bool {
        match proc_stat(self.pid) {
            Some((state, start)) => start != self.start_ticks || state == 'Z' || state == 'X',
            None => true,
        }
    }

    /// Waits until the process has exited, checking every 2 ms, at most `bound`; returns whether
    /// it exited.
    #[must_use]
    pub fn wait_exit(&self, bound: Duration) -> bool {
        let deadline = std::time::Instant::now() + bound;
        loop {
            if self.has_exited() {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// `(state, start time)` from `/proc/<pid>/stat`.
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: split after the last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // Field 3 is `state`; field 22 is `starttime`: 19 fields after the state.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    // A child that exits is seen as exited while it is still a zombie (not yet waited for).
    #[test]
    fn sees_a_zombie_as_exited() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        let proc = LocalProcess::of_pid(child.id()).expect("sleep runs");
        assert!(!proc.has_exited());
        assert!(proc.wait_exit(Duration::from_secs(10)));
        // Not reaped yet: still a zombie in /proc.
        assert_eq!(proc_stat(child.id()).map(|s| s.0), Some('Z'));
        child.wait().unwrap();
        assert!(proc.has_exited());
        assert!(LocalProcess::of_pid(child.id()).is_none());
    }
}
