//! The console engine (console mode): one per instance, an RFB client of the console and
//! an RFB server to every viewer of it, with the screen in between.
//!
//! ```text
//! viewer ─ session ─┐                  ┌─ upstream task (`upstream.rs`) ─ Connector ─ gateway
//! viewer ─ session ─┼─ Engine: screen ─┤   connect (budget, mint, dial), handshake,
//! viewer ─ session ─┘  damage per      │   decode into the screen, input out, resume
//!   (`viewer.rs`)      viewer          └─ after a drop, linger after the last viewer
//! ```
//!
//! - [`Engines`]: the registry, one engine per instance; a viewer joins the live one or
//!   starts it. An engine leaves the registry when it ends (its last viewer left and
//!   `linger` passed, the console could not be had back within `resume_timeout`, a
//!   permanent refusal, shutdown), under the registry's lock, so a viewer never joins an
//!   engine that is ending.
//! - [`Engine`]: what the upstream task and the viewers share: the screen (framebuffer,
//!   cursor, name) behind a read-write lock, each viewer's pending damage (coalesced, so a
//!   slow viewer never slows the console or the others), the input channel, the phase.
//! - `upstream.rs`: the console side. `viewer.rs`: one viewer. `damage.rs`: coalesced
//!   damage. `msgs.rs`: what viewers send, parsed.
//!
//! How a URL is had (claims, budget, mint, dial) is the session layer's: it hands the
//! engine a [`Connector`], so this module spends nothing on its own.

mod cache;
mod damage;
mod msgs;
mod recorder;
pub(crate) mod replay;
mod upstream;
mod viewer;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

use self::damage::Damage;
use crate::config::OnBusy;
use crate::console::encode::{CursorImage, Screen as LayoutScreen};
use crate::console::fb::Framebuffer;
use crate::metrics::Metrics;
use crate::outcome::Failure;
use crate::redact::Secret;
use crate::shutdown::Shutdown;
use crate::upstream::Upstream;

pub use viewer::ViewerOpts;
pub(crate) use viewer::{serve, ViewerEnd};

/// A future boxed for a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An open console connection and what must be held while it is used.
pub struct Connected {
    /// The websocket to the console, before its RFB handshake.
    pub up: Upstream,
    /// Held for the connection's life (the fleet's claim on the console).
    pub hold: Option<Box<dyn std::any::Any + Send + Sync>>,
    /// The URL spent, redacted (for the resume log line).
    pub url: String,
    /// The API request that minted it.
    pub request_id: String,
}

/// How an engine opens its console: claim, budget, mint, dial (the session layer's
/// rules, with their log lines). Each call spends at most one URL.
pub(crate) trait Connector: Send + Sync + 'static {
    /// One connection, or why not.
    fn connect(&self) -> BoxFuture<'_, Result<Connected, Failure>>;
}

/// Where an engine's screen comes from.
pub(crate) enum Source {
    /// A console, opened through the connector.
    Console(Arc<dyn Connector>, Settings),
    /// A recording (`tcvnc play`).
    Recording(Arc<replay::Replay>),
}

/// An engine's settings, from its target and `[session]`/`[upstream]`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Keep the upstream this long after the last viewer leaves.
    pub linger: Duration,
    /// How long viewers wait for a lost console.
    pub resume_timeout: Duration,
    /// Bound on the console's RFB handshake.
    pub handshake_timeout: Duration,
    /// Ping the console this often.
    pub keepalive: Duration,
    /// Unanswered pings before the console is taken for lost.
    pub max_unanswered_pings: u32,
    /// The console's VNC password, when it asks for one.
    pub upstream_password: Option<Secret>,
    /// Record the console's sessions (`[recording]`), with the target's region for the
    /// sidecar.
    pub recording: Option<(crate::config::RecordingConfig, String)>,
}

/// Where an engine is.
#[derive(Debug, Clone)]
pub(crate) enum Phase {
    /// Its first connection is being opened: no screen yet.
    Connecting,
    /// The console is connected.
    Live,
    /// The console was lost; viewers keep the last screen while it is had back.
    Waiting {
        /// Why, in the banner's words.
        why: String,
        /// When the next attempt is made, if known.
        next: Option<Instant>,
    },
    /// Over: viewers are closed with this.
    Ended(Arc<Failure>),
}

