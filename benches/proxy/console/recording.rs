//! The recording section (`--only recording`): what `[recording]` costs, on three
//! synthetic console loads at 1280×800 ([`super::loads`]: a still desktop, a scrolling
//! terminal, a video-like screen), each watched by one viewer through a console-mode
//! target:
//!
//! - bytes: what tcvnc records a minute, beside what the console sent it (the wire) and
//!   what `websockify --record` writes for a viewer of the same console;
//! - CPU: tcvnc's CPU seconds a minute of console with recording off and on (two
//!   daemons, one with `[recording]`, measured in turn);
//! - playback ([`super::playback`]): `tcvnc play` of a one-hour recording.
//!
//! Each recording is checked after its run: its sidecar's `bytes` is the file's size,
//! it did not stop early, and (first run of each load) an independent decoder
//! (tests/rfbref) reads it to a screen the console showed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

use tcvnc::console::fb::Framebuffer;

use super::actions::until_no_engine;
use super::source::{Frames, Scene, Source};
use super::{console_target, loads, viewer, Ctx};
use crate::procs::{self, Sim, Tcvnc};
use crate::report::Results;
use crate::step;

/// The bytes case's name.
pub const BYTES: &str = "recording: bytes per minute of console 1280×800";
/// The CPU case's name.
pub const CPU: &str = "recording: tcvnc CPU per minute of console 1280×800";

/// The loads (the paths of both cases), in the order they run.
pub const IDLE: &str = "idle desktop";
pub const TERMINAL: &str = "scrolling terminal";
pub const VIDEO: &str = "video-like";

/// The terminal's lines a second (a line every 83 ms) and the video's frames a second.
pub const TERMINAL_FPS: u32 = 12;
pub const VIDEO_FPS: u32 = 25;
/// Frames in the terminal's loop (lines before its text repeats) and the video's.
pub const TERMINAL_FRAMES: usize = 64;
const VIDEO_FRAMES: usize = 25;

/// Instances the section uses, from `first`: recording off, recording on.
pub const INSTANCES: usize = 2;

/// Longest wait for a recording to be closed (its sidecar's `end` written).
const CLOSE_WAIT: Duration = Duration::from_secs(60);

/// Whether `case` is one of this section's.
pub fn is_case(case: &str) -> bool {
    case.starts_with("recording: ")
}

/// The screens of a load and how fast they change (`None`: a still screen).
pub fn screens(load: &str) -> Result<(Vec<Framebuffer>, Option<u32>)> {
    Ok(match load {
        IDLE => (loads::desktop(), None),
        TERMINAL => (loads::terminal(TERMINAL_FRAMES)?, Some(TERMINAL_FPS)),
        VIDEO => (loads::video(VIDEO_FRAMES)?, Some(VIDEO_FPS)),
        other => bail!("no load {other:?}"),
    })
}

/// Runs the bytes and CPU cases, then the playback case.
pub async fn cases(
    plan: &crate::Plan,
    work: &Path,
    instances: &Path,
    first: usize,
    res: &mut Results,
) -> Result<()> {
    let cx = Ctx {
        plan,
        work,
        instances,
    };
    let ids = [procs::instance_id(first), procs::instance_id(first + 1)];
    for load in [IDLE, TERMINAL, VIDEO] {
        one_load(cx, load, &ids, res)
            .await
            .with_context(|| format!("recording: the {load} load"))?;
    }
    res.meta
        .insert("websockify".into(), procs::websockify_version());
    super::playback::cases(cx, res).await
}

/// Where a path's recorded bytes are counted.
enum Counter<'a> {
    /// Nothing is recorded.
    None,
    /// tcvnc's `tcvnc_console_recorded_bytes_total` for an instance.
    Metric(SocketAddr, &'a str),
    /// The size of the newest file in a folder (websockify's, written as it goes).
    Newest(&'a Path),
}

impl Counter<'_> {
    async fn read(&self) -> Result<u64> {
        match self {
            Counter::None => Ok(0),
            Counter::Metric(http, instance) => {
                let text = procs::http_get(*http, "/metrics").await?;
                let want = format!("instance=\"{instance}\"");
                Ok(text
                    .lines()
                    .filter(|l| {
                        l.starts_with("tcvnc_console_recorded_bytes_total") && l.contains(&want)
                    })
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum::<f64>() as u64)
            }
            Counter::Newest(dir) => Ok(newest(dir)?.map_or(Ok(0), |p| file_len(&p))?),
        }
    }
}

