//! HTTP request filters in the mirrord model, so existing mirrord configs carry over:
//! `header` (regex, case-insensitive, against each `name: value` line), `path` (regex against the
//! path, and against path plus query), `method`, and `all_of` / `any_of` composites.
//!
//! Regexes are `fancy-regex`, so look-around works (`^User-Agent: (?!kube-probe)`). A regex that
//! hits the backtracking limit on some input counts as "no match" for that input.

use fancy_regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

/// A filter as sessions send it (JSON: `{"header": "x-steal: yes"}`, `{"all_of": [...]}`, ...).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpFilter {
    /// Matches when a `name: value` line of the request's headers matches (case-insensitive).
    Header(String),
    /// Matches when the path, or the path plus `?query`, matches.
    Path(String),
    /// Matches when the method equals this (case-insensitive).
    Method(String),
    /// Matches when every inner filter matches (an empty list matches everything).
    AllOf(Vec<HttpFilter>),
    /// Matches when at least one inner filter matches (an empty list matches nothing).
    AnyOf(Vec<HttpFilter>),
}

/// A filter that does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: invalid regex {pattern:?}: {reason}")]
pub struct FilterError {
    /// Where in the filter, e.g. `filter.all_of[1].header`.
    pub field: String,
    pub pattern: String,
    pub reason: String,
}

/// A compiled filter, ready to evaluate per request.
#[derive(Debug, Clone)]
pub enum CompiledFilter {
    Header(Regex),
    Path(Regex),
    Method(String),
    AllOf(Vec<CompiledFilter>),
    AnyOf(Vec<CompiledFilter>),
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
}

impl HttpFilter {
    /// Compiles every regex; the error names the position of the bad one.
    pub fn compile(&self) -> Result<CompiledFilter, FilterError> {
        self.compile_at("filter")
    }

    fn compile_at(&self, at: &str) -> Result<CompiledFilter, FilterError> {
        let regex = |field: &str, pattern: &str, case_insensitive: bool| {
            RegexBuilder::new(pattern)
                .case_insensitive(case_insensitive)
                .build()
                .map_err(|e| FilterError {
                    field: format!("{at}.{field}"),
                    pattern: pattern.into(),
                    reason: e.to_string(),
                })
        };
        Ok(match self {
            HttpFilter::Header(p) => CompiledFilter::Header(regex("header", p, true)?),
            HttpFilter::Path(p) => CompiledFilter::Path(regex("path", p, false)?),
            HttpFilter::Method(m) => CompiledFilter::Method(m.to_ascii_uppercase()),
            HttpFilter::AllOf(v) => CompiledFilter::AllOf(compile_all(v, &format!("{at}.all_of"))?),
            HttpFilter::AnyOf(v) => CompiledFilter::AnyOf(compile_all(v, &format!("{at}.any_of"))?),
        })
    }
}

fn compile_all(filters: &[HttpFilter], at: &str) -> Result<Vec<CompiledFilter>, FilterError> {
    filters
        .iter()
        .enumerate()
        .map(|(i, f)| f.compile_at(&format!("{at}[{i}]")))
        .collect()
}

