//! Recording (`[recording]`) end to end with real software: x11vnc on Xvfb behind
//! `tcvnc sim`'s gateway, `tcvnc serve` with a console-mode target that records, a live
//! raw RFB viewer (the reference decoder, `tests/console_support`) watching while the
//! screen changes; then the recording is played back by noVNC's own playback page
//! (`tests/vnc_playback.html` of noVNC 1.3.0, vendored unmodified, in headless Chromium),
//! by `tcvnc export` and by `tcvnc play` (with the reference viewer), and read by the
//! reference decoder directly.
//!
//! - A third-party player: noVNC's playback page plays a recording to its end and its
//!   last canvas is what the live viewer saw, pixel for pixel.
//! - Fidelity: at instants well inside the still periods of a session with typed
//!   commands, a gateway drop and resume and a resize, `tcvnc export`'s frame, `tcvnc
//!   play --from`'s screen and the reference decoder's reading of the file equal the live
//!   viewer's capture; noVNC's playback ends on the live viewer's last screen; the sidecar
//!   names the viewer, the URLs spent and the resume.
//!
//! Runs with TCVNC_E2E=1, where a missing tool is a failure. Artifacts (captures, exported
//! frames, the playback page's canvas, the daemon's log of a failed test) are kept in
//! `tests/e2e/artifacts/record-*`.

mod common;
mod console_support;
mod e2e_support;
mod rfbref;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use common::e2e;
use console_support::{Viewer, CURSOR, DESKTOP_NAME, DESKTOP_SIZE, HEXTILE, INSTANCE, RAW, ZRLE};
use e2e_support::procs::Tcvnc;
use e2e_support::viewers::{imgtool, node, png_rgb, same_pixels};
use e2e_support::x11::{Desktop, Vnc};
use e2e_support::{artifacts, http_post_json, poll, STEP};
use serde_json::{json, Value};
use sha2::Digest as _;
use tcvnc::record::format::{From, Reader};
use tcvnc::record::sidecar::{self, Sidecar};
use tokio::io::{AsyncBufReadExt, BufReader};

/// The live viewer's encodings: what a viewer of x11vnc would ask for, the pointer's
/// shape apart (so nothing draws the pointer into its screen), and the size and name
/// changes.
const LIVE: &[i32] = &[ZRLE, HEXTILE, RAW, CURSOR, DESKTOP_SIZE, DESKTOP_NAME];

/// The shortest still period the fidelity test holds: instants are taken in the middle,
/// so at least half of it away from either change, far beyond the recorder's 100 ms of
/// coalescing.
const MIN_STILL: Duration = Duration::from_secs(1);

/// noVNC's playback page, vendored unmodified: each file and its SHA-256 (see the
/// folder's README for the source and the git blob ids).
const PLAYBACK_FILES: &[(&str, &str)] = &[
    (
        "vnc_playback.html",
        "ccd359cebf03514057052c72c8926b829bed2123739dbad95230578c2fbf5c0f",
    ),
    (
        "playback-ui.js",
        "3166c86b9cfff9e2a4e328fd3a2721e941ad065e5052708443c26f9515ada5f9",
    ),
    (
        "playback.js",
        "2278b863287e1e74eb9a931d47350b5a6c176c2be31c54811698c746e6a2b143",
    ),
];

/// The instance as a console-mode target that records into `dir`; the engine ends as
/// soon as its last viewer leaves (`linger = "0s"`), which ends the recording. A keyframe
/// every second the screen changes: noVNC's page reads through them, and `tcvnc play
/// --from` starts at them.
fn recording_target(dir: &Path) -> String {
    format!(
        "[[target]]\ninstance = \"{INSTANCE}\"\nlisten = \"127.0.0.1:0\"\nmode = \"console\"\non_busy = \"share\"\nlinger = \"0s\"\n\
         [recording]\ndir = \"{}\"\nkeyframe_interval = \"1s\"\n",
        dir.display()
    )
}

