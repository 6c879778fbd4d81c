//! The synthetic console the console cases measure: an RFB 3.8 server (security None,
//! ServerInit 32-bit RGB888) that honours SetPixelFormat and SetEncodings through
//! tcvnc's own encoder. It runs on a thread and runtime of its own, so that the
//! harness's viewers never delay what it sends. Two scenes:
//!
//! - [`Moving`]: on each incremental FramebufferUpdateRequest, at most once per
//!   [`PACE`], one Raw rectangle: a 128×128 square at the next place of its path,
//!   filled with a colour that is its sequence number, whose send time is recorded.
//! - [`Frames`]: a screen that changes whole `fps` times a second (a desktop scrolled a
//!   few rows a frame), each frame one ZRLE rectangle encoded once in the shared mode
//!   (valid on any connection after its 1×1 primer), or Raw for a client that did not
//!   list ZRLE; with no `fps`, a still screen.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use tcvnc::console::encode::{update_header, Encoder, Encoding};
use tcvnc::console::fb::{Framebuffer, Rect};
use tcvnc::rfb::messages::{read_client_message, ClientMessage, PixelFormat, Version};

/// What the source announces and encodes from: 32 bpp, depth 24, little-endian RGB888.
pub const RGB888: PixelFormat =
    PixelFormat::true_colour(32, 24, false, [255, 255, 255], [16, 8, 0]);

/// [`RGB888`] as ServerInit carries it: bits per pixel, depth, big-endian, true colour,
/// the red, green and blue maxima (u16) and shifts, 3 bytes of padding.
const RGB888_WIRE: [u8; 16] = [32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0];

/// The Moving scene's pace: one square per request, at most this often.
pub const PACE: Duration = Duration::from_millis(16);
/// The moving square's side.
pub const SIDE: u16 = 128;
/// Rows at the top the square never enters: console mode's banner is drawn there.
pub const TOP: u16 = 24;

