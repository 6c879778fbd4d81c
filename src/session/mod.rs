//! One client, start to end: admit (rate, unauthenticated slots) → greet (RFB) →
//! authenticate locally if configured → take a session slot → claim the instance's
//! console → mint (budget, typed outcomes) → dial → the console's handshake → bridge →
//! close both sides with the right words. While tcvnc works for it before the bridge,
//! the client is watched: one that leaves stops the work and spends nothing more.
//! Per-connection state lives here, never on shared state.

mod console;
/// The mint moved to [`crate::mint`] (engines use it too); this path stays for callers
/// of `tcvnc::session::mint`.
pub use crate::mint;
pub(crate) use console::borrow;
mod end;
mod watch;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{field::Empty, Instrument};

use crate::app::{App, LiveSession};
use crate::bridge::{self, Counters, Limits};
use crate::claims::ConsoleGuard;
use crate::client::ClientIo;
use crate::config::{Config, Target};
use crate::engine::ViewerRole;
use crate::guard::Crowded;
use crate::mint::Spend;
use crate::outcome::{self, Failure};
use crate::rfb::handshake::{self, Authenticated, Greeted, Ready};
use crate::upstream::Upstream;

/// Which listener a client came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Raw TCP (native viewer).
    Tcp,
    /// Websocket (browser).
    Ws,
}

impl Via {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Via::Tcp => "tcp",
            Via::Ws => "ws",
        }
    }
}

/// Where the client is in its RFB handshake (what form a refusal must take).
enum ClientState {
    /// Nothing exchanged (or a transparent target): only a close can tell it.
    Raw,
    Greeted(Greeted),
    Authed(Authenticated),
}

/// Logs `failure` (repeats summarised), tells the client in the form its state reads
/// (an RFB reason, then a websocket close with the same words), and closes it.
async fn refuse<W: AsyncRead + AsyncWrite + Unpin + Send>(
    app: &App,
    client: &mut ClientIo<W>,
    state: &ClientState,
    failure: &Failure,
    instance: &str,
) {
    failure.log(&app.summaries, instance);
    let reason = failure.viewer_text();
    let told = match state {
        ClientState::Greeted(g) => g.refuse(client, &reason).await,
        ClientState::Authed(a) => a.refuse(client, &reason).await,
        ClientState::Raw => Ok(()),
    };
    if let Err(e) = told {
        tracing::debug!(error = %e, "could not tell the client why");
    }
    client.close(failure.close_code(), &reason).await;
}

/// Refuses a client at admission (rate, unauthenticated connections) without reading
/// from it or holding it: an RFB 3.3 refusal with the reason (any viewer reads it), or a
/// websocket close; then a short drain of what the viewer answers, so that closing does
/// not reset the connection before it has read the reason.
async fn refuse_at_admission<W: AsyncRead + AsyncWrite + Unpin + Send>(
    app: &App,
    client: &mut ClientIo<W>,
    failure: &Failure,
    target: &Target,
) {
    failure.log(&app.summaries, &target.instance);
    let reason = failure.viewer_text();
    match client {
        ClientIo::Tcp(s) if !target.transparent() => {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let refused = async {
                s.write_all(&handshake::refusal_unread(&reason)).await?;
                s.shutdown().await?;
                let mut answer = [0u8; 16];
                let _ = s.read(&mut answer).await?;
                Ok::<_, std::io::Error>(())
            };
            let _ = bounded(app, Duration::from_secs(1), refused).await;
        }
        client => client.close(failure.close_code(), &reason).await,
    }
}