/// A screen as RGB bytes, row-major.
#[derive(Clone, PartialEq, Eq)]
struct Screen {
    w: u32,
    h: u32,
    rgb: Vec<u8>,
}

impl Screen {
    /// What a reference-decoder viewer shows (true colour, any channel widths).
    fn of(v: &rfbref::Viewer) -> Screen {
        let pf = &v.pf;
        let ch = |p: u32, max: u16, shift: u8| {
            let m = u32::from(max).max(1);
            (((p >> shift) & m) * 255 + m / 2) / m
        };
        let mut rgb = Vec::with_capacity(v.screen.len() * 3);
        for &p in &v.screen {
            rgb.push(ch(p, pf.red_max, pf.red_shift) as u8);
            rgb.push(ch(p, pf.green_max, pf.green_shift) as u8);
            rgb.push(ch(p, pf.blue_max, pf.blue_shift) as u8);
        }
        Screen {
            w: u32::from(v.width),
            h: u32::from(v.height),
            rgb,
        }
    }

    async fn from_image(p: &Path) -> Screen {
        let (w, h, rgb) = png_rgb(p).await;
        Screen { w, h, rgb }
    }

    /// `None` when equal; else the sizes, or how many pixels differ and their box.
    fn diff(&self, other: &Screen) -> Option<String> {
        if (self.w, self.h) != (other.w, other.h) {
            return Some(format!(
                "{}x{} where {}x{} was expected",
                self.w, self.h, other.w, other.h
            ));
        }
        let mut n = 0usize;
        let mut bbox = [u32::MAX, u32::MAX, 0, 0];
        for (i, (a, b)) in self
            .rgb
            .chunks_exact(3)
            .zip(other.rgb.chunks_exact(3))
            .enumerate()
        {
            if a != b {
                n += 1;
                let (x, y) = (i as u32 % self.w, i as u32 / self.w);
                bbox = [
                    bbox[0].min(x),
                    bbox[1].min(y),
                    bbox[2].max(x),
                    bbox[3].max(y),
                ];
            }
        }
        (n > 0).then(|| format!("{n} pixels differ, within {bbox:?}"))
    }

    /// Writes it as a binary PPM (Pillow reads it; so does any image viewer).
    fn write_ppm(&self, p: &Path) {
        let mut out = format!("P6\n{} {}\n255\n", self.w, self.h).into_bytes();
        out.extend_from_slice(&self.rgb);
        std::fs::write(p, out).expect("write the PPM");
    }
}

/// `tests/e2e/artifacts/record-NAME`.
fn artifact(name: &str) -> PathBuf {
    artifacts().join(format!("record-{name}"))
}

/// Asks the live viewer for the whole screen, then for changes, until its screen is
/// `want` (the X server's, once still): what the viewer has then is the screen as the
/// engine serves it now. Panics after [`STEP`].
async fn catch_up(v: &mut Viewer, want: &Screen, what: &str) {
    let deadline = tokio::time::Instant::now() + STEP;
    let mut incremental = false;
    loop {
        v.request(incremental).await;
        incremental = true;
        tokio::time::timeout(STEP, v.next_update())
            .await
            .unwrap_or_else(|_| panic!("{what}: no update within {STEP:?}"))
            .unwrap_or_else(|e| panic!("{what}: the live viewer's connection: {e}"));
        let Some(d) = Screen::of(&v.v).diff(want) else {
            return;
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: after {} updates the live viewer's screen is not the X server's: {d}",
            v.updates
        );
    }
}

/// The server side of a recording as the reference decoder reads it, up to `until_ms`
/// (every frame at or before it; all of them for `None`): a recording still being
/// written is read up to its last whole line.
struct Decoded {
    v: rfbref::Viewer,
    /// Desktop names, the ServerInit's first.
    names: Vec<String>,
    /// Lines of the file that are frames (the page's count is one more: `'EOF'`).
    frames: usize,
    /// The time of the last frame read.
    last_ms: u64,
}

