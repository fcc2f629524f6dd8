use super::*;

struct Req {
    method: &'static str,
    path: &'static str,
    query: Option<&'static str>,
    headers: Vec<(&'static str, &'static str)>,
    body: Option<Value>,
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
    fn body_json(&self) -> Option<&Value> {
        self.body.as_ref()
    }
}

fn req(headers: &[(&'static str, &'static str)]) -> Req {
    Req {
        method: "GET",
        path: "/api/users",
        query: Some("id=7&debug=1"),
        headers: headers.to_vec(),
        body: None,
    }
}

fn with_body(body: Value) -> Req {
    Req {
        body: Some(body),
        ..req(&[])
    }
}

fn m(f: HttpFilter, r: &Req) -> bool {
    f.compile().unwrap().matches(r)
}

fn json_filter(query: &str, matches: &str) -> HttpFilter {
    HttpFilter::Body(BodyFilter::Json {
        query: query.into(),
        matches: matches.into(),
    })
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
fn header_values_beyond_visible_ascii_are_not_seen() {
    // As mirrord: a value `HeaderValue::to_str` refuses (UTF-8, other control bytes) takes its
    // line out of the match, whichever way the pattern is written; tabs are kept.
    let r = req(&[("x-user", "Zo\u{eb}"), ("x-tab", "a\tb")]);
    assert!(!m(HttpFilter::Header("^x-user:".into()), &r));
    assert!(!m(HttpFilter::Header("^x-user: (?!alice)".into()), &r));
    assert!(!m(HttpFilter::Header("zo".into()), &r));
    assert!(m(HttpFilter::Header("^x-tab: a\tb$".into()), &r));
    assert_eq!(visible_ascii(b"ok \t~"), Some("ok \t~"));
    assert_eq!(visible_ascii(b"a\x7f"), None);
    assert_eq!(visible_ascii(b"a\x01"), None);
}

#[test]
fn lookaround_works() {
    let f = HttpFilter::Header("^User-Agent: (?!kube-probe)".into());
    assert!(m(f.clone(), &req(&[("user-agent", "curl/8")])));
    assert!(!m(f, &req(&[("user-agent", "kube-probe/1.33")])));
}

#[test]
fn path_with_and_without_query_case_insensitive() {
    let r = req(&[]);
    assert!(m(HttpFilter::Path("^/api/users$".into()), &r));
    assert!(m(HttpFilter::Path("debug=1".into()), &r));
    assert!(
        m(HttpFilter::Path("^/API/Users".into()), &r),
        "as mirrord: case-insensitive"
    );
    assert!(m(HttpFilter::Path("DEBUG=1$".into()), &r));
    assert!(!m(HttpFilter::Path("^/apis".into()), &r));
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
fn body_filter_matches_query_results() {
    let body = serde_json::json!({
        "user": {"id": 42, "name": "Ada"},
        "books": [1111, "2222", 4444, true, null, {"k": "v"}]
    });
    let r = with_body(body);
    assert!(m(json_filter("$.user.name", "^Ada$"), &r));
    assert!(
        !m(json_filter("$.user.name", "^ada$"), &r),
        "the body regex is case-sensitive"
    );
    assert!(
        m(json_filter("$.user.id", "^42$"), &r),
        "numbers as JSON text"
    );
    assert!(m(json_filter("$.books[*]", "^true$"), &r));
    assert!(m(json_filter("$.books[*]", "^null$"), &r));
    assert!(
        m(json_filter("$.books[5]", r#"^\{"k":"v"\}$"#), &r),
        "objects as compact JSON"
    );
    assert!(!m(json_filter("$.missing", ".*"), &r), "no node, no match");
    // mirrord's typeof extension: only numbers ending in 4.
    assert!(m(
        json_filter("$.books[?(typeof(@) == 'number')]", "4$"),
        &r
    ));
    assert!(!m(
        json_filter("$.books[?(typeof(@) == 'string')]", "4$"),
        &r
    ));
    assert!(m(
        json_filter("$.books[?(typeof(@) == 'string')]", "^2222$"),
        &r
    ));
    // Standard RFC 9535 functions too.
    assert!(m(json_filter("$.books[?search(@, '^22')]", "2"), &r));
}

#[test]
fn body_filter_without_a_json_body_does_not_match() {
    let f = json_filter("$.a", ".*");
    assert!(!m(f.clone(), &req(&[])));
    let inside = HttpFilter::AnyOf(vec![f.clone(), HttpFilter::Method("GET".into())]);
    assert!(m(inside, &req(&[])), "other items still decide");
    assert!(!m(
        HttpFilter::AllOf(vec![f, HttpFilter::Method("GET".into())]),
        &req(&[])
    ));
}

#[test]
fn uses_body_sees_nested_body_filters() {
    assert!(!HttpFilter::Header("a".into()).uses_body());
    assert!(json_filter("$", "a").uses_body());
    assert!(
        HttpFilter::AllOf(vec![
            HttpFilter::Method("POST".into()),
            HttpFilter::AnyOf(vec![json_filter("$", "a")])
        ])
        .uses_body()
    );
}

#[test]
fn invalid_regex_and_query_name_their_position() {
    let f = HttpFilter::AllOf(vec![
        HttpFilter::Method("GET".into()),
        HttpFilter::Header("x-(".into()),
    ]);
    let e = f.compile().unwrap_err();
    assert_eq!(e.field, "filter.all_of[1].header");
    assert!(e.to_string().contains("invalid regex \"x-(\""), "{e}");
    let e = HttpFilter::AnyOf(vec![json_filter("$.a[", "x")])
        .compile()
        .unwrap_err();
    assert_eq!(e.field, "filter.any_of[0].body.json.query");
    assert!(
        e.to_string().contains("invalid JSONPath query \"$.a[\""),
        "{e}"
    );
    let e = json_filter("$.a", "(").compile().unwrap_err();
    assert_eq!(e.field, "filter.body.json.matches");
    // Not JSONPath at all (no leading `$`).
    assert!(json_filter("user.id", "x").compile().is_err());
}

#[test]
fn a_catastrophic_regex_stops_at_the_limit_and_is_noted() {
    // A backreference keeps this on fancy-regex's backtracking engine; on a long run of `a`s
    // without the final `b` it would take exponential time.
    let f = HttpFilter::Header("^x: (a|aa)+\\1b".into())
        .compile()
        .unwrap();
    let line = "a".repeat(64);
    let r = Req {
        headers: vec![("x", Box::leak(line.into_boxed_str()))],
        ..req(&[])
    };
    let mut notes = MatchNotes::default();
    assert!(!f.eval(&r, &mut notes));
    assert_eq!(notes.regex_limit_hits, 1);
    // The same pattern on an input it matches quickly still matches.
    let ok = Req {
        headers: vec![("x", "aab")],
        ..req(&[])
    };
    let mut notes = MatchNotes::default();
    assert!(f.eval(&ok, &mut notes));
    assert_eq!(notes.regex_limit_hits, 0);
}

#[test]
fn wire_format_is_mirrord_like() {
    let f: HttpFilter = serde_json::from_str(
            r#"{"any_of":[{"header":"a"},{"path":"/b"},{"method":"GET"},{"body":{"json":{"query":"$.a","matches":"x"}}}]}"#,
        )
        .unwrap();
    assert_eq!(
        f,
        HttpFilter::AnyOf(vec![
            HttpFilter::Header("a".into()),
            HttpFilter::Path("/b".into()),
            HttpFilter::Method("GET".into()),
            json_filter("$.a", "x"),
        ])
    );
}

#[test]
fn only_patterns_that_pin_one_header_name_skip_lines() {
    assert_eq!(anchored_name("^x-steal:"), Some("x-steal"));
    assert_eq!(anchored_name("^X-Steal: YES$"), Some("X-Steal"));
    assert_eq!(
        anchored_name("^User-Agent: (?!kube-probe)"),
        Some("User-Agent")
    );
    for p in [
        "x-steal:",
        "^x-steal",
        "^x-steal:?",
        "^x-steal:*",
        "^x-steal:+",
        "^x-steal:{0,1}",
        "^x-a:|^x-b:",
        "^x\\-steal:",
        "^x.steal:",
        "^:",
        "^x-steal :",
        "(?i)^x-steal:",
        "^(x-steal):",
    ] {
        assert_eq!(anchored_name(p), None, "{p}");
    }
}

#[test]
fn skipping_lines_by_name_never_changes_an_answer() {
    let patterns = [
        "^x-steal:",
        "^X-Steal: YES$",
        "^x-steal: (?!no)",
        "^x-steal:?",
        "^x-a:|^x-b:",
        "^user-agent: curl",
        "x-steal: yes",
    ];
    let requests = [
        req(&[("x-steal", "yes"), ("user-agent", "curl/8")]),
        req(&[("X-STEAL", "yes")]),
        req(&[("x-stealer", "yes"), ("accept", "x-steal: yes")]),
        req(&[("x-b", "1"), ("x-steal", "no")]),
        // Not a name hyper would give, but a view may: the regex decides (`ſ` folds to `s`).
        req(&[("x-ſteal", "yes")]),
        req(&[]),
    ];
    for p in patterns {
        let fast = HttpFilter::Header(p.into()).compile().unwrap();
        let every_line = regex("t", p, true).unwrap();
        for r in &requests {
            let want = r
                .headers
                .iter()
                .any(|(n, v)| every_line.is_match(&format!("{n}: {v}")).unwrap());
            assert_eq!(fast.matches(r), want, "{p} on {:?}", r.headers);
        }
    }
}
