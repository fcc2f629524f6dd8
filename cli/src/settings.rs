//! Flags over the mirrord config: what to register with the sidecar and how to deliver.
//!
//! Filter flags combine with all-of (`--any`: any-of); a single one is sent as is; none means the
//! whole port. Any filter flag replaces the file's filter as a whole (the file's
//! `http_filter.ports`, which ports a filter applies to, stays); every other flag overrides just
//! its own setting. No port anywhere means every port of the pod's steal plan (the sidecar
//! resolves it at registration and says which). A config file that does not set `mode` mirrors,
//! as mirrord does.
//!
//! Delivery settings are checked here, before any session starts, as mirrord checks them: with
//! `tls`, `server_cert` and `trust_roots` exclude each other, `trust_roots` may not be an empty
//! list and `server_name` must be a DNS name or an IP address; with `tcp` they are ignored.

use std::fmt;
use std::path::PathBuf;

use rustls_pki_types::ServerName;
use tls_steal_crds::filter::HttpFilter;
use tls_steal_crds::session::{Mode, Registration};

use crate::args::{Args, DeliveryProtocol};
use crate::mirrord_config::{MirrordConfig, SECTION};

/// Everything a run needs besides where the sidecars are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub registration: Registration,
    pub delivery: DeliverySettings,
    pub warnings: Vec<String>,
    /// Information worth a line (not a problem).
    pub notes: Vec<String>,
}

/// How stolen requests reach the local app.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliverySettings {
    pub protocol: DeliveryProtocol,
    /// `None`: 127.0.0.1 and the port the request was sent to in the pod (or its
    /// `port_mapping` local port).
    pub to: Option<LocalAddr>,
    /// `port_mapping`: (local, remote) pairs, used without `to`.
    pub port_mapping: Vec<(u16, u16)>,
    /// SNI toward the local app; `None`: the server certificate's first name, else the original
    /// client's SNI, else the request's host.
    pub server_name: Option<String>,
    pub trust_roots: Vec<PathBuf>,
    /// The local app's certificate (chain), used as its trust anchor.
    pub server_cert: Option<PathBuf>,
}

/// `--to`: host (name or IP) and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAddr {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for LocalAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl std::str::FromStr for LocalAddr {
    type Err = SettingsError;

    /// `PORT`, `HOST:PORT` or `[IPV6]:PORT`.
    fn from_str(s: &str) -> Result<Self, SettingsError> {
        let bad = || SettingsError::BadTo(s.to_string());
        let port = |p: &str| p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(bad);
        if let Ok(p) = s.parse::<u16>() {
            return Ok(LocalAddr {
                host: "127.0.0.1".into(),
                port: port(&p.to_string())?,
            });
        }
        let (host, p) = if let Some(rest) = s.strip_prefix('[') {
            let (h, p) = rest.split_once("]:").ok_or_else(bad)?;
            (h, p)
        } else {
            s.rsplit_once(':').ok_or_else(bad)?
        };
        if host.is_empty() {
            return Err(bad());
        }
        Ok(LocalAddr {
            host: host.to_string(),
            port: port(p)?,
        })
    }
}

/// The flags and the file do not make a usable session.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("--port 0 is not a port")]
    ZeroPort,
    #[error("--to {0:?}: expected PORT, HOST:PORT or [IPV6]:PORT")]
    BadTo(String),
    #[error("{flag} {pattern:?}: invalid regex: {reason}")]
    BadRegex {
        flag: &'static str,
        pattern: String,
        reason: String,
    },
    #[error("--method {0:?} is not an HTTP method")]
    BadMethod(String),
    #[error("{0} and {1} cannot be used together: the server certificate is the trust anchor")]
    CertAndRoots(String, String),
    #[error("{0}: cannot be an empty list")]
    EmptyTrustRoots(String),
    #[error("{from} {name:?}: must be a valid DNS name or an IP address")]
    BadServerName { from: String, name: String },
}

