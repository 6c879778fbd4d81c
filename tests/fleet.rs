//! `[fleet]` with a real Redis (Debian's `redis-server`, started here on a free loopback
//! port): one URL window per instance and one console claim across replicas, Redis
//! killed and restarted empty without over-spending, claims of a SIGKILLed replica freed
//! within the lease. The 60 s, 200-viewer run is `#[ignore]`d (scripts/reliability runs
//! it); `fleet_run_short` is the same scenario in a few seconds.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::redis::{available, RedisServer};
use common::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

fn fleet_section(redis: &str, replicas: u32, lease: &str) -> String {
    format!("[fleet]\nredis = \"{redis}\"\nreplicas = {replicas}\nclaim_lease = \"{lease}\"\n")
}

/// `GET path` on `addr`: the status code and the body (HTTP/1.0, no keep-alive).
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(
        format!(
            "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\n\r\n",
            addr.port()
        )
        .as_bytes(),
    )
    .await
    .expect("request");
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await.expect("answer");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Three in-process replicas of one fleet (distinct replica names), each with the
/// instances as targets, waited for until Redis answers them.
async fn replicas(sim: &tcvnc::sim::SimHandle, ids: &[String], fleet: &str) -> Vec<TestDaemon> {
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut out = Vec::new();
    for _ in 0..3 {
        let mut o = Opts::targets(&refs);
        o.budget = "max_wait = \"0s\"";
        o.session = "connections_per_peer_per_minute = 100000\nunauthenticated_per_peer = 1000";
        o.targets.push_str(fleet);
        let d = TestDaemon::start(sim, &o).await;
        out.push(d);
    }
    for d in &out {
        health(d, true).await;
    }
    out
}

/// Waits until `d`'s Redis link is `up` (an event, not a sleep).
async fn health(d: &TestDaemon, up: bool) {
    let mut w = d.app.fleet.as_ref().expect("fleet").watch_health();
    within(w.wait_for(|v| *v == up))
        .await
        .expect("health watch");
}

/// One viewer: the console's name, or the reason it was refused.
async fn view(addr: SocketAddr, from: [u8; 4]) -> Result<(TcpClient, String), String> {
    let mut c = tcp_client_from(from, addr).await;
    match rfb_handshake(&mut c, V38, None).await {
        Ok(name) => Ok((c, name)),
        Err(r) => Err(r),
    }
}

/// With three replicas, an instance's window holds 30 URLs in all, not 30 each; a
/// console held through one replica is busy on the others, with the replica's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_and_claims_span_replicas() {
    if !available("window_and_claims_span_replicas") {
        return;
    }
    let redis = RedisServer::start(None).await;
    let (sim, ids) = sim_with_running("ins-flee", 2).await;
    let mut ds = replicas(&sim, &ids, &fleet_section(&redis.url(), 3, "3s")).await;
    let (a, b) = (&ids[0], &ids[1]);

    // 45 viewers in turn, round-robin over the replicas: 30 consoles, then refusals
    // with the local words.
    let (mut ok, mut refused) = (0, Vec::new());
    for i in 0..45 {
        match within(view(ds[i % 3].tcp(a), [127, 0, 0, 1])).await {
            Ok((mut c, _)) => {
                ok += 1;
                c.close(1000, "").await;
            }
            Err(r) => refused.push(r),
        }
    }
    assert_eq!(ok, 30, "{refused:?}");
    assert_eq!(refused.len(), 15);
    for r in &refused {
        assert!(
            r.contains(&format!(
                "reconnect budget for {a} used up (30 per minute): next URL in"
            )),
            "{r}"
        );
    }
    assert_eq!(sim.state.mints(a), 30);

    // A console held through replica 0 is busy on replica 1, for a viewer elsewhere.
    let (mut holder, _) = within(view(ds[0].tcp(b), [127, 0, 0, 1]))
        .await
        .expect("first viewer");
    let r = within(view(ds[1].tcp(b), [127, 0, 0, 2]))
        .await
        .expect_err("busy");
    let replica0 = ds[0]
        .app
        .fleet
        .as_ref()
        .expect("fleet")
        .replica()
        .to_owned();
    assert!(
        r.contains(&format!(
            "the console of {b} is in use by another viewer since"
        )) && r.contains(&format!("(on tcvnc replica {replica0})")),
        "{r}"
    );
    // Its viewer reconnecting through replica 2 waits for the old session's release.
    holder.close(1000, "").await;
    let (mut again, _) = within(view(ds[2].tcp(b), [127, 0, 0, 1]))
        .await
        .expect("released");
    again.close(1000, "").await;
    let stats = sim.state.stats();
    assert_eq!(stats.max_live_upstreams, 1, "{stats:?}");
    assert!(stats.errors.is_empty(), "{stats:?}");
    for d in &mut ds {
        assert!(d.stop().await);
    }
}

