//! The simulator's knobs for console mode, end to end over its API and TLS gateway: the
//! gateway's idle cut, instance reboots, and the test pattern's input log.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tcvnc::rfb::handshake::RfbIo;
use tcvnc::sim::{GatewayEvent, SimHandle, SimInput};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type GatewayWs = WebSocketStream<TlsStream<TcpStream>>;

/// Opens `url` on the simulator's gateway with tungstenite over rustls (a peer that shows
/// pongs and close frames as they come, independent of tcvnc's websocket code).
async fn dial(sim: &SimHandle, url: &tcvnc::cloud::VncUrl) -> Result<GatewayWs, String> {
    let tcp = TcpStream::connect((url.host(), url.port()))
        .await
        .expect("connect");
    let tls = tokio_rustls::TlsConnector::from(
        tcvnc::tls::client_config(Some(&sim.ca_file)).expect("tls"),
    );
    let name = rustls_pki_types::ServerName::try_from(url.host().to_owned()).expect("name");
    let stream = tls.connect(name, tcp).await.expect("TLS");
    tokio_tungstenite::client_async(url.expose(), stream)
        .await
        .map(|(ws, _)| ws)
        .map_err(|e| e.to_string())
}

/// Mints a URL for `instance`, opens it and reads the test pattern's greeting.
async fn open(sim: &SimHandle, instance: &str) -> GatewayWs {
    let m = mint(&client(sim), instance, "ap-guangzhou")
        .await
        .expect("mint");
    let mut ws = dial(sim, &m.url).await.expect("dial");
    assert_eq!(data(&mut ws).await, b"RFB 003.008\n");
    ws
}

/// The next data message.
async fn data(ws: &mut GatewayWs) -> Vec<u8> {
    match ws.next().await {
        Some(Ok(Message::Binary(b))) => b.to_vec(),
        other => panic!("expected data, got {other:?}"),
    }
}

/// Sends bytes as one binary message.
async fn send(ws: &mut GatewayWs, bytes: &[u8]) {
    ws.send(Message::binary(bytes.to_vec()))
        .await
        .expect("send");
}

/// Answers the test pattern's handshake (3.8, security None, shared) after its greeting;
/// returns the desktop name.
async fn handshake(ws: &mut GatewayWs) -> String {
    send(ws, b"RFB 003.008\n").await;
    assert_eq!(data(ws).await, [1, 1], "security type None offered");
    send(ws, &[1]).await;
    let mut got = Vec::new();
    while got.len() < 4 {
        got.extend(data(ws).await);
    }
    assert_eq!(got, [0, 0, 0, 0], "security result ok");
    send(ws, &[1]).await;
    let mut init = Vec::new();
    loop {
        init.extend(data(ws).await);
        if init.len() >= 24 {
            let len = u32::from_be_bytes([init[20], init[21], init[22], init[23]]) as usize;
            if init.len() >= 24 + len {
                return String::from_utf8_lossy(&init[24..24 + len]).into_owned();
            }
        }
    }
}

/// POSTs `body` to the simulator's control path `path`: status and JSON answer.
async fn control(sim: &SimHandle, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let r = http_client()
        .post(format!("{}{path}", sim.api_url))
        .json(&body)
        .send()
        .await
        .expect("POST");
    (r.status().as_u16(), r.json().await.expect("json"))
}

/// GETs the simulator's control path `path`: status and JSON answer.
async fn control_get(sim: &SimHandle, path: &str) -> (u16, serde_json::Value) {
    let r = http_client()
        .get(format!("{}{path}", sim.api_url))
        .send()
        .await
        .expect("GET");
    (r.status().as_u16(), r.json().await.expect("json"))
}

/// `instance`'s state as `DescribeInstancesStatus` and `DescribeInstances` report it;
/// asserts they agree.
async fn reported_state(sim: &SimHandle, instance: &str) -> String {
    let ids = json!({ "InstanceIds": [instance] });
    let status = signed_call(&sim.api_url, "DescribeInstancesStatus", &ids).await;
    let listed = signed_call(&sim.api_url, "DescribeInstances", &ids).await;
    let a = status["Response"]["InstanceStatusSet"][0]["InstanceState"].clone();
    let b = listed["Response"]["InstanceSet"][0]["InstanceState"].clone();
    assert_eq!(a, b, "{status} {listed}");
    a.as_str().expect("a state").to_owned()
}

