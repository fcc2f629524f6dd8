//! What the developer sees: one line per request as it is served, session changes, and a
//! summary at the end. Lines go to stdout; diagnostics (tracing) go to stderr.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tls_steal_crds::filter::{BodyFilter, HttpFilter};
use tls_steal_crds::session::{Event, Mode, Registration};

/// One served request.
#[derive(Debug, Clone)]
pub struct Served {
    pub pod: String,
    pub method: String,
    pub path: String,
    pub mode: Mode,
    /// The status the caller got (for an upgrade, the local app's, e.g. 101).
    pub status: u16,
    /// Time until the response head.
    pub elapsed: Duration,
    /// Why the local app did not answer, when it did not.
    pub failure: Option<String>,
}

#[derive(Debug, Default)]
struct Stats {
    stolen: u64,
    mirrored: u64,
    by_class: BTreeMap<u16, u64>,
    failures: u64,
    by_pod: BTreeMap<String, u64>,
    lost: u64,
    mirror_dropped: u64,
}

/// Prints and counts.
#[derive(Debug)]
pub struct Output {
    started: Instant,
    stats: Mutex<Stats>,
}

impl Default for Output {
    fn default() -> Self {
        Output {
            started: Instant::now(),
            stats: Mutex::default(),
        }
    }
}

impl Output {
    /// A session-level message (registered, reconnecting, ...).
    pub fn info(&self, message: &str) {
        println!("{}  {message}", clock(SystemTime::now()));
    }

    /// The line for one request.
    pub fn request(&self, s: &Served) {
        {
            let mut st = self.stats.lock().unwrap_or_else(|e| e.into_inner());
            match s.mode {
                Mode::Steal => st.stolen += 1,
                Mode::Mirror => st.mirrored += 1,
            }
            *st.by_class.entry(s.status / 100).or_default() += 1;
            *st.by_pod.entry(s.pod.clone()).or_default() += 1;
            if s.failure.is_some() {
                st.failures += 1;
            }
        }
        println!("{}", line(SystemTime::now(), s));
    }

    /// A notification from a sidecar.
    pub fn event(&self, pod: &str, event: &Event) {
        let text = {
            let mut st = self.stats.lock().unwrap_or_else(|e| e.into_inner());
            match event {
                Event::LostToEarlierSession {
                    request_id,
                    method,
                    path,
                    winner,
                } => {
                    st.lost += 1;
                    format!(
                        "{pod}  {method} {path} (request {request_id}) matched, but session {winner} registered earlier and took it"
                    )
                }
                Event::MirrorDropped { count } => {
                    st.mirror_dropped += count;
                    format!(
                        "{pod}  {count} mirrored request(s) dropped: this session was not keeping up"
                    )
                }
            }
        };
        self.info(&text);
    }

    /// Requests served so far (stolen or mirrored).
    pub fn served(&self) -> u64 {
        let st = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        st.stolen + st.mirrored
    }

    /// The end-of-run summary.
    pub fn summary(&self) -> String {
        let st = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        let secs = self.started.elapsed().as_secs();
        let mut s = format!(
            "summary: {} stolen, {} mirrored in {}m{:02}s",
            st.stolen,
            st.mirrored,
            secs / 60,
            secs % 60
        );
        if st.stolen + st.mirrored > 0 {
            let classes: Vec<String> = st
                .by_class
                .iter()
                .map(|(c, n)| format!("{n}×{c}xx"))
                .collect();
            s += &format!(" ({})", classes.join(", "));
        }
        if st.failures > 0 {
            s += &format!("; {} not answered by the local app (502)", st.failures);
        }
        if st.lost > 0 {
            s += &format!("; {} taken by an earlier session", st.lost);
        }
        if st.mirror_dropped > 0 {
            s += &format!("; {} mirror copies dropped", st.mirror_dropped);
        }
        for (pod, n) in &st.by_pod {
            s += &format!("\n  {pod}: {n}");
        }
        s
    }
}

/// `10:04:05  pod/web-1  STOLEN  GET /api/x → 200  12ms`.
pub fn line(now: SystemTime, s: &Served) -> String {
    let mode = match s.mode {
        Mode::Steal => "stolen  ",
        Mode::Mirror => "mirrored",
    };
    let mut l = format!(
        "{}  {}  {mode}  {} {} → {}  {}ms",
        clock(now),
        s.pod,
        s.method,
        s.path,
        s.status,
        s.elapsed.as_millis()
    );
    if let Some(f) = &s.failure {
        l += &format!("  ({f})");
    }
    l
}

