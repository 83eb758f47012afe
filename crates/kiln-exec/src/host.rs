//! Hosts: a libvirt URI, an accelerator setting and a capacity; and the accelerator probe that
//! backs [`Accel::Auto`].
//!
//! libvirt's domain capabilities advertise `kvm` wherever `/dev/kvm` exists, including nested
//! `kvm_pvm` machines that run real-mode code but fail on the first SSE instruction in long mode
//! (so no Linux boots). `Auto` therefore boots a 512-byte probe (fixtures/tiny/boot.asm built with
//! `-D PROBE`) under KVM and uses KVM only if the probe prints its line from 64-bit SSE code in
//! time; otherwise TCG. The result is cached per host URI for the life of the process.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::console::Pattern;
use crate::domain_xml::{
    BootFrom, Disk, DiskFormat, DomainSpec, DomainType, Firmware, Machine, OnReboot,
};
use crate::guest::{Cancel, Completion, GuestError, GuestSpec, Persistence, run_guest};
use crate::hypervisor::Hypervisor;

/// The probe's boot sector, assembled from `fixtures/tiny/boot.asm` with `nasm -D PROBE`
/// (a test checks the two agree). Booted as the MBR of a raw disk: no ISO tools needed.
pub const PROBE_BOOT_SECTOR: &[u8; 512] = include_bytes!("probe-boot.bin");

/// The line the probe prints from 64-bit code after running SSE2 instructions.
pub const PROBE_LINE: &str = "KILN-PROBE: LONG MODE OK";

/// How long the probe may take under KVM. Real KVM needs well under a second; the bound only
/// has to cover a slow start of QEMU.
pub const PROBE_BOUND: Duration = Duration::from_secs(20);

/// Accelerator setting of a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Accel {
    /// Always KVM.
    Kvm,
    /// Always TCG.
    Tcg,
    /// KVM if the probe boots under it, else TCG.
    #[default]
    Auto,
}

/// How much a host may run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Capacity {
    /// Concurrent guests.
    pub guests: u32,
    /// vCPUs summed over running guests.
    pub vcpus: u32,
    /// Guest memory summed over running guests, MiB.
    pub memory_mib: u64,
}

impl Capacity {
    /// From a host's CPU count and memory: one guest per CPU, all CPUs, 80 % of the memory
    /// (the rest for the host, QEMU's own overhead and the page cache that disk images live in).
    #[must_use]
    pub fn from_resources(cpus: u32, memory_mib: u64) -> Self {
        let cpus = cpus.max(1);
        Self {
            guests: cpus,
            vcpus: cpus,
            memory_mib: memory_mib / 5 * 4,
        }
    }

    /// Of the machine this process runs on.
    #[must_use]
    pub fn of_this_machine() -> Self {
        let cpus = std::thread::available_parallelism()
            .map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX));
        let memory_mib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| parse_mem_total_kib(&m))
            .map_or(1024, |kib| kib / 1024);
        Self::from_resources(cpus, memory_mib)
    }
}

fn parse_mem_total_kib(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A libvirt host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Host {
    /// Connection URI, e.g. `qemu:///system` or `qemu+tcp://10.0.0.2/system`.
    pub uri: String,
    /// Accelerator setting.
    pub accel: Accel,
    /// Capacity.
    pub capacity: Capacity,
}

/// The local default URI.
pub const LOCAL_URI: &str = "qemu:///system";

impl Host {
    /// The local `qemu:///system` with the capacity of this machine and [`Accel::Auto`].
    #[must_use]
    pub fn local() -> Self {
        Self {
            uri: LOCAL_URI.into(),
            accel: Accel::Auto,
            capacity: Capacity::of_this_machine(),
        }
    }
}

impl Host {
    /// A host at `uri` with the capacity libvirt reports for it (its CPUs and memory).
    ///
    /// # Errors
    /// The node-info call failed.
    pub fn from_libvirt(hv: &crate::Libvirt, accel: Accel) -> Result<Self, crate::HypervisorError> {
        let (cpus, memory_mib) = hv.node_resources()?;
        Ok(Self {
            uri: hv.uri().to_owned(),
            accel,
            capacity: Capacity::from_resources(cpus, memory_mib),
        })
    }
}

/// The accelerator chosen for a host, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccelChoice {
    /// Domain type to use.
    pub domain_type: DomainType,
    /// Why: "configured", "probe booted under kvm in 0.4s", or the probe's failure.
    pub reason: String,
}

/// Resolves the host's accelerator; `Auto` runs the probe once per URI per process (concurrent
/// callers wait for the first). `workdir` holds the probe's disk and console; it must be reachable
/// by libvirt's QEMU user.
pub fn resolve_accel(host: &Host, hv: &dyn Hypervisor, workdir: &Path) -> AccelChoice {
    match host.accel {
        Accel::Kvm => AccelChoice {
            domain_type: DomainType::Kvm,
            reason: "configured".into(),
        },
        Accel::Tcg => AccelChoice {
            domain_type: DomainType::Qemu,
            reason: "configured".into(),
        },
        Accel::Auto => {
            type Cache = Mutex<HashMap<String, Arc<OnceLock<AccelChoice>>>>;
            static PROBES: OnceLock<Cache> = OnceLock::new();
            let cell = {
                let mut map = PROBES
                    .get_or_init(Cache::default)
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                Arc::clone(map.entry(host.uri.clone()).or_default())
            };
            cell.get_or_init(|| probe_kvm(hv, workdir, PROBE_BOUND))
                .clone()
        }
    }
}

