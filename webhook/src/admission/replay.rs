//! Answers replayed for reviews that differ from an earlier one only in `request.uid`.
//!
//! The pods a ReplicaSet (Job, DaemonSet, ...) creates in one burst reach admission as
//! byte-identical reviews but for the request's uid: the API server calls webhooks before it
//! generates the pod's name and uid, and the `managedFields` time it has already set counts whole
//! seconds. Reading the JSON is about 90% of such a review, so the answer of the earlier one is
//! replayed with the new uid, after a byte comparison instead of a parse.
//!
//! Sound by construction. A template is kept only when all of these hold, each checked:
//! * the parser read `request.uid` as a slice of the body (it has no escapes), so where the
//!   uid lies is known, not guessed;
//! * that slice is the content of one of the body's `"uid":"` strings (the k-th);
//! * the review was answered without the cluster (no owner lookup), its answer is an injection
//!   or a skip and nothing else happened for that pod (no event), so the answer is a function of
//!   the body, the settings and the config generation;
//! * the answer holds the uid exactly once, where it is written.
//!
//! Admission offers a review as a template once its decision came from the memo (the second pod
//! of a shape on): the first pod of each shape, which may never be followed, pays nothing here.
//!
//! Templates are found by a hash of the body without the contents of its `"uid":"` strings (the
//! request's, owners', the user's: which one is the request's is not known before reading). A
//! body is replayed only when the bytes before and after its k-th `"uid":"` string's content
//! equal the template's, that content has no backslash, control character or invalid UTF-8 (so
//! it reads as itself, and the general path would write it unchanged), and the config generation
//! is the template's. Such a body *is* the template with another request uid, so its answer is
//! the template's with that uid. Tests compare replayed answers with fresh ones byte for byte.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, LazyLock, Mutex};

use foldhash::fast::RandomState;

use super::memo::Injected;
use crate::mutate::SkipReason;

/// Templates kept at most (each about twice a review's size).
pub const CAPACITY: usize = 256;

/// Larger reviews are not kept, which bounds the templates to about 32 MiB (pods are typically
/// 2-20 kB; the API server sends up to about 1.5 MB).
pub const MAX_BODY: usize = 64 * 1024;

const UID_KEY: &[u8] = b"\"uid\":\"";

/// Built once: building a finder costs more than searching a review with it.
static UID_FINDER: LazyLock<memchr::memmem::Finder<'static>> =
    LazyLock::new(|| memchr::memmem::Finder::new(UID_KEY));

/// What the template's review did besides answering, done again on each replay.
#[derive(Clone, Debug)]
pub enum Outcome {
    Skipped(SkipReason),
    Injected {
        injected: Arc<Injected>,
        target: String,
        namespace: String,
    },
}

/// A review that may become a template: where its body holds the request uid (as the parser
/// read it), the config generation read before it and what it did.
pub struct Replayable {
    pub uid_span: (usize, usize),
    pub generation: u64,
    pub outcome: Outcome,
}

/// A body's `"uid":"` strings and the hash of the rest: found once per review, for the lookup
/// and, when it misses, for keeping the review.
#[derive(Debug)]
pub struct Probe {
    spans: Vec<(usize, usize)>,
    key: u64,
}

/// A replayed answer.
pub struct Replayed {
    pub status: u16,
    pub body: Vec<u8>,
    pub outcome: Outcome,
}

struct Template {
    body: Vec<u8>,
    /// Which `"uid":"` string is the request's, of how many.
    uid_index: usize,
    uids: usize,
    uid_start: usize,
    uid_end: usize,
    generation: u64,
    status: u16,
    answer_before: Vec<u8>,
    answer_after: Vec<u8>,
    outcome: Outcome,
}

#[derive(Default)]
pub struct Replay {
    hasher: RandomState,
    templates: Mutex<HashMap<u64, Arc<Template>, RandomState>>,
}

/// Start and end of the content of each `"uid":"` string (up to the next quote).
fn uid_spans(body: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut from = 0;
    while let Some(at) = UID_FINDER.find(&body[from..]) {
        let start = from + at + UID_KEY.len();
        let Some(len) = memchr::memchr(b'"', &body[start..]) else {
            break;
        };
        spans.push((start, start + len));
        from = start + len;
    }
    spans
}

