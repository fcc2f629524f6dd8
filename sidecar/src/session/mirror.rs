//! Mirror copies. The real request goes to the app unchanged; its body is teed, frame by frame,
//! into a bounded buffer that feeds the copy sent to the session. Nothing ever waits for the
//! session: a copy is not made when too many are in flight, and a copy whose buffer fills up is
//! aborted (its stream is reset); both are counted, and the session is told with
//! [`Event::MirrorDropped`](tls_steal_crds::session::Event::MirrorDropped).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::Request;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tls_steal_crds::session::Mode;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use tls_steal_http::upgrade_protocol;

use super::conn::{BoxError, Session, SessionBody, session_head};
use crate::proxy::ConnInfo;
use crate::proxy::{ProxyBody, empty_body, head_copy};

/// A body fed by a channel. When the feeding side gave up (`aborted`), the body ends with an
/// error (so a truncated copy is never taken for a complete one); otherwise it simply ends.
pub struct ChannelBody<T> {
    rx: mpsc::Receiver<T>,
    aborted: Option<Arc<AtomicBool>>,
}

impl ChannelBody<Bytes> {
    /// Data chunks; never fails.
    pub fn new(rx: mpsc::Receiver<Bytes>) -> Self {
        ChannelBody { rx, aborted: None }
    }
}

impl Body for ChannelBody<Bytes> {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Poll::Ready(ready!(self.rx.poll_recv(cx)).map(|b| Ok(Frame::data(b))))
    }
}

/// The error ending a mirror copy the session could not keep up with.
#[derive(Debug, thiserror::Error)]
#[error("mirror copy dropped: the session is not keeping up")]
pub struct CopyDropped;

impl Body for ChannelBody<Frame<Bytes>> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match ready!(self.rx.poll_recv(cx)) {
            Some(f) => Poll::Ready(Some(Ok(f))),
            None if self
                .aborted
                .as_ref()
                .is_some_and(|a| a.load(Ordering::Acquire)) =>
            {
                Poll::Ready(Some(Err(Box::new(CopyDropped))))
            }
            None => Poll::Ready(None),
        }
    }
}

/// The real request's body, copying each frame into the copy's buffer without ever waiting.
pub struct Tee {
    inner: ProxyBody,
    tx: Option<mpsc::Sender<Frame<Bytes>>>,
    aborted: Arc<AtomicBool>,
    session: Arc<Session>,
    port: u16,
}

impl Tee {
    fn abort(&mut self, lagging: bool) {
        if self.tx.take().is_some() {
            self.aborted.store(true, Ordering::Release);
            if lagging {
                self.session.copy_dropped(self.port);
            }
        }
    }
}

impl Body for Tee {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(tx) = &this.tx {
                    let copy = if let Some(d) = frame.data_ref() {
                        Some(Frame::data(d.clone()))
                    } else {
                        frame.trailers_ref().map(|t| Frame::trailers(t.clone()))
                    };
                    if let Some(copy) = copy {
                        match tx.try_send(copy) {
                            Ok(()) => {}
                            Err(TrySendError::Full(_)) => this.abort(true),
                            Err(TrySendError::Closed(_)) => this.tx = None,
                        }
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => {
                this.abort(false);
                Poll::Ready(Some(Err(e)))
            }
            None => {
                this.tx = None;
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Tee {
    fn drop(&mut self) {
        if !self.inner.is_end_stream() {
            self.abort(false);
        }
    }
}

impl Session {
    pub(crate) fn copy_dropped(&self, port: u16) {
        self.mirror_dropped.fetch_add(1, Ordering::Relaxed);
        self.dropped_unreported.fetch_add(1, Ordering::Relaxed);
        self.metrics.mirror_dropped(port);
    }

    /// Starts a copy of `req` toward the session and returns the request to forward to the app
    /// (its body teed). Upgrades are not mirrored (their bytes cannot be copied to two peers).
    pub fn mirror(
        self: &Arc<Self>,
        request_id: u64,
        req: Request<ProxyBody>,
        conn: &ConnInfo,
    ) -> Request<ProxyBody> {
        if upgrade_protocol(&req).is_some() {
            return req;
        }
        if self.mirrors_in_flight.load(Ordering::Acquire) >= self.cfg.mirror_max_in_flight {
            self.copy_dropped(conn.port);
            return req;
        }
        self.mirrored.fetch_add(1, Ordering::Relaxed);
        let meta = self.meta(request_id, conn, req.version(), None, Mode::Mirror);
        let head = head_copy(&req);
        let (parts, body) = req.into_parts();
        let head = session_head(head.into_parts().0, &meta, conn.original_dst);
        let (copy_body, forward_body): (SessionBody, ProxyBody) = if body.is_end_stream() {
            (empty_body(), body)
        } else {
            let (tx, rx) = mpsc::channel(self.cfg.mirror_body_frames.max(1));
            let aborted = Arc::new(AtomicBool::new(false));
            let copy = ChannelBody {
                rx,
                aborted: Some(aborted.clone()),
            };
            let tee = Tee {
                inner: body,
                tx: Some(tx),
                aborted,
                session: self.clone(),
                port: conn.port,
            };
            (copy.boxed_unsync(), tee.boxed_unsync())
        };
        let session = self.clone();
        let copy = Request::from_parts(head, copy_body);
        // Counted before the task runs, so a burst sees the bound at once.
        self.mirrors_in_flight.fetch_add(1, Ordering::AcqRel);
        tokio::spawn(async move {
            let _slot = Counted(&session.mirrors_in_flight);
            if let Ok(resp) = session.send(copy).await {
                let mut body = resp.into_body();
                while let Some(Ok(_)) = body.frame().await {}
            }
        });
        Request::from_parts(parts, forward_body)
    }
}

/// Decrements an already-incremented counter on drop.
struct Counted<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