fn file_len(p: &Path) -> Result<u64> {
    Ok(std::fs::metadata(p)?.len())
}

/// The most recently modified file in `dir` (sidecars aside).
fn newest(dir: &Path) -> Result<Option<PathBuf>> {
    let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
    for e in std::fs::read_dir(dir)?.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "json") {
            continue;
        }
        let t = e.metadata()?.modified()?;
        if best.as_ref().is_none_or(|(b, _)| t > *b) {
            best = Some((t, p));
        }
    }
    Ok(best.map(|(_, p)| p))
}

/// What one window saw.
struct Window {
    secs: f64,
    cpu: f64,
    wire: u64,
    recorded: u64,
    /// Recorded before the window: the handshake, the first full screen and, for a
    /// moving screen, the warm-up's changes.
    before: u64,
    updates: u64,
}

impl Window {
    fn per_min(&self, v: f64) -> f64 {
        v / self.secs * 60.0
    }

    fn mb_min(&self, bytes: u64) -> f64 {
        self.per_min(bytes as f64) / 1e6
    }
}

/// One viewer on `addr` from now; after the warm-up, a window in which the console's
/// bytes sent, the recorded bytes and `pid`'s CPU are counted.
async fn window(
    cx: Ctx<'_>,
    addr: SocketAddr,
    pid: Option<u32>,
    sent: &AtomicU64,
    counter: &Counter<'_>,
) -> Result<Window> {
    let from = Instant::now() + Duration::from_secs_f64(cx.plan.rec_warm_s);
    let to = from + Duration::from_secs_f64(cx.plan.rec_window_s);
    let base = counter.read().await?;
    let watching = tokio::spawn(viewer::count(addr, from, to));
    tokio::time::sleep_until(from).await;
    let cpu = |pid: Option<u32>| pid.map_or(Ok(0.0), procs::cpu_seconds);
    let (cpu0, wire0, rec0) = (
        cpu(pid)?,
        sent.load(Ordering::Relaxed),
        counter.read().await?,
    );
    let t0 = Instant::now();
    tokio::time::sleep_until(to).await;
    let (cpu1, wire1, rec1) = (
        cpu(pid)?,
        sent.load(Ordering::Relaxed),
        counter.read().await?,
    );
    let secs = t0.elapsed().as_secs_f64();
    let seen = watching.await?.context("the viewer")?;
    Ok(Window {
        secs,
        cpu: cpu1 - cpu0,
        wire: wire1 - wire0,
        recorded: rec1.saturating_sub(rec0),
        before: rec0.saturating_sub(base),
        updates: seen.updates,
    })
}

/// The two daemons and websockify in front of one load's console.
struct Paths {
    src: Source,
    /// Kept for its drop: its gateway leads the daemons to the console.
    _sim: Sim,
    off: (Tcvnc, SocketAddr),
    on: (Tcvnc, SocketAddr),
    dir: PathBuf,
    ws: (procs::Proc, Adapter),
    ws_dir: PathBuf,
}

async fn start(cx: Ctx<'_>, load: &str, ids: &[String; 2]) -> Result<(Paths, Vec<Framebuffer>)> {
    let tag = load.replace(' ', "-");
    step(&format!(
        "recording: the {load} console, a simulator, tcvnc with and without [recording], websockify --record"
    ));
    let (screens, fps) = tokio::task::spawn_blocking({
        let load = load.to_owned();
        move || screens(&load)
    })
    .await??;
    let kept = screens.clone();
    let set = Arc::new(tokio::task::spawn_blocking(move || Frames::new(screens)).await??);
    let src = Source::start(Scene::Frames { set, fps })?;
    let sim = Sim::start(cx.work, &format!("rec-{tag}"), cx.instances, Some(src.addr)).await?;
    let addrs = procs::free_addrs(2)?;
    let linger = Some(Duration::ZERO);
    let off = Tcvnc::start(
        cx.work,
        &format!("rec-off-{tag}"),
        &sim,
        &[console_target(&ids[0], addrs[0], linger)],
    )
    .await?;
    let dir = cx.work.join(format!("recordings-{tag}"));
    std::fs::create_dir_all(&dir)?;
    let on = Tcvnc::start_recording(
        cx.work,
        &format!("rec-on-{tag}"),
        &sim,
        &[console_target(&ids[1], addrs[1], linger)],
        &dir,
    )
    .await?;
    let ws_dir = cx.work.join(format!("websockify-{tag}"));
    std::fs::create_dir_all(&ws_dir)?;
    let (ws, ws_addr) =
        procs::start_websockify(cx.work, &tag, src.addr, &ws_dir.join("session")).await?;
    let adapter = Adapter::start(ws_addr).await?;
    Ok((
        Paths {
            src,
            _sim: sim,
            off: (off, addrs[0]),
            on: (on, addrs[1]),
            dir,
            ws: (ws, adapter),
            ws_dir,
        },
        kept,
    ))
}

