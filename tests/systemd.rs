//! systemd integration through the real binary: READY=1 and STOPPING=1 on a
//! NOTIFY_SOCKET the test owns, and listeners passed in by socket activation with
//! systemd's own `systemd-socket-activate` (Debian's `systemd` package; `.ci/run`
//! installs it; without it those tests say loudly that they were skipped).

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr};

fn write_config(
    dir: &Path,
    sim: &tcvnc::sim::SimHandle,
    http: &str,
    target_listen: &str,
) -> PathBuf {
    write_config_with(dir, sim, http, "", target_listen, "")
}

/// A config with one `[http]` and one `[[target]]` (ins-demo0001); the `*_extra` lines go
/// into those sections.
fn write_config_with(
    dir: &Path,
    sim: &tcvnc::sim::SimHandle,
    http: &str,
    http_extra: &str,
    target_listen: &str,
    target_extra: &str,
) -> PathBuf {
    let p = dir.join("tcvnc.toml");
    std::fs::write(
        &p,
        format!(
            "[cloud]\nregion = \"ap-guangzhou\"\nendpoint = \"{}\"\n[credentials]\nsecret_id = \"{}\"\nsecret_key = \"{}\"\n\
             [upstream]\nca_file = \"{}\"\n[http]\nlisten = \"{http}\"\n{http_extra}\n[[target]]\ninstance = \"ins-demo0001\"\nlisten = \"{target_listen}\"\n{target_extra}\n",
            sim.api_url,
            tcvnc::sim::DEMO_SECRET_ID,
            tcvnc::sim::DEMO_SECRET_KEY,
            sim.ca_file.display()
        ),
    )
    .expect("config");
    p
}

/// systemd's `systemd-socket-activate`, or `None` after saying loudly that `test` is
/// skipped.
fn socket_activate_bin(test: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/lib/systemd")])
        .map(|d| d.join("systemd-socket-activate"))
        .find(|p| p.is_file());
    if found.is_none() {
        // Straight to the process's stderr, past the harness's capture: a skip is loud.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: systemd-socket-activate not found; install Debian's systemd package (bash .ci/run does)"
        );
    }
    found
}

/// `tcvnc serve` under `systemd-socket-activate`.
struct Activated {
    child: Child,
    /// The address each named socket listens on.
    addrs: HashMap<String, SocketAddr>,
    /// The rest of stderr: tcvnc's once it runs.
    stderr: Lines<BufReader<ChildStderr>>,
}

/// Runs `tcvnc ARGS` under `systemd-socket-activate` with one listening socket per
/// `(name, ip)`, passed as LISTEN_FDS with those LISTEN_FDNAMES, and returns once every
/// socket listens. Like a socket unit without `Accept=`, it starts tcvnc (by exec, same
/// pid) at the first connection, which then waits in the backlog for tcvnc.
///
/// systemd-socket-activate cannot listen on port 0, so each try takes ports the kernel
/// just handed out for `ip:0` and released; one taken meanwhile by someone else makes it
/// fail with "Address already in use" before it runs anything, and the next try takes
/// others. The outcome never depends on that race.
async fn socket_activate(bin: &Path, sockets: &[(&str, IpAddr)], args: &[&str]) -> Activated {
    let names: Vec<&str> = sockets.iter().map(|(n, _)| *n).collect();
    for _ in 0..20 {
        // Held together until all are picked, so that they differ.
        let held: Vec<std::net::TcpListener> = sockets
            .iter()
            .map(|(_, ip)| std::net::TcpListener::bind((*ip, 0)).expect("port"))
            .collect();
        let addrs: Vec<SocketAddr> = held.iter().map(|l| l.local_addr().expect("addr")).collect();
        drop(held);
        let mut cmd = tokio::process::Command::new(bin);
        for a in &addrs {
            cmd.arg("-l").arg(a.to_string());
        }
        // systemd-socket-activate passes on only TERM, PATH, USER, HOME and -E.
        let mut child = cmd
            .arg(format!("--fdname={}", names.join(":")))
            .args(["-E", "RUST_LOG=warn", "--", env!("CARGO_BIN_EXE_tcvnc")])
            .args(args)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("systemd-socket-activate");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let mut listening = 0;
        let mut in_use = false;
        while listening < addrs.len() {
            let line = within(stderr.next_line())
                .await
                .expect("read")
                .expect("systemd-socket-activate exited early");
            if line.starts_with("Listening on ") {
                listening += 1;
            } else if line.contains("Address already in use") {
                in_use = true;
                break;
            } else if line.starts_with("Failed") {
                panic!("systemd-socket-activate: {line}");
            }
        }
        if in_use {
            let _ = within(child.wait()).await;
            continue;
        }
        return Activated {
            child,
            addrs: names.iter().map(|n| n.to_string()).zip(addrs).collect(),
            stderr,
        };
    }
    panic!("20 tries and no free ports")
}

