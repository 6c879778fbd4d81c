//! The actions section (`--only actions`): tcvnc's HTTP actions on a console-mode
//! target, timed from outside as a user's `curl` would see them:
//!
//! - a screenshot of a live engine (`GET /vnc/<instance>/screenshot.png` while a viewer
//!   keeps the engine connected) of a 1920×1080 desktop, beside tcvnc's PNG encoder alone
//!   on the same screen and vncdotool's `capture` straight from the console;
//! - a screenshot with a fresh connect (no engine: tcvnc mints a URL, dials, waits for
//!   the first full screen, answers, leaves), beside the API call's own time;
//! - typing (`POST /vnc/<instance>/type`) into the simulator's test-pattern console at
//!   several `[session] type_interval`s, checked key event by key event against the
//!   simulator's input log.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::time::Instant;

use tcvnc::console::fb::Framebuffer;

use super::source::{self, Frames, Scene, Source};
use super::{api_seconds, console_target, viewer, Ctx};
use crate::procs::{self, Sim, Target, Tcvnc};
use crate::report::{quantile, Results};
use crate::{step, Plan};

/// The live screenshot case's name.
pub const LIVE: &str = "screenshot live 1920×1080";
/// The fresh-connect screenshot case's name.
pub const FRESH: &str = "screenshot fresh connect 1920×1080";
/// The typing case's name.
pub const TYPING: &str = "typing into the simulator's console";
/// vncdotool's process start alone (`vncdo --version`: Python and its imports).
pub const START: &str = "vncdotool process start";
/// [`START`]'s path.
pub const VERSION: &str = "vncdo --version";

/// The live case's paths.
pub const TCVNC: &str = "tcvnc";
pub const ENCODER: &str = "PNG encoder alone";
pub const VNCDOTOOL: &str = "vncdotool";

/// The screenshot screen.
const SIZE: (u16, u16) = (1920, 1080);
/// Unmeasured screenshots before each live series.
const WARM: usize = 3;
/// Instances the fresh-connect screenshots take turns on: each gets a URL at most every
/// FRESH_INSTANCES screenshots, far below the 30 a minute an instance may have.
const FRESH_INSTANCES: usize = 20;
/// Longest wait for one HTTP answer (a fresh connect included) or one capture.
const STEP: Duration = Duration::from_secs(60);

/// Instances the section uses, from `first`: the live one, the fresh-connect ones, one
/// per typing interval (at most [`MAX_INTERVALS`]).
pub const INSTANCES: usize = 1 + FRESH_INSTANCES + MAX_INTERVALS;
/// Typing intervals a plan may list.
pub const MAX_INTERVALS: usize = 4;

/// The typing path for an interval.
pub fn typing_path(ms: u64) -> String {
    let default = tcvnc::config::DEFAULT_TYPE_INTERVAL.as_millis() as u64;
    match ms {
        0 => "type_interval 0".to_owned(),
        m if m == default => format!("type_interval {m}ms (default)"),
        m => format!("type_interval {m}ms"),
    }
}

/// The typing path at tcvnc's default `type_interval`.
pub fn default_typing_path() -> String {
    typing_path(tcvnc::config::DEFAULT_TYPE_INTERVAL.as_millis() as u64)
}

/// Whether `case` is one of this section's.
pub fn is_case(case: &str) -> bool {
    [LIVE, START, FRESH, TYPING].contains(&case)
}

/// Runs the actions cases.
pub async fn cases(
    plan: &Plan,
    work: &Path,
    instances: &Path,
    first: usize,
    res: &mut Results,
) -> Result<()> {
    if plan.actions_type_intervals_ms.len() > MAX_INTERVALS {
        bail!("at most {MAX_INTERVALS} typing intervals");
    }
    let cx = Ctx {
        plan,
        work,
        instances,
    };
    let id = |i: usize| procs::instance_id(first + i);
    screenshots(cx, &id, res).await?;
    typing(cx, &id, res).await?;
    res.meta.insert("vncdotool".into(), vncdotool_version());
    Ok(())
}

