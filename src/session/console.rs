//! A viewer of a console-mode target: it joins the instance's engine (starting it), waits
//! for the engine's first screen while watched (a viewer that leaves spends nothing more;
//! a refused first connection is told as an RFB reason), completes its security
//! handshake, and is served from the engine's screen until it or the engine ends. The
//! engine's URLs are had the session layer's way ([`SessionConnector`]: the fleet's
//! claim, the budget, the mint and its audit line, the dial).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

use super::{refuse, watch, ClientState, Summary};
use crate::app::{App, LiveSession};
use crate::client::ClientIo;
use crate::config::{Config, Target};
use crate::engine::{
    self, BoxFuture, Connected, Connector, Phase, Settings, ViewerEnd, ViewerInfo, ViewerRole,
};
use crate::mint;
use crate::outcome::{self, Failure};

/// How an engine gets its console: as a session would, one URL per call.
pub(crate) struct SessionConnector {
    app: Arc<App>,
    target: Target,
}

impl Connector for SessionConnector {
    fn connect(&self) -> BoxFuture<'_, Result<Connected, Failure>> {
        Box::pin(async move {
            let app = &self.app;
            let instance = self.target.instance.as_str();
            let lease = match app.fleet.as_deref() {
                None => None,
                Some(fleet) => fleet
                    .claim(
                        instance,
                        &format!("console engine of {instance}"),
                        IpAddr::V4(Ipv4Addr::LOCALHOST),
                    )
                    .await
                    .map_err(|r| Failure::from_claim(instance, r))?,
            };
            let got = mint::mint(
                &app.cloud,
                Some(super::spend(app)),
                instance,
                &self.target.region,
            )
            .await
            .map_err(Failure::from)?;
            let url = got.minted.url.redacted();
            let request_id = got.minted.request_id.clone();
            tracing::info!(
                target: "tcvnc::audit",
                engine = true,
                instance,
                request_id = %request_id,
                requests_sent = got.sent,
                budget_left = match app.fleet.as_deref() {
                    Some(f) => f.last_left(instance).unwrap_or(0),
                    None => app.budget.remaining(instance),
                },
                url = %url,
                "console URL minted"
            );
            app.metrics
                .url_age(got.minted.received_at.elapsed().as_secs_f64());
            let started = tokio::time::Instant::now();
            let up = app
                .dialer
                .dial(&got.minted.url)
                .await
                .map_err(Failure::Dial)?;
            app.metrics
                .upstream_handshake(started.elapsed().as_secs_f64());
            Ok(Connected {
                up,
                hold: lease.map(|l| Box::new(l) as Box<dyn std::any::Any + Send + Sync>),
                url,
                request_id,
            })
        })
    }
}

/// The engine settings of `target`.
fn settings(cfg: &Config, target: &Target) -> Settings {
    Settings {
        linger: target.linger,
        resume_timeout: target.resume_timeout,
        handshake_timeout: cfg.session.handshake_timeout,
        keepalive: cfg.upstream.keepalive,
        max_unanswered_pings: cfg.upstream.max_unanswered_pings,
        upstream_password: target.upstream_password.clone(),
        recording: cfg
            .recording
            .clone()
            .filter(|_| target.mode == crate::config::Mode::Console)
            .map(|r| (r, target.region.clone())),
    }
}

/// Where `target`'s engine gets its screen: the console (one URL per connection), or
/// the recording `tcvnc play` serves.
fn source(app: &Arc<App>, target: &Target, settings: Settings) -> engine::Source {
    match &app.playback {
        Some(replay) => engine::Source::Recording(replay.clone()),
        None => engine::Source::Console(
            Arc::new(SessionConnector {
                app: app.clone(),
                target: target.clone(),
            }),
            settings,
        ),
    }
}