/// A running source; stopped when dropped.
pub struct Source {
    pub addr: SocketAddr,
    /// Bytes written to all its clients so far (the messages after the handshake).
    pub sent: Arc<AtomicU64>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What a source shows.
#[derive(Clone)]
pub enum Scene {
    Moving(Arc<Moving>),
    Frames {
        set: Arc<Frames>,
        /// Frames a second; `None`: the first frame stays.
        fps: Option<u32>,
    },
}

impl Source {
    /// Starts serving `scene` on a loopback port.
    pub fn start(scene: Scene) -> Result<Source> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("console-source".into())
            .spawn(move || {
                rt.block_on(async move {
                    let Ok(listener) = TcpListener::from_std(listener) else {
                        return;
                    };
                    tokio::select! {
                        _ = stopped => {}
                        () = serve(listener, scene, counter) => {}
                    }
                });
            })?;
        Ok(Source {
            addr,
            sent,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(listener: TcpListener, scene: Scene, sent: Arc<AtomicU64>) {
    // The frame clock: bumped `fps` times a second (never for a still screen).
    let (clock, _) = watch::channel(0u64);
    let clock = Arc::new(clock);
    let ticking = {
        let clock = clock.clone();
        let fps = match &scene {
            Scene::Frames { fps, .. } => *fps,
            Scene::Moving(_) => None,
        };
        async move {
            let Some(fps) = fps.filter(|f| *f > 0) else {
                return std::future::pending().await;
            };
            let mut tick = tokio::time::interval(Duration::from_secs(1) / fps);
            loop {
                tick.tick().await;
                clock.send_modify(|f| *f += 1);
            }
        }
    };
    let accepting = async {
        let mut next_conn = 0u64;
        while let Ok((s, _)) = listener.accept().await {
            let _ = s.set_nodelay(true);
            let (scene, frames, sent) = (scene.clone(), clock.subscribe(), sent.clone());
            let id = next_conn;
            next_conn += 1;
            tokio::spawn(async move {
                if let Err(e) = conn(s, scene, frames, id, sent).await {
                    eprintln!("console source connection {id}: {e:#}");
                }
            });
        }
    };
    tokio::join!(ticking, accepting);
}

/// One client: the handshake, then its messages and the scene's updates.
async fn conn(
    s: TcpStream,
    scene: Scene,
    frames: watch::Receiver<u64>,
    id: u64,
    sent: Arc<AtomicU64>,
) -> Result<()> {
    let (w, h) = match &scene {
        Scene::Moving(m) => m.size(),
        Scene::Frames { set, .. } => (set.screens[0].width(), set.screens[0].height()),
    };
    let (mut rd, mut wr) = s.into_split();
    let Some(()) = handshake(&mut rd, &mut wr, w, h).await? else {
        return Ok(()); // a readiness probe
    };
    // Messages are read by a task of their own: a read is not cancel-safe.
    let (tx, msgs) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut rd = BufReader::new(rd);
        while let Ok(m) = read_client_message(&mut rd).await {
            if tx.send(m).await.is_err() {
                break;
            }
        }
    });
    let mut c = Client {
        enc: Encoder::new(RGB888).map_err(|e| anyhow!("{e}"))?,
        msgs,
        out: Vec::new(),
        sent,
    };
    match scene {
        Scene::Moving(m) => c.moving(&mut wr, &m, id).await,
        Scene::Frames { set, .. } => c.frames(&mut wr, &set, frames).await,
    }
}

/// RFB 3.8, security None, up to ServerInit; `None` when the peer left at once.
async fn handshake<R, W>(rd: &mut R, wr: &mut W, w: u16, h: u16) -> Result<Option<()>>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    wr.write_all(Version::V3_8.bytes()).await?;
    let mut v = [0u8; 12];
    if rd.read_exact(&mut v).await.is_err() {
        return Ok(None);
    }
    if Version::parse(&v) != Some(Version::V3_8) {
        bail!(
            "the client spoke {:?}, not RFB 3.8",
            String::from_utf8_lossy(&v)
        );
    }
    wr.write_all(&[1, 1]).await?;
    if rd.read_u8().await? != 1 {
        bail!("the client chose a security type other than None");
    }
    wr.write_all(&0u32.to_be_bytes()).await?;
    let _shared = rd.read_u8().await?;
    let name = b"tcvnc bench console";
    let mut init = Vec::with_capacity(24 + name.len());
    init.extend_from_slice(&w.to_be_bytes());
    init.extend_from_slice(&h.to_be_bytes());
    init.extend_from_slice(&RGB888_WIRE);
    init.extend_from_slice(&(name.len() as u32).to_be_bytes());
    init.extend_from_slice(name);
    wr.write_all(&init).await?;
    Ok(Some(()))
}

/// An update request: whether only changes are wanted.
struct Request {
    incremental: bool,
}

/// One client's encoder and messages.
struct Client {
    enc: Encoder,
    msgs: mpsc::Receiver<ClientMessage>,
    out: Vec<u8>,
    /// The source's count of bytes sent.
    sent: Arc<AtomicU64>,
}

impl Client {
    /// Acts on a message; returns an update request. `None` when the client left.
    fn handle(&mut self, m: Option<ClientMessage>) -> Result<Option<Option<Request>>> {
        let Some(m) = m else { return Ok(None) };
        Ok(Some(match m {
            ClientMessage::SetPixelFormat(pf) => {
                self.enc.set_pixel_format(pf).map_err(|e| anyhow!("{e}"))?;
                None
            }
            ClientMessage::SetEncodings(list) => {
                self.enc.set_encodings(&list);
                None
            }
            ClientMessage::FramebufferUpdateRequest { incremental, .. } => {
                Some(Request { incremental })
            }
            _ => None,
        }))
    }

    async fn send(&mut self, wr: &mut tokio::net::tcp::OwnedWriteHalf) -> Result<()> {
        wr.write_all(&self.out).await.context("write an update")?;
        self.sent
            .fetch_add(self.out.len() as u64, Ordering::Relaxed);
        self.out.clear();
        Ok(())
    }

