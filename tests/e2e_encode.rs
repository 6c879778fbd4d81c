//! Console-mode encoders against a real VNC client: a tiny RFB server built from
//! `tcvnc::console::encode` serves a fixed desktop-like screen, and vncdotool (Python,
//! Twisted; it decodes Raw, Hextile and ZRLE, not Tight) captures it asking for one
//! encoding at a time. The capture must equal the screen pixel for pixel (32-bit formats)
//! or channel for channel at the format's precision (16-bit). Server formats that
//! vncdotool does not take make it send SetPixelFormat, which the encoder follows.
//! Runs with TCVNC_E2E=1.

mod common;
mod e2e_support;

use std::time::Duration;

use common::{e2e, e2e_file, python};
use e2e_support::viewers::{novnc_canvas, png_rgb};
use tcvnc::console::encode::{update_header, Encoder, Encoding};
use tcvnc::console::fb::Framebuffer;
use tcvnc::rfb::messages::{read_client_message, ClientMessage, PixelFormat};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

mod rfbref;

/// What the viewer did.
#[derive(Debug, Default)]
struct Served {
    formats: Vec<PixelFormat>,
    encodings: Vec<i32>,
    updates: usize,
}

fn wire_format(pf: &PixelFormat) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0] = pf.bits_per_pixel;
    b[1] = pf.depth;
    b[2] = u8::from(pf.big_endian);
    b[3] = u8::from(pf.true_colour);
    b[4..6].copy_from_slice(&pf.red_max.to_be_bytes());
    b[6..8].copy_from_slice(&pf.green_max.to_be_bytes());
    b[8..10].copy_from_slice(&pf.blue_max.to_be_bytes());
    b[10] = pf.red_shift;
    b[11] = pf.green_shift;
    b[12] = pf.blue_shift;
    b
}

/// Serves one viewer: RFB 3.8, no authentication, `fb` in `init` format; every
/// non-incremental update request is answered with the whole screen in `forced`.
async fn serve_one(
    listener: TcpListener,
    fb: Framebuffer,
    init: PixelFormat,
    forced: Encoding,
) -> Result<Served, String> {
    let (s, _) = listener.accept().await.map_err(|e| e.to_string())?;
    serve_stream(s, fb, init, forced, Lossy::AsAsked).await
}

/// Whether a viewer's JPEG quality level is honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lossy {
    AsAsked,
    Never,
}

/// [`serve_one`] on any stream.
async fn serve_stream<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut s: S,
    fb: Framebuffer,
    init: PixelFormat,
    forced: Encoding,
    lossy: Lossy,
) -> Result<Served, String> {
    let e = |e: std::io::Error| e.to_string();
    s.write_all(b"RFB 003.008\n").await.map_err(e)?;
    let mut version = [0u8; 12];
    s.read_exact(&mut version).await.map_err(e)?;
    if &version != b"RFB 003.008\n" {
        return Err(format!("viewer answered {version:?}"));
    }
    s.write_all(&[1, 1]).await.map_err(e)?;
    s.read_u8().await.map_err(e)?;
    s.write_u32(0).await.map_err(e)?;
    s.read_u8().await.map_err(e)?;
    let mut init_msg = Vec::new();
    init_msg.extend_from_slice(&fb.width().to_be_bytes());
    init_msg.extend_from_slice(&fb.height().to_be_bytes());
    init_msg.extend_from_slice(&wire_format(&init));
    init_msg.extend_from_slice(&4u32.to_be_bytes());
    init_msg.extend_from_slice(b"test");
    s.write_all(&init_msg).await.map_err(e)?;
    s.flush().await.map_err(e)?;
    let mut enc = Encoder::new(init).map_err(|e| e.to_string())?;
    let mut served = Served::default();
    let mut out = Vec::new();
    while let Ok(msg) = read_client_message(&mut s).await {
        match msg {
            ClientMessage::SetPixelFormat(pf) => {
                enc.set_pixel_format(pf).map_err(|e| e.to_string())?;
                served.formats.push(pf);
            }
            ClientMessage::SetEncodings(list) => {
                let kept: Vec<i32> = list
                    .iter()
                    .copied()
                    .filter(|&i| lossy == Lossy::AsAsked || !(-32..=-23).contains(&i))
                    .collect();
                enc.set_encodings(&kept);
                served.encodings = list;
            }
            ClientMessage::FramebufferUpdateRequest {
                incremental: false, ..
            } => {
                if !enc.encodings().preferred.contains(&forced) {
                    return Err(format!(
                        "viewer did not list {forced:?}: {:?}",
                        served.encodings
                    ));
                }
                let mut body = Vec::new();
                let n = enc
                    .encode_as(forced, &fb, fb.bounds(), &mut body)
                    .map_err(|e| e.to_string())?;
                out.clear();
                update_header(n, &mut out);
                out.extend_from_slice(&body);
                s.write_all(&out).await.map_err(e)?;
                s.flush().await.map_err(e)?;
                served.updates += 1;
            }
            _ => {}
        }
    }
    Ok(served)
}

