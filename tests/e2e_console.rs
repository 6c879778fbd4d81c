//! Console mode end to end with real software. The consoles are real VNC servers (QEMU,
//! x11vnc on Xvfb, TigerVNC's Xvnc) behind `tcvnc sim`'s gateway; the system under test
//! is `tcvnc serve` with a `mode = "console"` target (an RFB client of the console, a
//! server to its viewers, the screen in between); the viewers are vncdotool, noVNC in
//! headless Chromium and a raw RFB viewer on the reference decoder (`tests/console_support`).
//!
//! - Pixels: what each viewer captures through console mode equals a capture taken
//!   directly from the same server, for each server and each encoding the viewer takes.
//! - Drop and reboot: a viewer keeps its connection while the gateway drops the console
//!   (or the instance reboots), is told why, and gets fresh frames after.
//! - Keyboard: keys typed in noVNC reach a shell on the console.
//! - Sharing: browsers with control and view-only roles and a TCP viewer on one console
//!   (one URL); only the controller's input reaches it, the view-only input is counted.
//! - Typing and screenshots: text typed over HTTP and by the CLI reaches bash and shows
//!   in the next screenshot (equal to the X server's screen, read back by tesseract).
//!
//! Runs with TCVNC_E2E=1, where a missing tool is a failure. Artifacts (captures, page
//! screenshots, the daemon's log of a failed test) are kept in `tests/e2e/artifacts`.

mod common;
mod console_support;
mod e2e_support;
mod rfbref;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::e2e;
use console_support::{Viewer, CURSOR, DESKTOP_NAME, DESKTOP_SIZE, HEXTILE, INSTANCE, RAW, ZRLE};
use e2e_support::procs::Tcvnc;
use e2e_support::qemu::Qemu;
use e2e_support::viewers::{novnc_canvas, png_rgb, same_pixels, vncdo_encoding, Cursor};
use e2e_support::x11::{Desktop, Vnc};
use e2e_support::{artifacts, http_post_json, poll, POLL, STEP};
use serde_json::{json, Value};
use tcvnc::console::banner::{BANNER_BG, BANNER_H};
use tokio::io::{AsyncBufReadExt, BufReader};

/// The instance as a shared console-mode target on a TCP listener, with `extra` lines
/// (shared: a viewer that comes as another leaves is not refused as busy).
fn console_target(extra: &str) -> String {
    format!(
        "[[target]]\ninstance = \"{INSTANCE}\"\nlisten = \"127.0.0.1:0\"\nmode = \"console\"\non_busy = \"share\"\n{extra}\n"
    )
}

/// Captures `direct` (a PNG of the console's screen taken straight from its server) again
/// through console mode: first a raw RFB viewer until it has the whole screen (the engine
/// then lingers with it), then vncdotool asking for Raw, Hextile and ZRLE in turn, then
/// noVNC (which asks for Tight first, with a JPEG quality level: the screens here have
/// few colours, so Tight stays lossless); each capture must equal it pixel for pixel.
/// Every viewer is served from one console connection (one URL), in the encoding it
/// asked for.
async fn same_through_console_mode(name: &str, t: &Tcvnc, direct: &Path) {
    let addr: SocketAddr = t.addr(&format!("tcp {INSTANCE}")).parse().expect("addr");
    viewer_sees(&format!("{name} through console mode"), addr, direct).await;
    let kept = artifacts().join(format!("console-{name}-direct.png"));
    std::fs::copy(direct, &kept).expect("keep the direct capture");
    for encoding in ["raw", "hextile", "zrle"] {
        let sample = format!("tcvnc_console_rects_total{{encoding=\"{encoding}\"}}");
        let before = t.metric(&sample).await;
        let via = artifacts().join(format!("console-{name}-{encoding}.png"));
        vncdo_encoding(&t.vnc(INSTANCE), encoding, &via, Cursor::Left)
            .await
            .unwrap_or_else(|e| panic!("{name}: vncdotool {encoding} through console mode: {e}"));
        let cmp = same_pixels(&kept, &via).await;
        assert_eq!(
            cmp["equal"],
            true,
            "{name}, vncdotool {encoding}: {} differs from {}: {cmp}",
            via.display(),
            kept.display()
        );
        let after = t.metric(&sample).await;
        assert!(
            after > before,
            "{name}: no {encoding} rectangle was sent to vncdotool ({sample}: {before} → {after})"
        );
        eprintln!("{name}: vncdotool {encoding} through console mode: equal ({cmp})");
    }
    let tight = "tcvnc_console_rects_total{encoding=\"tight\"}";
    let before = t.metric(tight).await;
    let canvas = artifacts().join(format!("console-{name}-novnc-canvas.png"));
    let shot = artifacts().join(format!("console-{name}-novnc-page.png"));
    let url = format!(
        "http://{}/vnc.html?path=vnc/{INSTANCE}&autoconnect=true&reconnect=false",
        t.addr("http")
    );
    novnc_canvas(&url, &canvas, &shot).await;
    let cmp = same_pixels(&kept, &canvas).await;
    assert_eq!(
        cmp["equal"],
        true,
        "{name}, noVNC: {} differs from {}: {cmp}",
        canvas.display(),
        kept.display()
    );
    assert!(
        t.metric(tight).await > before,
        "{name}: noVNC was not sent Tight"
    );
    eprintln!("{name}: noVNC (Tight) through console mode: equal ({cmp})");
    assert_eq!(
        t.mints(INSTANCE).await,
        1,
        "{name}: every viewer was served from one console connection"
    );
}

