//! The POST paths: handing a console-mode console's control to another viewer
//! (`/api/consoles/<instance>/control`, JSON `{"session": N}` naming the viewer as
//! `/api/consoles` lists it). Each needs the control role (the control token, or no token
//! on loopback), refuses cross-site requests (an `Origin` that is not this server, as for
//! websockets), and reads at most [`MAX_BODY`] bytes.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::json;

use crate::app::App;
use crate::config::Config;
use crate::engine::ViewerRole;
use crate::http_util::{self, Body};

/// The largest request body taken.
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// The instance part of `path` for an action, and which action.
fn action(path: &str) -> Option<(&str, &str)> {
    if let Some(rest) = path.strip_prefix("/api/consoles/") {
        return rest
            .strip_suffix("/control")
            .filter(|i| !i.is_empty() && !i.contains('/'))
            .map(|i| (i, "control"));
    }
    None
}

/// Whether `path` is one of the POST paths.
pub(super) fn is_action(path: &str) -> bool {
    action(path).is_some()
}

/// Serves a POST to an action path.
pub(super) async fn post(
    app: &Arc<App>,
    cfg: &Config,
    req: Request<Incoming>,
    peer: SocketAddr,
    path: &str,
    role: ViewerRole,
) -> Response<Body> {
    let Some((key, what)) = action(path) else {
        return http_util::text(StatusCode::NOT_FOUND, "no such action\n");
    };
    if let Err(reason) = super::http::origin_allowed(cfg, &req) {
        tracing::warn!(%peer, path, "{reason}");
        return http_util::text(StatusCode::FORBIDDEN, format!("{reason}\n"));
    }
    if role != ViewerRole::Control {
        return http_util::text(
            StatusCode::FORBIDDEN,
            "this needs the control role: the view-only token cannot act on a console\n",
        );
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
        _ => {
            return http_util::text(
                StatusCode::NOT_FOUND,
                format!("no console {key:?} (see /api/consoles)\n"),
            )
        }
    };
    let body = match http_util::read_body(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return http_util::text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("{e} (at most {MAX_BODY} bytes)\n"),
            )
        }
    };
    match what {
        "control" => control(app, &target.instance, &body, peer),
        _ => http_util::text(StatusCode::NOT_FOUND, "no such action\n"),
    }
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
