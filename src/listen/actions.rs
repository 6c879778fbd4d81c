//! What the HTTP listener does to a console besides the websocket:
//!
//! | request | answer |
//! |---|---|
//! | `GET /vnc/<instance>/screenshot.png` | the screen as PNG (control or view role) |
//! | `POST /vnc/<instance>/type` | the body (UTF-8 text) typed as key events (control) |
//! | `POST /vnc/<instance>/keys` | key combinations, one per line or space-separated (control) |
//! | `POST /api/consoles/<instance>/control` | `{"session": N}`: that viewer gets control (control) |
//!
//! A live console-mode engine answers at once with no URL spent; otherwise tcvnc
//! connects (one URL, logged and said in `X-Tcvnc-Url-Spent: 1`), acts once the first
//! full update has arrived, and leaves (a console-mode engine stays for `linger`). A
//! bridged viewer holding the console makes the request wait its turn: 409. POSTs refuse
//! cross-site requests (an `Origin` that is not this server, as for websockets) and read
//! at most [`MAX_BODY`] bytes; text is checked before anything is typed.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use crate::app::App;
use crate::config::{Config, Target};
use crate::console::keys::KeyStroke;
use crate::engine::{Phase, ViewerRole};
use crate::http_util::{self, Body};
use crate::outcome::{self, Failure};

/// The largest request body taken.
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// What a request asks of a console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action<'a> {
    Screenshot(&'a str),
    Type(&'a str),
    Keys(&'a str),
    Control(&'a str),
}

/// The action `method` and `path` ask for, if any.
pub(super) fn action<'a>(method: &Method, path: &'a str) -> Option<Action<'a>> {
    let one = |s: &'a str| (!s.is_empty() && !s.contains('/')).then_some(s);
    if let Some(rest) = path.strip_prefix("/vnc/") {
        if method == Method::GET || method == Method::HEAD {
            return rest
                .strip_suffix("/screenshot.png")
                .and_then(one)
                .map(Action::Screenshot);
        }
        if method == Method::POST {
            if let Some(i) = rest.strip_suffix("/type").and_then(one) {
                return Some(Action::Type(i));
            }
            return rest.strip_suffix("/keys").and_then(one).map(Action::Keys);
        }
        return None;
    }
    if method == Method::POST {
        if let Some(rest) = path.strip_prefix("/api/consoles/") {
            return rest
                .strip_suffix("/control")
                .and_then(one)
                .map(Action::Control);
        }
    }
    None
}

/// Serves `action`.
pub(super) async fn serve(
    app: &Arc<App>,
    cfg: &Config,
    req: Request<Incoming>,
    peer: SocketAddr,
    action: Action<'_>,
    role: ViewerRole,
) -> Response<Body> {
    let (Action::Screenshot(key) | Action::Type(key) | Action::Keys(key) | Action::Control(key)) =
        action;
    if req.method() == Method::POST {
        if let Err(reason) = super::http::origin_allowed(cfg, &req) {
            tracing::warn!(%peer, "{reason}");
            return http_util::text(StatusCode::FORBIDDEN, format!("{reason}\n"));
        }
        if role != ViewerRole::Control {
            return http_util::text(
                StatusCode::FORBIDDEN,
                "this needs the control role: the view-only token cannot act on a console\n",
            );
        }
        if app.playback.is_some() {
            return http_util::text(
                StatusCode::CONFLICT,
                "this is a recording played by tcvnc play: it is read-only\n",
            );
        }
    }
    let Ok(key) = percent_encoding::percent_decode_str(key).decode_utf8() else {
        return http_util::text(
            StatusCode::BAD_REQUEST,
            "the instance in the path is not UTF-8\n",
        );
    };
    let snap = app.discovery.snapshot();
    let target = match crate::discovery::resolve(cfg, &snap, &key) {
        crate::discovery::Resolved::Target(t) => *t,
        crate::discovery::Resolved::Ambiguous(c) => {
            return http_util::text(
                StatusCode::CONFLICT,
                format!("{}\n", crate::discovery::ambiguous_text(&key, &c)),
            )
        }
        crate::discovery::Resolved::NotFound => {
            return http_util::text(
                StatusCode::NOT_FOUND,
                format!("no console {key:?} (see /api/consoles)\n"),
            )
        }
    };
    if target.transparent() {
        return http_util::text(
            StatusCode::CONFLICT,
            format!(
                "{} is a transparent target: tcvnc does not speak RFB to it\n",
                target.instance
            ),
        );
    }
    if let Action::Screenshot(_) = action {
        return screenshot(app, cfg, &target, peer, role).await;
    }
    let body = match http_util::read_body(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return http_util::text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("{e} (at most {MAX_BODY} bytes)\n"),
            )
        }
    };
    match action {
        Action::Control(_) => control(app, &target.instance, &body, peer),
        Action::Type(_) | Action::Keys(_) => {
            let Ok(text) = std::str::from_utf8(&body) else {
                return http_util::text(StatusCode::BAD_REQUEST, "the body is not UTF-8\n");
            };
            let strokes = if matches!(action, Action::Type(_)) {
                crate::console::keys::type_text(text).map_err(|e| e.to_string())
            } else {
                let combos: Vec<&str> = text.split_whitespace().collect();
                if combos.is_empty() {
                    Err("no key combination in the body (e.g. ctrl-alt-delete)".to_owned())
                } else {
                    crate::console::keys::combos(&combos).map_err(|e| e.to_string())
                }
            };
            match strokes {
                Ok(s) => press(app, cfg, &target, peer, &s, text.chars().count()).await,
                Err(e) => http_util::text(StatusCode::UNPROCESSABLE_ENTITY, format!("{e}\n")),
            }
        }
        Action::Screenshot(_) => unreachable_screenshot(),
    }
}

