//! The data path in process: TCP and websocket clients through tcvnc and the simulated
//! gateway to a backend; minting, budget, exclusivity, subprotocols, closes, shutdown.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use sha2::{Digest, Sha256};
use tcvnc::sim::{Faults, GatewayEvent, SimOptions, SubprotocolMode};
use tcvnc::ws::Recv;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn transparent(instances: &[&str]) -> Opts {
    let mut o = Opts::targets(instances);
    o.targets = o.targets.replace(
        "listen = \"127.0.0.1:0\"\n",
        "listen = \"127.0.0.1:0\"\ntransparent = true\n",
    );
    o
}

fn random(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::RngExt::fill(&mut rand::rng(), &mut v[..]);
    v
}

const MIB64: usize = 64 << 20;

/// 64 MiB of random bytes cross tcvnc both ways intact over TCP, and each connection
/// mints its own URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_payload_both_ways() {
    within(async {
        let sim = sim_with(SimOptions {
            backend: Some(echo_backend().await.to_string()),
            ..Default::default()
        })
        .await;
        let mut d = TestDaemon::start(&sim, &transparent(&["ins-demo0001"])).await;
        let payload = random(MIB64);
        let want = Sha256::digest(&payload);
        let s = tokio::net::TcpStream::connect(d.tcp("ins-demo0001"))
            .await
            .expect("connect");
        let (mut r, mut w) = s.into_split();
        let writer = tokio::spawn(async move {
            w.write_all(&payload).await.expect("write");
            w
        });
        let mut got = vec![0u8; MIB64];
        r.read_exact(&mut got).await.expect("echoed back");
        let _w = writer.await.expect("join");
        assert_eq!(Sha256::digest(&got), want);
        assert_eq!(sim.state.mints("ins-demo0001"), 1);
        drop((r, _w));
        // The console is exclusive: wait until tcvnc has seen the first viewer go.
        d.app
            .watch_sessions()
            .wait_for(|n| *n == 0)
            .await
            .expect("watch");
        // A second connection mints a second URL.
        let mut s = tokio::net::TcpStream::connect(d.tcp("ins-demo0001"))
            .await
            .expect("connect");
        s.write_all(b"ping").await.expect("w");
        let mut b = [0u8; 4];
        s.read_exact(&mut b).await.expect("r");
        assert_eq!(&b, b"ping");
        assert_eq!(sim.state.mints("ins-demo0001"), 2);
        drop(s);
        assert!(d.stop().await);
    })
    .await;
}

