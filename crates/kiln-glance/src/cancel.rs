//! Cancellation: a flag that a SIGINT handler (or a caller) sets, checked between requests and on
//! every read of an upload or download, so Ctrl-C ends a transfer promptly and the half-made image
//! is deleted instead of being left `queued`.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A shared cancellation flag. Clones share the flag.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn new() -> Self {
        Self::default()
    }

    /// A flag shared with another owner (e.g. `kiln build`'s cancel flag, set by its SIGINT
    /// handler), so one Ctrl-C stops guests and uploads alike.
    pub fn from_flag(flag: Arc<AtomicBool>) -> Self {
        Cancel(flag)
    }

    /// A flag set by the first SIGINT or SIGTERM; a second one of either ends the process at
    /// once with status 130 (the shell's code for "killed by SIGINT").
    pub fn on_signals() -> io::Result<Self> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let cancel = Cancel::new();
        for sig in [SIGINT, SIGTERM] {
            // Registered first, so it sees the flag before this signal sets it.
            signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&cancel.0))?;
            signal_hook::flag::register(sig, Arc::clone(&cancel.0))?;
        }
        Ok(cancel)
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Not `Interrupted`: `io::copy` and `read_exact` retry that kind forever.
    fn check(&self) -> io::Result<()> {
        if self.is_cancelled() {
            Err(io::Error::other(Cancelled))
        } else {
            Ok(())
        }
    }
}

/// The error a cancelled transfer's reader or writer returns.
#[derive(Debug, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;

/// A reader that fails with [`Cancelled`] once the flag is set.
pub struct CancellableReader<R> {
    inner: R,
    cancel: Cancel,
}

impl<R> CancellableReader<R> {
    pub fn new(inner: R, cancel: Cancel) -> Self {
        CancellableReader { inner, cancel }
    }
}

impl<R: Read> Read for CancellableReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.cancel.check()?;
        self.inner.read(buf)
    }
}

/// A writer that fails with [`Cancelled`] once the flag is set.
pub struct CancellableWriter<W> {
    inner: W,
    cancel: Cancel,
}

impl<W> CancellableWriter<W> {
    pub fn new(inner: W, cancel: Cancel) -> Self {
        CancellableWriter { inner, cancel }
    }

    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for CancellableWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.cancel.check()?;
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_stops_once_cancelled() {
        let cancel = Cancel::new();
        let mut r = CancellableReader::new(&b"abcdef"[..], cancel.clone());
        let mut buf = [0u8; 3];
        assert_eq!(r.read(&mut buf).unwrap(), 3);
        cancel.cancel();
        let err = r.read(&mut buf).unwrap_err();
        assert!(err.get_ref().is_some_and(|e| e.is::<Cancelled>()));
    }
}
