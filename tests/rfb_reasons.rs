//! Every pre-bridge failure reaches a raw RFB client as a reason in the form its version
//! reads (3.3, 3.7, 3.8), and a websocket client as a close code and reason; local VNC
//! authentication, pass-through authentication and tcvnc-completed upstream auth.

mod common;

use std::net::SocketAddr;

use common::*;
use tcvnc::sim::{Faults, SimOptions};
use tcvnc::ws::Recv;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const VERSIONS: [&[u8; 12]; 3] = [V33, V37, V38];

/// The reason a refused viewer reads, with the RequestId to quote (random) taken out.
async fn reason_for(addr: SocketAddr, v: &[u8; 12]) -> String {
    let mut c = tcp_client(addr).await;
    without_request_id(&rfb_handshake(&mut c, v, None).await.expect_err("refused"))
}

fn without_request_id(r: &str) -> String {
    match r.split_once(", RequestId ") {
        Some((head, tail)) => {
            let id_end = tail.find(')').unwrap_or(tail.len());
            assert!(id_end >= 8, "a RequestId to quote: {r}");
            format!("{head}{}", &tail[id_end..])
        }
        None => r.to_owned(),
    }
}

async fn expect_reason_all_versions(d: &TestDaemon, instance: &str, want: &str) {
    let mut live = d.app.watch_sessions();
    for v in VERSIONS {
        let got = reason_for(d.tcp(instance), v).await;
        assert_eq!(got, want, "{}", String::from_utf8_lossy(v).trim());
        live.wait_for(|n| *n == 0).await.expect("watch");
    }
}

/// Permanent API errors of each class, with the instance, code and fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_error_reasons() {
    within(async {
        let sim = sim().await;
        let mut d = TestDaemon::start(&sim, &Opts::targets(&["ins-demo0001", "ins-stopped1", "ins-nothere1"])).await;
        expect_reason_all_versions(&d, "ins-stopped1", "instance ins-stopped1 is stopped: start it, then reconnect").await;
        expect_reason_all_versions(
            &d,
            "ins-nothere1",
            "instance ins-nothere1 not found in ap-guangzhou for this account (InvalidInstanceId.NotFound): check the instance ID and region",
        )
        .await;
        let forced = [
            ("UnauthorizedOperation", "tcvnc's cloud identity may not open the console of ins-demo0001 (UnauthorizedOperation): ask the operator"),
            ("AuthFailure.SecretIdNotFound", "Tencent Cloud refused tcvnc's credentials (AuthFailure.SecretIdNotFound): the operator must fix them"),
            ("OperationDenied.InstanceOperationInProgress", "an operation on ins-demo0001 is in progress (OperationDenied.InstanceOperationInProgress): retry when it ends"),
            ("InvalidInstance.NotSupported", "VNC is not supported for ins-demo0001 (InvalidInstance.NotSupported)"),
            ("InvalidInstanceId.Malformed", "'ins-demo0001' is not a valid instance ID (InvalidInstanceId.Malformed): use ins-xxxxxxxx or lhins-xxxxxxxx"),
            ("UnsupportedRegion", "Tencent Cloud rejected tcvnc's request (UnsupportedRegion): the operator should check the region and endpoint"),
        ];
        for (code, want) in forced {
            sim.state.set_faults(Faults { error_code: Some(code.into()), ..Faults::default() });
            expect_reason_all_versions(&d, "ins-demo0001", want).await;
        }
        sim.state.set_faults(Faults::default());
        // Websocket clients get the same words as the close reason, code 1011.
        let (mut ws, _) = ws_connect(d.http.expect("http"), "/vnc/ins-stopped1", None, None).await.expect("ws");
        let reason = rfb_handshake(&mut ws, V38, None).await.expect_err("refused");
        assert!(reason.starts_with("instance ins-stopped1 is stopped"));
        match ws.recv().await {
            Recv::Closed(Some((code, text))) => {
                assert_eq!(code, 1011);
                assert_eq!(text, "instance ins-stopped1 is stopped: start it, then reconnect");
            }
            other => panic!("{other:?}"),
        }
        assert!(d.stop().await);
    })
    .await;
}

