//! Every URL accounted for: what a lost or garbled answer costs, what a cancelled or
//! abandoned connection costs (nothing sent, nothing spent), a stopped instance that
//! does not drain the budget, the API limit under jittered latency, a viewer that
//! reconnects after a refusal, and refusals summarised in the log.

mod common;

use common::*;
use tcvnc::sim::{Faults, SimOptions};
use tcvnc::ws::Recv;

fn requests(sim: &tcvnc::sim::SimHandle, action: &str) -> u64 {
    sim.state.stats().actions.get(action).copied().unwrap_or(0)
}

/// The simulator mints and then loses or garbles the answer: a viewer costs at most two
/// URLs (one retry of an unknown outcome), and tcvnc's budget counts what the cloud
/// minted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_answers_cost_at_most_two_urls_per_viewer() {
    within(async {
        let sim = sim().await;
        let mut o = Opts::targets(&["ins-demo0001", "ins-demo0002"]);
        o.cloud = "timeout = \"400ms\"";
        let mut d = TestDaemon::start(&sim, &o).await;
        let mut live = d.app.watch_sessions();
        // Every answer lost: each of three viewers is refused after two URLs.
        sim.state.set_faults(Faults {
            lose_after_mint: 100,
            ..Faults::default()
        });
        for _ in 0..3 {
            let mut c = tcp_client(d.tcp("ins-demo0001")).await;
            let r = rfb_handshake(&mut c, V38, None)
                .await
                .expect_err("no answer");
            assert_eq!(
                r,
                "no usable answer from the Tencent Cloud API: try again in a few seconds"
            );
            drop(c);
            live.wait_for(|n| *n == 0).await.expect("w");
        }
        assert_eq!(sim.state.mints("ins-demo0001"), 6, "two per viewer");
        assert_eq!(
            d.app.budget.remaining("ins-demo0001"),
            30 - 6,
            "counted as the cloud did"
        );
        // A garbled answer, then a good one: the viewer gets its console for two URLs.
        sim.state.set_faults(Faults {
            garble_after_mint: 1,
            ..Faults::default()
        });
        let mut c = tcp_client(d.tcp("ins-demo0002")).await;
        rfb_handshake(&mut c, V38, None)
            .await
            .expect("retried once");
        assert_eq!(sim.state.mints("ins-demo0002"), 2);
        assert_eq!(d.app.budget.remaining("ins-demo0002"), 28);
        drop(c);
        assert!(d.stop().await);
    })
    .await;
}

/// Nothing left the host (the API is unreachable): no budget spent, however many
/// viewers try; once the API is back, the next viewer gets in at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_costs_no_budget() {
    within(async {
        let sim = sim().await;
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        let o = Opts::targets(&["ins-demo0001"]);
        let text = config_text(&sim, &o).replace(&sim.api_url, &format!("http://{closed}"));
        let mut d = TestDaemon::from_text(&text).await;
        let addr = d.tcp("ins-demo0001");
        for _ in 0..8 {
            let mut c = tcp_client(addr).await;
            let r = rfb_handshake(&mut c, V38, None)
                .await
                .expect_err("unreachable");
            assert_eq!(
                r,
                "tcvnc cannot reach the Tencent Cloud API: try again later"
            );
        }
        assert_eq!(
            d.app.budget.remaining("ins-demo0001"),
            30,
            "nothing was sent"
        );
        assert_eq!(
            d.app.budget.next_available_in("ins-demo0001"),
            std::time::Duration::ZERO
        );
        assert!(d.stop().await);
    })
    .await;
}

/// Viewers that leave while tcvnc waits for the API spend nothing: their tickets go back
/// before any request leaves. A websocket viewer's close is answered at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_who_leave_spend_nothing() {
    within(async {
        let (sim, ids) = sim_with_running("ins-gone", 11).await;
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let mut o = Opts::targets(&refs);
        // One API request a second, and the first one takes 1.5 s: everyone after it
        // waits in the API limiter.
        o.budget = "api_requests_per_second = 1";
        let mut d = TestDaemon::start(&sim, &o).await;
        sim.state.set_faults(Faults {
            latency: Some(std::time::Duration::from_millis(1500)),
            ..Faults::default()
        });
        let first = ids[0].clone();
        let addr = d.tcp(&first);
        let holder = tokio::spawn(async move {
            let mut c = tcp_client(addr).await;
            rfb_handshake(&mut c, V38, None).await.map(|_| c)
        });
        // Wait until that first request is at the simulator.
        while sim.state.stats().api_requests == 0 {
            tokio::task::yield_now().await;
        }
        let mut live = d.app.watch_sessions();
        for id in &ids[1..10] {
            let mut c = tcp_client(d.tcp(id)).await;
            let mut v = [0u8; 12];
            tcvnc::rfb::handshake::RfbIo::read_exact(&mut c, &mut v)
                .await
                .expect("version");
            tcvnc::rfb::handshake::RfbIo::write_all(&mut c, V38)
                .await
                .expect("version");
            drop(c);
        }
        // A browser that closes while waiting gets its close answered at once.
        let (mut ws, _) = ws_connect(
            d.http.expect("http"),
            &format!("/vnc/{}", ids[10]),
            None,
            None,
        )
        .await
        .expect("ws");
        let mut v = [0u8; 12];
        ws.read_exact(&mut v).await.expect("version");
        tcvnc::rfb::handshake::RfbIo::write_all(&mut ws, V38)
            .await
            .expect("version");
        ws.close(1000, "bye").await;
        match ws.recv().await {
            Recv::Closed(_) => {}
            other => panic!("the close is answered: {other:?}"),
        }
        assert_eq!(
            sim.state.stats().api_requests,
            1,
            "answered before the first request returned"
        );
        live.wait_for(|n| *n <= 1)
            .await
            .expect("the leavers are gone");
        let c = holder
            .await
            .expect("join")
            .expect("the first viewer gets its console");
        assert_eq!(
            requests(&sim, "DescribeInstanceVncUrl"),
            1,
            "nobody else spent a request"
        );
        for id in &ids[1..] {
            assert_eq!(d.app.budget.remaining(id), 30, "{id}: the ticket went back");
        }
        drop(c);
        assert!(d.stop().await);
    })
    .await;
}

