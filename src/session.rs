//! One client, start to end: greet (RFB) → authenticate locally if configured → claim
//! the instance's console → budget → mint → dial → upstream handshake → bridge → close
//! both sides with the right words. Per-connection state lives here, never on shared state.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{field::Empty, Instrument};

use crate::bridge::{self, ClientIo, Counters, End, Limits};
use crate::budget::Budget;
use crate::cloud::{self, Gate};
use crate::config::{OnBusy, Target};
use crate::daemon::App;
use crate::outcome::{self, Failure};
use crate::rfb::handshake::{self, Authenticated, Greeted, Ready};

/// Which listener a client came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Raw TCP (native viewer).
    Tcp,
    /// Websocket (browser).
    Ws,
}

impl Via {
    fn as_str(self) -> &'static str {
        match self {
            Via::Tcp => "tcp",
            Via::Ws => "ws",
        }
    }
}

/// What other parts may read about a live session.
#[derive(Debug)]
pub struct LiveSession {
    /// Session id.
    pub id: u64,
    /// Instance.
    pub instance: String,
    /// Client address.
    pub peer: SocketAddr,
    /// Byte counters.
    pub counters: Counters,
}

struct Holder {
    session: u64,
    who: String,
    since: SystemTime,
    cancel: CancellationToken,
    released: Arc<Notify>,
    /// The holder's bridge has ended; it is only closing the connections.
    closing: bool,
}

/// Which session holds each instance's console (consoles are exclusive terminals).
#[derive(Default)]
pub struct Consoles {
    holders: Mutex<HashMap<String, Holder>>,
}

impl std::fmt::Debug for Consoles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Consoles")
    }
}

/// Holds an instance's console; released on drop.
pub struct ConsoleGuard<'a> {
    consoles: &'a Consoles,
    instance: String,
    session: u64,
}

impl ConsoleGuard<'_> {
    /// Marks the session as closing: a newcomer waits for it instead of being refused.
    pub fn closing(&self) {
        let mut h = self
            .consoles
            .holders
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(x) = h
            .get_mut(&self.instance)
            .filter(|x| x.session == self.session)
        {
            x.closing = true;
        }
    }
}

impl Drop for ConsoleGuard<'_> {
    fn drop(&mut self) {
        let mut h = self
            .consoles
            .holders
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if h.get(&self.instance)
            .is_some_and(|x| x.session == self.session)
        {
            if let Some(x) = h.remove(&self.instance) {
                x.released.notify_waiters();
            }
        }
    }
}

/// A taken-over holder gets this long to let go.
const TAKEOVER_WAIT: Duration = Duration::from_secs(5);

impl Consoles {
    /// Claims `instance` for `session`: refused when held (reject), or the holder is
    /// cancelled and awaited (takeover).
    ///
    /// # Errors
    /// [`Failure::Busy`] naming the holder.
    pub async fn claim<'a>(
        &'a self,
        instance: &str,
        session: u64,
        who: String,
        cancel: CancellationToken,
        policy: OnBusy,
    ) -> Result<ConsoleGuard<'a>, Failure> {
        let deadline = Instant::now() + TAKEOVER_WAIT;
        loop {
            let released = {
                let mut h = self
                    .holders
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match h.get(instance) {
                    None => {
                        h.insert(
                            instance.to_owned(),
                            Holder {
                                session,
                                who,
                                since: SystemTime::now(),
                                cancel,
                                released: Arc::new(Notify::new()),
                                closing: false,
                            },
                        );
                        return Ok(ConsoleGuard {
                            consoles: self,
                            instance: instance.to_owned(),
                            session,
                        });
                    }
                    Some(holder) => {
                        let busy = || Failure::Busy {
                            instance: instance.to_owned(),
                            holder: holder.who.clone(),
                            since: humantime::format_rfc3339_seconds(holder.since).to_string(),
                        };
                        if Instant::now() >= deadline {
                            return Err(busy());
                        }
                        if holder.closing {
                            // A viewer reconnecting right after its last session ended
                            // waits for that session to finish closing.
                            tracing::debug!(holder = %holder.who, "waiting for the previous session to close");
                        } else if policy == OnBusy::Reject {
                            return Err(busy());
                        } else {
                            tracing::info!(holder = %holder.who, "taking the console over");
                            holder.cancel.cancel();
                        }
                        holder.released.clone()
                    }
                }
            };
            let notified = released.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            // The holder may have gone between the lock and `enable`: re-check by looping.
            let still_held = self
                .holders
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(instance)
                .is_some_and(|h| Arc::ptr_eq(&h.released, &released));
            if still_held {
                let _ = tokio::time::timeout_at(deadline, notified).await;
            }
        }
    }

    /// Who holds `instance`, if anyone.
    pub fn holder(&self, instance: &str) -> Option<String> {
        self.holders
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(instance)
            .map(|h| h.who.clone())
    }
}

