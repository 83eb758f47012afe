//! Bounds and defaults the language enforces, in one place so docs and checks agree.

use std::time::Duration;

use crate::units::ByteSize;

/// Smallest root disk: below this no installer of a real OS fits.
pub const MIN_DISK: ByteSize = ByteSize(1 << 30);
/// Largest root disk (qcow2's practical limit is far above; this catches unit slips).
pub const MAX_DISK: ByteSize = ByteSize(64 << 40);
/// Smallest build-VM memory.
pub const MIN_MEMORY: ByteSize = ByteSize(256 << 20);
/// Largest build-VM memory.
pub const MAX_MEMORY: ByteSize = ByteSize(1 << 40);
/// Build-VM memory when `machine` does not say.
pub const DEFAULT_MEMORY: ByteSize = ByteSize(2 << 30);
/// Most vCPUs.
pub const MAX_CPUS: u32 = 256;
/// Shortest timeout (tests use seconds-long ones on tiny fixtures).
pub const MIN_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest timeout.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(48 * 3600);
/// `install` timeout when not given.
pub const DEFAULT_INSTALL_TIMEOUT: Duration = Duration::from_secs(3600);
/// `customize` timeout when not given.
pub const DEFAULT_CUSTOMIZE_TIMEOUT: Duration = Duration::from_secs(1800);
/// `boot-test` timeout when not given.
pub const DEFAULT_BOOT_TEST_TIMEOUT: Duration = Duration::from_secs(600);
/// Deepest nesting of `{ }` blocks read in any KDL file (pipelines use four or five levels); deeper
/// text would overflow the parsers' stack.
pub const MAX_NESTING: usize = 64;
/// Matrices above this many cells are not expanded by `kiln check` (the planner has its own limit).
pub const MAX_CHECKED_CELLS: usize = 10_000;
