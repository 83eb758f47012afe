//! Sizes (`40GiB`, `512M`) as exact byte counts and durations (`90m`, `1h30m`).
//!
//! Sizes: a whole or decimal number followed by a unit. `K`, `M`, `G`, `T` and `KiB` … `TiB` are
//! powers of 1024 (as in `qemu-img`); `KB` … `TB` are powers of 1000; `B` is bytes. The result must be a
//! whole number of bytes. Durations: one or more `<integer><unit>` groups with units `s`, `m`, `h`.

use std::time::Duration;

/// A byte count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The exact number of bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }

    /// Whole MiB, rounded up (Glance's `min_ram` unit).
    pub fn mib_ceil(self) -> u64 {
        self.0.div_ceil(1 << 20)
    }

    /// Whole GiB, rounded up (Glance's `min_disk` unit).
    pub fn gib_ceil(self) -> u64 {
        self.0.div_ceil(1 << 30)
    }
}

impl std::fmt::Display for ByteSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const UNITS: [(&str, u64); 4] = [
            ("TiB", 1 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ];
        for (name, factor) in UNITS {
            if self.0 >= factor && self.0.is_multiple_of(factor) {
                return write!(f, "{}{name}", self.0 / factor);
            }
        }
        write!(f, "{}B", self.0)
    }
}

/// Why a size or duration string was rejected, with a hint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitError {
    /// What is wrong (lowercase).
    pub message: String,
    /// How to write it instead.
    pub help: String,
}

const SIZE_UNITS: &[(&str, u64)] = &[
    ("B", 1),
    ("K", 1 << 10),
    ("KiB", 1 << 10),
    ("M", 1 << 20),
    ("MiB", 1 << 20),
    ("G", 1 << 30),
    ("GiB", 1 << 30),
    ("T", 1 << 40),
    ("TiB", 1 << 40),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
];

const SIZE_HELP: &str = "write a number and a unit, e.g. `40GiB`, `512MiB` or `10G` (K/M/G/T and KiB…TiB are powers of 1024; KB…TB are powers of 1000)";

/// Parses a size string into exact bytes.
pub fn parse_size(text: &str) -> Result<ByteSize, UnitError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(text.len());
    let (number, unit) = (&text[..split], text[split..].trim_start());
    let err = |message: String| UnitError {
        message,
        help: SIZE_HELP.to_string(),
    };
    if number.is_empty() {
        return Err(err(format!("`{text}` is not a size")));
    }
    if unit.is_empty() {
        return Err(err(format!("size `{text}` has no unit")));
    }
    let Some(&(_, factor)) = SIZE_UNITS.iter().find(|(u, _)| *u == unit) else {
        let hint = SIZE_UNITS
            .iter()
            .find(|(u, _)| u.eq_ignore_ascii_case(unit))
            .map(|(u, _)| format!("did you mean `{number}{u}`? units are case-sensitive"))
            .unwrap_or_else(|| SIZE_HELP.to_string());
        return Err(UnitError {
            message: format!("unknown size unit `{unit}`"),
            help: hint,
        });
    };
    let number = number.replace('_', "");
    let (whole, frac) = number.split_once('.').unwrap_or((&number, ""));
    if whole.is_empty() || frac.contains('.') || (number.contains('.') && frac.is_empty()) {
        return Err(err(format!("`{text}` is not a size")));
    }
    let overflow = || err(format!("size `{text}` is too large"));
    let whole: u64 = whole.parse().map_err(|_| overflow())?;
    let mut bytes = whole.checked_mul(factor).ok_or_else(overflow)?;
    if !frac.is_empty() {
        // Exact decimal arithmetic: frac digits / 10^n * factor must be whole.
        let digits: u128 = frac.parse().map_err(|_| overflow())?;
        let scale = 10u128
            .checked_pow(u32::try_from(frac.len()).map_err(|_| overflow())?)
            .ok_or_else(overflow)?;
        let numerator = digits
            .checked_mul(u128::from(factor))
            .ok_or_else(overflow)?;
        if !numerator.is_multiple_of(scale) {
            return Err(UnitError {
                message: format!("size `{text}` is not a whole number of bytes"),
                help: "use a smaller unit, e.g. `1536MiB` instead of `1.5001GiB`".into(),
            });
        }
        let extra = u64::try_from(numerator / scale).map_err(|_| overflow())?;
        bytes = bytes.checked_add(extra).ok_or_else(overflow)?;
    }
    Ok(ByteSize(bytes))
}

