//! An engine whose console is a recording (`tcvnc play`): the recording's updates are
//! decoded into the screen at their times (scaled by `speed`; everything before `from`
//! at once), and viewers are served from the screen as from a live console: any viewer,
//! any pixel format and encoding, all view-only. The playback starts when the first
//! viewer joins and ends when the last leaves (the next viewer starts it again); at the
//! end of the recording the last screen stays, its name saying so.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use std::collections::HashMap;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::damage::{Coverage, Damage};
use super::upstream::{apply, Changes};
use super::{Engine, Phase};
use crate::console::decode::UpdateDecoder;
use crate::outcome::Failure;
use crate::record::source;

/// What `tcvnc play` plays.
#[derive(Debug, Clone)]
pub struct Replay {
    /// The recording.
    pub path: PathBuf,
    /// Playback speed (2.0: twice as fast).
    pub speed: f64,
    /// Where playback starts.
    pub from: Duration,
}

/// The task that plays a recording into an engine.
pub(super) struct Task {
    pub(super) engine: Arc<Engine>,
    pub(super) registry: Arc<Mutex<HashMap<String, Arc<Engine>>>>,
    pub(super) replay: Arc<Replay>,
    pub(super) cancel: CancellationToken,
}

impl Task {
    pub(super) async fn run(self) {
        if let Err(f) = self.play().await {
            if !matches!(f, Failure::Shutdown) {
                tracing::warn!(path = %self.replay.path.display(), "{f}");
            }
            let mut map = self.registry.lock();
            self.engine.leave(&mut map, f);
        }
    }

    async fn play(&self) -> Result<(), Failure> {
        let path = self.replay.path.clone();
        let from_ms = self.replay.from.as_millis() as u64;
        let engine = self.engine.clone();
        // The handshake, and everything before `from` (from its last keyframe, when the
        // sidecar lists them), decoded at once off the runtime.
        let started = Instant::now();
        let opened = tokio::task::spawn_blocking(move || seek(&engine, &path, from_ms))
            .await
            .map_err(|e| Failure::Recording(format!("the reader failed: {e}")))?;
        let (mut src, mut decoder, mut st, mut next, keyframe) = opened?;
        tracing::info!(
            path = %self.replay.path.display(),
            from_s = self.replay.from.as_secs_f64(),
            keyframe_ms = keyframe,
            ready_ms = started.elapsed().as_millis() as u64,
            "playing"
        );
        // Viewers are served once the screen is whole, as with a live console: `apply`
        // says so at the update that paints its last pixel, before `from` or, from the
        // start of a recording, at its first update played (until then a viewer would
        // be sent the empty screen).
        self.engine.set_phase(Phase::Live);
        let t0 = Instant::now();
        let speed = self.replay.speed.max(0.001);
        while let Some((ms, data)) = next {
            let due =
                t0 + Duration::from_secs_f64(ms.saturating_sub(from_ms) as f64 / 1000.0 / speed);
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(due) => break,
                    () = self.engine.membership.notified() => {
                        if self.engine.end_if_idle(&self.registry) {
                            return Ok(());
                        }
                    }
                    () = self.cancel.cancelled() => return Err(Failure::Shutdown),
                }
            }
            st.feed(&self.engine, &mut decoder, &data)?;
            next = src
                .next_data()
                .map_err(|e| Failure::Recording(e.to_string()))?;
        }
        // A recording that never painted every pixel: its screen is what there is.
        self.engine.complete.send_replace(true);
        {
            let mut s = self.engine.screen.write();
            let suffix = if src.finished() {
                " (end of recording)"
            } else {
                " (end of recording: the file was cut short)"
            };
            s.name = format!("{}{suffix}", s.console_name);
            self.engine.publish(|p| p.name = true);
        }
        tracing::info!(path = %self.replay.path.display(), "end of recording; the last screen stays until the viewers leave");
        loop {
            tokio::select! {
                () = self.engine.membership.notified() => {
                    if self.engine.end_if_idle(&self.registry) {
                        return Ok(());
                    }
                }
                () = self.cancel.cancelled() => return Err(Failure::Shutdown),
            }
        }
    }
}

/// The first data of a recording not decoded yet (its time and bytes), if any is left.
type Undecoded = Option<(u64, Vec<u8>)>;

/// A recording opened, decoded up to `from_ms`: the reader, the decoder and its state,
/// the first data not decoded yet, and the keyframe decoding started at, if any.
type Opened = (
    source::Source<std::io::BufReader<std::fs::File>>,
    UpdateDecoder,
    State,
    Undecoded,
    Option<u64>,
);

