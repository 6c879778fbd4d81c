//! `GET /api/consoles` (and `GET /api/recordings`, at the end): every console tcvnc serves (the `[[target]]`s, then the
//! instances `[discovery]` found) with name, state, region, zone, tags, where it came
//! from, its viewers and the URLs left in its budget, plus how discovery is doing; for a
//! console-mode instance whose engine runs, the engine's phase and upstream age.
//! Read-only; behind the same Host and token checks as every other path.

use std::collections::HashMap;
use std::sync::Arc;

use hyper::{Response, StatusCode};
use serde_json::json;

use crate::app::App;
use crate::config::Config;
use crate::http_util::{self, Body};

/// The JSON answer.
pub(super) fn consoles(app: &Arc<App>, cfg: &Config) -> Response<Body> {
    let snap = app.discovery.snapshot();
    let mut viewers: HashMap<String, usize> = HashMap::new();
    for s in app.live_sessions() {
        *viewers.entry(s.instance.clone()).or_default() += 1;
    }
    let consoles: Vec<serde_json::Value> = crate::discovery::entries(cfg, &snap)
        .into_iter()
        .map(|e| {
            let mut v = json!(e);
            v["viewers"] = json!(viewers.get(&e.instance).copied().unwrap_or(0));
            v["budget_left"] = json!(app.budget.remaining(&e.instance));
            // Console mode: the engine's state, and how long its upstream has been open.
            if let Some(engine) = app.engines.get(&e.instance) {
                v["engine"] = engine.status_json();
            }
            v
        })
        .collect();
    let discovery = cfg.discovery.as_ref().map(|d| {
        json!({
            "regions": d.regions,
            "refresh_s": d.refresh.as_secs(),
            "instances": snap.instances.len(),
            "refreshed": snap.refreshed.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
            "last_error": snap.last_error,
        })
    });
    let mut r = http_util::json(&json!({ "consoles": consoles, "discovery": discovery }));
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    r
}

/// `GET /api/recordings`: every recording's sidecar in `[recording] dir`, newest first,
/// for the control role only (they name viewers and their addresses).
pub(super) fn recordings(cfg: &Config, role: crate::engine::ViewerRole) -> Response<Body> {
    if role != crate::engine::ViewerRole::Control {
        return http_util::text(
            StatusCode::FORBIDDEN,
            "the recordings list needs the control token ([http] token_file), not the view-only one\n",
        );
    }
    let Some(rec) = &cfg.recording else {
        return http_util::text(
            StatusCode::NOT_FOUND,
            "recording is off: add [recording] dir = \"...\" to the config\n",
        );
    };
    match crate::record::sidecar::list(&rec.dir) {
        Ok(mut list) => {
            for s in &mut list {
                s.keyframes = Vec::new();
            }
            let mut r = http_util::json(&json!({
                "dir": rec.dir.display().to_string(),
                "input": rec.input,
                "retention_s": rec.retention.map(|d| d.as_secs()),
                "recordings": list,
            }));
            r.headers_mut().insert(
                http::header::CACHE_CONTROL,
                http::HeaderValue::from_static("no-store"),
            );
            r
        }
        Err(e) => {
            tracing::warn!(dir = %rec.dir.display(), "cannot list the recordings: {e}");
            http_util::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot list the recordings: see tcvnc's log\n",
            )
        }
    }
}
