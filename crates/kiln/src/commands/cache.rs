//! `kiln cache ls | verify | prune`: the cache maintenance commands, on top of `kiln_cache::maintain`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use kiln_cache::chain::RefKind;
use kiln_cache::maintain::{EntryKind, Listing, PruneReason, Verdict};
use kiln_cache::{CacheRoot, PrunePolicy};

use crate::cli::Format;
use crate::exit_codes;

/// `kiln cache`.
#[derive(Debug, Args)]
pub struct CacheArgs {
    /// Cache directory [default: $KILN_CACHE_DIR, else $XDG_CACHE_HOME/kiln, else ~/.cache/kiln].
    #[arg(long, value_name = "DIR", global = true)]
    pub dir: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text, global = true)]
    pub format: Format,
    /// What to do.
    #[command(subcommand)]
    pub command: CacheCommand,
}

/// `kiln cache` subcommands.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// List entries (kind, name, size, last use, users, origin) and leftovers of killed writers.
    Ls,
    /// Re-hash every entry and compare it with its record, and check qcow2 backing chains; exit 5 if
    /// one is corrupt, missing, has a damaged record or a dangling, foreign or changed base.
    Verify,
    /// Remove leftovers and damaged entries, entries unused for longer than --max-age, then least
    /// recently used entries until the cache fits --max-size, and run folders older than --max-age.
    /// A base stays while an overlay on it stays.
    Prune(PruneArgs),
}

/// `kiln cache prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove entries unused for longer than this (`90s`, `30m`, `12h`, `7d`; like Nova's
    /// `remove_unused_original_minimum_age_seconds`).
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    pub max_age: Option<Duration>,
    /// Then remove least recently used entries until the total is at most this (`500M`, `50G`,
    /// `1T`: powers of 1024; plain numbers are bytes).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_size: Option<u64>,
    /// Report what would be removed; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs `kiln cache`.
pub fn run(args: &CacheArgs) -> u8 {
    let root = match &args.dir {
        Some(dir) => CacheRoot::new(dir),
        None => match CacheRoot::from_env() {
            Ok(r) => r,
            Err(e) => return fail(&e),
        },
    };
    let result = match &args.command {
        CacheCommand::Ls => ls(&root, args.format),
        CacheCommand::Verify => verify(&root, args.format),
        CacheCommand::Prune(p) => prune(&root, p, args.format),
    };
    result.unwrap_or_else(|e| fail(&e))
}

fn fail(e: &kiln_cache::CacheError) -> u8 {
    let mut msg = format!("error: {e}");
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    eprintln!("{msg}");
    exit_codes::IO_ERROR
}

fn json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("serialisable")
    );
}

fn ls(root: &CacheRoot, format: Format) -> Result<u8, kiln_cache::CacheError> {
    let listing = kiln_cache::list(root)?;
    if format == Format::Json {
        json(&listing);
        return Ok(exit_codes::SUCCESS);
    }
    print_listing(root, &listing);
    Ok(exit_codes::SUCCESS)
}

fn print_listing(root: &CacheRoot, listing: &Listing) {
    println!("cache: {}", root.path().display());
    if listing.entries.is_empty() {
        println!("no entries");
    } else {
        println!(
            "{:<9} {:<12} {:>10} {:>10}  {:<16} origin",
            "kind", "name", "size", "last used", "used by"
        );
        let now = now_secs();
        for e in &listing.entries {
            let users = e.users.iter().cloned().collect::<Vec<_>>().join(",");
            println!(
                "{:<9} {:<12} {:>10} {:>10}  {:<16} {}",
                kind(e.kind),
                &e.name[..12],
                human_size(e.disk_usage),
                ago(now, e.last_used),
                if users.is_empty() { "-" } else { &users },
                if e.damaged.is_some() {
                    "(record unreadable; `kiln cache prune` removes it)"
                } else {
                    e.origin
                        .as_deref()
                        .unwrap_or(if e.recorded { "-" } else { "(no kiln record)" })
                },
            );
        }
        println!(
            "{} entries, {} on disk",
            listing.entries.len(),
            human_size(listing.total_disk_usage())
        );
    }
    if !listing.strays.is_empty() {
        let size: u64 = listing.strays.iter().map(|s| s.disk_usage).sum();
        println!(
            "{} leftovers of interrupted writers ({}); `kiln cache prune` removes them:",
            listing.strays.len(),
            human_size(size)
        );
        for s in &listing.strays {
            println!("  {}", s.path.display());
        }
    }
}

