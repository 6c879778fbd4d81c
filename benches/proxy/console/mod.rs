//! The console section (`--only console`): tcvnc's console mode (an RFB client of the
//! console and a server to each viewer) measured against a synthetic console in this
//! process ([`source`]), side by side with bridge mode, a direct connection, and
//! `x11vnc -reflect` (a real VNC reflector) where the question is fan-out and memory:
//!
//! - added latency from a console update to the viewer's receipt (1280×800, a moving
//!   square, Raw): direct, bridge, console;
//! - CPU per full-screen update at 1920×1080, in this process ([`cpu`]);
//! - fan-out: N viewers of one console changing whole 10 times a second;
//! - memory: the console's cost and each idle viewer's;
//! - resume: from an upstream drop to the viewer's first fresh frame.
//!
//! [`actions`] is a section of its own (`--only actions`): screenshots and typing
//! through tcvnc's HTTP actions; so is [`recording`] (`--only recording`): what
//! `[recording]` writes and costs, and `tcvnc play` of a long recording ([`playback`]).

pub mod actions;
mod cpu;
mod loads;
pub mod playback;
pub mod recording;
pub mod source;
mod viewer;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use tokio::time::Instant;

use crate::procs::{self, Mode, Sim, Target, Tcvnc};
use crate::report::{quantile, spread, Results};
use crate::{step, Plan};
use source::{Frames, Moving, Scene, Source};

/// The latency case's name.
pub const LATENCY: &str = "console latency 1280×800";
/// The resume case's name.
pub const RESUME: &str = "console resume";
/// The memory case's name.
pub const MEMORY: &str = "console memory 1920×1080";

/// The fan-out case for `n` viewers.
pub fn fanout_case(n: usize) -> String {
    format!("console fan-out {n} viewers")
}

/// The latency screen.
const LAT_SIZE: (u16, u16) = (1280, 800);
/// The fan-out and memory screen, its frames and how fast it changes.
const FAN_SIZE: (u16, u16) = (1920, 1080);
const FAN_FRAMES: usize = 10;
const FAN_FPS: u32 = 10;
/// Rows the desktop scrolls a frame.
const SCROLL: u16 = 4;
/// Squares the latency viewer receives before it starts counting.
const WARM: usize = 30;
/// How long the latency and fan-out engines outlive their last viewer, so one path's
/// engine no longer pulls from the console while the next path is measured.
const LINGER: Duration = Duration::from_secs(1);
/// The simulated gateway cuts every console connection this long after it opened.
const DROP_AFTER: &str = "2s";

/// Instances the console section uses, from `first`.
pub const INSTANCES: usize = 5;

/// What every case is given: the sizes, the work folder, the simulators' instances.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    plan: &'a Plan,
    work: &'a Path,
    instances: &'a Path,
}

