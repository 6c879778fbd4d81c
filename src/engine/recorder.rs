//! The engine's recorder (`[recording]`): a viewer of the engine that writes what it is
//! sent to a file instead of a socket. It starts with the console's first whole screen
//! and ends with the engine, so one file holds one console session with its drops,
//! resumes, banners, resizes and idle periods.
//!
//! Like any viewer it is told what changed and takes it at its own pace: at most one
//! update every [`FRAME_GAP`] (changes in between are coalesced, so a video-like screen
//! costs at most ten encodes a second; a change of the engine's phase, such as the
//! console lost or back, is written at once, so no outage is coalesced away), written
//! through `record::writer::Sink`, which never blocks: a disk that falls behind or fails
//! stops the recording, not the console. A session that ends is closed with an empty
//! update at its end's time ([`END_MARK`]). The first update with something to show
//! after each `keyframe_interval` is a keyframe (the whole screen, its Tight zlib stream
//! fully flushed before it so nothing after refers back past it), which `tcvnc play
//! --from` seeks to; the sidecar (`record::sidecar`) lists
//! them, and is written at the start, at each keyframe, when viewers come and go, and at
//! the end.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::viewer::Viewer;
use super::{Engine, Phase};
use crate::config::RecordingConfig;
use crate::record::format::From;
use crate::record::sidecar::{self, Keyframe, Sidecar};
use crate::record::writer::{free_name, Sink};

/// The shortest time between two recorded updates.
pub(crate) const FRAME_GAP: Duration = Duration::from_millis(100);
/// What ends a recording of a session that ended: an empty FramebufferUpdate (no
/// rectangles), which every player takes and which changes nothing, at the end's time.
pub(crate) const END_MARK: [u8; 4] = [0, 0, 0, 0];
/// The shortest time between two rewrites of the sidecar for viewers coming and going.
const SIDECAR_GAP: Duration = Duration::from_secs(2);

/// One engine's recorder.
pub(super) struct Recorder {
    pub(super) engine: Arc<Engine>,
    pub(super) cfg: RecordingConfig,
    pub(super) region: String,
    /// How long it waits for the console's first whole screen (the handshake timeout,
    /// as a viewer waits).
    pub(super) first_screen: Duration,
}

