//! Bounds on what reading an image's directory tree may cost, shared by the ISO 9660 and UDF
//! readers.
//!
//! The image is outside input (a drivers ISO from the internet, a Windows ISO from a share). A
//! few MB of crafted directory records can point at each other's blocks so that every directory
//! is read again from a different start, and each pass adds entries whose paths grow with depth:
//! without a budget that is gigabytes of paths from a 1 MB file. Each bound is far above what any
//! real image needs (virtio-win: ~5,000 entries and under 1 MiB of directories; a Windows ISO:
//! ~1,000 entries) and keeps a hostile image to tens of MiB of memory and well under a second.

use crate::error::IsoError;

fn malformed(reason: String) -> IsoError {
    IsoError::Malformed { reason }
}

/// Directories deeper than this are not followed (ISO 9660 allows 8, Rock Ridge more).
pub(crate) const MAX_DEPTH: usize = 32;
/// One directory's records (ISO 9660 extent or UDF directory data) larger than this are corruption.
pub(crate) const MAX_DIR_BYTES: u64 = 16 << 20;
/// All directories' records together, per image.
pub(crate) const MAX_TOTAL_DIR_BYTES: u64 = 64 << 20;
/// Entries (files and directories) per image.
pub(crate) const MAX_ENTRIES: usize = 200_000;
/// One entry's `/`-separated path.
pub(crate) const MAX_PATH_BYTES: usize = 4096;
/// All entries' paths together, per image.
pub(crate) const MAX_TOTAL_PATH_BYTES: usize = 32 << 20;

/// What a tree walk has spent so far; each method fails once a bound is passed.
#[derive(Default)]
pub(crate) struct Budget {
    dir_bytes: u64,
    path_bytes: usize,
    entries: usize,
}

impl Budget {
    /// Accounts for reading (or zero-filling) a directory of `size` bytes, before it is read.
    pub(crate) fn directory(&mut self, size: u64) -> Result<(), IsoError> {
        if size > MAX_DIR_BYTES {
            return Err(malformed(format!(
                "directory of `{size}` bytes (at most {MAX_DIR_BYTES} are read)"
            )));
        }
        self.dir_bytes += size;
        if self.dir_bytes > MAX_TOTAL_DIR_BYTES {
            return Err(malformed(format!(
                "directories add up to more than {MAX_TOTAL_DIR_BYTES} bytes (directory records that point at each other?)"
            )));
        }
        Ok(())
    }

    /// Accounts for one more entry at `path`, before it is stored.
    pub(crate) fn entry(&mut self, path: &str) -> Result<(), IsoError> {
        if path.len() > MAX_PATH_BYTES {
            return Err(malformed(format!(
                "a path of {} bytes (at most {MAX_PATH_BYTES})",
                path.len()
            )));
        }
        self.entries += 1;
        self.path_bytes += path.len();
        if self.entries > MAX_ENTRIES {
            return Err(malformed(format!("more than {MAX_ENTRIES} entries")));
        }
        if self.path_bytes > MAX_TOTAL_PATH_BYTES {
            return Err(malformed(format!(
                "paths add up to more than {MAX_TOTAL_PATH_BYTES} bytes"
            )));
        }
        Ok(())
    }
}
