//! Exit statuses of `kiln`, stable for scripts and CI.
//!
//! | code | constant | meaning |
//! |---|---|---|
//! | 0 | [`SUCCESS`] | everything checked / done |
//! | 1 | [`INVALID_PIPELINES`] | a pipeline file has errors (diagnostics on stderr) |
//! | 2 | [`USAGE`] | bad command line (clap's own status) |
//! | 3 | [`NOT_FORMATTED`] | `kiln fmt --check`: some file is not formatted |
//! | 4 | [`IO_ERROR`] | a file could not be read or written |
//! | 5 | [`CACHE_CORRUPT`] | `kiln cache verify`: an entry does not match its record |
//! | 6 | — | `kiln build` / `kiln publish`: a step failed (kiln-exec's `EXIT_FAILED`) |
//! | 7 | [`NO_CLOUD`] | publish steps, but their cloud is not configured or refuses (nothing ran) |
//! | 8 | [`NOT_BUILT`] | `kiln publish`: an image is not built, or nothing to publish |
//! | 130 | — | cancelled (SIGINT / SIGTERM) |

/// Everything checked / done.
pub const SUCCESS: u8 = 0;
/// A pipeline file has errors; the diagnostics were printed.
pub const INVALID_PIPELINES: u8 = 1;
/// Bad command line (what clap exits with).
pub const USAGE: u8 = 2;
/// `kiln fmt --check` found files that are not formatted.
pub const NOT_FORMATTED: u8 = 3;
/// A file could not be read or written.
pub const IO_ERROR: u8 = 4;
/// `kiln cache verify` found an entry whose content does not match its record, or a missing output.
pub const CACHE_CORRUPT: u8 = 5;
/// Publish steps whose cloud is not configured or cannot be reached; nothing ran.
pub const NO_CLOUD: u8 = 7;
/// `kiln publish`: an image is not built (or no selected pipeline publishes).
pub const NOT_BUILT: u8 = 8;