/// The screen as the engine holds it.
#[derive(Debug)]
pub(crate) struct Screen {
    pub(crate) fb: Framebuffer,
    /// The console's cursor shape, when it sent one.
    pub(crate) cursor: Option<CursorImage>,
    /// The desktop name viewers are shown (the console's, or the banner's while waiting).
    pub(crate) name: String,
    /// The console's own desktop name.
    pub(crate) console_name: String,
    /// ExtendedDesktopSize's screens, when the console sent them.
    pub(crate) layout: Vec<LayoutScreen>,
    /// The console takes QEMU extended key events.
    pub(crate) qemu_keys: bool,
    /// Bumped at every change of the pixels (the encode cache's generation).
    pub(crate) generation: u64,
}

/// What a viewer may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewerRole {
    /// Its input goes to the console.
    Control,
    /// It watches; its input is dropped (counted).
    View,
}

impl ViewerRole {
    /// The name in logs and `/api/consoles`.
    pub fn as_str(self) -> &'static str {
        match self {
            ViewerRole::Control => "control",
            ViewerRole::View => "view",
        }
    }

    /// The lesser of two roles (a view-only token and a control password: view).
    pub fn min(self, other: ViewerRole) -> ViewerRole {
        if self == ViewerRole::View || other == ViewerRole::View {
            ViewerRole::View
        } else {
            ViewerRole::Control
        }
    }
}

/// Who a viewer is.
#[derive(Debug, Clone)]
pub struct ViewerInfo {
    /// Its session id (the log's `id`).
    pub session: u64,
    /// Its address.
    pub peer: std::net::SocketAddr,
    /// `tcp`, `ws`, `api` (a screenshot or typing request, not a viewer) or `rec` (the
    /// recorder, which neither counts as a viewer nor keeps the engine running).
    pub via: &'static str,
    /// When it joined.
    pub since: std::time::SystemTime,
}

impl ViewerInfo {
    fn is_viewer(&self) -> bool {
        matches!(self.via, "tcp" | "ws")
    }

    /// Keeps the engine running (viewers and requests; not the recorder).
    fn holds(&self) -> bool {
        self.via != "rec"
    }

    fn json(&self, role: ViewerRole) -> serde_json::Value {
        serde_json::json!({
            "session": self.session,
            "role": role.as_str(),
            "peer": self.peer.to_string(),
            "via": self.via,
            "since": humantime::format_rfc3339_seconds(self.since).to_string(),
        })
    }
}

/// The console is held by viewers and the policy is `reject`.
#[derive(Debug, Clone)]
pub(crate) struct Busy {
    /// The first viewer's words (address and session).
    pub(crate) holder: String,
    /// Since when (RFC 3339).
    pub(crate) since: String,
}

/// What a viewer has not been sent yet.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    pub(crate) damage: Damage,
    pub(crate) resized: bool,
    pub(crate) cursor: bool,
    pub(crate) name: bool,
    pub(crate) bell: bool,
    /// The console's latest cut text (Latin-1 bytes).
    pub(crate) cut: Option<Bytes>,
    /// Another viewer took the console over (`on_busy = "takeover"`): who.
    pub(crate) kicked: Option<String>,
    /// A line for this viewer only, shown in its banner for a while.
    pub(crate) notice: Option<String>,
}

impl Pending {
    /// Whether the screen, its size, cursor or name changed since the viewer's last
    /// update.
    pub(crate) fn screen_changed(&self) -> bool {
        !self.damage.is_empty() || self.resized || self.cursor || self.name
    }
}

/// One viewer's place in an engine.
#[derive(Debug)]
pub(crate) struct Slot {
    id: u64,
    pub(crate) info: ViewerInfo,
    role: Mutex<ViewerRole>,
    pub(crate) pending: Mutex<Pending>,
    pub(crate) wake: Notify,
}

impl Slot {
    /// Its role now (control can be handed over).
    pub(crate) fn role(&self) -> ViewerRole {
        *self.role.lock()
    }

    /// Shows `text` in this viewer's banner.
    pub(crate) fn notify(&self, text: String) {
        self.pending.lock().notice = Some(text);
        self.wake.notify_one();
    }
}

