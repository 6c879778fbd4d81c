//! What the console-mode test files share: the target's config, a raw-TCP RFB viewer
//! that decodes with the independent reference decoder (`tests/rfbref`), key messages.
//! The viewer is also the end-to-end suite's raw viewer of real VNC servers
//! (`tests/e2e_console.rs`): it sets its pixel format, skips server cut text and decodes
//! an update a rectangle at a time.

#![allow(dead_code)] // each test file uses a part

use std::net::SocketAddr;

use crate::common::*;
use crate::rfbref;
use tcvnc::sim::rfb_server::pattern;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const INSTANCE: &str = "ins-demo0001";

/// A shared console-mode target with extra `[[target]]` lines.
pub fn console_opts(extra: &str) -> Opts {
    Opts {
        http: Some(String::new()),
        targets: format!(
            "[[target]]\ninstance = \"{INSTANCE}\"\nlisten = \"127.0.0.1:0\"\nmode = \"console\"\non_busy = \"share\"\n{extra}\n"
        ),
        ..Opts::default()
    }
}

/// A raw-TCP RFB viewer decoding with the independent reference decoder.
pub struct Viewer {
    pub s: TcpStream,
    pub buf: Vec<u8>,
    pub v: rfbref::Viewer,
    pub name: String,
    pub updates: usize,
    pub names: Vec<String>,
}

impl Viewer {
    /// Connects without a password (console mode offers None then).
    pub async fn connect(addr: SocketAddr, encodings: &[i32]) -> Viewer {
        Viewer::connect_as(addr, encodings, None)
            .await
            .unwrap_or_else(|e| panic!("refused: {e}"))
    }

    /// Connects giving `password` when VNC authentication is offered; `Err` carries the
    /// reason tcvnc refused with.
    pub async fn connect_as(
        addr: SocketAddr,
        encodings: &[i32],
        password: Option<&str>,
    ) -> Result<Viewer, String> {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let mut v = [0u8; 12];
        s.read_exact(&mut v).await.expect("version");
        assert_eq!(&v, b"RFB 003.008\n");
        s.write_all(b"RFB 003.008\n").await.expect("write");
        let mut n = [0u8];
        s.read_exact(&mut n).await.expect("types");
        if n[0] == 0 {
            return Err(reason(&mut s).await);
        }
        let mut types = vec![0u8; usize::from(n[0])];
        s.read_exact(&mut types).await.expect("types");
        if let Some(pw) = password {
            assert_eq!(types, [2], "VNC authentication offered");
            s.write_all(&[2]).await.expect("choose");
            let mut challenge = [0u8; 16];
            s.read_exact(&mut challenge).await.expect("challenge");
            s.write_all(&tcvnc::rfb::auth::response(pw.as_bytes(), &challenge))
                .await
                .expect("answer");
        } else {
            assert_eq!(types, [1], "console mode offers None without a password");
            s.write_all(&[1]).await.expect("choose");
        }
        let mut result = [0u8; 4];
        s.read_exact(&mut result).await.expect("result");
        if result != [0; 4] {
            return Err(reason(&mut s).await);
        }
        s.write_all(&[1]).await.expect("ClientInit");
        let mut head = [0u8; 24];
        s.read_exact(&mut head).await.expect("ServerInit");
        let (w, h) = (
            u16::from_be_bytes([head[0], head[1]]),
            u16::from_be_bytes([head[2], head[3]]),
        );
        let mut name =
            vec![0u8; u32::from_be_bytes([head[20], head[21], head[22], head[23]]) as usize];
        s.read_exact(&mut name).await.expect("name");
        let pf = tcvnc::rfb::messages::PixelFormat::true_colour(
            32,
            24,
            false,
            [255, 255, 255],
            [16, 8, 0],
        );
        // SetPixelFormat (whatever the server's own is): 32 bits, depth 24, little
        // endian, true colour, maxima 255, shifts 16, 8, 0; then SetEncodings.
        let mut msg = vec![
            0, 0, 0, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0,
        ];
        msg.extend_from_slice(&[2, 0]);
        msg.extend_from_slice(&(encodings.len() as u16).to_be_bytes());
        for e in encodings {
            msg.extend_from_slice(&e.to_be_bytes());
        }
        s.write_all(&msg).await.expect("SetEncodings");
        Ok(Viewer {
            s,
            buf: Vec::new(),
            v: rfbref::Viewer::new(pf, w, h),
            name: String::from_utf8_lossy(&name).into_owned(),
            updates: 0,
            names: Vec::new(),
        })
    }