/// A response as read: status, headers (lower-case names), body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request on a connection of its own (as `curl` makes it); the answer is
/// read to the end of its `Content-Length` (to EOF without one).
async fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Result<Answer> {
    tokio::time::timeout(STEP, async {
        let s = tokio::net::TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        let mut s = BufReader::new(s);
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let mut req = head.into_bytes();
        req.extend_from_slice(body);
        s.get_mut().write_all(&req).await?;
        let mut line = String::new();
        s.read_line(&mut line).await?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .ok_or_else(|| anyhow!("no status line: {line:?}"))?
            .parse()?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            if s.read_line(&mut line).await? == 0 {
                bail!("the answer ended in its headers");
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let len = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse::<usize>().ok());
        let mut body = Vec::new();
        match len {
            Some(n) => {
                body.resize(n, 0);
                s.read_exact(&mut body).await?;
            }
            None => {
                s.read_to_end(&mut body).await?;
            }
        }
        Ok(Answer {
            status,
            headers,
            body,
        })
    })
    .await
    .map_err(|_| anyhow!("{method} {path}: no answer in {STEP:?}"))?
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// p50 and p99 of durations in nanoseconds, in ms.
fn p50_p99(ns: &mut [u64]) -> (f64, f64) {
    ns.sort_unstable();
    (ms(quantile(ns, 0.5)), ms(quantile(ns, 0.99)))
}

/// Pixels of a PNG that differ from `fb` (every pixel when the size differs), decoded
/// by an independent decoder (zune-png); RGB or RGBA.
fn differing(png: &[u8], fb: &Framebuffer) -> Result<usize> {
    use zune_png::zune_core::colorspace::ColorSpace;
    let mut d = zune_png::PngDecoder::new(png);
    let px = d.decode_raw().map_err(|e| anyhow!("PNG: {e:?}"))?;
    let (w, h) = d
        .get_dimensions()
        .ok_or_else(|| anyhow!("PNG without size"))?;
    let want = fb.pixels();
    if (w, h) != (usize::from(fb.width()), usize::from(fb.height())) {
        return Ok(want.len());
    }
    let n = match d.get_colorspace() {
        Some(ColorSpace::RGB) => 3,
        Some(ColorSpace::RGBA) => 4,
        other => bail!("PNG colour space {other:?}"),
    };
    if px.len() != w * h * n {
        bail!("PNG of {} bytes for {w}×{h}×{n} (16-bit?)", px.len());
    }
    Ok(px
        .chunks_exact(n)
        .zip(want)
        .filter(|(c, &p)| {
            (u32::from(c[0]) << 16 | u32::from(c[1]) << 8 | u32::from(c[2])) != p & 0x00ff_ffff
        })
        .count())
}

/// Where vncdotool's `vncdo` is: `$VNCDO`, or the project's `.venv` (made by
/// `scripts/e2e-setup`).
fn vncdo() -> PathBuf {
    std::env::var_os("VNCDO").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/vncdo"),
        PathBuf::from,
    )
}

