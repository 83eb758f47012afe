//! The guest's serial console, read as it grows: evidence patterns, inactivity, the tail for errors.

use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A line to look for on the console: a plain substring or a regex, matched within one line.
#[derive(Debug, Clone)]
pub enum Pattern {
    /// Matches when a line contains this text.
    Substring(String),
    /// Matches when a line matches this regex.
    Regex(regex::Regex),
}

impl Pattern {
    /// A substring pattern.
    #[must_use]
    pub fn substring(s: impl Into<String>) -> Self {
        Pattern::Substring(s.into())
    }

    /// A regex pattern.
    ///
    /// # Errors
    /// The regex does not compile.
    pub fn regex(re: &str) -> Result<Self, regex::Error> {
        regex::Regex::new(re).map(Pattern::Regex)
    }

    /// The first line of `text` that matches, without its line ending.
    #[must_use]
    pub fn find_line<'t>(&self, text: &'t str) -> Option<&'t str> {
        text.lines()
            .map(|l| l.trim_end_matches('\r'))
            .find(|line| match self {
                Pattern::Substring(s) => line.contains(s.as_str()),
                Pattern::Regex(re) => re.is_match(line),
            })
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pattern::Substring(s) => write!(f, "`{s}`"),
            Pattern::Regex(re) => write!(f, "regex `{}`", re.as_str()),
        }
    }
}

/// Follows a console log file that a guest appends to.
#[derive(Debug)]
pub struct Console {
    path: PathBuf,
    read: u64,
    bytes: Vec<u8>,
    scan_from: usize,
    last_growth: Instant,
}

impl Console {
    /// Starts following `path` (which may not exist yet).
    #[must_use]
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            read: 0,
            bytes: Vec::new(),
            scan_from: 0,
            last_growth: Instant::now(),
        }
    }

    /// Reads what was appended since the last call; returns whether anything was.
    ///
    /// # Errors
    /// The file exists but cannot be read.
    pub fn poll(&mut self) -> std::io::Result<bool> {
        let mut file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        if len < self.read {
            // Truncated (QEMU restarted the log): start over.
            self.read = 0;
            self.bytes.clear();
            self.scan_from = 0;
        }
        if len == self.read {
            return Ok(false);
        }
        file.seek(SeekFrom::Start(self.read))?;
        let n = file.read_to_end(&mut self.bytes)?;
        self.read += n as u64;
        if n > 0 {
            self.last_growth = Instant::now();
        }
        Ok(n > 0)
    }

    /// Restarts the inactivity clock (when the guest starts).
    pub fn reset_clock(&mut self) {
        self.last_growth = Instant::now();
    }

    /// When the console last grew (or when following started).
    #[must_use]
    pub fn last_growth(&self) -> Instant {
        self.last_growth
    }

    /// Everything read so far, lossily decoded.
    #[must_use]
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The first line that matches `pattern`, scanning only what arrived since the last call
    /// (plus the line that was still incomplete then).
    pub fn scan(&mut self, patterns: &[&Pattern]) -> Vec<Option<String>> {
        let new = String::from_utf8_lossy(&self.bytes[self.scan_from..]);
        let found = patterns
            .iter()
            .map(|p| p.find_line(&new).map(str::to_owned))
            .collect();
        // Rescan from the start of the last incomplete line next time.
        self.scan_from = match self.bytes[self.scan_from..]
            .iter()
            .rposition(|&b| b == b'\n')
        {
            Some(i) => self.scan_from + i + 1,
            None => self.scan_from,
        };
        found
    }

    /// The last `lines` lines, for error messages.
    #[must_use]
    pub fn tail(&self, lines: usize) -> String {
        let text = self.text();
        let all: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The log file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    // A success line split across two reads must still be found, and found only once it is whole.
    #[test]
    fn finds_lines_split_across_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        let mut f = File::create(&path).unwrap();
        let mut console = Console::new(&path);
        let ok = Pattern::substring("INSTALL OK");
        let bad = Pattern::regex(r"^KILN-TINY: INSTALL FAILED").unwrap();
        write!(f, "booted\r\nKILN-TINY: INST").unwrap();
        assert!(console.poll().unwrap());
        assert_eq!(console.scan(&[&ok, &bad]), vec![None, None]);
        write!(f, "ALL OK count=1\r\n").unwrap();
        assert!(console.poll().unwrap());
        assert_eq!(
            console.scan(&[&ok, &bad]),
            vec![Some("KILN-TINY: INSTALL OK count=1".into()), None]
        );
        assert!(!console.poll().unwrap());
        assert_eq!(console.tail(1), "KILN-TINY: INSTALL OK count=1");
        assert_eq!(console.tail(10), "booted\nKILN-TINY: INSTALL OK count=1");
    }

    // A missing log (guest not started yet) is not an error.
    #[test]
    fn missing_log_is_empty() {
        let mut console = Console::new(Path::new("/nonexistent/kiln/console.log"));
        assert!(!console.poll().unwrap());
        assert_eq!(console.tail(5), "");
    }
}
