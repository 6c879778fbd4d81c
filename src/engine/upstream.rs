//! The console side of an engine: open the console through the [`Connector`] (one URL
//! per attempt, through the instance's budget), its RFB handshake as a client (shared,
//! 32-bit true colour, the encodings the decoders take), then decode what it sends into
//! the screen and tell each viewer what changed; send viewers' input; keep the console
//! answering pings. When the console is lost, viewers keep the last screen with a banner
//! saying why and when the next attempt is, while the task has it back: the first
//! attempt at once, then jittered backoff, waiting for the budget when it is spent and for
//! the instance to run again when it is not running (watched without spending a URL);
//! after `resume_timeout` viewers are closed with a reason. After the last viewer leaves,
//! the console is kept for `linger`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::damage::{Coverage, Damage};
use super::msgs::{key_event, qemu_key_event};
use super::{Connected, Connector, Engine, Input, Phase, Settings};
use crate::cloud::{Class, Kind};
use crate::console::decode::{encoding, Event, UpdateDecoder};
use crate::console::encode::{CursorImage, Screen as LayoutScreen};
use crate::console::fb::{Framebuffer, Rect};
use crate::metrics::Metrics;
use crate::outcome::{self, Failure};
use crate::rfb::handshake;
use crate::rfb::messages::PixelFormat;
use crate::ws::Recv;

/// The pixel format asked of the console: what the framebuffer holds, so decoding is a
/// plain copy.
const FORMAT: PixelFormat = PixelFormat::RGB888;

