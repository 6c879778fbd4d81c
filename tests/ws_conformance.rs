//! Websocket conformance: close frames answered in every API, the close code of each
//! violation, the browser-facing and gateway-facing handshakes, a capacity refusal as a
//! 1013 close, and the memory an unauthenticated base64 client can pin.
//! (Autobahn|Testsuite runs from `scripts/autobahn`.)

mod common;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::*;
use tcvnc::bridge::{self, Counters, End, Limits};
use tcvnc::client::ClientIo;
use tcvnc::cloud::VncUrl;
use tcvnc::listen::http::websocket_handshake;
use tcvnc::upstream::Dialer;
use tcvnc::ws::{apply_mask, Mode, Recv, Role, WsIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_util::sync::CancellationToken;

/// One frame as a peer would send it (masked when the peer is a client).
fn frame(b0: u8, masked: bool, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![b0];
    let m = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => v.push(m | n as u8),
        n if n < 65_536 => {
            v.push(m | 126);
            v.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            v.push(m | 127);
            v.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [7, 1, 9, 3];
        v.extend_from_slice(&key);
        let mut p = payload.to_vec();
        apply_mask(&mut p, key, 0);
        v.extend_from_slice(&p);
    } else {
        v.extend_from_slice(payload);
    }
    v
}

fn close(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

/// Reads frames until EOF: (opcode, unmasked payload).
async fn frames<R: AsyncRead + Unpin>(r: &mut R) -> Vec<(u8, Vec<u8>)> {
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), r.read_to_end(&mut raw)).await;
    let mut out = Vec::new();
    let mut at = 0;
    while raw.len() >= at + 2 {
        let op = raw[at] & 0x0F;
        let masked = raw[at + 1] & 0x80 != 0;
        let (len, mut head) = match raw[at + 1] & 0x7F {
            126 => (u16::from_be_bytes([raw[at + 2], raw[at + 3]]) as usize, 4),
            127 => {
                let mut l = [0u8; 8];
                l.copy_from_slice(&raw[at + 2..at + 10]);
                (u64::from_be_bytes(l) as usize, 10)
            }
            n => (n as usize, 2),
        };
        let mut key = [0u8; 4];
        if masked {
            key.copy_from_slice(&raw[at + head..at + head + 4]);
            head += 4;
        }
        let mut p = raw[at + head..at + head + len].to_vec();
        if masked {
            apply_mask(&mut p, key, 0);
        }
        out.push((op, p));
        at += head + len;
    }
    out
}

/// The close code in the last close frame of `f`.
fn close_code(f: &[(u8, Vec<u8>)]) -> Option<u16> {
    f.iter()
        .rev()
        .find(|(op, _)| *op == 0x8)
        .and_then(|(_, p)| (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]])))
}

/// A server-role WsIo reading `input` from a raw client; returns what it received and
/// every frame it sent back.
async fn server_answers(mode: Mode, input: Vec<u8>) -> (Recv, Vec<(u8, Vec<u8>)>) {
    let (a, mut b) = tokio::io::duplex(1 << 20);
    let mut io = WsIo::new(a, Role::Server, mode, Bytes::new());
    b.write_all(&input).await.expect("write");
    let r = io.recv().await;
    drop(io);
    (r, frames(&mut b).await)
}

