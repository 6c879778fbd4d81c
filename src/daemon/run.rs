//! The serve loop: listeners served, housekeeping, SIGHUP reload requests, then draining.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::app::App;
use crate::listen::{ListenerRegistry, Listeners};
use crate::shutdown::Hangup;

use super::reload;

/// Where reloads come from: each SIGHUP re-reads `path`.
#[derive(Debug)]
pub struct ReloadOn {
    /// The config file to re-read.
    pub path: PathBuf,
    /// The SIGHUP handler, installed as early as possible.
    pub hangup: Hangup,
}

/// Serves `listeners` until `shutdown` resolves (or `app.shutdown` is triggered), then
/// stops accepting and drains sessions within `session.shutdown_grace`. Returns whether
/// every session ended in time.
pub async fn run(app: Arc<App>, listeners: Listeners, shutdown: impl Future<Output = ()>) -> bool {
    run_reloading(app, listeners, shutdown, None).await
}

/// [`run`], also reloading the configuration at every request `reload` brings (see
/// [`reload::on_request`]; a reload in progress finishes before shutdown is looked at).
pub async fn run_reloading(
    app: Arc<App>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
    reload: Option<ReloadOn>,
) -> bool {
    let mut registry = ListenerRegistry::start(app.clone(), listeners);
    let housekeeping = app.clone();
    app.shutdown.spawn(async move {
        const SUMMARY_S: u64 = 10;
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(SUMMARY_S));
        let mut n = 0u64;
        loop {
            tokio::select! {
                _ = housekeeping.shutdown.cancelled() => return,
                _ = tick.tick() => {
                    housekeeping.summaries.flush(SUMMARY_S);
                    n += 1;
                    if n % 6 == 0 {
                        housekeeping.peer_limiter.shrink();
                        housekeeping.guard.shrink();
                        housekeeping.cloud.housekeeping();
                    }
                }
            }
        }
    });
    let recordings = app.clone();
    app.shutdown.spawn(async move {
        // `[recording] retention`: at start, then hourly (the config of the moment).
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            tokio::select! {
                _ = recordings.shutdown.cancelled() => return,
                _ = tick.tick() => {
                    let cfg = recordings.config();
                    if let Some((dir, keep)) = cfg.recording.as_ref().and_then(|r| Some((r.dir.clone(), r.retention?))) {
                        let _ = tokio::task::spawn_blocking(move || {
                            crate::record::sidecar::sweep(&dir, keep, std::time::SystemTime::now())
                        })
                        .await;
                    }
                }
            }
        }
    });
    let config = app.clone();
    app.shutdown.spawn(crate::discovery::run(
        app.discovery.clone(),
        app.cloud.clone(),
        move || config.config(),
        app.shutdown.clone(),
    ));
    if let Some(fleet) = &app.fleet {
        app.shutdown.spawn(fleet.watch(app.shutdown.clone()));
    }
    app.ready.store(true, Ordering::Relaxed);
    crate::systemd::notify_ready(app.live_sessions().len());
    if let Some(interval) = crate::systemd::watchdog_interval() {
        let sd = app.shutdown.clone();
        app.shutdown.spawn(crate::systemd::watchdog(interval, sd));
    }
    let (path, mut hangup) = match reload {
        Some(r) => (Some(r.path), r.hangup),
        None => (None, Hangup::none()),
    };
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            () = app.shutdown.cancelled() => break,
            () = hangup.recv() => {
                if let Some(p) = &path {
                    reload::on_request(&app, &mut registry, p).await;
                }
            }
        }
    }
    app.ready.store(false, Ordering::Relaxed);
    crate::systemd::notify_stopping();
    let live = app.live_sessions().len();
    tracing::info!(
        sessions = live,
        grace_s = app.config().session.shutdown_grace.as_secs(),
        "draining"
    );
    let drained = app
        .shutdown
        .drain(app.config().session.shutdown_grace)
        .await;
    if drained {
        tracing::info!("all sessions ended; bye");
    } else {
        tracing::warn!(
            still_running = app.shutdown.running(),
            "grace period over with sessions still running; exiting anyway"
        );
    }
    drained
}