/// Boots the probe under KVM; KVM if its line appears within `bound`, else TCG.
pub fn probe_kvm(hv: &dyn Hypervisor, workdir: &Path, bound: Duration) -> AccelChoice {
    let tcg = |why: String| AccelChoice {
        domain_type: DomainType::Qemu,
        reason: why,
    };
    let result = run_probe(hv, workdir, bound, DomainType::Kvm);
    if let Err(e) = &result
        && let Some(Ok(shot)) = e.evidence().map(|ev| &ev.screenshot)
    {
        let _ = std::fs::remove_file(shot);
    }
    match result {
        Ok(took) => AccelChoice {
            domain_type: DomainType::Kvm,
            reason: format!(
                "probe ran 64-bit SSE code under kvm in {:.1}s",
                took.as_secs_f64()
            ),
        },
        Err(GuestError::Hypervisor { source, .. }) => {
            tcg(format!("kvm unavailable: {}", source.message))
        }
        Err(GuestError::Crashed { state, .. }) => {
            tcg(format!("probe stopped under kvm ({state:?})"))
        }
        Err(GuestError::Timeout { .. }) => {
            tcg(format!("probe printed nothing under kvm within {bound:?}"))
        }
        Err(e) => tcg(format!("probe failed under kvm: {e}")),
    }
}

/// Boots the probe disk with the given accelerator and waits up to `bound` for [`PROBE_LINE`];
/// returns how long the whole run took. The probe's files are removed afterwards.
///
/// # Errors
/// The probe guest did not print its line (see [`GuestError`]).
pub fn run_probe(
    hv: &dyn Hypervisor,
    workdir: &Path,
    bound: Duration,
    domain_type: DomainType,
) -> Result<Duration, GuestError> {
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let id = format!("probe{}.{seq}", std::process::id());
    let disk = workdir.join(format!("kiln-{id}.raw"));
    let spec = GuestSpec {
        step: "accelerator probe".into(),
        domain: DomainSpec {
            name: crate::guest::domain_name(
                &id,
                if domain_type == DomainType::Kvm {
                    "kvm"
                } else {
                    "tcg"
                },
            ),
            domain_type,
            machine: Machine::Pc,
            firmware: Firmware::Bios,
            tpm: false,
            vcpus: 1,
            memory_mib: 64,
            root_disk: Some(Disk {
                path: disk.clone(),
                format: DiskFormat::Raw,
            }),
            installer_iso: None,
            drivers_iso: None,
            extra_media: Vec::new(),
            serial_log: workdir.join(format!("kiln-{id}.console.log")),
            boot: BootFrom::Disk,
            on_reboot: OnReboot::Destroy,
            disk_bus: crate::domain_xml::DiskBus::Virtio,
            kernel_boot: None,
            nic: None,
        },
        success: Pattern::substring(PROBE_LINE),
        failure: None,
        completion: Completion::SuccessLine,
        timeout: bound,
        inactivity: None,
        persistence: Persistence::Transient,
        poll_interval: Duration::from_millis(50),
        key_presses: None,
        console_limit: crate::MAX_CONSOLE_BYTES,
    };
    // SeaBIOS ignores disks much smaller than 1 MiB; the file stays sparse.
    let written = std::fs::write(&disk, PROBE_BOOT_SECTOR).and_then(|()| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&disk)?
            .set_len(1 << 20)
    });
    if let Err(source) = written {
        return Err(GuestError::Console {
            step: spec.step,
            path: disk,
            source,
        });
    }
    let started = std::time::Instant::now();
    let result = run_guest(hv, &spec, &Cancel::new());
    let _ = std::fs::remove_file(&disk);
    let _ = std::fs::remove_file(&spec.domain.serial_log);
    result.map(|_| started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_from_meminfo() {
        let meminfo = "MemTotal:       24576000 kB\nMemFree:         1000 kB\n";
        let kib = parse_mem_total_kib(meminfo).unwrap();
        assert_eq!(kib, 24_576_000);
        let cap = Capacity::from_resources(2, kib / 1024);
        assert_eq!(
            cap,
            Capacity {
                guests: 2,
                vcpus: 2,
                memory_mib: 19_200
            }
        );
    }

    // The embedded probe must be what the committed assembly source builds, or the probe tests
    // something other than what the source says. nasm comes from scripts/setup-host.sh.
    #[test]
    fn probe_bytes_match_source() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("probe.bin");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tiny/boot.asm");
        let status = std::process::Command::new("nasm")
            .args(["-f", "bin", "-D", "PROBE", "-o"])
            .arg(&out)
            .arg(&src)
            .status()
            .expect("nasm must be installed (scripts/setup-host.sh)");
        assert!(status.success());
        assert_eq!(std::fs::read(&out).unwrap(), PROBE_BOOT_SECTOR.to_vec());
        assert_eq!(&PROBE_BOOT_SECTOR[510..], &[0x55, 0xaa]);
    }
}