/// Input from viewers to the console.
#[derive(Debug)]
pub(crate) enum Input {
    /// A message to send as it is (cut text).
    Raw(Bytes),
    /// A PointerEvent (the engine tracks which buttons are held).
    Pointer(Bytes),
    /// A key (the engine tracks which are held).
    Key { down: bool, keysym: u32 },
    /// Answered once everything sent before it went to the console (typing requests wait
    /// on it before they leave); dropped unanswered when there is no console.
    Flush(tokio::sync::oneshot::Sender<()>),
    /// A QEMU extended key event (sent as a plain key to consoles without them).
    QemuKey {
        down: bool,
        keysym: u32,
        keycode: u32,
    },
}

/// Counters of one engine, for `/api/consoles` and the closing log line.
#[derive(Debug, Default)]
pub struct EngineStats {
    /// Resumes after a drop.
    pub resumes: AtomicU64,
    /// Updates decoded from the console.
    pub frames: AtomicU64,
    /// Input messages dropped (no console connected, or a view-only viewer).
    pub input_dropped: AtomicU64,
    /// Console URLs spent (each connection opened, and each minted but not dialled).
    pub urls: AtomicU64,
}

/// A viewer's visit, for the recording's sidecar.
#[derive(Debug, Clone)]
pub(crate) struct Visit {
    pub(crate) info: ViewerInfo,
    pub(crate) role: ViewerRole,
    pub(crate) left: Option<std::time::SystemTime>,
}

/// The most visits an engine remembers (the sidecar's list).
const MAX_VISITS: usize = 10_000;

/// One console's engine.
#[derive(Debug)]
pub struct Engine {
    instance: String,
    pub(crate) screen: RwLock<Screen>,
    slots: Mutex<Vec<Arc<Slot>>>,
    pub(crate) input: mpsc::Sender<Input>,
    phase: watch::Sender<Phase>,
    /// Whether the current console connection's first full update has been decoded (the
    /// screen is the console's, not a banner over the last one).
    complete: watch::Sender<bool>,
    /// Updates decoded so far (typing waits for the console to have read its keys).
    updates: watch::Sender<u64>,
    /// Viewers joined or left.
    membership: Notify,
    /// When the current upstream was opened.
    live_since: Mutex<Option<Instant>>,
    /// Rectangles encoded once for several viewers.
    pub(crate) cache: cache::Cache,
    pub(crate) metrics: Arc<Metrics>,
    /// Counters.
    pub stats: EngineStats,
    /// Viewers who came and went (for the recording's sidecar), oldest first.
    pub(crate) visits: Mutex<Vec<Visit>>,
    /// Where viewers' input is recorded (`[recording] input = true`), while it is.
    pub(crate) input_sink: Mutex<Option<crate::record::writer::Sink>>,
}

impl Engine {
    /// The instance.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Viewers connected now (screenshot and typing requests not counted).
    pub fn viewers(&self) -> usize {
        self.slots
            .lock()
            .iter()
            .filter(|s| s.info.is_viewer())
            .count()
    }

    /// Members that hold the engine (viewers and requests): it runs while there are any.
    fn members(&self) -> usize {
        self.slots.lock().iter().filter(|s| s.info.holds()).count()
    }

    /// Joins the engine as its recorder: told every change like a viewer, listed nowhere,
    /// holding nothing.
    pub(crate) fn observe(self: &Arc<Self>) -> Membership {
        let (w, h) = self.size();
        let mut pending = Pending {
            cursor: true,
            name: true,
            ..Pending::default()
        };
        pending
            .damage
            .add(crate::console::fb::Rect::new(0, 0, w, h));
        let slot = Arc::new(Slot {
            // Viewers' ids count up from 0: this one is never theirs.
            id: u64::MAX,
            info: ViewerInfo {
                session: 0,
                peer: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                via: "rec",
                since: std::time::SystemTime::now(),
            },
            role: Mutex::new(ViewerRole::View),
            pending: Mutex::new(pending),
            wake: Notify::new(),
        });
        self.slots.lock().push(slot.clone());
        Membership {
            engine: self.clone(),
            slot,
        }
    }