fn decode_recording(path: &Path, until_ms: Option<u64>) -> Result<Decoded, String> {
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut r = Reader::new(std::io::BufReader::new(f)).map_err(|e| e.to_string())?;
    let mut server = Vec::new();
    let mut frames = 0;
    while let Some(fr) = r.next_frame().map_err(|e| e.to_string())? {
        frames += 1;
        if fr.from == From::Server && until_ms.is_none_or(|u| fr.ms <= u) {
            server.push(fr);
        }
    }
    if server.len() < 4 {
        return Err(format!("{} server frames: no handshake yet", server.len()));
    }
    if server[0].data != b"RFB 003.008\n" || server[1].data != [1, 1] || server[2].data != [0; 4] {
        return Err("not the handshake tcvnc writes (version, None, OK)".into());
    }
    let init = &server[3].data;
    let (w, h) = (
        u16::from_be_bytes([init[0], init[1]]),
        u16::from_be_bytes([init[2], init[3]]),
    );
    let mut pf = [0u8; 16];
    pf.copy_from_slice(&init[4..20]);
    let name_len = u32::from_be_bytes([init[20], init[21], init[22], init[23]]) as usize;
    let mut d = Decoded {
        v: rfbref::Viewer::new(tcvnc::rfb::messages::PixelFormat::from_bytes(&pf), w, h),
        names: vec![String::from_utf8_lossy(&init[24..24 + name_len]).into_owned()],
        frames,
        last_ms: server.last().map_or(0, |f| f.ms),
    };
    for f in &server[4..] {
        let mut at = 0;
        while at < f.data.len() {
            match f.data[at] {
                0 => {
                    at +=
                        d.v.update(&f.data[at..])
                            .map_err(|e| format!("the update at {} ms: {e}", f.ms))?;
                    if let Some(n) = d.v.name.take() {
                        d.names.push(n);
                    }
                }
                2 => at += 1,
                3 if f.data.len() >= at + 8 => {
                    let n = u32::from_be_bytes([
                        f.data[at + 4],
                        f.data[at + 5],
                        f.data[at + 6],
                        f.data[at + 7],
                    ]) as usize;
                    at += 8 + n;
                }
                t => return Err(format!("message type {t} at {} ms", f.ms)),
            }
        }
    }
    Ok(d)
}

/// The recording's sidecar once it exists (the recorder writes it as it starts).
async fn sidecar_of(dir: &Path, ended: bool) -> Sidecar {
    let limit = if ended { Duration::from_secs(60) } else { STEP };
    poll("the recording's sidecar", limit, || async {
        let all = sidecar::list(dir).map_err(|e| e.to_string())?;
        match all.as_slice() {
            [s] if !ended || s.end.is_some() => Ok(s.clone()),
            [s] => Err(format!("not ended yet: {s:?}")),
            other => Err(format!("{} sidecars", other.len())),
        }
    })
    .await
}

/// When the recording started (its first frame is at 0 ms then).
fn started(s: &Sidecar) -> SystemTime {
    humantime::parse_rfc3339(&s.start)
        .unwrap_or_else(|e| panic!("the sidecar's start {:?}: {e}", s.start))
}

/// Time since the recording started.
fn since(start: SystemTime) -> Duration {
    SystemTime::now()
        .duration_since(start)
        .expect("the recording started in the past")
}

/// Checks the vendored playback page is noVNC's, unmodified; its `tests/` folder.
fn playback_tests_dir() -> PathBuf {
    let dir = common::e2e_file("third_party/novnc-playback/tests");
    for (name, sha) in PLAYBACK_FILES {
        let p = dir.join(name);
        let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!(
            hex::encode(sha2::Sha256::digest(&bytes)),
            *sha,
            "{} is not noVNC 1.3.0's file (see the folder's README)",
            p.display()
        );
    }
    dir
}