impl Activated {
    /// Where to connect to socket `name`: its port on loopback (also for a socket on
    /// 0.0.0.0; tests never connect beyond loopback).
    fn loopback(&self, name: &str) -> SocketAddr {
        SocketAddr::new(Ipv4Addr::LOCALHOST.into(), self.addrs[name].port())
    }

    /// The rest of stderr and the exit code.
    async fn exit(mut self) -> (String, Option<i32>) {
        let mut rest = String::new();
        while let Some(l) = within(self.stderr.next_line()).await.expect("read") {
            rest.push_str(&l);
            rest.push('\n');
        }
        let status = within(self.child.wait()).await.expect("wait");
        (rest, status.code())
    }
}

/// The status code of `GET path` over HTTP/1.0 with `extra` header lines.
async fn http_status(addr: SocketAddr, path: &str, extra: &str) -> u16 {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n{extra}\r\n").as_bytes())
        .await
        .expect("request");
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await.expect("answer");
    let answer = String::from_utf8_lossy(&answer);
    answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("GET {path}: {answer}"))
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
    let Some(bin) = socket_activate_bin("socket_activation") else {
        return;
    };
    let sim = sim().await;
    let dir = tempfile::tempdir().expect("tmp");
    // Addresses in the config that nobody could bind: proof the inherited ones are used.
    let cfg = write_config(dir.path(), &sim, "127.0.0.1:1", "127.0.0.1:2");
    let loopback = IpAddr::from(Ipv4Addr::LOCALHOST);
    let cfg_arg = cfg.to_str().expect("utf-8 path");
    let a = socket_activate(
        &bin,
        &[("ins-demo0001", loopback), ("http", loopback)],
        &["serve", "-c", cfg_arg],
    )
    .await;
    // This first connection starts tcvnc.
    let mut c = tcp_client(a.loopback("ins-demo0001")).await;
    let name = within(rfb_handshake(&mut c, V38, None))
        .await
        .expect("through the inherited listener");
    assert_eq!(name, "tcvnc test pattern (ins-demo0001)");
    drop(c);
    let (mut ws, _) = within(ws_connect(
        a.loopback("http"),
        "/vnc/ins-demo0001",
        None,
        None,
    ))
    .await
    .expect("inherited http listener");
    let mut v = [0u8; 12];
    within(ws.read_exact(&mut v)).await.expect("read");
    assert_eq!(&v, b"RFB 003.008\n");
    drop(ws);
    sigterm(a.child.id().expect("pid")).await;
    let (log, code) = a.exit().await;
    assert_eq!(code, Some(0), "{log}");
}

/// A socket passed by systemd that listens beyond loopback (0.0.0.0) for a target
/// without `password_file`, or for `http` without `[http] token_file`: tcvnc refuses to
/// start, exit 64, naming the socket, its address and the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_activation_refuses_exposed_sockets_without_auth() {
    let Some(bin) = socket_activate_bin("socket_activation_refuses_exposed_sockets_without_auth")
    else {
        return;
    };
    let sim = sim().await;
    let any = IpAddr::from(Ipv4Addr::UNSPECIFIED);
    let loopback = IpAddr::from(Ipv4Addr::LOCALHOST);
    // (the exposed socket, the other one, what the message must say to fix it)
    for (exposed, other, fix) in [
        (
            "ins-demo0001",
            "http",
            "set password_file on that [[target]]",
        ),
        ("http", "ins-demo0001", "set [http] token_file"),
    ] {
        let dir = tempfile::tempdir().expect("tmp");
        // Loopback in the config (else the config is refused before any socket is looked at).
        let cfg = write_config(dir.path(), &sim, "127.0.0.1:1", "127.0.0.1:2");
        let a = socket_activate(
            &bin,
            &[(exposed, any), (other, loopback)],
            &["serve", "-c", cfg.to_str().expect("utf-8 path")],
        )
        .await;
        let port = a.addrs[exposed].port();
        // Starts tcvnc; it must refuse before it serves anything.
        let mut s = tokio::net::TcpStream::connect(a.loopback(exposed))
            .await
            .expect("connect");
        // tcvnc exits without accepting it: the kernel resets a connection left in the
        // backlog of a closed listener. (A greeting would mean tcvnc serves.)
        let mut first = [0u8; 12];
        match within(s.read(&mut first)).await {
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{exposed}"),
            Ok(n) => panic!("{exposed}: served: {:?}", &first[..n]),
        }
        let (log, code) = a.exit().await;
        assert_eq!(code, Some(64), "{exposed}: {log}");
        for want in [
            format!("the socket {exposed:?} passed by systemd listens on 0.0.0.0:{port}"),
            "not a loopback address".to_owned(),
            fix.to_owned(),
        ] {
            assert!(
                log.contains(&want),
                "{exposed}: {log:?} should say {want:?}"
            );
        }
    }
    assert_eq!(sim.state.stats().api_requests, 0, "nothing spent");
}

