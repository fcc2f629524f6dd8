//! Reading a request body for body filters, bounded in size and time, without changing what is
//! handed on: the frames read (data and trailers) are replayed, in order, ahead of the rest of
//! the body, whichever way the request then goes.
//!
//! The proxy reads a body only when a session on the request's port has a body filter
//! ([`super::route::Route::ReadBody`]). Reading stops on reaching `max_bytes` (a declared
//! `content-length` above it stops it before any read), at `timeout`, or at the end of the body.
//! Only a complete body is parsed as JSON; anything else makes body filters "no match"
//! ([`BodyRead`] says why, for the metric), never an error for the client.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http::header::CONTENT_LENGTH;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use super::forward::ProxyBody;

/// How much of a body may be read for body filters, and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyLimits {
    pub max_bytes: usize,
    pub timeout: Duration,
}

impl Default for BodyLimits {
    /// mirrord's defaults: 64 KiB, 1 s.
    fn default() -> Self {
        BodyLimits {
            max_bytes: 64 * 1024,
            timeout: Duration::from_millis(1000),
        }
    }
}

/// What reading the body gave the filters.
#[derive(Clone, Debug, PartialEq)]
pub enum BodyRead {
    /// A complete body that is JSON.
    Json(serde_json::Value),
    /// A complete body that is not JSON.
    NotJson,
    /// No body at all.
    Empty,
    /// Longer than the limit.
    TooLarge,
    /// Not complete within the time limit.
    Timeout,
    /// The client's body failed (reset, malformed chunking).
    Failed,
}

impl BodyRead {
    /// The JSON, when there is one.
    pub fn json(&self) -> Option<&serde_json::Value> {
        match self {
            BodyRead::Json(v) => Some(v),
            _ => None,
        }
    }

    /// The metric label of a body that gives filters nothing.
    pub fn unusable_reason(&self) -> Option<&'static str> {
        match self {
            BodyRead::Json(_) => None,
            BodyRead::NotJson => Some("not_json"),
            BodyRead::Empty => Some("empty"),
            BodyRead::TooLarge => Some("too_large"),
            BodyRead::Timeout => Some("timeout"),
            BodyRead::Failed => Some("read_error"),
        }
    }
}

/// Reads up to the limits; returns what the filters see and the body to hand on (unchanged).
pub async fn read<B>(mut body: B, headers: &HeaderMap, limits: BodyLimits) -> (BodyRead, ProxyBody)
where
    B: Body<Data = Bytes, Error = hyper::Error> + Send + Unpin + 'static,
{
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_bytes as u64) {
        return (BodyRead::TooLarge, body.boxed_unsync());
    }
    let deadline = tokio::time::Instant::now() + limits.timeout;
    let mut frames = VecDeque::new();
    let mut data = BytesMut::new();
    let mut ended = false;
    let outcome = loop {
        if body.is_end_stream() {
            ended = true;
            break None;
        }
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => break Some(BodyRead::Timeout),
            Ok(None) => {
                ended = true;
                break None;
            }
            Ok(Some(Err(e))) => {
                return (
                    BodyRead::Failed,
                    Replay::<B> {
                        frames,
                        tail: None,
                        error: Some(e),
                    }
                    .boxed_unsync(),
                );
            }
            Ok(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    data.extend_from_slice(d);
                }
                frames.push_back(frame);
                // Reaching the limit is too large, as in mirrord (whose read stops there
                // without waiting for the end): a body of exactly `max_bytes` does not match.
                if data.len() >= limits.max_bytes {
                    break Some(BodyRead::TooLarge);
                }
            }
        }
    };
    let read = match outcome {
        Some(why) => why,
        None if data.is_empty() => BodyRead::Empty,
        None => match serde_json::from_slice(&data) {
            Ok(v) => BodyRead::Json(v),
            Err(_) => BodyRead::NotJson,
        },
    };
    // A body is not polled again once it said it ended.
    let tail = (!ended).then_some(body);
    let replay = Replay {
        frames,
        tail,
        error: None,
    };
    (read, replay.boxed_unsync())
}

/// The frames read, then the rest of the body (or the error that ended it).
struct Replay<B> {
    frames: VecDeque<Frame<Bytes>>,
    tail: Option<B>,
    error: Option<hyper::Error>,
}