    /// The Moving scene: a full screen for a full request at once; a square per
    /// incremental request, at most one per [`PACE`].
    async fn moving(
        &mut self,
        wr: &mut tokio::net::tcp::OwnedWriteHalf,
        m: &Moving,
        id: u64,
    ) -> Result<()> {
        let mut tick = tokio::time::interval(PACE);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pending = false;
        loop {
            tokio::select! {
                msg = self.msgs.recv() => match self.handle(msg)? {
                    None => return Ok(()),
                    Some(Some(Request { incremental: false })) => {
                        m.next(&mut self.enc, true, id, &mut self.out)?;
                        self.send(wr).await?;
                    }
                    Some(Some(Request { incremental: true })) => pending = true,
                    Some(None) => {}
                },
                _ = tick.tick(), if pending => {
                    pending = false;
                    m.next(&mut self.enc, false, id, &mut self.out)?;
                    self.send(wr).await?;
                }
            }
        }
    }

    /// The Frames scene: the current frame for a full request, and for an incremental
    /// one as soon as there is a frame this client has not had.
    async fn frames(
        &mut self,
        wr: &mut tokio::net::tcp::OwnedWriteHalf,
        set: &Frames,
        mut clock: watch::Receiver<u64>,
    ) -> Result<()> {
        self.enc.enable_shared_zrle();
        let mut sent: Option<u64> = None;
        let mut pending = false;
        loop {
            let now = *clock.borrow_and_update();
            if pending && sent != Some(now) {
                pending = false;
                set.frame(&mut self.enc, now, &mut self.out)?;
                self.send(wr).await?;
                sent = Some(now);
            }
            tokio::select! {
                msg = self.msgs.recv() => match self.handle(msg)? {
                    None => return Ok(()),
                    Some(Some(r)) => {
                        pending = true;
                        if !r.incremental {
                            sent = None;
                        }
                    }
                    Some(None) => {}
                },
                changed = clock.changed(), if pending => {
                    if changed.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// When a square left, and on which connection (the n-th the source accepted).
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    pub at: Instant,
    pub conn: u64,
}

/// The Moving scene: the screen with every square drawn so far (so a full update shows
/// what an incremental client has), the next sequence number, and when each was sent.
pub struct Moving {
    fb: Mutex<Framebuffer>,
    next: AtomicU64,
    sent: Mutex<Vec<Option<Sent>>>,
}

impl Moving {
    pub fn new(width: u16, height: u16) -> Moving {
        Moving {
            fb: Mutex::new(Framebuffer::new(width, height)),
            // 0 is the black background: squares start at 1.
            next: AtomicU64::new(1),
            sent: Mutex::new(vec![None]),
        }
    }

    fn size(&self) -> (u16, u16) {
        let fb = self.fb.lock();
        (fb.width(), fb.height())
    }

    /// When `seq` was sent.
    pub fn sent(&self, seq: u64) -> Option<Sent> {
        let i = usize::try_from(seq).ok()?;
        self.sent.lock().get(i).copied().flatten()
    }

    /// Where square `seq` is: left to right in steps of 8, a row lower each pass.
    fn place(seq: u64, width: u16, height: u16) -> Rect {
        let span_x = u64::from(width - SIDE);
        let span_y = u64::from(height - TOP - SIDE);
        let x = seq * 8 % span_x;
        let y = seq * 8 / span_x * 16 % span_y;
        Rect::new(x as u16, TOP + y as u16, SIDE, SIDE)
    }

    /// Draws the next square and appends an update with it (or the whole screen) in the
    /// client's format; records the send time.
    fn next(&self, enc: &mut Encoder, full: bool, conn: u64, out: &mut Vec<u8>) -> Result<()> {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let colour = u32::try_from(seq & 0xff_ffff)?;
        let mut fb = self.fb.lock();
        let square = Moving::place(seq, fb.width(), fb.height());
        fb.fill(square, colour)?;
        let r = if full { fb.bounds() } else { square };
        update_header(1, out);
        enc.encode_as(Encoding::Raw, &fb, r, out)?;
        drop(fb);
        let mut sent = self.sent.lock();
        let i = usize::try_from(seq)?;
        if sent.len() <= i {
            sent.resize(i + 1, None);
        }
        sent[i] = Some(Sent {
            at: Instant::now(),
            conn,
        });
        Ok(())
    }
}

/// The sequence number a colour stands for (`None`: the background).
pub fn seq_of(r: u8, g: u8, b: u8) -> Option<u64> {
    let v = u64::from(r) << 16 | u64::from(g) << 8 | u64::from(b);
    (v != 0).then_some(v)
}

/// The Frames scene's frames: the screens, and each as one shared-mode ZRLE rectangle
/// per pixel format asked for, encoded once (for [`RGB888`], what tcvnc's engine asks
/// for, at the start; for another, such as x11vnc's, at its first request).
pub struct Frames {
    pub screens: Vec<Framebuffer>,
    zrle: Mutex<Vec<(PixelFormat, Arc<Vec<Bytes>>)>>,
}

impl Frames {
    /// Encodes `screens` once in [`RGB888`].
    pub fn new(screens: Vec<Framebuffer>) -> Result<Frames> {
        let f = Frames {
            screens,
            zrle: Mutex::new(Vec::new()),
        };
        f.zrle_in(RGB888)?;
        Ok(f)
    }

    /// Every frame as one shared-mode ZRLE rectangle in `format`.
    fn zrle_in(&self, format: PixelFormat) -> Result<Arc<Vec<Bytes>>> {
        let mut cache = self.zrle.lock();
        if let Some((_, z)) = cache.iter().find(|(f, _)| *f == format) {
            return Ok(z.clone());
        }
        let mut enc = Encoder::new(format).map_err(|e| anyhow!("{e}"))?;
        enc.set_encodings(&[tcvnc::console::encode::ENC_ZRLE]);
        enc.enable_shared_zrle();
        // The primer belongs to each client's own stream (`frame` sends it): this
        // encoder's is spent on nothing, so the frames hold shared rectangles only.
        if let Some(fb) = self.screens.first() {
            enc.prime_zrle(fb, &mut Vec::new())?;
        }
        let mut frames = Vec::with_capacity(self.screens.len());
        for fb in &self.screens {
            let mut out = Vec::new();
            enc.encode_as(Encoding::Zrle, fb, fb.bounds(), &mut out)?;
            frames.push(Bytes::from(out));
        }
        let frames = Arc::new(frames);
        cache.push((format, frames.clone()));
        Ok(frames)
    }

    /// Appends frame `n`'s update for a client with encoder `enc`: ZRLE when it listed
    /// it, else Raw.
    fn frame(&self, enc: &mut Encoder, n: u64, out: &mut Vec<u8>) -> Result<()> {
        let i = usize::try_from(n)? % self.screens.len();
        let fb = &self.screens[i];
        let start = out.len();
        update_header(0, out);
        let rects = if enc.encodings().preferred.contains(&Encoding::Zrle) {
            let primer = enc.prime_zrle(fb, out)?;
            out.extend_from_slice(&self.zrle_in(*enc.format())?[i]);
            primer + 1
        } else {
            enc.encode_as(Encoding::Raw, fb, fb.bounds(), out)?
        };
        out[start + 2..start + 4].copy_from_slice(&rects.to_be_bytes());
        Ok(())
    }
}

/// The fan-out screen: tests/rfbref's desktop at `width`×`height`, scrolled up `step`
/// rows a frame (wrapping round), `n` frames: every row moves every frame.
pub fn scrolled(width: u16, height: u16, step: u16, n: usize) -> Result<Vec<Framebuffer>> {
    let base = crate::rfbref::desktop(width, height);
    let px = base.pixels();
    let (w, h) = (usize::from(width), usize::from(height));
    let mut out = Vec::with_capacity(n);
    let mut rows = vec![0u32; w * h];
    for k in 0..n {
        let dy = k * usize::from(step) % h;
        for y in 0..h {
            let src = (y + dy) % h;
            rows[y * w..(y + 1) * w].copy_from_slice(&px[src * w..(src + 1) * w]);
        }
        let mut fb = Framebuffer::new(width, height);
        fb.put(fb.bounds(), &rows)?;
        out.push(fb);
    }
    Ok(out)
}
