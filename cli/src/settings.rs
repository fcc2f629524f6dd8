//! Flags over the mirrord config: what to register with the sidecar and how to deliver.
//!
//! Filter flags combine with all-of (`--any`: any-of); a single one is sent as is; none means the
//! whole port. Any filter flag replaces the file's filter as a whole; every other flag overrides
//! just its own setting.

use std::fmt;
use std::path::PathBuf;

use tls_steal_crds::filter::HttpFilter;
use tls_steal_crds::session::{Mode, Registration};

use crate::args::{Args, DeliveryProtocol};
use crate::mirrord_config::IncomingConfig;

/// Everything a run needs besides where the sidecars are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub registration: Registration,
    pub delivery: DeliverySettings,
    pub warnings: Vec<String>,
}

/// How stolen requests reach the local app.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliverySettings {
    pub protocol: DeliveryProtocol,
    /// `None`: 127.0.0.1 and the port the request was sent to in the pod.
    pub to: Option<LocalAddr>,
    /// SNI toward the local app; `None`: the original client's SNI.
    pub server_name: Option<String>,
    pub trust_roots: Vec<PathBuf>,
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
    #[error(
        "which port? Give --port (e.g. --port 443) or `ports` in the mirrord config's feature.network.incoming"
    )]
    NoPorts,
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
        if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(SettingsError::BadMethod(m.clone()));
        }
        items.push(HttpFilter::Method(m.to_ascii_uppercase()));
    }
    Ok(match items.len() {
        0 => None,
        1 => items.pop(),
        _ if args.any => Some(HttpFilter::AnyOf(items)),
        _ => Some(HttpFilter::AllOf(items)),
    })
}

/// Merges the flags over the file (if any).
pub fn resolve(args: &Args, file: Option<IncomingConfig>) -> Result<Settings, SettingsError> {
    let file = file.unwrap_or_default();
    let mut warnings = file.warnings.clone();
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
    if ports.is_empty() {
        return Err(SettingsError::NoPorts);
    }
    if ports.contains(&0) {
        return Err(SettingsError::ZeroPort);
    }
    let mode = args.mode.map(Mode::from).or(file.mode).unwrap_or_default();
    let d = file.delivery;
    let delivery = DeliverySettings {
        protocol: args.delivery.or(d.protocol).unwrap_or_default(),
        to: args.to.as_deref().map(str::parse).transpose()?,
        server_name: args.server_name.clone().or(d.server_name),
        trust_roots: if args.trust_roots.is_empty() {
            d.trust_roots.unwrap_or_default()
        } else {
            args.trust_roots.clone()
        },
        server_cert: args.server_cert.clone().or(d.server_cert),
    };
    if delivery.protocol == DeliveryProtocol::Tcp
        && (delivery.server_name.is_some()
            || !delivery.trust_roots.is_empty()
            || delivery.server_cert.is_some())
    {
        warnings.push(
            "TLS settings (server name, trust roots, server cert) are ignored with --delivery tcp"
                .into(),
        );
    }
    Ok(Settings {
        registration: Registration {
            ports,
            filter,
            mode,
            client: args.client.clone().unwrap_or_else(default_client),
        },
        delivery,
        warnings,
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
        let e = resolve(&args(&["--header", "a"]), None).unwrap_err();
        assert!(matches!(e, SettingsError::NoPorts), "{e}");
        let e = resolve(&args(&["--port", "1", "--to", "a:b"]), None).unwrap_err();
        assert!(matches!(e, SettingsError::BadTo(_)), "{e}");
        let e = resolve(&args(&["--port", "1", "--method", "GE T"]), None).unwrap_err();
        assert!(matches!(e, SettingsError::BadMethod(_)), "{e}");
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
        "http_filter": {"all_of": [{"header": "^x-steal: yes$"}, {"path": "^/api"}], "ports": [443]},
        "https_delivery": {"protocol": "tls", "server_name": "app.local", "trust_roots": ["/r1.pem", "/r2.pem"], "server_cert": "/c.pem"}
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
      https_delivery:
        protocol: tls
        server_name: app.local
        trust_roots: [/r1.pem, /r2.pem]
        server_cert: /c.pem
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
        "--server-cert",
        "/c.pem",
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
        let file = r#"{"feature":{"network":{"incoming":{"http_filter":{"any_of":[{"header":"a"},{"method":"GET"}]},"ports":[8443],"tls_delivery":{"protocol":"tcp"}}}}}"#;
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
        let single = r#"{"feature":{"network":{"incoming":{"http_filter":{"header_filter":"a","ports":[1]}}}}}"#;
        assert_eq!(
            settings(&[], Some(single)),
            settings(&["--header", "a", "--port", "1"], None)
        );
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