/// Longest wait between two attempts (budget waits aside).
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often an instance that is not running is looked at (each look is a
/// `DescribeInstancesStatus`, no URL).
const STATE_POLL: Duration = Duration::from_secs(2);

/// The upstream task of one engine.
pub(super) struct Task {
    pub(super) engine: Arc<Engine>,
    pub(super) registry: Arc<Mutex<HashMap<String, Arc<Engine>>>>,
    pub(super) connector: Arc<dyn Connector>,
    pub(super) settings: Settings,
    pub(super) input: mpsc::Receiver<Input>,
    pub(super) cancel: CancellationToken,
    /// Tracks the recorder (a drain waits for its file to close).
    pub(super) tracker: crate::shutdown::Shutdown,
    pub(super) metrics: Arc<Metrics>,
}

/// Why a live console connection ended.
enum Lost {
    /// Dropped, failed or cut: resume. A fixed label (metrics) and the words.
    Dropped(&'static str, String),
    /// The last viewer left and `linger` passed.
    Lingered,
    /// tcvnc is shutting down.
    Shutdown,
}

/// The held state of the keyboard and the pointer's buttons, released on the next
/// console after a drop.
#[derive(Default)]
struct Keys {
    keysyms: HashSet<u32>,
    /// keycode → keysym of QEMU extended key events held.
    codes: HashMap<u32, u32>,
    /// The last PointerEvent (button mask, x, y).
    pointer: Option<[u8; 6]>,
}

impl Task {
    pub(super) async fn run(mut self) {
        let instance = self.engine.instance.clone();
        let mut keys = Keys::default();
        self.metrics.engine_live(&instance, 1);
        // The first connection: any failure ends the engine and refuses its viewers.
        let end = match self.open(&mut keys).await {
            Err(f) => Some(f),
            Ok(mut c) => {
                tracing::info!(instance, url = %c.url, request_id = %c.request_id, "console engine connected");
                if let Some((cfg, region)) = self.settings.recording.clone() {
                    let rec = super::recorder::Recorder {
                        engine: self.engine.clone(),
                        cfg,
                        region,
                        first_screen: self.settings.handshake_timeout,
                    };
                    self.tracker.spawn(rec.run());
                }
                loop {
                    let lost = self.live(&mut c, &mut keys).await;
                    drop(c);
                    *self.engine.live_since.lock() = None;
                    match lost {
                        Lost::Lingered => break None,
                        Lost::Shutdown => break Some(Failure::Shutdown),
                        Lost::Dropped(label, cause) => {
                            let since = Instant::now();
                            tracing::warn!(instance, cause = %cause, "console lost; viewers stay connected while tcvnc reconnects");
                            match self.resume(&cause, &mut keys).await {
                                Ok(Some(next)) => {
                                    let waited = since.elapsed();
                                    self.metrics.engine_resume(
                                        &instance,
                                        label,
                                        waited.as_secs_f64(),
                                    );
                                    self.engine
                                        .stats
                                        .resumes
                                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                    tracing::info!(
                                        instance,
                                        cause = %cause,
                                        url = %next.url,
                                        request_id = %next.request_id,
                                        without_console_ms = waited.as_millis() as u64,
                                        "console resumed"
                                    );
                                    c = next;
                                }
                                Ok(None) => break None,
                                Err(f) => break Some(f),
                            }
                        }
                    }
                }
            }
        };
        let failure = end.unwrap_or(Failure::Lingered);
        self.end(failure);
        self.metrics.engine_live(&instance, -1);
    }

    /// Leaves the registry and tells the viewers why (under the registry's lock, so
    /// nobody joins an ending engine).
    fn end(&self, failure: Failure) {
        let mut map = self.registry.lock();
        self.engine.leave(&mut map, failure);
    }

    /// Ends the engine if no viewer is left: whether it ended.
    fn end_if_idle(&self) -> bool {
        self.engine.end_if_idle(&self.registry)
    }

    fn no_viewers(&self) -> bool {
        self.engine.members() == 0
    }

    /// One attempt: connect and complete the console's handshake.
    async fn open(&mut self, keys: &mut Keys) -> Result<Connected, Failure> {
        let connected = tokio::select! {
            c = self.connector.connect() => c,
            () = self.cancel.cancelled() => return Err(Failure::Shutdown),
        };
        // A URL was spent when one was minted: dialled, or minted and the dial failed.
        if matches!(connected, Ok(_) | Err(Failure::Dial(_))) {
            self.engine
                .stats
                .urls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let mut c = connected?;
        let limit = self.settings.handshake_timeout;
        let shook = tokio::select! {
            r = tokio::time::timeout(limit, handshake_with(&mut c, &self.settings)) => r,
            () = self.cancel.cancelled() => return Err(Failure::Shutdown),
        };
        let init = match shook {
            Ok(Ok(init)) => init,
            Ok(Err(f)) => {
                c.up.io.close(outcome::CLOSE_NORMAL, "").await;
                return Err(f);
            }
            Err(_) => {
                c.up.io
                    .close(outcome::CLOSE_NORMAL, "handshake ended")
                    .await;
                return Err(Failure::HandshakeTimeout {
                    seconds: limit.as_secs(),
                });
            }
        };
        // Keys viewers held when the last console dropped are released on this one.
        let mut release = Vec::new();
        for (code, sym) in keys.codes.drain() {
            release.extend_from_slice(&qemu_key_event(false, sym, code));
        }
        for sym in keys.keysyms.drain() {
            release.extend_from_slice(&key_event(false, sym));
        }
        if let Some(mut p) = keys.pointer.take().filter(|p| p[1] != 0) {
            p[1] = 0;
            release.extend_from_slice(&p);
        }
        if !release.is_empty() {
            let _ = c.up.io.send(Bytes::from(release)).await;
        }
        {
            let mut s = self.engine.screen.write();
            // Viewers that joined before the first screen get it in their ServerInit.
            let had_screen = !s.fb.bounds().is_empty();
            let resized = s.fb.width() != init.width || s.fb.height() != init.height;
            if resized {
                s.fb.resize(init.width, init.height);
                s.layout.clear();
            }
            s.console_name = init.name.clone();
            s.name = init.name;
            s.generation += 1;
            s.qemu_keys = false;
            let full = s.fb.bounds();
            self.engine.publish(|p| {
                p.resized |= resized && had_screen;
                p.name = true;
                p.damage.add(full);
            });
        }
        *self.engine.live_since.lock() = Some(Instant::now());
        self.engine.complete.send_replace(false);
        self.engine.set_phase(Phase::Live);
        Ok(c)
    }

    /// The console is connected: decode, forward input, ping, linger.
    async fn live(&mut self, c: &mut Connected, keys: &mut Keys) -> Lost {
        let mut decoder = match UpdateDecoder::new(&FORMAT) {
            Ok(d) => d,
            Err(e) => return Lost::Dropped("decode_error", format!("decoder: {e}")),
        };
        let mut acc = Damage::default();
        let (w, h) = self.engine.size();
        let mut coverage = Some(Coverage::new(w, h));
        let mut changes = Changes::default();
        // 0 turns pings off (as in bridge mode): a day between ticks.
        let keepalive = if self.settings.keepalive.is_zero() {
            Duration::from_secs(86_400)
        } else {
            self.settings.keepalive
        };
        let mut ping = tokio::time::interval_at(Instant::now() + keepalive, keepalive);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // When nothing was sent for a keepalive period (a still screen), an incremental
        // update request goes too: gateways that cut connections idle in data (pings
        // not counted) see the console in use while viewers watch it.
        let mut sent_at = Instant::now();
        let mut linger_until = self
            .no_viewers()
            .then(|| Instant::now() + self.settings.linger);
        loop {
            tokio::select! {
                r = c.up.io.recv() => match r {
                    Recv::Data(b) => {
                        match apply(&self.engine, &mut decoder, &b, &mut acc, &mut changes, &mut coverage) {
                            Ok(updates) => {
                                for _ in 0..updates {
                                    // The next incremental request as soon as an update ends:
                                    // the console paces itself.
                                    let (w, h) = self.engine.size();
                                    if c.up.io.send(Bytes::copy_from_slice(&update_request(true, w, h))).await.is_err() {
                                        return Lost::Dropped("failed", "the console connection failed while sending".into());
                                    }
                                    sent_at = Instant::now();
                                }
                            }
                            Err(e) => {
                                c.up.io.close(crate::ws::CLOSE_PROTOCOL, "").await;
                                return Lost::Dropped("decode_error", format!("the console sent what tcvnc cannot decode: {e}"));
                            }
                        }
                    }
                    Recv::Closed(close) => {
                        return match close {
                            Some((code, reason)) if !reason.is_empty() => Lost::Dropped("closed", format!("the gateway closed the connection ({code} {})", crate::redact::text(&reason))),
                            Some((code, _)) => Lost::Dropped("closed", format!("the gateway closed the connection ({code})")),
                            None => Lost::Dropped("dropped", "the gateway dropped the connection (no close frame)".into()),
                        };
                    }
                    Recv::Failed(e) => return Lost::Dropped("failed", format!("the console connection failed: {}", crate::redact::text(&e))),
                },
                i = self.input.recv() => {
                    let Some(i) = i else { return Lost::Shutdown };
                    let mut out = Vec::new();
                    let mut acks = Vec::new();
                    acks.extend(self.input_bytes(i, keys, &mut out));
                    // What else is waiting goes in the same frame.
                    while out.len() < 16 * 1024 {
                        match self.input.try_recv() {
                            Ok(i) => acks.extend(self.input_bytes(i, keys, &mut out)),
                            Err(_) => break,
                        }
                    }
                    if !out.is_empty() {
                        self.engine.record_input(&out);
                        if c.up.io.send(Bytes::from(out)).await.is_err() {
                            return Lost::Dropped("failed", "the console connection failed while sending input".into());
                        }
                        sent_at = Instant::now();
                    }
                    for a in acks {
                        let _ = a.send(());
                    }
                }
                _ = ping.tick() => {
                    let unanswered = c.up.io.unanswered_pings();
                    if unanswered >= self.settings.max_unanswered_pings {
                        c.up.io.close(outcome::CLOSE_GOING_AWAY, "no answer to pings").await;
                        return Lost::Dropped("unanswered_pings", format!("the console answered none of {unanswered} pings over {} s", (keepalive * unanswered).as_secs()));
                    }
                    if c.up.io.ping().await.is_err() {
                        return Lost::Dropped("failed", "the console connection failed while pinging".into());
                    }
                    if sent_at.elapsed() >= keepalive {
                        let (w, h) = self.engine.size();
                        if c.up.io.send(Bytes::copy_from_slice(&update_request(true, w, h))).await.is_err() {
                            return Lost::Dropped("failed", "the console connection failed while sending".into());
                        }
                        sent_at = Instant::now();
                    }
                }
                () = self.engine.membership.notified() => {
                    linger_until = match (self.no_viewers(), linger_until) {
                        (true, None) => Some(Instant::now() + self.settings.linger),
                        (true, kept) => kept,
                        (false, _) => None,
                    };
                }
                () = sleep_until_opt(linger_until) => {
                    if self.end_if_idle() {
                        c.up.io.close(outcome::CLOSE_NORMAL, "").await;
                        return Lost::Lingered;
                    }
                    linger_until = None;
                }
                () = self.cancel.cancelled() => {
                    c.up.io.close(outcome::CLOSE_GOING_AWAY, "tcvnc is shutting down").await;
                    return Lost::Shutdown;
                }
            }
        }
    }

    /// One input's bytes for the console; tracks held keys. A flush is handed back, to
    /// be answered once `out` is written.
    fn input_bytes(
        &self,
        i: Input,
        keys: &mut Keys,
        out: &mut Vec<u8>,
    ) -> Option<tokio::sync::oneshot::Sender<()>> {
        match i {
            Input::Flush(ack) => return Some(ack),
            Input::Raw(b) => out.extend_from_slice(&b),
            Input::Pointer(b) => {
                if let Ok(p) = <[u8; 6]>::try_from(&b[..]) {
                    keys.pointer = Some(p);
                }
                out.extend_from_slice(&b);
            }
            Input::Key { down, keysym } => {
                if down {
                    keys.keysyms.insert(keysym);
                } else {
                    keys.keysyms.remove(&keysym);
                }
                out.extend_from_slice(&key_event(down, keysym));
            }
            Input::QemuKey {
                down,
                keysym,
                keycode,
            } => {
                if self.engine.screen.read().qemu_keys {
                    if down {
                        keys.codes.insert(keycode, keysym);
                    } else {
                        keys.codes.remove(&keycode);
                    }
                    out.extend_from_slice(&qemu_key_event(down, keysym, keycode));
                } else {
                    self.input_bytes(Input::Key { down, keysym }, keys, out);
                }
            }
        }
        None
    }

    /// Has the console back, or says why not: `Ok(None)` when no viewer is left to wait.
    async fn resume(&mut self, cause: &str, keys: &mut Keys) -> Result<Option<Connected>, Failure> {
        let deadline = Instant::now() + self.settings.resume_timeout;
        let mut attempt: u32 = 0;
        let mut delay = jitter(Duration::from_millis(50), 0.0);
        let mut why = format!("reconnecting: {}", short_cause(cause));
        loop {
            let next = (Instant::now() + delay).min(deadline);
            // Wait, redrawing the banner's countdown each second; give up when every
            // viewer left (nobody to resume for), or on shutdown.
            loop {
                let left = next.saturating_duration_since(Instant::now());
                self.show_waiting(&why, next, left);
                if left.is_zero() {
                    break;
                }
                let tick = left.min(Duration::from_secs(1));
                tokio::select! {
                    () = tokio::time::sleep(tick) => {}
                    () = self.engine.membership.notified() => {}
                    () = self.cancel.cancelled() => return Err(Failure::Shutdown),
                }
                if self.no_viewers() && self.end_if_idle() {
                    return Ok(None);
                }
                // Input while there is no console is dropped, keys still tracked.
                while let Ok(i) = self.input.try_recv() {
                    let mut sink = Vec::new();
                    // A flush is dropped unanswered: nothing reached a console.
                    drop(self.input_bytes(i, keys, &mut sink));
                    self.engine
                        .stats
                        .input_dropped
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            if Instant::now() >= deadline {
                return Err(Failure::ResumeTimeout {
                    instance: self.engine.instance.clone(),
                    waited: self.settings.resume_timeout,
                    last: why,
                });
            }
            attempt += 1;
            self.show_waiting(
                "reconnecting: asking for a console URL",
                Instant::now(),
                Duration::ZERO,
            );
            match self.open(keys).await {
                Ok(c) => return Ok(Some(c)),
                Err(f) => {
                    let (next_delay, next_why) = match &f {
                        Failure::Shutdown => return Err(f),
                        Failure::Budget(e) => (
                            e.retry_after + jitter(Duration::from_millis(200), 0.0),
                            "reconnecting: waiting for the URL budget".to_owned(),
                        ),
                        Failure::Fleet(crate::fleet::Refusal::Exhausted(e)) => (
                            e.retry_after + jitter(Duration::from_millis(200), 0.0),
                            "reconnecting: waiting for the shared URL budget".to_owned(),
                        ),
                        Failure::NotRunning(n) => (
                            STATE_POLL,
                            format!(
                                "instance is {}: waiting for it to run",
                                n.state.to_uppercase()
                            ),
                        ),
                        Failure::Cloud(crate::cloud::Error::Api(e))
                            if matches!(
                                e.classify().1,
                                Kind::InstanceState | Kind::OperationInProgress
                            ) =>
                        {
                            (
                                STATE_POLL,
                                "instance is not running: waiting for it to run".to_owned(),
                            )
                        }
                        Failure::Cloud(e) if e.class() == Class::Permanent => return Err(f),
                        Failure::Upstream(handshake::Error::UpstreamNeedsPassword) => {
                            return Err(f)
                        }
                        other => (
                            backoff(attempt),
                            format!("reconnecting: {}", short_cause(&other.to_string())),
                        ),
                    };
                    tracing::info!(instance = %self.engine.instance, attempt, error = %f, retry_in_ms = next_delay.as_millis() as u64, "console not back yet");
                    delay = next_delay;
                    why = next_why;
                }
            }
        }
    }

    /// The banner and the desktop name while waiting.
    fn show_waiting(&self, why: &str, next: Instant, left: Duration) {
        let text = if left.is_zero() {
            why.to_owned()
        } else {
            format!("{why}; next URL in {} s", left.as_secs_f64().ceil() as u64)
        };
        let mut s = self.engine.screen.write();
        let bar = draw_banner(&mut s.fb, &format!("tcvnc: {text}"));
        s.generation += 1;
        let name = format!("{text} - {}", s.console_name);
        let renamed = s.name != name;
        s.name = name;
        self.engine.publish(|p| {
            p.damage.add(bar);
            p.name |= renamed;
        });
        drop(s);
        self.engine.set_phase(Phase::Waiting {
            why: text,
            next: Some(next),
        });
    }
}

/// Feeds `bytes` (the console's, or a recording's) to the decoder under the screen's
/// lock; publishes each finished update to the viewers. Returns how many updates ended.
pub(super) fn apply(
    engine: &Engine,
    decoder: &mut UpdateDecoder,
    bytes: &[u8],
    acc: &mut Damage,
    changes: &mut Changes,
    coverage: &mut Option<Coverage>,
) -> Result<usize, crate::console::decode::DecodeError> {
    let mut rest = bytes;
    let mut updates = 0;
    let mut s = engine.screen.write();
    while !rest.is_empty() {
        let fed = decoder.feed(rest, &mut s.fb)?;
        rest = &rest[fed.consumed..];
        let progressed = fed.consumed > 0 || !fed.events.is_empty();
        for ev in fed.events {
            match ev {
                Event::Damage(r) => {
                    acc.add(r);
                    if let Some(c) = coverage.as_mut() {
                        c.paint(r);
                    }
                }
                Event::Resize {
                    width,
                    height,
                    screens,
                    ..
                } => {
                    s.layout = screens
                        .iter()
                        .map(|sc| LayoutScreen {
                            id: sc.id,
                            area: sc.rect,
                            flags: sc.flags,
                        })
                        .collect();
                    changes.resized = true;
                    acc.add(Rect::new(0, 0, width, height));
                    if coverage.is_some() {
                        *coverage = Some(Coverage::new(width, height));
                    }
                }
                Event::Cursor(shape) => {
                    s.cursor = Some(CursorImage {
                        hot_x: shape.hotspot_x,
                        hot_y: shape.hotspot_y,
                        width: shape.width,
                        height: shape.height,
                        pixels: shape.pixels,
                        mask: shape.mask,
                    });
                    changes.cursor = true;
                }
                Event::DesktopName(n) => {
                    s.console_name = n.clone();
                    s.name = n;
                    changes.name = true;
                }
                Event::QemuExtendedKeyEvent => s.qemu_keys = true,
                // Server messages outside updates reach viewers at once.
                Event::Bell => engine.publish(|p| p.bell = true),
                Event::CutText { text, .. } => {
                    let latin1: Bytes = text
                        .chars()
                        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
                        .collect::<Vec<u8>>()
                        .into();
                    engine.publish(|p| p.cut = Some(latin1.clone()));
                }
                Event::UpdateEnd => {
                    // The console's screen once every pixel of it was painted.
                    if coverage.as_ref().is_some_and(Coverage::complete) {
                        *coverage = None;
                        engine.complete.send_replace(true);
                    }
                    engine.updates.send_modify(|n| *n += 1);
                    // The encode cache's generation moves once per update: viewers
                    // that encode while the next update is being decoded still
                    // share. (A rectangle encoded from pixels that update already
                    // changed is sent again: its damage is published at its end.)
                    s.generation += 1;
                    updates += 1;
                    let damage = acc.take();
                    let ch = std::mem::take(changes);
                    engine.publish(|p| {
                        p.damage.add_all(&damage);
                        p.resized |= ch.resized;
                        p.cursor |= ch.cursor;
                        p.name |= ch.name;
                    });
                }
                Event::LedState(_)
                | Event::PointerMotion { .. }
                | Event::Fence { .. }
                | Event::EndOfContinuousUpdates => {}
            }
        }
        if !progressed {
            break;
        }
    }
    drop(s);
    if updates > 0 {
        engine
            .stats
            .frames
            .fetch_add(updates as u64, std::sync::atomic::Ordering::Relaxed);
        engine
            .metrics
            .engine_frames(&engine.instance, updates as u64);
    }
    Ok(updates)
}

/// Changes other than pixels, gathered until an update ends.
#[derive(Default)]
pub(super) struct Changes {
    resized: bool,
    cursor: bool,
    name: bool,
}

/// SetPixelFormat, SetEncodings and the first full FramebufferUpdateRequest.
async fn handshake_with(
    c: &mut Connected,
    settings: &Settings,
) -> Result<crate::rfb::messages::ServerInit, Failure> {
    let io = &mut c.up.io;
    let offer = handshake::upstream_start(io)
        .await
        .map_err(Failure::Upstream)?;
    handshake::upstream_authenticate(io, &offer, settings.upstream_password.as_ref())
        .await
        .map_err(Failure::Upstream)?;
    let init = handshake::upstream_init(io)
        .await
        .map_err(Failure::Upstream)?;
    if init.width > crate::console::fb::MAX_SIDE || init.height > crate::console::fb::MAX_SIDE {
        return Err(Failure::Upstream(handshake::Error::Protocol(format!(
            "the console's screen is {}x{}, larger than tcvnc holds ({} a side)",
            init.width,
            init.height,
            crate::console::fb::MAX_SIDE
        ))));
    }
    let mut out = vec![0u8, 0, 0, 0];
    out.extend_from_slice(&FORMAT.to_bytes());
    let list = encoding::PREFERRED;
    out.extend_from_slice(&[2, 0]);
    out.extend_from_slice(&(list.len() as u16).to_be_bytes());
    for e in list {
        out.extend_from_slice(&e.to_be_bytes());
    }
    out.extend_from_slice(&update_request(false, init.width, init.height));
    io.send(Bytes::from(out))
        .await
        .map_err(|e| Failure::Upstream(handshake::Error::Io(e)))?;
    Ok(init)
}

/// A FramebufferUpdateRequest for the whole screen.
fn update_request(incremental: bool, w: u16, h: u16) -> [u8; 10] {
    let (w, h) = (w.to_be_bytes(), h.to_be_bytes());
    [3, u8::from(incremental), 0, 0, 0, 0, w[0], w[1], h[0], h[1]]
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// `base` plus up to `base` × `spread` more, at random (0.0: up to `base` itself).
fn jitter(base: Duration, spread: f64) -> Duration {
    let f: f64 = rand::random();
    if spread == 0.0 {
        base.mul_f64(f)
    } else {
        base + base.mul_f64(f * spread)
    }
}

/// The wait before attempt `n + 1` after `n` failed: 1, 2, 4 … s up to
/// [`MAX_BACKOFF`], each between half and all of it.
fn backoff(n: u32) -> Duration {
    let full = Duration::from_secs(1u64 << n.saturating_sub(1).min(5)).min(MAX_BACKOFF);
    full / 2 + jitter(full / 2, 0.0)
}

/// The cause in a few words, for the banner.
fn short_cause(cause: &str) -> String {
    let first = cause.split(':').next().unwrap_or(cause);
    first.chars().take(60).collect()
}

/// Draws the one-line banner at the top of the screen; returns what it covered.
fn draw_banner(fb: &mut Framebuffer, text: &str) -> Rect {
    crate::console::banner::draw_banner(fb, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_within_bounds() {
        for n in 1..20 {
            let d = backoff(n);
            let full = Duration::from_secs(1u64 << (n - 1).min(5)).min(MAX_BACKOFF);
            assert!(d >= full / 2 && d <= full, "attempt {n}: {d:?}");
        }
    }

    #[test]
    fn update_requests() {
        assert_eq!(
            update_request(true, 1280, 800),
            [3, 1, 0, 0, 0, 0, 5, 0, 3, 32]
        );
    }
}
