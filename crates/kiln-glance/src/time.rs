//! The one timestamp shape Keystone and Glance send (`2026-11-23T11:33:36Z`, optionally with
//! fractional seconds), turned into seconds since the Unix epoch.

/// Seconds since 1970-01-01T00:00:00Z, or `None` when `s` is not an RFC 3339 UTC timestamp.
pub fn parse_utc(s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z').or_else(|| s.strip_suffix("+00:00"))?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let time = time.split_once('.').map_or(time, |(t, _)| t);
    let mut t = time.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    // Past year 9,999,999 a date only means "far in the future"; clamping keeps the arithmetic
    // below in range (a Keystone `expires_at` of year 275760 or beyond must not overflow).
    let y = y.clamp(-9_999_999, 9_999_999);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    Some(days_from_civil(y, m, day) * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Now, in seconds since the Unix epoch.
pub fn now_utc() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keystone_and_glance_timestamps() {
        assert_eq!(parse_utc("1970-01-01T00:00:00Z"), Some(0));
        // `date -d 2026-11-23T11:33:36Z +%s`
        assert_eq!(parse_utc("2026-11-23T11:33:36Z"), Some(1_795_433_616));
        assert_eq!(
            parse_utc("2026-11-23T11:33:36.000000Z"),
            Some(1_795_433_616)
        );
        assert_eq!(parse_utc("2000-02-29T23:59:59Z"), Some(951_868_799));
        assert_eq!(parse_utc("2026-11-23 11:33:36"), None);
        assert_eq!(parse_utc("2026-13-01T00:00:00Z"), None);
    }

    // Keystone may send far-future expiry dates (JavaScript's last date is 275760-09-13); an
    // absurd year must parse as "far future", never overflow.
    #[test]
    fn far_future_years_parse_without_overflow() {
        assert_eq!(parse_utc("9999-12-31T23:59:59Z"), Some(253_402_300_799));
        assert_eq!(parse_utc("275760-09-13T00:00:00Z"), Some(8_640_000_000_000));
        let huge = parse_utc("9223372036854775807-01-01T00:00:00Z").unwrap();
        assert!(huge > 8_640_000_000_000, "{huge}");
    }
}