/// Redis killed: new URLs refused with a reason, /readyz 503, the errors counted;
/// sessions already bridged go on. Restarted empty: each replica puts back what it
/// spent, so a full window stays full (no over-spend), and the rest recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_refuses_then_recovers_without_overspend() {
    if !available("redis_outage_refuses_then_recovers_without_overspend") {
        return;
    }
    let mut redis = RedisServer::start(Some("hunter2-fleet")).await;
    let logs_before = captured_logs(tracing::Level::DEBUG).len();
    let (sim, ids) = sim_with_running("ins-outa", 2).await;
    let mut ds = replicas(&sim, &ids, &fleet_section(&redis.url(), 3, "3s")).await;
    let (a, b) = (&ids[0], &ids[1]);
    for i in 0..30 {
        let (mut c, _) = within(view(ds[i % 3].tcp(a), [127, 0, 0, 1]))
            .await
            .expect("within budget");
        c.close(1000, "").await;
    }
    // A session bridged before the outage.
    let (mut live, _) = within(view(ds[0].tcp(b), [127, 0, 0, 1]))
        .await
        .expect("live");

    redis.kill().await;
    for d in &ds {
        health(d, false).await;
    }
    let http = ds[1].http.expect("http");
    let (status, body) = http_get(http, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("Redis"), "{body}");
    let r = within(view(ds[1].tcp(b), [127, 0, 0, 3]))
        .await
        .expect_err("refused");
    assert!(
        r.contains("cannot reach the budget its replicas share"),
        "{r}"
    );
    // The bridged session still answers.
    tcvnc::rfb::handshake::RfbIo::write_all(&mut live, &[3, 0, 0, 0, 0, 0, 0, 10, 0, 10])
        .await
        .expect("update request on a live session");
    let mut head = [0u8; 4];
    within(tcvnc::rfb::handshake::RfbIo::read_exact(
        &mut live, &mut head,
    ))
    .await
    .expect("an update while Redis is down");
    let (_, metrics) = http_get(http, "/metrics").await;
    assert!(
        metrics.contains("tcvnc_fleet_redis_errors_total"),
        "{metrics}"
    );
    assert!(metrics.contains("tcvnc_fleet_redis_up 0"), "{metrics}");
    live.close(1000, "").await;

    redis.restart().await;
    for d in &ds {
        health(d, true).await;
    }
    assert_eq!(http_get(http, "/readyz").await.0, 200);
    // The window Redis forgot is back: still full.
    let r = within(view(ds[2].tcp(a), [127, 0, 0, 1]))
        .await
        .expect_err("still spent");
    assert!(r.contains("used up (30 per minute)"), "{r}");
    // And the other instance works again.
    let (mut c, _) = within(view(ds[2].tcp(b), [127, 0, 0, 1]))
        .await
        .expect("recovered");
    c.close(1000, "").await;
    let stats = sim.state.stats();
    assert_eq!(sim.state.mints(a), 30, "{stats:?}");
    assert!(stats.errors.is_empty(), "no LimitExceeded: {stats:?}");
    for d in &mut ds {
        assert!(d.stop().await);
    }
    let logs = captured_logs(tracing::Level::DEBUG);
    assert!(
        !logs[logs_before.min(logs.len())..].contains("hunter2-fleet"),
        "the Redis password was logged"
    );
}

