//! kiln's caches.
//!
//! - [`hash`]: md5 / sha1 / sha256 / sha512 computed in one read of the data, each digest on its own
//!   thread, usable while reading ([`HashingReader`]) or writing ([`HashingWriter`]).

pub mod hash;

pub use hash::{Algo, Digests, HashingReader, HashingWriter, MultiHasher, hash_file};