/// Captures `fb` through vncdotool asking for `forced`; returns the RGB bytes and what
/// the viewer did.
async fn capture(fb: &Framebuffer, init: PixelFormat, forced: Encoding) -> (Vec<u8>, Served) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(serve_one(listener, fb.clone(), init, forced));
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("screen.rgb");
    let name = match forced {
        Encoding::Raw => "raw",
        Encoding::Hextile => "hextile",
        Encoding::Zrle => "zrle",
        Encoding::Tight => "tight",
    };
    let run = tokio::process::Command::new(python())
        .arg(e2e_file("vncdo_encoding.py"))
        .arg(format!("127.0.0.1::{port}"))
        .arg(name)
        .arg(&out)
        .kill_on_drop(true)
        .output();
    let res = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("vncdotool finishes")
        .expect("vncdotool runs");
    assert!(
        res.status.success(),
        "vncdotool {name}: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    let served = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("server ends when the viewer leaves")
        .expect("server task")
        .expect("server");
    (std::fs::read(&out).expect("capture"), served)
}

fn pf(bpp: u8, be: bool, max: [u16; 3], shift: [u8; 3]) -> PixelFormat {
    PixelFormat::true_colour(bpp, if bpp == 32 { 24 } else { 16 }, be, max, shift)
}

/// Raw, Hextile and ZRLE as vncdotool decodes them: in the server's BGRX format (kept),
/// a big-endian format (vncdotool switches to RGBX with SetPixelFormat) and BGR16 (kept;
/// compared at 5/6/5 bits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_vncdotool_decodes_raw_hextile_zrle() {
    if !e2e("e2e_vncdotool_decodes_raw_hextile_zrle") {
        return;
    }
    let fb = rfbref::desktop(320, 240);
    let bgrx = pf(32, false, [255; 3], [16, 8, 0]);
    let big = pf(32, true, [255; 3], [16, 8, 0]);
    let bgr16 = pf(16, false, [31, 63, 31], [11, 5, 0]);
    let cases = [
        (bgrx, Encoding::Raw),
        (bgrx, Encoding::Hextile),
        (bgrx, Encoding::Zrle),
        (big, Encoding::Raw),
        (big, Encoding::Hextile),
        (big, Encoding::Zrle),
        (bgr16, Encoding::Raw),
        (bgr16, Encoding::Hextile),
    ];
    for (init, forced) in cases {
        let what = format!(
            "{forced:?} from {}-bit{}",
            init.bits_per_pixel,
            if init.big_endian { " BE" } else { "" }
        );
        let (rgb, served) = capture(&fb, init, forced).await;
        assert!(served.updates >= 1, "{what}: no update was asked for");
        if init.big_endian {
            let f = served
                .formats
                .last()
                .unwrap_or_else(|| panic!("{what}: no SetPixelFormat"));
            assert!(!f.big_endian, "{what}: vncdotool asked for {f:?}");
        }
        assert_eq!(rgb.len(), fb.pixels().len() * 3, "{what}: capture size");
        let mut differing = 0;
        let mut first = None;
        for (i, (&p, got)) in fb.pixels().iter().zip(rgb.chunks_exact(3)).enumerate() {
            let want = [(p >> 16) as u8, (p >> 8) as u8, p as u8];
            let same = if init.bits_per_pixel == 16 {
                // Both sides at the format's precision: 5, 6, 5 bits.
                let q = |c: u8, max: u32| (u32::from(c) * max + 127) / 255;
                let back = |c: u8, bits: u32| u32::from(c) >> (8 - bits);
                q(want[0], 31) == back(got[0], 5)
                    && q(want[1], 63) == back(got[1], 6)
                    && q(want[2], 31) == back(got[2], 5)
            } else {
                want == got
            };
            if !same {
                differing += 1;
                first.get_or_insert((i % 320, i / 320, want, got.to_vec()));
            }
        }
        assert_eq!(
            differing, 0,
            "{what}: {differing} pixels differ, first {first:?}"
        );
        eprintln!("{what}: {} pixels equal", fb.pixels().len());
    }
}

