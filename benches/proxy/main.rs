//! The benchmark suite: tcvnc side by side with websocat (the tool a user would otherwise
//! pick) and with the physical limit (a plain rustls TLS pipe, a raw TCP pipe), and its
//! console mode with bridge mode, a direct connection and `x11vnc -reflect`
//! (`console/`), its HTTP actions (screenshots, typing; `console/actions.rs`) and its
//! recordings (`console/recording.rs`, `console/playback.rs`), all on loopback in one
//! run. Writes `results.json`, `REPORT.md` and `chart.svg`.
//!
//! Run it with `scripts/bench` (installs websocat, raises the open-file limit), or
//! `cargo bench --bench proxy -- [--quick] [--out DIR] [--runs N]`.

mod client;
mod console;
mod procs;
mod report;
#[path = "../../tests/rfbref/mod.rs"]
mod rfbref;
mod roles;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use tokio::net::TcpListener;

use procs::{instance_id, Mode, Sim, Target, Tcvnc};
use report::Results;

/// Sizes and counts of one suite.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    /// `full` or `quick`.
    pub mode: &'static str,
    /// Runs of each data case (and of the small idle case, up to 3).
    pub runs: usize,
    /// Bytes moved per bulk transfer.
    pub bulk_bytes: u64,
    /// Measured round trips per size and run.
    pub rtt_iters: usize,
    /// Unmeasured round trips first.
    pub rtt_warm: usize,
    /// Session set-ups timed.
    pub setup_iters: usize,
    /// Idle sessions, small case.
    pub idle_small: usize,
    /// Idle sessions, large case (capped by the open-file limit).
    pub idle_large: usize,
    /// Bulk shapes to run (`download-8`, `upload-64`, `rfb`…); empty: all.
    pub shapes: Vec<String>,
    /// Console section: runs of the latency case (the fan-out case: up to 2).
    pub console_runs: usize,
    /// Console latency: squares timed per path and run (after 30 unmeasured).
    pub console_latency_frames: usize,
    /// Console resume: upstream drops.
    pub console_drops: usize,
    /// Console fan-out: viewer counts.
    pub console_fanout: Vec<usize>,
    /// Console fan-out: seconds from the viewers' start to the counting.
    pub console_warm_s: f64,
    /// Console fan-out: seconds counted.
    pub console_window_s: f64,
    /// Console memory: idle viewers after the first.
    pub console_idle_viewers: usize,
    /// Console CPU: full-screen updates timed per encoding.
    pub console_cpu_frames: usize,
    /// Actions: runs of the screenshot cases.
    pub actions_runs: usize,
    /// Actions: live-engine screenshots timed per run (and as many encodes alone).
    pub actions_live_shots: usize,
    /// Actions: fresh-connect screenshots timed per run (one URL each).
    pub actions_fresh_shots: usize,
    /// Actions: vncdotool captures timed per run.
    pub actions_peer_shots: usize,
    /// Actions: characters typed at each interval.
    pub actions_type_chars: usize,
    /// Actions: the `type_interval`s typed at, in ms.
    pub actions_type_intervals_ms: Vec<u64>,
    /// Recording: runs of each load with recording off and on.
    pub rec_runs: usize,
    /// Recording: runs of each load through `websockify --record` (the first ones).
    pub rec_peer_runs: usize,
    /// Recording: seconds from a viewer's start to the counting.
    pub rec_warm_s: f64,
    /// Recording: seconds counted per run.
    pub rec_window_s: f64,
    /// Recording: minutes of the recording `tcvnc play` is timed on.
    pub rec_play_minutes: u64,
    /// Recording: runs of each `tcvnc play --from`.
    pub rec_play_runs: usize,
}

impl Plan {
    /// Bytes moved per bulk transfer at gateway frame size `frame`: a quarter at 1 KiB,
    /// where every path is slowest, so that the suite stays within its time.
    pub fn bytes_at(&self, frame: usize) -> u64 {
        if frame < 8 * 1024 {
            self.bulk_bytes / 4
        } else {
            self.bulk_bytes
        }
    }

