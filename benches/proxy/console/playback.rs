//! The playback case: `tcvnc play` of a long recording (an hour in the full run), timed
//! from the process's start to a viewer's first frame, from the start, the middle and
//! the last second (`--from`: what lies between the last keyframe before it and it is
//! decoded before the first frame).
//!
//! The recording is written here as tcvnc's recorder writes one, without waiting an
//! hour: `record::preamble`, then an update every 100 ms (the recorder's pace) of the
//! scrolling terminal (12 lines a second, so every update is the whole screen scrolled
//! by a line or two), each encoded by one `Encoder` in `record::FORMAT` with
//! `record::ENCODINGS` (lossless Tight, one zlib stream cut by a full flush at each
//! keyframe, as the recorder's own viewer encodes) and written with `record::format::line`.
//! Encoding every update afresh, rather than repeating encoded ones, keeps the file a
//! valid stream from end to end; the viewer's first frame is checked against the
//! terminal's screen at that instant. Every `DEFAULT_KEYFRAME_INTERVAL` of recording an
//! update is a keyframe, as the recorder makes one (every update here is the whole
//! screen; this terminal has no cursor and one name), listed with its offset in a
//! sidecar beside the file. Each `--from` is timed twice: with the
//! sidecar (seeking to the last keyframe) and with it moved away (decoding from the
//! start, as for a recording without an index).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::time::Instant;

use tcvnc::console::banner::BANNER_H;
use tcvnc::console::encode::{update_header, Encoder};
use tcvnc::console::fb::Framebuffer;
use tcvnc::record::format::{self, From};
use tcvnc::record::sidecar::{Keyframe, Sidecar};

use super::recording::{screens, TERMINAL, TERMINAL_FPS};
use super::Ctx;
use crate::procs::{self, Proc};
use crate::report::Results;
use crate::step;

/// The recorder's pace: an update every this many ms.
const UPDATE_MS: u64 = 100;
/// Longest wait for a first frame (seeking decodes everything before `--from`).
const PLAY_WAIT: Duration = Duration::from_secs(600);

/// The case's name for a recording of `minutes`.
pub fn case(minutes: u64) -> String {
    format!("recording: tcvnc play of a {minutes}-minute recording")
}

/// Whether `case` is this case (any length).
pub fn is_case(case: &str) -> bool {
    case.starts_with("recording: tcvnc play of a ")
}

/// The path for a `--from` of `secs`.
pub fn from_path(secs: u64) -> String {
    if secs == 0 {
        "--from 0".to_owned()
    } else {
        format!(
            "--from {}",
            humantime::format_duration(Duration::from_secs(secs))
        )
    }
}

/// The `--from`s timed for a recording of `minutes`: its start, its middle (a keyframe's
/// instant: the best case), and the last second before its end (59 s past the last
/// keyframe: the worst case with keyframes every minute).
pub fn froms(minutes: u64) -> [u64; 3] {
    [0, minutes * 30, (minutes * 60).saturating_sub(1)]
}

/// The terminal frame shown by update `j`.
fn frame_of(j: u64, n: usize) -> usize {
    (j * UPDATE_MS * u64::from(TERMINAL_FPS) / 1000) as usize % n
}

/// What writing the recording took.
struct Written {
    bytes: u64,
    updates: u64,
    secs: f64,
}

/// Writes `minutes` of the terminal to `path` as the recorder would, with its sidecar.
fn write(path: &Path, minutes: u64, screens: &[Framebuffer]) -> Result<Written> {
    use std::io::Write as _;
    let t0 = Instant::now();
    let (w, h) = (screens[0].width(), screens[0].height());
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    out.write_all(format::HEADER.as_bytes())?;
    let mut offset = format::HEADER.len() as u64;
    let mut line = Vec::new();
    for step in tcvnc::record::preamble(w, h, "tcvnc bench console") {
        line.clear();
        format::line(From::Server, 0, &step, &mut line);
        out.write_all(&line)?;
        offset += line.len() as u64;
    }
    let mut enc = Encoder::new(tcvnc::record::FORMAT).map_err(|e| anyhow!("{e}"))?;
    enc.set_encodings(tcvnc::record::ENCODINGS);
    let updates = minutes * 60_000 / UPDATE_MS;
    let every = tcvnc::config::DEFAULT_KEYFRAME_INTERVAL.as_millis() as u64;
    let mut keyframes = Vec::new();
    let mut msg = Vec::new();
    for j in 0..updates {
        let ms = j * UPDATE_MS;
        let fb = &screens[frame_of(j, screens.len())];
        if ms > 0 && ms % every == 0 {
            // As the recorder's viewer: the zlib stream cut before the keyframe.
            enc.cut_tight();
            keyframes.push(Keyframe {
                ms,
                offset,
                width: w,
                height: h,
            });
        }
        msg.clear();
        update_header(0, &mut msg);
        let n = enc.encode(fb, fb.bounds(), &mut msg)?;
        msg[2..4].copy_from_slice(&n.to_be_bytes());
        line.clear();
        format::line(From::Server, ms, &msg, &mut line);
        out.write_all(&line)?;
        offset += line.len() as u64;
    }
    out.write_all(format::FOOTER.as_bytes())?;
    out.flush()?;
    drop(out);
    let mut side = Sidecar::new(
        path,
        "ins-playback",
        "ap-guangzhou",
        std::time::SystemTime::now(),
        w,
        h,
    );
    side.end = Some(side.start.clone());
    side.urls_spent = 1;
    side.bytes = offset + format::FOOTER.len() as u64;
    side.ended = Some("the bench's recording".into());
    side.keyframes = keyframes;
    tcvnc::record::sidecar::write(path.parent().unwrap_or(Path::new(".")), &side)?;
    Ok(Written {
        bytes: std::fs::metadata(path)?.len(),
        updates,
        secs: t0.elapsed().as_secs_f64(),
    })
}