/// The filter the flags ask for, `None` when no filter flag is given.
pub fn flag_filter(args: &Args) -> Result<Option<HttpFilter>, SettingsError> {
    let mut items = Vec::new();
    for (flag, patterns, make) in [
        (
            "--header",
            &args.headers,
            HttpFilter::Header as fn(String) -> HttpFilter,
        ),
        ("--path", &args.paths, HttpFilter::Path),
    ] {
        for p in patterns {
            let f = make(p.clone());
            f.compile().map_err(|e| SettingsError::BadRegex {
                flag,
                pattern: p.clone(),
                reason: e.reason,
            })?;
            items.push(f);
        }
    }
    for m in &args.methods {
        let upper = m.to_ascii_uppercase();
        if m.is_empty() || http::Method::from_bytes(upper.as_bytes()).is_err() {
            return Err(SettingsError::BadMethod(m.clone()));
        }
        items.push(HttpFilter::Method(upper));
    }
    Ok(match items.len() {
        0 => None,
        1 => items.pop(),
        _ if args.any => Some(HttpFilter::AnyOf(items)),
        _ => Some(HttpFilter::AllOf(items)),
    })
}

/// Merges the flags over the file (if any).
pub fn resolve(args: &Args, file: Option<MirrordConfig>) -> Result<Settings, SettingsError> {
    let from_file = file.is_some();
    let file = file.unwrap_or_default().incoming;
    let mut warnings = file.warnings.clone();
    let mut notes = Vec::new();
    let flags = flag_filter(args)?;
    if args.any && flags.is_none() {
        warnings.push("--any has no effect without --header, --path or --method".into());
    }
    let filter = if flags.is_some() { flags } else { file.filter };
    let ports = if args.ports.is_empty() {
        file.ports.unwrap_or_default()
    } else {
        args.ports.clone()
    };
    if ports.contains(&0) {
        return Err(SettingsError::ZeroPort);
    }
    let filter_ports = match (&filter, file.filter_ports) {
        (_, None) => None,
        (None, Some(_)) => {
            warnings.push(format!(
                "{SECTION}.http_filter.ports has no effect without a filter (every request of the stolen ports is taken)"
            ));
            None
        }
        (Some(_), Some(fp)) => {
            let outside: Vec<String> = fp
                .iter()
                .filter(|p| !ports.is_empty() && !ports.contains(p))
                .map(u16::to_string)
                .collect();
            if !outside.is_empty() {
                warnings.push(format!(
                    "{SECTION}.http_filter.ports names port(s) {} that are not stolen; no effect there",
                    outside.join(", ")
                ));
            }
            Some(fp)
        }
    };
    let mode = match (args.mode, file.mode) {
        (Some(m), _) => m.into(),
        (None, Some(m)) => m,
        (None, None) if from_file => {
            notes.push(format!(
                "{SECTION}.mode is not set in the config file: mirroring (mirrord's default); use --mode steal or mode: steal to steal"
            ));
            Mode::Mirror
        }
        (None, None) => Mode::Steal,
    };
    let d = file.delivery;
    let file_key = |name: &str| format!("{}.{name}", d.key);
    let delivery = DeliverySettings {
        protocol: args.delivery.or(d.protocol).unwrap_or_default(),
        to: args.to.as_deref().map(str::parse).transpose()?,
        port_mapping: file.port_mapping,
        server_name: args.server_name.clone().or(d.server_name.clone()),
        trust_roots: if args.trust_roots.is_empty() {
            d.trust_roots.clone().unwrap_or_default()
        } else {
            args.trust_roots.clone()
        },
        server_cert: args.server_cert.clone().or(d.server_cert.clone()),
    };
    if delivery.to.is_some() && !delivery.port_mapping.is_empty() {
        warnings.push(format!("--to is given: {SECTION}.port_mapping is not used"));
    }
    match delivery.protocol {
        DeliveryProtocol::Tcp => {
            if delivery.server_name.is_some()
                || !delivery.trust_roots.is_empty()
                || delivery.server_cert.is_some()
            {
                warnings.push(
                    "TLS settings (server name, trust roots, server cert) are ignored with --delivery tcp"
                        .into(),
                );
            }
        }
        DeliveryProtocol::Tls => {
            let roots_from = if args.trust_roots.is_empty() {
                file_key("trust_roots")
            } else {
                "--trust-root".into()
            };
            let cert_from = if args.server_cert.is_some() {
                "--server-cert".into()
            } else {
                file_key("server_cert")
            };
            if args.trust_roots.is_empty() && d.trust_roots.as_ref().is_some_and(Vec::is_empty) {
                return Err(SettingsError::EmptyTrustRoots(roots_from));
            }
            if delivery.server_cert.is_some() && !delivery.trust_roots.is_empty() {
                return Err(SettingsError::CertAndRoots(cert_from, roots_from));
            }
            if let Some(name) = &delivery.server_name
                && ServerName::try_from(name.as_str()).is_err()
            {
                let from = if args.server_name.is_some() {
                    "--server-name".into()
                } else {
                    file_key("server_name")
                };
                return Err(SettingsError::BadServerName {
                    from,
                    name: name.clone(),
                });
            }
        }
    }
    Ok(Settings {
        registration: Registration {
            ports,
            filter,
            filter_ports,
            mode,
            client: args.client.clone().unwrap_or_else(default_client),
        },
        delivery,
        warnings,
        notes,
    })
}

