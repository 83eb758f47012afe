//! Response bodies read with a bound: Keystone and Glance are remote servers, and a broken or
//! hostile one (or a proxy in front of it) may send a body without end. kiln's JSON responses are
//! a few KB (a token with its catalog, a page of 100 images), error bodies are shown cut to 400
//! characters.

use std::io::Read;

/// The most of a JSON answer read into memory ([`crate::keystone::read_body`]). A Glance listing
/// page of 100 images is ~200 KB and a large Keystone catalog well under 1 MB.
pub const MAX_JSON_BODY: u64 = 16 << 20;
/// Bytes of an error response body read (the rest is not needed for its message).
pub(crate) const MAX_ERROR_BODY: u64 = 64 << 10;

/// The first `cap` bytes of the body (fewer when it is shorter or fails part way).
pub(crate) fn read_prefix(body: impl Read, cap: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = body.take(cap).read_to_end(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body that never ends.
    struct Endless;

    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            buf.fill(b'x');
            Ok(buf.len())
        }
    }

    // A server streaming an endless body used to be read into memory until kiln was killed.
    #[test]
    fn endless_error_bodies_stop_at_the_cap() {
        assert_eq!(read_prefix(Endless, 1000).len(), 1000);
        assert_eq!(read_prefix(&b"{}"[..], 64), b"{}");
    }
}