/// Serves one client of `target` until it ends. `role` is what the listener allows it
/// (a websocket's token or `?view_only=1`; console mode's view-only password lowers it
/// further).
pub async fn serve<W>(
    app: Arc<App>,
    mut client: ClientIo<W>,
    peer: SocketAddr,
    via: Via,
    target: Target,
    role: ViewerRole,
) where
    W: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let id = app.next_session_id();
    let span = tracing::info_span!(
        "conn",
        id,
        peer = %peer,
        via = via.as_str(),
        instance = %target.instance,
        request_id = Empty,
    );
    async move {
        let cfg = app.config();
        let started = Instant::now();
        // 1. Admission, before anything is held: the address's connection rate, then a
        // slot among the connections that have not yet greeted and authenticated.
        if let Err(retry_after) = app.peer_limiter.check(peer.ip()) {
            let failure = Failure::PeerRate {
                peer: peer.ip(),
                per_minute: app.peer_limiter.per_minute(),
                retry_after,
            };
            app.metrics.close(failure.label());
            refuse_at_admission(&app, &mut client, &failure, &target).await;
            return;
        }
        let pending = match app.unauthenticated.admit(peer.ip()) {
            Ok(p) => p,
            Err(crowded) => {
                let failure = Failure::Crowded(crowded);
                app.metrics.close(failure.label());
                refuse_at_admission(&app, &mut client, &failure, &target).await;
                return;
            }
        };
        // 2. Greeting and local authentication, before a session slot is taken.
        let (state, vnc_role) = match hello(&app, &cfg, &mut client, peer, &target).await {
            Ok(s) => s,
            Err((outcome, end)) => {
                app.metrics.close(outcome);
                if app.summaries.first(outcome, &target.instance) {
                    tracing::info!(outcome, end = %end, duration_ms = started.elapsed().as_millis() as u64, "session closed");
                } else {
                    tracing::debug!(outcome, end = %end, "session closed");
                }
                return;
            }
        };
        drop(pending);
        // 3. A session slot, taken only by clients that have greeted (and authenticated).
        let Ok(_permit) = app.sessions.clone().try_acquire_owned() else {
            let failure = Failure::Capacity {
                max: cfg.session.max_sessions,
            };
            app.metrics.close(failure.label());
            refuse(&app, &mut client, &state, &failure, &target.instance).await;
            return;
        };
        let live = Arc::new(LiveSession {
            id,
            instance: target.instance.clone(),
            peer,
            counters: Counters::default(),
        });
        app.register(live.clone());
        app.metrics.session_open(&target.instance);
        let summary = if target.mode == crate::config::Mode::Console {
            let role = role.min(vnc_role);
            console::run(&app, &cfg, &mut client, &target, &live, state, role, via).await
        } else if role == ViewerRole::View {
            // A bridge gives the viewer the console itself: nothing could hold its input back.
            let f = Failure::ViewOnlyNeedsConsoleMode {
                instance: target.instance.clone(),
            };
            refuse(&app, &mut client, &state, &f, &target.instance).await;
            Summary {
                outcome: f.label(),
                end: f.to_string(),
                ..Summary::accepted()
            }
        } else {
            run(&app, &cfg, &mut client, peer, &target, &live, state).await
        };
        app.unregister(id);
        let c = &live.counters;
        let (up, down) = (
            c.to_upstream.load(Ordering::Relaxed),
            c.to_client.load(Ordering::Relaxed),
        );
        app.metrics
            .session_end(&target.instance, summary.outcome, up, down);
        app.metrics.close(if summary.outcome == "ok" {
            summary.close
        } else {
            summary.outcome
        });
        let loud = summary.outcome == "ok" || app.summaries.first("closed", summary.outcome);
        if loud {
            tracing::info!(
                outcome = summary.outcome,
                bytes_to_upstream = up,
                bytes_to_client = down,
                duration_ms = started.elapsed().as_millis() as u64,
                url_age_ms = summary.url_age.map(|d| d.as_millis() as u64),
                security = summary.security,
                end = %summary.end,
                "session closed"
            );
        } else {
            tracing::debug!(outcome = summary.outcome, end = %summary.end, "session closed");
        }
    }
    .instrument(span)
    .await;
}