/// Runs the console cases.
pub async fn cases(
    plan: &Plan,
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
    let id = |i: usize| procs::instance_id(first + i);
    step("console: CPU per full-screen update (in process)");
    let cpu_frames = plan.console_cpu_frames;
    let (screens, cpu) = tokio::task::spawn_blocking(move || -> Result<_> {
        let screens = source::scrolled(FAN_SIZE.0, FAN_SIZE.1, SCROLL, FAN_FRAMES)?;
        let mut r = Results::default();
        cpu::measure(&screens, cpu_frames, &mut r)?;
        Ok((screens, r))
    })
    .await??;
    res.absorb(cpu);
    let frames = Arc::new(tokio::task::spawn_blocking(move || Frames::new(screens)).await??);

    latency_and_resume(cx, [id(0), id(1), id(2)], res).await?;
    fanout(cx, &id(3), frames.clone(), res).await?;
    memory(cx, &id(4), frames, res).await?;
    res.meta.insert("x11vnc".into(), procs::x11vnc_version());
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A console-mode target on `listen`.
fn console_target(instance: &str, listen: SocketAddr, linger: Option<Duration>) -> Target {
    Target {
        instance: instance.to_owned(),
        listen: Some(listen),
        mode: Mode::Console,
        linger,
    }
}

/// Latency through each path, run by run; then resume after drops on a console target
/// of its own.
async fn latency_and_resume(cx: Ctx<'_>, ids: [String; 3], res: &mut Results) -> Result<()> {
    let Ctx {
        plan,
        work,
        instances,
    } = cx;
    step("console: starting the moving-square console, a simulator and tcvnc");
    let moving = Arc::new(Moving::new(LAT_SIZE.0, LAT_SIZE.1));
    let src = Source::start(Scene::Moving(moving.clone()))?;
    let sim = Sim::start(work, "console-lat", instances, Some(src.addr)).await?;
    let addrs = procs::free_addrs(3)?;
    let [bridge_id, console_id, resume_id] = ids;
    let targets = [
        Target {
            instance: bridge_id,
            listen: Some(addrs[0]),
            mode: Mode::Bridge,
            linger: None,
        },
        console_target(&console_id, addrs[1], Some(LINGER)),
        console_target(&resume_id, addrs[2], Some(LINGER)),
    ];
    let tcvnc = Tcvnc::start(work, "console-lat", &sim, &targets).await?;
    for run in 0..plan.console_runs {
        let mut paths = [
            ("direct", src.addr),
            ("bridge", addrs[0]),
            ("console", addrs[1]),
        ];
        if run % 2 == 1 {
            paths.reverse();
        }
        for (path, addr) in paths {
            step(&format!(
                "console run {}/{}: latency through {path}",
                run + 1,
                plan.console_runs
            ));
            let want = WARM + plan.console_latency_frames;
            let got = viewer::squares(addr, |g| g.len() >= want)
                .await
                .with_context(|| format!("latency viewer through {path}"))?;
            let mut ns: Vec<u64> = newest_first_seen(&got)
                .into_iter()
                .skip(WARM)
                .filter_map(|(seq, at)| {
                    let sent = moving.sent(seq)?;
                    Some(at.saturating_duration_since(sent.at).as_nanos() as u64)
                })
                .collect();
            ns.sort_unstable();
            res.push(LATENCY, path, "p50 ms", quantile(&ns, 0.5) as f64 / 1e6);
            res.push(LATENCY, path, "p99 ms", quantile(&ns, 0.99) as f64 / 1e6);
            res.push(LATENCY, path, "frames", ns.len() as f64);
            if path == "console" {
                // Its engine lingers, still pulling squares: let it go first.
                tokio::time::sleep(LINGER + Duration::from_millis(500)).await;
            }
        }
    }

    step(&format!(
        "console: resume after {} drops (the gateway cuts each connection after {DROP_AFTER})",
        plan.console_drops
    ));
    sim.faults(serde_json::json!({ "drop_after": DROP_AFTER }))
        .await?;
    let api_before = api_seconds(tcvnc.http).await?;
    let drops = plan.console_drops;
    let got = viewer::squares(addrs[2], |g| {
        let mut conns: Vec<u64> = g
            .iter()
            .filter_map(|(seq, _)| moving.sent(*seq).map(|s| s.conn))
            .collect();
        conns.dedup();
        conns.len() > drops
    })
    .await
    .context("viewer across drops")?;
    sim.faults(serde_json::json!({})).await?;
    let api_after = api_seconds(tcvnc.http).await?;
    let calls = api_after.1 - api_before.1;
    let api_ms = if calls > 0.0 {
        (api_after.0 - api_before.0) / calls * 1e3
    } else {
        f64::NAN
    };
    let log = std::fs::read_to_string(work.join("tcvnc-console-lat.log")).unwrap_or_default();
    let engine = resumed_ms(&log, &targets[2].instance);
    let seen = newest_first_seen(&got);
    let mut gaps = Vec::new();
    for pair in seen.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let conn = |seq: u64| moving.sent(seq).map(|s| s.conn);
        if conn(a.0) != conn(b.0) {
            gaps.push(ms(b.1.saturating_duration_since(a.1)));
        }
    }
    if gaps.is_empty() {
        return Err(anyhow!("no drop was seen by the viewer"));
    }
    for (i, gap) in gaps.iter().enumerate() {
        res.push(RESUME, "console", "gap ms", *gap);
        res.push(RESUME, "console", "API call ms", api_ms);
        res.push(RESUME, "console", "gap − API call ms", gap - api_ms);
        res.push(
            RESUME,
            "console",
            "engine without console ms",
            engine.get(i).copied().unwrap_or(f64::NAN),
        );
    }
    res.push(RESUME, "console", "drops", gaps.len() as f64);
    drop(tcvnc);
    drop(sim);
    drop(src);
    Ok(())
}

/// Each square the first time it is the newest seen (a later update that shows no
/// newer one is not a new arrival).
fn newest_first_seen(got: &[(u64, Instant)]) -> Vec<(u64, Instant)> {
    let mut out: Vec<(u64, Instant)> = Vec::with_capacity(got.len());
    for &(seq, at) in got {
        if out.last().is_none_or(|(last, _)| seq > *last) {
            out.push((seq, at));
        }
    }
    out
}

