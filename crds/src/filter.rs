//! HTTP request filters in the mirrord model, so existing mirrord configs carry over:
//! `header` (regex, case-insensitive, against each `name: value` line), `path` (regex,
//! case-insensitive, against the path, and against path plus query), `method`, `body` (the body
//! as JSON: an RFC 9535 JSONPath query whose results a regex is matched against), and `all_of` /
//! `any_of` composites.
//!
//! Regexes are `fancy-regex`, so look-around works (`^User-Agent: (?!kube-probe)`). They are
//! compiled with an explicit backtracking limit ([`BACKTRACK_LIMIT`]): a regex that hits it on
//! some input counts as "no match" for that input, and the evaluation says so
//! ([`MatchNotes::regex_limit_hits`]) so the caller can count it.
//!
//! A body filter matches when at least one node the query selects matches the regex (strings
//! as they are, other values as compact JSON, as mirrord does; the regex is case-sensitive).
//! Queries may use mirrord's `typeof(@)` extension (`"null"`, `"bool"`, `"number"`, `"string"`,
//! `"array"`, `"object"`). A body that is absent (not read, not JSON, too large, too slow) makes
//! a body filter "no match".

use fancy_regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json_path::JsonPath;

/// Backtracking steps a fancy regex may take on one input before it counts as "no match". Far
/// above what the look-around patterns of real filters need on a header line or a path (a few
/// hundred), far below what would stall a proxy worker (a catastrophic pattern stops after a
/// millisecond or so per input).
pub const BACKTRACK_LIMIT: usize = 100_000;

/// A filter as sessions send it (JSON: `{"header": "x-steal: yes"}`, `{"all_of": [...]}`, ...).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpFilter {
    /// Matches when a `name: value` line of the request's headers matches (case-insensitive).
    Header(String),
    /// Matches when the path, or the path plus `?query`, matches (case-insensitive).
    Path(String),
    /// Matches when the method equals this (case-insensitive).
    Method(String),
    /// Matches on the request body (`{"body": {"json": {"query": "$.a", "matches": "^x"}}}`).
    Body(BodyFilter),
    /// Matches when every inner filter matches (an empty list matches everything).
    AllOf(Vec<HttpFilter>),
    /// Matches when at least one inner filter matches (an empty list matches nothing).
    AnyOf(Vec<HttpFilter>),
}

/// A filter on the request body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyFilter {
    /// The body parsed as JSON; `query` is an RFC 9535 JSONPath query, `matches` a regex.
    Json { query: String, matches: String },
}

/// A filter that does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: invalid {what} {pattern:?}: {reason}")]
pub struct FilterError {
    /// Where in the filter, e.g. `filter.all_of[1].header` or `filter.body.json.query`.
    pub field: String,
    /// `regex` or `JSONPath query`.
    pub what: &'static str,
    pub pattern: String,
    pub reason: String,
}

/// A compiled filter, ready to evaluate per request.
#[derive(Debug, Clone)]
pub enum CompiledFilter {
    Header(HeaderRegex),
    Path(Regex),
    Method(String),
    Body(CompiledBody),
    AllOf(Vec<CompiledFilter>),
    AnyOf(Vec<CompiledFilter>),
}

/// A compiled header filter: the regex, and the one header name a line must have for the
/// regex to have a chance, when the pattern says so (see [`anchored_name`]).
#[derive(Debug, Clone)]
pub struct HeaderRegex {
    re: Regex,
    name: Option<String>,
}

impl HeaderRegex {
    fn new(re: Regex, pattern: &str) -> Self {
        HeaderRegex {
            re,
            name: anchored_name(pattern).map(str::to_owned),
        }
    }

    /// Whether the line of header `name` cannot match, without running the regex.
    fn skips(&self, name: &str) -> bool {
        self.name
            .as_deref()
            .is_some_and(|n| name.is_ascii() && !name.eq_ignore_ascii_case(n))
    }
}

/// The header name of a pattern that starts `^NAME:` (NAME of letters, digits, `-` and `_`, the
/// `:` not quantified, no `|` anywhere), as mirrord's own examples (`^x-steal:`) do. Such a
/// pattern matches only the lines of that header (the line is `name: value`, and names hold no
/// `:`), so the other lines are skipped unread: a request carries a dozen headers and each
/// regex run costs hundreds of instructions. Any other pattern gives `None` (every line runs).
fn anchored_name(pattern: &str) -> Option<&str> {
    let rest = pattern.strip_prefix('^')?;
    if pattern.contains('|') {
        return None;
    }
    let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))?;
    let (name, after) = rest.split_at(end);
    let after = after.strip_prefix(':')?;
    let quantified = after.starts_with(['*', '?', '+', '{']);
    (!name.is_empty() && !quantified).then_some(name)
}

/// A compiled body filter.
#[derive(Debug, Clone)]
pub struct CompiledBody {
    query: JsonPath,
    matches: Regex,
}

/// What a filter looks at.
pub trait RequestView {
    fn method(&self) -> &str;
    /// The path without the query.
    fn path(&self) -> &str;
    /// The query without `?`, if any.
    fn query(&self) -> Option<&str>;
    /// Every header line, each as (name, value); a header present twice yields two lines.
    fn header_lines(&self) -> Box<dyn Iterator<Item = (&str, &[u8])> + '_>;
    /// The body as JSON, when it was read and is JSON.
    fn body_json(&self) -> Option<&Value> {
        None
    }
}

/// What an evaluation ran into besides its answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MatchNotes {
    /// Regex evaluations that hit [`BACKTRACK_LIMIT`] (each counted as "no match").
    pub regex_limit_hits: u32,
}

