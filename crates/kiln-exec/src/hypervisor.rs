//! The narrow hypervisor interface the guest runner needs, keyed by domain name.
//!
//! The real implementation is [`crate::Libvirt`]; the trait exists so the runner's logic can be
//! unit-tested and so remote hosts can be added without touching the runner.

use std::path::{Path, PathBuf};

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

    /// Names of all domains (running or not) starting with `prefix`.
    ///
    /// # Errors
    /// The call failed.
    fn list(&self, prefix: &str) -> Result<Vec<String>, HypervisorError>;
}
