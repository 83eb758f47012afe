//! kiln-exec: runs plan steps on libvirt hosts.
//!
//! This layer owns the hypervisor side: [`Host`]s with a capacity and an accelerator (with a real
//! probe behind [`Accel::Auto`]), the narrow [`Hypervisor`] trait and its libvirt implementation,
//! domain XML generation, [`run_guest`] (a guest run to a verdict decided from console evidence,
//! with the domain always removed), and `qemu-img` behind [`DiskTool`].

pub mod build;
mod config;
mod console;
mod domain_xml;
mod guest;
mod host;
mod hypervisor;
mod libvirt;
mod printable;
mod qemu_access;
mod qemu_img;
pub mod runners;
pub mod scheduler;

pub use config::{
    CONFIG_FILE, ConfigError, ConfigSearch, HostConfig, ProjectConfig, current_uid, find_config,
    find_config_as, load_config, parse_config, refused_uri, resolve_hosts,
};
pub use console::{Console, MAX_CONSOLE_BYTES, MAX_CONSOLE_KEPT, Pattern};
pub use domain_xml::{
    BootFrom, DOMAIN_PREFIX, Disk, DiskBus, DiskFormat, DomainSpec, DomainType, DomainXmlError,
    Firmware, KernelBoot, Machine, Media, MediaKind, NicModel, OnReboot, domain_xml,
};
pub use guest::{
    Cancel, Completion, Evidence, GuestError, GuestOutcome, GuestSpec, KeyPresses, Persistence,
    Timings, domain_name, run_guest,
};
pub use host::{
    Accel, AccelChoice, Capacity, Host, LOCAL_URI, PROBE_BOOT_SECTOR, PROBE_BOUND, PROBE_LINE,
    probe_kvm, resolve_accel, run_probe,
};
pub use hypervisor::{DomainState, Hypervisor, HypervisorError, LifecycleEvent, LocalProcess};
pub use libvirt::Libvirt;
pub use printable::printable;
pub use qemu_img::{
    Compression, ConvertOptions, DiskTool, ImageInfo, QemuImg, QemuImgError, convert_args,
};