/// `on_unavailable = "local"`: while Redis is away a replica serves from its share of
/// the window (30 / 3 = 10 URLs per instance), says so on /readyz (still ready) and
/// counts the fallbacks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_fallback_spends_a_share() {
    if !available("local_fallback_spends_a_share") {
        return;
    }
    let mut redis = RedisServer::start(None).await;
    let (sim, ids) = sim_with_running("ins-locl", 1).await;
    let fleet = format!(
        "{}on_unavailable = \"local\"\n",
        fleet_section(&redis.url(), 3, "3s")
    );
    let mut ds = replicas(&sim, &ids, &fleet).await;
    redis.kill().await;
    for d in &ds {
        health(d, false).await;
    }
    let (status, body) = http_get(ds[0].http.expect("http"), "/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("local fallback"), "{body}");
    let a = &ids[0];
    let mut ok = 0;
    let refusal = loop {
        match within(view(ds[0].tcp(a), [127, 0, 0, 1])).await {
            Ok((mut c, _)) => {
                ok += 1;
                c.close(1000, "").await;
            }
            Err(r) => break r,
        }
    };
    assert_eq!(ok, 10, "{refusal}");
    assert!(refusal.contains("used up (10 per minute)"), "{refusal}");
    let (_, metrics) = http_get(ds[0].http.expect("http"), "/metrics").await;
    assert!(
        metrics.contains("tcvnc_fleet_fallbacks_total{what=\"url_local\"}"),
        "{metrics}"
    );
    for d in &mut ds {
        assert!(d.stop().await);
    }
}

// ---- tcvnc processes ----

/// A `tcvnc serve` process: its listeners, its log.
struct Replica {
    child: tokio::process::Child,
    tcp: HashMap<String, SocketAddr>,
    http: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Replica {
    async fn start(dir: &std::path::Path, n: usize, text: &str, targets: usize) -> Replica {
        let cfg = dir.join(format!("replica{n}.toml"));
        std::fs::write(&cfg, text).expect("config");
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tcvnc"))
            .args(["--log-format", "json", "serve", "-c"])
            .arg(&cfg)
            .env("RUST_LOG", "warn,tcvnc::cmd=info,tcvnc::fleet=info")
            .stderr(Stdio::piped())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("tcvnc serve");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
        let log2 = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(l)) = lines.next_line().await {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&l) {
                    if v["message"] == "listening" {
                        let _ = tx.send((
                            v["listener"].as_str().unwrap_or("").to_owned(),
                            v["address"].as_str().unwrap_or("").to_owned(),
                        ));
                    }
                }
                log2.lock().expect("log").push(l);
            }
        });
        let (mut tcp, mut http) = (HashMap::new(), None);
        while tcp.len() < targets || http.is_none() {
            let (name, addr) = within(rx.recv()).await.expect("listening");
            let addr: SocketAddr = addr.parse().expect("addr");
            match name.strip_prefix("tcp ") {
                Some(i) => {
                    tcp.insert(i.to_owned(), addr);
                }
                None => http = Some(addr),
            }
        }
        let http = http.expect("http");
        let r = Replica {
            child,
            tcp,
            http,
            log,
        };
        r.ready(true).await;
        r
    }

    /// Polls /readyz until it says `ready` (an external process: polling with a
    /// deadline).
    async fn ready(&self, ready: bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = http_get(self.http, "/readyz").await;
            if (status == 200) == ready {
                return;
            }
            assert!(Instant::now() < deadline, "readyz still {status}: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn errors(&self) -> Vec<String> {
        self.log
            .lock()
            .expect("log")
            .iter()
            .filter(|l| l.contains("\"level\":\"ERROR\"") || l.contains("panicked"))
            .cloned()
            .collect()
    }
}

fn process_config(
    sim: &tcvnc::sim::SimHandle,
    ids: &[String],
    fleet: &str,
    max_wait: &str,
) -> String {
    let mut t = format!(
        "[cloud]\nregion = \"ap-guangzhou\"\nendpoint = \"{}\"\n[credentials]\nsecret_id = \"{}\"\nsecret_key = \"{}\"\n\
         [upstream]\nca_file = \"{}\"\n[budget]\nmax_wait = \"{max_wait}\"\n[session]\nmax_sessions = 1000\nconnections_per_peer_per_minute = 10000000\nunauthenticated_per_peer = 1000\nhandshake_timeout = \"5s\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
        sim.api_url,
        tcvnc::sim::DEMO_SECRET_ID,
        tcvnc::sim::DEMO_SECRET_KEY,
        sim.ca_file.display()
    );
    for i in ids {
        t.push_str(&format!(
            "[[target]]\ninstance = \"{i}\"\nlisten = \"127.0.0.1:0\"\n"
        ));
    }
    t.push_str(fleet);
    t
}