/// Waits until a raw RFB viewer of the VNC server at `addr` (a console, or console mode)
/// has the screen of `reference`: it asks for a full update, then for changes, until its
/// screen equals the reference. The viewer is the reference decoder asking for ZRLE and
/// cursor shapes (so that no server draws the pointer into the screen), not for
/// DesktopSize (console mode must not need it while the size stays). Through console
/// mode this also starts the engine, which then lingers with the whole screen.
async fn viewer_sees(what: &str, addr: SocketAddr, reference: &Path) {
    let (w, h, want) = png_rgb(reference).await;
    let mut v = tokio::time::timeout(STEP, Viewer::connect(addr, &[ZRLE, HEXTILE, RAW, CURSOR]))
        .await
        .unwrap_or_else(|_| panic!("{what}: the viewer is admitted in time"));
    assert_eq!(
        (u32::from(v.v.width), u32::from(v.v.height)),
        (w, h),
        "{what}: the screen's size"
    );
    let deadline = tokio::time::Instant::now() + STEP;
    v.request(false).await;
    loop {
        tokio::time::timeout(STEP, v.next_update())
            .await
            .unwrap_or_else(|_| panic!("{what}: no update within {STEP:?}"))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let mut differing = 0usize;
        for (i, px) in want.chunks_exact(3).enumerate() {
            let (x, y) = ((i as u32 % w) as u16, (i as u32 / w) as u16);
            let rgb = u32::from(px[0]) << 16 | u32::from(px[1]) << 8 | u32::from(px[2]);
            differing += usize::from(v.rgb(x, y) != rgb);
        }
        if differing == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: after {} updates the screen differs from {} in {differing} pixels",
            v.updates,
            reference.display()
        );
        v.request(true).await;
    }
}

/// QEMU (SeaBIOS's screen, the VM paused): vncdotool (Raw, Hextile, ZRLE) and noVNC
/// through console mode capture what vncdotool captures directly, pixel for pixel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_console_pixels_qemu() {
    if !e2e("e2e_console_pixels_qemu") {
        return;
    }
    let mut q = Qemu::start(None).await;
    let t = Tcvnc::start(&q.backend(), &console_target("linger = \"5m\"")).await;
    q.settle(t.dir.path()).await;
    let direct = t.dir.path().join("direct.png");
    vncdo_encoding(&q.server(), "raw", &direct, Cursor::Left)
        .await
        .expect("direct capture");
    same_through_console_mode("qemu", &t, &direct).await;
}

/// The pixel test on an X desktop served by `vnc`: a plaid and an xterm with text. The
/// direct capture is the X server's own (`xwd -root`), which a raw RFB viewer of the VNC
/// server must get too.
async fn pixels_on_x(name: &str, vnc: Vnc) {
    let mut d = Desktop::start(vnc, 480, 320).await;
    d.draw_still().await;
    let direct = d.path("direct.png");
    d.settle(&direct).await;
    let server: SocketAddr = d.backend().parse().expect("addr");
    viewer_sees(&format!("{name} directly"), server, &direct).await;
    let t = Tcvnc::start(&d.backend(), &console_target("linger = \"5m\"")).await;
    same_through_console_mode(name, &t, &direct).await;
}

/// x11vnc on Xvfb: vncdotool (Raw, Hextile, ZRLE) and noVNC through console mode capture
/// the screen a viewer of x11vnc gets directly, pixel for pixel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_console_pixels_x11vnc() {
    if !e2e("e2e_console_pixels_x11vnc") {
        return;
    }
    pixels_on_x("x11vnc", Vnc::X11vnc).await;
}

/// TigerVNC's Xvnc: vncdotool (Raw, Hextile, ZRLE) and noVNC through console mode
/// capture the screen a viewer of Xvnc gets directly, pixel for pixel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_console_pixels_xvnc() {
    if !e2e("e2e_console_pixels_xvnc") {
        return;
    }
    pixels_on_x("xvnc", Vnc::Xvnc).await;
}

/// The first viewer of a console engine, a vncdotool capture (one non-incremental
/// update), gets the console's screen, not the engine's blank framebuffer: viewers of a
/// fresh engine wait for the console's first full update. (Before that fix a viewer
/// that asked at once got 614,444 bytes of Raw zeros for 480×320, 41 ms after "console
/// engine connected".)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_console_first_capture_is_the_screen() {
    if !e2e("e2e_console_first_capture_is_the_screen") {
        return;
    }
    let mut d = Desktop::start(Vnc::X11vnc, 480, 320).await;
    d.draw_still().await;
    let direct = d.path("direct.png");
    d.settle(&direct).await;
    let t = Tcvnc::start(&d.backend(), &console_target("")).await;
    let via = artifacts().join("console-first-capture.png");
    vncdo_encoding(&t.vnc(INSTANCE), "raw", &via, Cursor::Left)
        .await
        .expect("capture through console mode");
    let cmp = same_pixels(&direct, &via).await;
    assert_eq!(
        cmp["equal"],
        true,
        "the first capture through a fresh engine: {} {cmp}",
        via.display()
    );
}