/// A takeover storm: each new viewer cancels the one before; the ones cancelled before
/// their request left spend nothing, and the last viewer gets its console.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_storm_spends_only_what_reached_the_cloud() {
    within(async {
        let sim = sim().await;
        let mut o = Opts::targets(&["ins-demo0001"]);
        o.targets = o.targets.replace("listen = ", "on_busy = \"takeover\"\nlisten = ");
        let mut d = TestDaemon::start(&sim, &o).await;
        let addr = d.tcp("ins-demo0001");
        let mut tasks = Vec::new();
        let mut pace = tokio::time::interval(std::time::Duration::from_millis(10));
        for _ in 0..30 {
            pace.tick().await;
            tasks.push(tokio::spawn(async move {
                let mut c = tcp_client(addr).await;
                rfb_handshake(&mut c, V38, None).await.map(|_| c)
            }));
        }
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.expect("join"));
        }
        let last = results.pop().expect("30").expect("the last viewer gets its console");
        for r in results.iter().filter_map(|r| r.as_ref().err()) {
            assert!(!r.contains("used up"), "nothing ran the budget dry: {r}");
        }
        let minted = sim.state.mints("ins-demo0001");
        let spent = 30 - u64::from(d.app.budget.remaining("ins-demo0001"));
        let reached = requests(&sim, "DescribeInstanceVncUrl");
        // Never fewer than the cloud saw; more only for a request cut off in flight
        // (it may have reached the cloud, so it counts).
        assert!(
            spent >= reached && spent <= reached + 2,
            "spent {spent}, requests that reached the cloud {reached} ({minted} minted)"
        );
        println!("takeover storm: 30 viewers, {reached} requests reached the cloud, {spent} counted, {minted} minted");
        drop(last);
        drop(results);
        assert!(d.stop().await);
    })
    .await;
}

/// Thirty viewers retrying a stopped instance spend one URL request; its state is asked
/// without spending one; the first viewer after it starts gets in at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_instance_does_not_drain_the_budget() {
    within(async {
        let sim = sim().await;
        let mut d = TestDaemon::start(&sim, &Opts::targets(&["ins-stopped1"])).await;
        let addr = d.tcp("ins-stopped1");
        let mut live = d.app.watch_sessions();
        for _ in 0..30 {
            let mut c = tcp_client(addr).await;
            let r = rfb_handshake(&mut c, V38, None).await.expect_err("stopped");
            assert_eq!(
                r,
                "instance ins-stopped1 is stopped: start it, then reconnect"
            );
            drop(c);
            live.wait_for(|n| *n == 0).await.expect("w");
        }
        assert_eq!(requests(&sim, "DescribeInstanceVncUrl"), 1);
        assert_eq!(requests(&sim, "DescribeInstancesStatus"), 29);
        assert_eq!(d.app.budget.remaining("ins-stopped1"), 29);
        sim.state.set_state("ins-stopped1", "RUNNING");
        let mut c = tcp_client(addr).await;
        rfb_handshake(&mut c, V38, None)
            .await
            .expect("running again: in at once");
        assert_eq!(requests(&sim, "DescribeInstanceVncUrl"), 2);
        drop(c);
        assert!(d.stop().await);
    })
    .await;
}

