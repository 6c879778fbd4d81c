//! The table of bad inputs: each row feeds tcvnc something wrong and checks that it is
//! refused with a clear answer, spends nothing it should not, and keeps serving.

mod common;

use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use tcvnc::ws::Recv;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---- configuration: exit 64 and a message naming the file, the key and the fix ----

struct ConfigCase {
    name: &'static str,
    toml: &'static str,
    want: &'static [&'static str],
}

const BASE: &str = "[cloud]\nregion = \"ap-guangzhou\"\n";

const CONFIG_CASES: &[ConfigCase] = &[
    ConfigCase { name: "unknown key", toml: "[cloud]\nregoin = \"x\"\n", want: &["unknown field `regoin`", "expected one of"] },
    ConfigCase { name: "wrong type", toml: "[budget]\nreconnects_per_minute = \"thirty\"\n", want: &["line 4", "invalid type"] },
    ConfigCase { name: "zero budget", toml: "[budget]\nreconnects_per_minute = 0\n", want: &["budget.reconnects_per_minute", "at least 1"] },
    ConfigCase { name: "bad duration", toml: "[budget]\nmax_wait = \"fifteen\"\n", want: &["line 4", "max_wait"] },
    ConfigCase { name: "malformed instance id", toml: "[[target]]\ninstance = \"ins-1122\"\n", want: &["target[0].instance", "ins-xxxxxxxx"] },
    ConfigCase { name: "lighthouse id under cvm", toml: "[[target]]\ninstance = \"lhins-ruy9d2tw\"\n", want: &["target[0].instance", "not a cvm instance ID"] },
    ConfigCase { name: "duplicate target", toml: "[[target]]\ninstance = \"ins-r9hr2upy\"\n[[target]]\ninstance = \"ins-r9hr2upy\"\n", want: &["target[1].instance", "listed twice"] },
    ConfigCase { name: "bad region", toml: "[[target]]\ninstance = \"ins-r9hr2upy\"\nregion = \"Guangzhou!\"\n", want: &["target[0].region", "ap-guangzhou"] },
    ConfigCase { name: "open TCP listener without password", toml: "[[target]]\ninstance = \"ins-r9hr2upy\"\nlisten = \"0.0.0.0:5901\"\n", want: &["target[0].listen", "password_file"] },
    ConfigCase { name: "open HTTP listener without token", toml: "[http]\nlisten = \"0.0.0.0:6080\"\n", want: &["http.listen", "token_file"] },
    ConfigCase { name: "plain http endpoint off loopback", toml: "[cloud]\nendpoint = \"http://cvm.example.com\"\n", want: &["cloud.endpoint", "use https"] },
    ConfigCase { name: "secret_key and secret_key_file", toml: "[credentials]\nsecret_id = \"AKID\"\nsecret_key = \"a\"\nsecret_key_file = \"b\"\n", want: &["credentials.secret_key", "not both"] },
    ConfigCase { name: "missing secret file", toml: "[credentials]\nsecret_id = \"AKID\"\nsecret_key_file = \"/nonexistent/key\"\n", want: &["credentials.secret_key_file", "/nonexistent/key"] },
    ConfigCase { name: "transparent with a password", toml: "[[target]]\ninstance = \"ins-r9hr2upy\"\ntransparent = true\npassword_file = \"/etc/hostname\"\n", want: &["target[0].transparent", "byte bridge"] },
    ConfigCase { name: "unparseable listen address", toml: "[[target]]\ninstance = \"ins-r9hr2upy\"\nlisten = \"localhost:5901\"\n", want: &["target[0].listen", "IP:PORT"] },
    ConfigCase { name: "broken TOML", toml: "[cloud\nregion = 1\n", want: &["line 1"] },
    ConfigCase { name: "CA file that is not PEM", toml: "[upstream]\nca_file = \"/etc/hostname\"\n", want: &["upstream.ca_file", "no CERTIFICATE"] },
];