/// What a viewer saw while the console went away and came back.
#[derive(Debug, Default)]
struct Outage {
    /// Updates that showed tcvnc's banner.
    banner_updates: usize,
    /// Different screens (without the banner) after the console was back.
    fresh: HashSet<u64>,
    /// Updates decoded in all.
    updates: usize,
}

/// Whether tcvnc's banner is on the viewer's screen (its bar's colour across row 0; the
/// desktops here have no such colour at the top).
fn shows_banner(v: &Viewer) -> bool {
    (0..v.v.width).all(|x| v.rgb(x, 0) == BANNER_BG)
        && (0..v.v.width).any(|x| v.rgb(x, BANNER_H / 2) != BANNER_BG)
}

fn screen_hash(v: &Viewer) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.v.screen.hash(&mut h);
    h.finish()
}

/// Keeps one incremental update request outstanding on `v` (its one connection: a
/// closed connection fails the test) until `back` has been logged by the daemon and the
/// viewer has since seen `fresh` different screens without the banner.
async fn watch_outage(v: &mut Viewer, t: &Tcvnc, back: &str, fresh: usize) -> Outage {
    let mut o = Outage::default();
    let limit = Duration::from_secs(90);
    let deadline = tokio::time::Instant::now() + limit;
    while o.fresh.len() < fresh {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {fresh} fresh screens within {limit:?} after {back:?}: {o:?}; names {:?}",
            v.names
        );
        // Whether the console was back before this update was asked for: an update
        // after that shows what the console sent since.
        let was_back = !t.log_lines(back).is_empty();
        v.request(true).await;
        match tokio::time::timeout(STEP, v.next_update()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("the viewer's connection ended ({e}) after {o:?}"),
            Err(_) => panic!("no update within {STEP:?} after {o:?}"),
        }
        o.updates += 1;
        let banner = shows_banner(v);
        if banner {
            o.banner_updates += 1;
        } else if was_back {
            o.fresh.insert(screen_hash(v));
        }
    }
    o
}

/// An xclock on x11vnc (frames keep changing) behind the simulator, the daemon with the
/// instance in console mode, and a raw RFB viewer of it that has seen the clock move.
struct ClockSession {
    _desktop: Desktop,
    t: Tcvnc,
    v: Viewer,
    /// The desktop name the viewer was first given: the console's.
    console_name: String,
}

impl ClockSession {
    /// Starts it all; `first_faults` are the simulator's knobs for the first gateway
    /// session only (set before the viewer joins, cleared once the session is open).
    async fn start(first_faults: Value) -> ClockSession {
        let mut desktop = Desktop::start(Vnc::X11vnc, 400, 300).await;
        desktop.draw_clock().await;
        let t = Tcvnc::start(&desktop.backend(), &console_target("")).await;
        let faults = format!("{}/_sim/faults", t.api);
        http_post_json(&faults, first_faults).await;
        let addr: SocketAddr = t.addr(&format!("tcp {INSTANCE}")).parse().expect("addr");
        let mut v = tokio::time::timeout(
            STEP,
            Viewer::connect(addr, &[ZRLE, HEXTILE, RAW, DESKTOP_SIZE, DESKTOP_NAME]),
        )
        .await
        .expect("the viewer is admitted in time");
        // The engine is live (the viewer had its ServerInit): the session took the knobs.
        http_post_json(&faults, json!({})).await;
        v.request(false).await;
        tokio::time::timeout(STEP, v.next_update())
            .await
            .expect("first update in time")
            .expect("first update");
        let first = screen_hash(&v);
        let deadline = tokio::time::Instant::now() + STEP;
        while screen_hash(&v) == first {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the clock did not move within {STEP:?}"
            );
            v.request(true).await;
            tokio::time::timeout(STEP, v.next_update())
                .await
                .expect("an update in time")
                .expect("an update");
        }
        let console_name = v.name.clone();
        assert!(!console_name.contains("reconnecting"), "{console_name:?}");
        assert_eq!(t.mints(INSTANCE).await, 1);
        ClockSession {
            _desktop: desktop,
            t,
            v,
            console_name,
        }
    }

    /// What the viewer saw while the console went away and came back (see
    /// [`watch_outage`]).
    async fn outage(&mut self, what: &str) -> Outage {
        let o = watch_outage(&mut self.v, &self.t, "console resumed", 3).await;
        eprintln!("{what}: {o:?}; names {:?}", self.v.names);
        o
    }

    /// After an outage: the banner was shown, the console's own name is back, the engine
    /// is live again after one resume with its one viewer, and `mints` URLs were spent.
    async fn assert_back(&self, o: &Outage, mints: u64) {
        assert!(
            o.banner_updates >= 1,
            "the banner was shown while the console was away: {o:?}"
        );
        assert_eq!(
            self.v.names.last(),
            Some(&self.console_name),
            "the console's name is back: {:?}",
            self.v.names
        );
        assert_eq!(self.t.mints(INSTANCE).await, mints, "URLs minted");
        let engine = &self.t.console(INSTANCE).await["engine"];
        assert_eq!(engine["phase"], "live", "{engine}");
        assert_eq!(engine["resumes"], 1, "{engine}");
        assert_eq!(engine["viewers"], 1, "{engine}");
    }
}

