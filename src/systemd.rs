//! systemd integration: `READY=1` once listeners accept, `RELOADING=1` … `READY=1`
//! around a configuration reload, `STOPPING=1` on shutdown, watchdog pings at half
//! `WatchdogSec=`, and listeners inherited by socket activation. Everything is a no-op
//! outside systemd.

use std::time::Duration;

use sd_notify::NotifyState;

use crate::shutdown::Shutdown;

/// Tells systemd the service is ready.
pub(crate) fn notify_ready(sessions: usize) {
    let status = format!("serving; {sessions} sessions");
    if let Err(e) = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(&status)]) {
        tracing::warn!(error = %e, "cannot notify systemd (READY=1)");
    }
}

/// Tells systemd a configuration reload has begun (with `MONOTONIC_USEC`, which
/// `Type=notify-reload` requires); [`notify_ready`] ends it.
pub(crate) fn notify_reloading() {
    let mut states = vec![
        NotifyState::Reloading,
        NotifyState::Status("reloading the configuration"),
    ];
    match NotifyState::monotonic_usec_now() {
        Ok(now) => states.push(now),
        Err(e) => tracing::debug!(error = %e, "no monotonic clock for MONOTONIC_USEC"),
    }
    if let Err(e) = sd_notify::notify(&states) {
        tracing::warn!(error = %e, "cannot notify systemd (RELOADING=1)");
    }
}

/// Tells systemd the service is stopping.
pub(crate) fn notify_stopping() {
    if let Err(e) = sd_notify::notify(&[
        NotifyState::Stopping,
        NotifyState::Status("draining sessions"),
    ]) {
        tracing::warn!(error = %e, "cannot notify systemd (STOPPING=1)");
    }
}

/// The watchdog ping interval (half of `WatchdogSec=`), when systemd asks for one.
pub(crate) fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2)
}

/// Pings the watchdog until shutdown. The pings come from the runtime that serves
/// sessions, so a wedged runtime stops them and systemd restarts the service.
pub(crate) async fn watchdog(interval: Duration, shutdown: Shutdown) {
    let mut tick = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {
                if let Err(e) = sd_notify::notify(&[NotifyState::Watchdog]) {
                    tracing::warn!(error = %e, "cannot ping the systemd watchdog");
                }
            }
        }
    }
}

/// Listening sockets passed by systemd, with their `FileDescriptorName=`.
///
/// # Errors
/// A passed socket that is not a TCP listener, or names that do not match the count.
pub(crate) fn inherited_listeners() -> Result<Vec<(String, std::net::TcpListener)>, String> {
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() == 0 {
        return Ok(Vec::new());
    }
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .unwrap_or_default()
        .split(':')
        .map(str::to_owned)
        .collect();
    let mut out = Vec::new();
    for i in 0..fds.len() {
        let name = names.get(i).cloned().filter(|n| !n.is_empty()).ok_or_else(|| {
            format!("socket {i} passed by systemd has no name: set FileDescriptorName= to a target's instance id or to http")
        })?;
        let l = fds
            .take_tcp_listener(i)
            .map_err(|e| format!("socket {name} passed by systemd is not a TCP listener: {e}"))?
            .ok_or_else(|| format!("socket {name} passed by systemd was already taken"))?;
        l.set_nonblocking(true).map_err(|e| e.to_string())?;
        tracing::info!(name, address = ?l.local_addr().ok(), "listener inherited from systemd");
        out.push((name, l));
    }
    Ok(out)
}
