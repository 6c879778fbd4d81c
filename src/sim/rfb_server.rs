//! A tiny RFB 3.8 test-pattern server (security None): colour bars with a moving
//! square, Raw rectangles, any true-colour pixel format the viewer sets. It stands in
//! for the instance's console when no real VNC server is given. Each session starts
//! afresh (frame 0, the server's pixel format): nothing carries over between sessions,
//! as after a reboot. What the viewer sends besides update requests can be recorded.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};

use super::SimInput;
use crate::rfb::messages::{self, ClientMessage, PixelFormat, ServerInit, Version};

/// Framebuffer width.
pub(crate) const WIDTH: u16 = 640;
/// Framebuffer height.
pub(crate) const HEIGHT: u16 = 480;
/// Side of the moving square.
const SQUARE: u16 = 64;

/// The colour of pixel `(x, y)` in frame `frame`.
pub fn pattern(x: u16, y: u16, frame: u64) -> (u8, u8, u8) {
    let pos = (frame * 8 % u64::from(WIDTH - SQUARE)) as u16;
    let top = HEIGHT / 2 - SQUARE / 2;
    if x >= pos && x < pos + SQUARE && y >= top && y < top + SQUARE {
        return (255, 255, 255);
    }
    const BARS: [(u8, u8, u8); 8] = [
        (192, 192, 192),
        (192, 192, 0),
        (0, 192, 192),
        (0, 192, 0),
        (192, 0, 192),
        (192, 0, 0),
        (0, 0, 192),
        (16, 16, 16),
    ];
    let bar = usize::from(x) * BARS.len() / usize::from(WIDTH);
    if y < HEIGHT * 3 / 4 {
        BARS[bar]
    } else {
        let v = (u32::from(x) * 255 / u32::from(WIDTH)) as u8;
        (v, v, v)
    }
}

/// Serves one viewer on `stream` until it disconnects; with `password`, VNC
/// Authentication is required.
///
/// # Errors
/// I/O or protocol errors from the viewer.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    name: &str,
    password: Option<&str>,
) -> Result<(), messages::Error> {
    serve_recording(stream, name, password, |_| {}).await
}

/// [`serve`], handing every key, pointer, QEMU extended key and cut-text message the
/// viewer sends to `on_input` as it arrives (the gateway records them per instance).
///
/// # Errors
/// I/O or protocol errors from the viewer.
pub async fn serve_recording<S, F>(
    stream: S,
    name: &str,
    password: Option<&str>,
    mut on_input: F,
) -> Result<(), messages::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnMut(SimInput),
{
    let (r, w) = tokio::io::split(stream);
    let mut r = tokio::io::BufReader::new(r);
    let mut w = BufWriter::with_capacity(64 * 1024, w);
    w.write_all(Version::V3_8.bytes()).await?;
    w.flush().await?;
    let mut v = [0u8; 12];
    r.read_exact(&mut v).await?;
    let version = Version::parse(&v)
        .ok_or_else(|| messages::Error::Protocol("client sent no RFB ProtocolVersion".into()))?;
    let kind: u8 = if password.is_some() { 2 } else { 1 };
    match version {
        Version::V3_3 => w.write_u32(u32::from(kind)).await?,
        Version::V3_7 | Version::V3_8 => {
            w.write_all(&[1, kind]).await?;
            w.flush().await?;
            let choice = r.read_u8().await?;
            if choice != kind {
                w.write_u32(1).await?;
                if version == Version::V3_8 {
                    messages::write_text(&mut w, "unsupported security type").await?;
                }
                w.flush().await?;
                return Err(messages::Error::Protocol(format!(
                    "client chose security type {choice}"
                )));
            }
        }
    }
    if let Some(pw) = password {
        let challenge: [u8; 16] = rand::random();
        w.write_all(&challenge).await?;
        w.flush().await?;
        let mut answer = [0u8; 16];
        r.read_exact(&mut answer).await?;
        let want = crate::rfb::auth::response(pw.as_bytes(), &challenge);
        if !crate::rfb::auth::matches(&want, &answer) {
            w.write_u32(1).await?;
            if version == Version::V3_8 {
                messages::write_text(&mut w, "Authentication failed").await?;
            }
            w.flush().await?;
            return Err(messages::Error::Protocol("wrong password".into()));
        }
        w.write_u32(0).await?;
    } else if version == Version::V3_8 {
        w.write_u32(0).await?;
    }
    w.flush().await?;
    let _shared = r.read_u8().await?;
    let init = ServerInit {
        width: WIDTH,
        height: HEIGHT,
        format: PixelFormat::RGB888,
        name: name.to_owned(),
    };
    w.write_all(&init.to_bytes()).await?;
    w.flush().await?;

    let mut format = PixelFormat::RGB888;
    let mut frame: u64 = 0;
    let mut sent_full = false;
    loop {
        let msg = messages::read_client_message(&mut r).await?;
        if let Some(input) = SimInput::from_message(&msg) {
            on_input(input);
        }
        match msg {
            ClientMessage::SetPixelFormat(pf) => {
                if !pf.true_colour || pf.bytes_per_pixel().is_none() {
                    return Err(messages::Error::Protocol(
                        "the test pattern serves true-colour 8/16/32 bpp formats only".into(),
                    ));
                }
                format = pf;
                sent_full = false;
            }
            ClientMessage::FramebufferUpdateRequest {
                incremental,
                x,
                y,
                w: rw,
                h: rh,
            } => {
                let x = x.min(WIDTH);
                let y = y.min(HEIGHT);
                let rw = rw.min(WIDTH - x);
                let rh = rh.min(HEIGHT - y);
                if incremental && sent_full {
                    // Pace incremental updates so the picture moves without flooding.
                    tokio::time::sleep(Duration::from_millis(40)).await;
                    frame += 1;
                    // Only the band the square moves in changes.
                    let top = HEIGHT / 2 - SQUARE / 2;
                    let band_y = top.max(y);
                    let band_end = (top + SQUARE).min(y + rh);
                    if band_end > band_y {
                        send_rect(&mut w, &format, x, band_y, rw, band_end - band_y, frame).await?;
                    } else {
                        send_rect(&mut w, &format, x, y, 0, 0, frame).await?;
                    }
                } else {
                    send_rect(&mut w, &format, x, y, rw, rh, frame).await?;
                    sent_full = true;
                }
                w.flush().await?;
            }
            ClientMessage::SetEncodings(_)
            | ClientMessage::KeyEvent { .. }
            | ClientMessage::PointerEvent { .. }
            | ClientMessage::ClientCutText { .. }
            | ClientMessage::QemuKeyEvent { .. }
            | ClientMessage::Qemu(_) => {}
        }
    }
}

