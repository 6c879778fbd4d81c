//! The HTTP listener: `GET /vnc/<instance>` upgraded to a websocket for noVNC (Origin
//! checked, `binary` echoed when offered), `/healthz`, `/readyz`, and the web UI.
//! Refusals before the upgrade are HTTP statuses; after it, close codes and RFB reasons.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::bridge::ClientIo;
use crate::daemon::App;
use crate::http_util::{self, Body};
use crate::session::{self, Via};
use crate::wsio::{Mode, Role, WsIo};

/// Serves HTTP until shutdown.
pub async fn serve(app: Arc<App>, listener: TcpListener) {
    let sd = app.shutdown.clone();
    let timeout = app
        .config
        .session
        .handshake_timeout
        .min(Duration::from_secs(10));
    http_util::serve(
        listener,
        sd,
        move |req, peer| route(app.clone(), req, peer),
        timeout,
    )
    .await;
}

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Whether the request carries the configured bearer token (header, `?token=`, or cookie).
fn authorized(app: &App, req: &Request<Incoming>) -> bool {
    let Some(token) = app.config.http.as_ref().and_then(|h| h.token.as_ref()) else {
        return true;
    };
    let want = token.expose().as_bytes();
    let eq = |given: &str| {
        let g = given.as_bytes();
        g.len() == want.len() && g.iter().zip(want).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0
    };
    if header(req, "authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(eq)
    {
        return true;
    }
    let query_token = req
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="));
    if query_token.is_some_and(eq) {
        return true;
    }
    header(req, "cookie")
        .map(|c| {
            c.split(';')
                .filter_map(|kv| kv.trim().strip_prefix("tcvnc_token="))
                .any(eq)
        })
        .unwrap_or(false)
}

/// Same-origin (the Origin's host:port is our Host) or listed; a missing Origin (not a
/// browser) is allowed.
fn origin_allowed(app: &App, req: &Request<Incoming>) -> Result<(), String> {
    let Some(origin) = header(req, "origin") else {
        return Ok(());
    };
    let host = header(req, "host").unwrap_or_default();
    let same = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|o| !host.is_empty() && o.eq_ignore_ascii_case(host));
    let listed = app.config.http.as_ref().is_some_and(|h| {
        h.allowed_origins
            .iter()
            .any(|a| a.eq_ignore_ascii_case(origin))
    });
    if same || listed {
        Ok(())
    } else {
        Err(format!(
            "cross-site websocket request refused: Origin {origin:?} is not this server ({host}) and not in http.allowed_origins"
        ))
    }
}

async fn route(app: Arc<App>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let path = req.uri().path().to_owned();
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return http_util::text(StatusCode::METHOD_NOT_ALLOWED, "only GET is served\n");
    }
    match path.as_str() {
        "/healthz" => return http_util::text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            return if app.ready.load(Ordering::Relaxed) {
                http_util::text(StatusCode::OK, "ready\n")
            } else {
                http_util::text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
            }
        }
        _ => {}
    }
    if !authorized(&app, &req) {
        tracing::info!(%peer, path, "HTTP request without the token refused");
        let mut r = http_util::text(
            StatusCode::UNAUTHORIZED,
            "authentication required: send Authorization: Bearer <token> or ?token=<token>\n",
        );
        r.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer"),
        );
        return r;
    }
    if path == "/metrics" {
        for t in &app.config.targets {
            app.metrics
                .set_budget(&t.instance, app.budget.remaining(&t.instance));
        }
        let mut r = http_util::text(StatusCode::OK, app.metrics.encode());
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ),
        );
        return r;
    }
    if let Some(instance) = path.strip_prefix("/vnc/") {
        return upgrade(app, req, peer, instance.to_owned());
    }
    super::web::serve(&app, &path)
}

fn upgrade(
    app: Arc<App>,
    req: Request<Incoming>,
    peer: SocketAddr,
    instance: String,
) -> Response<Body> {
    let Some(target) = app.config.target(&instance).cloned() else {
        let known: Vec<&str> = app
            .config
            .targets
            .iter()
            .map(|t| t.instance.as_str())
            .collect();
        return http_util::text(
            StatusCode::NOT_FOUND,
            format!(
                "no target for instance {instance:?}; configured: {}\n",
                known.join(", ")
            ),
        );
    };
    if let Err(reason) = origin_allowed(&app, &req) {
        tracing::warn!(%peer, %instance, "{reason}");
        return http_util::text(StatusCode::FORBIDDEN, format!("{reason}\n"));
    }
    let hs = match websocket_handshake(&req) {
        Ok(hs) => hs,
        Err(refusal) => {
            tracing::debug!(%peer, %instance, status = %refusal.status(), "websocket upgrade refused");
            return *refusal;
        }
    };
    let task_app = app.clone();
    let full = app.sessions.available_permits() == 0;
    let mode = hs.mode;
    app.shutdown.spawn(async move {
        let upgraded =
            match tokio::time::timeout(Duration::from_secs(10), hyper::upgrade::on(req)).await {
                Ok(Ok(u)) => u,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "websocket upgrade failed");
                    return;
                }
                Err(_) => return,
            };
        let mut ws = WsIo::new(
            TokioIo::new(upgraded),
            Role::Server,
            mode,
            bytes::Bytes::new(),
        );
        if full {
            // At capacity: a browser gets the reason in a close frame (1013), which noVNC
            // shows; a bare 503 before the upgrade reads as a network error.
            let failure = crate::outcome::Failure::Capacity {
                max: task_app.config.session.max_sessions,
            };
            failure.log();
            ws.close(failure.close_code(), &failure.to_string()).await;
            return;
        }
        session::serve(task_app, ClientIo::Ws(ws), peer, Via::Ws, target).await;
    });
    http_util::switching_protocols(&hs.accept, hs.protocol)
}