    fn full() -> Plan {
        Plan {
            mode: "full",
            runs: 5,
            bulk_bytes: 256 << 20,
            rtt_iters: 20_000,
            rtt_warm: 500,
            setup_iters: 200,
            idle_small: 1_000,
            idle_large: 10_000,
            shapes: Vec::new(),
            console_runs: 3,
            console_latency_frames: 400,
            console_drops: 8,
            console_fanout: vec![1, 10, 50],
            console_warm_s: 3.0,
            console_window_s: 8.0,
            console_idle_viewers: 100,
            console_cpu_frames: 20,
            actions_runs: 3,
            actions_live_shots: 100,
            actions_fresh_shots: 50,
            actions_peer_shots: 10,
            actions_type_chars: 2000,
            actions_type_intervals_ms: vec![5, 1, 0],
            rec_runs: 3,
            rec_peer_runs: 1,
            rec_warm_s: 2.0,
            rec_window_s: 15.0,
            rec_play_minutes: 60,
            rec_play_runs: 2,
        }
    }

    fn quick() -> Plan {
        Plan {
            mode: "quick",
            runs: 2,
            bulk_bytes: 16 << 20,
            rtt_iters: 2_000,
            rtt_warm: 100,
            setup_iters: 20,
            idle_small: 100,
            idle_large: 300,
            shapes: Vec::new(),
            console_runs: 1,
            console_latency_frames: 150,
            console_drops: 3,
            console_fanout: vec![1, 10],
            console_warm_s: 2.0,
            console_window_s: 4.0,
            console_idle_viewers: 20,
            console_cpu_frames: 5,
            actions_runs: 1,
            actions_live_shots: 20,
            actions_fresh_shots: 6,
            actions_peer_shots: 2,
            actions_type_chars: 200,
            actions_type_intervals_ms: vec![5, 0],
            rec_runs: 1,
            rec_peer_runs: 1,
            rec_warm_s: 1.5,
            rec_window_s: 3.0,
            rec_play_minutes: 3,
            rec_play_runs: 1,
        }
    }
}

/// The first instances serve the data cases, the next ones the setup case, then the
/// console section's, the actions section's, the recording section's; the rest are for
/// idle sessions.
const DATA_TARGETS: usize = 16;
const SETUP_TARGETS: usize = 64;
const FIRST_CONSOLE: usize = DATA_TARGETS + SETUP_TARGETS + 2;
const FIRST_ACTIONS: usize = FIRST_CONSOLE + console::INSTANCES;
const FIRST_RECORDING: usize = FIRST_ACTIONS + console::actions::INSTANCES;
const FIRST_IDLE: usize = FIRST_RECORDING + console::recording::INSTANCES;

/// One path through which the client reaches the backend.
struct DataPath {
    name: &'static str,
    addrs: Vec<SocketAddr>,
    proxy_pid: u32,
    gateway_pid: u32,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.first().map(String::as_str) == Some("role") {
        return roles::run(&args[1..]);
    }
    let mut plan = Plan::full();
    let mut out: Option<PathBuf> = None;
    let mut only: Vec<String> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--quick" => plan = Plan { runs: plan.runs.min(Plan::quick().runs), ..Plan::quick() },
            "--out" => {
                i += 1;
                out = Some(PathBuf::from(args.get(i).ok_or_else(|| anyhow!("--out DIR"))?));
            }
            "--only" => {
                i += 1;
                let list = args
                    .get(i)
                    .ok_or_else(|| {
                        anyhow!("--only data|bulk|rtt,setup,idle,console,actions,recording")
                    })?;
                only = list.split(',').map(str::to_owned).collect();
            }
            "--shapes" => {
                i += 1;
                let list = args
                    .get(i)
                    .ok_or_else(|| anyhow!("--shapes download-8,upload-64,rfb"))?;
                plan.shapes = list.split(',').map(str::to_owned).collect();
            }
            "--runs" => {
                i += 1;
                plan.runs = args.get(i).ok_or_else(|| anyhow!("--runs N"))?.parse()?;
            }
            other => bail!(
                "unknown argument {other:?}; use --quick, --out DIR, --runs N, --only data,setup,idle,console,actions,recording, --shapes download-8,upload-64,rfb"
            ),
        }
        i += 1;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = out.unwrap_or_else(|| {
        if plan.mode == "quick" {
            root.join("target/bench-quick")
        } else {
            root.join("bench")
        }
    });
    std::fs::create_dir_all(&out)?;
    let rt = tokio::runtime::Runtime::new()?;
    let started = Instant::now();
    let results = rt.block_on(suite(&plan, root, &only))?;
    let elapsed = started.elapsed();
    report::write(&out, &plan, &results, elapsed)?;
    eprintln!(
        "bench: done in {:.0} s; wrote {}, {} and {}",
        elapsed.as_secs_f64(),
        out.join("results.json").display(),
        out.join("REPORT.md").display(),
        out.join("chart.svg").display()
    );
    Ok(())
}