/// Each violation closes with its code (1002 protocol, 1003 text on a binary channel,
/// 1007 invalid data, 1009 too big); a valid close is echoed; an invalid close code is
/// answered with 1002.
#[tokio::test]
async fn every_violation_closes_with_its_code() {
    within(async {
        let huge = {
            // A header announcing 17 MiB (more than MAX_FRAME): refused before any payload.
            let mut v = vec![0x82, 0x80 | 127];
            v.extend_from_slice(&(17u64 << 20).to_be_bytes());
            v.extend_from_slice(&[1, 2, 3, 4]);
            v
        };
        let cases: Vec<(&str, Mode, Vec<u8>, u16)> = vec![
            ("reserved bits", Mode::Binary, frame(0xC2, true, b"x"), 1002),
            ("unmasked", Mode::Binary, frame(0x82, false, b"x"), 1002),
            (
                "reserved opcode",
                Mode::Binary,
                frame(0x83, true, b"x"),
                1002,
            ),
            (
                "reserved control",
                Mode::Binary,
                frame(0x8B, true, b""),
                1002,
            ),
            (
                "fragmented ping",
                Mode::Binary,
                frame(0x09, true, b""),
                1002,
            ),
            (
                "stray continuation",
                Mode::Binary,
                frame(0x80, true, b"x"),
                1002,
            ),
            (
                "text on binary",
                Mode::Binary,
                frame(0x81, true, b"aGk="),
                1003,
            ),
            (
                "binary on base64",
                Mode::Base64,
                frame(0x82, true, b"x"),
                1003,
            ),
            ("bad base64", Mode::Base64, frame(0x81, true, b"a*k="), 1007),
            (
                "base64 cut short",
                Mode::Base64,
                frame(0x81, true, b"aGk"),
                1007,
            ),
            (
                "close reason not UTF-8",
                Mode::Binary,
                frame(0x88, true, &close(1000, b"\xff\xfe")),
                1007,
            ),
            (
                "one-byte close",
                Mode::Binary,
                frame(0x88, true, &[3]),
                1002,
            ),
            ("oversize frame", Mode::Binary, huge, 1009),
            (
                "valid close echoed",
                Mode::Binary,
                frame(0x88, true, &close(1001, b"bye")),
                1001,
            ),
            (
                "close without code",
                Mode::Binary,
                frame(0x88, true, b""),
                1000,
            ),
        ];
        for (name, mode, input, want) in cases {
            let (r, out) = server_answers(mode, input).await;
            assert!(!matches!(r, Recv::Data(_)), "{name}: {r:?}");
            assert_eq!(close_code(&out), Some(want), "{name}: {out:?}");
            assert_eq!(
                out.iter().filter(|(op, _)| *op == 8).count(),
                1,
                "{name}: one close"
            );
        }
        for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            let (r, out) = server_answers(Mode::Binary, frame(0x88, true, &close(code, b""))).await;
            assert!(matches!(r, Recv::Failed(_)), "{code}: {r:?}");
            assert_eq!(close_code(&out), Some(1002), "invalid code {code}");
        }
        for code in [1000u16, 1003, 1007, 1011, 1012, 1014, 3000, 4999] {
            let (r, out) =
                server_answers(Mode::Binary, frame(0x88, true, &close(code, b"ok"))).await;
            assert!(
                matches!(r, Recv::Closed(Some((c, _))) if c == code),
                "{code}: {r:?}"
            );
            assert_eq!(close_code(&out), Some(code), "valid code {code} echoed");
        }
    })
    .await;
}

/// `read_exact` (the greeting and handshake reads) answers a close frame too, in the
/// client role as well; the error says the peer closed; later reads repeat it.
#[tokio::test]
async fn read_exact_answers_a_close_in_both_roles() {
    within(async {
        for (role, masked) in [(Role::Server, true), (Role::Client, false)] {
            let (a, mut b) = tokio::io::duplex(1 << 16);
            let mut io = WsIo::new(a, role, Mode::Binary, Bytes::new());
            let mut input = frame(0x82, masked, b"RFB");
            input.extend(frame(0x88, masked, &close(1001, b"leaving")));
            b.write_all(&input).await.expect("write");
            let mut buf = [0u8; 12];
            let e = io.read_exact(&mut buf).await.expect_err("closed");
            assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
            assert!(e.to_string().contains("1001 leaving"), "{e}");
            assert!(matches!(io.recv().await, Recv::Closed(Some((1001, _)))));
            drop(io);
            let out = frames(&mut b).await;
            assert_eq!(close_code(&out), Some(1001), "{role:?}: {out:?}");
        }
    })
    .await;
}

