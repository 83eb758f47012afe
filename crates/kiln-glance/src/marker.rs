//! The `kiln_uploader` property kiln puts on every image it creates (and removes once its data is
//! verified), and the rule that decides when a half-made image (`queued`, `saving`, `uploading`,
//! `importing`) left by an earlier kiln run is stale and may be deleted.
//!
//! The value is `<boot id>/<pid>/<process start time>` of the uploading process. An image whose
//! marker names this machine's current boot is stale when that process no longer exists (the PID
//! is gone or now belongs to a process that started at another time): the uploader was killed.
//! An image marked by another machine or an earlier boot is stale once Glance has not touched it
//! for [`FOREIGN_STALE_AFTER_SECS`]. Images without the marker are never touched.

use crate::glance::Image;
use crate::time::{now_utc, parse_utc};

/// The property name.
pub const PROPERTY: &str = "kiln_uploader";

/// Glance statuses of an image whose data never arrived.
pub const HALF_MADE: &[&str] = &["queued", "saving", "uploading", "importing"];

/// Age after which another machine's half-made image is considered abandoned.
pub const FOREIGN_STALE_AFTER_SECS: i64 = 24 * 3600;

/// This process's marker.
pub fn current() -> String {
    let pid = std::process::id();
    format!(
        "{}/{pid}/{}",
        boot_id().unwrap_or_else(|| "unknown-boot".to_owned()),
        start_time(pid).unwrap_or(0)
    )
}

/// True when `image` is a half-made image carrying a kiln marker whose uploader is gone.
pub fn is_stale(image: &Image) -> bool {
    if !HALF_MADE.contains(&image.status.as_str()) {
        return false;
    }
    let Some(marker) = image.extra.get(PROPERTY).and_then(|v| v.as_str()) else {
        return false;
    };
    let age = image
        .updated_at
        .as_deref()
        .and_then(parse_utc)
        .map(|t| now_utc() - t);
    stale_marker(marker, boot_id().as_deref(), age)
}

fn stale_marker(marker: &str, our_boot: Option<&str>, age_secs: Option<i64>) -> bool {
    let mut parts = marker.splitn(3, '/');
    let (Some(boot), Some(pid), Some(start)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    if our_boot.is_some_and(|b| b == boot) {
        let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
            return false;
        };
        return start_time(pid) != Some(start);
    }
    age_secs.is_some_and(|a| a > FOREIGN_STALE_AFTER_SECS)
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Field 22 of `/proc/PID/stat`: the process's start time in clock ticks since boot.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; it ends at the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_process_is_not_stale_a_dead_one_is() {
        let ours = current();
        let boot = boot_id();
        assert!(!stale_marker(&ours, boot.as_deref(), Some(0)), "{ours}");
        // Same PID, other start time: the PID was reused, the uploader is gone.
        let (b, rest) = ours.split_once('/').unwrap();
        let pid = rest.split('/').next().unwrap();
        assert!(stale_marker(
            &format!("{b}/{pid}/1"),
            boot.as_deref(),
            Some(0)
        ));
        // A PID that cannot exist.
        assert!(stale_marker(
            &format!("{b}/4294967295/5"),
            boot.as_deref(),
            Some(0)
        ));
    }

    // Another machine's upload may still be running: only age makes it stale.
    #[test]
    fn foreign_markers_go_stale_by_age_only() {
        let m = "other-boot/1/1";
        assert!(!stale_marker(m, Some("this-boot"), Some(60)));
        assert!(stale_marker(
            m,
            Some("this-boot"),
            Some(FOREIGN_STALE_AFTER_SECS + 1)
        ));
        assert!(!stale_marker("garbage", Some("this-boot"), Some(i64::MAX)));
    }
}