/// The RFB greeting (bounded by the short greeting timeout) and, for targets with a
/// password, local VNC authentication (bounded by the handshake timeout: a person may be
/// typing). Errors are `(outcome label, what happened)`; the client was told what it can
/// be told.
async fn hello<W>(
    app: &App,
    cfg: &Config,
    client: &mut ClientIo<W>,
    peer: SocketAddr,
    target: &Target,
) -> Result<(ClientState, ViewerRole), (&'static str, String)>
where
    W: AsyncRead + AsyncWrite + Unpin + Send,
{
    if target.transparent() {
        return Ok((ClientState::Raw, ViewerRole::Control));
    }
    let g = match bounded(app, cfg.session.greeting_timeout, handshake::greet(client)).await {
        Ok(Ok(g)) => g,
        Ok(Err(e)) => return Err(("client_handshake", format!("client handshake failed: {e}"))),
        Err(Stopped) => {
            return Err((
                "client_handshake",
                format!(
                    "client sent no RFB version within {} s",
                    cfg.session.greeting_timeout.as_secs()
                ),
            ))
        }
    };
    tracing::debug!(version = ?g.version, "client greeted");
    // The control password, then (console mode) the view-only one.
    let passwords: Vec<(&crate::redact::Secret, ViewerRole)> = [
        target.password.as_ref().map(|p| (p, ViewerRole::Control)),
        target.view_password.as_ref().map(|p| (p, ViewerRole::View)),
    ]
    .into_iter()
    .flatten()
    .collect();
    if passwords.is_empty() {
        return Ok((ClientState::Greeted(g), ViewerRole::Control));
    }
    let secrets: Vec<&crate::redact::Secret> = passwords.iter().map(|(p, _)| *p).collect();
    let authenticated = bounded(
        app,
        cfg.session.handshake_timeout,
        g.authenticate_any(client, &secrets, &app.guard, peer.ip(), &target.instance),
    )
    .await;
    match authenticated {
        Ok(Ok((a, i))) => Ok((ClientState::Authed(a), passwords[i].1)),
        Ok(Err(e)) => {
            let label = match e {
                handshake::Error::Throttled(_) => "auth_throttled",
                _ => "auth_failed",
            };
            client
                .close(outcome::CLOSE_POLICY, "authentication failed")
                .await;
            Err((label, format!("local authentication failed: {e}")))
        }
        Err(Stopped) => Err((
            "client_handshake",
            "local authentication did not finish in time".into(),
        )),
    }
}

/// A handshake phase ended by its time limit or by shutdown.
#[derive(Debug)]
struct Stopped;

/// Runs one handshake phase, bounded by `limit` and by shutdown, so that draining never
/// waits for a client that stalls mid-handshake.
async fn bounded<T>(
    app: &App,
    limit: Duration,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, Stopped> {
    bounded_by(app.shutdown.token(), limit, fut).await
}

/// [`bounded`] for the phases after the console is claimed: `token` fires on shutdown
/// and on takeover.
async fn bounded_by<T>(
    token: &CancellationToken,
    limit: Duration,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, Stopped> {
    tokio::select! {
        _ = token.cancelled() => Err(Stopped),
        r = tokio::time::timeout(limit, fut) => r.map_err(|_| Stopped),
    }
}

/// Why a phase was stopped: shutdown, a takeover, or its time limit.
fn stopped_failure(
    app: &App,
    cancel: &CancellationToken,
    instance: &str,
    limit: Duration,
) -> Failure {
    if app.shutdown.is_cancelled() {
        Failure::Shutdown
    } else if cancel.is_cancelled() {
        Failure::TakenOver {
            instance: instance.to_owned(),
        }
    } else {
        Failure::HandshakeTimeout {
            seconds: limit.as_secs(),
        }
    }
}

struct Summary {
    /// `ok` once bridged, else a fixed refusal label (metrics).
    outcome: &'static str,
    /// Why a bridged session ended, a fixed label (metrics).
    close: &'static str,
    url_age: Option<Duration>,
    security: &'static str,
    end: String,
}

impl Summary {
    /// A session that got past admission: `ok` until a refusal or an end says otherwise.
    fn accepted() -> Summary {
        Summary {
            outcome: "ok",
            close: "refused",
            url_age: None,
            security: "-",
            end: String::new(),
        }
    }
}

/// What a mint spends from: the instance's budget (or the fleet's), what is known of
/// instance states, the metrics.
fn spend(app: &App) -> Spend<'_> {
    Spend {
        budget: &app.budget,
        states: &app.states,
        metrics: &app.metrics,
        fleet: app.fleet.as_deref(),
    }
}

/// What [`prepare`] hands the bridge.
struct Prepared<'a> {
    console: ConsoleGuard<'a>,
    /// The fleet's claim on the console (other replicas see it busy), released on drop.
    lease: Option<crate::fleet::Lease>,
    up: Upstream,
    ready: Ready,
    url_age: Duration,
}

/// A failure before the bridge, with the client's state when it has not been told yet
/// (`None`: the state went into a negotiation that told it, or it is gone).
struct Refusal {
    failure: Failure,
    state: Option<ClientState>,
}

impl Refusal {
    fn untold(failure: Failure, state: ClientState) -> Self {
        Refusal {
            failure,
            state: Some(state),
        }
    }
}

/// Who a session is for, read by every phase.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    app: &'a App,
    cfg: &'a Config,
    peer: SocketAddr,
    target: &'a Target,
    live: &'a LiveSession,
    /// Fires on shutdown and on takeover.
    cancel: &'a CancellationToken,
}