/// A close from the session after the reader owes one sends the owed one only: one close
/// frame per websocket, the peer's code echoed rather than ours.
#[tokio::test]
async fn owed_close_wins_over_a_later_close() {
    within(async {
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let mut io = WsIo::new(a, Role::Server, Mode::Binary, Bytes::new());
        b.write_all(&frame(0xC2, true, b"x")).await.expect("write");
        let (rd, _) = io.halves();
        assert!(matches!(rd.recv().await, Recv::Failed(e) if e.contains("reserved bits")));
        io.close(1011, "something else").await;
        io.close(1000, "again").await;
        drop(io);
        let out = frames(&mut b).await;
        assert_eq!(out.iter().filter(|(op, _)| *op == 8).count(), 1, "{out:?}");
        assert_eq!(close_code(&out), Some(1002));
    })
    .await;
}

/// Several pings arriving together are each answered (Autobahn 2.10), in order.
#[tokio::test]
async fn several_pings_each_get_a_pong() {
    within(async {
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let mut io = WsIo::new(a, Role::Server, Mode::Binary, Bytes::new());
        let mut input = Vec::new();
        for i in 0..5u8 {
            input.extend(frame(0x89, true, &[i; 3]));
        }
        input.extend(frame(0x82, true, b"x"));
        input.extend(frame(0x88, true, &close(1000, b"")));
        b.write_all(&input).await.expect("write");
        assert!(matches!(io.recv().await, Recv::Data(d) if &d[..] == b"x"));
        assert!(matches!(io.recv().await, Recv::Closed(_)));
        drop(io);
        let pongs: Vec<Vec<u8>> = frames(&mut b)
            .await
            .into_iter()
            .filter(|(op, _)| *op == 0xA)
            .map(|(_, p)| p)
            .collect();
        assert_eq!(pongs, (0..5u8).map(|i| vec![i; 3]).collect::<Vec<_>>());
    })
    .await;
}

/// `recv_message` keeps message boundaries (empty messages included) and refuses a
/// message over its limit with 1009.
#[tokio::test]
async fn recv_message_keeps_boundaries() {
    within(async {
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let mut io = WsIo::new(a, Role::Server, Mode::Binary, Bytes::new());
        let mut input = frame(0x02, true, b"he");
        input.extend(frame(0x89, true, b"p"));
        input.extend(frame(0x00, true, b""));
        input.extend(frame(0x80, true, b"llo"));
        input.extend(frame(0x82, true, b""));
        input.extend(frame(0x82, true, &[9u8; 100]));
        b.write_all(&input).await.expect("write");
        let mut m = BytesMut::new();
        io.recv_message(&mut m, 1000).await.expect("first");
        assert_eq!(&m[..], b"hello");
        m.clear();
        io.recv_message(&mut m, 1000).await.expect("empty");
        assert!(m.is_empty());
        let r = io.recv_message(&mut m, 50).await;
        assert!(matches!(r, Err(Recv::Failed(_))), "{r:?}");
        drop(io);
        let out = frames(&mut b).await;
        assert_eq!(close_code(&out), Some(1009));
    })
    .await;
}

/// 5a: a base64 client sending one huge text message slowly pins at most 64 KiB in
/// WsIo, and its bytes arrive while the message is still being sent (decoded as they
/// stream, never gathered).
#[tokio::test]
async fn base64_message_streams_within_64_kib() {
    within(async {
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let mut io = WsIo::new(a, Role::Server, Mode::Base64, Bytes::new());
        // One text frame announced as 8 MiB of base64; only 1 MiB of it is ever sent.
        let total = 8u64 << 20;
        let key = [5u8, 6, 7, 8];
        let mut head = vec![0x81, 0x80 | 127];
        head.extend_from_slice(&total.to_be_bytes());
        head.extend_from_slice(&key);
        let sender = async move {
            b.write_all(&head).await.expect("head");
            let plain: Vec<u8> = (0..768 * 1024u32).map(|i| (i % 251) as u8).collect();
            let mut text =
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &plain)
                    .into_bytes();
            apply_mask(&mut text, key, 0);
            // Odd-sized pieces, so 4-character groups straddle reads.
            for piece in text.chunks(997) {
                b.write_all(piece).await.expect("piece");
            }
            b // kept open: the message never ends
        };
        let receiver = async {
            let mut got = Vec::new();
            let mut max_held = 0;
            while got.len() < 768 * 1024 {
                match io.recv().await {
                    Recv::Data(d) => got.extend_from_slice(&d),
                    other => panic!("{other:?}"),
                }
                max_held = max_held.max(io.held_bytes());
            }
            (got, max_held)
        };
        let (_b, (got, max_held)) = tokio::join!(sender, receiver);
        let want: Vec<u8> = (0..768 * 1024u32).map(|i| (i % 251) as u8).collect();
        assert!(got == want, "decoded bytes differ");
        assert!(max_held <= 64 * 1024, "WsIo held {max_held} bytes");
    })
    .await;
}