/// Serves one console-mode viewer (greeted, authenticated when a password is set) with
/// `role`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn run<W>(
    app: &Arc<App>,
    cfg: &Config,
    client: &mut ClientIo<W>,
    target: &Target,
    live: &LiveSession,
    state: ClientState,
    role: ViewerRole,
    via: super::Via,
) -> Summary
where
    W: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut summary = Summary::accepted();
    let instance = target.instance.as_str();
    // A recording is only watched.
    let role = if app.playback.is_some() {
        ViewerRole::View
    } else {
        role
    };
    let who = ViewerInfo {
        session: live.id,
        peer: live.peer,
        via: via.as_str(),
        since: std::time::SystemTime::now(),
    };
    let joined = app.engines.join(
        instance,
        target.on_busy,
        who,
        role,
        || source(app, target, settings(cfg, target)),
        &app.shutdown,
        app.metrics.clone(),
    );
    let membership = match joined {
        Ok(m) => m,
        Err(busy) => {
            let f = Failure::Busy {
                instance: instance.to_owned(),
                holder: busy.holder,
                since: busy.since,
            };
            summary.outcome = f.label();
            summary.end = f.to_string();
            refuse(app, client, &state, &f, instance).await;
            return summary;
        }
    };
    app.metrics.engine_viewers(instance, 1);
    let _left = scopeguard(|| app.metrics.engine_viewers(instance, -1));

    // The first screen (at once when the engine runs; after the console's first full
    // update when it has just connected, so no viewer is shown an empty screen), the
    // viewer watched meanwhile. A console that sends no first update within the
    // handshake timeout is served as it is.
    let engine = membership.engine().clone();
    let first_screen = async {
        match engine.screen_ready().await {
            Phase::Ended(f) => Phase::Ended(f),
            p => tokio::time::timeout(cfg.session.handshake_timeout, engine.screen_complete())
                .await
                .unwrap_or(p),
        }
    };
    let phase = tokio::select! {
        p = first_screen => p,
        g = watch::gone(client) => {
            let f = Failure::Left(g);
            summary.outcome = f.label();
            summary.end = f.to_string();
            return summary;
        }
        () = app.shutdown.cancelled() => Phase::Ended(Arc::new(Failure::Shutdown)),
    };
    if let Phase::Ended(f) = phase {
        summary.outcome = f.label();
        summary.end = f.to_string();
        refuse(app, client, &state, &f, instance).await;
        return summary;
    }
    let ready = match state {
        ClientState::Greeted(g) => g.accept(client).await,
        ClientState::Authed(a) => a.finish(client).await,
        ClientState::Raw => unreachable_raw(),
    };
    match ready {
        Ok(r) => summary.security = r.security,
        Err(e) => {
            summary.outcome = "client_handshake";
            summary.end = format!("client handshake failed: {e}");
            return summary;
        }
    }
    let opts = engine::ViewerOpts {
        init_timeout: cfg.session.handshake_timeout,
    };
    let cancel = app.shutdown.token().child_token();
    let end = engine::serve(
        &membership,
        client,
        opts,
        &cancel,
        &live.counters,
        &app.metrics,
    )
    .await;
    drop(membership);
    match end {
        ViewerEnd::Left => {
            summary.close = "client_closed";
            summary.end = "the viewer closed".into();
        }
        ViewerEnd::Lost(e) => {
            summary.close = "client_lost";
            summary.end = format!("viewer lost: {e}");
        }
        ViewerEnd::Refused(reason) => {
            tracing::warn!(reason = %reason, "console-mode viewer closed");
            summary.close = "viewer_refused";
            summary.end = reason.clone();
            client.close(outcome::CLOSE_POLICY, &reason).await;
        }
        ViewerEnd::Engine(f) => {
            summary.close = f.label();
            summary.end = f.to_string();
            client.close(f.close_code(), &f.viewer_text()).await;
        }
        ViewerEnd::TakenOver(by) => {
            let f = Failure::TakenOver {
                instance: instance.to_owned(),
            };
            tracing::info!(by = %by, "console taken over by another viewer");
            summary.close = f.label();
            summary.end = format!("{f} ({by})");
            client.close(f.close_code(), &f.viewer_text()).await;
        }
        ViewerEnd::Shutdown => {
            summary.close = "shutdown";
            summary.end = "tcvnc is shutting down".into();
            client
                .close(outcome::CLOSE_GOING_AWAY, "tcvnc is shutting down")
                .await;
        }
    }
    summary
}

/// Console-mode targets always speak RFB (config refuses `transparent` with `console`).
fn unreachable_raw() -> Result<crate::rfb::handshake::Ready, crate::rfb::handshake::Error> {
    Err(crate::rfb::handshake::Error::Protocol(
        "a console-mode viewer without an RFB greeting".into(),
    ))
}

/// Runs `f` when dropped.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

/// A console's engine lent to a request that is not a viewer (a screenshot, typing).
pub(crate) struct Borrowed {
    /// Held while the request uses the engine.
    pub(crate) membership: engine::Membership,
    /// A console URL was spent for it (no engine was running).
    pub(crate) spent: bool,
}

/// The running engine of `target`'s console, or one started for this request (one URL
/// spent; the engine then stays for `linger` in console mode, and leaves at once for a
/// bridge-mode target), once its screen holds the console's first full update.
///
/// # Errors
/// Why the console cannot be had: busy with a bridged viewer, the engine's refusal, or
/// its time limit.
pub(crate) async fn borrow(
    app: &Arc<App>,
    cfg: &Config,
    target: &Target,
    role: ViewerRole,
    peer: std::net::SocketAddr,
) -> Result<Borrowed, Arc<Failure>> {
    let instance = target.instance.as_str();
    if target.mode != crate::config::Mode::Console {
        // A bridged viewer holds the console itself: a second connection would disturb it.
        if let Some(s) = app
            .live_sessions()
            .into_iter()
            .find(|s| s.instance == instance)
        {
            return Err(Arc::new(Failure::Busy {
                instance: instance.to_owned(),
                holder: format!("{} (session {}, bridge mode)", s.peer, s.id),
                since: "now".into(),
            }));
        }
    }
    let running = app
        .engines
        .get(instance)
        .is_some_and(|e| !matches!(e.phase(), Phase::Ended(_)));
    let who = ViewerInfo {
        session: app.next_session_id(),
        peer,
        via: "api",
        since: std::time::SystemTime::now(),
    };
    let mut settings = settings(cfg, target);
    if target.mode != crate::config::Mode::Console {
        settings.linger = std::time::Duration::ZERO;
    }
    let membership = app
        .engines
        .join(
            instance,
            crate::config::OnBusy::Share,
            who,
            role,
            || source(app, target, settings),
            &app.shutdown,
            app.metrics.clone(),
        )
        .map_err(|b| {
            Arc::new(Failure::Busy {
                instance: instance.to_owned(),
                holder: b.holder,
                since: b.since,
            })
        })?;
    // The budget's wait, the dial and the handshake, and the first full update.
    let limit = cfg.budget.max_wait + cfg.session.handshake_timeout * 2;
    let phase = tokio::select! {
        p = tokio::time::timeout(limit, membership.engine().screen_complete()) => p,
        () = app.shutdown.cancelled() => return Err(Arc::new(Failure::Shutdown)),
    };
    match phase {
        Ok(Phase::Ended(f)) => Err(f),
        Ok(_) => Ok(Borrowed {
            membership,
            spent: !running,
        }),
        Err(_) => Err(Arc::new(Failure::HandshakeTimeout {
            seconds: limit.as_secs(),
        })),
    }
}