/// The same over a websocket client (noVNC's path), with `binary` echoed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_payload_both_ways() {
    within(async {
        let sim = sim_with(SimOptions {
            backend: Some(echo_backend().await.to_string()),
            ..Default::default()
        })
        .await;
        let mut d = TestDaemon::start(&sim, &transparent(&["ins-demo0001"])).await;
        let (mut ws, proto) = ws_connect(
            d.http.expect("http"),
            "/vnc/ins-demo0001",
            None,
            Some("binary"),
        )
        .await
        .expect("upgrade");
        assert_eq!(proto.as_deref(), Some("binary"));
        let payload = Bytes::from(random(MIB64));
        let want = Sha256::digest(&payload);
        let mut hasher = Sha256::new();
        let mut received = 0usize;
        let mut sent = 0usize;
        // Interleave sending and receiving so neither side's buffers must hold it all.
        while received < MIB64 {
            if sent < MIB64 {
                let end = (sent + 256 * 1024).min(MIB64);
                ws.send(payload.slice(sent..end)).await.expect("send");
                sent = end;
            }
            while received < sent {
                match ws.recv().await {
                    Recv::Data(d) => {
                        hasher.update(&d);
                        received += d.len();
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        assert_eq!(hasher.finalize(), want);
        assert_eq!(sim.state.mints("ins-demo0001"), 1);
        ws.close(1000, "done").await;
        // tcvnc answers the close frame (RFC 6455 §5.5.1): the browser sees a clean close.
        loop {
            match ws.recv().await {
                Recv::Data(_) => {}
                Recv::Closed(c) => {
                    assert_eq!(c.map(|(code, _)| code), Some(1000));
                    break;
                }
                Recv::Failed(e) => panic!("no close frame in answer: {e}"),
            }
        }
        assert!(d.stop().await);
    })
    .await;
}

/// The RFB path to the test pattern, over TCP and websocket, with every client version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfb_clients_reach_the_test_pattern() {
    within(async {
        let sim = sim().await;
        let mut d = TestDaemon::start(&sim, &Opts::targets(&["ins-demo0001"])).await;
        let mut live = d.app.watch_sessions();
        for v in [V33, V37, V38, b"RFB 003.889\n", b"RFB 004.001\n"] {
            let mut c = tcp_client(d.tcp("ins-demo0001")).await;
            let name = rfb_handshake(&mut c, v, None).await.expect("handshake");
            assert_eq!(
                name,
                "tcvnc test pattern (ins-demo0001)",
                "{}",
                String::from_utf8_lossy(v)
            );
            drop(c);
            live.wait_for(|n| *n == 0).await.expect("watch");
        }
        let (mut ws, proto) = ws_connect(d.http.expect("http"), "/vnc/ins-demo0001", None, None)
            .await
            .expect("ws");
        assert_eq!(
            proto, None,
            "no subprotocol offered, none answered (modern noVNC)"
        );
        let name = rfb_handshake(&mut ws, V38, None).await.expect("handshake");
        assert_eq!(name, "tcvnc test pattern (ins-demo0001)");
        assert_eq!(sim.state.mints("ins-demo0001"), 6);
        drop(ws);
        assert!(d.stop().await);
    })
    .await;
}

/// The gateway refuses a replayed URL and one older than 15 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_refuses_replay_and_stale_urls() {
    within(async {
        let sim = sim().await;
        let c = client(&sim);
        let dialer = tcvnc::upstream::Dialer::new(
            tcvnc::tls::client_config(Some(&sim.ca_file)).expect("tls"),
            None,
            vec!["binary".into()],
            Duration::from_secs(5),
        );
        let m = mint(&c, "ins-demo0001", "ap-guangzhou")
            .await
            .expect("mint");
        dialer.dial(&m.url).await.expect("first use");
        let e = dialer.dial(&m.url).await.expect_err("replay");
        assert!(
            e.to_string().contains("HTTP 403: token already used"),
            "{e}"
        );
        let m = mint(&c, "ins-demo0001", "ap-guangzhou")
            .await
            .expect("mint");
        sim.state.age_tokens(Duration::from_secs(16));
        let e = dialer.dial(&m.url).await.expect_err("stale");
        assert!(e.to_string().contains("token expired"), "{e}");
        // TLS is verified: without the simulator's CA the dial fails and says how to fix it.
        let m = mint(&c, "ins-demo0001", "ap-guangzhou")
            .await
            .expect("mint");
        let strict = tcvnc::upstream::Dialer::new(
            tcvnc::tls::client_config(None).expect("tls"),
            None,
            vec![],
            Duration::from_secs(5),
        );
        let e = strict.dial(&m.url).await.expect_err("untrusted");
        assert!(e.to_string().contains("upstream.ca_file"), "{e}");
    })
    .await;
}

/// 31 connects in a minute: exactly 30 URLs, the 31st refused with when the next comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_one_connects_mint_thirty() {
    within(async {
        let sim = sim().await;
        let mut o = Opts::targets(&["ins-demo0001"]);
        o.budget = "max_wait = \"0s\"";
        let mut d = TestDaemon::start(&sim, &o).await;
        let mut live = d.app.watch_sessions();
        for i in 0..30 {
            let mut c = tcp_client(d.tcp("ins-demo0001")).await;
            rfb_handshake(&mut c, V38, None)
                .await
                .unwrap_or_else(|e| panic!("connect {i}: {e}"));
            drop(c);
            // The console is exclusive: wait until tcvnc has seen this viewer go.
            live.wait_for(|n| *n == 0).await.expect("watch");
        }
        let mut c = tcp_client(d.tcp("ins-demo0001")).await;
        let reason = rfb_handshake(&mut c, V38, None)
            .await
            .expect_err("31st refused");
        assert!(
            reason.starts_with(
                "reconnect budget for ins-demo0001 used up (30 per minute): next URL in "
            ),
            "{reason}"
        );
        assert_eq!(sim.state.mints("ins-demo0001"), 30);
        assert_eq!(sim.state.stats().max_mints_per_minute, 30);
        assert!(d.stop().await);
    })
    .await;
}

/// 50 concurrent connects to 50 instances never exceed the API rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_instances_respect_the_api_rate() {
    within(async {
        let (sim, ids) = sim_with_running("ins-load", 50).await;
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let mut o = Opts::targets(&refs);
        // Fifty viewers greet at once from one address.
        o.session = "unauthenticated_per_peer = 64";
        let mut d = TestDaemon::start(&sim, &o).await;
        let mut tasks = Vec::new();
        for id in &ids {
            let addr = d.tcp(id);
            tasks.push(tokio::spawn(async move {
                let mut c = tcp_client(addr).await;
                rfb_handshake(&mut c, V38, None).await
            }));
        }
        for t in tasks {
            t.await
                .expect("join")
                .expect("every client gets its console");
        }
        let stats = sim.state.stats();
        assert_eq!(stats.mints.values().sum::<u64>(), 50);
        assert!(stats.max_api_per_second <= 10, "{stats:?}");
        assert!(
            !stats.errors.contains_key("RequestLimitExceeded"),
            "{stats:?}"
        );
        assert!(d.stop().await);
    })
    .await;
}

