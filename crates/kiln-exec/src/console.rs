//! The guest's serial console, read as it grows: evidence patterns, inactivity, the tail for errors.
//!
//! The guest is hostile: it may write without end. Memory stays bounded (at most
//! [`MAX_CONSOLE_KEPT`] bytes are kept, at most [`READ_PER_POLL`] read per poll, a line longer
//! than [`MAX_LINE`] is not matched), and [`Console::written`] counts everything the guest wrote,
//! across virtlogd's rotations, so the runner can stop a guest that passes [`MAX_CONSOLE_BYTES`].

use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Console bytes kept in memory: the lines not yet scanned and the tail shown in errors.
pub const MAX_CONSOLE_KEPT: usize = 4 << 20;
/// Console output after which the guest is stopped (its log file is no bigger than this plus one
/// poll's worth).
pub const MAX_CONSOLE_BYTES: u64 = 128 << 20;
/// Most bytes read from the log per poll: a flood is taken in steps, each scanned before the next.
pub const READ_PER_POLL: usize = 1 << 20;
/// A line longer than this is not matched against patterns (its start is dropped).
pub const MAX_LINE: usize = 64 << 10;
/// Characters of one line shown by [`Console::tail`].
const MAX_TAIL_LINE: usize = 500;
/// Scanned bytes kept for [`Console::tail`].
const TAIL_KEPT: usize = 64 << 10;

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
    /// Bytes read from the current log file.
    read: u64,
    /// Bytes of earlier log files (virtlogd rotates, QEMU truncates on restart).
    earlier: u64,
    /// The most recent bytes read, at most `kept` of them.
    bytes: Vec<u8>,
    scan_from: usize,
    last_growth: Instant,
    kept: usize,
}

impl Console {
    /// Starts following `path` (which may not exist yet).
    #[must_use]
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            read: 0,
            earlier: 0,
            bytes: Vec::new(),
            scan_from: 0,
            last_growth: Instant::now(),
            kept: MAX_CONSOLE_KEPT,
        }
    }

    /// Everything the guest wrote so far (read or not), across log rotations.
    #[must_use]
    pub fn written(&self) -> u64 {
        let on_disk = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        self.earlier + on_disk.max(self.read)
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
            // Truncated (QEMU restarted the log) or rotated (virtlogd): start over.
            self.earlier += self.read;
            self.read = 0;
            self.bytes.clear();
            self.scan_from = 0;
        }
        if len == self.read {
            return Ok(false);
        }
        self.forget_scanned();
        file.seek(SeekFrom::Start(self.read))?;
        let room = self.kept.saturating_sub(self.bytes.len()).max(1);
        let want = (len - self.read).min((room.min(READ_PER_POLL)) as u64);
        let n = file.take(want).read_to_end(&mut self.bytes)?;
        self.read += n as u64;
        if n > 0 {
            self.last_growth = Instant::now();
        }
        Ok(n > 0)
    }

    /// Drops what was scanned, except the tail shown in errors, and the start of a line too long
    /// to match, so that what is kept stays within `kept` bytes.
    fn forget_scanned(&mut self) {
        let kept = self.kept;
        if self.bytes.len() - self.scan_from > MAX_LINE.min(kept / 2) {
            // An unfinished line this long is no evidence: skip to its last part.
            self.scan_from = self.bytes.len() - MAX_LINE.min(kept / 2);
        }
        let tail = TAIL_KEPT.min(kept / 4);
        let drop = self.scan_from.saturating_sub(tail);
        if drop > 0 && self.bytes.len() > kept / 2 {
            self.bytes.drain(..drop);
            self.scan_from -= drop;
        }
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

    /// The most recent console output kept in memory (all of it while under
    /// [`MAX_CONSOLE_KEPT`]), lossily decoded, as the guest wrote it: pass it through
    /// [`crate::printable`] before showing it.
    #[must_use]
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The first line that matches `pattern`, scanning only what arrived since the last call
    /// (plus the line that was still incomplete then); lines come back as the guest wrote them.
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

    /// The last `lines` lines, for error messages: escape sequences and control characters
    /// removed (see [`crate::printable`]).
    #[must_use]
    pub fn tail(&self, lines: usize) -> String {
        let text = self.text();
        let all: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
        let shown: Vec<String> = all[all.len().saturating_sub(lines)..]
            .iter()
            .map(|l| match l.char_indices().nth(MAX_TAIL_LINE) {
                Some((cut, _)) => format!("{}…", &l[..cut]),
                None => (*l).to_owned(),
            })
            .collect();
        crate::printable(&shown.join("\n"))
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

    // A guest writing without end (here 40 MiB, no newline in half of it) must not grow kiln's
    // memory: kiln used to keep every byte. Lines are still found, and `written` counts it all.
    #[test]
    fn endless_output_keeps_memory_bounded_and_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        let mut f = File::create(&path).unwrap();
        let mut console = Console::new(&path);
        let ok = Pattern::substring("INSTALL OK");
        let line = format!("{}\n", "x".repeat(199));
        let block = line.repeat(5 << 10);
        for _ in 0..20 {
            f.write_all(block.as_bytes()).unwrap();
        }
        f.write_all(&vec![b'y'; 20 << 20]).unwrap();
        write!(f, "\nKILN-TINY: INSTALL OK\nlast words\n").unwrap();
        let total = f.metadata().unwrap().len();
        let mut found = None;
        let mut most = 0;
        while console.poll().unwrap() {
            most = most.max(console.bytes.len());
            if let Some(Some(l)) = console.scan(&[&ok]).pop() {
                found = Some(l);
            }
        }
        assert_eq!(found.as_deref(), Some("KILN-TINY: INSTALL OK"));
        assert!(most <= MAX_CONSOLE_KEPT, "kept {most} bytes");
        assert_eq!(console.written(), total);
        assert!(console.tail(2).ends_with("INSTALL OK\nlast words"));
    }

    // virtlogd rotates the log: what the earlier files held still counts toward the cap.
    #[test]
    fn rotated_logs_still_count_toward_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        std::fs::write(&path, vec![b'a'; 3000]).unwrap();
        let mut console = Console::new(&path);
        assert!(console.poll().unwrap());
        std::fs::rename(&path, dir.path().join("console.log.0")).unwrap();
        std::fs::write(&path, b"b\n").unwrap();
        assert!(console.poll().unwrap());
        assert_eq!(console.written(), 3002);
    }

    // What a hostile guest prints reaches the user's terminal without its escape sequences.
    #[test]
    fn tail_strips_terminal_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        std::fs::write(&path, "ok\r\n\u{1b}]0;owned\u{7}\u{1b}[2Jboom\u{1b}[31m!\n").unwrap();
        let mut console = Console::new(&path);
        console.poll().unwrap();
        assert_eq!(console.tail(2), "ok\nboom!");
    }

    // A missing log (guest not started yet) is not an error.
    #[test]
    fn missing_log_is_empty() {
        let mut console = Console::new(Path::new("/nonexistent/kiln/console.log"));
        assert!(!console.poll().unwrap());
        assert_eq!(console.tail(5), "");
    }
}