async fn send_rect<W: AsyncWrite + Unpin>(
    w: &mut W,
    format: &PixelFormat,
    x: u16,
    y: u16,
    rw: u16,
    rh: u16,
    frame: u64,
) -> Result<(), messages::Error> {
    let mut head = Vec::with_capacity(16);
    head.extend_from_slice(&[0, 0]);
    head.extend_from_slice(&1u16.to_be_bytes());
    for v in [x, y, rw, rh] {
        head.extend_from_slice(&v.to_be_bytes());
    }
    head.extend_from_slice(&0i32.to_be_bytes());
    w.write_all(&head).await?;
    let bpp = format.bytes_per_pixel().unwrap_or(4);
    let mut row = Vec::with_capacity(usize::from(rw) * bpp);
    for yy in y..y + rh {
        row.clear();
        for xx in x..x + rw {
            let (r, g, b) = pattern(xx, yy, frame);
            format.push_pixel(&mut row, r, g, b);
        }
        w.write_all(&row).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys, pointer, QEMU extended keys and cut text reach the recorder in order, update
    /// requests and encodings do not; a session starts at frame 0.
    #[tokio::test]
    async fn records_what_the_viewer_sends() {
        let (mut viewer, server) = tokio::io::duplex(1 << 20);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            serve_recording(server, "t", None, |i| {
                let _ = tx.send(i);
            })
            .await
        });
        let mut v = [0u8; 12];
        viewer.read_exact(&mut v).await.expect("version");
        viewer.write_all(b"RFB 003.008\n").await.expect("w");
        let mut types = [0u8; 2];
        viewer.read_exact(&mut types).await.expect("types");
        assert_eq!(types, [1, 1]);
        viewer.write_all(&[1]).await.expect("w");
        assert_eq!(viewer.read_u32().await.expect("result"), 0);
        viewer.write_all(&[1]).await.expect("shared");
        let mut init = [0u8; 24];
        viewer.read_exact(&mut init).await.expect("init");
        let mut name =
            vec![0u8; u32::from_be_bytes([init[20], init[21], init[22], init[23]]) as usize];
        viewer.read_exact(&mut name).await.expect("name");
        // A full update of the square's first row: white from x = 0 at frame 0.
        let top = HEIGHT / 2 - SQUARE / 2;
        let mut fbur = vec![3, 0, 0, 0];
        fbur.extend_from_slice(&top.to_be_bytes());
        fbur.extend_from_slice(&SQUARE.to_be_bytes());
        fbur.extend_from_slice(&1u16.to_be_bytes());
        viewer.write_all(&fbur).await.expect("fbur");
        let mut head = [0u8; 16];
        viewer.read_exact(&mut head).await.expect("update");
        let mut px = vec![0u8; usize::from(SQUARE) * 4];
        viewer.read_exact(&mut px).await.expect("pixels");
        assert!(px.iter().all(|&b| b == 255), "the square at x = 0: frame 0");
        let mut msgs = vec![2, 0, 0, 1, 0, 0, 0, 0]; // SetEncodings [Raw]
        msgs.extend_from_slice(&[4, 1, 0, 0, 0, 0, 0, 0x61]);
        msgs.extend_from_slice(&[5, 1, 0, 10, 0, 20]);
        msgs.extend_from_slice(&[255, 0, 0, 1, 0, 0, 0xff, 0x0d, 0, 0, 0, 0x1c]);
        msgs.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 3]);
        msgs.extend_from_slice(b"a\xe9b");
        viewer.write_all(&msgs).await.expect("inputs");
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(rx.recv().await.expect("recorded"));
        }
        assert_eq!(
            got,
            [
                SimInput::Key {
                    down: true,
                    keysym: 0x61
                },
                SimInput::Pointer {
                    mask: 1,
                    x: 10,
                    y: 20
                },
                SimInput::QemuKey {
                    down: true,
                    keysym: 0xff0d,
                    keycode: 0x1c
                },
                SimInput::CutText {
                    length: 3,
                    text: Some("aéb".into())
                },
            ]
        );
        drop(viewer);
        assert!(
            task.await.expect("join").is_err(),
            "ends at the viewer's EOF"
        );
        assert!(rx.recv().await.is_none(), "nothing else recorded");
    }
}
