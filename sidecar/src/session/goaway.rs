//! Noticing a session's HTTP/2 `GOAWAY` the moment it arrives.
//!
//! A session leaving cleanly (`kubectl-steal` on Ctrl-C) shuts its HTTP/2 server down
//! gracefully: `GOAWAY`, then it answers the streams it has and closes. hyper's client only
//! notices the `GOAWAY` when it next sends a request (or when the connection ends), so the bytes
//! the session sends are watched here: the frame headers are followed (9 bytes each, then the
//! payload skipped) and the first `GOAWAY` frame fires a [`Notify`], on which the session
//! leaves the registry at once while its streams in flight complete.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
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

/// The session's connection as the HTTP/2 client reads it (the session speaks first, as the
/// server), with the `GOAWAY` frames it sends noticed.
pub(crate) struct GoawayWatch<S> {
    inner: S,
    frames: FrameTracker,
    seen: bool,
    notify: Arc<Notify>,
}

impl<S> GoawayWatch<S> {
    pub(crate) fn new(inner: S, notify: Arc<Notify>) -> Self {
        GoawayWatch {
            inner,
            frames: FrameTracker::default(),
            seen: false,
            notify,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for GoawayWatch<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r
            && !self.seen
        {
            let this = &mut *self;
            if this.frames.feed(&buf.filled()[before..]) {
                this.seen = true;
                this.notify.notify_one();
            }
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for GoawayWatch<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
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
