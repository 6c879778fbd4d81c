//! Fault injection through the simulator's knobs: for each fault, what the viewer sees,
//! what the log says, and that a session already running on another instance is unaffected.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use tcvnc::rfb::handshake::RfbIo;
use tcvnc::sim::Faults;
use tcvnc::ws::Recv;

fn logs() -> String {
    captured_logs(tracing::Level::INFO)
}

/// A bridged session on ins-demo0002, opened before the fault.
async fn bystander(d: &TestDaemon) -> TcpClient {
    let mut c = tcp_client(d.tcp("ins-demo0002")).await;
    rfb_handshake(&mut c, V38, None)
        .await
        .expect("bystander session");
    c
}

/// The bystander still gets a framebuffer update.
async fn still_alive(c: &mut TcpClient) {
    c.write_all(&[3, 0, 0, 0, 0, 0, 0, 16, 0, 16])
        .await
        .expect("fbur");
    let mut head = [0u8; 4];
    c.read_exact(&mut head)
        .await
        .expect("update after the fault");
    assert_eq!(head[0], 0);
    let mut rect = [0u8; 12];
    c.read_exact(&mut rect).await.expect("rect");
    let (w, h) = (
        u16::from_be_bytes([rect[4], rect[5]]),
        u16::from_be_bytes([rect[6], rect[7]]),
    );
    let mut px = vec![0u8; usize::from(w) * usize::from(h) * 4];
    c.read_exact(&mut px).await.expect("pixels");
}

async fn reason(d: &TestDaemon) -> String {
    let mut c = tcp_client(d.tcp("ins-demo0001")).await;
    rfb_handshake(&mut c, V38, None).await.expect_err("refused")
}

fn opts() -> Opts {
    let mut o = Opts::targets(&["ins-demo0001", "ins-demo0002"]);
    o.cloud = "timeout = \"1s\"\nconnect_timeout = \"1s\"";
    o
}

/// API errors and slowness: each reaches the viewer with its cause, retries stay bounded,
/// the log names it, and the running session carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_faults() {
    logs();
    within(async {
        let sim = sim().await;
        let mut d = TestDaemon::start(&sim, &opts()).await;
        let mut live = d.app.watch_sessions();
        let mut by = bystander(&d).await;
        let api_host = sim.api_url.trim_start_matches("http://").to_owned();
        let cases: Vec<(&str, Faults, String)> = vec![
            ("latency beyond the timeout", Faults { latency: Some(Duration::from_secs(3)), ..Faults::default() },
                "no usable answer from the Tencent Cloud API: try again in a few seconds".into()),
            ("HTTP 500", Faults { http_500: 100, ..Faults::default() },
                "no usable answer from the Tencent Cloud API: try again in a few seconds".into()),
            ("InternalError", Faults { error_code: Some("InternalError".into()), ..Faults::default() },
                "Tencent Cloud internal error (InternalError, RequestId ".into()),
            ("garbage answers", Faults { garbage: 100, ..Faults::default() },
                "no usable answer from the Tencent Cloud API: try again in a few seconds".into()),
            ("truncated JSON", Faults { truncated: 100, ..Faults::default() },
                "no usable answer from the Tencent Cloud API: try again in a few seconds".into()),
            ("RequestLimitExceeded storm", Faults { error_code: Some("RequestLimitExceeded".into()), ..Faults::default() },
                "Tencent Cloud API rate limit hit (RequestLimitExceeded): try again in a few seconds".into()),
        ];
        for (name, faults, want) in cases {
            sim.state.set_faults(faults);
            let r = reason(&d).await;
            assert!(r.starts_with(&want), "{name}: {r}");
            live.wait_for(|n| *n == 1).await.expect("w");
            still_alive(&mut by).await;
        }
        // A burst that clears is absorbed by the retries: the viewer never notices.
        sim.state.set_faults(Faults { error_code: Some("RequestLimitExceeded".into()), error_count: 2, ..Faults::default() });
        let mut c = tcp_client(d.tcp("ins-demo0001")).await;
        rfb_handshake(&mut c, V38, None).await.expect("absorbed");
        drop(c);
        let text = logs();
        assert!(text.contains("session refused") && text.contains("outcome=\"cloud\""), "the log names the refusal");
        assert!(text.contains("InternalError"));
        // The log has what the viewer is spared: the API host and the cause.
        for detail in [
            format!("no answer from Tencent Cloud API at {api_host} (a URL may have been spent)"),
            format!("no usable answer from Tencent Cloud API at {api_host} (a URL may have been spent): HTTP status 500"),
            "unparsable response (not JSON".to_owned(),
        ] {
            assert!(text.contains(&detail), "{detail}");
        }
        still_alive(&mut by).await;
        drop(by);
        assert!(d.stop().await);
    })
    .await;
}