/// The runs of one load: recording off, on and websockify's, in turn.
async fn one_load(cx: Ctx<'_>, load: &str, ids: &[String; 2], res: &mut Results) -> Result<()> {
    let (p, screens) = start(cx, load, ids).await?;
    let runs = cx.plan.rec_runs;
    for run in 0..runs {
        let mut order = vec!["off", "on"];
        if run < cx.plan.rec_peer_runs {
            order.push("websockify");
        }
        if run % 2 == 1 {
            order.reverse();
        }
        for path in order {
            step(&format!(
                "recording run {}/{runs}: {load}, {}",
                run + 1,
                match path {
                    "off" => "tcvnc, recording off",
                    "on" => "tcvnc, recording on",
                    _ => "websockify --record",
                }
            ));
            match path {
                "off" => {
                    let (t, addr) = &p.off;
                    let w =
                        window(cx, *addr, Some(t.proc.pid()), &p.src.sent, &Counter::None).await?;
                    until_no_engine(t.http, &ids[0]).await?;
                    res.push(CPU, load, "CPU s/min, recording off", w.per_min(w.cpu));
                    res.push(
                        CPU,
                        load,
                        "viewer updates/s, off",
                        w.updates as f64 / w.secs,
                    );
                }
                "on" => {
                    let (t, addr) = &p.on;
                    let before = newest(&p.dir)?;
                    let counter = Counter::Metric(t.http, &ids[1]);
                    let w = window(cx, *addr, Some(t.proc.pid()), &p.src.sent, &counter).await?;
                    until_no_engine(t.http, &ids[1]).await?;
                    let file = newest(&p.dir)?
                        .filter(|f| Some(f) != before.as_ref())
                        .ok_or_else(|| anyhow!("no new recording in {}", p.dir.display()))?;
                    let closed = closed(&file).await?;
                    if run == 0 {
                        let f = file.clone();
                        let frames = screens.clone();
                        tokio::task::spawn_blocking(move || check_decodes(&f, &frames))
                            .await?
                            .with_context(|| format!("{} does not decode", file.display()))?;
                    }
                    res.push(BYTES, load, "tcvnc MB/min", w.mb_min(w.recorded));
                    res.push(BYTES, load, "wire MB/min", w.mb_min(w.wire));
                    if w.wire > 0 {
                        res.push(
                            BYTES,
                            load,
                            "tcvnc ÷ wire",
                            w.recorded as f64 / w.wire as f64,
                        );
                    }
                    res.push(BYTES, load, "warm-up KiB", w.before as f64 / 1024.0);
                    res.push(BYTES, load, "viewer updates/s", w.updates as f64 / w.secs);
                    res.push(
                        BYTES,
                        load,
                        "stopped early",
                        f64::from(u8::from(closed.stopped)),
                    );
                    res.push(CPU, load, "CPU s/min, recording on", w.per_min(w.cpu));
                    res.push(CPU, load, "viewer updates/s, on", w.updates as f64 / w.secs);
                    // A video-like minute is gigabytes: keep the disk for the next runs.
                    std::fs::remove_file(&file)?;
                }
                _ => {
                    let counter = Counter::Newest(&p.ws_dir);
                    let w = window(cx, p.ws.1.addr, None, &p.src.sent, &counter).await?;
                    // websockify's session ends with the viewer's connection.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    res.push(BYTES, load, "websockify MB/min", w.mb_min(w.recorded));
                    res.push(BYTES, load, "websockify's wire MB/min", w.mb_min(w.wire));
                    if w.wire > 0 {
                        res.push(
                            BYTES,
                            load,
                            "websockify ÷ its wire",
                            w.recorded as f64 / w.wire as f64,
                        );
                    }
                    res.push(
                        BYTES,
                        load,
                        "viewer updates/s via websockify",
                        w.updates as f64 / w.secs,
                    );
                    for f in std::fs::read_dir(&p.ws_dir)?.flatten() {
                        std::fs::remove_file(f.path())?;
                    }
                }
            }
        }
    }
    drop(p);
    Ok(())
}

