//! The browser console: `GET /` lists the targets and the discovered instances (name,
//! state, region, tags, who is watching: role, address, since when), each linking to
//! noVNC already pointed at `/vnc/<instance>` (and view only, and a screenshot);
//! noVNC's files are served from the web root with no path escape, correct MIME types
//! and caching headers.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use hyper::{Response, StatusCode};

use crate::config::Config;
use crate::discovery::Snapshot;
use crate::http_util::{self, Body};

/// Debian's noVNC package location, used when `http.web_root` is not set.
pub(crate) const DEBIAN_NOVNC: &str = "/usr/share/novnc";

/// The web root in use, if any.
pub fn web_root(cfg: &Config) -> Option<PathBuf> {
    match cfg.http.as_ref().and_then(|h| h.web_root.clone()) {
        Some(p) => Some(p),
        None => Path::new(DEBIAN_NOVNC)
            .is_dir()
            .then(|| PathBuf::from(DEBIAN_NOVNC)),
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Who watches `instance`: a console-mode engine's viewers (role, address, how, since
/// when), or the bridged sessions' addresses.
fn watchers(app: &crate::app::App, instance: &str) -> String {
    let mut lines = Vec::new();
    if let Some(engine) = app.engines.get(instance) {
        for v in engine.viewer_list() {
            let field = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
            lines.push(format!(
                "{} <code>{}</code> ({}, since {})",
                html_escape(&field("role")),
                html_escape(&field("peer")),
                html_escape(&field("via")),
                html_escape(&field("since"))
            ));
        }
    }
    for s in app.live_sessions() {
        if s.instance == instance && app.engines.get(instance).is_none() {
            lines.push(format!(
                "control <code>{}</code> (bridged)",
                html_escape(&s.peer.to_string())
            ));
        }
    }
    if lines.is_empty() {
        "-".into()
    } else {
        lines.join("<br>")
    }
}

fn index(
    app: &crate::app::App,
    cfg: &Config,
    snap: &Snapshot,
    root: Option<&Path>,
) -> Response<Body> {
    let mut rows = String::new();
    for e in crate::discovery::entries(cfg, snap) {
        let id = html_escape(&e.instance);
        let console_mode = e.mode == "console";
        let mut link = match root {
            // Console mode keeps the viewer connected itself: noVNC's own reconnect is off.
            Some(_) => {
                let mut l = format!(
                    "<a href=\"vnc.html?path=vnc/{id}&amp;autoconnect=true&amp;reconnect=false&amp;resize=scale\">open console</a>"
                );
                if console_mode {
                    l.push_str(&format!(
                        " · <a href=\"vnc.html?path=vnc/{id}%3Fview_only%3D1&amp;view_only=true&amp;autoconnect=true&amp;reconnect=false&amp;resize=scale\">view only</a>"
                    ));
                }
                l
            }
            None => "no web root".to_owned(),
        };
        if e.mode != "transparent" {
            link.push_str(&format!(
                " · <a href=\"vnc/{id}/screenshot.png\">screenshot</a>"
            ));
        }
        let tcp = e
            .tcp
            .map(|a| format!("vnc://{a}"))
            .unwrap_or_else(|| "-".into());
        let tags: Vec<String> = e.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        rows.push_str(&format!(
            "<tr><td><code>{id}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{link}</td><td>{}</td></tr>\n",
            html_escape(e.name.as_deref().unwrap_or("-")),
            html_escape(e.state.as_deref().unwrap_or("-")),
            html_escape(&e.region),
            html_escape(&tags.join(", ")),
            html_escape(&tcp),
            watchers(app, &e.instance)
        ));
    }
    let help = if root.is_some() {
        String::new()
    } else {
        "<p class=\"warn\">The browser console needs noVNC: install it (<code>apt-get install novnc</code>) \
         or set <code>http.web_root</code> to a noVNC checkout. Native viewers work without it.</p>"
            .to_owned()
    };
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>tcvnc consoles</title>\
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.3em 1em;text-align:left}}.warn{{color:#a40}}</style></head>\
<body><h1>tcvnc consoles</h1>{help}<table><tr><th>instance</th><th>name</th><th>state</th><th>region</th><th>tags</th><th>native viewer</th><th>browser</th><th>viewers</th></tr>\n{rows}</table>\
<p>Each connection spends one console URL of the instance's budget ({} per minute); in console mode viewers share one, \
and a screenshot of a console no one watches spends one.</p></body></html>\n",
        cfg.budget.reconnects_per_minute
    );
    let mut r = http_util::text(StatusCode::OK, page);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache"),
    );
    r
}

/// MIME type by extension.
pub(crate) fn mime(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
    {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "wasm" => "application/wasm",
        "txt" | "md" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Maps a URL path to a file under `root`, refusing anything that could escape it.
pub fn resolve(root: &Path, url_path: &str) -> Option<PathBuf> {
    let decoded = percent_encoding::percent_decode_str(url_path)
        .decode_utf8()
        .ok()?;
    let mut out = root.to_path_buf();
    for seg in decoded.split('/') {
        if seg.is_empty() {
            continue;
        }
        if seg.starts_with('.') || seg.contains(['\\', '\0', ':']) {
            return None;
        }
        out.push(seg);
    }
    Some(out)
}

/// Serves `/` (the targets and discovered instances) and static files.
pub fn serve(app: &crate::app::App, cfg: &Config, snap: &Snapshot, path: &str) -> Response<Body> {
    let root = web_root(cfg);
    if path == "/" || path == "/index.html" {
        return index(app, cfg, snap, root.as_deref());
    }
    let not_found = || http_util::text(StatusCode::NOT_FOUND, "not found\n");
    let Some(root) = root else {
        return not_found();
    };
    let Some(file) = resolve(&root, path) else {
        return http_util::text(StatusCode::BAD_REQUEST, "bad path\n");
    };
    // Regular files of at most 32 MiB; anything else (directories, devices) is not found.
    if !std::fs::metadata(&file).is_ok_and(|m| m.is_file() && m.len() <= 32 << 20) {
        return not_found();
    }
    let Ok(data) = std::fs::read(&file) else {
        return not_found();
    };
    let mut r = Response::new(http_body_util::Full::new(Bytes::from(data)));
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(mime(&file)),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("public, max-age=300"),
    );
    h.insert(
        "x-content-type-options",
        http::HeaderValue::from_static("nosniff"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_path_escape() {
        let root = Path::new("/srv/novnc");
        assert_eq!(
            resolve(root, "/vnc.html"),
            Some(PathBuf::from("/srv/novnc/vnc.html"))
        );
        assert_eq!(
            resolve(root, "/app/ui.js"),
            Some(PathBuf::from("/srv/novnc/app/ui.js"))
        );
        for bad in [
            "/../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/app/../../x",
            "/.git/config",
            "/a\\b",
            "/%00",
            "/c:/x",
        ] {
            assert_eq!(resolve(root, bad), None, "{bad}");
        }
    }

    #[test]
    fn mime_types() {
        assert_eq!(mime(Path::new("a.js")), "text/javascript; charset=utf-8");
        assert_eq!(mime(Path::new("a.html")), "text/html; charset=utf-8");
        assert_eq!(mime(Path::new("a.bin")), "application/octet-stream");
    }
}
