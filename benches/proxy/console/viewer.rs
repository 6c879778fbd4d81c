//! The viewers of the console cases, over raw TCP: the handshake of
//! [`crate::client::rfb_tcp`], SetEncodings, then updates read one at a time and asked
//! for again at once. Only the framing is parsed (ZRLE rectangles carry their length,
//! Raw is width × height × bytes a pixel, pseudo-rectangles their own sizes); Raw pixels
//! are sampled when the sequence number a colour stands for is wanted.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::Instant;

use super::source::seq_of;

/// Longest wait for one update.
const UPDATE_WAIT: Duration = Duration::from_secs(30);
/// Raw pixels are looked at every this many, across and down (the square is 128 wide).
const SAMPLE: usize = 16;
/// Console mode's banner covers the top rows while the console is away: not looked at.
const BANNER_ROWS: u64 = 17;

/// Encoding numbers the viewers list or may be sent.
const RAW: i32 = 0;
const COPY_RECT: i32 = 1;
const ZRLE: i32 = 16;
const DESKTOP_SIZE: i32 = -223;
const LAST_RECT: i32 = -224;
const CURSOR: i32 = -239;
const DESKTOP_NAME: i32 = -307;
const EXTENDED_DESKTOP_SIZE: i32 = -308;

/// What the latency viewer lists: Raw only.
pub const LIST_RAW: &[i32] = &[RAW];
/// What the fan-out and memory viewers list: ZRLE, then Raw.
pub const LIST_ZRLE: &[i32] = &[ZRLE, RAW];

/// One FramebufferUpdate as read.
#[derive(Debug, Clone, Copy)]
pub struct Update {
    /// Pixels its pixel rectangles covered.
    pub area: u64,
    /// The newest square in its Raw rectangles (below the banner rows), if any.
    pub seq: Option<u64>,
}

/// A connected viewer.
pub struct Viewer {
    rd: BufReader<OwnedReadHalf>,
    wr: OwnedWriteHalf,
    size: (u16, u16),
    /// ServerInit's pixel format.
    format: [u8; 16],
    bpp: usize,
    pixels: Vec<u8>,
}

impl Viewer {
    /// Connects, completes the handshake and sends SetEncodings `list`.
    pub async fn connect(addr: SocketAddr, list: &[i32]) -> Result<Viewer> {
        let (s, t) = crate::client::rfb_tcp(addr).await?;
        let bpp = usize::from(t.format[0] / 8);
        if ![1, 2, 4].contains(&bpp) || t.format[3] == 0 {
            bail!("ServerInit format {:?} is not true colour", t.format);
        }
        let (rd, wr) = s.into_split();
        let mut v = Viewer {
            rd: BufReader::with_capacity(256 * 1024, rd),
            wr,
            size: t.size,
            format: t.format,
            bpp,
            pixels: Vec::new(),
        };
        let mut msg = vec![2u8, 0];
        msg.extend_from_slice(&(list.len() as u16).to_be_bytes());
        for e in list {
            msg.extend_from_slice(&e.to_be_bytes());
        }
        v.wr.write_all(&msg).await?;
        Ok(v)
    }

    /// FramebufferUpdateRequest for the whole screen.
    pub async fn request(&mut self, incremental: bool) -> Result<()> {
        let (w, h) = (self.size.0.to_be_bytes(), self.size.1.to_be_bytes());
        let msg = [3, u8::from(incremental), 0, 0, 0, 0, w[0], w[1], h[0], h[1]];
        self.wr.write_all(&msg).await?;
        Ok(())
    }

    /// Reads server messages until a FramebufferUpdate has been read whole; `sample`:
    /// look for the newest square in its Raw rectangles.
    pub async fn next_update(&mut self, sample: bool) -> Result<Update> {
        tokio::time::timeout(UPDATE_WAIT, self.read_update(sample))
            .await
            .map_err(|_| anyhow!("no update in {UPDATE_WAIT:?}"))?
    }

    async fn read_update(&mut self, sample: bool) -> Result<Update> {
        loop {
            match self.rd.read_u8().await? {
                0 => break,
                // SetColourMapEntries
                1 => {
                    let mut b = [0u8; 5];
                    self.rd.read_exact(&mut b).await?;
                    let n = u16::from_be_bytes([b[3], b[4]]);
                    self.skip(6 * u64::from(n)).await?;
                }
                2 => {} // Bell
                // ServerCutText
                3 => {
                    let mut b = [0u8; 7];
                    self.rd.read_exact(&mut b).await?;
                    self.skip(u64::from(u32::from_be_bytes([b[3], b[4], b[5], b[6]])))
                        .await?;
                }
                t => bail!("server message type {t}"),
            }
        }
        let mut b = [0u8; 3];
        self.rd.read_exact(&mut b).await?;
        let count = u16::from_be_bytes([b[1], b[2]]);
        let mut u = Update { area: 0, seq: None };
        for _ in 0..count {
            let mut hd = [0u8; 12];
            self.rd.read_exact(&mut hd).await?;
            let be16 = |i: usize| u64::from(u16::from_be_bytes([hd[i], hd[i + 1]]));
            let (y, w, h) = (be16(2), be16(4), be16(6));
            let enc = i32::from_be_bytes([hd[8], hd[9], hd[10], hd[11]]);
            let bpp = self.bpp as u64;
            match enc {
                RAW => {
                    u.area += w * h;
                    let n = w * h * bpp;
                    if sample {
                        let seq = self.sample_raw(y, w, h).await?;
                        u.seq = u.seq.max(seq);
                    } else {
                        self.skip(n).await?;
                    }
                }
                ZRLE => {
                    u.area += w * h;
                    let len = self.rd.read_u32().await?;
                    self.skip(u64::from(len)).await?;
                }
                COPY_RECT => {
                    u.area += w * h;
                    self.skip(4).await?;
                }
                DESKTOP_SIZE => self.size = (w as u16, h as u16),
                LAST_RECT => break,
                CURSOR => self.skip(w * h * bpp + w.div_ceil(8) * h).await?,
                DESKTOP_NAME => {
                    let len = self.rd.read_u32().await?;
                    self.skip(u64::from(len)).await?;
                }
                EXTENDED_DESKTOP_SIZE => {
                    let n = self.rd.read_u8().await?;
                    self.skip(3 + 16 * u64::from(n)).await?;
                    self.size = (w as u16, h as u16);
                }
                e => bail!("rectangle in encoding {e}, which this viewer did not ask for"),
            }
        }
        Ok(u)
    }

