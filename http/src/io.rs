//! The one IO wrapper of the workspace: [`Hooked`] forwards every read and write to its inner
//! stream (vectored writes included), and lets a [`ReadHook`] serve reads itself (bytes already
//! read, [`Prefix`]), see the bytes read (the sidecar's HTTP/2 `GOAWAY` watch), and tell a
//! hyper-util client pool what was negotiated ([`ReadHook::connected`]).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use hyper_util::client::legacy::connect::{Connected, Connection};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What a [`Hooked`] stream does besides forwarding. Every method has a no-op default, so a
/// hook that only carries state (an open-connection gauge, the negotiated protocol) costs nothing
/// per read.
pub trait ReadHook: Unpin {
    /// Called before the inner stream is read: fills `buf` itself and returns `true`, or leaves
    /// the read to the inner stream.
    fn serve(&mut self, _buf: &mut ReadBuf<'_>) -> bool {
        false
    }

    /// The bytes the inner stream has just given.
    fn saw(&mut self, _bytes: &[u8]) {}

    /// What a hyper-util client pool is told about the connection (e.g. `h2` negotiated).
    fn connected(&self) -> Connected {
        Connected::new()
    }

    /// Whether a shutdown is skipped (the stream is being taken from hyper to be kept open).
    fn keep_open(&self) -> bool {
        false
    }
}

impl ReadHook for () {}

/// What to tell the pool of a connection whose ALPN chose `h2` or not.
pub fn negotiated(h2: bool) -> Connected {
    if h2 {
        Connected::new().negotiated_h2()
    } else {
        Connected::new()
    }
}

/// Bytes read ahead of time (to tell the protocol) and handed out before the stream's own.
pub struct Prefix(Bytes);

impl Prefix {
    pub fn new(bytes: Bytes) -> Self {
        Prefix(bytes)
    }

    /// `bytes` go out before those still here. Empty `bytes` are not kept: an empty `Bytes`
    /// can still hold the buffer it was split from.
    pub fn prepend(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        self.0 = if self.0.is_empty() {
            bytes
        } else {
            [bytes, self.0.clone()].concat().into()
        };
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl ReadHook for Prefix {
    fn serve(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        if self.0.is_empty() {
            return false;
        }
        let n = self.0.len().min(buf.remaining());
        buf.put_slice(&self.0[..n]);
        self.0.advance(n);
        true
    }
}

/// A stream whose already-read bytes come first.
pub type Prefixed<S> = Hooked<S, Prefix>;

/// `inner`, read through `hook`.
pub struct Hooked<S, H = ()> {
    inner: S,
    hook: H,
}

impl<S, H> Hooked<S, H> {
    pub fn new(inner: S, hook: H) -> Self {
        Hooked { inner, hook }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    pub fn hook(&self) -> &H {
        &self.hook
    }

    pub fn hook_mut(&mut self) -> &mut H {
        &mut self.hook
    }

    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S> Prefixed<S> {
    /// `inner`, after `prefix`.
    pub fn prefixed(prefix: Bytes, inner: S) -> Self {
        Hooked::new(inner, Prefix(prefix))
    }
}

impl<S: AsyncRead + Unpin, H: ReadHook> AsyncRead for Hooked<S, H> {
    #[inline]
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.hook.serve(buf) {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            this.hook.saw(&buf.filled()[before..]);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin, H: ReadHook> AsyncWrite for Hooked<S, H> {
    #[inline]
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    #[inline]
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    #[inline]
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    #[inline]
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    #[inline]
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.hook.keep_open() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S, H: ReadHook> Connection for Hooked<S, H> {
    fn connected(&self) -> Connected {
        self.hook.connected()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn prefix_first_then_the_stream_and_writes_pass() {
        let (a, mut b) = tokio::io::duplex(64);
        b.write_all(b" world").await.unwrap();
        drop(b);
        let mut io = Prefixed::prefixed(Bytes::from_static(b"hello"), a);
        let mut s = String::new();
        io.read_to_string(&mut s).await.unwrap();
        assert_eq!(s, "hello world");
    }

    #[tokio::test]
    async fn prepended_bytes_come_before_those_left() {
        let (a, b) = tokio::io::duplex(64);
        drop(b);
        let mut io = Prefixed::prefixed(Bytes::from_static(b"lo world"), a);
        io.hook_mut().prepend(Bytes::new());
        io.hook_mut().prepend(Bytes::from_static(b"hel"));
        let mut s = String::new();
        io.read_to_string(&mut s).await.unwrap();
        assert_eq!(s, "hello world");
        assert!(io.hook().is_empty());
    }

    #[tokio::test]
    async fn a_hook_that_keeps_the_stream_open_skips_the_shutdown() {
        struct Keep(bool);
        impl ReadHook for Keep {
            fn keep_open(&self) -> bool {
                self.0
            }
        }
        let (a, mut b) = tokio::io::duplex(64);
        let mut io = Hooked::new(a, Keep(true));
        io.shutdown().await.unwrap();
        io.write_all(b"still open").await.unwrap();
        io.hook_mut().0 = false;
        io.shutdown().await.unwrap();
        let mut s = String::new();
        b.read_to_string(&mut s).await.unwrap();
        assert_eq!(s, "still open", "EOF after the real shutdown");
    }

    #[tokio::test]
    async fn hook_sees_what_is_read() {
        #[derive(Default)]
        struct Count(usize);
        impl ReadHook for Count {
            fn saw(&mut self, bytes: &[u8]) {
                self.0 += bytes.len();
            }
        }
        let (a, mut b) = tokio::io::duplex(64);
        let mut io = Hooked::new(a, Count::default());
        b.write_all(b"12345").await.unwrap();
        drop(b);
        let mut v = Vec::new();
        io.read_to_end(&mut v).await.unwrap();
        assert_eq!(io.hook().0, 5);
        io.write_all(b"x").await.unwrap_err();
    }
}