impl Recorder {
    /// Records until the engine ends (or the recording has to stop).
    pub(super) async fn run(self) {
        // It starts with the console's first whole screen, not with the empty one of an
        // engine that has just connected (its first update was then a black screen); a
        // console that never paints every pixel is recorded as it is after the wait.
        let _ = tokio::time::timeout(self.first_screen, self.engine.screen_complete()).await;
        let instance = self.engine.instance().to_owned();
        let started = SystemTime::now();
        let path = free_name(&self.cfg.dir, &instance, started);
        let metrics = self.engine.metrics.clone();
        let (sink, thread) = match Sink::create(&path, &instance, metrics.clone()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(instance, path = %path.display(), "cannot start the recording: {e}; the session goes on unrecorded: check [recording] dir");
                metrics.recording_stopped(&instance, "open_error");
                return;
            }
        };
        metrics.recording_live(&instance, 1);
        tracing::info!(instance, path = %path.display(), input = self.cfg.input, "recording the console");
        let membership = self.engine.observe();
        let slot = membership.slot.clone();
        let (w, h, name) = {
            let s = self.engine.screen.read();
            (s.fb.width(), s.fb.height(), s.name.clone())
        };
        // The name was just sent in the ServerInit.
        slot.pending.lock().name = false;
        for step in crate::record::preamble(w, h, &name) {
            sink.record_at(From::Server, 0, &step);
        }
        let mut side = Sidecar::new(&path, &instance, &self.region, started, w, h);
        side.input_recorded = self.cfg.input;
        self.write_sidecar(&mut side, &sink).await;
        if self.cfg.input {
            *self.engine.input_sink.lock() = Some(sink.clone());
        }
        let ended = self.record(&slot, &sink, &mut side).await;
        if ended.is_some() {
            // The file's last time is the session's end, not its last change: players
            // (export's frames and videos, noVNC's real-time playback) show the last
            // screen for as long as the session did.
            sink.record(From::Server, &END_MARK);
        }
        *self.engine.input_sink.lock() = None;
        drop(membership);
        sink.finish();
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        side.end = Some(sidecar::time(SystemTime::now()));
        side.ended = ended;
        self.write_sidecar(&mut side, &sink).await;
        metrics.recording_live(&instance, -1);
        tracing::info!(
            instance,
            path = %path.display(),
            bytes = sink.written(),
            stopped = side.stopped.as_deref().unwrap_or(""),
            "recording closed"
        );
    }

    /// The recording loop; returns why the session ended (`None`: the recording stopped
    /// first).
    async fn record(
        &self,
        slot: &Arc<super::Slot>,
        sink: &Sink,
        side: &mut Sidecar,
    ) -> Option<String> {
        let metrics = self.engine.metrics.clone();
        let mut v = match Viewer::recording(
            self.engine.clone(),
            crate::record::FORMAT,
            crate::record::ENCODINGS,
        ) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(instance = %self.engine.instance(), "cannot record: {e}");
                return None;
            }
        };
        let mut phase = self.engine.subscribe();
        let mut last = tokio::time::Instant::now() - FRAME_GAP;
        let mut visits = 0;
        let mut sidecar_at = tokio::time::Instant::now();
        // The phase changed since the last write: write at once.
        let mut at_once = false;
        // The first update after this time (ms into the recording) that has something
        // to show is a keyframe.
        let every = u64::try_from(self.cfg.keyframe_interval.as_millis()).unwrap_or(u64::MAX);
        let mut next_key = every;
        loop {
            let ended = match &*phase.borrow_and_update() {
                Phase::Ended(f) => Some(f.to_string()),
                _ => None,
            };
            // Changes are coalesced over FRAME_GAP, but a change of phase (the console
            // lost, back, ended) is written at once: an outage shorter than the gap
            // (banner and name drawn, then the console's screen back) would vanish.
            if !std::mem::take(&mut at_once) {
                tokio::select! {
                    () = tokio::time::sleep_until(last + FRAME_GAP) => {}
                    r = phase.changed() => if r.is_ok() {
                        at_once = true;
                        continue;
                    },
                }
            }
            let key = (sink.ms() >= next_key && slot.pending.lock().screen_changed())
                .then(|| v.keyframe(slot));
            match v.next_messages(slot, self.cfg.input, &metrics) {
                Ok(bytes) if !bytes.is_empty() => {
                    last = tokio::time::Instant::now();
                    let written = match key {
                        Some((width, height)) => match sink.record_keyframe(&bytes) {
                            Some((ms, offset)) => {
                                next_key = ms.saturating_add(every);
                                side.keyframes.push(Keyframe {
                                    ms,
                                    offset,
                                    width,
                                    height,
                                });
                                // The sidecar lists it at once.
                                self.write_sidecar(side, sink).await;
                                true
                            }
                            None => false,
                        },
                        None => sink.record(From::Server, &bytes),
                    };
                    if !written {
                        side.stopped = sink.stopped().map(|s| s.why);
                        return None;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(instance = %self.engine.instance(), "recording stopped: {e}");
                    side.stopped = Some(e);
                    return None;
                }
            }
            if let Some(why) = ended {
                return Some(why);
            }
            if let Some(s) = sink.stopped() {
                side.stopped = Some(s.why);
                return None;
            }
            let n = self.engine.visits.lock().len();
            if n != visits && sidecar_at.elapsed() >= SIDECAR_GAP {
                visits = n;
                sidecar_at = tokio::time::Instant::now();
                self.write_sidecar(side, sink).await;
            }
            tokio::select! {
                () = slot.wake.notified() => {}
                r = phase.changed() => match r {
                    Ok(()) => at_once = true,
                    Err(_) => return Some("tcvnc stopped".into()),
                },
                // Viewers who came and went reach the sidecar even on a still screen.
                () = tokio::time::sleep(SIDECAR_GAP) => {}
            }
        }
    }

    /// Writes the sidecar with the engine's counters now (off the runtime's threads).
    async fn write_sidecar(&self, side: &mut Sidecar, sink: &Sink) {
        side.viewers = self
            .engine
            .visits
            .lock()
            .iter()
            .map(|v| sidecar::Viewer {
                session: v.info.session,
                role: v.role.as_str().into(),
                peer: v.info.peer.to_string(),
                via: v.info.via.into(),
                joined: sidecar::time(v.info.since),
                left: v.left.map(sidecar::time),
            })
            .collect();
        side.urls_spent = self.engine.stats.urls.load(Ordering::Relaxed);
        side.resumes = self.engine.stats.resumes.load(Ordering::Relaxed);
        side.bytes = sink.written();
        if side.stopped.is_none() {
            side.stopped = sink.stopped().map(|s| s.why);
        }
        let dir: PathBuf = self.cfg.dir.clone();
        let s = side.clone();
        let written = tokio::task::spawn_blocking(move || sidecar::write(&dir, &s)).await;
        if let Ok(Err(e)) = written {
            tracing::warn!(instance = %self.engine.instance(), "cannot write the recording's sidecar: {e}");
        }
    }
}