/// The gateway drops the console mid-session (the simulator's `drop_after` knob on the
/// first gateway session only); x11vnc shows an xclock, so frames keep changing. The
/// viewer keeps its one TCP connection, is shown the banner and a desktop name saying
/// "reconnecting", and gets fresh frames of the clock from the second console connection,
/// made with a second URL; the desktop name is the console's again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_console_viewer_survives_gateway_drop() {
    if !e2e("e2e_console_viewer_survives_gateway_drop") {
        return;
    }
    let mut s = ClockSession::start(json!({"drop_after": "3s"})).await;
    let o = s.outage("drop").await;
    let lost = s.t.log_lines("console lost; viewers stay connected");
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert!(
        s.v.names.iter().any(|n| n.contains("reconnecting")),
        "the desktop name said why: {:?}",
        s.v.names
    );
    s.assert_back(&o, 2).await;
    let stats = s.t.sim_stats().await;
    assert_eq!(stats["gateway_accepted"], 2, "{stats}");
    assert_eq!(stats["max_live_upstreams"], 1, "{stats}");
}

/// The instance reboots (the simulator's `POST /_sim/reboot`: the gateway sessions are
/// dropped, the instance is STOPPED for 2 s, then STARTING for 2 s, then RUNNING). The
/// viewer keeps its one connection, is shown the banner and a desktop name saying the
/// instance is not running, and gets fresh frames of the clock once it runs again,
/// through a second URL (none was minted while it was not running).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_console_viewer_survives_reboot() {
    if !e2e("e2e_console_viewer_survives_reboot") {
        return;
    }
    let mut s = ClockSession::start(json!({})).await;
    http_post_json(
        &format!("{}/_sim/reboot", s.t.api),
        json!({"instance": INSTANCE, "stopped": "2s", "starting": "2s"}),
    )
    .await;
    let o = s.outage("reboot").await;
    assert!(
        s.v.names
            .iter()
            .any(|n| n.contains("STARTING") || n.contains("not running")),
        "the desktop name said the instance was not running: {:?}",
        s.v.names
    );
    s.assert_back(&o, 2).await;
}

