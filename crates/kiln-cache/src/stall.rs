//! A download that stops making progress fails instead of hanging: [`StallGuard`] reads the
//! response on a helper thread and gives up when no data arrived for the stall timeout. Used for
//! source fetches into `_base` and for Glance downloads (kiln-glance).
//!
//! reqwest's own `read_timeout` needs a Tokio runtime on the reading thread, which its blocking
//! client does not have (it panics), and its total `timeout` would cap the whole transfer. The
//! helper thread owns the connection; after a stall it is left blocked until the server closes
//! the connection or the process exits (one thread and one socket per stalled download).

use std::io::{self, Read};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::Duration;

/// Bytes read per chunk handed from the helper thread.
const CHUNK: usize = 1 << 20;

/// A reader over `inner` that fails with [`io::ErrorKind::TimedOut`] when no data arrives for
/// `stall`.
pub struct StallGuard {
    rx: Receiver<io::Result<Vec<u8>>>,
    stall: Duration,
    buf: Vec<u8>,
    pos: usize,
    done: bool,
}

impl std::fmt::Debug for StallGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StallGuard")
            .field("stall", &self.stall)
            .finish_non_exhaustive()
    }
}

impl StallGuard {
    /// Starts reading `inner` on a helper thread.
    pub fn new(inner: impl Read + Send + 'static, stall: Duration) -> Self {
        let (tx, rx) = sync_channel(4);
        std::thread::Builder::new()
            .name("kiln-download".into())
            .spawn(move || pump(inner, &tx))
            .map_or_else(
                |e| {
                    let (tx, rx) = sync_channel(1);
                    let _ = tx.send(Err(e));
                    StallGuard::with(rx, stall)
                },
                |_| StallGuard::with(rx, stall),
            )
    }

    fn with(rx: Receiver<io::Result<Vec<u8>>>, stall: Duration) -> Self {
        StallGuard {
            rx,
            stall,
            buf: Vec::new(),
            pos: 0,
            done: false,
        }
    }
}

fn pump(mut inner: impl Read, tx: &SyncSender<io::Result<Vec<u8>>>) {
    loop {
        let mut chunk = vec![0; CHUNK];
        match inner.read(&mut chunk) {
            Ok(0) => {
                let _ = tx.send(Ok(Vec::new()));
                return;
            }
            Ok(n) => {
                chunk.truncate(n);
                if tx.send(Ok(chunk)).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        }
    }
}

impl Read for StallGuard {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() || self.done {
            return Ok(0);
        }
        if self.pos == self.buf.len() {
            match self.rx.recv_timeout(self.stall) {
                Ok(Ok(chunk)) if chunk.is_empty() => {
                    self.done = true;
                    return Ok(0);
                }
                Ok(Ok(chunk)) => {
                    self.buf = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(RecvTimeoutError::Timeout) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no data for {} s", self.stall.as_secs_f64()),
                    ));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "the download thread ended",
                    ));
                }
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Slow {
        sent: bool,
    }

    impl Read for Slow {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.sent {
                std::thread::sleep(Duration::from_secs(30));
                return Ok(0);
            }
            self.sent = true;
            buf[..3].copy_from_slice(b"abc");
            Ok(3)
        }
    }

    #[test]
    fn data_passes_and_a_stall_times_out() {
        let mut all = Vec::new();
        StallGuard::new(&b"hello world"[..], Duration::from_secs(5))
            .read_to_end(&mut all)
            .unwrap();
        assert_eq!(all, b"hello world");
        let mut g = StallGuard::new(Slow { sent: false }, Duration::from_millis(200));
        let mut buf = [0; 8];
        assert_eq!(g.read(&mut buf).unwrap(), 3);
        let started = std::time::Instant::now();
        let err = g.read(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