/// An acceptable websocket upgrade request: what the 101 answer carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsHandshake {
    /// The `Sec-WebSocket-Accept` value.
    pub accept: String,
    /// The subprotocol chosen (`binary` preferred over `base64`), if one was offered.
    pub protocol: Option<&'static str>,
    /// How data travels, following the subprotocol.
    pub mode: Mode,
}

/// Checks a websocket upgrade request (RFC 6455 §4.2.1) and chooses the subprotocol.
/// Shared by the `/vnc/<instance>` listener and the conformance harness.
///
/// # Errors
/// The refusal to send: 400 for a method other than GET, HTTP/1.0, no `Host`, or a
/// missing, duplicated or invalid `Sec-WebSocket-Key` (not the base64 of 16 bytes); 426
/// without the `Upgrade`/`Connection` headers, or for a version other than 13 (with
/// `Sec-WebSocket-Version: 13` and `Upgrade: websocket`).
pub fn websocket_handshake<B>(req: &Request<B>) -> Result<WsHandshake, Box<Response<Body>>> {
    let h = req.headers();
    let one = |name: &str| -> Option<&str> {
        let mut all = h.get_all(name).iter();
        match (all.next(), all.next()) {
            (Some(v), None) => v.to_str().ok(),
            _ => None,
        }
    };
    let tokens = |name: &str| -> Vec<&str> {
        h.get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect()
    };
    let bad = |why: &str| {
        Err(Box::new(http_util::text(
            StatusCode::BAD_REQUEST,
            format!("{why}\n"),
        )))
    };
    if req.method() != Method::GET {
        return bad("a websocket upgrade must use GET");
    }
    if req.version() < http::Version::HTTP_11 {
        return bad("a websocket upgrade needs HTTP/1.1");
    }
    if !h.contains_key(http::header::HOST) {
        return bad("missing Host header");
    }
    let is_ws = tokens("upgrade")
        .iter()
        .any(|u| u.eq_ignore_ascii_case("websocket"))
        && tokens("connection")
            .iter()
            .any(|c| c.eq_ignore_ascii_case("upgrade"));
    if !is_ws {
        return Err(Box::new(http_util::text(
            StatusCode::UPGRADE_REQUIRED,
            "this is a websocket endpoint for noVNC: connect with a websocket client\n",
        )));
    }
    if one("sec-websocket-version") != Some("13") {
        let mut r = http_util::text(
            StatusCode::UPGRADE_REQUIRED,
            "unsupported websocket version; use 13\n",
        );
        r.headers_mut().insert(
            http::header::SEC_WEBSOCKET_VERSION,
            http::HeaderValue::from_static("13"),
        );
        r.headers_mut().insert(
            http::header::UPGRADE,
            http::HeaderValue::from_static("websocket"),
        );
        return Err(Box::new(r));
    }
    if h.get_all("sec-websocket-key").iter().count() > 1 {
        return bad("more than one Sec-WebSocket-Key");
    }
    let Some(key) = one("sec-websocket-key") else {
        return bad("missing Sec-WebSocket-Key");
    };
    let decoded = base64::engine::general_purpose::STANDARD.decode(key.trim());
    if !matches!(decoded, Ok(k) if k.len() == 16) {
        return bad("invalid Sec-WebSocket-Key (not the base64 of 16 bytes)");
    }
    // Subprotocol names are tokens compared exactly (RFC 6455 §4.1): `BINARY` is not ours.
    let offered = tokens("sec-websocket-protocol");
    let (protocol, mode) = if offered.contains(&"binary") {
        (Some("binary"), Mode::Binary)
    } else if offered.contains(&"base64") {
        (Some("base64"), Mode::Base64)
    } else {
        (None, Mode::Binary)
    };
    Ok(WsHandshake {
        accept: tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.trim().as_bytes()),
        protocol,
        mode,
    })
}