/// What noVNC's playback page made of a recording.
struct Playback {
    /// Its canvas when the player finished.
    canvas: PathBuf,
    /// The page's answer (messages, frames loaded, canvas size).
    said: Value,
}

/// Plays `recording` in noVNC's playback page (`novnc_playback.mjs`; `tests`, the page's
/// folder, from [`playback_tests_dir`]): perftest mode, one iteration, to the end; its
/// last canvas is written to `record-NAME-novnc-canvas.png`.
async fn novnc_playback(tests: &Path, recording: &Path, name: &str) -> Playback {
    let canvas = artifact(&format!("{name}-novnc-canvas.png"));
    let shot = artifact(&format!("{name}-novnc-page.png"));
    let out = node(
        "novnc_playback.mjs",
        &[
            "/usr/share/novnc",
            &tests.display().to_string(),
            &recording.display().to_string(),
            &canvas.display().to_string(),
            &shot.display().to_string(),
        ],
        Duration::from_secs(180),
    )
    .await;
    let said: Value = out
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("novnc_playback.mjs: {out}"));
    assert_eq!(said["ok"], true, "novnc_playback.mjs: {said}");
    eprintln!("noVNC's playback page: {}", said["messages"]);
    Playback { canvas, said }
}

/// The recording of a session, kept with its sidecar once the session ended.
fn the_recording(dir: &Path, side: &Sidecar) -> PathBuf {
    let p = dir.join(&side.file);
    let kept = artifact(&side.file);
    std::fs::copy(&p, &kept).expect("keep the recording");
    p
}

/// noVNC's own playback page (`tests/vnc_playback.html` of noVNC 1.3.0, the harness
/// noVNC plays websockify's recordings with, vendored unmodified) plays a tcvnc recording:
/// x11vnc on Xvfb shows a plaid and an xterm with coloured text; a live raw viewer
/// watches through console mode until it has the X server's screen, then leaves, which
/// ends the session. The page, in headless Chromium at full speed, loads every frame of
/// the file, plays them to the end without noVNC failing, and its last canvas equals the
/// live viewer's screen pixel for pixel. The file uses Tight (what the recorder writes
/// first), so noVNC's Tight decoder drew it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_record_plays_in_novnc_playback() {
    if !e2e("e2e_record_plays_in_novnc_playback") {
        return;
    }
    let page = playback_tests_dir();
    let mut d = Desktop::start(Vnc::X11vnc, 480, 320).await;
    d.draw_still().await;
    let x = d.path("still.png");
    d.settle(&x).await;
    let want = Screen::from_image(&x).await;
    let rec = tempfile::tempdir().expect("tmp");
    let t = Tcvnc::start(&d.backend(), &recording_target(rec.path())).await;
    let addr: SocketAddr = t.addr(&format!("tcp {INSTANCE}")).parse().expect("addr");
    let mut v = tokio::time::timeout(STEP, Viewer::connect(addr, LIVE))
        .await
        .expect("the live viewer is admitted in time");
    catch_up(&mut v, &want, "the still screen").await;
    let live = artifact("novnc-live.ppm");
    Screen::of(&v.v).write_ppm(&live);
    drop(v);
    let side = sidecar_of(rec.path(), true).await;
    let file = the_recording(rec.path(), &side);
    let decoded = decode_recording(&file, None).expect("the reference decoder reads it");
    assert!(
        decoded.v.seen.contains(&7),
        "the recording uses Tight: {:?}",
        decoded.v.seen
    );

    let pb = novnc_playback(&page, &file, "novnc").await;
    assert_eq!(
        pb.said["loaded_frames"],
        decoded.frames + 1,
        "the page loaded every frame of the file and its 'EOF': {}",
        pb.said
    );
    let cmp = same_pixels(&live, &pb.canvas).await;
    assert_eq!(
        cmp["equal"],
        true,
        "noVNC's playback ends on {}, not the live viewer's {}: {cmp}",
        pb.canvas.display(),
        live.display()
    );
    eprintln!(
        "noVNC's playback page: {} frames, the last canvas equals the live viewer's screen ({cmp})",
        pb.said["loaded_frames"]
    );
}