impl<B> Body for Replay<B>
where
    B: Body<Data = Bytes, Error = hyper::Error> + Unpin,
{
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(f) = self.frames.pop_front() {
            return Poll::Ready(Some(Ok(f)));
        }
        if let Some(e) = self.error.take() {
            return Poll::Ready(Some(Err(e)));
        }
        match self.tail.as_mut() {
            Some(t) => Pin::new(t).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
            && self.error.is_none()
            && self.tail.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let buffered: u64 = self
            .frames
            .iter()
            .filter_map(|f| f.data_ref().map(|d| d.len() as u64))
            .sum();
        let mut hint = self
            .tail
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint);
        // Upper first: `set_lower` refuses a lower bound above the upper one.
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper + buffered);
        }
        hint.set_lower(hint.lower() + buffered);
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;
    use tokio::sync::mpsc;

    type Chunk = Result<Frame<Bytes>, hyper::Error>;

    /// A body fed by the test, frame by frame.
    fn channel() -> (
        mpsc::Sender<Chunk>,
        impl Body<Data = Bytes, Error = hyper::Error> + Send + Unpin + 'static,
    ) {
        let (tx, rx) = mpsc::channel::<Chunk>(16);
        let stream =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
        (tx, StreamBody::new(Box::pin(stream)))
    }

    fn data(s: &str) -> Chunk {
        Ok(Frame::data(Bytes::from(s.to_owned())))
    }

    async fn all(body: ProxyBody) -> (Vec<u8>, Option<HeaderMap>) {
        let collected = body.collect().await.unwrap();
        let trailers = collected.trailers().cloned();
        (collected.to_bytes().to_vec(), trailers)
    }

    fn limits(max_bytes: usize, ms: u64) -> BodyLimits {
        BodyLimits {
            max_bytes,
            timeout: Duration::from_millis(ms),
        }
    }

    #[tokio::test]
    async fn a_complete_json_body_is_parsed_and_handed_on_with_its_trailers() {
        let (tx, body) = channel();
        tx.send(data("{\"a\":")).await.unwrap();
        tx.send(data(" [1, 2]}")).await.unwrap();
        let mut t = HeaderMap::new();
        t.insert("grpc-status", "0".parse().unwrap());
        tx.send(Ok(Frame::trailers(t.clone()))).await.unwrap();
        drop(tx);
        let (got, rest) = read(body, &HeaderMap::new(), limits(1024, 5_000)).await;
        assert_eq!(got, BodyRead::Json(serde_json::json!({"a": [1, 2]})));
        assert_eq!(all(rest).await, (b"{\"a\": [1, 2]}".to_vec(), Some(t)));
    }

    #[tokio::test]
    async fn not_json_and_empty_bodies_say_so() {
        let (tx, body) = channel();
        tx.send(data("a=1&b=2")).await.unwrap();
        drop(tx);
        let (got, rest) = read(body, &HeaderMap::new(), limits(1024, 5_000)).await;
        assert_eq!(
            (got.unusable_reason(), all(rest).await.0),
            (Some("not_json"), b"a=1&b=2".to_vec())
        );
        let (tx, body) = channel();
        drop(tx);
        let (got, rest) = read(body, &HeaderMap::new(), limits(1024, 5_000)).await;
        assert_eq!(got, BodyRead::Empty);
        assert!(all(rest).await.0.is_empty());
    }

    #[tokio::test]
    async fn an_over_long_body_stops_the_read_and_still_arrives_whole() {
        // Declared too long: nothing is read.
        let (tx, body) = channel();
        let mut h = HeaderMap::new();
        h.insert(CONTENT_LENGTH, "100".parse().unwrap());
        tx.send(data(&"x".repeat(100))).await.unwrap();
        drop(tx);
        let (got, rest) = read(body, &h, limits(10, 5_000)).await;
        assert_eq!(got, BodyRead::TooLarge);
        assert_eq!(all(rest).await.0, b"x".repeat(100));
        // Not declared: reading stops past the limit; the rest follows the frames read.
        let (tx, body) = channel();
        for _ in 0..3 {
            tx.send(data("0123456789")).await.unwrap();
        }
        let (got, rest) = read(body, &HeaderMap::new(), limits(15, 5_000)).await;
        assert_eq!(got, BodyRead::TooLarge);
        tx.send(data("end")).await.unwrap();
        drop(tx);
        assert_eq!(
            all(rest).await.0,
            b"012345678901234567890123456789end".to_vec()
        );
    }

    #[tokio::test]
    async fn a_body_of_exactly_the_limit_is_too_large_as_in_mirrord() {
        for (len, expect_json) in [(9, true), (10, false)] {
            let (tx, body) = channel();
            let json = format!("[{}]", "1".repeat(len - 2));
            tx.send(data(&json)).await.unwrap();
            drop(tx);
            let (got, rest) = read(body, &HeaderMap::new(), limits(10, 5_000)).await;
            assert_eq!(got.json().is_some(), expect_json, "{len} bytes: {got:?}");
            assert_eq!(all(rest).await.0, json.as_bytes());
        }
    }

    #[tokio::test]
    async fn a_slow_body_times_out_and_its_bytes_are_kept() {
        let (tx, body) = channel();
        tx.send(data("{\"slow\":")).await.unwrap();
        let (got, rest) = read(body, &HeaderMap::new(), limits(1024, 50)).await;
        assert_eq!(got, BodyRead::Timeout);
        tx.send(data(" true}")).await.unwrap();
        drop(tx);
        assert_eq!(all(rest).await.0, b"{\"slow\": true}".to_vec());
    }

    #[test]
    fn size_hints_add_the_frames_read() {
        let replay = Replay {
            frames: VecDeque::from([Frame::data(Bytes::from_static(b"abc"))]),
            tail: Some(
                http_body_util::Full::new(Bytes::from_static(b"de"))
                    .map_err(|n: std::convert::Infallible| match n {}),
            ),
            error: None,
        };
        assert_eq!(replay.size_hint().exact(), Some(5));
    }
}
