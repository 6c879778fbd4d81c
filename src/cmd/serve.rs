//! `tcvnc serve`: the daemon from a config file; SIGHUP reloads it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use super::CmdError;
use crate::app::App;
use crate::cloud::credentials::Env;
use crate::config::Config;
use crate::daemon::ReloadOn;
use crate::listen::{self, Listeners};
use crate::shutdown::Hangup;

/// Binds (or takes from systemd) every listener, logs the addresses, and runs the
/// daemon until SIGTERM or SIGINT.
pub(super) async fn bind_and_run(
    app: Arc<App>,
    extra: impl FnOnce(&[(String, SocketAddr)]),
    reload: Option<ReloadOn>,
) -> Result<(), CmdError> {
    let listeners = Listeners::inherit_or_bind(&app.config())
        .await
        .map_err(|e| match e {
            listen::ListenError::Insecure(m) => CmdError::Usage(m),
            e => CmdError::Other(e.to_string()),
        })?;
    let addrs = listeners.addresses();
    if addrs.is_empty() {
        return Err(CmdError::Usage(
            "config error: nothing to listen on: add [http] or a [[target]] with listen".into(),
        ));
    }
    for (what, a) in &addrs {
        tracing::info!(listener = %what, address = %a, "listening");
    }
    extra(&addrs);
    crate::daemon::run_reloading(app, listeners, crate::shutdown::signal(), reload).await;
    Ok(())
}

/// `tcvnc serve`: SIGHUP reloads the config file (see [`reload`]).
///
/// # Errors
/// Config (64), credentials (69) or listener (1) problems.
pub(super) async fn run(config: Option<&Path>) -> Result<(), CmdError> {
    // First of all: from here on a SIGHUP is a reload request, never the default
    // action (terminate), whichever startup step it interrupts.
    let hangup = Hangup::install();
    let path = match config {
        Some(p) => p.to_owned(),
        None => crate::config::DEFAULT_PATHS
            .iter()
            .map(Path::new)
            .find(|p| p.exists())
            .ok_or_else(|| {
                CmdError::Usage(format!(
                    "no config file: pass -c FILE or create one of {} (see config/tcvnc.example.toml)",
                    crate::config::DEFAULT_PATHS.join(", ")
                ))
            })?
            .to_owned(),
    };
    let cfg = Config::load(&path)?;
    for lint in cfg.lints() {
        tracing::warn!("{lint}");
    }
    let app = crate::app::build(cfg, &Env::from_process()).await?;
    bind_and_run(app, |_| {}, Some(ReloadOn { path, hangup })).await
}