/// The upstream dialer accepts a gateway that echoes binary, answers none or requires
/// binary; an answer of base64, which tcvnc did not offer, is refused with a reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lenient_subprotocols() {
    within(async {
        let sim = sim().await;
        let mut d = TestDaemon::start(&sim, &Opts::targets(&["ins-demo0001"])).await;
        for mode in [
            SubprotocolMode::EchoBinary,
            SubprotocolMode::None,
            SubprotocolMode::RequireBinary,
        ] {
            sim.state.set_faults(Faults {
                subprotocol: mode,
                ..Faults::default()
            });
            let mut c = tcp_client(d.tcp("ins-demo0001")).await;
            rfb_handshake(&mut c, V38, None)
                .await
                .unwrap_or_else(|e| panic!("{mode:?}: {e}"));
        }
        sim.state.set_faults(Faults {
            subprotocol: SubprotocolMode::Base64,
            ..Faults::default()
        });
        let mut c = tcp_client(d.tcp("ins-demo0001")).await;
        let r = rfb_handshake(&mut c, V38, None)
            .await
            .expect_err("not offered");
        assert!(r.contains("\"base64\", which tcvnc did not offer"), "{r}");
        assert!(d.stop().await);
    })
    .await;
}

/// An upstream drop closes the websocket client with 1011 and a reason; a client drop
/// closes the upstream with 1000.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drops_propagate_both_ways() {
    within(async {
        let sim = sim().await;
        let mut d = TestDaemon::start(&sim, &Opts::targets(&["ins-demo0001"])).await;
        let mut events = sim.state.events();
        // Client drop → upstream closed normally.
        let (mut ws, _) = ws_connect(
            d.http.expect("http"),
            "/vnc/ins-demo0001",
            None,
            Some("binary"),
        )
        .await
        .expect("ws");
        rfb_handshake(&mut ws, V38, None).await.expect("handshake");
        ws.close(1000, "bye").await;
        let e = wait_event(&mut events, |e| !matches!(e, GatewayEvent::Accepted(_))).await;
        assert_eq!(e, GatewayEvent::ClosedByClient(Some(1000)));
        // Upstream drop → client told why.
        sim.state.set_faults(Faults {
            drop_after_bytes: Some(2000),
            ..Faults::default()
        });
        let (mut ws, _) = ws_connect(
            d.http.expect("http"),
            "/vnc/ins-demo0001",
            None,
            Some("binary"),
        )
        .await
        .expect("ws");
        rfb_handshake(&mut ws, V38, None).await.expect("handshake");
        ws.send(Bytes::from_static(&[3, 0, 0, 0, 0, 0, 2, 128, 1, 224]))
            .await
            .expect("FBUR");
        let closed = loop {
            match ws.recv().await {
                Recv::Data(_) => continue,
                other => break other,
            }
        };
        match closed {
            Recv::Closed(Some((code, reason))) => {
                assert_eq!(code, 1011);
                assert_eq!(reason, "connection to the console lost");
            }
            other => panic!("expected a close frame, got {other:?}"),
        }
        assert!(d.stop().await);
    })
    .await;
}

/// Shutdown closes live sessions with 1001 and drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_with_1001() {
    within(async {
        let sim = sim().await;
        let mut d = TestDaemon::start(&sim, &Opts::targets(&["ins-demo0001"])).await;
        let (mut ws, _) = ws_connect(
            d.http.expect("http"),
            "/vnc/ins-demo0001",
            None,
            Some("binary"),
        )
        .await
        .expect("ws");
        rfb_handshake(&mut ws, V38, None).await.expect("handshake");
        let mut events = sim.state.events();
        let stopper = tokio::spawn(async move { d.stop().await });
        let closed = loop {
            match ws.recv().await {
                Recv::Data(_) => continue,
                other => break other,
            }
        };
        assert!(
            matches!(closed, Recv::Closed(Some((1001, _)))),
            "{closed:?}"
        );
        assert!(
            stopper.await.expect("join"),
            "drained within the grace period"
        );
        let e = wait_event(&mut events, |_| true).await;
        assert_eq!(e, GatewayEvent::ClosedByClient(Some(1001)));
    })
    .await;
}