/// The API 30–80 ms away: many viewers at once never put more than 10 requests in any
/// second at the simulator, which counts by arrival.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_limit_holds_under_jittered_latency() {
    within(async {
        let (sim, ids) = sim_with_running("ins-jitt", 30).await;
        sim.state.set_faults(Faults {
            latency: Some(std::time::Duration::from_millis(30)),
            latency_jitter: Some(std::time::Duration::from_millis(50)),
            ..Faults::default()
        });
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let mut o = Opts::targets(&refs);
        o.session = "unauthenticated_per_peer = 64";
        let mut d = TestDaemon::start(&sim, &o).await;
        let mut tasks = Vec::new();
        for id in &ids {
            let addr = d.tcp(id);
            tasks.push(tokio::spawn(async move {
                let mut c = tcp_client(addr).await;
                rfb_handshake(&mut c, V38, None).await.map(|_| c)
            }));
        }
        let mut viewers = Vec::new();
        for t in tasks {
            viewers.push(
                t.await
                    .expect("join")
                    .expect("every viewer gets its console"),
            );
        }
        let stats = sim.state.stats();
        assert_eq!(stats.mints.values().sum::<u64>(), 30);
        assert!(stats.max_api_per_second <= 10, "{stats:?}");
        assert!(
            !stats.errors.contains_key("RequestLimitExceeded"),
            "{stats:?}"
        );
        drop(viewers);
        assert!(d.stop().await);
    })
    .await;
}

/// A viewer reconnecting right after a refusal is told the real reason, never that the
/// console is in use by its own refused session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_after_a_refusal_is_never_busy() {
    within(async {
        let sim = sim().await;
        let mut o = Opts::targets(&["ins-demo0001"]);
        o.budget = "reconnects_per_minute = 1\nmax_wait = \"0s\"";
        let mut d = TestDaemon::start(&sim, &o).await;
        let addr = d.tcp("ins-demo0001");
        let mut c = tcp_client(addr).await;
        rfb_handshake(&mut c, V38, None).await.expect("the one URL");
        drop(c);
        for i in 0..20 {
            let mut c = tcp_client(addr).await;
            let r = rfb_handshake(&mut c, V38, None).await.expect_err("budget");
            assert!(
                r.starts_with("reconnect budget for ins-demo0001 used up"),
                "try {i}: {r}"
            );
        }
        assert!(d.stop().await);
    })
    .await;
}

/// A storm of refusals writes the first of a kind in full and summarises the rest.
///
/// The log capture is shared by every test in this file, and they run in parallel: the
/// instance is one no other test uses, so the lines counted are this test's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_refusals_are_summarised_in_the_log() {
    within(async {
        let _ = captured_logs(tracing::Level::INFO);
        let sim = sim().await;
        sim.state
            .put_instance(tcvnc::sim::SimInstance::running("ins-summ0001"));
        sim.state.set_state("ins-summ0001", "STOPPED");
        let mut d = TestDaemon::start(&sim, &Opts::targets(&["ins-summ0001"])).await;
        let addr = d.tcp("ins-summ0001");
        for _ in 0..40 {
            let mut c = tcp_client(addr).await;
            let _ = rfb_handshake(&mut c, V38, None).await.expect_err("stopped");
        }
        let logs = captured_logs(tracing::Level::INFO);
        let refused = logs
            .lines()
            .filter(|l| l.contains("session refused") && l.contains("ins-summ0001 is stopped"))
            .count();
        assert!(refused <= 2, "{refused} lines for 40 refusals");
        assert!(refused >= 1, "the first one is written in full");
        d.app.summaries.flush(10);
        let logs = captured_logs(tracing::Level::INFO);
        let counted: u64 = logs
            .lines()
            .filter(|l| l.contains("more like this") && l.contains("instance=ins-summ0001"))
            .filter_map(|l| {
                l.split("suppressed=")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum();
        assert_eq!(
            refused as u64 + counted,
            40,
            "every refusal is either written in full or counted in a summary"
        );
        assert!(d.stop().await);
    })
    .await;
}

/// A viewer that leaves while the console's RFB handshake is under way gets its upstream
/// closed at once with 1000, not when the handshake times out (an hour here: without the
/// watch, this test would run into its own timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_leaving_during_the_console_handshake_closes_the_upstream() {
    within(async {
        // A console that accepts and never says a word; it reports each connection.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let backend = silent.local_addr().expect("addr");
        let (reached, mut console_reached) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = silent.accept().await {
                held.push(s);
                let _ = reached.send(());
            }
        });
        let sim = sim_with(SimOptions {
            backend: Some(backend.to_string()),
            ..Default::default()
        })
        .await;
        let mut o = Opts::targets(&["ins-demo0001"]);
        o.session = "handshake_timeout = \"1h\"";
        let mut d = TestDaemon::start(&sim, &o).await;
        let mut events = sim.state.events();
        let mut c = tcp_client(d.tcp("ins-demo0001")).await;
        let mut v = [0u8; 12];
        tcvnc::rfb::handshake::RfbIo::read_exact(&mut c, &mut v)
            .await
            .expect("version");
        tcvnc::rfb::handshake::RfbIo::write_all(&mut c, V38)
            .await
            .expect("version");
        // The gateway has reached the console: tcvnc waits for its RFB version now.
        console_reached
            .recv()
            .await
            .expect("the console is reached");
        drop(c);
        let end = wait_event(&mut events, |e| {
            !matches!(e, tcvnc::sim::GatewayEvent::Accepted(_))
        })
        .await;
        assert_eq!(end, tcvnc::sim::GatewayEvent::ClosedByClient(Some(1000)));
        d.app
            .watch_sessions()
            .wait_for(|n| *n == 0)
            .await
            .expect("w");
        assert!(d.stop().await);
    })
    .await;
}