impl CompiledFilter {
    pub fn matches(&self, req: &dyn RequestView) -> bool {
        let hit = |re: &Regex, s: &str| re.is_match(s).unwrap_or(false);
        match self {
            CompiledFilter::Header(re) => {
                // One buffer for every `name: value` line: this runs for each request.
                let mut line = String::with_capacity(128);
                req.header_lines().any(|(name, value)| {
                    line.clear();
                    line.push_str(name);
                    line.push_str(": ");
                    line.push_str(&String::from_utf8_lossy(value));
                    hit(re, &line)
                })
            }
            CompiledFilter::Path(re) => {
                hit(re, req.path())
                    || req
                        .query()
                        .is_some_and(|q| hit(re, &format!("{}?{q}", req.path())))
            }
            CompiledFilter::Method(m) => req.method().eq_ignore_ascii_case(m),
            CompiledFilter::AllOf(v) => v.iter().all(|f| f.matches(req)),
            CompiledFilter::AnyOf(v) => v.iter().any(|f| f.matches(req)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Req {
        method: &'static str,
        path: &'static str,
        query: Option<&'static str>,
        headers: Vec<(&'static str, &'static str)>,
    }

    impl RequestView for Req {
        fn method(&self) -> &str {
            self.method
        }
        fn path(&self) -> &str {
            self.path
        }
        fn query(&self) -> Option<&str> {
            self.query
        }
        fn header_lines(&self) -> Box<dyn Iterator<Item = (&str, &[u8])> + '_> {
            Box::new(self.headers.iter().map(|(n, v)| (*n, v.as_bytes())))
        }
    }

    fn req(headers: &[(&'static str, &'static str)]) -> Req {
        Req {
            method: "GET",
            path: "/api/users",
            query: Some("id=7&debug=1"),
            headers: headers.to_vec(),
        }
    }

    fn m(f: HttpFilter, r: &Req) -> bool {
        f.compile().unwrap().matches(r)
    }

    #[test]
    fn header_is_case_insensitive_per_line() {
        let r = req(&[("x-steal", "yes"), ("user-agent", "curl/8")]);
        assert!(m(HttpFilter::Header("^X-Steal: YES$".into()), &r));
        assert!(!m(HttpFilter::Header("^x-steal: no$".into()), &r));
        // Lines are matched one at a time, never joined.
        assert!(!m(HttpFilter::Header("yes.*curl".into()), &r));
    }

    #[test]
    fn header_present_twice_matches_either_value() {
        let r = req(&[("x-tenant", "a"), ("x-tenant", "b")]);
        assert!(m(HttpFilter::Header("^x-tenant: b$".into()), &r));
        assert!(m(HttpFilter::Header("^x-tenant: a$".into()), &r));
    }

    #[test]
    fn lookaround_works() {
        let f = HttpFilter::Header("^User-Agent: (?!kube-probe)".into());
        assert!(m(f.clone(), &req(&[("user-agent", "curl/8")])));
        assert!(!m(f, &req(&[("user-agent", "kube-probe/1.33")])));
    }

    #[test]
    fn path_with_and_without_query() {
        let r = req(&[]);
        assert!(m(HttpFilter::Path("^/api/users$".into()), &r));
        assert!(m(HttpFilter::Path("debug=1".into()), &r));
        assert!(
            !m(HttpFilter::Path("^/API".into()), &r),
            "paths are case-sensitive"
        );
    }

    #[test]
    fn method_and_composites() {
        let r = req(&[("x-a", "1")]);
        assert!(m(HttpFilter::Method("get".into()), &r));
        assert!(!m(HttpFilter::Method("POST".into()), &r));
        let both = HttpFilter::AllOf(vec![
            HttpFilter::Method("GET".into()),
            HttpFilter::Header("x-a: 1".into()),
        ]);
        assert!(m(both, &r));
        let all_fail = HttpFilter::AllOf(vec![
            HttpFilter::Method("GET".into()),
            HttpFilter::Header("x-b".into()),
        ]);
        assert!(!m(all_fail, &r));
        let any = HttpFilter::AnyOf(vec![
            HttpFilter::Method("PUT".into()),
            HttpFilter::Path("users".into()),
        ]);
        assert!(m(any, &r));
        assert!(m(HttpFilter::AllOf(vec![]), &r));
        assert!(!m(HttpFilter::AnyOf(vec![]), &r));
    }

    #[test]
    fn invalid_regex_names_its_position() {
        let f = HttpFilter::AllOf(vec![
            HttpFilter::Method("GET".into()),
            HttpFilter::Header("x-(".into()),
        ]);
        let e = f.compile().unwrap_err();
        assert_eq!(e.field, "filter.all_of[1].header");
        assert!(e.to_string().contains("invalid regex \"x-(\""), "{e}");
    }

    #[test]
    fn wire_format_is_mirrord_like() {
        let f: HttpFilter =
            serde_json::from_str(r#"{"any_of":[{"header":"a"},{"path":"/b"},{"method":"GET"}]}"#)
                .unwrap();
        assert_eq!(
            f,
            HttpFilter::AnyOf(vec![
                HttpFilter::Header("a".into()),
                HttpFilter::Path("/b".into()),
                HttpFilter::Method("GET".into())
            ])
        );
    }
}