/// Keys typed in noVNC (headless Chromium, playwright's keyboard) reach a shell on the
/// console through console mode: x11vnc on Xvfb runs an xterm with `bash --norc`; the
/// command typed writes a file whose content the test checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_console_novnc_keyboard() {
    if !e2e("e2e_console_novnc_keyboard") {
        return;
    }
    let home = tempfile::tempdir().expect("tmp");
    let mut d = Desktop::start(Vnc::X11vnc, 480, 320).await;
    d.draw_shell(home.path()).await;
    let t = Tcvnc::start(&d.backend(), &console_target("")).await;
    let word = format!("tcvnc-typed-{:08x}", rand::random::<u32>());
    let command = format!("echo {word} > typed.txt");
    let url = format!(
        "http://{}/vnc.html?path=vnc/{INSTANCE}&autoconnect=true&reconnect=false",
        t.addr("http")
    );
    let shot = artifacts().join("console-keyboard-page.png");
    let mut node = tokio::process::Command::new("node")
        .arg(common::e2e_file("novnc_type.mjs"))
        .args([url.as_str(), command.as_str()])
        .arg(&shot)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut out = BufReader::new(node.stdout.take().expect("stdout")).lines();
    let line = tokio::time::timeout(Duration::from_secs(90), out.next_line())
        .await
        .expect("the browser typed in time")
        .expect("read")
        .unwrap_or_default();
    let said: Value = serde_json::from_str(&line).unwrap_or(json!({"unparsed": line}));
    assert_eq!(said["ok"], true, "novnc_type.mjs: {said}");
    let typed = home.path().join("typed.txt");
    let content = poll("the typed command's file", STEP, || async {
        match std::fs::read_to_string(&typed) {
            Ok(c) if c.ends_with('\n') => Ok(c),
            Ok(c) => Err(format!("{c:?} so far")),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    assert_eq!(content, format!("{word}\n"), "what the shell wrote");
    // The page screenshot (the terminal with the command) is taken once stdin closes.
    drop(node.stdin.take());
    let status = tokio::time::timeout(STEP, node.wait())
        .await
        .expect("the browser closes")
        .expect("node");
    assert!(status.success(), "novnc_type.mjs: {status}");
    let engine = &t.console(INSTANCE).await["engine"];
    assert_eq!(engine["input_dropped"], 0, "{engine}");
}

/// noVNC's compression slider, moved mid-session, never costs the console: noVNC's own
/// page (vnc.html, headless Chromium) shows an xterm under x11vnc through console mode
/// (its bitmap font: few colours, so noVNC's Tight stays lossless, palette through zlib,
/// and pixel equality holds; an anti-aliased font would go JPEG at noVNC's quality);
/// the test moves the page's compression slider (noVNC sends SetEncodings with the new
/// level) to 9, 0, 6 and 1 in turn, and after each move types a command whose coloured
/// output fills the screen (`POST /vnc/<instance>/type`). After each, the page is still
/// connected and its canvas equals the X server's screen pixel for pixel, drawn by
/// noVNC's Tight decoder on zlib streams used both before and after the change. (Before
/// c12ed85 a level change reset the viewer's zlib stream and then continued it, which
/// noVNC's inflater cannot decode: the page failed with "zlib inflate failed".)
#[tokio::test(flavor = "multi_thread")]
async fn e2e_console_novnc_compression_slider() {
    if !e2e("e2e_console_novnc_compression_slider") {
        return;
    }
    let home = tempfile::tempdir().expect("tmp");
    let mut d = Desktop::start(Vnc::X11vnc, 960, 400).await;
    d.draw_shell(home.path()).await;
    let t = Tcvnc::start(&d.backend(), &console_target("linger = \"5m\"")).await;
    let via = format!("http://{}", t.addr("http"));
    let page = format!("{via}/vnc.html?path=vnc/{INSTANCE}&autoconnect=true&reconnect=false");
    let mut b = Browsers::script("novnc_compression.mjs", &[&page]);
    let tight = "tcvnc_console_rects_total{encoding=\"tight\"}";

    // Shows the X server's screen in noVNC's canvas, then returns its status line.
    async fn canvas_shows_x(b: &mut Browsers, d: &Desktop, step: &str) -> String {
        let x = d.path(&format!("compression-{step}-x.png"));
        d.settle(&x).await;
        let canvas = artifacts().join(format!("console-compression-{step}-canvas.png"));
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let said = b.ask(&format!("canvas {}", canvas.display())).await;
            let status = said["status"].as_str().unwrap_or_default().to_string();
            assert!(status.starts_with("Connected"), "noVNC {step}: {said}");
            let cmp = same_pixels(&x, &canvas).await;
            if cmp["equal"] == true {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "noVNC {step}: {} differs from {} after {STEP:?}: {cmp}",
                canvas.display(),
                x.display()
            );
            tokio::time::sleep(POLL).await;
        }
    }
    canvas_shows_x(&mut b, &d, "at-first").await;
    for level in [9, 0, 6, 1] {
        let before = t.metric(tight).await;
        let said = b.ask(&format!("level {level}")).await;
        assert_eq!(said["level"], level, "{said}");
        let line = format!(
            "for i in 1 2 3 4 5 6; do printf '\\033[3%dm level {level}, line %d: the quick brown fox \\033[0m\\n' $i $i; done\n"
        );
        let r = common::http_client()
            .post(format!("{via}/vnc/{INSTANCE}/type"))
            .body(line)
            .send()
            .await
            .expect("type request");
        assert!(r.status().is_success(), "POST type: {}", r.status());
        let status = canvas_shows_x(&mut b, &d, &format!("level-{level}")).await;
        let after = t.metric(tight).await;
        assert!(
            after > before,
            "level {level}: noVNC was sent no Tight rectangle ({tight}: {before} → {after})"
        );
        eprintln!(
            "compression level {level}: noVNC's canvas equals the X server's screen ({status})"
        );
    }
    b.close().await;
    assert_eq!(t.mints(INSTANCE).await, 1, "one URL for everything");
}

/// A browser script (`novnc_share.mjs`, `novnc_compression.mjs`) driven a command at a
/// time: a line on its stdin, a JSON line back.
struct Browsers {
    script: &'static str,
    node: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    out: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Browsers {
    /// `novnc_share.mjs`: two noVNC pages in one headless Chromium, opening `control` and
    /// `view` (noVNC URLs); page screenshots go to `PREFIX-*.png`.
    fn start(control: &str, view: &str, prefix: &Path) -> Browsers {
        let prefix = prefix.display().to_string();
        Browsers::script("novnc_share.mjs", &[control, view, &prefix])
    }

    /// Starts `tests/e2e/SCRIPT` with `args`.
    fn script(script: &'static str, args: &[&str]) -> Browsers {
        let mut node = tokio::process::Command::new("node")
            .arg(common::e2e_file(script))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs");
        let stdin = node.stdin.take().expect("stdin");
        let out = BufReader::new(node.stdout.take().expect("stdout")).lines();
        Browsers {
            script,
            node,
            stdin,
            out,
        }
    }

    /// Sends `command`; its answer, which must say `ok`.
    async fn ask(&mut self, command: &str) -> Value {
        use tokio::io::AsyncWriteExt;
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .expect("write to node");
        let line = tokio::time::timeout(Duration::from_secs(60), self.out.next_line())
            .await
            .unwrap_or_else(|_| panic!("{}: no answer to {command:?} in time", self.script))
            .expect("read")
            .unwrap_or_default();
        let said: Value = serde_json::from_str(&line).unwrap_or(json!({"unparsed": line}));
        assert_eq!(said["ok"], true, "{}, {command:?}: {said}", self.script);
        said
    }

    /// Closes stdin: the script finishes (`novnc_share.mjs` writes the page screenshots)
    /// and exits, which it must do cleanly.
    async fn close(mut self) {
        drop(self.stdin);
        let status = tokio::time::timeout(STEP, self.node.wait())
            .await
            .expect("the browser closes")
            .expect("node");
        assert!(status.success(), "{}: {status}", self.script);
    }
}

/// The key and pointer events in `sent` (the page's own record, see `novnc_share.mjs`).
fn events(sent: &Value) -> Vec<Value> {
    sent["sent"].as_array().cloned().unwrap_or_default()
}

/// Three viewers share one console (`on_busy = "share"`, the simulator's test pattern,
/// whose input log records every event that reaches it): a raw RFB viewer on TCP and two
/// noVNC pages in headless Chromium, one with control, one view-only (`?view_only=1` in
/// its websocket path, noVNC itself not told, so it sends what playwright gives it). One
/// URL serves all three; `/api/consoles` lists them with role and transport. The
/// view-only page clicks and types first: tcvnc counts every one of its events as
/// dropped (`tcvnc_console_input_dropped_total{cause="view_only"}` reaches exactly what
/// the page sent, which also proves tcvnc read them all), then the control page clicks
/// and types; the console's input log ends up equal to the control page's events, in
/// order, and holds nothing of the view-only page's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_console_shared_browsers_and_tcp() {
    if !e2e("e2e_console_shared_browsers_and_tcp") {
        return;
    }
    let t = Tcvnc::start_pattern(&console_target("")).await;
    let addr: SocketAddr = t.addr(&format!("tcp {INSTANCE}")).parse().expect("addr");
    let mut tcp = tokio::time::timeout(STEP, Viewer::connect(addr, &[ZRLE, HEXTILE, RAW]))
        .await
        .expect("the TCP viewer is admitted in time");
    tcp.request(false).await;
    tokio::time::timeout(STEP, tcp.next_update())
        .await
        .expect("the TCP viewer's first update in time")
        .expect("the TCP viewer's first update");
    tcp.shows_pattern()
        .unwrap_or_else(|e| panic!("the TCP viewer sees the test pattern: {e}"));

    let page = format!(
        "http://{}/vnc.html?autoconnect=true&reconnect=false&path=vnc/{INSTANCE}",
        t.addr("http")
    );
    let view_page = format!("{page}%3Fview_only%3D1");
    let mut b = Browsers::start(&page, &view_page, &artifacts().join("console-share"));
    b.ask("ready").await;

    let console = t.console(INSTANCE).await;
    let mut roles: Vec<String> = console["engine"]["viewer_list"]
        .as_array()
        .unwrap_or_else(|| panic!("a viewer list: {console}"))
        .iter()
        .map(|v| format!("{} {}", v["via"], v["role"]).replace('"', ""))
        .collect();
    roles.sort();
    assert_eq!(
        roles,
        ["tcp control", "ws control", "ws view"],
        "/api/consoles: {console}"
    );

    // The view-only page first: none of it may reach the console.
    let view_text = "view-only keys go nowhere";
    let view = events(&b.ask(&format!("input view 100 100 {view_text}")).await);
    let view_keys = view.iter().filter(|e| e["kind"] != "pointer").count();
    assert_eq!(
        view_keys,
        2 * view_text.len(),
        "the view-only page sent a press and a release per character: {view:?}"
    );
    assert!(
        view.iter()
            .any(|e| e["kind"] == "pointer" && e["mask"] == 1 && e["x"] == 100 && e["y"] == 100),
        "the view-only page sent its click: {view:?}"
    );
    let dropped =
        format!("tcvnc_console_input_dropped_total{{instance=\"{INSTANCE}\",cause=\"view_only\"}}");
    poll(
        "tcvnc drops every event of the view-only page",
        STEP,
        || async {
            let n = t.metric(&dropped).await;
            if n == view.len() as f64 {
                Ok(())
            } else {
                Err(format!(
                    "{dropped} is {} of {}; the console's input log: {}",
                    n as i64,
                    view.len(),
                    Value::from(t.sim_inputs(INSTANCE).await)
                ))
            }
        },
    )
    .await;
    assert_eq!(
        t.console(INSTANCE).await["engine"]["input_dropped"],
        view.len(),
        "/api/consoles counts them too"
    );

    // Then the control page: exactly its events reach the console, in order.
    let control = events(&b.ask("input control 520 400 control keys arrive").await);
    let log = poll(
        "the control page's events reach the console",
        STEP,
        || async {
            let log = t.sim_inputs(INSTANCE).await;
            if log.len() >= control.len() {
                Ok(log)
            } else {
                Err(format!(
                    "{} of {} so far: {}",
                    log.len(),
                    control.len(),
                    Value::from(log)
                ))
            }
        },
    )
    .await;
    assert!(
        log == control,
        "the console's input log is the control page's events and nothing else:\n\
         log:     {}\ncontrol: {}\nview:    {}",
        Value::from(log.clone()),
        Value::from(control.clone()),
        Value::from(view.clone())
    );
    assert!(
        control
            .iter()
            .any(|e| e["kind"] == "pointer" && e["mask"] == 1 && e["x"] == 520 && e["y"] == 400),
        "the control page's click: {control:?}"
    );
    assert_eq!(
        t.metric(&dropped).await,
        view.len() as f64,
        "nothing else was dropped"
    );
    eprintln!(
        "shared console: the view-only page's {} events were dropped, the control page's {} reached the console",
        view.len(),
        control.len()
    );
    b.close().await;

    assert_eq!(t.mints(INSTANCE).await, 1, "one URL for the three viewers");
    let stats = t.sim_stats().await;
    assert_eq!(
        stats["gateway_accepted"], 1,
        "one console connection: {stats}"
    );
    drop(tcp);
}

/// Runs `tcvnc ARGS…` to its end (bounded); it must exit 0. Its stderr.
async fn tcvnc_cli(args: &[&str]) -> String {
    let out = tokio::time::timeout(
        STEP,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_tcvnc"))
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("tcvnc {args:?} did not finish in time"))
    .expect("tcvnc runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "tcvnc {args:?}: {}\n{stderr}",
        out.status
    );
    stderr
}

/// `GET /vnc/<instance>/screenshot.png` written to `png`; whether the daemon says it
/// spent a console URL for it.
async fn screenshot_http(t: &Tcvnc, png: &Path) -> bool {
    let r = common::http_client()
        .get(format!(
            "http://{}/vnc/{INSTANCE}/screenshot.png",
            t.addr("http")
        ))
        .send()
        .await
        .expect("screenshot request");
    assert!(r.status().is_success(), "screenshot.png: {}", r.status());
    let spent = r.headers().contains_key("x-tcvnc-url-spent");
    std::fs::write(png, r.bytes().await.expect("the PNG")).expect("write the PNG");
    spent
}

/// A word tesseract read, punctuation at either end left out, and its box (left, top,
/// right, bottom).
struct OcrWord {
    text: String,
    bbox: [u32; 4],
}

/// What tesseract reads in an image: words, a line at a time.
struct Ocr(Vec<Vec<OcrWord>>);

impl Ocr {
    /// Runs `tesseract PNG stdout tsv`.
    async fn read(png: &Path) -> Ocr {
        let out = tokio::time::timeout(
            STEP,
            tokio::process::Command::new("tesseract")
                .arg(png)
                .args(["stdout", "tsv"])
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("tesseract in time")
        .expect("tesseract is installed (Debian tesseract-ocr; bash .ci/run installs it)");
        assert!(out.status.success(), "tesseract: {}", out.status);
        // level page block par line word left top width height conf text
        let mut lines: Vec<Vec<OcrWord>> = Vec::new();
        let mut line_of_last = None;
        for row in String::from_utf8_lossy(&out.stdout).lines().skip(1) {
            let f: Vec<&str> = row.split('\t').collect();
            if f.len() < 12 || f[0] != "5" {
                continue;
            }
            let n = |i: usize| f[i].parse::<u32>().unwrap_or(0);
            let text = f[11].trim_matches(|c: char| !c.is_ascii_alphanumeric());
            if text.is_empty() {
                continue;
            }
            let line = Some((n(2), n(3), n(4)));
            if line != line_of_last {
                lines.push(Vec::new());
                line_of_last = line;
            }
            lines.last_mut().expect("a line").push(OcrWord {
                text: text.to_owned(),
                bbox: [n(6), n(7), n(6) + n(8), n(7) + n(9)],
            });
        }
        Ocr(lines)
    }

    /// The box around `phrase` where it stands, word after word, on one line.
    fn find(&self, phrase: &[&str]) -> Option<[u32; 4]> {
        self.0.iter().find_map(|ws| {
            ws.windows(phrase.len())
                .find(|w| w.iter().zip(phrase).all(|(word, p)| word.text == *p))
                .map(|w| {
                    w.iter().fold([u32::MAX, u32::MAX, 0, 0], |a, word| {
                        let b = word.bbox;
                        [
                            a[0].min(b[0]),
                            a[1].min(b[1]),
                            a[2].max(b[2]),
                            a[3].max(b[3]),
                        ]
                    })
                })
        })
    }

    /// The lines read, for a failure's message.
    fn lines(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|ws| {
                ws.iter()
                    .map(|w| w.text.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }
}

/// Text typed through console mode shows in its screenshots: x11vnc on Xvfb runs an
/// xterm (a 20-point font) with `bash --norc`. A line is typed with `POST
/// /vnc/<instance>/type`, another with `tcvnc type --via` ended by `tcvnc keys … enter
/// --via`, both full of shifted characters. Bash received exactly that text (each line
/// is an `echo` into a file the test reads). The screenshot taken next (`tcvnc
/// screenshot --via`, then `GET …/screenshot.png`) equals the X server's own screen
/// (`xwd -root`, once it is still) pixel for pixel; tesseract reads both lines' words in
/// it, and where it reads them the screenshot from before the typing was blank. One URL
/// for everything (the engine lingers between requests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_console_type_shows_in_screenshot() {
    if !e2e("e2e_console_type_shows_in_screenshot") {
        return;
    }
    let home = tempfile::tempdir().expect("tmp");
    let mut d = Desktop::start(Vnc::X11vnc, 960, 400).await;
    d.draw_big_shell(home.path()).await;
    let t = Tcvnc::start(&d.backend(), &console_target("linger = \"5m\"")).await;
    let via = format!("http://{}", t.addr("http"));

    // Before: the prompt alone, as the X server shows it.
    let before_x = d.path("before-x.png");
    d.settle(&before_x).await;
    let before = artifacts().join("console-type-before.png");
    let spent = screenshot_http(&t, &before).await;
    assert!(spent, "the first screenshot connected the console");
    let cmp = same_pixels(&before_x, &before).await;
    assert_eq!(cmp["equal"], true, "the screenshot before typing: {cmp}");

    // A line through the HTTP path (its newline is Enter)...
    let http_text = "Typed over HTTP A-Z!@#_:\"";
    let http_line = format!("echo '{http_text}' > http.txt\n");
    let r = common::http_client()
        .post(format!("{via}/vnc/{INSTANCE}/type"))
        .body(http_line.clone())
        .send()
        .await
        .expect("type request");
    assert!(r.status().is_success(), "POST type: {}", r.status());
    let said: Value = r.json().await.expect("json");
    assert_eq!(said["characters"], http_line.len(), "{said}");
    // ...and one through the CLI, Enter pressed apart.
    let cli_text = "Typed by the CLI a-z~$%^&*()+{}|<>?";
    let cli_line = format!("echo '{cli_text}' > cli.txt");
    tcvnc_cli(&["type", INSTANCE, &cli_line, "--via", &via]).await;
    tcvnc_cli(&["keys", INSTANCE, "enter", "--via", &via]).await;
    for (file, text) in [("http.txt", http_text), ("cli.txt", cli_text)] {
        let path = home.path().join(file);
        let content = poll(&format!("bash writes {file}"), STEP, || async {
            match std::fs::read_to_string(&path) {
                Ok(c) if c.ends_with('\n') => Ok(c),
                Ok(c) => Err(format!("{c:?} so far")),
                Err(e) => Err(e.to_string()),
            }
        })
        .await;
        assert_eq!(
            content,
            format!("{text}\n"),
            "what bash was typed into {file}"
        );
    }

    // After: the next screenshots are the X server's screen, pixel for pixel.
    let after_x = d.path("after-x.png");
    d.settle(&after_x).await;
    let after = artifacts().join("console-type-after.png");
    let mut shots = 0;
    poll("a screenshot equal to the X server's screen", STEP, || {
        shots += 1;
        let (after, after_x, via) = (&after, &after_x, &via);
        async move {
            let out = after.display().to_string();
            tcvnc_cli(&["screenshot", INSTANCE, "-o", &out, "--via", via]).await;
            let cmp = same_pixels(after_x, after).await;
            if cmp["equal"] == true {
                Ok(())
            } else {
                Err(format!(
                    "{} differs from {}: {cmp}",
                    after.display(),
                    after_x.display()
                ))
            }
        }
    })
    .await;
    let after_http = artifacts().join("console-type-after-http.png");
    assert!(!screenshot_http(&t, &after_http).await, "no URL spent");
    let cmp = same_pixels(&after_x, &after_http).await;
    assert_eq!(cmp["equal"], true, "GET screenshot.png after typing: {cmp}");

    // The typed words are in the screenshot, where there was nothing before.
    let read = Ocr::read(&after).await;
    let read_before = Ocr::read(&before).await;
    for phrase in [
        &["Typed", "over", "HTTP", "A-Z"][..],
        &["Typed", "by", "the", "CLI", "a-z"][..],
    ] {
        let b = read.find(phrase).unwrap_or_else(|| {
            panic!(
                "tesseract does not read {phrase:?} in {}: {:?}",
                after.display(),
                read.lines()
            )
        });
        assert!(
            read_before.find(phrase).is_none(),
            "{phrase:?} before typing: {:?}",
            read_before.lines()
        );
        let args: Vec<String> = [before.display().to_string(), after.display().to_string()]
            .into_iter()
            .chain(b.iter().map(u32::to_string))
            .collect();
        let mut argv = vec!["region"];
        argv.extend(args.iter().map(String::as_str));
        let region = e2e_support::viewers::imgtool(&argv).await;
        eprintln!("typed {phrase:?}: read at {b:?}: {region}");
        assert_eq!(region["colours_a"], 1, "blank before typing: {region}");
        assert!(
            region["differing"].as_u64().unwrap_or(0) > 0
                && region["colours_b"].as_u64().unwrap_or(0) > 1,
            "the text is drawn there after: {region}"
        );
    }
    eprintln!(
        "typed text: the screenshot equalled the X server's screen after {shots} CLI screenshot(s)"
    );
    assert_eq!(t.mints(INSTANCE).await, 1, "one URL for everything");
}