    /// Reads a Raw rectangle and returns the newest square in it, ignoring the rows a
    /// banner may cover.
    async fn sample_raw(&mut self, y: u64, w: u64, h: u64) -> Result<Option<u64>> {
        let n = usize::try_from(w * h)? * self.bpp;
        self.pixels.resize(n, 0);
        self.rd.read_exact(&mut self.pixels).await?;
        let f = &self.format;
        let (big, shifts) = (f[2] != 0, [f[10], f[11], f[12]]);
        let maxes = [
            u32::from(u16::from_be_bytes([f[4], f[5]])),
            u32::from(u16::from_be_bytes([f[6], f[7]])),
            u32::from(u16::from_be_bytes([f[8], f[9]])),
        ];
        let (w, h) = (usize::try_from(w)?, usize::try_from(h)?);
        let mut best = None;
        for row in (0..h).step_by(SAMPLE) {
            if y + (row as u64) < BANNER_ROWS {
                continue;
            }
            for col in (0..w).step_by(SAMPLE) {
                let at = (row * w + col) * self.bpp;
                let p = &self.pixels[at..at + self.bpp];
                let v = match (self.bpp, big) {
                    (4, false) => u32::from_le_bytes([p[0], p[1], p[2], p[3]]),
                    (4, true) => u32::from_be_bytes([p[0], p[1], p[2], p[3]]),
                    (2, false) => u32::from(u16::from_le_bytes([p[0], p[1]])),
                    (2, true) => u32::from(u16::from_be_bytes([p[0], p[1]])),
                    _ => u32::from(p[0]),
                };
                let c = |i: usize| {
                    let m = maxes[i].max(1);
                    ((v >> shifts[i] & m) * 255 / m) as u8
                };
                best = best.max(seq_of(c(0), c(1), c(2)));
            }
        }
        Ok(best)
    }

    async fn skip(&mut self, mut n: u64) -> Result<()> {
        while n > 0 {
            let buf = self.rd.fill_buf().await?;
            if buf.is_empty() {
                bail!("the connection ended inside an update");
            }
            let k = buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
            self.rd.consume(k);
            n -= k as u64;
        }
        Ok(())
    }
}

/// The latency viewer: Raw only; asks for the whole screen, then for changes back to
/// back, and records when each square arrived, until `done` says so.
pub async fn squares(
    addr: SocketAddr,
    mut done: impl FnMut(&[(u64, Instant)]) -> bool,
) -> Result<Vec<(u64, Instant)>> {
    let mut v = Viewer::connect(addr, LIST_RAW).await?;
    v.request(false).await?;
    let mut got = Vec::new();
    loop {
        let u = v.next_update(true).await?;
        let at = Instant::now();
        v.request(true).await?;
        if let Some(seq) = u.seq {
            got.push((seq, at));
            if done(&got) {
                return Ok(got);
            }
        }
    }
}

/// What one fan-out viewer counted in its window.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counted {
    pub updates: u64,
    /// Pixels its updates covered.
    pub area: u64,
}

/// A fan-out viewer: ZRLE and Raw, updates asked for back to back from the moment it
/// connects until `to`; counts those that arrived within `from..to`.
pub async fn count(addr: SocketAddr, from: Instant, to: Instant) -> Result<Counted> {
    let mut v = Viewer::connect(addr, LIST_ZRLE).await?;
    v.request(false).await?;
    let mut c = Counted::default();
    loop {
        let Ok(u) = tokio::time::timeout_at(to, v.next_update(false)).await else {
            return Ok(c);
        };
        let u = u?;
        let at = Instant::now();
        if at >= to {
            return Ok(c);
        }
        v.request(true).await?;
        if at >= from {
            c.updates += 1;
            c.area += u.area;
        }
    }
}

/// A viewer that got one full update and went idle (an incremental request left
/// outstanding, as a viewer leaves one); held to keep it connected.
pub async fn idle(addr: SocketAddr) -> Result<Viewer> {
    let mut v = Viewer::connect(addr, LIST_ZRLE).await?;
    v.request(false).await?;
    v.next_update(false).await?;
    v.request(true).await?;
    Ok(v)
}
