//! Pure rendering of the `iptables-restore --noflush` input, and parsing of what `iptables -S`
//! / `iptables-save` print. No I/O here, so everything is unit-tested without root.

use std::fmt;

/// The `nat` chain tls-steal owns. Nothing else is ever created or changed, apart from the single
/// `PREROUTING` jump to it.
pub const CHAIN: &str = "TLS_STEAL_INBOUND";

/// The rule that sends inbound traffic through [`CHAIN`], exactly as `iptables -S` prints it.
pub const JUMP_RULE: &str = "-A PREROUTING -j TLS_STEAL_INBOUND";

/// The chains every `nat` table (and every other table) may have without anyone adding rules.
const BUILTIN_CHAINS: &[&str] = &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];

/// An address family; each has its own tools (`iptables*` / `ip6tables*`) and its own tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        })
    }
}

/// What the `nat` table currently holds that concerns tls-steal (from `iptables -t nat -S`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatState {
    /// `-N TLS_STEAL_INBOUND` is present.
    pub chain_exists: bool,
    /// Every rule (as `-A …` lines) anywhere in the table that jumps to [`CHAIN`].
    pub jumps: Vec<String>,
    /// The rules inside [`CHAIN`], as `-A …` lines.
    pub chain_rules: Vec<String>,
}

impl NatState {
    /// Parses `iptables -t nat -S` (or the rule lines of `iptables-save -t nat`).
    pub fn parse(listing: &str) -> Self {
        let mut state = NatState::default();
        for line in listing.lines().map(str::trim) {
            let mut tokens = line.split_whitespace();
            match (tokens.next(), tokens.next()) {
                (Some("-N"), Some(chain)) if chain == CHAIN => state.chain_exists = true,
                (Some(":"), _) => {}
                (Some(first), _) if first.starts_with(':') && &first[1..] == CHAIN => {
                    state.chain_exists = true;
                }
                (Some("-A"), Some(chain)) => {
                    if chain == CHAIN {
                        state.chain_rules.push(line.to_owned());
                    }
                    if jump_target(line) == Some(CHAIN) {
                        state.jumps.push(line.to_owned());
                    }
                }
                _ => {}
            }
        }
        state
    }

    /// Whether our own `PREROUTING` jump is already installed (then it is left where it is).
    pub fn has_prerouting_jump(&self) -> bool {
        self.jumps.iter().any(|rule| rule == JUMP_RULE)
    }
}

/// The target of an `-A` rule line (`-j X` / `--jump X`), if any.
fn jump_target(rule: &str) -> Option<&str> {
    let mut tokens = rule.split_whitespace();
    while let Some(token) = tokens.next() {
        if token == "-j" || token == "--jump" {
            return tokens.next();
        }
    }
    None
}

/// The `iptables-restore --noflush` input that installs (or re-installs) the capture: declares
/// and flushes [`CHAIN`], fills it with one `REDIRECT` per port, and appends the `PREROUTING`
/// jump unless it is already there. The same text serves IPv4 and IPv6.
pub fn render_install(ports: &[u16], proxy_port: u16, add_jump: bool) -> String {
    let mut out = String::from("*nat\n");
    // With --noflush, declaring an existing user chain flushes it; the explicit -F says so.
    out.push_str(&format!(":{CHAIN} - [0:0]\n-F {CHAIN}\n"));
    for port in ports {
        out.push_str(&format!(
            "-A {CHAIN} -p tcp -m tcp --dport {port} -j REDIRECT --to-ports {proxy_port}\n"
        ));
    }
    if add_jump {
        out.push_str(JUMP_RULE);
        out.push('\n');
    }
    out.push_str("COMMIT\n");
    out
}

/// The `iptables-restore --noflush` input that removes every jump to [`CHAIN`] and the chain
/// itself, or `None` when there is nothing of ours in the table.
pub fn render_cleanup(state: &NatState) -> Option<String> {
    if !state.chain_exists && state.jumps.is_empty() {
        return None;
    }
    let mut out = String::from("*nat\n");
    for rule in &state.jumps {
        // `-A CHAIN spec…` → `-D CHAIN spec…` (same spec, so it deletes exactly that rule).
        out.push_str("-D");
        out.push_str(&rule[2..]);
        out.push('\n');
    }
    if state.chain_exists {
        out.push_str(&format!("-F {CHAIN}\n-X {CHAIN}\n"));
    }
    out.push_str("COMMIT\n");
    Some(out)
}

/// Whether an `iptables-legacy-save` dump (all tables) shows that something already uses the
/// legacy backend in this network namespace: any rule, or any chain that is not built in.
pub fn legacy_dump_in_use(dump: &str) -> bool {
    dump.lines().map(str::trim).any(|line| {
        if line.starts_with("-A ") {
            return true;
        }
        match line.strip_prefix(':') {
            Some(rest) => {
                let chain = rest.split_whitespace().next().unwrap_or("");
                !chain.is_empty() && !BUILTIN_CHAINS.contains(&chain)
            }
            None => false,
        }
    })
}