/// Opens the recording at `path` and decodes it into the engine's screen up to
/// `from_ms`: from the last keyframe at or before it that its sidecar lists, else (no
/// sidecar, no keyframe there, or one that is not where the sidecar says or whose
/// decoding fails before `from_ms`, as when a zlib stream was not cut there) from the
/// start. Blocking.
fn seek(engine: &Engine, path: &std::path::Path, from_ms: u64) -> Result<Opened, Failure> {
    let broken = |e: crate::record::format::FormatError| Failure::Recording(e.to_string());
    let mut src = source::open(path).map_err(broken)?;
    let init = src.init.clone();
    let mut decoder = UpdateDecoder::new(&init.format)
        .map_err(|e| Failure::Recording(format!("its pixel format: {e}")))?;
    let key = if from_ms == 0 {
        None
    } else {
        match crate::record::sidecar::keyframes(path) {
            Ok(list) => list.into_iter().rev().find(|k| k.ms <= from_ms),
            Err(why) => {
                tracing::info!(path = %path.display(), "no keyframe index ({why}): seeking decodes the recording from its start");
                None
            }
        }
    };
    if let Some(k) = key {
        match from_keyframe(engine, &mut src, &mut decoder, &init, &k, from_ms) {
            Ok((st, next)) => return Ok((src, decoder, st, next, Some(k.ms))),
            Err(e) => {
                tracing::warn!(path = %path.display(), "{e}; seeking decodes the recording from its start instead (its sidecar's keyframe index does not match the file)");
                src = source::open(path).map_err(broken)?;
                decoder = UpdateDecoder::new(&init.format)
                    .map_err(|e| Failure::Recording(format!("its pixel format: {e}")))?;
            }
        }
    }
    reset_screen(engine, init.width, init.height, &init.name);
    let mut st = State::new(init.width, init.height);
    let next = decode_to(engine, &mut src, &mut decoder, &mut st, from_ms)?;
    Ok((src, decoder, st, next, None))
}

/// Decodes `src` into the engine's screen up to `from_ms`; the first data at or after
/// it, not decoded yet.
fn decode_to(
    engine: &Engine,
    src: &mut source::Source<std::io::BufReader<std::fs::File>>,
    decoder: &mut UpdateDecoder,
    st: &mut State,
    from_ms: u64,
) -> Result<Undecoded, Failure> {
    loop {
        match src
            .next_data()
            .map_err(|e| Failure::Recording(e.to_string()))?
        {
            Some((ms, data)) if ms < from_ms => st.feed(engine, decoder, &data)?,
            other => return Ok(other),
        }
    }
}

/// Moves `src` to keyframe `k`, decodes it into a screen of the keyframe's size (the
/// decoder joining the zlib streams there), then on up to `from_ms`; the state and the
/// first data not decoded yet. An error (the keyframe not where the sidecar says, or a
/// stream not cut there, which may show only in a later update) names the keyframe.
fn from_keyframe(
    engine: &Engine,
    src: &mut source::Source<std::io::BufReader<std::fs::File>>,
    decoder: &mut UpdateDecoder,
    init: &crate::rfb::messages::ServerInit,
    k: &crate::record::sidecar::Keyframe,
    from_ms: u64,
) -> Result<(State, Undecoded), String> {
    src.seek_keyframe(k).map_err(|e| e.to_string())?;
    decoder.join_mid_stream();
    reset_screen(engine, k.width, k.height, &init.name);
    let mut st = State::new(k.width, k.height);
    let Ok(Some((_, data))) = src.next_data() else {
        return Err(format!("the keyframe at {} ms cannot be read", k.ms));
    };
    st.feed(engine, decoder, &data)
        .map_err(|e| format!("the keyframe at {} ms: {e}", k.ms))?;
    let next = decode_to(engine, src, decoder, &mut st, from_ms)
        .map_err(|e| format!("{e} (decoding from the keyframe at {} ms)", k.ms))?;
    Ok((st, next))
}

/// The screen as a session starts: `w`×`h`, named `name`.
fn reset_screen(engine: &Engine, w: u16, h: u16, name: &str) {
    let mut s = engine.screen.write();
    s.fb.resize(w, h);
    s.console_name = name.to_owned();
    s.name = name.to_owned();
    s.generation += 1;
}

/// The decoding state between messages.
struct State {
    acc: Damage,
    changes: Changes,
    coverage: Option<Coverage>,
}

impl State {
    fn new(w: u16, h: u16) -> State {
        State {
            acc: Damage::default(),
            changes: Changes::default(),
            coverage: Some(Coverage::new(w, h)),
        }
    }

    fn feed(
        &mut self,
        engine: &Engine,
        decoder: &mut UpdateDecoder,
        data: &[u8],
    ) -> Result<(), Failure> {
        apply(
            engine,
            decoder,
            data,
            &mut self.acc,
            &mut self.changes,
            &mut self.coverage,
        )
        .map(|_| ())
        .map_err(|e| Failure::Recording(format!("tcvnc cannot decode it: {e}")))
    }
}