/// The same sockets on 0.0.0.0 with `password_file` and `[http] token_file` set: tcvnc
/// starts, and clients must authenticate on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_activation_serves_exposed_sockets_with_auth() {
    let Some(bin) = socket_activate_bin("socket_activation_serves_exposed_sockets_with_auth")
    else {
        return;
    };
    let sim = sim().await;
    let dir = tempfile::tempdir().expect("tmp");
    let pw = dir.path().join("password");
    std::fs::write(&pw, "pw-4711").expect("password");
    let token = "5f0c2b9e8d7a61435f0c2b9e8d7a61435f0c2b9e8d7a61435f0c2b9e8d7a6143";
    let tok = dir.path().join("token");
    std::fs::write(&tok, token).expect("token");
    let cfg = write_config_with(
        dir.path(),
        &sim,
        "127.0.0.1:1",
        &format!("token_file = \"{}\"", tok.display()),
        "127.0.0.1:2",
        &format!("password_file = \"{}\"", pw.display()),
    );
    let any = IpAddr::from(Ipv4Addr::UNSPECIFIED);
    let a = socket_activate(
        &bin,
        &[("ins-demo0001", any), ("http", any)],
        &["serve", "-c", cfg.to_str().expect("utf-8 path")],
    )
    .await;
    // This first connection starts tcvnc: only VNC authentication is offered, and the
    // password opens the console. (One connection: the password guard charges a viewer
    // that leaves at the security choice.)
    let mut s = tokio::net::TcpStream::connect(a.loopback("ins-demo0001"))
        .await
        .expect("connect");
    within(async {
        let mut v = [0u8; 12];
        s.read_exact(&mut v).await.expect("greeting");
        assert_eq!(&v, b"RFB 003.008\n");
        s.write_all(V38).await.expect("version");
        let mut types = [0u8; 2];
        s.read_exact(&mut types).await.expect("security types");
        assert_eq!(types, [1, 2], "VNC authentication, and nothing else");
        s.write_all(&[2]).await.expect("choice");
        let mut challenge = [0u8; 16];
        s.read_exact(&mut challenge).await.expect("challenge");
        s.write_all(&tcvnc::rfb::auth::response(b"pw-4711", &challenge))
            .await
            .expect("response");
        let mut result = [0u8; 4];
        s.read_exact(&mut result).await.expect("SecurityResult");
        assert_eq!(result, [0; 4], "the password is accepted");
        s.write_all(&[1]).await.expect("ClientInit");
        let mut head = [0u8; 24];
        s.read_exact(&mut head).await.expect("ServerInit");
        let mut name =
            vec![0u8; u32::from_be_bytes([head[20], head[21], head[22], head[23]]) as usize];
        s.read_exact(&mut name).await.expect("name");
        assert_eq!(name, b"tcvnc test pattern (ins-demo0001)");
    })
    .await;
    drop(s);
    let http = a.loopback("http");
    assert_eq!(
        within(http_status(http, "/metrics", "")).await,
        401,
        "no token"
    );
    assert_eq!(
        within(http_status(
            http,
            "/metrics",
            &format!("Authorization: Bearer {token}\r\n")
        ))
        .await,
        200,
        "the token"
    );
    sigterm(a.child.id().expect("pid")).await;
    let (log, code) = a.exit().await;
    assert_eq!(code, Some(0), "{log}");
}