fn unreachable_screenshot() -> Response<Body> {
    http_util::text(
        StatusCode::INTERNAL_SERVER_ERROR,
        "screenshot routed twice\n",
    )
}

/// An HTTP answer for a failure to have the console.
fn refused(f: &Failure) -> Response<Body> {
    let status = match f.close_code() {
        outcome::CLOSE_TRY_AGAIN => StatusCode::SERVICE_UNAVAILABLE,
        outcome::CLOSE_GOING_AWAY => StatusCode::SERVICE_UNAVAILABLE,
        _ if matches!(f, Failure::Busy { .. }) => StatusCode::CONFLICT,
        _ => StatusCode::BAD_GATEWAY,
    };
    http_util::text(status, format!("{}\n", f.viewer_text()))
}

/// Says in the answer (and the log) that a console URL was spent for it.
fn spent_header(r: &mut Response<Body>, instance: &str, what: &str, spent: bool) {
    if spent {
        tracing::info!(
            instance,
            what,
            "no live console: a console URL was spent for this request"
        );
        r.headers_mut()
            .insert("x-tcvnc-url-spent", http::HeaderValue::from_static("1"));
    }
}

/// `GET /vnc/<instance>/screenshot.png`.
async fn screenshot(
    app: &Arc<App>,
    cfg: &Config,
    target: &Target,
    peer: SocketAddr,
    role: ViewerRole,
) -> Response<Body> {
    let b = match crate::session::borrow(app, cfg, target, role, peer).await {
        Ok(b) => b,
        Err(f) => return refused(&f),
    };
    // A copy, so the PNG is made without holding the screen.
    let fb = b.membership.engine().screen.read().fb.clone();
    drop(b.membership);
    let png = match tokio::task::spawn_blocking(move || crate::console::png::encode(&fb)).await {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            return http_util::text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("no screen to show: {e}\n"),
            )
        }
        Err(e) => {
            return http_util::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the PNG encoder failed: {e}\n"),
            )
        }
    };
    let mut r = Response::new(Body::from(png));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("image/png"),
    );
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    spent_header(&mut r, &target.instance, "screenshot", b.spent);
    r
}

/// Presses `strokes` into the console at the configured pace; `chars` is what the
/// request counted (for the answer).
async fn press(
    app: &Arc<App>,
    cfg: &Config,
    target: &Target,
    peer: SocketAddr,
    strokes: &[KeyStroke],
    chars: usize,
) -> Response<Body> {
    let b = match crate::session::borrow(app, cfg, target, ViewerRole::Control, peer).await {
        Ok(b) => b,
        Err(f) => return refused(&f),
    };
    let engine = b.membership.engine().clone();
    let pace = cfg.session.type_interval;
    let mut sent = 0usize;
    for s in strokes {
        if !matches!(engine.phase(), Phase::Live) {
            let mut r = http_util::text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the console connection dropped after {sent} of {} key events: check the screen before sending the rest\n",
                    strokes.len()
                ),
            );
            spent_header(&mut r, &target.instance, "typing", b.spent);
            return r;
        }
        if engine.press(s.down, s.keysym).await.is_err() {
            break;
        }
        sent += 1;
        if !pace.is_zero() {
            tokio::time::sleep(pace).await;
        }
    }
    tracing::info!(
        instance = %target.instance,
        %peer,
        key_events = sent,
        "typed into the console"
    );
    // Everything written to the console before the engine may leave.
    if engine.flush().await.is_err() {
        let mut r = http_util::text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the console connection dropped before the last key events were sent: check the screen\n",
        );
        spent_header(&mut r, &target.instance, "typing", b.spent);
        return r;
    }
    engine.settled(std::time::Duration::from_secs(1)).await;
    drop(b.membership);
    let mut r = http_util::json(&json!({
        "instance": target.instance,
        "characters": chars,
        "key_events": sent,
    }));
    spent_header(&mut r, &target.instance, "typing", b.spent);
    r
}

/// `POST /api/consoles/<instance>/control`.
fn control(app: &App, instance: &str, body: &[u8], peer: SocketAddr) -> Response<Body> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Ask {
        session: u64,
    }
    let ask: Ask = match serde_json::from_slice(body) {
        Ok(a) => a,
        Err(e) => {
            return http_util::text(
                StatusCode::BAD_REQUEST,
                format!(
                    "expected JSON {{\"session\": N}} naming a viewer from /api/consoles: {e}\n"
                ),
            )
        }
    };
    let Some(engine) = app.engines.get(instance) else {
        return http_util::text(
            StatusCode::CONFLICT,
            format!("{instance} has no console-mode viewers now (control exists in console mode only)\n"),
        );
    };
    match engine.give_control(ask.session) {
        Ok(words) => {
            tracing::info!(%peer, instance, to = %words, "control handed over through the API");
            http_util::json(&json!({ "instance": instance, "control": words }))
        }
        Err(e) => http_util::text(StatusCode::NOT_FOUND, format!("{e}\n")),
    }
}