/// A screen the live viewer had while nothing changed.
struct Still {
    name: &'static str,
    /// The live viewer's capture (a PPM in the artifacts).
    live: PathBuf,
    screen: Screen,
    /// Since the recording started: the viewer had the whole screen.
    seen: Duration,
    /// Since the recording started: the next change began (or the session ended).
    until: Duration,
}

impl Still {
    /// The instant the recording is looked at: the middle of the still period.
    fn instant(&self) -> Duration {
        (self.seen + self.until) / 2
    }
}

/// The live session of the fidelity test.
struct Live {
    d: Desktop,
    t: Tcvnc,
    v: Viewer,
    /// The recordings' folder.
    rec: tempfile::TempDir,
    /// The recording being written.
    file: PathBuf,
    start: SystemTime,
    /// The part of the X screen x11vnc serves (after `clip:`), when not all of it.
    clip: Option<(u32, u32)>,
    stills: Vec<Still>,
}

impl Live {
    /// Waits until the X server's screen is still, then until the live viewer has it;
    /// keeps the capture.
    async fn capture(&mut self, name: &'static str) {
        let x = self.d.path(&format!("{name}-x.png"));
        self.d.settle(&x).await;
        let reference = match self.clip {
            None => x,
            Some((w, h)) => {
                let c = self.d.path(&format!("{name}-x-clip.png"));
                imgtool(&[
                    "crop",
                    &x.display().to_string(),
                    &c.display().to_string(),
                    "0",
                    "0",
                    &w.to_string(),
                    &h.to_string(),
                ])
                .await;
                c
            }
        };
        let want = Screen::from_image(&reference).await;
        catch_up(&mut self.v, &want, name).await;
        let seen = since(self.start);
        let screen = Screen::of(&self.v.v);
        let live = artifact(&format!("fidelity-{name}-live.ppm"));
        screen.write_ppm(&live);
        eprintln!("{name}: the live viewer has the screen at {seen:?}");
        self.stills.push(Still {
            name,
            live,
            screen,
            seen,
            until: Duration::ZERO,
        });
    }

    /// Holds the screen of the last capture until the recording on disk shows it (the
    /// reference decoder reads it there while the session runs: the writer makes it
    /// durable every second) and for at least [`MIN_STILL`]; then the next change may
    /// start. Returns the time since the recording started.
    async fn hold(&mut self) -> Duration {
        let s = self.stills.last().expect("a capture");
        let seen_at = self.start + s.seen;
        poll(
            &format!("{}: the recording on disk shows the screen", s.name),
            STEP,
            || async {
                let d = decode_recording(&self.file, None)?;
                if let Some(diff) = Screen::of(&d.v).diff(&s.screen) {
                    return Err(format!("up to {} ms: {diff}", d.last_ms));
                }
                let held = SystemTime::now()
                    .duration_since(seen_at)
                    .unwrap_or_default();
                if held < MIN_STILL {
                    return Err(format!("held for {held:?}"));
                }
                Ok(())
            },
        )
        .await;
        since(self.start)
    }

    /// Ends the last still period now (the next change starts).
    fn end_still(&mut self, until: Duration) {
        let s = self.stills.last_mut().expect("a capture");
        s.until = until;
    }