    /// Leaves the registry `map` (the registry's lock held) and, unless it already
    /// ended, ends with `failure`: its viewers are closed with it.
    pub(super) fn leave(
        self: &Arc<Self>,
        map: &mut HashMap<String, Arc<Engine>>,
        failure: Failure,
    ) {
        if map
            .get(&self.instance)
            .is_some_and(|e| Arc::ptr_eq(e, self))
        {
            map.remove(&self.instance);
        }
        if !matches!(self.phase(), Phase::Ended(_)) {
            tracing::info!(instance = %self.instance, end = %failure, "console engine ended");
            self.set_phase(Phase::Ended(Arc::new(failure)));
        }
    }

    /// Ends the engine if nothing holds it, checked under the registry's lock (a viewer
    /// joins under it, so none joins an ending engine): whether it ended.
    pub(super) fn end_if_idle(
        self: &Arc<Self>,
        registry: &Mutex<HashMap<String, Arc<Engine>>>,
    ) -> bool {
        let mut map = registry.lock();
        if self.members() == 0 {
            self.leave(&mut map, Failure::Lingered);
            true
        } else {
            false
        }
    }

    /// Records viewer input sent to the console, when `[recording] input` is on.
    pub(crate) fn record_input(&self, bytes: &[u8]) {
        if let Some(sink) = self.input_sink.lock().as_ref() {
            sink.record(crate::record::format::From::Client, bytes);
        }
    }

    /// Each viewer: session, role, address, how it came, since when.
    pub fn viewer_list(&self) -> Vec<serde_json::Value> {
        self.slots
            .lock()
            .iter()
            .filter(|s| s.info.is_viewer())
            .map(|s| s.info.json(s.role()))
            .collect()
    }

    /// Hands control to viewer `session`: every other viewer with control becomes
    /// view-only, and each is told in its banner. Returns the new controller's words.
    ///
    /// # Errors
    /// No viewer with that session id.
    pub fn give_control(&self, session: u64) -> Result<String, String> {
        let slots = self.slots.lock();
        let Some(to) = slots
            .iter()
            .find(|s| s.info.session == session && s.info.is_viewer())
        else {
            return Err(format!(
                "no viewer with session {session} on {}: see /api/consoles for the viewers",
                self.instance
            ));
        };
        let words = format!("viewer {} ({})", to.info.session, to.info.peer);
        for s in slots.iter().filter(|s| s.info.is_viewer()) {
            if s.info.session == session {
                *s.role.lock() = ViewerRole::Control;
                s.notify("you have control of the console".into());
            } else if s.role() == ViewerRole::Control {
                *s.role.lock() = ViewerRole::View;
                s.notify(format!("control passed to {words}: you are view-only now"));
            }
        }
        tracing::info!(instance = %self.instance, to = %words, "console control handed over");
        Ok(words)
    }

    /// The phase now.
    pub(crate) fn phase(&self) -> Phase {
        self.phase.borrow().clone()
    }

    /// How long the current upstream has been open.
    pub fn upstream_age(&self) -> Option<Duration> {
        self.live_since.lock().map(|t| t.elapsed())
    }

    /// Sends a key event to the console (typing requests; tracked like a viewer's keys).
    ///
    /// # Errors
    /// The engine has ended.
    pub(crate) async fn press(&self, down: bool, keysym: u32) -> Result<(), ()> {
        self.input
            .send(Input::Key { down, keysym })
            .await
            .map_err(|_| ())
    }

