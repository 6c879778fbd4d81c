//! The HTTP listener: `GET /vnc/<instance id or name>` upgraded to a websocket for noVNC
//! (Origin checked, `binary` echoed when offered), `/healthz`, `/readyz`, `/metrics`,
//! `/api/consoles` and the web UI. Every path but the two probes checks `Host` (DNS rebinding) and, when configured,
//! the bearer token (per-address back-off on wrong ones; a browser that opens
//! `/?token=…` gets an HttpOnly, SameSite=Strict session cookie instead). Refusals
//! before the upgrade are HTTP statuses; after it, close codes and RFB reasons.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::app::App;
use crate::client::ClientIo;
use crate::config::Config;
use crate::engine::ViewerRole;
use crate::http_util::{self, Body, Conn};
use crate::session::{self, Via};
use crate::ws::{Mode, Role, WsIo};

/// Serves HTTP until shutdown.
pub async fn serve(app: Arc<App>, listener: TcpListener) {
    let sd = app.shutdown.clone();
    let timeout = app
        .config()
        .session
        .handshake_timeout
        .min(Duration::from_secs(10));
    http_util::serve(
        listener,
        sd,
        move |req, conn| route(app.clone(), req, conn),
        timeout,
    )
    .await;
}

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The session cookie set for a browser that presented the token: a digest of the token,
/// so the cookie itself is not the bearer token.
const COOKIE: &str = "tcvnc_session";

fn cookie_value(token: &crate::redact::Secret) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"tcvnc-session-cookie-v1\0");
    h.update(token.expose().as_bytes());
    hex::encode(h.finalize())
}

/// What the request presented against the configured bearer token.
enum Presented {
    /// No token is configured: everything is open (loopback only, by config rule).
    Open,
    /// Nothing was presented.
    Nothing,
    /// A token (or its cookie) was presented and is right; `via_query` when it came in
    /// `?token=` (a browser that should get the cookie); `role`: control for
    /// `token_file`'s, view for `view_token_file`'s.
    Right { via_query: bool, role: ViewerRole },
    /// Something was presented and it is wrong.
    Wrong,
}

/// Checks the bearer tokens: `Authorization: Bearer`, `?token=`, or the session cookie,
/// each compared in constant time (no length shortcut), against the control token and
/// then the view-only one.
fn presented(cfg: &Config, req: &Request<Incoming>) -> Presented {
    let Some(http) = cfg.http.as_ref() else {
        return Presented::Open;
    };
    let Some(token) = http.token.as_ref() else {
        return Presented::Open;
    };
    match presented_one(req, token, ViewerRole::Control) {
        Presented::Wrong => match http.view_token.as_ref() {
            Some(view) => presented_one(req, view, ViewerRole::View),
            None => Presented::Wrong,
        },
        p => p,
    }
}

/// [`presented`] against one token.
fn presented_one(
    req: &Request<Incoming>,
    token: &crate::redact::Secret,
    role: ViewerRole,
) -> Presented {
    let bearer = header(req, "authorization").and_then(|v| v.strip_prefix("Bearer "));
    let query = req
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="));
    let want_cookie = cookie_value(token);
    let cookies: Vec<&str> = req
        .headers()
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|c| c.split(';'))
        .filter_map(|kv| kv.trim().strip_prefix("tcvnc_session="))
        .collect();
    if bearer.is_none() && query.is_none() && cookies.is_empty() {
        return Presented::Nothing;
    }
    let query_ok = query.is_some_and(|q| {
        let decoded = percent_encoding::percent_decode_str(q).collect::<Vec<u8>>();
        token.matches(&decoded)
    });
    let ok = bearer.is_some_and(|b| token.matches(b.as_bytes()))
        || query_ok
        || cookies
            .iter()
            .any(|c| crate::redact::ct_eq(c.as_bytes(), want_cookie.as_bytes()));
    if ok {
        Presented::Right {
            via_query: query_ok,
            role,
        }
    } else {
        Presented::Wrong
    }
}

/// Same-origin (the Origin's host:port is our Host) or listed; a missing Origin (not a
/// browser) is allowed.
pub(super) fn origin_allowed(cfg: &Config, req: &Request<Incoming>) -> Result<(), String> {
    let Some(origin) = header(req, "origin") else {
        return Ok(());
    };
    let host = header(req, "host").unwrap_or_default();
    let same = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|o| !host.is_empty() && o.eq_ignore_ascii_case(host));
    let listed = cfg.http.as_ref().is_some_and(|h| {
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

/// Splits a `Host` value into a lowercased host (IPv6 keeps its brackets) and a port
/// (80 when absent). `None` for anything malformed.
fn split_host(value: &str) -> Option<(String, u16)> {
    let value = value.trim().to_ascii_lowercase();
    if value.is_empty() || value.contains(['/', '@', ' ', '\\']) {
        return None;
    }
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => 80,
            None => return None,
        };
        (format!("[{inside}]"), port)
    } else {
        match value.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse().ok()?),
            None => (value.clone(), 80),
        }
    };
    (!host.is_empty()).then_some((host, port))
}

