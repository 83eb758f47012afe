//! What the guest steps (install, customize, boot-test) share: the host, the machine shape and a
//! scratch folder; a domain with the step's name, accelerator, shape and console log; the guest
//! run with its log lines. Every guest step runs a transient domain (`create`, one call; it
//! vanishes when QEMU exits, see docs/decisions/guest-runner.md).

use std::path::PathBuf;
use std::time::Duration;

use super::{GuestHost, RunError, StepCx, VmShape};
use crate::console::Pattern;
use crate::domain_xml::{BootFrom, Disk, DiskFormat, DomainSpec, Media, MediaKind, OnReboot};
use crate::guest::{Completion, GuestOutcome, GuestSpec, Persistence, domain_name, run_guest};

/// A guest step being set up.
pub(crate) struct GuestStep<'c, 'a> {
    pub cx: &'c StepCx<'a>,
    pub host: &'c GuestHost,
    pub shape: VmShape,
    pub scratch: PathBuf,
}

impl<'c, 'a> GuestStep<'c, 'a> {
    /// The step's host, shape and a fresh scratch folder.
    pub(crate) fn prepare(cx: &'c StepCx<'a>) -> Result<Self, RunError> {
        Ok(Self {
            cx,
            host: cx.guest_host()?,
            shape: cx.machine()?,
            scratch: cx.scratch()?,
        })
    }

    /// The serial console log in the run folder.
    pub(crate) fn console_log(&self) -> PathBuf {
        self.cx
            .env
            .run_dir
            .join(format!("{}.console.log", self.cx.file_stem()))
    }

    /// A domain named after the run and step, with the host's accelerator and the step's
    /// shape, booting `boot` with `root_disk` and `media` (no installer or drivers ISO,
    /// `on_reboot=destroy`, no network).
    pub(crate) fn domain(&self, root_disk: Disk, boot: BootFrom, media: Vec<Media>) -> DomainSpec {
        DomainSpec {
            name: domain_name(&self.cx.env.run_id, self.cx.step.id.as_str()),
            domain_type: self.host.domain_type,
            machine: self.shape.machine,
            firmware: self.shape.firmware(&self.scratch),
            tpm: self.shape.tpm,
            vcpus: self.shape.vcpus,
            memory_mib: self.shape.memory_mib,
            root_disk: Some(root_disk),
            disk_bus: self.shape.disk_bus,
            kernel_boot: None,
            installer_iso: None,
            drivers_iso: None,
            extra_media: media,
            serial_log: self.console_log(),
            boot,
            on_reboot: OnReboot::Destroy,
            // Customize and boot-test boot the system as a cloud would, with a NIC of the
            // pipeline's model (user-mode networking: no host set-up, no outside reachability
            // needed); installs run without one.
            nic: (boot == BootFrom::Disk).then_some(self.shape.nic),
        }
    }

    /// [`Self::domain`] booting the qcow2 overlay `disk` with the NoCloud `seed` as a CD-ROM
    /// (customize and boot-test).
    pub(crate) fn seeded_domain(&self, disk: PathBuf, seed: PathBuf) -> DomainSpec {
        self.domain(
            Disk {
                path: disk,
                format: DiskFormat::Qcow2,
            },
            BootFrom::Disk,
            vec![Media {
                path: seed,
                kind: MediaKind::Cdrom,
            }],
        )
    }

    /// The run of `domain`: done at `completion` with `success`, failed by `failure`, within the
    /// step's timeout (or `default_timeout`).
    pub(crate) fn guest(
        &self,
        domain: DomainSpec,
        success: Pattern,
        failure: Option<Pattern>,
        completion: Completion,
        default_timeout: Duration,
    ) -> GuestSpec {
        GuestSpec {
            step: self.cx.step.id.to_string(),
            domain,
            success,
            failure,
            completion,
            timeout: self.cx.step.exec.timeout.unwrap_or(default_timeout),
            inactivity: None,
            persistence: Persistence::Transient,
            poll_interval: self.cx.env.poll_interval,
            key_presses: None,
            console_limit: crate::MAX_CONSOLE_BYTES,
        }
    }

    /// [`Self::guest`] done when the guest powers off after a line matching the regex `success`,
    /// failed by one matching `failure` (install and customize).
    pub(crate) fn until_power_off(
        &self,
        domain: DomainSpec,
        success: &str,
        failure: &str,
        default_timeout: Duration,
    ) -> GuestSpec {
        self.guest(
            domain,
            Pattern::regex(success).expect("valid regex"),
            Some(Pattern::regex(failure).expect("valid regex")),
            Completion::PowerOff,
            default_timeout,
        )
    }

    /// Runs the guest to its verdict, logging what it runs and what proved success; the scratch
    /// folder is removed after a success (kept for a look after a failure).
    pub(crate) fn run(self, spec: &GuestSpec) -> Result<GuestOutcome, RunError> {
        let kind = self.cx.step.kind();
        let d = &spec.domain;
        self.cx.log.line(format_args!(
            "{kind}: domain `{}` ({:?}), {} vCPUs, {} MiB, timeout {:?}, console `{}`",
            d.name,
            d.domain_type,
            d.vcpus,
            d.memory_mib,
            spec.timeout,
            d.serial_log.display()
        ));
        if crate::qemu_access::is_local_system(self.host.hv.uri()) {
            let roots = self.cx.env.private_roots();
            crate::qemu_access::grant(&spec.domain, &roots)
                .or_else(|e| super::fail(format!("step `{}`: {e}", self.cx.step.id)))?;
        }
        let outcome = run_guest(self.host.hv.as_ref(), spec, &self.cx.env.cancel)?;
        let t = &outcome.timings;
        self.cx.log.line(format_args!(
            "{kind}: `{}` after {:?} (start {:?}, run {:?}, success line to QEMU exit {:?}, teardown {:?})",
            crate::printable(&outcome.success_line),
            t.run,
            t.start,
            t.run,
            t.shutdown_lag,
            t.teardown
        ));
        let _ = std::fs::remove_dir_all(&self.scratch);
        Ok(outcome)
    }
}