impl HttpFilter {
    /// Compiles every regex and query; the error names the position of the bad one.
    pub fn compile(&self) -> Result<CompiledFilter, FilterError> {
        self.compile_at("filter")
    }

    /// Whether the filter looks at the body anywhere.
    pub fn uses_body(&self) -> bool {
        match self {
            HttpFilter::Body(_) => true,
            HttpFilter::AllOf(v) | HttpFilter::AnyOf(v) => v.iter().any(HttpFilter::uses_body),
            _ => false,
        }
    }

    fn compile_at(&self, at: &str) -> Result<CompiledFilter, FilterError> {
        Ok(match self {
            HttpFilter::Header(p) => CompiledFilter::Header(HeaderRegex::new(
                regex(&format!("{at}.header"), p, true)?,
                p,
            )),
            HttpFilter::Path(p) => CompiledFilter::Path(regex(&format!("{at}.path"), p, true)?),
            HttpFilter::Method(m) => CompiledFilter::Method(m.to_ascii_uppercase()),
            HttpFilter::Body(BodyFilter::Json { query, matches }) => {
                let field = format!("{at}.body.json");
                let query = JsonPath::parse(query).map_err(|e| FilterError {
                    field: format!("{field}.query"),
                    what: "JSONPath query",
                    pattern: query.clone(),
                    reason: e.to_string(),
                })?;
                let matches = regex(&format!("{field}.matches"), matches, false)?;
                CompiledFilter::Body(CompiledBody { query, matches })
            }
            HttpFilter::AllOf(v) => CompiledFilter::AllOf(compile_all(v, &format!("{at}.all_of"))?),
            HttpFilter::AnyOf(v) => CompiledFilter::AnyOf(compile_all(v, &format!("{at}.any_of"))?),
        })
    }
}

fn regex(field: &str, pattern: &str, case_insensitive: bool) -> Result<Regex, FilterError> {
    RegexBuilder::new(pattern)
        .case_insensitive(case_insensitive)
        .backtrack_limit(BACKTRACK_LIMIT)
        .build()
        .map_err(|e| FilterError {
            field: field.to_owned(),
            what: "regex",
            pattern: pattern.into(),
            reason: e.to_string(),
        })
}

fn compile_all(filters: &[HttpFilter], at: &str) -> Result<Vec<CompiledFilter>, FilterError> {
    filters
        .iter()
        .enumerate()
        .map(|(i, f)| f.compile_at(&format!("{at}[{i}]")))
        .collect()
}

/// A regex match; an evaluation error (the backtracking limit) is "no match", noted.
fn hit(re: &Regex, s: &str, notes: &mut MatchNotes) -> bool {
    match re.is_match(s) {
        Ok(m) => m,
        Err(_) => {
            notes.regex_limit_hits += 1;
            false
        }
    }
}

impl CompiledFilter {
    pub fn matches(&self, req: &dyn RequestView) -> bool {
        self.eval(req, &mut MatchNotes::default())
    }

    /// As [`CompiledFilter::matches`], noting regex evaluations that hit the limit.
    pub fn eval(&self, req: &dyn RequestView, notes: &mut MatchNotes) -> bool {
        match self {
            CompiledFilter::Header(h) => {
                // One buffer for every `name: value` line: this runs for each request.
                let mut line = String::with_capacity(128);
                req.header_lines().any(|(name, value)| {
                    if h.skips(name) {
                        return false;
                    }
                    // mirrord matches only values `HeaderValue::to_str` accepts (visible ASCII
                    // and tab); a line with any other byte is not seen at all.
                    let Some(value) = visible_ascii(value) else {
                        return false;
                    };
                    line.clear();
                    line.push_str(name);
                    line.push_str(": ");
                    line.push_str(value);
                    hit(&h.re, &line, notes)
                })
            }
            CompiledFilter::Path(re) => {
                hit(re, req.path(), notes)
                    || req
                        .query()
                        .is_some_and(|q| hit(re, &format!("{}?{q}", req.path()), notes))
            }
            CompiledFilter::Method(m) => req.method().eq_ignore_ascii_case(m),
            CompiledFilter::Body(b) => req.body_json().is_some_and(|json| {
                b.query.query(json).all().into_iter().any(|v| match v {
                    Value::String(s) => hit(&b.matches, s, notes),
                    other => hit(&b.matches, &other.to_string(), notes),
                })
            }),
            CompiledFilter::AllOf(v) => v.iter().all(|f| f.eval(req, notes)),
            CompiledFilter::AnyOf(v) => v.iter().any(|f| f.eval(req, notes)),
        }
    }
}

/// `value` as text when every byte is visible ASCII or a tab, as `http::HeaderValue::to_str`
/// requires.
fn visible_ascii(value: &[u8]) -> Option<&str> {
    value
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
        .then(|| std::str::from_utf8(value).ok())
        .flatten()
}

/// mirrord's `typeof` function extension: the JSON type of the nodes, `"null"`, `"bool"`,
/// `"number"`, `"string"`, `"array"` or `"object"`; nothing when the nodes are of mixed types
/// (or none).
#[serde_json_path::function(name = "typeof")]
fn type_of(nodes: serde_json_path::functions::NodesType) -> serde_json_path::functions::ValueType {
    use serde_json_path::functions::ValueType;
    let name = |v: &Value| match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let mut names = nodes.iter().map(|v| name(v));
    match names.next() {
        Some(first) if names.all(|n| n == first) => ValueType::Value(Value::String(first.into())),
        _ => ValueType::Nothing,
    }
}

#[cfg(test)]
mod tests;