// ---- the browser-facing handshake ----

fn upgrade_request() -> http::request::Builder {
    http::Request::builder()
        .method("GET")
        .uri("/vnc/ins-demo0001")
        .header("host", "127.0.0.1:6080")
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
}

fn status(r: http::request::Builder) -> u16 {
    match websocket_handshake(&r.body(()).expect("request")) {
        Ok(_) => 101,
        Err(resp) => resp.status().as_u16(),
    }
}

/// RFC 6455 §4.2.1 request checks: 400 for a bad, missing or duplicated key, another
/// method, no Host, HTTP/1.0; 426 (with the version and Upgrade headers) for version 8.
#[test]
fn browser_handshake_checks() {
    assert_eq!(status(upgrade_request()), 101);
    let no_key = http::Request::builder()
        .uri("/vnc/x")
        .header("host", "h")
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-version", "13");
    assert_eq!(status(no_key), 400, "missing key");
    for bad in [
        "",
        "abc",
        "dGhlIHNhbXBsZSBub25jZQ",
        "dGhlIHNhbXBsZSBub25jZXM=",
        "!!!!!!!!!!!!!!!!!!!!!!!=",
    ] {
        let r = upgrade_request();
        let mut req = r.body(()).expect("req");
        req.headers_mut()
            .insert("sec-websocket-key", http::HeaderValue::from_static(bad));
        assert!(
            websocket_handshake(&req).is_err_and(|r| r.status() == 400),
            "key {bad:?}"
        );
    }
    assert_eq!(
        status(upgrade_request().header("sec-websocket-key", "AAAAAAAAAAAAAAAAAAAAAA==")),
        400,
        "duplicated key"
    );
    assert_eq!(status(upgrade_request().method("HEAD")), 400);
    assert_eq!(status(upgrade_request().method("POST")), 400);
    assert_eq!(
        status(upgrade_request().version(http::Version::HTTP_10)),
        400
    );
    let mut no_host = upgrade_request().body(()).expect("req");
    no_host.headers_mut().remove("host");
    assert!(websocket_handshake(&no_host).is_err_and(|r| r.status() == 400));
    let mut v8 = upgrade_request().body(()).expect("req");
    v8.headers_mut()
        .insert("sec-websocket-version", http::HeaderValue::from_static("8"));
    let r = websocket_handshake(&v8).expect_err("426");
    assert_eq!(r.status(), 426);
    assert_eq!(r.headers()["sec-websocket-version"], "13");
    assert_eq!(r.headers()["upgrade"], "websocket");
}

/// Subprotocol names are compared exactly: `BINARY` is not `binary`.
#[test]
fn subprotocols_compared_exactly() {
    let pick = |offer: &str| {
        websocket_handshake(
            &upgrade_request()
                .header("sec-websocket-protocol", offer)
                .body(())
                .expect("req"),
        )
        .map(|h| (h.protocol, h.mode))
        .expect("accepted")
    };
    assert_eq!(pick("binary"), (Some("binary"), Mode::Binary));
    assert_eq!(pick("base64, binary"), (Some("binary"), Mode::Binary));
    assert_eq!(pick("base64"), (Some("base64"), Mode::Base64));
    assert_eq!(pick("BINARY"), (None, Mode::Binary));
    assert_eq!(pick("Base64"), (None, Mode::Binary));
    let hs = websocket_handshake(&upgrade_request().body(()).expect("req")).expect("ok");
    assert_eq!(
        hs.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
        "RFC 6455 example"
    );
}