/// DNS rebinding defence: the `Host` must name this server: the address the listener is
/// bound to or the connection reached, `localhost`, `127.0.0.1` or `[::1]` (all with the
/// listening port), or a name in `http.allowed_hosts` (`name` for any port, `name:port`
/// for one).
fn host_allowed(cfg: &Config, req: &Request<Incoming>, conn: Conn) -> Result<(), String> {
    let local = conn.local;
    let raw = header(req, "host").unwrap_or_default();
    let Some((host, port)) = split_host(raw) else {
        return Err(format!(
            "Host header {raw:?} is missing or malformed: this server answers to its own address, localhost, or the names in http.allowed_hosts"
        ));
    };
    let literal = |ip: std::net::IpAddr| match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => format!("[{v6}]"),
        },
    };
    let ours = port == local.port()
        && (host == "localhost"
            || host == "127.0.0.1"
            || host == "[::1]"
            || host == literal(local.ip())
            || host == literal(conn.listen.ip()));
    let listed = cfg.http.as_ref().is_some_and(|h| {
        h.allowed_hosts.iter().any(|a| match split_host(a) {
            Some((ah, ap)) if a.contains(':') && !a.ends_with(']') => ah == host && ap == port,
            Some((ah, _)) => ah == host,
            None => false,
        })
    });
    if ours || listed {
        Ok(())
    } else {
        Err(format!(
            "Host {raw:?} is not this server: add it to http.allowed_hosts if clients reach tcvnc by that name"
        ))
    }
}

async fn route(app: Arc<App>, req: Request<Incoming>, conn: Conn) -> Response<Body> {
    let peer = conn.peer;
    let cfg = app.config();
    let path = req.uri().path().to_owned();
    let action = super::actions::action(req.method(), &path);
    let post = req.method() == Method::POST && action.is_some();
    if req.method() != Method::GET && req.method() != Method::HEAD && !post {
        if path.starts_with("/vnc/") {
            // RFC 6455 §4.2.1: a websocket handshake is a GET; anything else is a bad request.
            return http_util::text(
                StatusCode::BAD_REQUEST,
                "a websocket upgrade must use GET\n",
            );
        }
        return http_util::text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET is served (POST only to /vnc/<instance>/type, /vnc/<instance>/keys and /api/consoles/<instance>/control)\n",
        );
    }
    match path.as_str() {
        "/healthz" => return http_util::text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            let fleet = app.fleet.as_deref();
            return if !app.ready.load(Ordering::Relaxed) {
                http_util::text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
            } else if fleet.is_some_and(|f| f.refusing()) {
                http_util::text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: Redis (fleet) unreachable, new console URLs refused (fleet.on_unavailable = \"refuse\")\n",
                )
            } else if fleet.is_some_and(|f| !f.is_up()) {
                http_util::text(
                    StatusCode::OK,
                    "ready: Redis (fleet) unreachable, spending from the local fallback budget\n",
                )
            } else {
                http_util::text(StatusCode::OK, "ready\n")
            };
        }
        _ => {}
    }
    if let Err(reason) = host_allowed(&cfg, &req, conn) {
        if app.summaries.first("host_refused", "http") {
            tracing::warn!(%peer, path, "{reason}");
        }
        let status = if header(&req, "host").is_none() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::MISDIRECTED_REQUEST
        };
        return http_util::text(status, format!("{reason}\n"));
    }
    let mut set_cookie = None;
    let presented = presented(&cfg, &req);
    let mut role = ViewerRole::Control;
    let ok = match presented {
        Presented::Open => true,
        Presented::Nothing => false,
        Presented::Right { via_query, role: r } => {
            role = r;
            if via_query {
                set_cookie = cfg
                    .http
                    .as_ref()
                    .and_then(|h| match r {
                        ViewerRole::Control => h.token.as_ref(),
                        ViewerRole::View => h.view_token.as_ref(),
                    })
                    .map(cookie_value);
            }
            true
        }
        Presented::Wrong => false,
    };
    if !matches!(presented, Presented::Open | Presented::Nothing) {
        if let Err(refused) = app.guard.settle(peer.ip(), ok) {
            if app.summaries.first("token_throttled", "http") {
                tracing::warn!(%peer, path, "HTTP token attempts from this address are backing off: {refused}");
            }
            let mut r = http_util::text(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many wrong tokens from your address: wait {} s\n",
                    refused.retry_after.as_millis().div_ceil(1000).max(1)
                ),
            );
            if let Ok(v) =
                http::HeaderValue::from_str(&refused.retry_after.as_secs().max(1).to_string())
            {
                r.headers_mut().insert(http::header::RETRY_AFTER, v);
            }
            return r;
        }
    }
    if !ok {
        if app.summaries.first("token_refused", "http") {
            tracing::info!(%peer, path, "HTTP request without the right token refused");
        }
        let mut r = http_util::text(
            StatusCode::UNAUTHORIZED,
            "authentication required: send Authorization: Bearer <token>, or open /?token=<token> once in a browser\n",
        );
        r.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer"),
        );
        return r;
    }
    let mut resp = if let Some(action) = action {
        super::actions::serve(&app, &cfg, req, peer, action, role).await
    } else if set_cookie.is_some() && (path == "/" || path == "/index.html") {
        // Take the token out of the address bar and history: the cookie carries on.
        let mut r = http_util::text(StatusCode::SEE_OTHER, "signed in; continue at /\n");
        r.headers_mut()
            .insert(http::header::LOCATION, http::HeaderValue::from_static("/"));
        r
    } else {
        routed(&app, &cfg, req, peer, &path, role)
    };
    if let Some(cookie) = set_cookie {
        if let Ok(v) = http::HeaderValue::from_str(&format!(
            "{COOKIE}={cookie}; Path=/; HttpOnly; SameSite=Strict"
        )) {
            resp.headers_mut().insert(http::header::SET_COOKIE, v);
        }
    }
    resp
}