/// With `"idle_cut": "30s"` (JSON through `/_sim/faults`), a session whose client sent
/// data at 20 s and only a ping at 40 s (answered) is closed at 50 s with 1000 "idle
/// timeout", and the gateway reports the cut. Time moves only by `advance`.
#[test]
fn idle_cut_closes_a_quiet_session() {
    manual_time(|| async {
        let sim = sim().await;
        let (status, faults) = control(&sim, "/_sim/faults", json!({"idle_cut": "30s"})).await;
        assert_eq!(status, 200);
        assert_eq!(faults["idle_cut"], "30s");
        assert_eq!(sim.state.faults().idle_cut, Some(Duration::from_secs(30)));
        let mut events = sim.state.events();
        let mut ws = open(&sim, "ins-demo0001").await;
        tokio::time::advance(Duration::from_secs(20)).await;
        // Data at 20 s: the answer shows the gateway read it.
        send(&mut ws, b"RFB 003.008\n").await;
        assert_eq!(data(&mut ws).await, [1, 1]);
        tokio::time::advance(Duration::from_secs(20)).await;
        // A ping at 40 s, past the first 30 s: answered, the session is still there.
        ws.send(Message::Ping(vec![7].into())).await.expect("ping");
        match ws.next().await {
            Some(Ok(Message::Pong(p))) => assert_eq!(&p[..], [7]),
            other => panic!("expected the pong, got {other:?}"),
        }
        tokio::time::advance(Duration::from_secs(10)).await;
        match ws.next().await {
            Some(Ok(Message::Close(Some(f)))) => {
                assert_eq!(u16::from(f.code), 1000);
                assert_eq!(f.reason.as_str(), "idle timeout");
            }
            other => panic!("expected close 1000 at 50 s, got {other:?}"),
        }
        let e = wait_event(&mut events, |e| !matches!(e, GatewayEvent::Accepted(_))).await;
        assert_eq!(
            e,
            GatewayEvent::Ended("idle cut: no data from the client for 30s".into())
        );
        sim.shutdown().await;
    });
}

/// A reboot through `POST /_sim/reboot` drops the instance's live session at once and
/// without a close frame (another instance's carries on); the instance reads STOPPED,
/// then STARTING, in `DescribeInstancesStatus` and `DescribeInstances`; URLs are refused
/// with each state's code, and a URL minted before the reboot is refused at the gateway.
/// Once RUNNING, a new session reaches a test pattern that starts again at frame 0.
#[test]
fn reboot_drops_sessions_and_comes_back() {
    manual_time(|| async {
        let sim = sim().await;
        // A client per call: one client's API limiter spaces its calls 100 ms apart,
        // and time moves only by `advance` here.
        let c = || client(&sim);
        let mut events = sim.state.events();
        let mut victim = open(&sim, "ins-demo0001").await;
        let mut bystander = open(&sim, "ins-demo0002").await;
        let early = mint(&c(), "ins-demo0001", "ap-guangzhou")
            .await
            .expect("minted before the reboot");
        let (status, body) = control(
            &sim,
            "/_sim/reboot",
            json!({"instance": "ins-demo0001", "stopped": "5s", "starting": "3s"}),
        )
        .await;
        assert_eq!((status, &body["state"]), (200, &json!("STOPPED")), "{body}");
        let e = wait_event(&mut events, |e| matches!(e, GatewayEvent::Ended(_))).await;
        assert_eq!(
            e,
            GatewayEvent::Ended("dropped by reboot of ins-demo0001".into())
        );
        match victim.next().await {
            None | Some(Err(_)) => {}
            other => panic!("expected an abrupt end, got {other:?}"),
        }
        assert_eq!(reported_state(&sim, "ins-demo0001").await, "STOPPED");
        let refused = mint(&c(), "ins-demo0001", "ap-guangzhou")
            .await
            .expect_err("stopped");
        assert_eq!(refused.code(), Some("InvalidInstanceState"));
        let e = dial(&sim, &early.url).await.expect_err("not running");
        assert!(e.contains("403"), "{e}");
        assert_eq!(
            sim.state
                .stats()
                .gateway_refused
                .get("instance not running"),
            Some(&1)
        );
        let (status, body) =
            control(&sim, "/_sim/reboot", json!({"instance": "ins-demo0001"})).await;
        assert_eq!(status, 409, "{body}");

        tokio::time::advance(Duration::from_secs(5)).await;
        sim.state
            .wait_state("ins-demo0001", "STARTING")
            .await
            .expect("starting");
        assert_eq!(reported_state(&sim, "ins-demo0001").await, "STARTING");
        let refused = mint(&c(), "ins-demo0001", "ap-guangzhou")
            .await
            .expect_err("starting");
        assert_eq!(
            refused.code(),
            Some("UnsupportedOperation.InstanceStateStarting")
        );

        tokio::time::advance(Duration::from_secs(3)).await;
        sim.state
            .wait_state("ins-demo0001", "RUNNING")
            .await
            .expect("running");
        assert_eq!(reported_state(&sim, "ins-demo0001").await, "RUNNING");
        let mut fresh = open(&sim, "ins-demo0001").await;
        assert_eq!(
            handshake(&mut fresh).await,
            "tcvnc test pattern (ins-demo0001)"
        );
        // The square's top row from x = 0: white only at frame 0.
        send(&mut fresh, &[3, 0, 0, 0, 0, 208, 0, 64, 0, 1]).await;
        let mut update = Vec::new();
        while update.len() < 16 + 64 * 4 {
            update.extend(data(&mut fresh).await);
        }
        assert!(
            update[16..].iter().all(|&b| b == 255),
            "a restarted test pattern starts at frame 0"
        );
        // The other instance's session never noticed.
        assert_eq!(
            handshake(&mut bystander).await,
            "tcvnc test pattern (ins-demo0002)"
        );

        let (status, body) =
            control(&sim, "/_sim/reboot", json!({"instance": "ins-nothere1"})).await;
        assert_eq!(status, 404);
        assert_eq!(body["error"], "unknown instance ins-nothere1");
        sim.shutdown().await;
    });
}

