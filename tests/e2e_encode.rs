//! Console-mode encoders against a real VNC client: a tiny RFB server built from
//! `tcvnc::console::encode` serves a fixed desktop-like screen, and vncdotool (Python,
//! Twisted; it decodes Raw, Hextile and ZRLE, not Tight) captures it asking for one
//! encoding at a time. The capture must equal the screen pixel for pixel (32-bit formats)
//! or channel for channel at the format's precision (16-bit). Server formats that
//! vncdotool does not take make it send SetPixelFormat, which the encoder follows.
//! Runs with TCVNC_E2E=1.

mod common;

use std::time::Duration;

use common::{e2e, e2e_file, python};
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
    let e = |e: std::io::Error| e.to_string();
    let (mut s, _) = listener.accept().await.map_err(e)?;
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
                enc.set_encodings(&list);
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
    PixelFormat {
        bits_per_pixel: bpp,
        depth: if bpp == 32 { 24 } else { 16 },
        big_endian: be,
        true_colour: true,
        red_max: max[0],
        green_max: max[1],
        blue_max: max[2],
        red_shift: shift[0],
        green_shift: shift[1],
        blue_shift: shift[2],
    }
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