/// A browser refused at capacity gets the upgrade, then a 1013 close with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_refusal_is_a_1013_close() {
    within(async {
        let sim = sim().await;
        let mut o = Opts::targets(&["ins-demo0001", "ins-demo0002"]);
        o.session = "max_sessions = 1";
        let mut d = TestDaemon::start(&sim, &o).await;
        let mut first = tcp_client(d.tcp("ins-demo0001")).await;
        rfb_handshake(&mut first, V38, None).await.expect("first");
        let http = d.http.expect("http");
        let mut s = tokio::net::TcpStream::connect(http).await.expect("connect");
        let req = format!("GET /vnc/ins-demo0002 HTTP/1.1\r\nHost: {http}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
        s.write_all(req.as_bytes()).await.expect("write");
        let mut raw = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw)).await;
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a head")
            + 4;
        let head = String::from_utf8_lossy(&raw[..end]);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let mut rest = &raw[end..];
        let out = frames(&mut rest).await;
        assert_eq!(close_code(&out), Some(1013), "{out:?}");
        let reason = String::from_utf8_lossy(&out[0].1[2..]).into_owned();
        assert!(reason.contains("limit of 1 concurrent sessions"), "{reason}");
        assert_eq!(sim.state.mints("ins-demo0002"), 0);
        drop(first);
        assert!(d.stop().await);
    })
    .await;
}

// ---- the gateway-facing handshake ----

/// A fake gateway on loopback: answers one upgrade with `answer` (`{accept}` replaced by
/// the right value) and returns the request head it received.
async fn fake_gateway(answer: String) -> (std::net::SocketAddr, tokio::task::JoinHandle<String>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.expect("accept");
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if s.read(&mut b).await.unwrap_or(0) == 0 {
                break;
            }
            head.push(b[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let key = head
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap_or_default()
            .to_owned();
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let _ = s
            .write_all(answer.replace("{accept}", &accept).as_bytes())
            .await;
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut sink)).await;
        head
    });
    (addr, task)
}

fn dialer() -> Dialer {
    Dialer::new(tls(), None, vec!["binary".into()], Duration::from_secs(5))
}

/// The 101 checks: missing Upgrade or Connection, an extension or a subprotocol not
/// offered are refused with an error naming the answer; no subprotocol is accepted.
/// A URL without a path keeps its query, and no error shows the token.
#[tokio::test]
async fn gateway_handshake_checks() {
    within(async {
        let ok_head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n";
        let cases: Vec<(&str, String, Option<&str>)> = vec![
            ("no subprotocol", format!("{ok_head}\r\n"), None),
            ("binary", format!("{ok_head}Sec-WebSocket-Protocol: binary\r\n\r\n"), None),
            (
                "no Upgrade",
                "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n".into(),
                Some("lacks Upgrade: websocket (it sent nothing)"),
            ),
            (
                "Upgrade: h2c",
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n".into(),
                Some("lacks Upgrade: websocket (it sent \"h2c\")"),
            ),
            (
                "no Connection",
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {accept}\r\n\r\n".into(),
                Some("lacks Connection: Upgrade"),
            ),
            (
                "extension",
                format!("{ok_head}Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"),
                Some("extension \"permessage-deflate\" which tcvnc did not offer"),
            ),
            (
                "BINARY",
                format!("{ok_head}Sec-WebSocket-Protocol: BINARY\r\n\r\n"),
                Some("subprotocol \"BINARY\", which tcvnc did not offer"),
            ),
            (
                "base64 not offered",
                format!("{ok_head}Sec-WebSocket-Protocol: base64\r\n\r\n"),
                Some("subprotocol \"base64\", which tcvnc did not offer"),
            ),
            (
                "wrong accept",
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: nope\r\n\r\n".into(),
                Some("Sec-WebSocket-Accept does not match"),
            ),
        ];
        for (name, answer, want_err) in cases {
            let (addr, task) = fake_gateway(answer).await;
            let url = VncUrl::parse(&format!("ws://{addr}?s=SECRETTOKEN&x=1")).expect("url");
            let r = dialer().dial(&url).await;
            match (r, want_err) {
                (Ok(up), None) => drop(up),
                (Err(e), Some(w)) => {
                    let e = e.to_string();
                    assert!(e.contains(w), "{name}: {e}");
                    assert!(!e.contains("SECRETTOKEN"), "{name}: {e}");
                }
                (Ok(_), Some(w)) => panic!("{name}: accepted, wanted {w}"),
                (Err(e), None) => panic!("{name}: {e}"),
            }
            let head = task.await.expect("gateway");
            assert!(head.starts_with("GET /?s=SECRETTOKEN&x=1 HTTP/1.1\r\n"), "{name}: {head}");
        }
    })
    .await;
}