    /// Types `line` into the xterm's bash (`POST /vnc/<instance>/type`, a newline is
    /// Enter) and waits until bash has run it and printed its next prompt.
    async fn type_line(&mut self, line: &str) {
        let until = self.hold().await;
        self.end_still(until);
        let ready = self.d.path("prompt-ready");
        std::fs::remove_file(&ready).expect("bash marked its prompt");
        let r = common::http_client()
            .post(format!(
                "http://{}/vnc/{INSTANCE}/type",
                self.t.addr("http")
            ))
            .body(line.to_owned())
            .send()
            .await
            .expect("type request");
        assert!(r.status().is_success(), "POST type: {}", r.status());
        poll(&format!("bash runs {line:?}"), STEP, || async {
            if ready.exists() {
                Ok(())
            } else {
                Err("no new prompt yet".to_owned())
            }
        })
        .await;
    }
}

/// Pixel fidelity of a recording made through console mode, end to end. x11vnc on Xvfb
/// runs an xterm with `bash --norc` (its cursor does not blink); `tcvnc serve` records
/// the console; a live raw RFB viewer (reference decoder) watches. The screen changes in
/// steps, and each still screen is captured once the X server's screen is still and the
/// live viewer has it, then held for at least 1 s and until the file on disk shows it
/// (the reference decoder reads it there during the session):
///
/// 1. the prompt, until the gateway drops the session (the simulator's `drop_after` knob
///    on the first gateway session);
/// 2. the prompt again after the engine resumed with a second URL (banner gone);
/// 3. a command's coloured output (typed through `POST /vnc/<instance>/type`);
/// 4. x11vnc's framebuffer clipped to 480×320 at runtime (`x11vnc -R clip:…`: a
///    DesktopSize to the engine; Xvfb's RANDR here has one fixed mode);
/// 5. another command's output at that size.
///
/// The viewer leaves, the session ends (`linger = "0s"`). Then at the middle of each
/// still period (its time from the sidecar's `start`): `tcvnc export --interval 100ms`'s
/// frame, the screen a reference viewer gets from `tcvnc play --from T --speed 0.001`,
/// and the reference decoder's reading of the file up to T each equal the live
/// viewer's capture pixel for pixel; noVNC's playback page ends on capture 5; the file
/// has the "reconnecting" name of the outage; the sidecar lists the viewer, at least 2
/// URLs (as many as the simulator minted) and at least 1 resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_record_fidelity() {
    if !e2e("e2e_record_fidelity") {
        return;
    }
    let page = playback_tests_dir();
    let home = tempfile::tempdir().expect("tmp");
    let mut d = Desktop::start(Vnc::X11vnc, 640, 400).await;
    d.draw_shell(home.path()).await;
    let rec = tempfile::tempdir().expect("tmp");
    let t = Tcvnc::start(&d.backend(), &recording_target(rec.path())).await;
    // The first gateway session ends 6 s after it opened: a drop and a resume in the
    // middle of the recording.
    let faults = format!("{}/_sim/faults", t.api);
    http_post_json(&faults, json!({"drop_after": "6s"})).await;
    let addr: SocketAddr = t.addr(&format!("tcp {INSTANCE}")).parse().expect("addr");
    let v = tokio::time::timeout(STEP, Viewer::connect(addr, LIVE))
        .await
        .expect("the live viewer is admitted in time");
    // The engine is live (the viewer had its ServerInit): the session took the knob.
    http_post_json(&faults, json!({})).await;
    let viewer_addr = v.s.local_addr().expect("local address").to_string();
    let side = sidecar_of(rec.path(), false).await;
    let file = rec.path().join(&side.file);
    let mut s = Live {
        d,
        start: started(&side),
        t,
        v,
        rec,
        file,
        clip: None,
        stills: Vec::new(),
    };

    // 1, until the drop; 2, after the resume.
    s.capture("prompt").await;
    s.hold().await;
    s.t.wait_log("console lost; viewers stay connected", 1, STEP)
        .await;
    let lost = since(s.start);
    s.end_still(lost);
    s.t.wait_log("console resumed", 1, STEP).await;
    s.capture("resumed").await;

    // 3: a command's output in colours.
    s.type_line(
        "printf '\\033[41m red \\033[42m green \\033[44m blue \\033[0m\\n'; seq -s ' ' 1 24\n",
    )
    .await;
    s.capture("typed").await;

    // 4: x11vnc serves the top left 480x320 of the screen from now on.
    let until = s.hold().await;
    s.end_still(until);
    s.d.run(
        "x11vnc",
        &["-display", &s.d.display, "-R", "clip:480x320+0+0"],
    )
    .await;
    s.clip = Some((480, 320));
    s.capture("resized").await;

    // 5: more output at that size; then the viewer leaves.
    s.type_line("echo 'after the resize' | tr a-z A-Z\n").await;
    s.capture("final").await;
    let until = s.hold().await;
    s.end_still(until);
    let Live {
        d: _d,
        t,
        v,
        rec,
        stills,
        ..
    } = s;
    drop(v);
    let side = sidecar_of(rec.path(), true).await;
    let file = the_recording(rec.path(), &side);
    for st in &stills {
        assert!(
            st.until >= st.seen + MIN_STILL,
            "{}: still from {:?} to {:?} only",
            st.name,
            st.seen,
            st.until
        );
    }

    // (c) The sidecar: the viewer, the URLs and the resume.
    eprintln!("the sidecar: {side:?}");
    assert_eq!(side.instance, INSTANCE);
    assert!(
        side.viewers.iter().any(|w| w.peer == viewer_addr
            && w.via == "tcp"
            && w.role == "control"
            && w.left.is_some()),
        "the live viewer ({viewer_addr}) is listed: {:?}",
        side.viewers
    );
    assert!(side.urls_spent >= 2, "URLs spent: {side:?}");
    assert_eq!(side.urls_spent, t.mints(INSTANCE).await, "{side:?}");
    assert!(side.resumes >= 1, "resumes: {side:?}");
    assert!(side.stopped.is_none(), "{side:?}");
    // Keyframes came while the screen changed; `tcvnc play --from` starts from one for
    // the stills after the first.
    let first_key = side.keyframes.first().expect("keyframes in the sidecar").ms;
    assert!(
        stills
            .iter()
            .any(|st| st.instant().as_millis() as u64 >= first_key),
        "a still after the first keyframe ({first_key} ms)"
    );
    let decoded = decode_recording(&file, None).expect("the reference decoder reads it");
    assert!(
        decoded.names.iter().any(|n| n.contains("reconnecting")),
        "the resume is in the file: {:?}",
        decoded.names
    );

    // (a) At each still's middle: the exported frame, tcvnc play's screen and the
    // reference decoder's reading all equal the live viewer's capture.
    let frames = export_frames(&file, &artifact("fidelity-export")).await;
    for st in &stills {
        let at = st.instant();
        let (frame_at, frame) = frames
            .iter()
            .rev()
            .find(|(ms, _)| *ms <= at)
            .unwrap_or_else(|| panic!("{}: no exported frame at or before {at:?}", st.name));
        assert!(
            at - *frame_at < Duration::from_millis(100),
            "{}: the frame before {at:?} is at {frame_at:?}",
            st.name
        );
        let cmp = same_pixels(&st.live, frame).await;
        assert_eq!(
            cmp["equal"],
            true,
            "{} (still {:?}..{:?}): tcvnc export's {} differs from the live capture {}: {cmp}",
            st.name,
            st.seen,
            st.until,
            frame.display(),
            st.live.display()
        );
        let played = play_at(
            &file,
            at,
            &artifact(&format!("fidelity-{}-play.ppm", st.name)),
        )
        .await;
        if let Some(diff) = played.diff(&st.screen) {
            panic!(
                "{} (still {:?}..{:?}): tcvnc play --from {at:?} shows another screen: {diff}",
                st.name, st.seen, st.until
            );
        }
        let read = decode_recording(&file, Some(at.as_millis() as u64))
            .expect("the reference decoder reads it");
        if let Some(diff) = Screen::of(&read.v).diff(&st.screen) {
            panic!(
                "{} (still {:?}..{:?}): the file read up to {at:?} shows another screen: {diff}",
                st.name, st.seen, st.until
            );
        }
        eprintln!(
            "{}: at {at:?} (still {:?}..{:?}) export, play and the file equal the live capture",
            st.name, st.seen, st.until
        );
    }

    // (b) noVNC's playback page ends on the live viewer's last screen.
    let last = stills.last().expect("captures");
    // Kept with the artifacts: the file the players read.
    let _ = std::fs::copy(&file, artifact("fidelity.js"));
    let pb = novnc_playback(&page, &file, "fidelity").await;
    assert_eq!(
        pb.said["loaded_frames"],
        decoded.frames + 1,
        "the page loaded every frame: {}",
        pb.said
    );
    let cmp = same_pixels(&last.live, &pb.canvas).await;
    assert_eq!(
        cmp["equal"],
        true,
        "noVNC's playback ends on {}, not the live viewer's last capture {}: {cmp}",
        pb.canvas.display(),
        last.live.display()
    );
}

