//! kiln-unattend: everything kiln generates to install Windows unattended, as pure functions.
//!
//! - [`render_autounattend`]: `autounattend.xml` (windowsPE, specialize, oobeSystem).
//! - [`render_cloudbase_conf`], [`render_cloudbase_unattend_conf`], [`render_sysprep_unattend`]:
//!   cloudbase-init's two configuration files and the answer file sysprep is given.
//! - [`answer_media`]: all of the above laid out as the answer media's files.
//! - [`VirtioDriver`], [`check_drivers`]: the virtio-win folder map and the check of a drivers ISO.
//! - [`IsoTree`]: an ISO 9660 / Joliet / Rock Ridge directory reader, the crate's only I/O.
//! - [`machine_shape`], [`glance_properties`]: the install machine and the image's Glance properties.
//!
//! Secrets never live in [`WindowsImage`]: it holds [`SecretRef`]s, and values reach a render only
//! through [`SecretSource::Values`].

mod autounattend;
mod bounds;
mod cloudbase;
mod error;
mod firstlogon;
mod iso9660;
mod media;
mod model;
mod secret;
mod shape;
mod udf;
mod virtio;
mod xml;

pub use autounattend::{REMOTE_DESKTOP_GROUP, driver_paths, render_autounattend};
pub use cloudbase::{
    CloudbaseInit, FirstLogonBehaviour, Group, INSTALL_DIR as CLOUDBASE_INSTALL_DIR,
    MetadataService, Plugin, SerialPort, render_cloudbase_conf, render_cloudbase_unattend_conf,
    render_sysprep_unattend,
};
pub use error::{IsoError, ModelError, RenderError};
pub use firstlogon::{
    CLOUDBASE_MSI, MEDIA_MARKER, PROGRESS_PORT, Progress, parse_progress, sysprep_unattend_path,
};
pub use iso9660::{IsoEntry, IsoTree, Naming};
pub use media::{AnswerMedia, MediaFile, answer_media, installer_languages};
pub use model::{
    Arch, BuiltinAdmin, ComputerName, DiskLayout, DriverMedia, Firmware, FirstLogonCommand,
    GuestTools, ImageSelector, InputLocale, LanguageTag, LocaleSettings, TimeZone, WindowsImage,
    WindowsVersion,
};
pub use secret::{SecretRef, SecretSource, SecretValue, Secrets};
pub use shape::{CdromBus, MachineShape, MachineType, glance_properties, machine_shape};
pub use virtio::{
    MissingFolder, Problem, VirtioDriver, check_drivers, check_guest_agent, check_image_media,
    guest_agent_msi,
};