fn step(what: &str) {
    eprintln!("bench: {what}");
}

async fn suite(plan: &Plan, root: &Path, only: &[String]) -> Result<Results> {
    let want = |c: &str| only.is_empty() || only.iter().any(|o| o == c);
    let work = root.join("target/bench-work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let mut res = Results::default();
    let nofile = procs::nofile_limit();
    // Each tcvnc session holds two descriptors (viewer, console); keep some for the rest.
    let fd_cap = usize::try_from(nofile.saturating_sub(64) / 2).unwrap_or(usize::MAX);
    let idle_large = plan.idle_large.min(fd_cap);
    res.note("open_files_limit", nofile as f64);
    let instances = work.join("instances.toml");
    procs::write_instances(&instances, FIRST_IDLE + idle_large.max(plan.idle_small) + 1)?;

    let backend = TcpListener::bind("127.0.0.1:0").await?;
    let backend_addr = backend.local_addr()?;
    tokio::spawn(roles::backend(backend));

    let (bulk, rtt) = (want("data") || want("bulk"), want("data") || want("rtt"));
    if bulk || rtt {
        data_cases(plan, &work, &instances, backend_addr, (bulk, rtt), &mut res).await?;
    }
    if want("setup") {
        setup_case(plan, &work, &instances, &mut res).await?;
    }
    if want("idle") {
        idle_cases(plan, &work, &instances, idle_large, &mut res).await?;
    }
    if want("console") {
        console::cases(plan, &work, &instances, FIRST_CONSOLE, &mut res).await?;
    }
    if want("actions") {
        console::actions::cases(plan, &work, &instances, FIRST_ACTIONS, &mut res).await?;
    }
    if want("recording") {
        console::recording::cases(plan, &work, &instances, FIRST_RECORDING, &mut res).await?;
    }
    res.meta.insert("websocat".into(), websocat_version());
    Ok(res)
}

fn websocat_version() -> String {
    std::process::Command::new(procs::websocat_bin())
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|e| format!("unavailable: {e}"))
}

/// Frame sizes of the gateways in the bulk cases: a websockify-style gateway's few KiB per
/// read, and the 64 KiB of a gateway that reads in large blocks.
pub const FRAMES: [usize; 3] = [1024, 8 * 1024, 64 * 1024];

/// websocat's buffer in the gateway of the upload cases: larger than any message a proxy
/// sends (tcvnc's are at most 64 KiB and a header; websocat's at most its own 64 KiB).
const UPLOAD_GATEWAY_BUFFER: usize = 1 << 20;

/// The name of a bulk case: direction, gateway frame size (or `rfb-shaped`), gateway.
pub fn bulk_case(dir: &str, frame: Option<usize>, gateway: &str) -> String {
    match frame {
        Some(f) => format!("{dir} {} KiB · {gateway} gateway", f / 1024),
        None => format!("{dir} rfb-shaped · {gateway} gateway"),
    }
}

/// One bulk transfer's path and which cases its numbers belong to.
struct Leg<'a> {
    path: &'a DataPath,
    /// (case, path name in that case)
    into: Vec<(String, &'static str)>,
}