/// Claim, mint, dial and the console's handshake, with the client watched throughout.
/// On failure the console is released before the caller tells the client, so a viewer
/// that reconnects at once never finds its own refused session holding the console.
async fn prepare<'a, W>(
    ctx: Ctx<'a>,
    client: &mut ClientIo<W>,
    state: ClientState,
) -> Result<Prepared<'a>, Refusal>
where
    W: AsyncRead + AsyncWrite + Unpin + Send,
{
    let Ctx {
        app,
        cfg,
        peer,
        target,
        live,
        cancel,
    } = ctx;
    let instance = target.instance.as_str();
    let stopped = || stopped_failure(app, cancel, instance, Duration::ZERO);
    // The console is exclusive.
    let who = format!("{peer} (session {})", live.id);
    let claimed = tokio::select! {
        c = app.consoles.claim(instance, live.id, peer.ip(), who.clone(), cancel.clone(), target.on_busy) => c,
        g = watch::gone(client) => Err(Failure::Left(g)),
        () = app.shutdown.cancelled() => Err(Failure::Shutdown),
    };
    let console = claimed.map_err(|f| Refusal::untold(f, state_ref(&state)))?;
    // And for the fleet: busy on the other replicas too.
    let lease = match app.fleet.as_deref() {
        None => None,
        Some(fleet) => {
            let claimed = tokio::select! {
                c = fleet.claim(instance, &who, peer.ip()) => c.map_err(|r| Failure::from_claim(instance, r)),
                g = watch::gone(client) => Err(Failure::Left(g)),
                () = app.shutdown.cancelled() => Err(Failure::Shutdown),
            };
            match claimed {
                Ok(lease) => lease,
                Err(f) => {
                    drop(console);
                    return Err(Refusal::untold(f, state_ref(&state)));
                }
            }
        }
    };

    // Budget and mint; a client that leaves before the request is sent spends nothing.
    let spend = spend(app);
    let minted = tokio::select! {
        _ = cancel.cancelled() => Err(stopped()),
        g = watch::gone(client) => Err(Failure::Left(g)),
        m = mint::mint(&app.cloud, Some(spend), instance, &target.region) => m.map_err(Failure::from),
    };
    let got = minted.map_err(|f| {
        if matches!(
            f,
            Failure::Left(_) | Failure::Shutdown | Failure::TakenOver { .. }
        ) {
            app.metrics.url_mint(instance, "cancelled");
        }
        Refusal::untold(f, state_ref(&state))
    })?;
    tracing::Span::current().record("request_id", got.minted.request_id.as_str());
    tracing::info!(
        target: "tcvnc::audit",
        session = live.id,
        peer = %peer,
        instance,
        request_id = %got.minted.request_id,
        requests_sent = got.sent,
        budget_left = match app.fleet.as_deref() {
            Some(f) => f.last_left(instance).unwrap_or(0),
            None => app.budget.remaining(instance),
        },
        url = %got.minted.url.redacted(),
        "console URL minted"
    );
    let url_age = got.minted.received_at.elapsed();
    app.metrics.url_age(url_age.as_secs_f64());

    // Dial at once.
    let dial_start = Instant::now();
    let dialed = tokio::select! {
        _ = cancel.cancelled() => Err(stopped()),
        g = watch::gone(client) => Err(Failure::Left(g)),
        d = app.dialer.dial(&got.minted.url) => d.map_err(Failure::Dial),
    };
    drop(got);
    let mut up = dialed.map_err(|f| Refusal::untold(f, state_ref(&state)))?;
    app.metrics
        .upstream_handshake(dial_start.elapsed().as_secs_f64());
    tracing::debug!(subprotocol = ?up.subprotocol, url_age_ms = url_age.as_millis() as u64, "upstream open");

    let hs_timeout = cfg.session.handshake_timeout;
    let ready = match state {
        ClientState::Raw => Ready::transparent(),
        state => {
            // The console's version and security types, the client still watched.
            let started = tokio::select! {
                r = bounded_by(cancel, hs_timeout, handshake::upstream_start(&mut up.io)) => r,
                g = watch::gone(client) => {
                    up.io.close(outcome::CLOSE_NORMAL, "viewer disconnected").await;
                    return Err(Refusal { failure: Failure::Left(g), state: None });
                }
            };
            let offer = match started {
                Ok(Ok(offer)) => offer,
                Ok(Err(e)) => {
                    up.io.close(outcome::CLOSE_NORMAL, "").await;
                    return Err(Refusal::untold(Failure::Upstream(e), state));
                }
                Err(Stopped) => {
                    let f = stopped_failure(app, cancel, instance, hs_timeout);
                    up.io.close(outcome::CLOSE_NORMAL, "handshake ended").await;
                    return Err(Refusal::untold(f, state));
                }
            };
            tracing::info!(rfb_version = ?offer.version, security_types = ?offer.types, "console security offered");
            let upstream_password = target.upstream_password.as_ref();
            let negotiation = async {
                match state {
                    ClientState::Authed(a) => {
                        match handshake::upstream_authenticate(
                            &mut up.io,
                            &offer,
                            upstream_password,
                        )
                        .await
                        {
                            Ok(_) => a.finish(client).await.map_err(Failure::Upstream),
                            Err(e) => {
                                let f = Failure::Upstream(e);
                                if let Err(e) = a.refuse(client, &f.viewer_text()).await {
                                    tracing::debug!(error = %e, "could not tell the client why");
                                }
                                Err(f)
                            }
                        }
                    }
                    ClientState::Greeted(g) => g
                        .negotiate(client, &mut up.io, &offer, upstream_password)
                        .await
                        .map_err(Failure::Upstream),
                    ClientState::Raw => Ok(Ready::transparent()),
                }
            };
            // The client's state moves into the negotiation; if it is cut short, the
            // viewer can only be told through the websocket close reason.
            let negotiated = match bounded_by(cancel, hs_timeout, negotiation).await {
                Ok(r) => r,
                Err(Stopped) => Err(stopped_failure(app, cancel, instance, hs_timeout)),
            };
            match negotiated {
                Ok(r) => r,
                Err(f) => {
                    up.io.close(outcome::CLOSE_NORMAL, "").await;
                    drop(console);
                    return Err(Refusal {
                        failure: f,
                        state: None,
                    });
                }
            }
        }
    };
    Ok(Prepared {
        console,
        lease,
        up,
        ready,
        url_age,
    })
}

