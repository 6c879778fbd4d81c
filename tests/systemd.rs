//! systemd integration through the real binary: READY=1 and STOPPING=1 on a
//! NOTIFY_SOCKET the test owns, and listeners passed in by socket activation.

mod common;

use std::process::Stdio;

use common::*;
use tokio::io::AsyncBufReadExt;

fn write_config(
    dir: &std::path::Path,
    sim: &tcvnc::sim::SimHandle,
    http: &str,
    target_listen: &str,
) -> std::path::PathBuf {
    let p = dir.join("tcvnc.toml");
    std::fs::write(
        &p,
        format!(
            "[cloud]\nregion = \"ap-guangzhou\"\nendpoint = \"{}\"\n[credentials]\nsecret_id = \"{}\"\nsecret_key = \"{}\"\n\
             [upstream]\nca_file = \"{}\"\n[http]\nlisten = \"{http}\"\n[[target]]\ninstance = \"ins-demo0001\"\nlisten = \"{target_listen}\"\n",
            sim.api_url,
            tcvnc::sim::DEMO_SECRET_ID,
            tcvnc::sim::DEMO_SECRET_KEY,
            sim.ca_file.display()
        ),
    )
    .expect("config");
    p
}

async fn sigterm(pid: u32) {
    let st = tokio::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .expect("kill");
    assert!(st.success());
}

/// READY=1 arrives once the listeners accept; STOPPING=1 after SIGTERM; exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_ready_and_stopping() {
    let sim = sim().await;
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = write_config(dir.path(), &sim, "127.0.0.1:0", "127.0.0.1:0");
    let sock_path = dir.path().join("notify.sock");
    let sock = tokio::net::UnixDatagram::bind(&sock_path).expect("bind");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tcvnc"))
        .args(["--log-format", "json", "serve", "-c"])
        .arg(&cfg)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut buf = vec![0u8; 4096];
    let n = within(sock.recv(&mut buf)).await.expect("recv");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.lines().any(|l| l == "READY=1"), "{msg}");
    // The listeners were bound before READY=1: connect to the target right away.
    let mut addr = None;
    while addr.is_none() {
        let l = within(lines.next_line())
            .await
            .expect("read")
            .expect("line");
        let v: serde_json::Value = serde_json::from_str(&l).expect("json log");
        if v["message"] == "listening" && v["listener"] == "tcp ins-demo0001" {
            addr = v["address"].as_str().map(str::to_owned);
        }
    }
    let mut c = tcp_client(addr.expect("addr").parse().expect("addr")).await;
    rfb_handshake(&mut c, V38, None).await.expect("serving");
    drop(c);
    sigterm(child.id().expect("pid")).await;
    let n = within(sock.recv(&mut buf)).await.expect("recv");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.lines().any(|l| l == "STOPPING=1"), "{msg}");
    let status = within(child.wait()).await.expect("wait");
    assert!(status.success(), "{status:?}");
}

/// Listeners passed with LISTEN_FDS/LISTEN_FDNAMES are used (matched by name), and the
/// configured addresses are not bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_activation() {
    let sim = sim().await;
    let dir = tempfile::tempdir().expect("tmp");
    // Addresses in the config that nobody could bind: proof the inherited ones are used.
    let cfg = write_config(dir.path(), &sim, "127.0.0.1:1", "127.0.0.1:2");
    let mut child = tokio::process::Command::new("python3")
        .arg(e2e_file("socket_activate.py"))
        .args([
            "ins-demo0001,http",
            "--",
            env!("CARGO_BIN_EXE_tcvnc"),
            "serve",
            "-c",
        ])
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("python3");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let v: serde_json::Value = serde_json::from_str(
        &within(lines.next_line())
            .await
            .expect("read")
            .expect("line"),
    )
    .expect("json");
    let vnc: std::net::SocketAddr = v["ins-demo0001"]
        .as_str()
        .expect("vnc")
        .parse()
        .expect("addr");
    let http: std::net::SocketAddr = v["http"].as_str().expect("http").parse().expect("addr");
    let mut c = tcp_client(vnc).await;
    let name = within(rfb_handshake(&mut c, V38, None))
        .await
        .expect("through the inherited listener");
    assert_eq!(name, "tcvnc test pattern (ins-demo0001)");
    drop(c);
    let (mut ws, _) = within(ws_connect(http, "/vnc/ins-demo0001", None, None))
        .await
        .expect("inherited http listener");
    let mut v = [0u8; 12];
    within(ws.read_exact(&mut v)).await.expect("read");
    assert_eq!(&v, b"RFB 003.008\n");
    sigterm(child.id().expect("pid")).await;
    assert!(within(child.wait()).await.expect("wait").success());
}