/// Cross-site websocket requests are refused; same-origin and listed origins pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_websocket_refused() {
    within(async {
        let sim = sim().await;
        let mut o = Opts::targets(&["ins-demo0001"]);
        o.http = Some("allowed_origins = [\"https://console.example.com\"]".into());
        let mut d = TestDaemon::start(&sim, &o).await;
        let http = d.http.expect("http");
        let e = ws_connect(
            http,
            "/vnc/ins-demo0001",
            Some("https://evil.example"),
            None,
        )
        .await
        .expect_err("refused");
        match e {
            tokio_tungstenite::tungstenite::Error::Http(r) => assert_eq!(r.status(), 403),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            sim.state.mints("ins-demo0001"),
            0,
            "a refused request spends nothing"
        );
        let (mut ws, _) = ws_connect(
            http,
            "/vnc/ins-demo0001",
            Some(&format!("http://{http}")),
            None,
        )
        .await
        .expect("same origin");
        rfb_handshake(&mut ws, V38, None).await.expect("handshake");
        drop(ws);
        // The console is exclusive: the first session lets go first.
        d.app
            .watch_sessions()
            .wait_for(|n| *n == 0)
            .await
            .expect("w");
        let (mut ws, _) = ws_connect(
            http,
            "/vnc/ins-demo0001",
            Some("https://console.example.com"),
            None,
        )
        .await
        .expect("listed");
        rfb_handshake(&mut ws, V38, None)
            .await
            .expect("listed origin");
        let e = ws_connect(http, "/vnc/ins-nothere1", None, None)
            .await
            .expect_err("unknown");
        assert!(
            matches!(e, tokio_tungstenite::tungstenite::Error::Http(ref r) if r.status() == 404),
            "{e:?}"
        );
        assert!(d.stop().await);
    })
    .await;
}

/// One console per instance: a second viewer is refused naming the holder, or takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_console_reject_and_takeover() {
    within(async {
        let sim = sim().await;
        let mut o = Opts::targets(&["ins-demo0001", "ins-demo0002"]);
        o.targets = o.targets.replacen(
            "instance = \"ins-demo0002\"\n",
            "instance = \"ins-demo0002\"\non_busy = \"takeover\"\n",
            1,
        );
        let mut d = TestDaemon::start(&sim, &o).await;
        let mut first = tcp_client(d.tcp("ins-demo0001")).await;
        rfb_handshake(&mut first, V38, None).await.expect("first");
        let mut second = tcp_client(d.tcp("ins-demo0001")).await;
        let reason = rfb_handshake(&mut second, V38, None)
            .await
            .expect_err("busy");
        assert!(
            reason.starts_with("the console of ins-demo0001 is in use by another viewer since 20"),
            "{reason}"
        );
        assert_eq!(
            sim.state.mints("ins-demo0001"),
            1,
            "a refused viewer spends nothing"
        );

        let (mut a, _) = ws_connect(d.http.expect("http"), "/vnc/ins-demo0002", None, None)
            .await
            .expect("ws");
        rfb_handshake(&mut a, V38, None).await.expect("holder");
        let mut b = tcp_client(d.tcp("ins-demo0002")).await;
        rfb_handshake(&mut b, V38, None).await.expect("takes over");
        let closed = loop {
            match a.recv().await {
                Recv::Data(_) => continue,
                other => break other,
            }
        };
        match closed {
            Recv::Closed(Some((1000, reason))) => {
                assert_eq!(reason, "console taken over by another viewer")
            }
            other => panic!("{other:?}"),
        }
        drop(first);
        assert!(d.stop().await);
    })
    .await;
}

/// /healthz and /readyz answer without touching the cloud.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_endpoints() {
    within(async {
        let sim = sim().await;
        let mut d = TestDaemon::start(&sim, &Opts::targets(&["ins-demo0001"])).await;
        let before = sim.state.stats().api_requests;
        for path in ["/healthz", "/readyz"] {
            let mut s = tokio::net::TcpStream::connect(d.http.expect("http"))
                .await
                .expect("c");
            s.write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .expect("w");
            let mut out = String::new();
            s.read_to_string(&mut out).await.expect("r");
            assert!(out.starts_with("HTTP/1.1 200"), "{path}: {out}");
        }
        assert_eq!(sim.state.stats().api_requests, before);
        assert!(d.stop().await);
    })
    .await;
}