/// `$USER@$HOSTNAME`.
fn default_client() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "someone".into());
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{user}@{host}")
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::mirrord_config::{Format, parse};

    fn args(flags: &[&str]) -> Args {
        let mut v = vec!["kubectl-steal", "deploy/web", "--client", "t"];
        v.extend_from_slice(flags);
        Args::try_parse_from(v).unwrap()
    }

    fn settings(flags: &[&str], file: Option<&str>) -> Settings {
        let file = file.map(|f| {
            let format = if f.trim_start().starts_with('{') {
                Format::Json
            } else {
                Format::Yaml
            };
            parse(f, format).unwrap()
        });
        resolve(&args(flags), file).unwrap()
    }

    #[test]
    fn filter_flags_combine_all_of_by_default() {
        let f = flag_filter(&args(&[
            "--header", "a", "--path", "^/b", "--method", "post",
        ]))
        .unwrap();
        assert_eq!(
            f,
            Some(HttpFilter::AllOf(vec![
                HttpFilter::Header("a".into()),
                HttpFilter::Path("^/b".into()),
                HttpFilter::Method("POST".into()),
            ]))
        );
    }

    #[test]
    fn any_makes_it_any_of() {
        let f = flag_filter(&args(&["--header", "a", "--header", "b", "--any"])).unwrap();
        assert_eq!(
            f,
            Some(HttpFilter::AnyOf(vec![
                HttpFilter::Header("a".into()),
                HttpFilter::Header("b".into()),
            ]))
        );
    }

    #[test]
    fn one_flag_is_sent_alone_and_none_is_the_whole_port() {
        assert_eq!(
            flag_filter(&args(&["--path", "^/x"])).unwrap(),
            Some(HttpFilter::Path("^/x".into()))
        );
        assert_eq!(flag_filter(&args(&[])).unwrap(), None);
        let s = settings(&["--port", "443", "--any"], None);
        assert_eq!(s.registration.filter, None);
        assert!(s.warnings[0].contains("--any has no effect"));
    }

    #[test]
    fn bad_flags_are_explained() {
        let e = resolve(&args(&["--port", "443", "--header", "x-("]), None).unwrap_err();
        assert!(
            e.to_string().starts_with("--header \"x-(\": invalid regex"),
            "{e}"
        );
        let e = resolve(&args(&["--port", "1", "--to", "a:b"]), None).unwrap_err();
        assert!(matches!(e, SettingsError::BadTo(_)), "{e}");
        let e = resolve(&args(&["--port", "1", "--method", "GE T"]), None).unwrap_err();
        assert!(matches!(e, SettingsError::BadMethod(_)), "{e}");
        let e = resolve(&args(&["--port", "0"]), None).unwrap_err();
        assert!(matches!(e, SettingsError::ZeroPort), "{e}");
    }

    #[test]
    fn no_port_anywhere_means_every_port_of_the_plan() {
        let s = settings(&["--header", "a"], None);
        assert!(s.registration.ports.is_empty());
        assert_eq!(s.registration.mode, Mode::Steal, "no file: steal");
    }

    #[test]
    fn local_addr_spellings() {
        let p = |s: &str| s.parse::<LocalAddr>().map(|a| a.to_string());
        assert_eq!(p("8443").unwrap(), "127.0.0.1:8443");
        assert_eq!(p("localhost:8443").unwrap(), "localhost:8443");
        assert_eq!(p("[::1]:8443").unwrap(), "[::1]:8443");
        assert!(p("localhost").is_err());
        assert!(p(":80").is_err());
        assert!(p("x:0").is_err());
    }

    const JSON: &str = r#"{"feature": {"network": {"incoming": {
        "mode": "mirror",
        "http_filter": {"all_of": [{"header": "^x-steal: yes$"}, {"path": "^/api"}]},
        "ports": [443],
        "tls_delivery": {"protocol": "tls", "server_name": "app.local", "trust_roots": ["/r1.pem", "/r2.pem"]}
    }}}}"#;

    const YAML: &str = "
