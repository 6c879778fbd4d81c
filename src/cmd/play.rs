//! `tcvnc play FILE`: a recording served read-only, by the daemon's own listeners (RFB
//! over TCP, noVNC and websockets over HTTP) and a console-mode engine whose console is
//! the recording (`engine::replay`): any viewer, any encoding, all view-only.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::CmdError;
use crate::cloud::credentials::Env;
use crate::config::Config;
use crate::engine::replay::Replay;
use crate::record::sidecar;

/// The instance a recording shows: its sidecar's, else its file name's, else a stand-in.
fn instance_of(file: &Path) -> (String, String) {
    let side = std::fs::read(sidecar::path_for(file))
        .ok()
        .and_then(|b| serde_json::from_slice::<sidecar::Sidecar>(&b).ok());
    let region = side
        .as_ref()
        .map_or_else(|| "ap-guangzhou".to_owned(), |s| s.region.clone());
    let valid = |id: &str| {
        crate::cloud::instance_id_valid(crate::cloud::Product::Cvm, id)
            || crate::cloud::instance_id_valid(crate::cloud::Product::Lighthouse, id)
    };
    if let Some(s) = side.filter(|s| valid(&s.instance)) {
        return (s.instance, region);
    }
    let stem = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for len in [12, 14] {
        if let Some(id) = stem.get(..len).filter(|id| valid(id)) {
            return (id.to_owned(), region);
        }
    }
    ("ins-playback".to_owned(), region)
}

fn play_config(
    instance: &str,
    region: &str,
    tcp: SocketAddr,
    http: SocketAddr,
) -> Result<Config, CmdError> {
    let text = format!(
        r#"
[cloud]
region = "{region}"
[credentials]
secret_id = "AKIDtcvncplaybacknotused"
secret_key = "tcvnc-play-calls-no-api"
[http]
listen = "{http}"
[[target]]
instance = "{instance}"
listen = "{tcp}"
mode = "console"
on_busy = "share"
"#
    );
    Ok(Config::parse(&text, "<play>", Path::new("."))?)
}

/// Serves `file` until SIGINT/SIGTERM.
///
/// # Errors
/// Usage (64) for a file that is not a recording; 1 when a listener cannot bind.
pub(super) async fn run(
    file: &Path,
    tcp: SocketAddr,
    http: SocketAddr,
    speed: f64,
    from: Duration,
) -> Result<(), CmdError> {
    // Refuse what cannot be played before listening.
    let checked = file.to_owned();
    let init = tokio::task::spawn_blocking(move || crate::record::source::open(&checked))
        .await
        .map_err(|e| CmdError::Other(e.to_string()))?
        .map_err(|e| CmdError::Usage(format!("{}: {e}", file.display())))?
        .init;
    let (instance, region) = instance_of(file);
    let cfg = play_config(&instance, &region, tcp, http)?;
    let cloud = crate::app::cloud_client(&cfg, None, &Env::default(), None).await?;
    let mut app = crate::app::App::new(
        cfg,
        cloud,
        Arc::new(crate::metrics::Metrics::new()),
        crate::shutdown::Shutdown::new(),
    )?;
    app.playback = Some(Arc::new(Replay {
        path: file.to_owned(),
        speed,
        from,
    }));
    let app = Arc::new(app);
    let shown = file.display().to_string();
    super::serve::bind_and_run(
        app,
        |addrs| {
            let find = |w: &str| {
                addrs
                    .iter()
                    .find(|(n, _)| n.starts_with(w))
                    .map(|(_, a)| *a)
            };
            let tcp = find("tcp").unwrap_or(tcp);
            let http = find("http").unwrap_or(http);
            println!(
                "tcvnc play: {shown} ({}x{}, \"{}\"), {speed}x{}",
                init.width,
                init.height,
                init.name,
                if from.is_zero() {
                    String::new()
                } else {
                    format!(" from {}", humantime::format_duration(from))
                }
            );
            println!("  native viewer:  vncviewer {}::{}", tcp.ip(), tcp.port());
            println!("  browser:        http://{http}/vnc.html?path=vnc/{instance}");
            println!("Playback starts when a viewer connects. Press Ctrl-C to stop.");
        },
        None,
    )
    .await
}