/// A wrong SecretKey: the signature is refused and the viewer is told which credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_reason() {
    within(async {
        let sim = sim().await;
        sim.state.add_key(tcvnc::sim::SimKey {
            secret_id: "AKIDotherkey".into(),
            secret_key: "right".into(),
            token: None,
            expires_at: None,
        });
        let mut o = Opts::targets(&["ins-demo0001"]);
        o.targets.push('\n');
        let text = config_text(&sim, &o).replace(tcvnc::sim::DEMO_SECRET_ID, "AKIDotherkey").replace(tcvnc::sim::DEMO_SECRET_KEY, "wrong");
        let mut d = TestDaemon::from_text(&text).await;
        let addr = d.tcp("ins-demo0001");
        for v in VERSIONS {
            let r = reason_for(addr, v).await;
            assert_eq!(
                r,
                "Tencent Cloud refused tcvnc's credentials (AuthFailure.SignatureFailure): the operator must fix them"
            );
        }
        assert!(d.stop().await);
    })
    .await;
}

/// Budget exhausted, upstream dial failure and upstream RFB refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_dial_and_handshake_reasons() {
    within(async {
        // A backend that refuses every viewer the RFB 3.8 way.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let refusing = l.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let _ = s.write_all(b"RFB 003.008\n").await;
                    let mut v = [0u8; 12];
                    let _ = s.read_exact(&mut v).await;
                    let reason = b"Too many security failures";
                    let mut out = vec![0u8];
                    out.extend_from_slice(&(reason.len() as u32).to_be_bytes());
                    out.extend_from_slice(reason);
                    let _ = s.write_all(&out).await;
                });
            }
        });
        let sim = sim_with(SimOptions { backend: Some(refusing.to_string()), ..Default::default() }).await;
        let mut o = Opts::targets(&["ins-demo0001", "ins-demo0002"]);
        o.budget = "reconnects_per_minute = 4\nmax_wait = \"0s\"";
        let mut d = TestDaemon::start(&sim, &o).await;
        expect_reason_all_versions(&d, "ins-demo0001", "the console refused the connection: Too many security failures").await;
        // Three URLs spent on ins-demo0001; the gateway refuses the fourth's token.
        sim.state.set_faults(Faults { refuse_tokens: true, ..Faults::default() });
        let gw = sim.gateway_url.trim_start_matches("wss://").to_owned();
        let r = reason_for(d.tcp("ins-demo0001"), V38).await;
        assert_eq!(r, format!("the console gateway {gw} refused the console URL (HTTP 403: token refused (fault knob))"));
        d.app.watch_sessions().wait_for(|n| *n == 0).await.expect("watch");
        // Now the budget of 4 is spent: every version reads when the next URL comes.
        for v in VERSIONS {
            let r = reason_for(d.tcp("ins-demo0001"), v).await;
            let secs: u64 = r
                .strip_prefix("reconnect budget for ins-demo0001 used up (4 per minute): next URL in ")
                .and_then(|t| t.strip_suffix(" s"))
                .unwrap_or_else(|| panic!("{r}"))
                .parse()
                .expect("seconds");
            assert!((50..=60).contains(&secs), "{r}");
        }
        assert_eq!(sim.state.mints("ins-demo0001"), 4);
        assert!(d.stop().await);
    })
    .await;
}

fn secret_file(dir: &tempfile::TempDir, name: &str, value: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, value).expect("write");
    p.display().to_string()
}

/// A target with a local password: right password connects, wrong ones are refused
/// (3.8 with a reason) and spend nothing upstream; the address that failed backs off and
/// is told so at once, other addresses are not held back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_password() {
    within(async {
        let sim = sim().await;
        let dir = tempfile::tempdir().expect("tmp");
        let pw = secret_file(&dir, "pw", "hunter2\n");
        let mut o = Opts::targets(&[]);
        o.targets = format!("[[target]]\ninstance = \"ins-demo0001\"\nlisten = \"127.0.0.1:0\"\npassword_file = \"{pw}\"\n");
        let mut d = TestDaemon::start(&sim, &o).await;
        let addr = d.tcp("ins-demo0001");
        let mut live = d.app.watch_sessions();
        let ip = "127.0.0.1".parse().expect("ip");

        let mut c = tcp_client(addr).await;
        assert_eq!(rfb_handshake(&mut c, V38, Some("wrong")).await.expect_err("wrong"), "authentication failed: wrong password");
        assert_eq!(d.app.guard.failures(ip), 1);
        drop(c);
        assert_eq!(sim.state.mints("ins-demo0001"), 0, "no URL for a wrong password");

        // The same address at once: refused before any challenge, saying how long to wait.
        let mut c = tcp_client(addr).await;
        let r = rfb_handshake(&mut c, V38, Some("hunter2")).await.expect_err("backing off");
        assert!(r.starts_with("too many wrong passwords from your address: wait "), "{r}");
        drop(c);

        // Another address is not held back.
        let mut c = tcp_client_from([127, 0, 0, 2], addr).await;
        let name = rfb_handshake(&mut c, V38, Some("hunter2")).await.expect("right password");
        assert_eq!(name, "tcvnc test pattern (ins-demo0001)");
        drop(c);
        live.wait_for(|n| *n == 0).await.expect("w");

        for (i, v) in [V37, V33].into_iter().enumerate() {
            let mut c = tcp_client_from([127, 0, 0, 10 + i as u8], addr).await;
            let r = rfb_handshake(&mut c, v, Some("nope")).await.expect_err("wrong");
            assert_eq!(r, "<no reason>", "3.3 and 3.7 carry no reason");
            drop(c);
        }
        let mut c = tcp_client_from([127, 0, 0, 20], addr).await;
        rfb_handshake(&mut c, V33, Some("hunter2")).await.expect("3.3 with the right password");
        assert_eq!(d.app.guard.failures("127.0.0.20".parse().expect("ip")), 0, "success clears the count");
        assert_eq!(sim.state.mints("ins-demo0001"), 2);
        drop(c);
        assert!(d.stop().await);
    })
    .await;
}