feature:
  network:
    incoming:
      mode: mirror
      http_filter:
        all_of:
          - header: '^x-steal: yes$'
          - path: ^/api
      ports: [443]
      tls_delivery:
        protocol: tls
        server_name: app.local
        trust_roots: [/r1.pem, /r2.pem]
";

    const FLAGS: &[&str] = &[
        "--mode",
        "mirror",
        "--header",
        "^x-steal: yes$",
        "--path",
        "^/api",
        "--port",
        "443",
        "--delivery",
        "tls",
        "--server-name",
        "app.local",
        "--trust-root",
        "/r1.pem",
        "--trust-root",
        "/r2.pem",
    ];

    #[test]
    fn config_file_equals_the_equivalent_flags() {
        let from_flags = settings(FLAGS, None);
        assert_eq!(settings(&[], Some(JSON)), from_flags);
        assert_eq!(settings(&[], Some(YAML)), from_flags);
        assert_eq!(from_flags.registration.mode, Mode::Mirror);
        assert_eq!(from_flags.delivery.trust_roots.len(), 2);
    }

    #[test]
    fn any_of_config_equals_any_flag() {
        let file = r#"{"feature":{"network":{"incoming":{"mode":"steal","http_filter":{"any_of":[{"header":"a"},{"method":"GET"}]},"ports":[8443],"tls_delivery":{"protocol":"tcp"}}}}}"#;
        let flags = settings(
            &[
                "--header",
                "a",
                "--method",
                "GET",
                "--any",
                "--port",
                "8443",
                "--delivery",
                "tcp",
            ],
            None,
        );
        assert_eq!(settings(&[], Some(file)), flags);
    }

    #[test]
    fn http_filter_ports_say_where_the_filter_applies() {
        let file = r#"{"feature":{"network":{"incoming":{"mode":"steal","http_filter":{"header_filter":"a","ports":[443]}}}}}"#;
        let s = settings(&[], Some(file));
        assert!(s.registration.ports.is_empty(), "every port of the plan");
        assert_eq!(s.registration.filter_ports, Some(vec![443]));
        // Filter flags replace the filter; where it applies stays the file's.
        let s = settings(
            &["--path", "^/x", "--port", "443", "--port", "80"],
            Some(file),
        );
        assert_eq!(s.registration.filter, Some(HttpFilter::Path("^/x".into())));
        assert_eq!(s.registration.filter_ports, Some(vec![443]));
        let s = settings(&["--port", "80"], Some(file));
        assert!(
            s.warnings
                .iter()
                .any(|w| w.contains("port(s) 443 that are not stolen")),
            "{:?}",
            s.warnings
        );
        let no_filter = r#"{"feature":{"network":{"incoming":{"mode":"steal","http_filter":{"ports":[443]}}}}}"#;
        let s = settings(&[], Some(no_filter));
        assert_eq!(s.registration.filter_ports, None);
        assert!(
            s.warnings[0].contains("no effect without a filter"),
            "{:?}",
            s.warnings
        );
    }

    #[test]
    fn a_file_without_mode_mirrors_as_mirrord_does() {
        let s = settings(&[], Some(r#"{"target":"deploy/web"}"#));
        assert_eq!(s.registration.mode, Mode::Mirror);
        assert!(s.notes[0].contains("mirrord's default"), "{:?}", s.notes);
        let s = settings(&["--mode", "steal"], Some(r#"{"target":"deploy/web"}"#));
        assert_eq!(s.registration.mode, Mode::Steal);
        assert!(s.notes.is_empty());
    }

    #[test]
    fn delivery_settings_are_checked_as_mirrord_checks_them() {
        let bad = |flags: &[&str], file: Option<&str>| {
            let file = file.map(|f| parse(f, Format::Json).unwrap());
            resolve(&args(flags), file).unwrap_err().to_string()
        };
        let d = |inner: &str| {
            format!(
                r#"{{"feature":{{"network":{{"incoming":{{"mode":"steal","tls_delivery":{inner}}}}}}}}}"#
            )
        };
        let e = bad(&[], Some(&d(r#"{"trust_roots":[]}"#)));
        assert_eq!(
            e,
            "feature.network.incoming.tls_delivery.trust_roots: cannot be an empty list"
        );
        let e = bad(
            &[],
            Some(&d(r#"{"trust_roots":["/r"],"server_cert":"/c"}"#)),
        );
        assert!(
            e.starts_with("feature.network.incoming.tls_delivery.server_cert and feature.network.incoming.tls_delivery.trust_roots cannot be used together"),
            "{e}"
        );
        let e = bad(
            &["--server-cert", "/c"],
            Some(&d(r#"{"trust_roots":["/r"]}"#)),
        );
        assert!(
            e.starts_with("--server-cert and feature.network.incoming.tls_delivery.trust_roots"),
            "{e}"
        );
        let e = bad(&["--server-cert", "/c", "--trust-root", "/r"], None);
        assert!(
            e.starts_with("--server-cert and --trust-root cannot be used together"),
            "{e}"
        );
        let e = bad(&[], Some(&d(r#"{"server_name":"not a name"}"#)));
        assert_eq!(
            e,
            "feature.network.incoming.tls_delivery.server_name \"not a name\": must be a valid DNS name or an IP address"
        );
        let e = bad(&["--server-name", "a b"], None);
        assert!(e.starts_with("--server-name \"a b\""), "{e}");
        // The deprecated name is named in its own errors.
        let e = bad(
            &[],
            Some(r#"{"feature":{"network":{"incoming":{"https_delivery":{"trust_roots":[]}}}}}"#),
        );
        assert!(
            e.starts_with("feature.network.incoming.https_delivery.trust_roots"),
            "{e}"
        );
        // With tcp, mirrord ignores the TLS settings; so does kubectl-steal (with a warning).
        let s = settings(
            &[],
            Some(&d(
                r#"{"protocol":"tcp","trust_roots":[],"server_name":"a b"}"#,
            )),
        );
        assert_eq!(s.delivery.protocol, DeliveryProtocol::Tcp);
        assert!(
            s.warnings
                .iter()
                .any(|w| w.contains("ignored with --delivery tcp"))
        );
        let s = settings(&["--server-name", "10.0.0.1"], None);
        assert_eq!(s.delivery.server_name.as_deref(), Some("10.0.0.1"));
    }

    #[test]
    fn flags_override_the_file() {
        let s = settings(
            &[
                "--header",
                "other",
                "--port",
                "8443",
                "--delivery",
                "tcp",
                "--mode",
                "steal",
                "--to",
                "9000",
            ],
            Some(JSON),
        );
        assert_eq!(
            s.registration.filter,
            Some(HttpFilter::Header("other".into()))
        );
        assert_eq!(s.registration.ports, [8443]);
        assert_eq!(s.registration.mode, Mode::Steal);
        assert_eq!(s.delivery.protocol, DeliveryProtocol::Tcp);
        assert_eq!(s.delivery.to.unwrap().to_string(), "127.0.0.1:9000");
        // Not overridden: kept from the file.
        assert_eq!(s.delivery.server_name.as_deref(), Some("app.local"));
        assert!(
            s.warnings
                .iter()
                .any(|w| w.contains("ignored with --delivery tcp"))
        );
    }
}