/// The reconnect budget as the API client's gate: the first attempt may wait (FIFO, up to
/// `max_wait`); retries take a URL only if one is free now.
struct BudgetGate<'a> {
    budget: &'a Budget,
    instance: &'a str,
    metrics: &'a crate::metrics::Metrics,
    /// URLs taken for attempts still in flight, re-stamped when they end.
    taken: Mutex<Vec<crate::budget::Ticket>>,
    /// The budget's refusal, kept whole for the viewer (the client only carries text).
    refused: Mutex<Option<crate::budget::Exhausted>>,
}

impl Gate for BudgetGate<'_> {
    async fn admit(&self, attempt: u32) -> Result<(), cloud::Error> {
        let r = if attempt == 0 {
            let t0 = Instant::now();
            let r = self.budget.take(self.instance).await;
            self.metrics.budget_waited(t0.elapsed().as_secs_f64());
            r
        } else {
            self.budget.try_take(self.instance)
        };
        let ticket = r.map_err(|e| {
            let text = e.to_string();
            *self
                .refused
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e);
            cloud::Error::Refused(text)
        })?;
        self.taken
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(ticket);
        Ok(())
    }

    fn settled(&self) {
        let taken = std::mem::take(
            &mut *self
                .taken
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for t in taken {
            self.budget.settle(self.instance, t);
        }
    }
}

impl Drop for BudgetGate<'_> {
    /// A mint cancelled mid-call (takeover, shutdown) still re-stamps its URLs.
    fn drop(&mut self) {
        self.settled();
    }
}

enum ClientState {
    Raw,
    Greeted(Greeted),
    Authed(Authenticated),
}