    pub async fn request(&mut self, incremental: bool) {
        let (w, h) = (self.v.width.to_be_bytes(), self.v.height.to_be_bytes());
        self.s
            .write_all(&[3, u8::from(incremental), 0, 0, 0, 0, w[0], w[1], h[0], h[1]])
            .await
            .expect("request");
    }

    /// Reads until one FramebufferUpdate is decoded (skipping bells and cut text), a
    /// rectangle at a time: a rectangle cut short by a read is decoded again whole, never
    /// fed twice to a zlib stream (decoding whole updates again broke on Xvnc's ZRLE,
    /// several rectangles an update); Err says why not (`closed` when the server closed
    /// the connection).
    pub async fn next_update(&mut self) -> Result<(), String> {
        loop {
            match self.buf.first() {
                Some(0) if self.buf.len() >= 4 => break,
                Some(2) => {
                    self.buf.remove(0);
                    continue;
                }
                Some(3) if self.buf.len() >= 8 => {
                    let n =
                        u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]);
                    let end = 8 + n as usize;
                    if self.buf.len() >= end {
                        self.buf.drain(..end);
                        continue;
                    }
                }
                Some(0 | 3) | None => {}
                Some(t) => return Err(format!("unexpected message type {t}")),
            }
            self.fill().await?;
        }
        let mut left = u16::from_be_bytes([self.buf[2], self.buf[3]]);
        self.buf.drain(..4);
        while left > 0 {
            match self.v.one_rect(&self.buf) {
                Ok((n, more)) => {
                    self.buf.drain(..n);
                    left -= 1;
                    if !more {
                        break;
                    }
                }
                Err(e) if e.starts_with("short read") => self.fill().await?,
                Err(e) => return Err(e),
            }
        }
        self.updates += 1;
        if let Some(name) = self.v.name.take() {
            self.names.push(name);
        }
        Ok(())
    }

    /// Reads what the server sent next into the buffer.
    async fn fill(&mut self) -> Result<(), String> {
        let mut chunk = vec![0u8; 256 * 1024];
        let n = self.s.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed".into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// The pixel at `x`, `y` as 0xRRGGBB.
    pub fn rgb(&self, x: u16, y: u16) -> u32 {
        self.v.screen[usize::from(y) * usize::from(self.v.width) + usize::from(x)] & 0xff_ffff
    }

    /// Whether the still parts of the screen (all but the moving square's band) are the
    /// test pattern, pixel for pixel.
    pub fn shows_pattern(&self) -> Result<(), String> {
        let band = (480 / 2 - 32)..(480 / 2 + 32);
        for y in 0..self.v.height {
            if band.contains(&y) || y < 20 {
                continue; // the square moves; the banner may cover the top rows
            }
            for x in 0..self.v.width {
                let (r, g, b) = pattern(x, y, 0);
                let want = self.v.value_of_rgb(r, g, b);
                let got =
                    self.v.screen[usize::from(y) * usize::from(self.v.width) + usize::from(x)];
                if got & self.v.used_mask() != want & self.v.used_mask() {
                    return Err(format!("pixel {x},{y}: {got:08x}, want {want:08x}"));
                }
            }
        }
        Ok(())
    }
}

pub async fn reason(s: &mut TcpStream) -> String {
    let mut len = [0u8; 4];
    if s.read_exact(&mut len).await.is_err() {
        return "<none>".into();
    }
    let mut r = vec![0u8; u32::from_be_bytes(len) as usize];
    let _ = s.read_exact(&mut r).await;
    String::from_utf8_lossy(&r).into_owned()
}

pub const ZRLE: i32 = 16;
pub const HEXTILE: i32 = 5;
pub const RAW: i32 = 0;
pub const DESKTOP_SIZE: i32 = -223;
pub const DESKTOP_NAME: i32 = -307;
pub const CURSOR: i32 = -239;

impl Viewer {
    pub async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.expect("send");
    }
}

pub fn key(down: bool, keysym: u32) -> Vec<u8> {
    let k = keysym.to_be_bytes();
    vec![4, u8::from(down), 0, 0, k[0], k[1], k[2], k[3]]
}
