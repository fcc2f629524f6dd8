//! The original destination of a redirected connection (`SO_ORIGINAL_DST`), or a fixed override
//! for tests and setups without iptables (`--orig-dst-override`).

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpStream;

/// Where the client meant to go. Without an override, a connection that was not redirected
/// (its original destination is our own listener) is an error: forwarding it would loop.
pub fn original_dst(
    stream: &TcpStream,
    override_dst: Option<SocketAddr>,
) -> io::Result<SocketAddr> {
    if let Some(dst) = override_dst {
        return Ok(dst);
    }
    let local = stream.local_addr()?;
    let sock = socket2::SockRef::from(stream);
    let addr = if local.is_ipv4() {
        sock.original_dst_v4()?
    } else {
        sock.original_dst_v6()?
    };
    let dst = addr
        .as_socket()
        .ok_or_else(|| io::Error::other("SO_ORIGINAL_DST returned a non-IP address"))?;
    if dst == local {
        return Err(io::Error::other(
            "connection was not redirected (original destination is the proxy itself)",
        ));
    }
    Ok(dst)
}