/// Writes the recording, then times `tcvnc play` from each `--from`, run by run.
pub(super) async fn cases(cx: Ctx<'_>, res: &mut Results) -> Result<()> {
    let minutes = cx.plan.rec_play_minutes;
    step(&format!(
        "recording: writing a {minutes}-minute recording of the scrolling terminal"
    ));
    let (frames, _) = tokio::task::spawn_blocking(|| screens(TERMINAL)).await??;
    let path = cx.work.join(format!("terminal-{minutes}min.js"));
    let (written, frames) = tokio::task::spawn_blocking({
        let path = path.clone();
        move || write(&path, minutes, &frames).map(|w| (w, frames))
    })
    .await??;
    step(&format!(
        "recording: {} updates, {:.0} MB, written in {:.0} s",
        written.updates,
        written.bytes as f64 / 1e6,
        written.secs
    ));
    let case = case(minutes);
    let runs = cx.plan.rec_play_runs;
    for run in 0..runs {
        for from in froms(minutes) {
            let name = from_path(from);
            step(&format!(
                "recording run {}/{runs}: tcvnc play {name}",
                run + 1
            ));
            let p = play(cx.work, &path, from, &frames)
                .await
                .with_context(|| format!("tcvnc play {name}"))?;
            // The same without the sidecar: decoded from the start.
            let side = tcvnc::record::sidecar::path_for(&path);
            let hidden = side.with_extension("json.hidden");
            std::fs::rename(&side, &hidden)?;
            let linear = play(cx.work, &path, from, &frames).await;
            std::fs::rename(&hidden, &side)?;
            let linear =
                linear.with_context(|| format!("tcvnc play {name} without the sidecar"))?;
            if linear.keyframe.is_some() {
                bail!("tcvnc play {name} seeked to a keyframe without the sidecar");
            }
            res.push(&case, &name, "first frame s", p.first_frame);
            res.push(&case, &name, "listening s", p.listening);
            res.push(&case, &name, "decoded before --from s", p.ready);
            res.push(
                &case,
                &name,
                "from the keyframe at s",
                p.keyframe.unwrap_or(0.0),
            );
            res.push(
                &case,
                &name,
                "first frame is the recording's",
                f64::from(u8::from(p.matches && linear.matches)),
            );
            res.push(
                &case,
                &name,
                "first frame without the sidecar s",
                linear.first_frame,
            );
            res.push(&case, &name, "file MB", written.bytes as f64 / 1e6);
            res.push(
                &case,
                &name,
                "file MB/min",
                written.bytes as f64 / 1e6 / minutes.max(1) as f64,
            );
        }
    }
    std::fs::remove_file(&path)?;
    std::fs::remove_file(tcvnc::record::sidecar::path_for(&path))?;
    Ok(())
}

/// One playback's times, in s.
struct Played {
    listening: f64,
    first_frame: f64,
    ready: f64,
    /// The keyframe decoding started at (s into the recording), if any.
    keyframe: Option<f64>,
    matches: bool,
}

async fn play(work: &Path, file: &Path, from: u64, frames: &[Framebuffer]) -> Result<Played> {
    let addrs = procs::free_addrs(2)?;
    let (tcp, http) = (addrs[0], addrs[1]);
    let log = work.join(format!("tcvnc-play-{from}.log"));
    let _ = std::fs::remove_file(&log);
    let mut cmd = Command::new(procs::TCVNC);
    cmd.env("RUST_LOG", "info")
        .args(["--log-format", "json", "play"])
        .arg(file)
        .arg("--tcp")
        .arg(tcp.to_string())
        .arg("--http")
        .arg(http.to_string())
        .arg("--from")
        .arg(format!("{from}s"));
    let t0 = Instant::now();
    // Its first line is printed once it listens.
    let (proc, _) = Proc::start("tcvnc-play", cmd, &log, true)?;
    let listening = t0.elapsed().as_secs_f64();
    let screen = tokio::time::timeout(PLAY_WAIT, first_frame(tcp))
        .await
        .map_err(|_| anyhow!("no first frame in {PLAY_WAIT:?}"))??;
    let first_frame = t0.elapsed().as_secs_f64();
    drop(proc);
    let text = std::fs::read_to_string(&log)?;
    let ready = playing(&text, "ready_ms")
        .ok_or_else(|| anyhow!("{}: no \"playing\" line with ready_ms", log.display()))?;
    let keyframe = playing(&text, "keyframe_ms").map(|ms| ms / 1e3);
    // The frame shown is the last update before `from`, or one of the next few (the
    // playback goes on while the viewer is served).
    let first = (from * 1000 / UPDATE_MS).saturating_sub(1);
    let matches = (first..first + 6).any(|j| same(&screen, &frames[frame_of(j, frames.len())]));
    Ok(Played {
        listening,
        first_frame,
        ready: ready / 1e3,
        keyframe,
        matches,
    })
}

