//! Socket tuning in one place: TCP_NODELAY and keepalive on every connection we own.

use std::time::Duration;

use tokio::net::TcpStream;

/// Sets TCP_NODELAY (RFB messages are small and latency-bound) and TCP keepalive.
pub fn configure_socket(stream: &TcpStream) {
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