/// tcvnc's API time for `DescribeInstanceVncUrl` so far, from `/metrics`: seconds and
/// calls.
async fn api_seconds(http: SocketAddr) -> Result<(f64, f64)> {
    let text = procs::http_get(http, "/metrics").await?;
    let value = |suffix: &str| -> f64 {
        text.lines()
            .filter(|l| {
                l.starts_with(&format!("tcvnc_api_request_duration_seconds_{suffix}"))
                    && l.contains("DescribeInstanceVncUrl")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    Ok((value("sum"), value("count")))
}

/// `without_console_ms` of each "console resumed" line of `instance` in a JSON log.
fn resumed_ms(log: &str, instance: &str) -> Vec<f64> {
    // A field is at the top of the line or under "fields", depending on the format.
    let field = |v: &serde_json::Value, k: &str| v.get(k).or_else(|| v["fields"].get(k)).cloned();
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            field(v, "message").is_some_and(|m| m == "console resumed")
                && field(v, "instance").is_some_and(|i| i == instance)
        })
        .filter_map(|v| field(&v, "without_console_ms")?.as_f64())
        .collect()
}

/// A Frames console (`fps` frames a second, or still), a simulator whose gateway leads
/// to it, and tcvnc with one console-mode target `id` on a TCP listener (returned last).
async fn frames_console(
    cx: Ctx<'_>,
    tag: &str,
    (set, fps): (Arc<Frames>, Option<u32>),
    id: &str,
    linger: Option<Duration>,
) -> Result<(Source, Sim, Tcvnc, SocketAddr)> {
    let src = Source::start(Scene::Frames { set, fps })?;
    let sim = Sim::start(cx.work, tag, cx.instances, Some(src.addr)).await?;
    let addr = procs::free_addrs(1)?[0];
    let tcvnc = Tcvnc::start(cx.work, tag, &sim, &[console_target(id, addr, linger)]).await?;
    Ok((src, sim, tcvnc, addr))
}

/// N viewers of one console that changes whole 10 times a second, through tcvnc's
/// console mode and through `x11vnc -reflect`, for each N.
async fn fanout(cx: Ctx<'_>, id: &str, frames: Arc<Frames>, res: &mut Results) -> Result<()> {
    step("console: starting the scrolling console, a simulator and tcvnc");
    let (plan, work) = (cx.plan, cx.work);
    let (src, sim, tcvnc, addr) =
        frames_console(cx, "console-fan", (frames, Some(FAN_FPS)), id, Some(LINGER)).await?;
    let runs = plan.console_runs.min(2);
    for run in 0..runs {
        for &n in &plan.console_fanout {
            step(&format!(
                "console run {}/{runs}: {n} viewers through tcvnc",
                run + 1
            ));
            let r = fan_measure(plan, n, addr, tcvnc.proc.pid()).await?;
            r.push(res, n, "tcvnc");
            if let Ok((hits, misses)) = shared_encodes(tcvnc.http, id).await {
                step(&format!(
                    "console: {n} viewers: tcvnc's shared encodes {hits} hits, {misses} misses"
                ));
            }
            // The engine lingers, still pulling frames: let it go first.
            tokio::time::sleep(LINGER + Duration::from_millis(500)).await;

            step(&format!(
                "console run {}/{runs}: {n} viewers through x11vnc -reflect",
                run + 1
            ));
            // Its own process per measurement: an idle reflector still pulls frames.
            let (x11vnc, xaddr) = procs::start_x11vnc(work, "fan", src.addr).await?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let r = fan_measure(plan, n, xaddr, x11vnc.pid()).await?;
            r.push(res, n, "x11vnc");
            drop(x11vnc);
        }
    }
    drop(tcvnc);
    drop(sim);
    drop(src);
    Ok(())
}

/// The engine's shared-encode cache counts from `/api/consoles`: hits and misses.
async fn shared_encodes(http: SocketAddr, instance: &str) -> Result<(u64, u64)> {
    let v: serde_json::Value =
        serde_json::from_str(&procs::http_get(http, "/api/consoles").await?)?;
    let engine = v["consoles"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["instance"] == instance))
        .map(|c| &c["engine"]["shared_encodes"])
        .ok_or_else(|| anyhow!("no engine for {instance} in /api/consoles"))?;
    let n = |k: &str| engine[k].as_u64().unwrap_or(0);
    Ok((n("hits"), n("misses")))
}

/// What one fan-out measurement saw.
struct Fan {
    /// Updates a second of each viewer that finished.
    rates: Vec<f64>,
    /// Screens' worth of pixels a second, per viewer.
    screens: Vec<f64>,
    failed: usize,
    cores: f64,
}