/// Whether a viewer's screen (0xRRGGBB) shows `fb`, below the banner's rows (a
/// view-only notice may be drawn there).
fn same(screen: &[u32], fb: &Framebuffer) -> bool {
    let skip = usize::from(BANNER_H) * usize::from(fb.width());
    screen.len() == fb.pixels().len()
        && screen[skip..]
            .iter()
            .zip(&fb.pixels()[skip..])
            .all(|(a, b)| a & 0xff_ffff == b & 0xff_ffff)
}

/// The field `key` of the "playing" line of a JSON log.
fn playing(log: &str, key: &str) -> Option<f64> {
    let field = |v: &serde_json::Value, k: &str| v.get(k).or_else(|| v["fields"].get(k)).cloned();
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| field(v, "message").is_some_and(|m| m == "playing"))
        .and_then(|v| field(&v, key)?.as_f64())
}

/// A viewer's first full screen, in Raw: 0xRRGGBB per pixel.
async fn first_frame(addr: SocketAddr) -> Result<Vec<u32>> {
    let t0 = Instant::now();
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let t = crate::client::rfb_viewer_within(&mut s, t0, PLAY_WAIT).await?;
    let f = t.format;
    let max = |i: usize| u16::from_be_bytes([f[i], f[i + 1]]);
    if f[0] != 32 || f[3] == 0 || [max(4), max(6), max(8)] != [255; 3] {
        bail!("ServerInit format {f:?}: this viewer reads 32-bit true colour only");
    }
    let (big, shifts) = (f[2] != 0, [f[10], f[11], f[12]]);
    // SetEncodings [Raw], then the whole screen.
    s.write_all(&[2, 0, 0, 1, 0, 0, 0, 0]).await?;
    let (w, h) = t.size;
    let [w0, w1] = w.to_be_bytes();
    let [h0, h1] = h.to_be_bytes();
    s.write_all(&[3, 0, 0, 0, 0, 0, w0, w1, h0, h1]).await?;
    let mut rd = BufReader::with_capacity(1 << 20, s);
    let (w, h) = (usize::from(w), usize::from(h));
    let mut screen = vec![0u32; w * h];
    let mut painted = 0usize;
    let mut row = Vec::new();
    while painted < w * h {
        match rd.read_u8().await? {
            0 => {}
            2 => continue, // Bell
            3 => {
                let mut b = [0u8; 7];
                rd.read_exact(&mut b).await?;
                let n = u32::from_be_bytes([b[3], b[4], b[5], b[6]]);
                let mut skip = vec![0u8; n as usize];
                rd.read_exact(&mut skip).await?;
                continue;
            }
            t => bail!("server message type {t}"),
        }
        let mut b = [0u8; 3];
        rd.read_exact(&mut b).await?;
        for _ in 0..u16::from_be_bytes([b[1], b[2]]) {
            let mut hd = [0u8; 12];
            rd.read_exact(&mut hd).await?;
            let v = |i: usize| usize::from(u16::from_be_bytes([hd[i], hd[i + 1]]));
            let (x, y, rw, rh) = (v(0), v(2), v(4), v(6));
            let enc = i32::from_be_bytes([hd[8], hd[9], hd[10], hd[11]]);
            if enc != 0 {
                bail!("rectangle in encoding {enc}; this viewer asked for Raw only");
            }
            if x + rw > w || y + rh > h {
                bail!("rectangle {x},{y} {rw}×{rh} outside the screen");
            }
            row.resize(rw * 4, 0);
            for yy in y..y + rh {
                rd.read_exact(&mut row).await?;
                for (xx, p) in row.chunks_exact(4).enumerate() {
                    let v = if big {
                        u32::from_be_bytes([p[0], p[1], p[2], p[3]])
                    } else {
                        u32::from_le_bytes([p[0], p[1], p[2], p[3]])
                    };
                    let c = |i: usize| v >> shifts[i] & 0xff;
                    screen[yy * w + x + xx] = c(0) << 16 | c(1) << 8 | c(2);
                }
            }
            painted += rw * rh;
        }
    }
    Ok(screen)
}