/// A console URL whose port does not parse is an error, not port 443.
#[test]
fn bad_port_is_an_error() {
    let e = VncUrl::parse("wss://gw.example:44x3/vnc?s=SECRETTOKEN").expect_err("bad port");
    assert!(e.to_string().contains("invalid port"), "{e}");
    assert!(!e.to_string().contains("SECRETTOKEN"));
}

// ---- the bridge ----

fn limits() -> Limits {
    Limits {
        keepalive: Duration::ZERO,
        max_unanswered_pings: 3,
        idle_timeout: Duration::ZERO,
        max_duration: Duration::ZERO,
    }
}

struct Rig {
    client: ClientIo<DuplexStream>,
    up: WsIo<DuplexStream>,
    viewer: DuplexStream,
    gateway: DuplexStream,
}

fn rig() -> Rig {
    let (c, viewer) = tokio::io::duplex(1 << 16);
    let (u, gateway) = tokio::io::duplex(1 << 16);
    Rig {
        client: ClientIo::Ws(WsIo::new(c, Role::Server, Mode::Binary, Bytes::new())),
        up: WsIo::new(u, Role::Client, Mode::Binary, Bytes::new()),
        viewer,
        gateway,
    }
}

async fn run_bridge(r: &mut Rig) -> End {
    let ready = tcvnc::rfb::handshake::Ready::transparent();
    let counters = Counters::default();
    bridge::run(
        &mut r.client,
        &mut r.up,
        limits(),
        &CancellationToken::new(),
        &counters,
        &ready,
    )
    .await
}

/// When the gateway breaks the protocol, it gets 1002 and the viewer is told in words
/// (1011 with what was wrong).
#[tokio::test]
async fn gateway_violation_1002_and_words_for_the_viewer() {
    within(async {
        let mut r = rig();
        // A masked frame from the server side is a violation.
        r.gateway
            .write_all(&frame(0x82, true, b"x"))
            .await
            .expect("write");
        let end = run_bridge(&mut r).await;
        assert!(
            matches!(&end, End::UpstreamLost(e) if e.contains("masked")),
            "{end:?}"
        );
        drop((r.client, r.up));
        let to_gateway = frames(&mut r.gateway).await;
        assert_eq!(close_code(&to_gateway), Some(1002), "{to_gateway:?}");
        let to_viewer = frames(&mut r.viewer).await;
        assert_eq!(close_code(&to_viewer), Some(1011), "{to_viewer:?}");
        let words = String::from_utf8_lossy(&to_viewer[0].1[2..]).into_owned();
        assert!(words.contains("broke the websocket protocol"), "{words}");
    })
    .await;
}

/// The viewer's close is answered by the bridge (its code echoed); a viewer's violation
/// is closed with its code; the gateway is not closed by the bridge (the session closes
/// it with 1000).
#[tokio::test]
async fn viewer_close_and_violation_answered() {
    within(async {
        for (input, want) in [
            (frame(0x88, true, &close(1001, b"tab closed")), 1001u16),
            (frame(0x81, true, b"aGk="), 1003),
        ] {
            let mut r = rig();
            r.viewer.write_all(&input).await.expect("write");
            let end = run_bridge(&mut r).await;
            assert!(
                matches!(end, End::ClientClosed | End::ClientLost(_)),
                "{end:?}"
            );
            r.up.close(1000, "viewer disconnected").await;
            drop((r.client, r.up));
            assert_eq!(close_code(&frames(&mut r.viewer).await), Some(want));
            assert_eq!(close_code(&frames(&mut r.gateway).await), Some(1000));
        }
    })
    .await;
}