/// Bulk throughput and CPU per GiB at each gateway frame size, through the simulator's
/// gateway and websocat's TLS gateway, and echo round trips over the four paths.
async fn data_cases(
    plan: &Plan,
    work: &Path,
    instances: &Path,
    backend: SocketAddr,
    (bulk, rtt): (bool, bool),
    res: &mut Results,
) -> Result<()> {
    step("starting two simulators, two tcvnc, the websocat gateways and clients, and the pipes");
    let data_targets = || -> Result<Vec<Target>> {
        Ok(procs::free_addrs(DATA_TARGETS)?
            .into_iter()
            .enumerate()
            .map(|(i, a)| Target {
                instance: instance_id(i),
                listen: Some(a),
                mode: Mode::Transparent,
                linger: None,
            })
            .collect())
    };
    // Path 1: the simulator's gateway (tungstenite over rustls).
    let sim = Sim::start(work, "data", instances, Some(backend)).await?;
    let targets = data_targets()?;
    let tcvnc = Tcvnc::start(work, "data", &sim, &targets).await?;
    let url = sim
        .mint_url(&instance_id(DATA_TARGETS + SETUP_TARGETS))
        .await?;
    let (websocat, ws_addr) = procs::start_websocat(work, "data", &url, &sim.ca_file).await?;

    // Path 2: websocat's TLS gateway (OpenSSL), one per frame size; a second simulator
    // serves the API and points its URLs at the gateway of the case being run.
    let sim2 = Sim::start(work, "wsgw", instances, Some(backend)).await?;
    let wsgw_ca = work.join("wsgw-ca.pem");
    let p12 = procs::websocat_identity(work, &wsgw_ca)?;
    // websocat's -B is both its read size (the frames it sends) and the largest message
    // it takes whole: a larger one arrives cut short. The upload cases therefore go
    // through a gateway with a 1 MiB buffer (the last one), whatever their block size.
    let mut gateways = Vec::new();
    for f in FRAMES.into_iter().chain([UPLOAD_GATEWAY_BUFFER]) {
        let (p, addr) = procs::start_websocat_gateway(work, f, backend, &p12).await?;
        gateways.push((f, p, addr));
    }
    // tcvnc trusts both CAs (the second simulator's API is plain HTTP on loopback, but its
    // own gateway is unused here); websocat only needs the gateway's.
    let mut bundle = std::fs::read_to_string(&sim2.ca_file)?;
    bundle.push_str(&std::fs::read_to_string(&wsgw_ca)?);
    let bundle_file = work.join("gateways-ca.pem");
    std::fs::write(&bundle_file, &bundle)?;
    let targets2 = data_targets()?;
    let tcvnc2 = Tcvnc::start_trusting(work, "wsgw", &sim2, &targets2, &bundle_file).await?;
    let mut ws_clients = Vec::new();
    for (f, _, gw) in &gateways {
        sim2.knobs(None, Some(*gw)).await?;
        let url = sim2
            .mint_url(&instance_id(DATA_TARGETS + SETUP_TARGETS))
            .await?;
        let (p, addr) = procs::start_websocat(work, &format!("wsgw-{f}"), &url, &wsgw_ca).await?;
        ws_clients.push((p, addr));
    }

    // The limits: TLS and TCP pipes whose terminator reads the backend a frame at a time.
    let term_ca = work.join("tls-term-ca.pem");
    let (mut pipes, mut pipe_procs) = (Vec::new(), Vec::new());
    for f in FRAMES {
        let (tls_term, tls_term_addr) = procs::start_role(
            work,
            "tls-term",
            &[
                backend.to_string(),
                term_ca.display().to_string(),
                f.to_string(),
            ],
        )?;
        let (tls_proxy, tls_addr) = procs::start_role(
            work,
            "tls-proxy",
            &[tls_term_addr.to_string(), term_ca.display().to_string()],
        )?;
        let (tcp_term, tcp_term_addr) =
            procs::start_role(work, "tcp-term", &[backend.to_string(), f.to_string()])?;
        let (tcp_proxy, tcp_addr) =
            procs::start_role(work, "tcp-proxy", &[tcp_term_addr.to_string()])?;
        pipes.push([
            DataPath {
                name: "tls-pipe",
                addrs: vec![tls_addr],
                proxy_pid: tls_proxy.pid(),
                gateway_pid: tls_term.pid(),
            },
            DataPath {
                name: "tcp-pipe",
                addrs: vec![tcp_addr],
                proxy_pid: tcp_proxy.pid(),
                gateway_pid: tcp_term.pid(),
            },
        ]);
        // Killed when the data cases end, with the list.
        pipe_procs.extend([tls_term, tls_proxy, tcp_term, tcp_proxy]);
    }

    let via_sim = [
        DataPath {
            name: "tcvnc",
            addrs: targets.iter().filter_map(|t| t.listen).collect(),
            proxy_pid: tcvnc.proc.pid(),
            gateway_pid: sim.proc.pid(),
        },
        DataPath {
            name: "websocat",
            addrs: vec![ws_addr],
            proxy_pid: websocat.pid(),
            gateway_pid: sim.proc.pid(),
        },
    ];
    let via_wsgw: Vec<[DataPath; 2]> = gateways
        .iter()
        .zip(&ws_clients)
        .map(|((_, gw, _), (client, addr))| {
            [
                DataPath {
                    name: "tcvnc",
                    addrs: targets2.iter().filter_map(|t| t.listen).collect(),
                    proxy_pid: tcvnc2.proc.pid(),
                    gateway_pid: gw.pid(),
                },
                DataPath {
                    name: "websocat",
                    addrs: vec![*addr],
                    proxy_pid: client.pid(),
                    gateway_pid: gw.pid(),
                },
            ]
        })
        .collect();

    let data = roles::pattern();
    let mut turn = 0usize;
    for run in 0..plan.runs {
        // (direction, frame size index or None for the RFB-shaped case)
        let mut shapes: Vec<(&str, Option<usize>)> = Vec::new();
        if bulk {
            for i in 0..FRAMES.len() {
                shapes.push(("upload", Some(i)));
                shapes.push(("download", Some(i)));
            }
            shapes.push(("download", None));
        }
        shapes.retain(|(dir, fi)| {
            let id = fi.map_or_else(
                || "rfb".to_owned(),
                |i| format!("{dir}-{}", FRAMES[i] / 1024),
            );
            plan.shapes.is_empty() || plan.shapes.contains(&id)
        });
        for (dir, fi) in shapes {
            let frame = fi.map(|i| FRAMES[i]);
            // The pipes' terminator reads the backend a frame at a time (index into
            // FRAMES); websocat's gateway is the one of the frame size for downloads and
            // the large-buffer one for uploads.
            let gi = fi.unwrap_or(FRAMES.len() - 1);
            let wi = if dir == "upload" { FRAMES.len() } else { gi };
            step(&format!(
                "run {}/{}: {}",
                run + 1,
                plan.runs,
                bulk_case(dir, frame, "each")
            ));
            sim.knobs(frame, None).await?;
            sim2.knobs(None, Some(gateways[wi].2)).await?;
            let (shape, bytes) = match (dir, frame) {
                ("upload", Some(f)) => (client::Shape::Upload(f as u32), plan.bytes_at(f)),
                (_, Some(f)) => (client::Shape::Download(f as u32), plan.bytes_at(f)),
                (_, None) => (client::Shape::Rfb, plan.bulk_bytes / 8),
            };
            let (cs, cw) = (
                bulk_case(dir, frame, "sim"),
                bulk_case(dir, frame, "websocat"),
            );
            let mut legs = vec![
                Leg {
                    path: &via_sim[0],
                    into: vec![(cs.clone(), "tcvnc")],
                },
                Leg {
                    path: &via_sim[1],
                    into: vec![(cs.clone(), "websocat")],
                },
                Leg {
                    path: &via_wsgw[wi][0],
                    into: vec![(cw.clone(), "tcvnc")],
                },
                Leg {
                    path: &via_wsgw[wi][1],
                    into: vec![(cw.clone(), "websocat")],
                },
            ];
            for p in &pipes[gi] {
                legs.push(Leg {
                    path: p,
                    into: vec![(cs.clone(), p.name), (cw.clone(), p.name)],
                });
            }
            // Alternate the order run by run, so a noisy moment does not always hit the
            // same path.
            if run % 2 == 1 {
                legs.reverse();
            }
            let gib = bytes as f64 / f64::from(1u32 << 30);
            for leg in legs {
                let p = leg.path;
                let addr = p.addrs[turn % p.addrs.len()];
                turn += 1;
                let (proxy, gw) = (p.proxy_pid, p.gateway_pid);
                let (took, before, after) = client::bulk(addr, shape, bytes, &data, || {
                    Ok(vec![procs::cpu_seconds(proxy)?, procs::cpu_seconds(gw)?])
                })
                .await
                .with_context(|| format!("{} through {}", leg.into[0].0, p.name))?;
                let secs = took.as_secs_f64();
                for (case, name) in &leg.into {
                    res.push(case, name, "MB/s", bytes as f64 / secs / 1e6);
                    res.push(case, name, "proxy CPU s/GiB", (after[0] - before[0]) / gib);
                    res.push(
                        case,
                        name,
                        "gateway CPU s/GiB",
                        (after[1] - before[1]) / gib,
                    );
                }
            }
        }
        sim.knobs(None, None).await?;
        let rtt_paths = [
            &via_sim[0],
            &via_sim[1],
            &pipes[FRAMES.len() - 1][0],
            &pipes[FRAMES.len() - 1][1],
        ];
        for size in [8usize, 1024].into_iter().filter(|_| rtt) {
            let case = format!("rtt {size} B");
            step(&format!("run {}/{}: {case}", run + 1, plan.runs));
            for p in rtt_paths {
                let addr = p.addrs[turn % p.addrs.len()];
                turn += 1;
                let mut ns = client::rtt(addr, size, plan.rtt_warm, plan.rtt_iters)
                    .await
                    .with_context(|| format!("{case} through {}", p.name))?;
                ns.sort_unstable();
                for (name, q) in [("p50 µs", 0.5), ("p99 µs", 0.99), ("p99.9 µs", 0.999)] {
                    res.push(&case, p.name, name, report::quantile(&ns, q) as f64 / 1e3);
                }
            }
        }
    }
    let rss = tcvnc.proc.rss_kib()?;
    res.note("tcvnc RSS after data cases (KiB)", rss as f64);
    drop((websocat, ws_clients, gateways, pipe_procs));
    drop((tcvnc, tcvnc2));
    drop((sim, sim2));
    Ok(())
}