/// What a viewer sends through tcvnc reaches the instance's input log in order (key,
/// pointer, QEMU extended key, cut text; update requests are not logged), in process and
/// at `GET /_sim/input` (404 for an unknown instance, 400 without one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_log_records_what_a_viewer_sends() {
    within(async {
        let sim = sim().await;
        let mut d = TestDaemon::start(&sim, &Opts::targets(&["ins-demo0001"])).await;
        let mut c = tcp_client(d.tcp("ins-demo0001")).await;
        rfb_handshake(&mut c, V38, None).await.expect("handshake");
        let mut msgs = vec![4, 1, 0, 0, 0, 0, 0xff, 0xe3]; // Control_L down
        msgs.extend_from_slice(&[5, 4, 1, 0, 0, 200]); // button 3 at (256, 200)
        msgs.extend_from_slice(&[255, 0, 0, 0, 0, 0, 0xff, 0xe3, 0, 0, 0, 0x1d]);
        msgs.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 5]);
        msgs.extend_from_slice(b"hello");
        c.write_all(&msgs).await.expect("inputs");
        let want = vec![
            SimInput::Key {
                down: true,
                keysym: 0xffe3,
            },
            SimInput::Pointer {
                mask: 4,
                x: 256,
                y: 200,
            },
            SimInput::QemuKey {
                down: false,
                keysym: 0xffe3,
                keycode: 0x1d,
            },
            SimInput::CutText {
                length: 5,
                text: Some("hello".into()),
            },
        ];
        assert_eq!(sim.state.wait_inputs("ins-demo0001", 4).await, want);
        assert!(sim.state.input_log("ins-demo0002").is_empty());
        let (status, body) = control_get(&sim, "/_sim/input?instance=ins-demo0001").await;
        assert_eq!(status, 200);
        assert_eq!(body["total"], 4);
        assert_eq!(body["inputs"], serde_json::to_value(&want).expect("json"));
        assert_eq!(
            body["inputs"][0],
            json!({"kind": "key", "down": true, "keysym": 0xffe3})
        );
        let (status, _) = control_get(&sim, "/_sim/input?instance=ins-nothere1").await;
        assert_eq!(status, 404);
        let (status, _) = control_get(&sim, "/_sim/input").await;
        assert_eq!(status, 400);
        drop(c);
        assert!(d.stop().await);
    })
    .await;
}