/// `tcvnc export FILE -o DIR --interval 100ms`: each frame's instant and path, in order.
async fn export_frames(file: &Path, dir: &Path) -> Vec<(Duration, PathBuf)> {
    let _ = std::fs::remove_dir_all(dir);
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_tcvnc"))
            .arg("export")
            .arg(file)
            .arg("-o")
            .arg(dir)
            .args(["--interval", "100ms"])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("tcvnc export in time")
    .expect("tcvnc runs");
    assert!(
        out.status.success(),
        "tcvnc export: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut frames: Vec<(Duration, PathBuf)> = std::fs::read_dir(dir)
        .expect("the frames")
        .flatten()
        .map(|e| e.path())
        .map(|p| {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            (
                frame_instant(&name).unwrap_or_else(|| panic!("a frame's name: {name}")),
                p,
            )
        })
        .collect();
    frames.sort();
    assert!(!frames.is_empty(), "tcvnc export wrote no frame");
    frames
}

/// `frame-000012-001m02.300s.png` → 62.3 s.
fn frame_instant(name: &str) -> Option<Duration> {
    let t = name.strip_prefix("frame-")?.split_once('-')?.1;
    let (min, rest) = t.split_once('m')?;
    let (sec, rest) = rest.split_once('.')?;
    let ms = rest.strip_suffix("s.png")?;
    Some(Duration::from_millis(
        min.parse::<u64>().ok()? * 60_000
            + sec.parse::<u64>().ok()? * 1000
            + ms.parse::<u64>().ok()?,
    ))
}

/// The screen a reference viewer gets from `tcvnc play FILE --from AT --speed 0.001`
/// (the recording a thousand times slower from AT: what follows AT in a still period is
/// minutes away); written to `out` too.
async fn play_at(file: &Path, at: Duration, out: &Path) -> Screen {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tcvnc"))
        .arg("play")
        .arg(file)
        .args(["--tcp", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args([
            "--from",
            &format!("{}ms", at.as_millis()),
            "--speed",
            "0.001",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("tcvnc play");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let addr: SocketAddr = tokio::time::timeout(STEP, async {
        while let Ok(Some(l)) = lines.next_line().await {
            if let Some(a) = l.trim().strip_prefix("native viewer:  vncviewer ") {
                return a.replacen("::", ":", 1).parse().ok();
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .expect("tcvnc play prints its native viewer's address");
    let mut v = tokio::time::timeout(STEP, Viewer::connect(addr, LIVE))
        .await
        .expect("tcvnc play admits the viewer in time");
    v.request(false).await;
    tokio::time::timeout(STEP, v.next_update())
        .await
        .expect("tcvnc play's first update in time")
        .expect("tcvnc play's first update");
    let screen = Screen::of(&v.v);
    screen.write_ppm(out);
    let _ = child.kill().await;
    screen
}
