//! The `kiln_uploader` property kiln puts on every image it creates (and removes once its data is
//! verified), and the rule that decides when a half-made image (`queued`, `saving`, `uploading`,
//! `importing`) left by an earlier kiln run is stale and may be deleted.
//!
//! The value is `<boot id>/<pid>/<process start time>/<user id>/<project id>` of the uploading
//! process and the Keystone user and project it uploaded as. Only images whose marker names the
//! current user and project, and which that project owns, are candidates: a user who can delete
//! other projects' images (an admin) or sees their half-made images (shared, community) must not
//! remove another user's upload. A candidate whose marker names this machine's current boot is
//! stale when that process no longer exists (the PID is gone or now belongs to a process that
//! started at another time): the uploader was killed. One marked by another machine or an earlier
//! boot is stale once Glance has not touched it for [`FOREIGN_STALE_AFTER_SECS`]. Images without
//! the marker, or with the three-part marker of kiln before user and project were added, are never
//! touched.

use crate::glance::Image;
use crate::time::{now_utc, parse_utc};

/// The property name.
pub const PROPERTY: &str = "kiln_uploader";

/// Glance statuses of an image whose data never arrived.
pub const HALF_MADE: &[&str] = &["queued", "saving", "uploading", "importing"];

/// Age after which another machine's half-made image is considered abandoned.
pub const FOREIGN_STALE_AFTER_SECS: i64 = 24 * 3600;

/// Who uploads: the Keystone user and project of the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uploader<'a> {
    pub user_id: &'a str,
    pub project_id: &'a str,
}

/// This process's marker, uploading as `who`.
pub fn current(who: Uploader<'_>) -> String {
    let pid = std::process::id();
    format!(
        "{}/{pid}/{}/{}/{}",
        boot_id().unwrap_or_else(|| "unknown-boot".to_owned()),
        start_time(pid).unwrap_or(0),
        who.user_id,
        who.project_id
    )
}

/// True when `image` is a half-made image `who`'s project owns, carrying a kiln marker that
/// names `who` and whose uploader is gone.
pub fn is_stale(image: &Image, who: Uploader<'_>) -> bool {
    if !HALF_MADE.contains(&image.status.as_str()) || !is_ours(image, who) {
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

/// True when `image` is owned by `who`'s project and its marker names `who`.
pub fn is_ours(image: &Image, who: Uploader<'_>) -> bool {
    let Some(marker) = image.extra.get(PROPERTY).and_then(|v| v.as_str()) else {
        return false;
    };
    let mut parts = marker.split('/');
    let names = (parts.nth(3), parts.next(), parts.next());
    image.owner.as_deref() == Some(who.project_id)
        && names == (Some(who.user_id), Some(who.project_id), None)
}

fn stale_marker(marker: &str, our_boot: Option<&str>, age_secs: Option<i64>) -> bool {
    let mut parts = marker.split('/');
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

    const ME: Uploader<'static> = Uploader {
        user_id: "u1",
        project_id: "p1",
    };

    fn image(owner: &str, marker: &str) -> Image {
        serde_json::from_value(serde_json::json!({
            "id": "i", "status": "queued", "owner": owner, PROPERTY: marker,
            "updated_at": "2000-01-01T00:00:00Z",
        }))
        .unwrap()
    }

    // Only this user's uploads into this project are ever removed: an admin (who may delete any
    // image) or a member who sees shared half-made images must not delete another's upload.
    #[test]
    fn only_markers_naming_this_user_and_project_are_stale() {
        let dead = "other-boot/1/1";
        assert!(is_stale(&image("p1", &format!("{dead}/u1/p1")), ME));
        assert!(!is_stale(&image("p1", &format!("{dead}/u2/p1")), ME));
        assert!(!is_stale(&image("p2", &format!("{dead}/u1/p2")), ME));
        // Marker names us, but another project owns the image.
        assert!(!is_stale(&image("p2", &format!("{dead}/u1/p1")), ME));
        // The marker of kiln before users and projects were recorded.
        assert!(!is_stale(&image("p1", dead), ME));
        assert!(!is_stale(&image("p1", &format!("{dead}/u1/p1/extra")), ME));
    }

    #[test]
    fn a_live_process_is_not_stale_a_dead_one_is() {
        let ours = current(ME);
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