/// One loopback port for noVNC: its files from Debian's /usr/share/novnc over HTTP, and
/// at any websocket upgrade (noVNC's `websockify` path) an RFB server ([`serve_stream`])
/// over binary messages. Ends after the first websocket session.
async fn novnc_site(
    fb: Framebuffer,
    init: PixelFormat,
    forced: Encoding,
    lossy: Lossy,
) -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<Result<Served, String>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        // Every connection is read on its own task: Chromium opens connections it uses
        // later (or never), and one such connection must not hold up the others. The
        // websocket comes back here; files are served where they were asked for.
        let (found, mut websockets) = tokio::sync::mpsc::unbounded_channel();
        let (finished, mut done) = tokio::sync::mpsc::unbounded_channel();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (mut tcp, _) = accepted.map_err(|e| e.to_string())?;
                    let found = found.clone();
                    tokio::spawn(async move {
                        let head = read_head(&mut tcp).await;
                        if head.to_ascii_lowercase().contains("sec-websocket-key:") {
                            let _ = found.send((tcp, head));
                        } else {
                            serve_novnc_file(tcp, &head).await;
                        }
                    });
                    continue;
                }
                Some((tcp, head)) = websockets.recv() => {
                    // Served on its own task too: the page may still be loading files.
                    let (fb, finished) = (fb.clone(), finished.clone());
                    tokio::spawn(async move {
                        let _ = finished.send(serve_websocket(tcp, head, fb, init, forced, lossy).await);
                    });
                }
                Some(result) = done.recv() => return result,
            }
        }
    });
    (addr, task)
}

/// The websocket of a noVNC page: bytes between it and a test server of `fb`.
async fn serve_websocket(
    mut tcp: tokio::net::TcpStream,
    head: String,
    fb: Framebuffer,
    init: PixelFormat,
    forced: Encoding,
    lossy: Lossy,
) -> Result<Served, String> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{handshake::derive_accept_key, protocol::Role, Message};
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    if let Some(key) = header("sec-websocket-key") {
        let mut answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
            derive_accept_key(key.as_bytes())
        );
        if header("sec-websocket-protocol").is_some_and(|p| p.contains("binary")) {
            answer.push_str("Sec-WebSocket-Protocol: binary\r\n");
        }
        answer.push_str("\r\n");
        tcp.write_all(answer.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(tcp, Role::Server, None).await;
        let (mut ws_tx, mut ws_rx) = ws.split();
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        let server = tokio::spawn(serve_stream(theirs, fb.clone(), init, forced, lossy));
        let (mut rd, mut wr) = tokio::io::split(ours);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            tokio::select! {
                msg = ws_rx.next() => match msg {
                    Some(Ok(Message::Binary(b))) => {
                        if wr.write_all(&b).await.is_err() { break; }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                },
                n = rd.read(&mut buf) => match n {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if ws_tx.send(Message::Binary(buf[..n].to_vec().into())).await.is_err() {
                            break;
                        }
                    }
                },
            }
        }
        drop(wr);
        drop(rd);
        return server.await.map_err(|e| e.to_string())?;
    }
    Err("a websocket request without a Sec-WebSocket-Key".into())
}