/// What a closed recording showed.
struct Closed {
    /// It stopped before the session ended (a slow or full disk).
    stopped: bool,
}

/// Waits for `file`'s sidecar to say it ended; checks its `bytes` against the file.
async fn closed(file: &Path) -> Result<Closed> {
    let side = tcvnc::record::sidecar::path_for(file);
    let deadline = Instant::now() + CLOSE_WAIT;
    let v = loop {
        let v: Option<serde_json::Value> = std::fs::read(&side)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if let Some(v) = v.filter(|v| !v["end"].is_null()) {
            break v;
        }
        if Instant::now() > deadline {
            bail!("{} not closed within {CLOSE_WAIT:?}", side.display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let len = file_len(file)?;
    if v["bytes"].as_u64() != Some(len) {
        bail!(
            "{}: the sidecar says {} bytes, the file has {len}",
            file.display(),
            v["bytes"]
        );
    }
    Ok(Closed {
        stopped: !v["stopped"].is_null(),
    })
}

/// Reads a recording with tests/rfbref's decoder (not tcvnc's): every message after the
/// handshake must be a FramebufferUpdate it decodes whole, and the last screen must be
/// one of `frames`.
fn check_decodes(file: &Path, frames: &[Framebuffer]) -> Result<()> {
    let mut src = tcvnc::record::source::open(file)?;
    let init = src.init.clone();
    let mut v = crate::rfbref::Viewer::new(init.format, init.width, init.height);
    let mut updates = 0usize;
    while let Some((_, data)) = src.next_data()? {
        let mut rest = &data[..];
        while !rest.is_empty() {
            let used = v
                .update(rest)
                .map_err(|e| anyhow!("update {updates}: {e}"))?;
            rest = &rest[used..];
            updates += 1;
        }
    }
    if !src.finished() {
        bail!("the file lacks its closing line");
    }
    let want: Vec<u32> = v.screen.clone();
    let shows = |fb: &Framebuffer| {
        fb.pixels()
            .iter()
            .zip(&want)
            .all(|(&p, &got)| v.value_of_rgb((p >> 16) as u8, (p >> 8) as u8, p as u8) == got)
    };
    if !frames.iter().any(shows) {
        bail!("after {updates} updates its screen is none the console showed");
    }
    Ok(())
}

/// A TCP port in front of a websocket server (websockify): each connection is pumped both
/// ways as binary messages, so the section's TCP viewer watches through websockify.
struct Adapter {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Adapter {
    async fn start(ws: SocketAddr) -> Result<Adapter> {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        let addr = l.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(async move {
                    if let Err(e) = pump(s, ws).await {
                        eprintln!("bench: websockify adapter: {e:#}");
                    }
                });
            }
        });
        Ok(Adapter { addr, task })
    }
}

impl Drop for Adapter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump(tcp: TcpStream, ws_addr: SocketAddr) -> Result<()> {
    tcp.set_nodelay(true)?;
    let s = TcpStream::connect(ws_addr).await?;
    s.set_nodelay(true)?;
    let mut req = format!("ws://{ws_addr}/").into_client_request()?;
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("binary"));
    let (ws, _) = tokio_tungstenite::client_async_with_config(req, s, Some(tcvnc::ws::config()))
        .await
        .context("websocket handshake with websockify")?;
    let (mut ws_tx, mut ws_rx) = ws.split();
    let (mut rd, mut wr) = tcp.into_split();
    let up = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = rd.read(&mut buf).await?;
            if n == 0 {
                let _ = ws_tx.close().await;
                return anyhow::Ok(());
            }
            ws_tx
                .send(Message::Binary(bytes::Bytes::copy_from_slice(&buf[..n])))
                .await?;
        }
    };
    let down = async {
        while let Some(m) = ws_rx.next().await {
            match m? {
                Message::Binary(b) => wr.write_all(&b).await?,
                Message::Close(_) => break,
                _ => {}
            }
        }
        wr.shutdown().await?;
        anyhow::Ok(())
    };
    tokio::select! {
        r = up => r,
        r = down => r,
    }
}