/// The gateway's certificate is not trusted: refused (never bypassed), the viewer reads
/// why, the log says it at error level with the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_gateway_certificate() {
    logs();
    within(async {
        let sim = sim().await;
        let mut o = opts();
        o.upstream = "origin = \"https://img.qcloud.com\"";
        let text = config_text(&sim, &o);
        // No ca_file: the simulator's private CA is unknown.
        let text: String = text
            .lines()
            .filter(|l| !l.starts_with("ca_file"))
            .map(|l| format!("{l}\n"))
            .collect();
        let mut d = TestDaemon::from_text(&text).await;
        let addr = d.tcp("ins-demo0001");
        let mut c = tcp_client(addr).await;
        let r = rfb_handshake(&mut c, V38, None)
            .await
            .expect_err("untrusted");
        let gw = sim.gateway_url.trim_start_matches("wss://");
        assert_eq!(
            r,
            "the console gateway's TLS certificate was not accepted: the operator must check tcvnc's log"
        );
        let text = logs();
        assert!(
            text.contains("ERROR"),
            "a TLS failure is an operator problem: logged at error"
        );
        assert!(
            text.contains(&format!("TLS with the console gateway {gw} failed: invalid peer certificate"))
                && text.contains("if the gateway uses a private CA, set upstream.ca_file"),
            "the log names the cause and the fix"
        );
        assert_eq!(
            sim.state.stats().gateway_accepted,
            0,
            "nothing was sent past the failed handshake"
        );
        assert!(d.stop().await);
    })
    .await;
}

/// The console stops answering (no data, no pongs): keepalive closes the session with a
/// reason; the bystander is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_upstream_caught_by_keepalive() {
    logs();
    within(async {
        let sim = sim().await;
        let mut o = opts();
        o.upstream = "keepalive = \"300ms\"\nmax_unanswered_pings = 2";
        let mut d = TestDaemon::start(&sim, &o).await;
        let mut by = bystander(&d).await;
        // Stall right after ServerInit: version 12 + types 2 + result 4 + init 24 + name.
        let after = 12 + 2 + 4 + 24 + "tcvnc test pattern (ins-demo0001)".len() as u64;
        sim.state.set_faults(Faults {
            stall_after_bytes: Some(after),
            ..Faults::default()
        });
        let (mut ws, _) = ws_connect(d.http.expect("http"), "/vnc/ins-demo0001", None, None)
            .await
            .expect("ws");
        rfb_handshake(&mut ws, V38, None)
            .await
            .expect("handshake before the stall");
        ws.send(Bytes::from_static(&[3, 0, 0, 0, 0, 0, 2, 128, 1, 224]))
            .await
            .expect("fbur");
        let closed = loop {
            match ws.recv().await {
                Recv::Data(_) => continue,
                other => break other,
            }
        };
        match closed {
            Recv::Closed(Some((code, text))) => {
                assert_eq!(code, 1011);
                assert_eq!(text, "the console stopped answering pings (2 unanswered)");
            }
            other => panic!("{other:?}"),
        }
        assert!(logs().contains("console stopped answering pings"));
        sim.state.set_faults(Faults::default());
        still_alive(&mut by).await;
        drop(by);
        assert!(d.stop().await);
    })
    .await;
}

/// The local clock is 15 minutes off: the signature is re-made with the server's time and
/// the viewer gets its console; the log tells the operator to fix NTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_skew_through_the_daemon() {
    logs();
    within(async {
        let sim = sim().await;
        let mut d = TestDaemon::start(&sim, &opts()).await;
        sim.state.set_clock_offset(-900);
        let mut c = tcp_client(d.tcp("ins-demo0001")).await;
        rfb_handshake(&mut c, V38, None).await.expect("re-signed");
        assert!(logs().contains("fix NTP"));
        drop(c);
        assert!(d.stop().await);
    })
    .await;
}