/// A request head, byte by byte (small; the body is empty).
async fn read_head(tcp: &mut tokio::net::TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
        match tcp.read_u8().await {
            Ok(b) => head.push(b),
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Answers a request for one of noVNC's files (Debian's copy), then closes.
async fn serve_novnc_file(mut tcp: tokio::net::TcpStream, head: &str) {
    let path = head
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .split('?')
        .next()
        .unwrap_or("/")
        .to_owned();
    let rel = path.trim_start_matches('/');
    let file = std::path::Path::new("/usr/share/novnc").join(rel);
    let ok = !rel.contains("..") && file.is_file();
    let body = if ok {
        std::fs::read(&file).unwrap_or_default()
    } else {
        Vec::new()
    };
    let kind = match file.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html",
        Some("js") => "text/javascript",
        Some("css") => "text/css",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    };
    let status = if ok { "200 OK" } else { "404 Not Found" };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = tcp.write_all(reply.as_bytes()).await;
    let _ = tcp.write_all(&body).await;
    let _ = tcp.shutdown().await;
}

/// noVNC (Debian's, in headless Chromium through playwright-core) decodes each encoding
/// tcvnc sends that it offers: Tight (it asks for it first), ZRLE (noVNC ≥ 1.4),
/// Hextile and Raw exactly; Tight with its default quality level (6) gets JPEG chunks,
/// which come back close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_novnc_decodes_every_encoding() {
    if !e2e("e2e_novnc_decodes_every_encoding") {
        return;
    }
    let fb = rfbref::desktop(320, 240);
    let bgrx = pf(32, false, [255; 3], [16, 8, 0]);
    let dir = tempfile::tempdir().expect("tmp");
    let mut offered: Vec<i32> = vec![7];
    for (forced, lossy) in [
        (Encoding::Tight, Lossy::Never),
        (Encoding::Zrle, Lossy::Never),
        (Encoding::Hextile, Lossy::Never),
        (Encoding::Raw, Lossy::Never),
        (Encoding::Tight, Lossy::AsAsked),
    ] {
        let what = format!("noVNC {forced:?} {lossy:?}");
        if !offered.contains(&forced.id()) {
            // Debian bookworm's noVNC 1.3 has no ZRLE decoder (added in 1.4).
            eprintln!("{what}: not offered by this noVNC ({offered:?}), skipped");
            continue;
        }
        let (addr, site) = novnc_site(fb.clone(), bgrx, forced, lossy).await;
        let canvas = dir.path().join("canvas.png");
        let shot = dir.path().join("page.png");
        let url =
            format!("http://{addr}/vnc.html?autoconnect=true&reconnect=false&path=websockify");
        novnc_canvas(&url, &canvas, &shot).await;
        let served = tokio::time::timeout(Duration::from_secs(20), site)
            .await
            .expect("site ends when the browser leaves")
            .expect("site task")
            .expect("site");
        assert!(served.updates >= 1, "{what}: no update");
        offered.clone_from(&served.encodings);
        let first_pixel_encoding = served.encodings.iter().find(|&&i| i >= 0 && i != 1);
        assert_eq!(
            first_pixel_encoding,
            Some(&7),
            "{what}: noVNC prefers Tight: {:?}",
            served.encodings
        );
        let (w, h, rgb) = png_rgb(&canvas).await;
        assert_eq!((w, h), (320, 240), "{what}: canvas size");
        let (mut exact, mut err) = (0usize, 0u64);
        for (&p, got) in fb.pixels().iter().zip(rgb.chunks_exact(3)) {
            let want = [(p >> 16) as u8, (p >> 8) as u8, p as u8];
            if want == got {
                exact += 1;
            }
            err += want
                .iter()
                .zip(got)
                .map(|(a, b)| u64::from(a.abs_diff(*b)))
                .sum::<u64>();
        }
        let n = fb.pixels().len();
        let mean = err as f64 / (n * 3) as f64;
        eprintln!("{what}: {exact} of {n} pixels exact, mean channel error {mean:.2}");
        if lossy == Lossy::Never {
            assert_eq!(exact, n, "{what}: lossless encodings are exact");
        } else {
            assert!(exact < n, "{what}: JPEG was used for some chunks");
            assert!(mean < 4.0, "{what}: mean error {mean}");
        }
    }
}
