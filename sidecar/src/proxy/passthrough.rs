//! Relaying a connection untouched to its original destination: used when a port's TLS
//! material cannot be loaded (the app keeps working with its own TLS) and for ports absent
//! from the plan.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tracing::{debug, warn};

/// Copies bytes both ways between `client` and a new TCP connection to `dst` until both close.
pub async fn relay_tcp<S>(mut client: S, dst: SocketAddr, connect_timeout: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let upstream = match tokio::time::timeout(connect_timeout, TcpStream::connect(dst)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return warn!(error = %e, "passthrough: cannot connect to the original destination");
        }
        Err(_) => return warn!("passthrough: connecting to the original destination timed out"),
    };
    let _ = upstream.set_nodelay(true);
    let mut upstream = upstream;
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((up, down)) => debug!(up, down, "passthrough closed"),
        Err(e) => debug!(error = %e, "passthrough ended with an error"),
    }
}