    /// Waits until every input sent before has been written to the console.
    ///
    /// # Errors
    /// The console connection was lost first (what was sent may not have arrived).
    pub(crate) async fn flush(&self) -> Result<(), ()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.input.send(Input::Flush(tx)).await.map_err(|_| ())?;
        rx.await.map_err(|_| ())
    }

    /// After [`Engine::flush`]: waits (at most `limit`) until the console answered two
    /// more update requests. RFB servers read client messages in order, and the engine
    /// asks for the next update after each one, so by then the console has read the keys
    /// sent before; a still console, which answers no request, costs `limit`.
    pub(crate) async fn settled(&self, limit: Duration) {
        let mut rx = self.updates.subscribe();
        let want = *rx.borrow_and_update() + 2;
        let _ = tokio::time::timeout(limit, rx.wait_for(|n| *n >= want)).await;
    }

    /// The engine as `/api/consoles` shows it: phase (`connecting`, `live`, `waiting`
    /// with why and the seconds to the next attempt, `ended`), viewers, upstream age,
    /// resumes, updates decoded, input dropped.
    pub fn status_json(&self) -> serde_json::Value {
        let (phase, why, next_s) = match self.phase() {
            Phase::Connecting => ("connecting", None, None),
            Phase::Live => ("live", None, None),
            Phase::Waiting { why, next } => (
                "waiting",
                Some(why),
                next.map(|n| n.saturating_duration_since(Instant::now()).as_secs()),
            ),
            Phase::Ended(f) => ("ended", Some(f.to_string()), None),
        };
        serde_json::json!({
            "phase": phase,
            "why": why,
            "next_attempt_s": next_s,
            "viewers": self.viewers(),
            "viewer_list": self.viewer_list(),
            "upstream_age_s": self.upstream_age().map(|d| d.as_secs()),
            "resumes": self.stats.resumes.load(Ordering::Relaxed),
            "frames": self.stats.frames.load(Ordering::Relaxed),
            "input_dropped": self.stats.input_dropped.load(Ordering::Relaxed),
            "shared_encodes": {
                "hits": self.cache.hits.load(Ordering::Relaxed),
                "misses": self.cache.misses.load(Ordering::Relaxed),
                "bytes": self.cache.held(),
            },
        })
    }

    /// Waits until the current console connection's first full update is in the screen
    /// (a screenshot then shows the console, not the last screen under a banner), or the
    /// engine ended; the phase then.
    pub(crate) async fn screen_complete(&self) -> Phase {
        let mut done = self.complete.subscribe();
        let mut phase = self.phase.subscribe();
        loop {
            if let p @ Phase::Ended(_) = phase.borrow_and_update().clone() {
                return p;
            }
            if *done.borrow_and_update() {
                return self.phase();
            }
            tokio::select! {
                r = done.changed() => if r.is_err() { return self.phase() },
                r = phase.changed() => if r.is_err() { return self.phase() },
            }
        }
    }

    /// Waits until the engine has a screen to show (its first connection succeeded), or
    /// ended; returns the phase then.
    pub(crate) async fn screen_ready(&self) -> Phase {
        let mut rx = self.phase.subscribe();
        loop {
            let p = rx.borrow_and_update().clone();
            if !matches!(p, Phase::Connecting) {
                return p;
            }
            if rx.changed().await.is_err() {
                return self.phase();
            }
        }
    }

    /// The screen's size now.
    pub fn size(&self) -> (u16, u16) {
        let s = self.screen.read();
        (s.fb.width(), s.fb.height())
    }

    /// Tells every viewer what changed (under the screen's lock, so no viewer encodes a
    /// screen newer than the damage it was told).
    pub(crate) fn publish(&self, f: impl Fn(&mut Pending)) {
        for slot in self.slots.lock().iter() {
            f(&mut slot.pending.lock());
            slot.wake.notify_one();
        }
    }

    fn set_phase(&self, p: Phase) {
        self.phase.send_replace(p);
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Phase> {
        self.phase.subscribe()
    }
}

/// A viewer's membership: leaving the engine when dropped.
#[derive(Debug)]
pub struct Membership {
    engine: Arc<Engine>,
    pub(crate) slot: Arc<Slot>,
}

impl Membership {
    /// The engine joined.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.engine.slots.lock().retain(|s| s.id != self.slot.id);
        self.engine.membership.notify_one();
        if self.slot.info.is_viewer() {
            let now = std::time::SystemTime::now();
            if let Some(v) = self
                .engine
                .visits
                .lock()
                .iter_mut()
                .rev()
                .find(|v| v.info.session == self.slot.info.session && v.left.is_none())
            {
                v.left = Some(now);
            }
            tracing::info!(
                instance = %self.engine.instance,
                session = self.slot.info.session,
                peer = %self.slot.info.peer,
                role = self.slot.role().as_str(),
                "viewer left the console"
            );
        }
    }
}

/// The engines, one per instance.
#[derive(Debug, Default)]
pub struct Engines {
    map: Arc<Mutex<HashMap<String, Arc<Engine>>>>,
    next_slot: AtomicU64,
}

