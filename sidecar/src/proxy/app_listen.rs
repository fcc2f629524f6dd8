//! Whether the app still listens on its ports, read from the pod's socket tables.
//!
//! During a drain the proxy accepts new connections exactly as long as the app would: the
//! pod's containers share one network namespace, so `/proc/net/tcp` and `/proc/net/tcp6` (the
//! reading process's namespace) list the app's listening sockets. Reading them opens no
//! connection to the app (a probe connection would show in its log as a failed handshake).

use std::time::Duration;

/// How often a drain looks again.
pub const CHECK_EVERY: Duration = Duration::from_millis(100);

/// The socket tables read, IPv4 and IPv6.
const TABLES: [&str; 2] = ["/proc/net/tcp", "/proc/net/tcp6"];

/// `st` of a listening socket in the tables.
const LISTEN: &str = "0A";

/// Whether any of `ports` has a listening socket in `tables` (the text of `/proc/net/tcp`-style
/// files); `None` when no table could be read.
pub fn listening_in<'a>(
    tables: impl IntoIterator<Item = Option<&'a str>>,
    ports: &[u16],
) -> Option<bool> {
    let mut read_any = false;
    for table in tables.into_iter().flatten() {
        read_any = true;
        // Header line first; then `sl local_address rem_address st ...`, the address as
        // `HEXIP:HEXPORT`.
        let found = table.lines().skip(1).any(|line| {
            let mut fields = line.split_whitespace().skip(1);
            let (Some(local), Some(_remote), Some(state)) =
                (fields.next(), fields.next(), fields.next())
            else {
                return false;
            };
            state == LISTEN
                && local
                    .rsplit_once(':')
                    .and_then(|(_, port)| u16::from_str_radix(port, 16).ok())
                    .is_some_and(|port| ports.contains(&port))
        });
        if found {
            return Some(true);
        }
    }
    read_any.then_some(false)
}

/// [`listening_in`] of this process's network namespace.
pub fn listening(ports: &[u16]) -> Option<bool> {
    let tables = TABLES.map(|path| std::fs::read_to_string(path).ok());
    listening_in(tables.iter().map(Option::as_deref), ports)
}

/// Resolves once none of `ports` is listened on any more (checked every [`CHECK_EVERY`]);
/// never when the tables cannot be read (the drain delay then decides alone).
pub async fn stopped(ports: Vec<u16>) {
    let ports: std::sync::Arc<[u16]> = ports.into();
    loop {
        let p = ports.clone();
        // A pod with many connections has long tables: read them off the runtime.
        let now = tokio::task::spawn_blocking(move || listening(&p))
            .await
            .ok()
            .flatten();
        if now == Some(false) {
            return;
        }
        tokio::time::sleep(CHECK_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:01BB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 0100007F:3C28 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0
   2: 0A00000F:20FB 0A000001:D431 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 20 4 30 10 -1
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4 1 0 100 0 0 10 0
";

    #[test]
    fn finds_listeners_on_any_address_in_either_table() {
        // 443 on 0.0.0.0, 15400 on 127.0.0.1 (v4), 8080 on [::] (v6).
        assert_eq!(listening_in([Some(TCP), Some(TCP6)], &[443]), Some(true));
        assert_eq!(listening_in([Some(TCP), Some(TCP6)], &[8080]), Some(true));
        assert_eq!(listening_in([Some(TCP), None], &[15400, 9]), Some(true));
        // 8443 has only an established connection (st 01): not listening.
        assert_eq!(listening_in([Some(TCP), Some(TCP6)], &[8443]), Some(false));
        assert_eq!(listening_in([Some(TCP), None], &[8080]), Some(false));
        // No table readable: unknown.
        assert_eq!(listening_in([None, None], &[443]), None);
        // Garbage lines never count.
        assert_eq!(
            listening_in([Some("head\nx\n1: zz:zz 0 0A\n")], &[443]),
            Some(false)
        );
    }

    #[test]
    fn sees_a_real_listener_come_and_go() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert_eq!(listening(&[port]), Some(true));
        drop(l);
        assert_eq!(listening(&[port]), Some(false));
    }
}
