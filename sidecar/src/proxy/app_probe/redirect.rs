//! Following the app's redirects as the kubelet's probe client does (Go's `http.Client` with
//! the kubelet's redirect checker): 301, 302, 303, 307 and 308 with a `Location` are followed
//! while they stay on the probed host (the pod IP; another port or scheme counts as the same
//! host), and the status at the end decides. A redirect to another host is not followed: that
//! 3xx is the answer (a success, which the kubelet reports as a warning). The tenth request
//! answered with a redirect to follow fails the probe ("stopped after 10 redirects").
//!
//! `Location` is resolved against the request's URL as RFC 3986 §5.2 says (absolute,
//! scheme-relative, absolute-path and relative references; dot segments removed; fragment
//! dropped).

use std::net::{IpAddr, SocketAddr};

use http::StatusCode;
use http::uri::Authority;
use tls_steal_crds::probe::ProbeScheme;

use super::ProbeError;

/// Most requests one probe makes (Go's client stops after 10).
pub const MAX_REQUESTS: usize = 10;

/// Where a probe's request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub scheme: ProbeScheme,
    pub addr: SocketAddr,
    /// The URL's host as written, which Go sends as `Host`: `ip:port` for the probe itself (the
    /// kubelet writes the port), as the `Location` has it after an absolute redirect (`10.0.0.7`
    /// for `https://10.0.0.7/`).
    pub host: String,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Target {
    /// The probe's own target.
    pub fn probe(scheme: ProbeScheme, addr: SocketAddr, path: &str) -> Target {
        Target {
            scheme,
            addr,
            // `SocketAddr`'s display brackets IPv6 (`[fd00::1]:443`), as Go's `JoinHostPort`.
            host: addr.to_string(),
            path: match path.starts_with('/') {
                true => path.to_owned(),
                false => format!("/{path}"),
            },
        }
    }
}

/// What a redirect leads to.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Another request; `relative`: the `Location` named no host (a probe's own `Host` header
    /// is then kept, as Go keeps a request's custom host).
    Follow { target: Target, relative: bool },
    /// Another host: not followed.
    OtherHost,
}

/// Whether the kubelet's client follows `status` (given a `Location`).
pub fn followed(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// `location` resolved against `from`; `pod_ip` is the probed host.
pub fn next(from: &Target, location: &str, pod_ip: IpAddr) -> Result<Next, ProbeError> {
    let bad = |reason: &'static str| ProbeError::Redirect {
        location: location.to_owned(),
        reason,
    };
    let reference = location.split('#').next().unwrap_or_default();
    let (scheme, rest) = match scheme_of(reference) {
        Some((s, rest)) if s.eq_ignore_ascii_case("https") => (ProbeScheme::Https, Some(rest)),
        Some((s, rest)) if s.eq_ignore_ascii_case("http") => (ProbeScheme::Http, Some(rest)),
        Some(_) => return Err(bad("unsupported scheme")),
        None => (from.scheme, None),
    };
    // With a scheme the authority must follow; without, `//` starts one.
    let with_authority = match rest {
        Some(rest) => Some(
            rest.strip_prefix("//")
                .ok_or(bad("no host after the scheme"))?,
        ),
        None => reference.strip_prefix("//"),
    };
    let Some(after) = with_authority else {
        let path = resolve(&from.path, reference);
        return Ok(Next::Follow {
            target: Target {
                path,
                ..from.clone()
            },
            relative: true,
        });
    };
    let end = after.find(['/', '?']).unwrap_or(after.len());
    let authority: Authority = after[..end].parse().map_err(|_| bad("invalid host"))?;
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.parse::<IpAddr>().ok() != Some(pod_ip) {
        return Ok(Next::OtherHost);
    }
    let port = authority.port_u16().unwrap_or(match scheme {
        ProbeScheme::Http => 80,
        ProbeScheme::Https => 443,
    });
    let rest = &after[end..];
    let path = resolve("/", if rest.is_empty() { "/" } else { rest });
    Ok(Next::Follow {
        target: Target {
            scheme,
            addr: SocketAddr::new(pod_ip, port),
            host: authority.as_str().to_owned(),
            path,
        },
        relative: false,
    })
}

/// The scheme of an absolute reference and what follows its `:`.
fn scheme_of(reference: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = reference.split_once(':')?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some((scheme, rest))
}