/// Reads as itself inside a JSON string, and serde_json writes it unchanged.
fn plain(s: &[u8]) -> bool {
    s.iter().all(|&b| b >= 0x20 && b != b'\\') && std::str::from_utf8(s).is_ok()
}

impl Replay {
    /// The hash of `body` without the contents of its `"uid":"` strings.
    fn key(&self, body: &[u8], spans: &[(usize, usize)]) -> u64 {
        let mut h = self.hasher.build_hasher();
        let mut from = 0;
        for &(start, end) in spans {
            h.write(&body[from..start]);
            from = end;
        }
        h.write(&body[from..]);
        h.finish()
    }

    /// Where `body`'s `"uid":"` strings are, and the hash of the rest.
    pub fn probe(&self, body: &[u8]) -> Probe {
        let spans = uid_spans(body);
        let key = self.key(body, &spans);
        Probe { spans, key }
    }

    /// The answer for `body` if it is a kept template with another request uid; else its probe,
    /// for [`Replay::keep`] once the review is answered.
    pub fn answer(&self, body: &[u8], generation: u64) -> Result<Replayed, Probe> {
        let probe = self.probe(body);
        self.replayed(body, &probe, generation).ok_or(probe)
    }

    fn replayed(&self, body: &[u8], probe: &Probe, generation: u64) -> Option<Replayed> {
        let t = self
            .templates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&probe.key)?
            .clone();
        if probe.spans.len() != t.uids {
            return None;
        }
        let (start, end) = probe.spans[t.uid_index];
        let uid = &body[start..end];
        if !plain(uid)
            || t.generation != generation
            || t.uid_start != start
            || body[..start] != t.body[..start]
            || body[end..] != t.body[t.uid_end..]
        {
            return None;
        }
        let mut answer =
            Vec::with_capacity(t.answer_before.len() + uid.len() + t.answer_after.len());
        answer.extend_from_slice(&t.answer_before);
        answer.extend_from_slice(uid);
        answer.extend_from_slice(&t.answer_after);
        Some(Replayed {
            status: t.status,
            body: answer,
            outcome: t.outcome.clone(),
        })
    }

    /// Keeps the review of `body` (probed by [`Replay::answer`]) as a template when the module's
    /// conditions hold.
    pub fn keep(&self, body: &[u8], probe: Probe, review: Replayable, status: u16, answer: &[u8]) {
        if body.len() > MAX_BODY {
            return;
        }
        let (start, end) = review.uid_span;
        let Some(uid) = body.get(start..end).filter(|u| !u.is_empty() && plain(u)) else {
            return;
        };
        let Probe { spans, key } = probe;
        let Some(uid_index) = spans.iter().position(|&span| span == (start, end)) else {
            return;
        };
        let finder = memchr::memmem::Finder::new(uid);
        let mut in_answer = finder.find_iter(answer);
        let (Some(at), None) = (in_answer.next(), in_answer.next()) else {
            return;
        };
        if !answer[..at].ends_with(UID_KEY) || answer.get(at + uid.len()) != Some(&b'"') {
            return;
        }
        let template = Template {
            body: body.to_vec(),
            uid_index,
            uids: spans.len(),
            uid_start: start,
            uid_end: end,
            generation: review.generation,
            status,
            answer_before: answer[..at].to_vec(),
            answer_after: answer[at + uid.len()..].to_vec(),
            outcome: review.outcome,
        };
        let mut templates = self.templates.lock().unwrap_or_else(|e| e.into_inner());
        if templates.len() >= CAPACITY
            && !templates.contains_key(&key)
            && let Some(&any) = templates.keys().next()
        {
            templates.remove(&any);
        }
        templates.insert(key, Arc::new(template));
    }

    /// Templates kept.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.templates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skipped() -> Outcome {
        Outcome::Skipped(SkipReason::NoMatchingConfig)
    }

    fn body(uid: &str, name: &str) -> Vec<u8> {
        format!(r#"{{"request":{{"uid":"{uid}","object":{{"n":"{name}"}}}}}}"#).into_bytes()
    }

    fn answer(uid: &str) -> Vec<u8> {
        format!(r#"{{"response":{{"allowed":true,"uid":"{uid}"}}}}"#).into_bytes()
    }

    /// Where the request's uid lies, as the parser reports it (the string after
    /// `"request":{"uid":"`).
    fn request_uid(body: &[u8]) -> (usize, usize) {
        let start = memchr::memmem::find(body, br#""request":{"uid":""#).unwrap() + 18;
        (start, start + memchr::memchr(b'"', &body[start..]).unwrap())
    }

    fn keep_at(r: &Replay, body: &[u8], uid_span: (usize, usize), answer: &[u8]) {
        let review = Replayable {
            uid_span,
            generation: 1,
            outcome: skipped(),
        };
        r.keep(body, r.probe(body), review, 200, answer);
    }

    fn keep(r: &Replay, body: &[u8]) {
        let (start, end) = request_uid(body);
        let uid = std::str::from_utf8(&body[start..end]).unwrap();
        keep_at(r, body, (start, end), &answer(uid));
    }

    #[test]
    fn replays_with_the_new_uid_only_for_the_same_body() {
        let r = Replay::default();
        keep(&r, &body("u-1", "a"));
        assert_eq!(r.len(), 1);
        let got = r.answer(&body("u-22", "a"), 1).unwrap();
        assert_eq!(got.body, answer("u-22"));
        assert_eq!(got.status, 200);
        assert!(r.answer(&body("u-22", "b"), 1).is_err(), "another object");
        assert!(r.answer(&body("u-22", "a"), 2).is_err(), "configs changed");
        // Content that would not read as itself: not replayed.
        for uid in ["u\\\"x", "u\u{1}", "u\\u0031"] {
            assert!(r.answer(&body(uid, "a"), 1).is_err(), "{uid:?}");
        }
    }

    /// Other `"uid":"` strings (an owner's) before the request's, and escapes elsewhere (as in
    /// `managedFields`): only the request's uid may differ.
    #[test]
    fn only_the_request_uid_may_differ() {
        let r = Replay::default();
        let body = |owner: &str, uid: &str| {
            format!(
                r#"{{"o":{{"uid":"{owner}","f":{{"k:{{\"name\":\"app\"}}":{{}}}}}},"request":{{"uid":"{uid}"}}}}"#
            )
            .into_bytes()
        };
        keep(&r, &body("own-1", "u-1"));
        assert_eq!(r.len(), 1);
        let got = r.answer(&body("own-1", "u-2"), 1).unwrap();
        assert_eq!(got.body, answer("u-2"));
        assert!(r.answer(&body("own-2", "u-1"), 1).is_err());
        assert!(r.answer(&body("own-2", "u-2"), 1).is_err());
    }

    #[test]
    fn keeps_only_what_it_can_prove() {
        let r = Replay::default();
        let b = body("u-1", "a");
        let (start, end) = request_uid(&b);
        // A span that is not a "uid" string's content (the object's "n").
        let n = memchr::memmem::find(&b, b"\"a\"").unwrap() + 1;
        keep_at(&r, &b, (n, n + 1), &answer("a"));
        // A span past the body.
        keep_at(&r, &b, (start, b.len() + 1), &answer("u-1"));
        // A body over the size kept.
        let big = body("u-1", &"x".repeat(MAX_BODY));
        keep(&r, &big);
        // An empty uid.
        keep_at(&r, &body("", "a"), request_uid(&body("", "a")), &answer(""));
        // The uid twice in the answer, or not where the answer writes it.
        keep_at(&r, &b, (start, end), br#"{"uid":"u-1","m":"u-1"}"#);
        keep_at(&r, &b, (start, end), br#"{"m":"u-1"}"#);
        assert!(r.is_empty());
    }

    #[test]
    fn bounded() {
        let r = Replay::default();
        for i in 0..CAPACITY + 10 {
            keep(&r, &body("u-1", &format!("pod-{i}")));
        }
        assert_eq!(r.len(), CAPACITY);
    }
}