fn vncdotool_version() -> String {
    let python = vncdo().with_file_name("python");
    std::process::Command::new(python)
        .args([
            "-c",
            "import importlib.metadata as m; print('vncdotool', m.version('vncdotool'))",
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|e| format!("unavailable: {e}"))
}

/// `vncdo -s ADDR capture OUT`: a fresh RFB connection, one full update, a PNG; returns
/// how long the process took.
async fn vncdo_capture(console: SocketAddr, out: &Path) -> Result<Duration> {
    let t0 = Instant::now();
    let o = tokio::time::timeout(
        STEP,
        tokio::process::Command::new(vncdo())
            .arg("-s")
            .arg(format!("{}::{}", console.ip(), console.port()))
            .arg("capture")
            .arg(out)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| anyhow!("vncdotool: no capture in {STEP:?}"))?
    .with_context(|| format!("run {} (scripts/e2e-setup installs it)", vncdo().display()))?;
    let took = t0.elapsed();
    if !o.status.success() {
        bail!(
            "vncdotool failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok(took)
}

/// `vncdo --version` as often as there are captures: the process start and imports
/// that every capture pays (after one unmeasured).
async fn vncdo_starts(plan: &Plan) -> Result<Vec<u64>> {
    let mut ns = Vec::with_capacity(plan.actions_peer_shots);
    for i in 0..1 + plan.actions_peer_shots {
        let t0 = Instant::now();
        let o = tokio::time::timeout(
            STEP,
            tokio::process::Command::new(vncdo())
                .arg("--version")
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .map_err(|_| anyhow!("vncdo --version: no answer in {STEP:?}"))?
        .with_context(|| format!("run {} (scripts/e2e-setup installs it)", vncdo().display()))?;
        let took = t0.elapsed();
        if !o.status.success() {
            bail!("vncdo --version failed");
        }
        if i > 0 {
            ns.push(took.as_nanos() as u64);
        }
    }
    Ok(ns)
}

/// Whether `instance` has an engine that has not ended, per `/api/consoles`.
async fn engine_running(http_addr: SocketAddr, instance: &str) -> Result<bool> {
    let v: serde_json::Value =
        serde_json::from_str(&procs::http_get(http_addr, "/api/consoles").await?)?;
    Ok(v["consoles"].as_array().is_some_and(|c| {
        c.iter().any(|c| {
            c["instance"] == instance && c["engine"]["phase"].as_str().is_some_and(|p| p != "ended")
        })
    }))
}

/// Waits until `instance` has no running engine (its linger is 0: it leaves once the
/// screenshot is answered).
pub(super) async fn until_no_engine(http_addr: SocketAddr, instance: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while engine_running(http_addr, instance).await? {
        if Instant::now() > deadline {
            bail!("{instance}'s engine did not leave within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// The live and fresh-connect screenshot cases, run by run, against one still
/// 1920×1080 desktop console.
async fn screenshots(cx: Ctx<'_>, id: &dyn Fn(usize) -> String, res: &mut Results) -> Result<()> {
    let Ctx {
        plan,
        work,
        instances,
    } = cx;
    step("actions: starting a still 1920×1080 desktop console, a simulator and tcvnc");
    let screens = tokio::task::spawn_blocking(|| source::scrolled(SIZE.0, SIZE.1, 4, 1)).await??;
    let screen = Arc::new(screens[0].clone());
    let frames = Arc::new(tokio::task::spawn_blocking(move || Frames::new(screens)).await??);
    let src = Source::start(Scene::Frames {
        set: frames,
        fps: None,
    })?;
    let sim = Sim::start(work, "actions", instances, Some(src.addr)).await?;
    let live_addr = procs::free_addrs(1)?[0];
    let live_id = id(0);
    let fresh_ids: Vec<String> = (1..=FRESH_INSTANCES).map(id).collect();
    let mut targets = vec![console_target(&live_id, live_addr, None)];
    targets.extend(fresh_ids.iter().map(|i| Target {
        instance: i.clone(),
        listen: None,
        mode: procs::Mode::Console,
        // Gone as soon as the screenshot is answered, so the next one connects afresh.
        linger: Some(Duration::ZERO),
    }));
    let tcvnc = Tcvnc::start(work, "actions", &sim, &targets).await?;
    let shot_dir = work.join("actions-shots");
    std::fs::create_dir_all(&shot_dir)?;

    // The live engine: a viewer that got its first full update and stays.
    let _viewer = viewer::idle(live_addr)
        .await
        .context("the viewer that keeps the engine live")?;
    let live_path = format!("/vnc/{live_id}/screenshot.png");
    // For the direct handshakes beside the fresh connects: one URL, reused (the
    // simulator's `reuse_tokens` benchmark knob), spent on the live instance.
    let direct_url = sim.mint_url(&live_id).await?;
    let mut turn = 0usize;
    for run in 0..plan.actions_runs {
        let mut paths = [TCVNC, ENCODER, VNCDOTOOL];
        if run % 2 == 1 {
            paths.reverse();
        }
        for path in paths {
            step(&format!(
                "actions run {}/{}: screenshots, {path}",
                run + 1,
                plan.actions_runs
            ));
            let shot = match path {
                TCVNC => live_shots(plan, tcvnc.http, &live_path, &screen).await?,
                ENCODER => encoder_shots(plan, screen.clone()).await?,
                _ => {
                    let mut start = vncdo_starts(plan).await?;
                    let (p50, p99) = p50_p99(&mut start);
                    res.push(START, VERSION, "p50 ms", p50);
                    res.push(START, VERSION, "p99 ms", p99);
                    vncdo_shots(plan, src.addr, &shot_dir, &screen).await?
                }
            };
            shot.push(res, path);
        }
        step(&format!(
            "actions run {}/{}: screenshots with a fresh connect",
            run + 1,
            plan.actions_runs
        ));
        let log = work.join("tcvnc-actions.log");
        let daemon = Daemon {
            http: tcvnc.http,
            log: &log,
        };
        fresh_shots(
            plan,
            daemon,
            (&direct_url, &sim.ca_file),
            &fresh_ids,
            &mut turn,
            res,
        )
        .await?;
    }
    drop(tcvnc);
    drop(sim);
    drop(src);
    Ok(())
}

/// One series of screenshots.
struct Shots {
    ns: Vec<u64>,
    png_bytes: usize,
    differing: usize,
}

impl Shots {
    fn push(mut self, res: &mut Results, path: &str) {
        let n = self.ns.len();
        let (p50, p99) = p50_p99(&mut self.ns);
        res.push(LIVE, path, "p50 ms", p50);
        res.push(LIVE, path, "p99 ms", p99);
        res.push(LIVE, path, "PNG KiB", self.png_bytes as f64 / 1024.0);
        res.push(LIVE, path, "pixels ≠ console", self.differing as f64);
        res.push(LIVE, path, "shots", n as f64);
    }
}

/// GETs of a live engine's screenshot, after [`WARM`] unmeasured ones; the first is
/// checked against the console's screen, every one for a PNG and no URL spent.
async fn live_shots(
    plan: &Plan,
    http_addr: SocketAddr,
    path: &str,
    screen: &Framebuffer,
) -> Result<Shots> {
    let mut s = Shots {
        ns: Vec::with_capacity(plan.actions_live_shots),
        png_bytes: 0,
        differing: 0,
    };
    for i in 0..WARM + plan.actions_live_shots {
        let t0 = Instant::now();
        let a = http(http_addr, "GET", path, b"").await?;
        let took = t0.elapsed();
        if a.status != 200 || a.header("content-type") != Some("image/png") {
            bail!(
                "GET {path}: {} {}",
                a.status,
                String::from_utf8_lossy(&a.body)
            );
        }
        if a.header("x-tcvnc-url-spent").is_some() {
            bail!("GET {path}: a live engine's screenshot spent a URL");
        }
        if i == 0 {
            s.png_bytes = a.body.len();
            s.differing = differing(&a.body, screen)?;
        }
        if i >= WARM {
            s.ns.push(took.as_nanos() as u64);
        }
    }
    Ok(s)
}

/// tcvnc's PNG encoder (`console::png::encode`) on the same screen, in this process.
async fn encoder_shots(plan: &Plan, screen: Arc<Framebuffer>) -> Result<Shots> {
    let n = plan.actions_live_shots;
    tokio::task::spawn_blocking(move || -> Result<Shots> {
        let mut s = Shots {
            ns: Vec::with_capacity(n),
            png_bytes: 0,
            differing: 0,
        };
        for i in 0..WARM + n {
            let t0 = Instant::now();
            let png = tcvnc::console::png::encode(&screen)?;
            let took = t0.elapsed();
            if i == 0 {
                s.png_bytes = png.len();
                s.differing = differing(&png, &screen)?;
            }
            if i >= WARM {
                s.ns.push(took.as_nanos() as u64);
            }
        }
        Ok(s)
    })
    .await?
}

/// vncdotool's `capture` straight from the console (plain TCP, no gateway, no API):
/// a process, a fresh RFB connection and a PNG each time.
async fn vncdo_shots(
    plan: &Plan,
    console: SocketAddr,
    dir: &Path,
    screen: &Framebuffer,
) -> Result<Shots> {
    let mut s = Shots {
        ns: Vec::with_capacity(plan.actions_peer_shots),
        png_bytes: 0,
        differing: 0,
    };
    let out = dir.join("vncdotool.png");
    // One unmeasured: Python's first start reads its files from disk.
    for i in 0..1 + plan.actions_peer_shots {
        let _ = std::fs::remove_file(&out);
        let took = vncdo_capture(console, &out).await?;
        if i == 0 {
            let png = std::fs::read(&out)?;
            s.png_bytes = png.len();
            s.differing = differing(&png, screen)?;
        } else {
            s.ns.push(took.as_nanos() as u64);
        }
    }
    Ok(s)
}

/// The phases of `instance`'s last fresh-connect screenshot in tcvnc's JSON log, in
/// ns: from the URL minted to the engine connected (TLS, websocket, RFB), from there to
/// the engine's end (the first full screen arrived and was copied; with `linger` 0 the
/// engine leaves then), and from there to the answer's log line (the PNG encode).
fn phases(log: &str, instance: &str) -> Option<[u64; 3]> {
    const STEPS: [&str; 4] = [
        "console URL minted",
        "console engine connected",
        "console engine ended",
        "no live console: a console URL was spent for this request",
    ];
    let field = |v: &serde_json::Value, k: &str| v.get(k).or_else(|| v["fields"].get(k)).cloned();
    let mut at: [Option<std::time::SystemTime>; 4] = [None; 4];
    let mut last = None;
    for v in log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
    {
        if field(&v, "instance").is_none_or(|i| i != instance) {
            continue;
        }
        let Some(step) = field(&v, "message").and_then(|m| STEPS.iter().position(|s| m == *s))
        else {
            continue;
        };
        let t = v["timestamp"]
            .as_str()
            .and_then(|t| humantime::parse_rfc3339(t).ok());
        if step == 0 {
            at = [None; 4];
        }
        at[step] = t;
        if let [Some(a), Some(b), Some(c), Some(d)] = at {
            let ns = |x: std::time::SystemTime, y: std::time::SystemTime| {
                y.duration_since(x).map_or(0, |d| d.as_nanos() as u64)
            };
            last = Some([ns(a, b), ns(b, c), ns(c, d)]);
        }
    }
    last
}

/// Where tcvnc answers and logs.
#[derive(Clone, Copy)]
struct Daemon<'a> {
    http: SocketAddr,
    log: &'a Path,
}

/// Screenshots with no engine running, taking turns over the fresh-connect instances;
/// each one's API time is read from tcvnc's `/metrics` around it, its phases from
/// tcvnc's log; after each, the harness's own TLS + websocket + RFB handshake with the
/// gateway at `direct` (URL, CA file).
async fn fresh_shots(
    plan: &Plan,
    Daemon {
        http: http_addr,
        log,
    }: Daemon<'_>,
    (url, ca): (&str, &Path),
    ids: &[String],
    turn: &mut usize,
    res: &mut Results,
) -> Result<()> {
    let n = plan.actions_fresh_shots;
    let (mut total, mut api, mut beyond) = (Vec::new(), Vec::new(), Vec::new());
    let mut steps: [Vec<u64>; 3] = Default::default();
    let mut direct = Vec::with_capacity(n);
    let mut spent = 0usize;
    for _ in 0..n {
        let id = &ids[*turn % ids.len()];
        *turn += 1;
        until_no_engine(http_addr, id).await?;
        let before = api_seconds(http_addr).await?;
        let path = format!("/vnc/{id}/screenshot.png");
        let t0 = Instant::now();
        let a = http(http_addr, "GET", &path, b"").await?;
        let took = t0.elapsed();
        let after = api_seconds(http_addr).await?;
        if a.status != 200 || a.header("content-type") != Some("image/png") {
            bail!(
                "GET {path}: {} {}",
                a.status,
                String::from_utf8_lossy(&a.body)
            );
        }
        if a.header("x-tcvnc-url-spent") == Some("1") {
            spent += 1;
        }
        let calls = after.1 - before.1;
        if calls != 1.0 {
            bail!("GET {path}: {calls} API calls counted, not 1");
        }
        let api_ns = ((after.0 - before.0) * 1e9) as u64;
        let ns = took.as_nanos() as u64;
        total.push(ns);
        api.push(api_ns);
        beyond.push(ns.saturating_sub(api_ns));
        let text = std::fs::read_to_string(log)?;
        let p = phases(&text, id)
            .ok_or_else(|| anyhow!("{}: no fresh-connect lines for {id}", log.display()))?;
        for (v, ns) in steps.iter_mut().zip(p) {
            v.push(ns);
        }
        let d = crate::client::direct(url, ca)
            .await
            .context("direct to the gateway")?;
        direct.push(d.rfb.server_init.as_nanos() as u64);
    }
    let (t50, t99) = p50_p99(&mut total);
    let (a50, a99) = p50_p99(&mut api);
    let (b50, b99) = p50_p99(&mut beyond);
    res.push(FRESH, TCVNC, "p50 ms", t50);
    res.push(FRESH, TCVNC, "p99 ms", t99);
    res.push(FRESH, TCVNC, "API call p50 ms", a50);
    res.push(FRESH, TCVNC, "API call p99 ms", a99);
    res.push(FRESH, TCVNC, "beyond the API call p50 ms", b50);
    res.push(FRESH, TCVNC, "beyond the API call p99 ms", b99);
    for (v, name) in steps.iter_mut().zip([
        "TLS+websocket+RFB p50 ms",
        "first full screen p50 ms",
        "PNG p50 ms",
    ]) {
        res.push(FRESH, TCVNC, name, p50_p99(v).0);
        if name.starts_with("TLS") {
            let d = p50_p99(&mut direct).0;
            res.push(FRESH, TCVNC, "direct TLS+websocket+RFB p50 ms", d);
        }
    }
    res.push(
        FRESH,
        TCVNC,
        "URLs spent per shot",
        spent as f64 / n.max(1) as f64,
    );
    res.push(FRESH, TCVNC, "shots", n as f64);
    Ok(())
}

/// `n` characters of text: letters of both cases, digits, every ASCII symbol, spaces,
/// and a newline now and then (deterministic).
pub fn sample_text(n: usize) -> String {
    const SYMBOLS: &[u8] = b"`~!@#$%^&*()-_=+[{]}\\|;:'\",<.>/?";
    let mut seed = 0x2545_f491u32;
    let mut out = String::with_capacity(n);
    for i in 0..n {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let c = if i % 61 == 60 {
            '\n'
        } else {
            match seed % 8 {
                0 | 1 => char::from(b'a' + (seed >> 8) as u8 % 26),
                2 => char::from(b'A' + (seed >> 8) as u8 % 26),
                3 => char::from(b'0' + (seed >> 8) as u8 % 10),
                4 | 5 => char::from(SYMBOLS[(seed >> 8) as usize % SYMBOLS.len()]),
                _ => ' ',
            }
        };
        out.push(c);
    }
    out
}

/// The key events a US-layout console should get for `text` (written here from the
/// keysym tables, not with tcvnc's `keys` module): the character's keysym (Return for
/// `\n`, Tab for `\t`) pressed and released, inside Shift_L for those typed with Shift.
pub fn expected_keys(text: &str) -> Vec<(bool, u32)> {
    const SHIFT_L: u32 = 0xffe1;
    const SHIFTED: &str = "~!@#$%^&*()_+{}|:\"<>?";
    let mut out = Vec::new();
    for c in text.chars() {
        let k = match c {
            '\n' => 0xff0d,
            '\t' => 0xff09,
            c => u32::from(c),
        };
        let shift = c.is_ascii_uppercase() || SHIFTED.contains(c);
        if shift {
            out.push((true, SHIFT_L));
        }
        out.push((true, k));
        out.push((false, k));
        if shift {
            out.push((false, SHIFT_L));
        }
    }
    out
}

/// How a log of key events compares with what was expected: expected events found in
/// order (a greedy in-order match), the rest of each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compared {
    pub matched: usize,
    /// Expected but not found in order.
    pub lost: usize,
    /// Received but not matched (unexpected, or out of order).
    pub unexpected: usize,
}

pub fn compare(expected: &[(bool, u32)], got: &[(bool, u32)]) -> Compared {
    let mut i = 0;
    for g in got {
        if i < expected.len() && *g == expected[i] {
            i += 1;
        }
    }
    Compared {
        matched: i,
        lost: expected.len() - i,
        unexpected: got.len() - i,
    }
}

/// The key events in the simulator's input log of `instance`, once `want` inputs were
/// logged (or nothing more came for 2 s).
async fn logged_keys(sim: &Sim, instance: &str, want: u64) -> Result<Vec<(bool, u32)>> {
    let api: SocketAddr = sim
        .api
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .context("the simulator's API address")?;
    let mut last = (0u64, Instant::now());
    loop {
        let a = http(api, "GET", &format!("/_sim/input?instance={instance}"), b"").await?;
        if a.status != 200 {
            bail!("/_sim/input: {}", a.status);
        }
        let v: serde_json::Value = serde_json::from_slice(&a.body)?;
        let total = v["total"].as_u64().unwrap_or(0);
        if total >= want || last.1.elapsed() > Duration::from_secs(2) {
            if total > tcvnc::sim::INPUT_LOG_MAX as u64 {
                bail!("{total} inputs: more than the simulator keeps");
            }
            return Ok(v["inputs"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|i| i["kind"] == "key")
                        .filter_map(|i| {
                            Some((
                                i["down"].as_bool()?,
                                u32::try_from(i["keysym"].as_u64()?).ok()?,
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default());
        }
        if total != last.0 {
            last = (total, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `input_dropped` of `instance`'s engine, per `/api/consoles`.
async fn input_dropped(http_addr: SocketAddr, instance: &str) -> Result<f64> {
    let v: serde_json::Value =
        serde_json::from_str(&procs::http_get(http_addr, "/api/consoles").await?)?;
    v["consoles"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["instance"] == instance))
        .and_then(|c| c["engine"]["input_dropped"].as_f64())
        .ok_or_else(|| anyhow!("no engine for {instance} in /api/consoles"))
}

/// Typing at each interval: its own tcvnc (`type_interval`) and instance, a viewer
/// keeping the engine live, one POST of the sample text, then the simulator's log.
async fn typing(cx: Ctx<'_>, id: &dyn Fn(usize) -> String, res: &mut Results) -> Result<()> {
    let Ctx {
        plan,
        work,
        instances,
    } = cx;
    step("actions: typing; starting a simulator (test-pattern consoles)");
    let sim = Sim::start(work, "typing", instances, None).await?;
    let text = sample_text(plan.actions_type_chars);
    let expected = expected_keys(&text);
    let chars = text.chars().count();
    for (k, &interval) in plan.actions_type_intervals_ms.iter().enumerate() {
        let path = typing_path(interval);
        step(&format!("actions: typing {chars} characters at {path}"));
        let instance = id(1 + FRESH_INSTANCES + k);
        let addr = procs::free_addrs(1)?[0];
        let tcvnc = Tcvnc::start_typing(
            work,
            &format!("typing-{interval}"),
            &sim,
            &[console_target(&instance, addr, None)],
            Duration::from_millis(interval),
        )
        .await?;
        let _viewer = viewer::idle(addr)
            .await
            .context("the viewer that keeps the engine live")?;
        let t0 = Instant::now();
        let a = http(
            tcvnc.http,
            "POST",
            &format!("/vnc/{instance}/type"),
            text.as_bytes(),
        )
        .await?;
        let secs = t0.elapsed().as_secs_f64();
        if a.status != 200 {
            bail!(
                "POST /type at {path}: {} {}",
                a.status,
                String::from_utf8_lossy(&a.body)
            );
        }
        let answer: serde_json::Value = serde_json::from_slice(&a.body)?;
        let sent = answer["key_events"].as_f64().unwrap_or(f64::NAN);
        let got = logged_keys(&sim, &instance, expected.len() as u64).await?;
        let c = compare(&expected, &got);
        let dropped = input_dropped(tcvnc.http, &instance).await?;
        res.push(TYPING, &path, "chars/s", chars as f64 / secs);
        res.push(TYPING, &path, "key events/s", expected.len() as f64 / secs);
        res.push(
            TYPING,
            &path,
            "ms per key event",
            secs * 1e3 / expected.len().max(1) as f64,
        );
        res.push(TYPING, &path, "key events sent", sent);
        res.push(TYPING, &path, "key events logged", got.len() as f64);
        res.push(TYPING, &path, "lost", c.lost as f64);
        res.push(
            TYPING,
            &path,
            "unexpected or out of order",
            c.unexpected as f64,
        );
        res.push(TYPING, &path, "engine input dropped", dropped);
        drop(tcvnc);
    }
    drop(sim);
    Ok(())
}