/// The console demands a VNC password: passed through from the viewer, or answered by
/// tcvnc with upstream_password_file; without either behind a local password, refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_vnc_auth() {
    within(async {
        let sim = sim_with(SimOptions { backend_password: Some("consolpw".into()), ..Default::default() }).await;
        let dir = tempfile::tempdir().expect("tmp");
        let up = secret_file(&dir, "up", "consolpw");
        let local = secret_file(&dir, "local", "local-pw");
        let mut o = Opts::targets(&[]);
        o.targets = format!(
            "[[target]]\ninstance = \"ins-demo0001\"\nlisten = \"127.0.0.1:0\"\n\
             [[target]]\ninstance = \"ins-demo0002\"\nlisten = \"127.0.0.1:0\"\nupstream_password_file = \"{up}\"\n\
             [[target]]\ninstance = \"ins-demo0003\"\nlisten = \"127.0.0.1:0\"\npassword_file = \"{local}\"\n"
        );
        let mut d = TestDaemon::start(&sim, &o).await;
        let mut live = d.app.watch_sessions();
        // Pass-through: the viewer's password answers the console.
        for v in VERSIONS {
            let mut c = tcp_client(d.tcp("ins-demo0001")).await;
            rfb_handshake(&mut c, v, Some("consolpw")).await.expect("passed through");
            drop(c);
            live.wait_for(|n| *n == 0).await.expect("w");
        }
        let mut c = tcp_client(d.tcp("ins-demo0001")).await;
        let r = rfb_handshake(&mut c, V38, Some("bad")).await.expect_err("console refuses");
        assert_eq!(r, "authentication failed: Authentication failed");
        drop(c);
        live.wait_for(|n| *n == 0).await.expect("w");
        // tcvnc answers with upstream_password_file; the viewer sees None.
        let mut c = tcp_client(d.tcp("ins-demo0002")).await;
        rfb_handshake(&mut c, V37, None).await.expect("completed by tcvnc");
        drop(c);
        // A local password but no console password: refused after local auth, saying why.
        let mut c = tcp_client(d.tcp("ins-demo0003")).await;
        let r = rfb_handshake(&mut c, V38, Some("local-pw")).await.expect_err("no console password");
        assert_eq!(r, "the console asks for a VNC password that tcvnc was not given: ask the operator");
        drop(c);
        assert!(d.stop().await);
    })
    .await;
}

/// HTTP (or any non-RFB bytes) on the VNC port: closed, nothing spent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_rfb_client_spends_nothing() {
    within(async {
        let sim = sim().await;
        let mut d = TestDaemon::start(&sim, &Opts::targets(&["ins-demo0001"])).await;
        let mut s = tokio::net::TcpStream::connect(d.tcp("ins-demo0001"))
            .await
            .expect("c");
        let mut v = [0u8; 12];
        s.read_exact(&mut v).await.expect("greeting first");
        assert_eq!(&v, b"RFB 003.008\n");
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("w");
        let (rest, end) = read_until_end(&mut s).await;
        assert!(rest.is_empty(), "nothing after the greeting: {rest:?}");
        // tcvnc read the 12 bytes of a version and closed with the other 15 of our
        // request (sent in the same write, so queued) unread: the kernel resets.
        assert_eq!(end, TcpEnd::Reset);
        assert_eq!(sim.state.stats().api_requests, 0);
        assert!(d.stop().await);
    })
    .await;
}