fn verify(root: &CacheRoot, format: Format) -> Result<u8, kiln_cache::CacheError> {
    let results = kiln_cache::verify(root)?;
    let bad = results.iter().filter(|v| v.verdict.is_bad()).count();
    if format == Format::Json {
        json(&results);
    } else {
        for v in &results {
            let what = match &v.verdict {
                Verdict::Ok => "ok".to_owned(),
                Verdict::Unrecorded => {
                    "not checked: no kiln record (not fetched by kiln)".to_owned()
                }
                Verdict::Missing { file } => format!("MISSING `{file}`"),
                Verdict::Corrupt {
                    file,
                    expected,
                    actual,
                } => format!("CORRUPT `{file}`: expected {expected}, found {actual}"),
                Verdict::BadRecord { reason } => {
                    format!("DAMAGED record: {reason}; `kiln cache prune` removes the entry")
                }
                Verdict::BadHeader { file, reason } => {
                    format!("BAD qcow2 header in `{file}`: {reason}")
                }
                Verdict::Dangling { file, kind, target } => format!(
                    "DANGLING `{file}`: its {} `{}` is gone",
                    ref_kind(*kind),
                    target.display()
                ),
                Verdict::Foreign { file, kind, target } => format!(
                    "FOREIGN `{file}`: its {} `{}` is not a file of a cache entry",
                    ref_kind(*kind),
                    target.display()
                ),
                Verdict::BaseChanged {
                    file,
                    target,
                    expected,
                    actual,
                } => format!(
                    "BASE CHANGED under `{file}`: `{}` was {expected} when the overlay was made, is {actual}",
                    target.display()
                ),
            };
            println!("{:<9} {}  {what}", kind(v.kind), v.name);
        }
        println!(
            "{} entries checked, {bad} corrupt, missing or broken",
            results.len()
        );
    }
    if bad > 0 {
        if format == Format::Text {
            eprintln!(
                "error: {bad} cache entries are corrupt or incomplete; delete them and the next build \
                 fetches or rebuilds them"
            );
        }
        return Ok(exit_codes::CACHE_CORRUPT);
    }
    Ok(exit_codes::SUCCESS)
}

fn prune(root: &CacheRoot, args: &PruneArgs, format: Format) -> Result<u8, kiln_cache::CacheError> {
    let policy = PrunePolicy {
        max_age: args.max_age,
        max_size: args.max_size,
        dry_run: args.dry_run,
    };
    let report = kiln_cache::prune(root, &policy)?;
    if format == Format::Json {
        json(&report);
        return Ok(exit_codes::SUCCESS);
    }
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for p in &report.removed {
        let why = match p.reason {
            PruneReason::Stray => "leftover of an interrupted writer",
            PruneReason::Age => "unused for longer than --max-age",
            PruneReason::Size => "least recently used, over --max-size",
            PruneReason::Damaged => "its record cannot be read",
            PruneReason::Run => "run folder unused for longer than --max-age",
        };
        println!(
            "{verb} {} ({}): {why}",
            p.path.display(),
            human_size(p.disk_usage)
        );
    }
    for b in &report.busy {
        println!("kept {} (in use by a running kiln)", b.display());
    }
    for k in &report.kept {
        let backs: Vec<&str> = k.backs.iter().map(|b| &b[..12]).collect();
        println!(
            "kept {} (the base of {}, which remain{})",
            k.path.display(),
            backs.join(", "),
            if backs.len() == 1 { "s" } else { "" }
        );
    }
    println!(
        "{verb} {} items, {}; {} remain",
        report.removed.len(),
        human_size(report.freed()),
        human_size(report.remaining)
    );
    Ok(exit_codes::SUCCESS)
}

fn ref_kind(k: RefKind) -> &'static str {
    match k {
        RefKind::Backing => "backing file",
        RefKind::DataFile => "data file",
    }
}

fn kind(k: EntryKind) -> &'static str {
    match k {
        EntryKind::Base => "base",
        EntryKind::Artifact => "artifact",
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn ago(now: u64, then: u64) -> String {
    let s = now.saturating_sub(then);
    match s {
        0..60 => format!("{s}s ago"),
        60..3600 => format!("{}m ago", s / 60),
        3600..86_400 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// `90s`, `30m`, `12h`, `7d`, `2w` (a bare number is seconds).
fn parse_age(s: &str) -> Result<Duration, String> {
    let (num, unit) = split_unit(s);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid age `{s}`: expected a number with s, m, h, d or w"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => {
            return Err(format!(
                "invalid age unit `{unit}` in `{s}`: expected s, m, h, d or w"
            ));
        }
    };
    Ok(Duration::from_secs(n.saturating_mul(mult)))
}

/// `500M`, `50G`, `1T`, `2GiB` (powers of 1024; a bare number is bytes).
fn parse_size(s: &str) -> Result<u64, String> {
    let (num, unit) = split_unit(s);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size `{s}`: expected a number with K, M, G or T"))?;
    let shift = match unit
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => {
            return Err(format!(
                "invalid size unit `{unit}` in `{s}`: expected K, M, G or T"
            ));
        }
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("size `{s}` is too large"))
}

fn split_unit(s: &str) -> (&str, &str) {
    let s = s.trim();
    let at = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    (&s[..at], s[at..].trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_sizes_parse_with_units() {
        assert_eq!(parse_age("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_age("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_age("1d").unwrap(), Duration::from_secs(86_400));
        assert!(parse_age("1y").unwrap_err().contains("`y`"));
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("500M").unwrap(), 500 << 20);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("1t").unwrap(), 1 << 40);
        assert!(parse_size("5X").is_err());
        assert!(parse_size("G").is_err());
    }

    #[test]
    fn sizes_and_ages_print_for_people() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(3 << 29), "1.5 GiB");
        assert_eq!(ago(10_000, 10_000 - 7200), "2h ago");
    }
}