/// A replica killed with SIGKILL while it holds a console: the others see it busy
/// (naming that replica) until its lease runs out, then serve it; no more than the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_replica_frees_its_claims_within_the_lease() {
    if !available("sigkilled_replica_frees_its_claims_within_the_lease") {
        return;
    }
    let redis = RedisServer::start(None).await;
    let (sim, ids) = sim_with_running("ins-kill", 1).await;
    let dir = tempfile::tempdir().expect("tmp");
    let lease = Duration::from_secs(3);
    let text = process_config(&sim, &ids, &fleet_section(&redis.url(), 2, "3s"), "0s");
    let mut a = Replica::start(dir.path(), 0, &text, 1).await;
    let b = Replica::start(dir.path(), 1, &text, 1).await;
    let i = &ids[0];
    let (_held, _) = within(view(a.tcp[i], [127, 0, 0, 1]))
        .await
        .expect("held through a");
    a.child.start_kill().expect("SIGKILL");
    let killed = Instant::now();
    a.child.wait().await.expect("wait");
    let r = within(view(b.tcp[i], [127, 0, 0, 2]))
        .await
        .expect_err("still claimed");
    assert!(
        r.contains("in use by another viewer since") && r.contains("on tcvnc replica"),
        "{r}"
    );
    // Poll (an external process's lease in Redis) until the console is served.
    let served = loop {
        match within(view(b.tcp[i], [127, 0, 0, 2])).await {
            Ok((mut c, _)) => {
                c.close(1000, "").await;
                break killed.elapsed();
            }
            Err(r) => {
                assert!(r.contains("in use"), "{r}");
                assert!(
                    killed.elapsed() < lease + Duration::from_secs(3),
                    "still busy after {:?}",
                    killed.elapsed()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    println!(
        "console served {} ms after the SIGKILL (lease {} ms)",
        served.as_millis(),
        lease.as_millis()
    );
    assert!(served <= lease + Duration::from_millis(500), "{served:?}");
    assert!(b.errors().is_empty(), "{:?}", b.errors());
}

/// Three `tcvnc serve` processes, one simulator, `viewers` viewers for `secs` across
/// them; Redis killed at a third of the run and restarted (empty) at half. Checked from
/// the simulator's counts: at most 30 URLs per instance in any 60 s, 10 API calls in
/// any second, never two live upstreams for one instance, no cloud refusal; every
/// refused viewer read a reason; the fleet refusals came while Redis was away.
async fn fleet_scenario(secs: u64, viewers: usize) {
    let mut redis = RedisServer::start(None).await;
    let (sim, ids) = sim_with_running("ins-stor", 3).await;
    let dir = tempfile::tempdir().expect("tmp");
    let text = process_config(&sim, &ids, &fleet_section(&redis.url(), 3, "5s"), "1s");
    let mut reps = Vec::new();
    for n in 0..3 {
        reps.push(Replica::start(dir.path(), n, &text, ids.len()).await);
    }
    let tally = Arc::new(Tally::default());
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for n in 0..viewers {
        let addr = reps[n % 3].tcp[&ids[n % ids.len()]];
        let tally = tally.clone();
        // Each viewer its own address (another host), so a busy console is refused at once.
        let from = [127, 1, (n / 250) as u8, (n % 250) as u8 + 1];
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end {
                match tokio::time::timeout(Duration::from_secs(10), view(addr, from)).await {
                    Ok(Ok((mut c, _))) => {
                        tally.ok.fetch_add(1, Ordering::Relaxed);
                        // Work on the console a moment, then leave.
                        tokio::time::sleep(Duration::from_millis(50 + (n as u64 * 37) % 400)).await;
                        c.close(1000, "").await;
                    }
                    Ok(Err(r)) if !r.starts_with("io:") && !r.is_empty() => {
                        tally.refusal(&r, 48);
                    }
                    _ => {
                        tally.silent.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    // The outage: Redis killed at a third of the run, restarted empty at half.
    tokio::time::sleep_until(start + Duration::from_secs(secs) / 3).await;
    redis.kill().await;
    for r in &reps {
        r.ready(false).await;
    }
    let down_at = start.elapsed();
    tokio::time::sleep_until(start + Duration::from_secs(secs) / 2).await;
    redis.restart().await;
    for r in &reps {
        r.ready(true).await;
    }
    let up_after = start.elapsed();
    for t in tasks {
        t.await.expect("viewer task");
    }
    let stats = sim.state.stats();
    let reasons = tally.reasons.lock().expect("r").clone();
    let (ok, refused, silent) = (
        tally.ok.load(Ordering::Relaxed),
        tally.refused.load(Ordering::Relaxed),
        tally.silent.load(Ordering::Relaxed),
    );
    println!("fleet {secs}s, {viewers} viewers over 3 replicas: {ok} sessions, {refused} refused with a reason, {silent} silent; Redis down at {down_at:?}, all ready again at {up_after:?}");
    println!("reasons: {reasons:#?}");
    println!(
        "simulator: mints {:?}, max/60 s {}, max API/s {}, max live upstreams {}, errors {:?}",
        stats.mints,
        stats.max_mints_per_minute,
        stats.max_api_per_second,
        stats.max_live_upstreams,
        stats.errors
    );
    assert!(ok > 0);
    assert_eq!(silent, 0, "every refused viewer read a reason");
    assert!(stats.max_mints_per_minute <= 30, "{stats:?}");
    assert!(stats.max_api_per_second <= 10, "{stats:?}");
    assert!(stats.max_live_upstreams <= 1, "{stats:?}");
    assert!(
        !stats.errors.contains_key("LimitExceeded")
            && !stats.errors.contains_key("RequestLimitExceeded"),
        "{stats:?}"
    );
    assert!(
        reasons
            .keys()
            .any(|k| k.starts_with("tcvnc cannot reach the budget")),
        "the outage was told: {reasons:?}"
    );
    for r in &reps {
        assert!(r.errors().is_empty(), "{:?}", r.errors());
    }
}

/// The fleet scenario in a few seconds (plain `cargo test`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_run_short() {
    if !available("fleet_run_short") {
        return;
    }
    fleet_scenario(6, 24).await;
}

/// The fleet scenario at full size: 200 viewers, TCVNC_FLEET_SECS (60 by default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "reliability stage: bash scripts/reliability"]
async fn fleet_storm() {
    assert!(
        available("fleet_storm"),
        "the reliability stage needs redis-server"
    );
    let secs = std::env::var("TCVNC_FLEET_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    fleet_scenario(secs, 200).await;
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The bucket bound under which `p` of a Prometheus histogram's observations lie.
fn histogram_quantile(metrics: &str, name: &str, op: &str, p: f64) -> Option<f64> {
    let mut buckets: Vec<(f64, f64)> = metrics
        .lines()
        .filter(|l| {
            l.starts_with(&format!("{name}_bucket{{")) && l.contains(&format!("op=\"{op}\""))
        })
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let n: f64 = l.rsplit(' ').next()?.parse().ok()?;
            Some((le, n))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    buckets
        .iter()
        .find(|(_, n)| *n >= total * p)
        .map(|(le, _)| *le)
}

/// Figures for bench/REPORT.md: what Redis adds to a connect (p50/p99, beside the API
/// call), and how many mints a second a fleet admits at most under load (never above
/// the cloud's limits). `cargo test --release --test fleet fleet_costs -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: bench/REPORT.md"]
async fn fleet_costs() {
    assert!(available("fleet_costs"), "needs redis-server");
    let redis = RedisServer::start(None).await;
    const N: usize = 100;
    let (sim, ids) = sim_with_running("ins-cost", 2 * N).await;
    sim.state.set_faults(tcvnc::sim::Faults {
        api_rate_limit: Some(1_000_000),
        ..Default::default()
    });
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    // The API spacing is lifted, so that a connect measures the connect and not the wait
    // for the API's 10 a second.
    let mk = |fleet: Option<String>| {
        let mut o = Opts::targets(&refs);
        o.budget = "api_requests_per_second = 100000\nallow_above_documented_limits = true";
        o.session = "connections_per_peer_per_minute = 100000";
        if let Some(f) = fleet {
            o.targets.push_str(&f);
        }
        o
    };
    let mut plain = TestDaemon::start(&sim, &mk(None)).await;
    let mut fleet = TestDaemon::start(&sim, &mk(Some(fleet_section(&redis.url(), 1, "15s")))).await;
    health(&fleet, true).await;
    let mut results = Vec::new();
    for (name, d, range) in [
        ("without [fleet]", &plain, 0..N),
        ("with [fleet]", &fleet, N..2 * N),
    ] {
        let mut times = Vec::new();
        for i in range {
            let t0 = Instant::now();
            let (mut c, _) = within(view(d.tcp(&ids[i]), [127, 0, 0, 1]))
                .await
                .expect("console");
            times.push(t0.elapsed());
            c.close(1000, "").await;
        }
        times.sort();
        results.push((name, percentile(&times, 0.5), percentile(&times, 0.99)));
    }
    let (_, metrics) = http_get(fleet.http.expect("http"), "/metrics").await;
    let q = |op: &str, p: f64| {
        histogram_quantile(&metrics, "tcvnc_fleet_redis_seconds", op, p)
            .map_or("-".into(), |s| format!("≤ {:.2} ms", s * 1e3))
    };
    let api = |p: f64| {
        let mut buckets: Vec<(f64, f64)> = metrics
            .lines()
            .filter(|l| {
                l.starts_with("tcvnc_api_request_duration_seconds_bucket{")
                    && l.contains("DescribeInstanceVncUrl")
            })
            .filter_map(|l| {
                let le = l.split("le=\"").nth(1)?.split('"').next()?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, l.rsplit(' ').next()?.parse::<f64>().ok()?))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total = buckets.last().map_or(0.0, |b| b.1);
        buckets
            .iter()
            .find(|(_, n)| *n >= total * p)
            .map_or("-".into(), |(le, _)| format!("≤ {:.1} ms", le * 1e3))
    };
    println!("| connect (TCP accept → console's ServerInit), {N} connects | p50 | p99 |");
    for (name, p50, p99) in &results {
        println!(
            "| {name} | {:.2} ms | {:.2} ms |",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }
    println!(
        "| API call DescribeInstanceVncUrl (simulator on loopback; histogram bound) | {} | {} |",
        api(0.5),
        api(0.99)
    );
    for op in ["claim", "take", "api", "settle", "api_settle", "release"] {
        println!(
            "| Redis script `{op}` (histogram bound) | {} | {} |",
            q(op, 0.5),
            q(op, 0.99)
        );
    }
    assert!(plain.stop().await && fleet.stop().await);

    // The most the fleet admits: three replicas, 40 instances, 120 viewers for 20 s, the
    // simulator's normal limits (10 API calls a second, 30 URLs per instance a minute).
    sim.state.set_faults(tcvnc::sim::Faults::default());
    let before = sim.state.stats();
    let (sim2, ids2) = sim_with_running("ins-rate", 40).await;
    drop(sim);
    let _ = before;
    let mut ds = replicas(&sim2, &ids2, &fleet_section(&redis.url(), 3, "15s")).await;
    let secs = 20u64;
    let end = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for n in 0..120usize {
        let addr = ds[n % 3].tcp(&ids2[n % ids2.len()]);
        let from = [127, 2, 0, (n % 250) as u8 + 1];
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end {
                if let Ok(Ok((mut c, _))) =
                    tokio::time::timeout(Duration::from_secs(10), view(addr, from)).await
                {
                    c.close(1000, "").await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let stats = sim2.state.stats();
    let total: u64 = stats.mints.values().sum();
    println!(
        "fleet of 3, 40 instances, 120 viewers, {secs} s: {total} URLs minted ({:.1}/s), most API calls in any 1 s {}, most URLs for one instance in any 60 s {}, cloud refusals {:?}",
        total as f64 / secs as f64,
        stats.max_api_per_second,
        stats.max_mints_per_minute,
        stats.errors
    );
    assert!(stats.max_api_per_second <= 10 && stats.max_mints_per_minute <= 30);
    for d in &mut ds {
        assert!(d.stop().await);
    }
}