/// `HH:MM:SS` (UTC).
pub fn clock(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() % 86_400;
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// A filter as a person reads it.
pub fn describe(filter: Option<&HttpFilter>) -> String {
    fn go(f: &HttpFilter) -> String {
        let join = |v: &[HttpFilter], op: &str| {
            let parts: Vec<String> = v.iter().map(go).collect();
            format!("({})", parts.join(op))
        };
        match f {
            HttpFilter::Header(p) => format!("header ~ {p:?}"),
            HttpFilter::Path(p) => format!("path ~ {p:?}"),
            HttpFilter::Method(m) => format!("method {m}"),
            HttpFilter::Body(BodyFilter::Json { query, matches }) => {
                format!("JSON body {query} ~ {matches:?}")
            }
            HttpFilter::AllOf(v) => join(v, " and "),
            HttpFilter::AnyOf(v) => join(v, " or "),
        }
    }
    match filter {
        None => "every request".into(),
        Some(f) => go(f),
    }
}

/// What a session takes, port by port: `port 443: header ~ "x"; port 8443: every request`.
/// `ports` are the session's ports as the sidecar resolved them.
pub fn describe_ports(reg: &Registration, ports: &[u16]) -> String {
    let list = |ps: &[u16]| ps.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
    let (filtered, whole): (Vec<u16>, Vec<u16>) = match (&reg.filter, &reg.filter_ports) {
        (None, _) => (Vec::new(), ports.to_vec()),
        (Some(_), None) => (ports.to_vec(), Vec::new()),
        (Some(_), Some(fp)) => ports.iter().partition(|p| fp.contains(p)),
    };
    let mut parts = Vec::new();
    if !filtered.is_empty() {
        parts.push(format!(
            "port {}: {}",
            list(&filtered),
            describe(reg.filter.as_ref())
        ));
    }
    if !whole.is_empty() {
        parts.push(format!("port {}: every request", list(&whole)));
    }
    if parts.is_empty() {
        parts.push("no port".into());
    }
    let mut s = parts.join("; ");
    if reg.ports.is_empty() {
        s.push_str(" (every port of the pod's steal plan)");
    }
    s
}

/// What a run takes, before any session registered (`ports` may be empty: every port of each
/// pod's steal plan).
pub fn describe_start(reg: &Registration) -> String {
    if !reg.ports.is_empty() {
        return describe_ports(reg, &reg.ports);
    }
    let plan = "every port of the pod's steal plan";
    match (&reg.filter, &reg.filter_ports) {
        (None, _) => format!("every request on {plan}"),
        (Some(f), None) => format!("requests matching {} on {plan}", describe(Some(f))),
        (Some(f), Some(fp)) => {
            let fp: Vec<String> = fp.iter().map(u16::to_string).collect();
            format!(
                "requests matching {} on port {}, every request on the other ports of the pod's steal plan",
                describe(Some(f)),
                fp.join(",")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(status: u16, failure: Option<&str>) -> Served {
        Served {
            pod: "pod/web-1".into(),
            method: "GET".into(),
            path: "/api/x?y=1".into(),
            mode: Mode::Steal,
            status,
            elapsed: Duration::from_millis(12),
            failure: failure.map(Into::into),
        }
    }

    #[test]
    fn request_line_reads_well() {
        let t = UNIX_EPOCH + Duration::from_secs(86_400 * 3 + 3600 * 10 + 4 * 60 + 5);
        assert_eq!(
            line(t, &served(200, None)),
            "10:04:05  pod/web-1  stolen    GET /api/x?y=1 → 200  12ms"
        );
        assert!(line(t, &served(502, Some("local app down"))).ends_with("(local app down)"));
    }

    #[test]
    fn summary_counts() {
        let o = Output::default();
        o.request(&served(200, None));
        o.request(&served(502, Some("down")));
        o.event(
            "pod/web-1",
            &Event::LostToEarlierSession {
                request_id: 1,
                method: "GET".into(),
                path: "/".into(),
                winner: 2,
            },
        );
        let s = o.summary();
        assert!(s.starts_with("summary: 2 stolen, 0 mirrored"), "{s}");
        assert!(s.contains("1×2xx, 1×5xx"), "{s}");
        assert!(s.contains("1 not answered"), "{s}");
        assert!(s.contains("1 taken by an earlier session"), "{s}");
        assert!(s.contains("pod/web-1: 2"), "{s}");
    }

    #[test]
    fn filters_are_described() {
        let f = HttpFilter::AllOf(vec![
            HttpFilter::Header("x: 1".into()),
            HttpFilter::AnyOf(vec![
                HttpFilter::Method("GET".into()),
                HttpFilter::Path("/a".into()),
            ]),
        ]);
        assert_eq!(
            describe(Some(&f)),
            "(header ~ \"x: 1\" and (method GET or path ~ \"/a\"))"
        );
        assert_eq!(describe(None), "every request");
    }

    #[test]
    fn ports_are_described_with_what_each_takes() {
        let mut reg = Registration {
            ports: vec![],
            filter: Some(HttpFilter::Header("x".into())),
            filter_ports: Some(vec![443]),
            mode: Mode::Steal,
            client: String::new(),
        };
        assert_eq!(
            describe_ports(&reg, &[443, 8443]),
            "port 443: header ~ \"x\"; port 8443: every request (every port of the pod's steal plan)"
        );
        reg.ports = vec![443];
        reg.filter_ports = None;
        assert_eq!(describe_ports(&reg, &[443]), "port 443: header ~ \"x\"");
        reg.filter = None;
        assert_eq!(describe_ports(&reg, &[443]), "port 443: every request");
        let body = HttpFilter::Body(BodyFilter::Json {
            query: "$.id".into(),
            matches: "^7$".into(),
        });
        assert_eq!(describe(Some(&body)), "JSON body $.id ~ \"^7$\"");
    }

    #[test]
    fn the_start_line_says_which_ports() {
        let mut reg = Registration {
            ports: vec![],
            filter: None,
            filter_ports: None,
            mode: Mode::Steal,
            client: String::new(),
        };
        assert_eq!(
            describe_start(&reg),
            "every request on every port of the pod's steal plan"
        );
        reg.filter = Some(HttpFilter::Method("POST".into()));
        reg.filter_ports = Some(vec![443]);
        assert_eq!(
            describe_start(&reg),
            "requests matching method POST on port 443, every request on the other ports of the pod's steal plan"
        );
        reg.ports = vec![443];
        assert_eq!(describe_start(&reg), "port 443: method POST");
    }
}