/// A path reference (with its query, if any) resolved against `base` (a path and query).
fn resolve(base: &str, reference: &str) -> String {
    let (base_path, base_query) = match base.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (base, None),
    };
    let (ref_path, ref_query) = match reference.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (reference, None),
    };
    let (path, query) = if ref_path.is_empty() {
        (base_path.to_owned(), ref_query.or(base_query))
    } else if ref_path.starts_with('/') {
        (ref_path.to_owned(), ref_query)
    } else {
        let dir = &base_path[..base_path.rfind('/').map_or(0, |i| i + 1)];
        (format!("{dir}{ref_path}"), ref_query)
    };
    let path = remove_dot_segments(&path);
    match query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    }
}

/// RFC 3986 §5.2.4, for a path that starts with `/` (or is made to).
fn remove_dot_segments(path: &str) -> String {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut out: Vec<&str> = Vec::new();
    for (i, s) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *s {
            "." | ".." => {
                if *s == ".." {
                    out.pop();
                }
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 7));

    fn from(path: &str) -> Target {
        Target::probe(ProbeScheme::Https, SocketAddr::new(POD, 8443), path)
    }

    fn follow(location: &str) -> (Target, bool) {
        match next(&from("/a/b/c?x=1"), location, POD).unwrap() {
            Next::Follow { target, relative } => (target, relative),
            other => panic!("{location}: {other:?}"),
        }
    }

    #[test]
    fn relative_references_resolve_on_the_same_connection_target() {
        for (location, path) in [
            ("/healthz/", "/healthz/"),
            ("d", "/a/b/d"),
            ("./d?y=2", "/a/b/d?y=2"),
            ("../d", "/a/d"),
            ("../../../../d", "/d"),
            ("?y=2", "/a/b/c?y=2"),
            ("", "/a/b/c?x=1"),
            ("#frag", "/a/b/c?x=1"),
            ("/p/./q/../r#f", "/p/r"),
            ("..", "/a/"),
        ] {
            let (t, relative) = follow(location);
            assert_eq!(t.path, path, "{location}");
            assert_eq!(
                (t.addr, t.host.as_str(), t.scheme, relative),
                (from("").addr, "10.0.0.7:8443", ProbeScheme::Https, true)
            );
        }
    }

    #[test]
    fn absolute_references_to_the_pod_ip_follow_with_their_scheme_and_port() {
        let (t, relative) = follow("http://10.0.0.7:8080/up");
        assert_eq!(
            (t.scheme, t.addr, t.path.as_str(), relative),
            (
                ProbeScheme::Http,
                "10.0.0.7:8080".parse().unwrap(),
                "/up",
                false
            )
        );
        assert_eq!(t.host, "10.0.0.7:8080");
        // Go sends the host as the URL writes it: no port when the Location names none.
        let (t, _) = follow("HTTPS://10.0.0.7");
        assert_eq!((t.addr.port(), t.path.as_str()), (443, "/"));
        assert_eq!(t.host, "10.0.0.7");
        let (t, _) = follow("//10.0.0.7:9443?z");
        assert_eq!(
            (t.scheme, t.addr.port(), t.path.as_str()),
            (ProbeScheme::Https, 9443, "/?z")
        );
        let v6: IpAddr = "fd00::7".parse().unwrap();
        let t6 = Target::probe(ProbeScheme::Https, SocketAddr::new(v6, 443), "/");
        assert_eq!(t6.host, "[fd00::7]:443");
        assert!(matches!(
            next(&t6, "https://[fd00::7]:8443/x", v6).unwrap(),
            Next::Follow { target, .. } if target.addr.port() == 8443 && target.host == "[fd00::7]:8443"
        ));
    }

    #[test]
    fn other_hosts_are_not_followed_and_bad_locations_are_named() {
        for location in [
            "https://login.example/",
            "//10.0.0.8/x",
            "http://app.test:10.0.0.7/",
        ] {
            let got = next(&from("/"), location, POD);
            assert!(
                matches!(got, Ok(Next::OtherHost) | Err(_)),
                "{location}: {got:?}"
            );
        }
        assert_eq!(
            next(&from("/"), "https://login.example/", POD).unwrap(),
            Next::OtherHost
        );
        let e = next(&from("/"), "ftp://10.0.0.7/", POD).unwrap_err();
        assert!(e.to_string().contains("\"ftp://10.0.0.7/\""), "{e}");
        assert!(next(&from("/"), "https:/x", POD).is_err());
        assert!(
            followed(StatusCode::MOVED_PERMANENTLY) && followed(StatusCode::PERMANENT_REDIRECT)
        );
        assert!(!followed(StatusCode::NOT_MODIFIED) && !followed(StatusCode::MULTIPLE_CHOICES));
    }
}