/// A copy of the client's handshake state for telling it about a refusal (the states
/// are plain version markers).
fn state_ref(state: &ClientState) -> ClientState {
    match state {
        ClientState::Raw => ClientState::Raw,
        ClientState::Greeted(g) => ClientState::Greeted(Greeted { version: g.version }),
        ClientState::Authed(a) => ClientState::Authed(Authenticated { version: a.version }),
    }
}

async fn run<W>(
    app: &Arc<App>,
    cfg: &Config,
    client: &mut ClientIo<W>,
    peer: SocketAddr,
    target: &Target,
    live: &LiveSession,
    state: ClientState,
) -> Summary
where
    W: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut summary = Summary::accepted();
    let cancel = app.shutdown.token().child_token();
    let ctx = Ctx {
        app,
        cfg,
        peer,
        target,
        live,
        cancel: &cancel,
    };
    let prepared = prepare(ctx, client, state).await;
    let Prepared {
        console,
        lease,
        mut up,
        ready,
        url_age,
    } = match prepared {
        Ok(p) => p,
        Err(Refusal { failure, state }) => {
            summary.outcome = failure.label();
            summary.end = failure.to_string();
            match (state, &failure) {
                (_, Failure::Left(_)) => failure.log(&app.summaries, &target.instance),
                (Some(state), _) => {
                    refuse(app, client, &state, &failure, &target.instance).await;
                }
                (None, _) => {
                    failure.log(&app.summaries, &target.instance);
                    client
                        .close(failure.close_code(), &failure.viewer_text())
                        .await;
                }
            }
            return summary;
        }
    };
    summary.url_age = Some(url_age);
    summary.security = ready.security;

    // Bytes already read past the handshake go first, then the pumps.
    let pending = up.io.take_pending();
    if !pending.is_empty() {
        live.counters
            .from_upstream
            .fetch_add(pending.len() as u64, Ordering::Relaxed);
        live.counters
            .to_client
            .fetch_add(pending.len() as u64, Ordering::Relaxed);
        if let Err(e) = client.send(pending).await {
            summary.end = format!("client lost: {e}");
            summary.outcome = "client_lost";
            up.io
                .close(outcome::CLOSE_NORMAL, "viewer disconnected")
                .await;
            return summary;
        }
    }
    if let ClientIo::Ws(ws) = client {
        let pending = ws.take_pending();
        if !pending.is_empty() {
            live.counters
                .to_upstream
                .fetch_add(pending.len() as u64, Ordering::Relaxed);
            if up.io.send(pending).await.is_err() {
                summary.end = "upstream lost".into();
                summary.outcome = "upstream_lost";
                return summary;
            }
        }
    }
    let limits = Limits {
        keepalive: cfg.upstream.keepalive,
        max_unanswered_pings: cfg.upstream.max_unanswered_pings,
        idle_timeout: cfg.session.idle_timeout,
        max_duration: cfg.session.max_duration,
    };
    let end = bridge::run(client, &mut up.io, limits, &cancel, &live.counters, &ready).await;
    console.closing();
    if let Some(l) = &lease {
        l.closing();
    }
    let shutting_down = app.shutdown.is_cancelled();
    end::close(client, &mut up.io, &end, shutting_down, limits).await;
    summary.end = end::describe(&end, shutting_down);
    summary.close = end::close_label(&end, shutting_down);
    summary
}

impl From<mint::MintError> for Failure {
    fn from(e: mint::MintError) -> Self {
        match e {
            mint::MintError::Budget(b) => Failure::Budget(b),
            mint::MintError::NotRunning(n) => Failure::NotRunning(n),
            mint::MintError::Cloud(c) => Failure::Cloud(c),
            mint::MintError::Fleet(crate::fleet::Refusal::Exhausted(b)) => Failure::Budget(b),
            mint::MintError::Fleet(r) => Failure::Fleet(r),
        }
    }
}

impl From<Crowded> for Failure {
    fn from(c: Crowded) -> Self {
        Failure::Crowded(c)
    }
}
