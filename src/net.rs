//! Sockets in one place: the accept loop's step, and TCP_NODELAY and keepalive on every
//! connection we own.

use std::time::Duration;

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};

use crate::shutdown::Shutdown;

/// The next connection on `listener`, or `None` once shutdown is triggered. A failed
/// accept (out of descriptors, say) is logged and retried after a short pause instead of
/// spinning. Cancel-safe.
pub async fn accept(
    listener: &TcpListener,
    shutdown: &Shutdown,
    what: &str,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            a = listener.accept() => match a {
                Ok(a) => return Some(a),
                Err(e) => {
                    tracing::warn!(error = %e, listener = what, "accept failed; if this is EMFILE, raise the file descriptor limit");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Sets TCP_NODELAY (RFB messages are small and latency-bound) and TCP keepalive.
pub(crate) fn configure_socket(stream: &TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    let sock = socket2::SockRef::from(stream);
    let ka = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(15));
    if let Err(e) = sock.set_tcp_keepalive(&ka) {
        tracing::debug!(error = %e, "cannot set TCP keepalive");
    }
}
