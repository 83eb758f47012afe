//! kiln's caches.
//!
//! - [`hash`]: md5 / sha1 / sha256 / sha512 computed in one read of the data, the digests on parallel
//!   threads, usable while reading ([`HashingReader`]) or writing ([`HashingWriter`]).
//! - [`root`]: where the cache lives and its versioned layout.
//! - [`base`]: the Nova-compatible `_base` folder (fetch, verify, convert, overlays).
//! - [`artifact`]: step outputs keyed by the step's content key, written atomically.
//! - [`lock`]: inter-process POSIX record locks, compatible with Nova's.
//! - [`memo`]: the hash memo (file identity → digests).
//! - [`maintain`]: `ls`, `verify` and `prune`.
//! - [`private`]: `0700` folders, `0600` files, and search for libvirt's QEMU user by ACL.
//! - [`chain`], [`qcow2`]: which entry a qcow2 overlay backs onto, read from its header.
//! - [`qemu_img`]: the `qemu-img` calls the cache needs.

pub mod artifact;
pub mod base;
pub mod chain;
pub mod error;
mod fsutil;
pub mod hash;
pub mod lock;
pub mod maintain;
pub mod memo;
pub mod private;
pub mod qcow2;
pub mod qemu_img;
pub mod root;
mod secret_key;
pub mod source;
pub mod stall;

pub use artifact::{Artifact, ArtifactKey, ArtifactRecord, ArtifactSpec, ArtifactStore, Staging};
pub use base::{BaseCache, BaseEntry, BaseRecord, FetchProgress, FetchRequest};
pub use error::CacheError;
pub use hash::{
    Algo, Digests, DigestsHandle, HashingReader, HashingWriter, MultiHasher, hash_file,
};
pub use lock::EntryLock;
pub use maintain::{PrunePolicy, PruneReport, list, prune, verify};
pub use memo::{FileIdentity, HashMemo};
pub use qemu_img::{Compression, Convert, DiskFormat, ImageInfo, QemuImg, check_self_contained};
pub use root::CacheRoot;
pub use secret_key::SECRET_KEY_LEN;
pub use source::{Checksum, Source, SourceId};