impl Fan {
    fn push(&self, res: &mut Results, n: usize, path: &str) {
        let case = fanout_case(n);
        let s = spread(&self.rates);
        res.push(&case, path, "viewers", self.rates.len() as f64);
        res.push(&case, path, "failed", self.failed as f64);
        res.push(&case, path, "min updates/s", s.min);
        res.push(&case, path, "median updates/s", s.median);
        res.push(&case, path, "max updates/s", s.max);
        res.push(
            &case,
            path,
            "median screens/s",
            spread(&self.screens).median,
        );
        res.push(&case, path, "proxy cores", self.cores);
    }
}

async fn fan_measure(plan: &Plan, n: usize, addr: SocketAddr, pid: u32) -> Result<Fan> {
    let warm = Duration::from_secs_f64(plan.console_warm_s);
    let window = Duration::from_secs_f64(plan.console_window_s);
    let from = Instant::now() + warm;
    let to = from + window;
    let mut viewers = tokio::task::JoinSet::new();
    for _ in 0..n {
        viewers.spawn(viewer::count(addr, from, to));
    }
    tokio::time::sleep_until(from).await;
    let cpu0 = procs::cpu_seconds(pid)?;
    tokio::time::sleep_until(to).await;
    let cpu1 = procs::cpu_seconds(pid)?;
    let screen = f64::from(FAN_SIZE.0) * f64::from(FAN_SIZE.1);
    let secs = window.as_secs_f64();
    let mut fan = Fan {
        rates: Vec::new(),
        screens: Vec::new(),
        failed: 0,
        cores: (cpu1 - cpu0) / secs,
    };
    let mut first_error = None;
    while let Some(r) = viewers.join_next().await {
        match r.map_err(anyhow::Error::from).and_then(|r| r) {
            Ok(c) => {
                fan.rates.push(c.updates as f64 / secs);
                fan.screens.push(c.area as f64 / screen / secs);
            }
            Err(e) => {
                fan.failed += 1;
                first_error.get_or_insert(format!("{e:#}"));
            }
        }
    }
    if let Some(e) = first_error {
        eprintln!(
            "bench: {} of {n} fan-out viewers failed; first: {e}",
            fan.failed
        );
    }
    Ok(fan)
}

/// RSS of tcvnc and of x11vnc: before any viewer, with one viewer after its first full
/// update, and after more viewers that each got one and went idle.
async fn memory(cx: Ctx<'_>, id: &str, frames: Arc<Frames>, res: &mut Results) -> Result<()> {
    step("console: memory (a still 1920×1080 console)");
    let (plan, work) = (cx.plan, cx.work);
    let (src, sim, tcvnc, addr) =
        frames_console(cx, "console-mem", (frames, None), id, None).await?;
    rss_steps(plan, "tcvnc", tcvnc.proc.pid(), addr, res).await?;
    drop(tcvnc);
    let (x11vnc, xaddr) = procs::start_x11vnc(work, "mem", src.addr).await?;
    // x11vnc connects to the console and takes its screen before any viewer comes.
    tokio::time::sleep(Duration::from_secs(1)).await;
    rss_steps(plan, "x11vnc", x11vnc.pid(), xaddr, res).await?;
    drop(x11vnc);
    drop(sim);
    drop(src);
    Ok(())
}

async fn rss_steps(
    plan: &Plan,
    path: &str,
    pid: u32,
    addr: SocketAddr,
    res: &mut Results,
) -> Result<()> {
    let settle = Duration::from_millis(500);
    tokio::time::sleep(settle).await;
    let base = procs::rss_kib(pid)?;
    let first = viewer::idle(addr)
        .await
        .with_context(|| format!("first viewer through {path}"))?;
    tokio::time::sleep(settle).await;
    let one = procs::rss_kib(pid)?;
    let n = plan.console_idle_viewers;
    step(&format!("console: {n} idle viewers through {path}"));
    let mut held = Vec::with_capacity(n);
    for i in 0..n {
        held.push(
            viewer::idle(addr)
                .await
                .with_context(|| format!("idle viewer {i} through {path}"))?,
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all = procs::rss_kib(pid)?;
    res.push(MEMORY, path, "console KiB", one as f64 - base as f64);
    res.push(
        MEMORY,
        path,
        "KiB per idle viewer",
        (all as f64 - one as f64) / n.max(1) as f64,
    );
    res.push(MEMORY, path, "idle viewers", held.len() as f64);
    drop((first, held));
    Ok(())
}