/// A slow client (1 KiB every 10 ms) behind a flooding backend: tcvnc holds no more than
/// its fixed buffers, measured by the bytes it received upstream but had not yet written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_client_bounded_memory() {
    within(async {
        let flood = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let flood_addr = flood.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = flood.accept().await {
                tokio::spawn(async move {
                    let chunk = vec![0x5au8; 64 * 1024];
                    while s.write_all(&chunk).await.is_ok() {}
                });
            }
        });
        let sim = sim_with(SimOptions {
            backend: Some(flood_addr.to_string()),
            ..Default::default()
        })
        .await;
        let mut d = TestDaemon::start(&sim, &transparent(&["ins-demo0001"])).await;
        let mut s = tokio::net::TcpStream::connect(d.tcp("ins-demo0001"))
            .await
            .expect("connect");
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let mut buf = [0u8; 1024];
        for _ in 0..300 {
            tick.tick().await;
            s.read_exact(&mut buf).await.expect("read");
        }
        let live = d.app.live_sessions();
        assert_eq!(live.len(), 1);
        let c = &live[0].counters;
        let held = c.max_buffered.load(std::sync::atomic::Ordering::Relaxed);
        let from_upstream = c.from_upstream.load(std::sync::atomic::Ordering::Relaxed);
        // The gateway sends 64 KiB messages; tcvnc holds at most one batch of them.
        assert!(held <= 2 * tcvnc::client::CHUNK as u64, "held {held} bytes");
        // Backpressure reached the upstream: it sent little more than the client read
        // plus the kernel's and websocket's buffers, far from a flood.
        assert!(
            from_upstream < 32 << 20,
            "tcvnc pulled {from_upstream} bytes from a 300 KiB reader"
        );
        drop(s);
        assert!(d.stop().await);
    })
    .await;
}

/// A viewer like noVNC over the websocket: set a pixel format and encodings, take a full
/// update, then many incremental ones; every message is well framed and every pixel of
/// the full update matches the pattern.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_viewer_gets_well_framed_updates() {
    within(async {
        let sim = sim().await;
        let mut d = TestDaemon::start(&sim, &Opts::targets(&["ins-demo0001"])).await;
        let (mut ws, _) = ws_connect(d.http.expect("http"), "/vnc/ins-demo0001", None, None)
            .await
            .expect("ws");
        rfb_handshake(&mut ws, V38, None).await.expect("handshake");
        // noVNC's pixel format: 32 bpp, depth 24, little endian, red shift 0.
        let mut spf = vec![
            0u8, 0, 0, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 0, 8, 16, 0, 0, 0,
        ];
        spf.extend_from_slice(&[2, 0, 0, 2, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x21]);
        ws.send(Bytes::from(spf)).await.expect("spf+encodings");
        for i in 0..12u32 {
            let incremental = u8::from(i > 0);
            ws.send(Bytes::from(vec![
                3,
                incremental,
                0,
                0,
                0,
                0,
                2,
                128,
                1,
                224,
            ]))
            .await
            .expect("fbur");
            let mut head = [0u8; 4];
            ws.read_exact(&mut head).await.expect("head");
            assert_eq!(
                head[0], 0,
                "update {i}: FramebufferUpdate expected, got type {}",
                head[0]
            );
            let n = u16::from_be_bytes([head[2], head[3]]);
            for _ in 0..n {
                let mut r = [0u8; 12];
                ws.read_exact(&mut r).await.expect("rect");
                let (x, y, w, h) = (
                    u16::from_be_bytes([r[0], r[1]]),
                    u16::from_be_bytes([r[2], r[3]]),
                    u16::from_be_bytes([r[4], r[5]]),
                    u16::from_be_bytes([r[6], r[7]]),
                );
                assert_eq!(&r[8..], &[0, 0, 0, 0], "raw encoding");
                assert!(
                    x + w <= 640 && y + h <= 480,
                    "update {i}: rect {x},{y} {w}x{h}"
                );
                let mut px = vec![0u8; usize::from(w) * usize::from(h) * 4];
                ws.read_exact(&mut px).await.expect("pixels");
                if i == 0 {
                    // Red is the low byte in this format; the bars at y=10 are the pattern's.
                    for bx in (0..640u16).step_by(80) {
                        let off = (10 * 640 + usize::from(bx) + 5) * 4;
                        let want = tcvnc::sim::rfb_server::pattern(bx + 5, 10, 0);
                        assert_eq!(
                            (px[off], px[off + 1], px[off + 2]),
                            want,
                            "pixel at {bx},10"
                        );
                    }
                }
            }
        }
        drop(ws);
        assert!(d.stop().await);
    })
    .await;
}