/// Whether `/proc/net/if_inet6` lists a global (not link-local, not loopback) IPv6 address.
/// Line format: `address ifindex prefixlen scope flags name`, scope `00` meaning global
/// (unique-local `fd00::/8` addresses are global in scope too).
pub fn if_inet6_has_global(table: &str) -> bool {
    table.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        matches!(fields.as_slice(), [addr, _, _, scope, _, name]
            if *scope == "00" && *name != "lo" && *addr != "00000000000000000000000000000001")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_fresh_install() {
        assert_eq!(
            render_install(&[443, 8443], 15443, true),
            "*nat\n\
             :TLS_STEAL_INBOUND - [0:0]\n\
             -F TLS_STEAL_INBOUND\n\
             -A TLS_STEAL_INBOUND -p tcp -m tcp --dport 443 -j REDIRECT --to-ports 15443\n\
             -A TLS_STEAL_INBOUND -p tcp -m tcp --dport 8443 -j REDIRECT --to-ports 15443\n\
             -A PREROUTING -j TLS_STEAL_INBOUND\n\
             COMMIT\n"
        );
    }

    #[test]
    fn renders_reinstall_without_second_jump() {
        let text = render_install(&[443], 15000, false);
        assert_eq!(
            text,
            "*nat\n\
             :TLS_STEAL_INBOUND - [0:0]\n\
             -F TLS_STEAL_INBOUND\n\
             -A TLS_STEAL_INBOUND -p tcp -m tcp --dport 443 -j REDIRECT --to-ports 15000\n\
             COMMIT\n"
        );
        assert!(!text.contains("PREROUTING"));
        assert!(
            !text.contains("OUTPUT"),
            "only inbound traffic is ever captured"
        );
    }

    const LISTING: &str = "\
-P PREROUTING ACCEPT
-P INPUT ACCEPT
-P OUTPUT ACCEPT
-P POSTROUTING ACCEPT
-N ISTIO_INBOUND
-N TLS_STEAL_INBOUND
-A PREROUTING -p tcp -j ISTIO_INBOUND
-A PREROUTING -j TLS_STEAL_INBOUND
-A OUTPUT -p tcp -m comment --comment \"odd one\" -j TLS_STEAL_INBOUND
-A TLS_STEAL_INBOUND -p tcp -m tcp --dport 443 -j REDIRECT --to-ports 15443
";

    #[test]
    fn parses_listing() {
        let state = NatState::parse(LISTING);
        assert!(state.chain_exists);
        assert!(state.has_prerouting_jump());
        assert_eq!(
            state.jumps,
            vec![
                "-A PREROUTING -j TLS_STEAL_INBOUND".to_owned(),
                "-A OUTPUT -p tcp -m comment --comment \"odd one\" -j TLS_STEAL_INBOUND".to_owned(),
            ]
        );
        assert_eq!(
            state.chain_rules,
            vec!["-A TLS_STEAL_INBOUND -p tcp -m tcp --dport 443 -j REDIRECT --to-ports 15443"]
        );
    }

    #[test]
    fn parses_save_format_and_empty_table() {
        let save = "*nat\n:PREROUTING ACCEPT [0:0]\n:TLS_STEAL_INBOUND - [0:0]\nCOMMIT\n";
        let state = NatState::parse(save);
        assert!(state.chain_exists);
        assert!(!state.has_prerouting_jump());
        assert_eq!(
            NatState::parse("-P PREROUTING ACCEPT\n"),
            NatState::default()
        );
    }

    #[test]
    fn conditional_jump_is_not_ours() {
        let state = NatState::parse("-A PREROUTING -i eth0 -j TLS_STEAL_INBOUND\n");
        assert!(!state.has_prerouting_jump());
        assert_eq!(state.jumps.len(), 1);
    }

    #[test]
    fn renders_cleanup() {
        let state = NatState::parse(LISTING);
        assert_eq!(
            render_cleanup(&state).unwrap(),
            "*nat\n\
             -D PREROUTING -j TLS_STEAL_INBOUND\n\
             -D OUTPUT -p tcp -m comment --comment \"odd one\" -j TLS_STEAL_INBOUND\n\
             -F TLS_STEAL_INBOUND\n\
             -X TLS_STEAL_INBOUND\n\
             COMMIT\n"
        );
        assert_eq!(render_cleanup(&NatState::default()), None);
    }

    #[test]
    fn detects_legacy_use() {
        let empty = "# Generated by iptables-save v1.8.9\n*nat\n:PREROUTING ACCEPT [0:0]\n\
                     :INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
                     COMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\nCOMMIT\n";
        assert!(!legacy_dump_in_use(""));
        assert!(!legacy_dump_in_use(empty));
        assert!(legacy_dump_in_use(
            "*nat\n:PREROUTING ACCEPT [0:0]\n:ISTIO_INBOUND - [0:0]\nCOMMIT\n"
        ));
        assert!(legacy_dump_in_use(
            "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j DROP\nCOMMIT\n"
        ));
    }

    #[test]
    fn detects_global_ipv6() {
        let lo = "00000000000000000000000000000001 01 80 10 80       lo\n";
        let link = "fe80000000000000a8c1abfffe000001 02 40 20 80     eth0\n";
        let ula = "fd000250000c00000000000000000001 02 40 00 80     eth0\n";
        assert!(!if_inet6_has_global(""));
        assert!(!if_inet6_has_global(&format!("{lo}{link}")));
        assert!(if_inet6_has_global(&format!("{lo}{link}{ula}")));
    }
}
