//! Small HTTP/1 helpers shared by the daemon's HTTP listener and the simulator: an
//! accept loop over hyper with shutdown, bounded body reading and response builders.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::shutdown::Shutdown;

/// The response body type used everywhere.
pub(crate) type Body = Full<Bytes>;

#[cfg_attr(not(feature = "sim"), allow(dead_code))] // the simulator's
/// Reads a request body of at most `limit` bytes.
///
/// # Errors
/// A message when the body is too large or the connection fails.
pub(crate) async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, String> {
    Limited::new(body, limit)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| format!("request body: {e}"))
}

/// A plain-text response.
pub fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body.into())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// The `101 Switching Protocols` answer to a websocket upgrade: `accept` is the
/// `Sec-WebSocket-Accept` value, `protocol` the chosen subprotocol.
pub fn switching_protocols(accept: &str, protocol: Option<&'static str>) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(
        http::header::UPGRADE,
        http::HeaderValue::from_static("websocket"),
    );
    h.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("Upgrade"),
    );
    if let Ok(v) = http::HeaderValue::from_str(accept) {
        h.insert(http::header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(p) = protocol {
        h.insert(
            http::header::SEC_WEBSOCKET_PROTOCOL,
            http::HeaderValue::from_static(p),
        );
    }
    resp
}

/// A JSON response with status 200.
pub fn json(value: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(value.to_string())));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// The two ends of an HTTP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conn {
    /// The client's address.
    pub peer: std::net::SocketAddr,
    /// Our address on this connection (the interface it reached).
    pub local: std::net::SocketAddr,
    /// The address the listener is bound to (`0.0.0.0:6080` for a wildcard bind).
    pub listen: std::net::SocketAddr,
}

/// Accepts HTTP/1 connections on `listener` until shutdown, serving each with `handler`.
/// Connections are tracked by `shutdown`; upgrades are allowed.
pub async fn serve<H, F>(
    listener: TcpListener,
    shutdown: Shutdown,
    handler: H,
    header_timeout: Duration,
) where
    H: Fn(Request<Incoming>, Conn) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let handler = Arc::new(handler);
    let listen = listener
        .local_addr()
        .unwrap_or(std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
    loop {
        let Some((stream, peer)) = crate::net::accept(&listener, &shutdown, "http").await else {
            return;
        };
        let _ = stream.set_nodelay(true);
        let conn_ends = Conn {
            peer,
            local: stream.local_addr().unwrap_or(peer),
            listen,
        };
        let handler = handler.clone();
        let sd = shutdown.clone();
        shutdown.spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(handler(req, conn_ends).await) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout)
                .max_buf_size(64 * 1024);
            let conn = builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(error = %e, %peer, "HTTP connection ended with an error");
                    }
                }
                _ = sd.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
                }
            }
        });
    }
}