/// Every kind of config error: `tcvnc serve` exits 64 with one line naming file and key.
#[test]
fn config_errors_exit_64_naming_file_and_key() {
    let dir = tempfile::tempdir().expect("tmp");
    for (i, case) in CONFIG_CASES.iter().enumerate() {
        let path = dir.path().join(format!("case{i}.toml"));
        let text = if case.toml.starts_with("[cloud]") || case.name == "broken TOML" {
            case.toml.to_owned()
        } else {
            format!("{BASE}{}", case.toml)
        };
        std::fs::write(&path, text).expect("write");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tcvnc"))
            .args(["serve", "-c"])
            .arg(&path)
            .env_clear()
            .stdin(Stdio::null())
            .output()
            .expect("runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{}: {err}", case.name);
        assert!(
            err.contains(&path.display().to_string()),
            "{}: names the file: {err}",
            case.name
        );
        for w in case.want {
            assert!(err.contains(w), "{}: {err} should contain {w:?}", case.name);
        }
        assert_eq!(
            err.trim().lines().count(),
            1,
            "{}: one line: {err}",
            case.name
        );
    }
    assert!(CONFIG_CASES.len() >= 15);
}

// ---- the listeners ----

async fn http_raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let _ = s.write_all(request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status line of the answer to `GET path` with `extra` headers.
async fn status_of(addr: std::net::SocketAddr, path: &str, extra: &str) -> String {
    let conn = if extra.contains("Connection:") {
        ""
    } else {
        "Connection: close\r\n"
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{conn}{extra}\r\n");
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let _ = s.write_all(req.as_bytes()).await;
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    while !out.ends_with(b"\r\n") && out.len() < 200 {
        match tokio::time::timeout(Duration::from_secs(15), s.read(&mut b)).await {
            Ok(Ok(1)) => out.push(b[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).trim_end().to_owned()
}

/// Garbage, HTTP and a half-sent version on the VNC port: closed, nothing spent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_vnc_port() {
    within(async {
        let sim = sim().await;
        let mut o = Opts::targets(&["ins-demo0001"]);
        o.session = "handshake_timeout = \"1s\"";
        let mut d = TestDaemon::start(&sim, &o).await;
        for junk in [
            &b"\x00\x01\x02\x03garbage!"[..],
            b"GET / HTTP/1.1\r\n\r\n",
            b"SSH-2.0-OpenSSH_9.6\r\n",
            b"RFB 003",
        ] {
            let mut s = tokio::net::TcpStream::connect(d.tcp("ins-demo0001"))
                .await
                .expect("c");
            let mut v = [0u8; 12];
            s.read_exact(&mut v).await.expect("greeting");
            // One write: one loopback segment, all of it queued when tcvnc reads.
            s.write_all(junk).await.expect("w");
            let (rest, end) = tokio::time::timeout(Duration::from_secs(5), read_until_end(&mut s))
                .await
                .expect("closed in time");
            assert!(rest.is_empty(), "{junk:?}: nothing but a close: {rest:?}");
            // tcvnc reads exactly the 12-byte version, then closes (at once, or at the
            // handshake timeout for a short one): junk past those 12 bytes is left unread,
            // which the kernel answers with a reset.
            let want = if junk.len() > 12 {
                TcpEnd::Reset
            } else {
                TcpEnd::Eof
            };
            assert_eq!(end, want, "{junk:?}");
        }
        assert_eq!(sim.state.stats().api_requests, 0, "no URL for garbage");
        let mut c = tcp_client(d.tcp("ins-demo0001")).await;
        rfb_handshake(&mut c, V38, None)
            .await
            .expect("still serving");
        drop(c);
        assert!(d.stop().await);
    })
    .await;
}

/// A silent client (slowloris) on both listeners is cut at the handshake timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_handshakes_are_cut() {
    within(async {
        let sim = sim().await;
        let mut o = Opts::targets(&["ins-demo0001"]);
        o.session = "handshake_timeout = \"1s\"";
        let mut d = TestDaemon::start(&sim, &o).await;
        let mut s = tokio::net::TcpStream::connect(d.tcp("ins-demo0001"))
            .await
            .expect("c");
        let mut buf = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
            .await
            .expect("cut in time");
        assert!(r.is_ok());
        assert_eq!(buf, b"RFB 003.008\n", "greeted, then closed");
        // HTTP: headers that never end.
        let mut h = tokio::net::TcpStream::connect(d.http.expect("http"))
            .await
            .expect("c");
        h.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: 1")
            .await
            .expect("w");
        let (buf, end) = tokio::time::timeout(Duration::from_secs(10), read_until_end(&mut h))
            .await
            .expect("cut in time");
        assert!(
            buf.is_empty(),
            "no answer to an unfinished request: {:?}",
            String::from_utf8_lossy(&buf)
        );
        assert_eq!(end, TcpEnd::Eof, "the server had read every byte we sent");
        assert_eq!(sim.state.stats().api_requests, 0);
        // A viewer that goes silent at the security choice, after a URL was spent: cut at
        // the timeout, and the console is free again for the next viewer.
        let mut s = tokio::net::TcpStream::connect(d.tcp("ins-demo0001"))
            .await
            .expect("c");
        let mut v = [0u8; 12];
        s.read_exact(&mut v).await.expect("greeting");
        s.write_all(b"RFB 003.008\n").await.expect("version");
        let mut types = [0u8; 2];
        s.read_exact(&mut types).await.expect("offered types");
        let mut rest = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
        assert!(r.is_ok(), "closed at the handshake timeout");
        d.app
            .watch_sessions()
            .wait_for(|n| *n == 0)
            .await
            .expect("released");
        let mut c = tcp_client(d.tcp("ins-demo0001")).await;
        rfb_handshake(&mut c, V38, None)
            .await
            .expect("the console is free again");
        drop(c);
        assert!(d.stop().await);
    })
    .await;
}

/// Non-RFB bytes after the handshake reach the console untouched; the console hangs up;
/// the viewer is told; another session on another instance is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_after_the_handshake() {
    within(async {
        let sim = sim().await;
        let mut d =
            TestDaemon::start(&sim, &Opts::targets(&["ins-demo0001", "ins-demo0002"])).await;
        let mut other = tcp_client(d.tcp("ins-demo0002")).await;
        rfb_handshake(&mut other, V38, None)
            .await
            .expect("other session");
        let (mut ws, _) = ws_connect(d.http.expect("http"), "/vnc/ins-demo0001", None, None)
            .await
            .expect("ws");
        rfb_handshake(&mut ws, V38, None).await.expect("handshake");
        ws.send(Bytes::from_static(&[0x99; 16]))
            .await
            .expect("junk");
        let closed = loop {
            match ws.recv().await {
                Recv::Data(_) => continue,
                other => break other,
            }
        };
        assert!(
            matches!(closed, Recv::Closed(Some((1000, _)))),
            "{closed:?}"
        );
        // The other session still answers a FramebufferUpdateRequest.
        use tcvnc::rfb::handshake::RfbIo;
        other
            .write_all(&[3, 0, 0, 0, 0, 0, 0, 10, 0, 10])
            .await
            .expect("fbur");
        let mut head = [0u8; 4];
        other.read_exact(&mut head).await.expect("update");
        assert_eq!(head[0], 0);
        drop(other);
        assert!(d.stop().await);
    })
    .await;
}

/// A websocket frame over 16 MiB is closed with 1009; a 70 MiB fragmented message (the
/// data path streams: no message limit applies) is dropped at its first 12 bytes, which
/// are no RFB version. Neither opens a session or harms the daemon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_websocket_frames_and_messages() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::Message;
    within(async {
        let sim = sim().await;
        let mut d = TestDaemon::start(&sim, &Opts::targets(&["ins-demo0001"])).await;
        let http = d.http.expect("http");
        let live = d.app.watch_sessions();
        for fragmented in [false, true] {
            let tcp = tokio::net::TcpStream::connect(http).await.expect("c");
            let url = format!("ws://{http}/vnc/ins-demo0001");
            let cfg = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
                .max_frame_size(None)
                .max_message_size(None);
            let (mut ws, _) = tokio_tungstenite::client_async_with_config(url, tcp, Some(cfg))
                .await
                .expect("upgrade");
            let r = if fragmented {
                // 5 frames of 14 MiB = 70 MiB in one message.
                let chunk = Bytes::from(vec![0u8; 14 << 20]);
                let mut r = Ok(());
                for i in 0..5 {
                    let op = if i == 0 {
                        OpCode::Data(Data::Binary)
                    } else {
                        OpCode::Data(Data::Continue)
                    };
                    let f = Frame::message(chunk.clone(), op, i == 4);
                    r = ws.send(Message::Frame(f)).await;
                    if r.is_err() {
                        break;
                    }
                }
                r
            } else {
                ws.send(Message::Binary(Bytes::from(vec![0u8; 17 << 20])))
                    .await
            };
            // Whether the send completes depends on when tcvnc stops reading: not the
            // point. The point is how the connection ends, as this client sees it.
            let _ = r;
            let mut close = None;
            loop {
                match ws.next().await {
                    Some(Ok(Message::Close(c))) => close = Some(c.map(|c| u16::from(c.code))),
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break,
                }
            }
            if fragmented {
                // The data path streams, with no message limit: the first 12 bytes are
                // read as the RFB version, which zeros are not; tcvnc drops the
                // connection unread (a reset, no close frame).
                assert_eq!(close, None, "dropped without a close frame");
            } else {
                assert_eq!(close, Some(Some(1009)), "a frame over 16 MiB: close 1009");
            }
        }
        assert_eq!(*live.borrow(), 0, "no session was ever opened");
        let (_, s) = (0, status_of(http, "/healthz", "").await);
        assert_eq!(s, "HTTP/1.1 200 OK");
        assert!(d.stop().await);
    })
    .await;
}

/// HTTP refusals: wrong Origin, unknown paths and instances, path escapes, non-websocket
/// requests, wrong websocket versions, huge headers. Each has its status; the daemon
/// keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_refusals() {
    within(async {
        let sim = sim().await;
        let root = tempfile::tempdir().expect("tmp");
        std::fs::write(root.path().join("vnc.html"), "<html>novnc</html>").expect("w");
        let mut o = Opts::targets(&["ins-demo0001"]);
        o.http = Some(format!("web_root = \"{}\"", root.path().display()));
        let mut d = TestDaemon::start(&sim, &o).await;
        let http = d.http.expect("http");
        let ws = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
        let cases: Vec<(&str, String, String, &str)> = vec![
            ("cross-site Origin", "/vnc/ins-demo0001".into(), format!("{ws}Origin: https://evil.example\r\n"), "HTTP/1.1 403"),
            ("Origin of another port", "/vnc/ins-demo0001".into(), format!("{ws}Origin: http://127.0.0.1:1\r\n"), "HTTP/1.1 403"),
            ("unknown instance", "/vnc/ins-nothere1".into(), ws.to_owned(), "HTTP/1.1 404"),
            ("malformed instance", "/vnc/ins-1122".into(), ws.to_owned(), "HTTP/1.1 404"),
            ("not a websocket", "/vnc/ins-demo0001".into(), String::new(), "HTTP/1.1 426"),
            ("websocket version 8", "/vnc/ins-demo0001".into(), ws.replace("Version: 13", "Version: 8"), "HTTP/1.1 426"),
            ("unknown path", "/admin".into(), String::new(), "HTTP/1.1 404"),
            ("path escape", "/../../etc/passwd".into(), String::new(), "HTTP/1.1 4"),
            ("encoded path escape", "/%2e%2e/%2e%2e/etc/passwd".into(), String::new(), "HTTP/1.1 400"),
            ("dot file", "/.git/config".into(), String::new(), "HTTP/1.1 400"),
        ];
        for (name, path, extra, want) in &cases {
            let s = status_of(http, path, extra).await;
            assert!(s.starts_with(want), "{name}: {s}");
        }
        let body = http_raw(http, format!("GET /%2e%2e/%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n").as_bytes()).await;
        assert!(!body.contains("root:"), "no file outside the web root");
        // Huge headers: refused, never parsed into memory without bound.
        let huge = format!("X-Big: {}\r\n", "a".repeat(200_000));
        let s = status_of(http, "/healthz", &huge).await;
        assert!(!s.starts_with("HTTP/1.1 200"), "{s}");
        // A POST is not served: a bad websocket handshake (400) on /vnc/, 405 elsewhere.
        let out = http_raw(http, format!("POST /vnc/ins-demo0001 HTTP/1.1\r\nHost: {http}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes()).await;
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
        let out = http_raw(http, format!("POST / HTTP/1.1\r\nHost: {http}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes()).await;
        assert!(out.starts_with("HTTP/1.1 405"), "{out}");
        assert_eq!(sim.state.stats().api_requests, 0, "no refusal spent a URL");
        assert_eq!(status_of(http, "/vnc.html", "").await, "HTTP/1.1 200 OK");
        assert!(d.stop().await);
    })
    .await;
}

/// `session.max_sessions`: the next viewer is refused with a reason (TCP) or a 1013 close (HTTP).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_sessions() {
    within(async {
        let sim = sim().await;
        let mut o = Opts::targets(&["ins-demo0001", "ins-demo0002"]);
        o.session = "max_sessions = 1";
        let mut d = TestDaemon::start(&sim, &o).await;
        let mut first = tcp_client(d.tcp("ins-demo0001")).await;
        rfb_handshake(&mut first, V38, None).await.expect("first");
        let mut second = tcp_client(d.tcp("ins-demo0002")).await;
        let r = rfb_handshake(&mut second, V37, None).await.expect_err("over capacity");
        assert_eq!(r, "tcvnc is at its limit of 1 concurrent sessions: try again later");
        let s = status_of(d.http.expect("http"), "/vnc/ins-demo0002", "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n").await;
        // Upgraded, then closed with 1013 and the reason (tests/ws_conformance.rs).
        assert!(s.starts_with("HTTP/1.1 101"), "{s}");
        assert_eq!(sim.state.mints("ins-demo0002"), 0);
        drop(first);
        assert!(d.stop().await);
    })
    .await;
}

/// `session.connections_per_peer_per_minute`: a burst from one address is refused with a
/// reason saying when to come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_peer_connection_rate() {
    within(async {
        let sim = sim().await;
        let mut o = Opts::targets(&["ins-demo0001"]);
        o.session = "connections_per_peer_per_minute = 12";
        let mut d = TestDaemon::start(&sim, &o).await;
        let mut live = d.app.watch_sessions();
        let mut c = tcp_client(d.tcp("ins-demo0001")).await;
        rfb_handshake(&mut c, V38, None).await.expect("first");
        drop(c);
        live.wait_for(|n| *n == 0).await.expect("w");
        let mut refused = None;
        for _ in 0..3 {
            let mut c = tcp_client(d.tcp("ins-demo0001")).await;
            if let Err(r) = rfb_handshake(&mut c, V38, None).await {
                refused = Some(r);
                break;
            }
            drop(c);
            live.wait_for(|n| *n == 0).await.expect("w");
        }
        let r = refused.expect("a burst from one address is refused");
        assert!(
            r.starts_with("too many connections from your address: wait "),
            "{r}"
        );
        assert!(d.stop().await);
    })
    .await;
}

/// A viewer that picks a security type it was not offered gets a reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_security_choice() {
    within(async {
        let sim = sim().await;
        let mut d = TestDaemon::start(&sim, &Opts::targets(&["ins-demo0001"])).await;
        let mut s = tokio::net::TcpStream::connect(d.tcp("ins-demo0001"))
            .await
            .expect("c");
        let mut v = [0u8; 12];
        s.read_exact(&mut v).await.expect("v");
        s.write_all(b"RFB 003.008\n").await.expect("w");
        let mut types = [0u8; 2];
        s.read_exact(&mut types).await.expect("types");
        assert_eq!(types, [1, 1]);
        s.write_all(&[2])
            .await
            .expect("choose VNC auth, not offered");
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
        assert_eq!(&rest[..4], &[0, 0, 0, 1], "SecurityResult failed");
        assert!(String::from_utf8_lossy(&rest[8..]).contains("unsupported security type"));
        assert!(d.stop().await);
    })
    .await;
}
