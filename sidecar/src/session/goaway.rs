//! Noticing a session's HTTP/2 `GOAWAY` the moment it arrives.
//!
//! A session leaving cleanly (`kubectl-steal` on Ctrl-C) shuts its HTTP/2 server down
//! gracefully: `GOAWAY`, then it answers the streams it has and closes. hyper's client only
//! notices the `GOAWAY` when it next sends a request (or when the connection ends), so the bytes
//! the session sends are watched here: the frame headers are followed (9 bytes each, then the
//! payload skipped) and the first `GOAWAY` frame fires a [`Notify`], on which the session
//! leaves the registry at once while its streams in flight complete.

use std::sync::Arc;

use tls_steal_http::ReadHook;
use tokio::sync::Notify;

/// The HTTP/2 frame type of `GOAWAY` (RFC 9113 §6.8).
const GOAWAY: u8 = 0x7;
const FRAME_HEADER: usize = 9;

/// Follows the HTTP/2 frames of one direction of a connection.
#[derive(Default)]
struct FrameTracker {
    header: [u8; FRAME_HEADER],
    header_len: usize,
    /// Payload bytes of the current frame still to skip.
    skip: usize,
}

impl FrameTracker {
    /// Feeds bytes read from the connection; `true` if they complete a `GOAWAY` frame header.
    fn feed(&mut self, mut data: &[u8]) -> bool {
        let mut goaway = false;
        while !data.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                self.skip -= n;
                data = &data[n..];
                continue;
            }
            let n = (FRAME_HEADER - self.header_len).min(data.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&data[..n]);
            self.header_len += n;
            data = &data[n..];
            if self.header_len == FRAME_HEADER {
                let h = &self.header;
                self.skip =
                    (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
                goaway |= h[3] == GOAWAY;
                self.header_len = 0;
            }
        }
        goaway
    }
}

/// Watches the session's connection as the HTTP/2 client reads it (the session speaks first,
/// as the server): the first `GOAWAY` frame it sends fires `notify`.
pub(crate) struct GoawayWatch {
    frames: FrameTracker,
    seen: bool,
    notify: Arc<Notify>,
}

impl GoawayWatch {
    pub(crate) fn new(notify: Arc<Notify>) -> Self {
        GoawayWatch {
            frames: FrameTracker::default(),
            seen: false,
            notify,
        }
    }
}

impl ReadHook for GoawayWatch {
    fn saw(&mut self, bytes: &[u8]) {
        if !self.seen && self.frames.feed(bytes) {
            self.seen = true;
            self.notify.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ty: u8, payload: &[u8]) -> Vec<u8> {
        let n = payload.len();
        let mut f = vec![(n >> 16) as u8, (n >> 8) as u8, n as u8, ty, 0, 0, 0, 0, 0];
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn finds_goaway_after_other_frames_whatever_the_read_sizes() {
        let mut bytes = frame(0x4, &[0; 12]); // SETTINGS
        bytes.extend(frame(0x0, &[GOAWAY; 300])); // DATA whose payload looks like GOAWAY
        bytes.extend(frame(0x6, &[0; 8])); // PING
        let before_goaway = bytes.len();
        bytes.extend(frame(GOAWAY, &[0; 8]));
        for chunk in [1, 2, 5, 9, 10, 64, 4096] {
            let mut t = FrameTracker::default();
            let mut at = None;
            for (i, c) in bytes.chunks(chunk).enumerate() {
                if t.feed(c) {
                    at.get_or_insert(i * chunk + c.len());
                }
            }
            let at = at.unwrap_or_else(|| panic!("GOAWAY not found with reads of {chunk}"));
            assert!(at > before_goaway, "chunk {chunk}: at {at}");
        }
        let mut t = FrameTracker::default();
        assert!(!t.feed(&bytes[..before_goaway]));
    }
}