/// Session setup: viewer connect to ServerInit, with the API call and the direct TLS +
/// websocket + RFB costs measured alongside.
async fn setup_case(plan: &Plan, work: &Path, instances: &Path, res: &mut Results) -> Result<()> {
    step("setup: starting the simulator (test-pattern consoles), tcvnc and websocat");
    let sim = Sim::start(work, "setup", instances, None).await?;
    let targets: Vec<Target> = procs::free_addrs(SETUP_TARGETS)?
        .into_iter()
        .enumerate()
        .map(|(i, a)| Target {
            instance: instance_id(DATA_TARGETS + i),
            listen: Some(a),
            mode: Mode::Bridge,
            linger: None,
        })
        .collect();
    let tcvnc = Tcvnc::start(work, "setup", &sim, &targets).await?;
    let url = sim
        .mint_url(&instance_id(DATA_TARGETS + SETUP_TARGETS + 1))
        .await?;
    let (_websocat, ws_addr) = procs::start_websocat(work, "setup", &url, &sim.ca_file).await?;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for i in 0..plan.setup_iters {
        if i % 50 == 0 {
            step(&format!("setup {i}/{}", plan.setup_iters));
        }
        let t = &targets[i % targets.len()];
        let addr = t
            .listen
            .ok_or_else(|| anyhow!("setup target without listener"))?;
        let (s, times) = client::rfb_tcp(addr)
            .await
            .context("viewer through tcvnc")?;
        drop(s);
        res.push("setup", "tcvnc", "first byte ms", ms(times.first_byte));
        res.push("setup", "tcvnc", "ServerInit ms", ms(times.server_init));

        let (s, times) = client::rfb_tcp(ws_addr)
            .await
            .context("viewer through websocat")?;
        drop(s);
        res.push("setup", "websocat", "first byte ms", ms(times.first_byte));
        res.push("setup", "websocat", "ServerInit ms", ms(times.server_init));

        let d = client::direct(&url, &sim.ca_file)
            .await
            .context("direct to the gateway")?;
        res.push("setup", "direct", "TLS+websocket ms", ms(d.tls_ws));
        res.push("setup", "direct", "ServerInit ms", ms(d.rfb.server_init));

        // Its own instances (30 URLs a minute each), apart from tcvnc's targets.
        let api_instance = instance_id(FIRST_IDLE + i % SETUP_TARGETS);
        let t0 = Instant::now();
        sim.mint_url(&api_instance).await.context("API call")?;
        res.push("setup", "API call", "ms", ms(t0.elapsed()));
        // Every URL counts against the instance's 30 a minute: spread them.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(tcvnc);
    drop(sim);
    Ok(())
}

/// Idle sessions: RSS delta over N open consoles, for tcvnc's TCP and websocket viewers
/// and for websocat.
async fn idle_cases(
    plan: &Plan,
    work: &Path,
    instances: &Path,
    idle_large: usize,
    res: &mut Results,
) -> Result<()> {
    let sim = Sim::start(work, "idle", instances, None).await?;
    let mut cases: Vec<(&str, usize)> = vec![
        ("tcvnc TCP viewer", plan.idle_small),
        ("tcvnc websocket viewer", plan.idle_small),
        ("websocat", plan.idle_small),
        ("tcvnc websocket viewer", idle_large),
    ];
    if idle_large < plan.idle_large {
        res.note(
            &format!(
                "idle sessions capped at {idle_large} by the open-file limit (wanted {})",
                plan.idle_large
            ),
            idle_large as f64,
        );
    }
    cases.dedup();
    for run in 0..plan.runs.min(3) {
        for &(path, n) in &cases {
            if n == idle_large && run > 0 {
                continue; // the large case once: it takes the longest
            }
            step(&format!(
                "run {}: {n} idle sessions through {path}",
                run + 1
            ));
            let r = idle(work, &sim, path, n)
                .await
                .with_context(|| format!("{n} idle sessions through {path}"))?;
            let case = format!("idle {n}");
            res.push(&case, path, "RSS KiB/session", r.kib_per_session);
            res.push(&case, path, "errors", r.errors as f64);
            res.push(&case, path, "open s", r.open_secs);
            res.push(&case, path, "sessions", r.open as f64);
        }
    }
    drop(sim);
    Ok(())
}

struct IdleResult {
    kib_per_session: f64,
    errors: usize,
    open: usize,
    open_secs: f64,
}

/// An open viewer connection, held only to keep its session alive.
#[allow(dead_code)]
enum Viewer {
    Tcp(tokio::net::TcpStream),
    Ws(Box<client::WsChan<tokio::net::TcpStream>>),
}

async fn idle(work: &Path, sim: &Sim, path: &str, n: usize) -> Result<IdleResult> {
    let ids: Vec<String> = (0..=n).map(|i| instance_id(FIRST_IDLE + i)).collect();
    let tcp = path == "tcvnc TCP viewer";
    let mut _tcvnc = None;
    let mut _websocat = None;
    let (proc_pid, dial): (u32, Arc<dyn Fn(usize) -> Dial + Send + Sync>) = if path == "websocat" {
        let url = sim.mint_url(&ids[0]).await?;
        let (w, addr) = procs::start_websocat(work, "idle", &url, &sim.ca_file).await?;
        let pid = w.pid();
        _websocat = Some(w);
        (pid, Arc::new(move |_| Dial::Tcp(addr)))
    } else {
        let addrs = procs::free_addrs(if tcp { ids.len() } else { 0 })?;
        let targets: Vec<Target> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| Target {
                instance: id.clone(),
                listen: addrs.get(i).copied(),
                mode: Mode::Bridge,
                linger: None,
            })
            .collect();
        let t = Tcvnc::start(work, "idle", sim, &targets).await?;
        let pid = t.proc.pid();
        let http = t.http;
        let addrs: Vec<Option<SocketAddr>> = targets.iter().map(|t| t.listen).collect();
        let ids = ids.clone();
        _tcvnc = Some(t);
        (
            pid,
            Arc::new(move |i| match addrs[i] {
                Some(a) => Dial::Tcp(a),
                None => Dial::Ws(http, ids[i].clone()),
            }),
        )
    };
    // Warm up (lazy set-up, first allocations), then the baseline.
    drop(open_viewer(dial(0)).await?);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base = procs::rss_kib(proc_pid)?;
    let t0 = Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 1..=n {
        let dial = dial.clone();
        let gate = gate.clone();
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            open_viewer(dial(i)).await
        });
    }
    let mut viewers = Vec::with_capacity(n);
    let mut errors = 0usize;
    let mut first_error = None;
    while let Some(r) = tasks.join_next().await {
        match r.map_err(anyhow::Error::from).and_then(|r| r) {
            Ok(v) => viewers.push(v),
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(format!("{e:#}"));
            }
        }
    }
    let open_secs = t0.elapsed().as_secs_f64();
    if let Some(e) = first_error {
        eprintln!("bench: {errors} of {n} sessions failed; first: {e}");
    }
    // Let every session settle into its idle state.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = procs::rss_kib(proc_pid)?;
    let open = viewers.len();
    drop(viewers);
    Ok(IdleResult {
        kib_per_session: rss.saturating_sub(base) as f64 / open.max(1) as f64,
        errors,
        open,
        open_secs,
    })
}

enum Dial {
    Tcp(SocketAddr),
    Ws(SocketAddr, String),
}

async fn open_viewer(d: Dial) -> Result<Viewer> {
    Ok(match d {
        Dial::Tcp(a) => Viewer::Tcp(client::rfb_tcp(a).await?.0),
        Dial::Ws(h, id) => Viewer::Ws(Box::new(client::rfb_ws(h, &id).await?.0)),
    })
}