const DURATION_HELP: &str =
    "write whole numbers with units `h`, `m`, `s`, e.g. `90m`, `1h30m` or `45s`";

/// Parses a duration such as `90m`, `1h30m` or `45s`.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let err = |message: String| UnitError {
        message,
        help: DURATION_HELP.to_string(),
    };
    if text.is_empty() {
        return Err(err("empty duration".into()));
    }
    let mut total: u64 = 0;
    let mut rest = text;
    let mut seen = String::new();
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(err(format!("`{text}` is not a duration")));
        }
        let value: u64 = rest[..digits]
            .parse()
            .map_err(|_| err(format!("duration `{text}` is too large")))?;
        rest = &rest[digits..];
        let Some(unit) = rest.chars().next() else {
            return Err(err(format!("duration `{text}` has no unit")));
        };
        let factor = match unit {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            other => return Err(err(format!("unknown duration unit `{other}` in `{text}`"))),
        };
        if seen.contains(unit) {
            return Err(err(format!("unit `{unit}` appears twice in `{text}`")));
        }
        seen.push(unit);
        total = value
            .checked_mul(factor)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| err(format!("duration `{text}` is too large")))?;
        rest = &rest[1..];
    }
    Ok(Duration::from_secs(total))
}

/// Formats a duration the way it is written in pipelines (`1h30m`, `45s`).
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return "0s".into();
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_decimal_units_are_exact() {
        assert_eq!(parse_size("10GiB").unwrap().bytes(), 10 * (1 << 30));
        assert_eq!(parse_size("40G").unwrap().bytes(), 40 * (1 << 30));
        assert_eq!(parse_size("40GB").unwrap().bytes(), 40_000_000_000);
        assert_eq!(parse_size("1.5GiB").unwrap().bytes(), 3 * (1 << 29));
        assert_eq!(parse_size("512MiB").unwrap().bytes(), 512 << 20);
        assert_eq!(parse_size("4096B").unwrap().bytes(), 4096);
    }

    #[test]
    fn nonsense_sizes_are_rejected_with_a_hint() {
        assert!(parse_size("10").unwrap_err().message.contains("no unit"));
        assert!(parse_size("GiB").is_err());
        assert!(parse_size("1.2.3G").is_err());
        assert!(parse_size("1.B").is_err());
        assert!(parse_size("0.3B").unwrap_err().message.contains("whole"));
        assert!(
            parse_size("99999999999999TiB")
                .unwrap_err()
                .message
                .contains("too large")
        );
        assert!(parse_size("10gib").unwrap_err().help.contains("`10GiB`"));
    }

    // 38 fractional digits times a TiB factor overflowed u128: a panic (debug) or a wrong size.
    #[test]
    fn long_fractions_are_too_large_not_a_panic() {
        let text = format!("0.{}TiB", "9".repeat(38));
        assert!(parse_size(&text).unwrap_err().message.contains("too large"));
        let text = format!("1.{}5T", "0".repeat(36));
        assert!(parse_size(&text).is_err());
    }

    #[test]
    fn durations_combine_units() {
        assert_eq!(parse_duration("90m").unwrap().as_secs(), 5400);
        assert_eq!(parse_duration("1h30m").unwrap().as_secs(), 5400);
        assert_eq!(parse_duration("45s").unwrap().as_secs(), 45);
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("1d").is_err());
        assert!(parse_duration("1m1m").is_err());
        assert!(parse_duration("m").is_err());
        assert_eq!(format_duration(Duration::from_secs(5445)), "1h30m45s");
    }

    #[test]
    fn sizes_display_in_the_largest_exact_unit() {
        assert_eq!(ByteSize(40 << 30).to_string(), "40GiB");
        assert_eq!(ByteSize(1536 << 20).to_string(), "1536MiB");
        assert_eq!(ByteSize(1000).to_string(), "1000B");
    }
}