async fn refuse<W: AsyncRead + AsyncWrite + Unpin + Send>(
    client: &mut ClientIo<W>,
    state: &ClientState,
    failure: &Failure,
) {
    failure.log();
    let reason = failure.to_string();
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

/// Serves one client of `target` until it ends.
pub async fn serve<W>(
    app: Arc<App>,
    mut client: ClientIo<W>,
    peer: SocketAddr,
    via: Via,
    target: Target,
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
        let started = Instant::now();
        // Before a permit is taken: an address over its rate must not hold one.
        if let Err(retry_after) = app.peer_limiter.check(peer.ip()) {
            let failure = Failure::PeerRate {
                peer: peer.ip(),
                per_minute: app.peer_limiter.per_minute(),
                retry_after,
            };
            app.metrics.close(failure.label());
            let state = if target.transparent {
                ClientState::Raw
            } else {
                match bounded(&app, Duration::from_secs(5), handshake::greet(&mut client)).await {
                    Ok(Ok(g)) => ClientState::Greeted(g),
                    _ => ClientState::Raw,
                }
            };
            refuse(&mut client, &state, &failure).await;
            return;
        }
        let Ok(_permit) = app.sessions.clone().try_acquire_owned() else {
            let failure = Failure::Capacity {
                max: app.config.session.max_sessions,
            };
            app.metrics.close(failure.label());
            let state = if target.transparent {
                ClientState::Raw
            } else {
                match tokio::time::timeout(
                    app.config.session.handshake_timeout,
                    handshake::greet(&mut client),
                )
                .await
                {
                    Ok(Ok(g)) => ClientState::Greeted(g),
                    _ => ClientState::Raw,
                }
            };
            refuse(&mut client, &state, &failure).await;
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
        let summary = run(&app, &mut client, peer, &target, id, &live).await;
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
    }
    .instrument(span)
    .await;
}

impl Summary {
    /// The session was refused before the bridge.
    fn refused(&mut self, f: &Failure) {
        self.outcome = f.label();
        self.end = f.to_string();
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

async fn run<W>(
    app: &Arc<App>,
    client: &mut ClientIo<W>,
    peer: SocketAddr,
    target: &Target,
    id: u64,
    live: &LiveSession,
) -> Summary
where
    W: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut summary = Summary {
        outcome: "ok",
        close: "refused",
        url_age: None,
        security: "-",
        end: String::new(),
    };
    let hs_timeout = app.config.session.handshake_timeout;
    // 1. RFB greeting and local authentication, before anything is spent.
    let mut state = ClientState::Raw;
    if !target.transparent {
        match bounded(app, hs_timeout, handshake::greet(client)).await {
            Ok(Ok(g)) => {
                tracing::debug!(version = ?g.version, "client greeted");
                state = ClientState::Greeted(g);
            }
            Ok(Err(e)) => {
                tracing::info!(error = %e, "client handshake failed");
                summary.end = format!("client handshake failed: {e}");
                summary.outcome = "client_handshake";
                return summary;
            }
            Err(_) => {
                tracing::info!("client sent no RFB version in time");
                summary.end = "client handshake timed out".into();
                summary.outcome = "client_handshake";
                return summary;
            }
        }
        if let (Some(pw), ClientState::Greeted(_)) = (&target.password, &state) {
            let ClientState::Greeted(g) = std::mem::replace(&mut state, ClientState::Raw) else {
                unreachable!()
            };
            match bounded(
                app,
                hs_timeout,
                g.authenticate(client, pw, &app.throttle, peer.ip()),
            )
            .await
            {
                Ok(Ok(a)) => state = ClientState::Authed(a),
                Ok(Err(e)) => {
                    summary.end = format!("local authentication failed: {e}");
                    summary.outcome = "auth_failed";
                    client
                        .close(outcome::CLOSE_POLICY, "authentication failed")
                        .await;
                    return summary;
                }
                Err(_) => {
                    summary.end = "local authentication timed out".into();
                    summary.outcome = "client_handshake";
                    return summary;
                }
            }
        }
    }

    // 2. The console is exclusive.
    let cancel = app.shutdown.token().child_token();
    let who = format!("{peer} (session {id})");
    let console = match app
        .consoles
        .claim(&target.instance, id, who, cancel.clone(), target.on_busy)
        .await
    {
        Ok(g) => g,
        Err(f) => {
            summary.refused(&f);
            refuse(client, &state, &f).await;
            return summary;
        }
    };

    // 3. Budget and mint (every attempt is charged), then dial at once.
    let gate = BudgetGate {
        budget: &app.budget,
        instance: &target.instance,
        metrics: &app.metrics,
        taken: Mutex::new(Vec::new()),
        refused: Mutex::new(None),
    };
    let minted = tokio::select! {
        _ = cancel.cancelled() => Err(stopped_failure(app, &cancel, &target.instance, Duration::ZERO)),
        m = app.cloud.describe_instance_vnc_url(&target.instance, &target.region, &gate) => m.map_err(|e| match e {
            cloud::Error::Refused(text) => match gate.refused.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
                Some(exhausted) => Failure::Budget(exhausted),
                None => Failure::Cloud(cloud::Error::Refused(text)),
            },
            e => Failure::Cloud(e),
        }),
    };
    app.metrics.url_mint(&target.instance, minted.is_ok());
    let minted = match minted {
        Ok(m) => m,
        Err(f) => {
            summary.refused(&f);
            refuse(client, &state, &f).await;
            return summary;
        }
    };
    tracing::info!(
        target: "tcvnc::audit",
        session = id,
        peer = %peer,
        instance = %target.instance,
        request_id = %minted.request_id,
        attempts = minted.attempts,
        budget_left = app.budget.remaining(&target.instance),
        url = %minted.url.redacted(),
        "console URL minted"
    );
    let url_age = minted.received_at.elapsed();
    summary.url_age = Some(url_age);
    app.metrics.url_age(url_age.as_secs_f64());
    let dial_start = Instant::now();
    let dialed = tokio::select! {
        _ = cancel.cancelled() => Err(stopped_failure(app, &cancel, &target.instance, Duration::ZERO)),
        d = app.dialer.dial(&minted.url) => d.map_err(Failure::Dial),
    };
    if dialed.is_ok() {
        app.metrics
            .upstream_handshake(dial_start.elapsed().as_secs_f64());
    }
    drop(minted);
    let mut up = match dialed {
        Ok(u) => u,
        Err(f) => {
            summary.refused(&f);
            refuse(client, &state, &f).await;
            return summary;
        }
    };
    tracing::debug!(subprotocol = ?up.subprotocol, url_age_ms = url_age.as_millis() as u64, "upstream open");

    // 4. Upstream RFB handshake, then the client's security; both bounded by the
    // handshake timeout and ended by takeover or shutdown.
    let ready: Result<Ready, Failure> = match state {
        ClientState::Raw => Ok(Ready::transparent()),
        other => {
            let offer = match bounded_by(&cancel, hs_timeout, handshake::upstream_start(&mut up.io))
                .await
            {
                Ok(Ok(offer)) => offer,
                Ok(Err(e)) => {
                    let f = Failure::Upstream(e);
                    summary.refused(&f);
                    refuse(client, &other, &f).await;
                    up.io.close(outcome::CLOSE_NORMAL, "").await;
                    return summary;
                }
                Err(Stopped) => {
                    let f = stopped_failure(app, &cancel, &target.instance, hs_timeout);
                    summary.refused(&f);
                    refuse(client, &other, &f).await;
                    up.io.close(outcome::CLOSE_NORMAL, "handshake ended").await;
                    return summary;
                }
            };
            tracing::info!(rfb_version = ?offer.version, security_types = ?offer.types, "console security offered");
            let upstream_password = target.upstream_password.as_ref();
            let negotiation = async {
                match other {
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
                                // Tell the client here; logging and closing happen once, below.
                                let f = Failure::Upstream(e);
                                if let Err(e) = a.refuse(client, &f.to_string()).await {
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
            let r = match bounded_by(&cancel, hs_timeout, negotiation).await {
                Ok(r) => r,
                Err(Stopped) => Err(stopped_failure(app, &cancel, &target.instance, hs_timeout)),
            };
            if let Err(f) = &r {
                f.log();
                client.close(f.close_code(), &f.to_string()).await;
            }
            r
        }
    };
    let ready = match ready {
        Ok(r) => r,
        Err(f) => {
            summary.refused(&f);
            up.io.close(outcome::CLOSE_NORMAL, "").await;
            return summary;
        }
    };
    summary.security = ready.security;

    // 5. Bytes already read past the handshake go first, then the pumps.
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
        keepalive: app.config.upstream.keepalive,
        max_unanswered_pings: app.config.upstream.max_unanswered_pings,
        idle_timeout: app.config.session.idle_timeout,
        max_duration: app.config.session.max_duration,
    };
    let end = bridge::run(client, &mut up.io, limits, &cancel, &live.counters, &ready).await;
    console.closing();
    close(
        client,
        &mut up.io,
        &end,
        app.shutdown.is_cancelled(),
        limits,
    )
    .await;
    summary.end = describe(&end, app.shutdown.is_cancelled());
    summary.close = close_label(&end, app.shutdown.is_cancelled());
    summary
}

fn close_label(end: &End, shutting_down: bool) -> &'static str {
    match end {
        End::ClientClosed => "viewer_closed",
        End::ClientLost(_) => "viewer_lost",
        End::UpstreamClosed(_) => "console_closed",
        End::UpstreamLost(_) => "console_lost",
        End::PingTimeout => "ping_timeout",
        End::Idle => "idle_timeout",
        End::MaxDuration => "max_duration",
        End::Cancelled if shutting_down => "shutdown",
        End::Cancelled => "taken_over",
    }
}

fn describe(end: &End, shutting_down: bool) -> String {
    match end {
        End::ClientClosed => "viewer closed".into(),
        End::ClientLost(e) => format!("viewer lost: {e}"),
        End::UpstreamClosed(Some((code, reason))) => format!("console closed ({code} {reason})"),
        End::UpstreamClosed(None) => "console closed".into(),
        End::UpstreamLost(e) => format!("console connection lost: {e}"),
        End::PingTimeout => "console stopped answering pings".into(),
        End::Idle => "idle timeout".into(),
        End::MaxDuration => "maximum session length reached".into(),
        End::Cancelled if shutting_down => "shutdown".into(),
        End::Cancelled => "taken over by another viewer".into(),
    }
}

async fn close<W, U>(
    client: &mut ClientIo<W>,
    up: &mut crate::wsio::WsIo<U>,
    end: &End,
    shutting_down: bool,
    limits: Limits,
) where
    W: AsyncRead + AsyncWrite + Unpin + Send,
    U: AsyncRead + AsyncWrite + Unpin,
{
    use outcome::*;
    match end {
        End::ClientClosed => {
            up.close(CLOSE_NORMAL, "viewer disconnected").await;
            // Answer a browser's close frame (RFC 6455 §5.5.1), so it sees a clean close.
            client.close(CLOSE_NORMAL, "").await;
        }
        End::ClientLost(_) => up.close(CLOSE_NORMAL, "viewer disconnected").await,
        End::UpstreamClosed(Some((1000, _))) | End::UpstreamClosed(None) => {
            client
                .close(CLOSE_NORMAL, "console closed the connection")
                .await;
            up.close(CLOSE_NORMAL, "").await;
        }
        End::UpstreamClosed(Some((code, reason))) => {
            client
                .close(
                    CLOSE_ERROR,
                    &format!("console closed the connection ({code} {reason})"),
                )
                .await;
            up.close(CLOSE_NORMAL, "").await;
        }
        End::UpstreamLost(_) => {
            client
                .close(CLOSE_ERROR, "connection to the console lost")
                .await
        }
        End::PingTimeout => {
            client
                .close(
                    CLOSE_ERROR,
                    &format!(
                        "the console stopped answering pings ({} unanswered)",
                        limits.max_unanswered_pings
                    ),
                )
                .await;
        }
        End::Idle => {
            let reason = format!("idle for {} s", limits.idle_timeout.as_secs());
            up.close(CLOSE_NORMAL, &reason).await;
            client.close(CLOSE_NORMAL, &reason).await;
        }
        End::MaxDuration => {
            let reason = "maximum session length reached";
            up.close(CLOSE_NORMAL, reason).await;
            client.close(CLOSE_NORMAL, reason).await;
        }
        End::Cancelled if shutting_down => {
            up.close(CLOSE_GOING_AWAY, "tcvnc is shutting down").await;
            client
                .close(CLOSE_GOING_AWAY, "tcvnc is shutting down")
                .await;
        }
        End::Cancelled => {
            up.close(CLOSE_NORMAL, "console taken over").await;
            client
                .close(CLOSE_NORMAL, "console taken over by another viewer")
                .await;
        }
    }
}
