//! Parsing and validation of `--ports` and `--proxy-port`.

use thiserror::Error;
use tls_steal_crds::contract::{ADMIN_PORT, SESSION_API_PORT};

/// Why a `--ports` list (or the proxy port against it) was rejected. Each variant names the
/// offending item so the user can fix the pod spec without guessing.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PortsError {
    #[error("invalid --ports: the list is empty (expected e.g. `443,8443`)")]
    Empty,
    #[error("invalid --ports: item {position} is empty in `{list}`")]
    EmptyItem { position: usize, list: String },
    #[error("invalid --ports: `{item}` is not a port number")]
    NotANumber { item: String },
    #[error("invalid --ports: port `{item}` is out of range (1-65535)")]
    OutOfRange { item: String },
    #[error("invalid --ports: port {port} is listed more than once")]
    Duplicate { port: u16 },
    #[error("invalid --proxy-port: port 0 is not a valid port")]
    ProxyPortZero,
    #[error("invalid --proxy-port: {port} is also in --ports; the proxy port must not be captured")]
    ProxyPortInList { port: u16 },
    #[error("invalid --ports: {port} is the proxy's {what} port; it must not be captured")]
    Reserved { port: u16, what: &'static str },
}

/// Parses a comma-separated list of TCP ports (`443,8443`; blanks around items are allowed).
/// Rejects an empty list, empty items, non-numbers, 0, values above 65535 and duplicates.
/// The order given is kept (it is the order of the rules).
pub fn parse_ports(list: &str) -> Result<Vec<u16>, PortsError> {
    if list.trim().is_empty() {
        return Err(PortsError::Empty);
    }
    let mut ports = Vec::new();
    for (index, raw) in list.split(',').enumerate() {
        let item = raw.trim();
        if item.is_empty() {
            return Err(PortsError::EmptyItem {
                position: index + 1,
                list: list.to_owned(),
            });
        }
        if !item.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PortsError::NotANumber {
                item: item.to_owned(),
            });
        }
        let port = match item.parse::<u32>() {
            Ok(n @ 1..=65535) => n as u16,
            _ => {
                return Err(PortsError::OutOfRange {
                    item: item.to_owned(),
                });
            }
        };
        if ports.contains(&port) {
            return Err(PortsError::Duplicate { port });
        }
        ports.push(port);
    }
    Ok(ports)
}

/// Checks the list against the proxy's own ports: capturing the capture port would loop, and
/// capturing the session API or admin port would hide them (health checks, app probes).
pub fn check_reserved(ports: &[u16], proxy_port: u16) -> Result<(), PortsError> {
    if proxy_port == 0 {
        return Err(PortsError::ProxyPortZero);
    }
    if ports.contains(&proxy_port) {
        return Err(PortsError::ProxyPortInList { port: proxy_port });
    }
    for (port, what) in [(SESSION_API_PORT, "session API"), (ADMIN_PORT, "admin")] {
        if ports.contains(&port) {
            return Err(PortsError::Reserved { port, what });
        }
    }
    Ok(())
}

/// `443,8443` — for log lines.
pub fn join(ports: &[u16]) -> String {
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_lists_in_order() {
        assert_eq!(parse_ports("443"), Ok(vec![443]));
        assert_eq!(parse_ports("8443,443"), Ok(vec![8443, 443]));
        assert_eq!(parse_ports(" 443 , 8443 "), Ok(vec![443, 8443]));
        assert_eq!(parse_ports("1,65535"), Ok(vec![1, 65535]));
    }

    #[test]
    fn rejects_empty() {
        assert_eq!(parse_ports(""), Err(PortsError::Empty));
        assert_eq!(parse_ports("  "), Err(PortsError::Empty));
        assert!(matches!(
            parse_ports("443,,8443"),
            Err(PortsError::EmptyItem { position: 2, .. })
        ));
        assert!(matches!(
            parse_ports("443,"),
            Err(PortsError::EmptyItem { position: 2, .. })
        ));
    }

    #[test]
    fn rejects_non_numbers_naming_the_item() {
        for bad in ["https", "-1", "+443", "44 3", "0x1bb", "443a"] {
            let err = parse_ports(&format!("80,{bad}")).unwrap_err();
            assert_eq!(
                err,
                PortsError::NotANumber {
                    item: bad.trim().to_owned()
                },
                "{bad}"
            );
            assert!(err.to_string().contains(bad.trim()), "{err}");
        }
    }

    #[test]
    fn rejects_out_of_range_naming_the_item() {
        for bad in ["0", "65536", "99999999999999999999", "000"] {
            let err = parse_ports(&format!("443,{bad}")).unwrap_err();
            assert_eq!(
                err,
                PortsError::OutOfRange {
                    item: bad.to_owned()
                }
            );
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn rejects_duplicates() {
        let err = parse_ports("443,8443,0443").unwrap_err();
        assert_eq!(err, PortsError::Duplicate { port: 443 });
        assert!(err.to_string().contains("443 is listed more than once"));
    }

    #[test]
    fn proxy_ports_must_not_be_captured() {
        assert_eq!(check_reserved(&[443, 8443], 15443), Ok(()));
        let err = check_reserved(&[443, 15443], 15443).unwrap_err();
        assert_eq!(err, PortsError::ProxyPortInList { port: 15443 });
        assert!(err.to_string().contains("15443"));
        assert_eq!(check_reserved(&[443], 0), Err(PortsError::ProxyPortZero));
        for port in [15400, 15401] {
            let err = check_reserved(&[443, port], 15443).unwrap_err();
            assert!(
                matches!(err, PortsError::Reserved { port: p, .. } if p == port),
                "{err}"
            );
            assert!(err.to_string().contains(&port.to_string()), "{err}");
        }
        // With another proxy port, 15443 is an ordinary port.
        assert_eq!(check_reserved(&[15443], 16443), Ok(()));
    }

    #[test]
    fn joins_for_logs() {
        assert_eq!(join(&[443, 8443]), "443,8443");
    }
}