impl Engines {
    /// Joins `instance`'s engine, starting it (with what `start` gives) when there is
    /// none or the one there is ending.
    ///
    /// # Errors
    /// [`Busy`] when viewers hold the console and the policy is `reject`; with
    /// `takeover` they are told to leave.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn join(
        &self,
        instance: &str,
        policy: OnBusy,
        who: ViewerInfo,
        role: ViewerRole,
        start: impl FnOnce() -> Source,
        shutdown: &Shutdown,
        metrics: Arc<Metrics>,
    ) -> Result<Membership, Busy> {
        let mut map = self.map.lock();
        let engine = match map.get(instance) {
            Some(e) if !matches!(*e.phase.borrow(), Phase::Ended(_)) => {
                if who.is_viewer() {
                    let slots = e.slots.lock();
                    let mut held = slots.iter().filter(|s| s.info.is_viewer()).peekable();
                    match (policy, held.peek()) {
                        (OnBusy::Reject, Some(first)) => {
                            return Err(Busy {
                                holder: format!(
                                    "{} (session {})",
                                    first.info.peer, first.info.session
                                ),
                                since: humantime::format_rfc3339_seconds(first.info.since)
                                    .to_string(),
                            });
                        }
                        (OnBusy::Takeover, Some(_)) => {
                            for s in held {
                                tracing::info!(instance, holder = %s.info.peer, by = %who.peer, "taking the console over");
                                s.pending.lock().kicked =
                                    Some(format!("{} (session {})", who.peer, who.session));
                                s.wake.notify_one();
                            }
                        }
                        _ => {}
                    }
                }
                e.clone()
            }
            _ => {
                let source = start();
                let (tx, rx) = mpsc::channel(256);
                let engine = Arc::new(Engine {
                    instance: instance.to_owned(),
                    screen: RwLock::new(Screen {
                        fb: Framebuffer::new(0, 0),
                        cursor: None,
                        name: String::new(),
                        console_name: String::new(),
                        layout: Vec::new(),
                        qemu_keys: false,
                        generation: 0,
                    }),
                    slots: Mutex::new(Vec::new()),
                    input: tx,
                    phase: watch::Sender::new(Phase::Connecting),
                    complete: watch::Sender::new(false),
                    updates: watch::Sender::new(0),
                    membership: Notify::new(),
                    live_since: Mutex::new(None),
                    cache: cache::Cache::default(),
                    metrics: metrics.clone(),
                    stats: EngineStats::default(),
                    visits: Mutex::new(Vec::new()),
                    input_sink: Mutex::new(None),
                });
                map.insert(instance.to_owned(), engine.clone());
                match source {
                    Source::Console(connector, settings) => {
                        let task = upstream::Task {
                            engine: engine.clone(),
                            registry: self.map.clone(),
                            connector,
                            settings,
                            input: rx,
                            cancel: shutdown.token().clone(),
                            tracker: shutdown.clone(),
                            metrics,
                        };
                        shutdown.spawn(task.run());
                    }
                    Source::Recording(replay) => {
                        // Viewers' input goes nowhere (they are all view-only).
                        drop(rx);
                        let task = replay::Task {
                            engine: engine.clone(),
                            registry: self.map.clone(),
                            replay,
                            cancel: shutdown.token().clone(),
                        };
                        shutdown.spawn(task.run());
                    }
                }
                engine
            }
        };
        if who.is_viewer() {
            let mut visits = engine.visits.lock();
            if visits.len() < MAX_VISITS {
                visits.push(Visit {
                    info: who.clone(),
                    role,
                    left: None,
                });
            }
            drop(visits);
            tracing::info!(
                instance,
                session = who.session,
                peer = %who.peer,
                via = who.via,
                role = role.as_str(),
                "viewer joined the console"
            );
        }
        let slot = Arc::new(Slot {
            id: self.next_slot.fetch_add(1, Ordering::Relaxed),
            info: who,
            role: Mutex::new(role),
            pending: Mutex::new(Pending {
                cursor: true,
                ..Pending::default()
            }),
            wake: Notify::new(),
        });
        engine.slots.lock().push(slot.clone());
        engine.membership.notify_one();
        Ok(Membership { engine, slot })
    }

    /// The engines running now.
    pub fn list(&self) -> Vec<Arc<Engine>> {
        self.map.lock().values().cloned().collect()
    }

    /// `instance`'s engine, if one runs.
    pub fn get(&self, instance: &str) -> Option<Arc<Engine>> {
        self.map.lock().get(instance).cloned()
    }
}