/// The authenticated paths.
fn routed(
    app: &Arc<App>,
    cfg: &Config,
    req: Request<Incoming>,
    peer: SocketAddr,
    path: &str,
    role: ViewerRole,
) -> Response<Body> {
    if path == "/api/consoles" {
        return super::api::consoles(app, cfg);
    }
    if path == "/api/recordings" {
        return super::api::recordings(cfg, role);
    }
    if path == "/metrics" {
        for t in &cfg.targets {
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
        // `?view_only=1` asks for the view-only role (never more than the token gives).
        let view_only = req
            .uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .any(|kv| matches!(kv, "view_only=1" | "view_only=true"));
        let role = if view_only { ViewerRole::View } else { role };
        return upgrade(app.clone(), cfg, req, peer, instance.to_owned(), role);
    }
    super::web::serve(app, cfg, &app.discovery.snapshot(), path)
}

fn upgrade(
    app: Arc<App>,
    cfg: &Config,
    req: Request<Incoming>,
    peer: SocketAddr,
    key: String,
    role: ViewerRole,
) -> Response<Body> {
    use crate::discovery::{self, Resolved};
    let Ok(key) = percent_encoding::percent_decode_str(&key).decode_utf8() else {
        return http_util::text(
            StatusCode::BAD_REQUEST,
            "the instance in the path is not UTF-8\n",
        );
    };
    let snap = app.discovery.snapshot();
    let target = match discovery::resolve(cfg, &snap, &key) {
        Resolved::Target(t) => *t,
        Resolved::Ambiguous(candidates) => {
            // Before the upgrade, so a browser or script reads the ids in the body.
            let text = discovery::ambiguous_text(&key, &candidates);
            tracing::info!(%peer, "console request refused: {text}");
            return http_util::text(StatusCode::CONFLICT, format!("{text}\n"));
        }
        Resolved::NotFound if cfg.discovery.is_some() && snap.passes == 0 => {
            let mut r = http_util::text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{key:?} is not a target, and discovery has not listed the instances yet: retry in a few seconds\n"),
            );
            r.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("2"),
            );
            return r;
        }
        Resolved::NotFound => {
            let known: Vec<&str> = cfg.targets.iter().map(|t| t.instance.as_str()).collect();
            let discovered = if cfg.discovery.is_some() {
                format!(
                    "; discovered: {} instances (see /api/consoles)",
                    snap.instances.len()
                )
            } else {
                String::new()
            };
            return http_util::text(
                StatusCode::NOT_FOUND,
                format!(
                    "no target for instance {key:?}; configured: {}{discovered}\n",
                    known.join(", ")
                ),
            );
        }
    };
    let instance = target.instance.clone();
    if let Err(reason) = origin_allowed(cfg, &req) {
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
                max: task_app.config().session.max_sessions,
            };
            failure.log(&task_app.summaries, &target.instance);
            ws.close(failure.close_code(), &failure.viewer_text()).await;
            return;
        }
        session::serve(task_app, ClientIo::Ws(ws), peer, Via::Ws, target, role).await;
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
