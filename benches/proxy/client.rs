//! The client side of each case: bulk transfers, echo round trips and the RFB handshake
//! of a viewer, over raw TCP or a websocket.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const STEP: Duration = Duration::from_secs(60);

async fn within<T>(what: &str, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(STEP, f)
        .await
        .map_err(|_| anyhow!("{what}: no progress in {STEP:?}"))?
}

/// Connects to a path and opens a backend session in `mode`; returns once the backend
/// said it is ready (so timing excludes session setup).
async fn open(addr: SocketAddr, mode: u8, n: u64, block: u32) -> Result<TcpStream> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let mut hdr = [0u8; 13];
    hdr[0] = mode;
    hdr[1..9].copy_from_slice(&n.to_be_bytes());
    hdr[9..].copy_from_slice(&block.to_be_bytes());
    s.write_all(&hdr).await?;
    let mut r = [0u8; 1];
    within("backend ready", async { Ok(s.read_exact(&mut r).await?) }).await?;
    if r[0] != b'R' {
        bail!("backend answered {:?} instead of R", r[0]);
    }
    Ok(s)
}

/// How a bulk transfer moves its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The viewer writes blocks of this size (0: 1 MiB).
    Upload(u32),
    /// The console writes blocks of this size (0: 1 MiB).
    Download(u32),
    /// The console writes RFB-shaped updates with pauses.
    Rfb,
}

/// Moves `n` bytes one way; returns the transfer's duration and a hook's values taken
/// just before and after it (CPU readings).
pub async fn bulk<H: FnMut() -> Result<Vec<f64>>>(
    addr: SocketAddr,
    shape: Shape,
    n: u64,
    data: &[u8],
    mut hook: H,
) -> Result<(Duration, Vec<f64>, Vec<f64>)> {
    let (mode, block, upload) = match shape {
        Shape::Upload(b) => (b'U', b, true),
        Shape::Download(b) => (b'D', b, false),
        Shape::Rfb => (b'F', 0, false),
    };
    let block = match block {
        0 => data.len(),
        b => (b as usize).min(data.len()),
    };
    let mut s = open(addr, mode, n, block as u32).await?;
    let before = hook()?;
    let t0 = Instant::now();
    if upload {
        let mut left = n;
        within("upload", async {
            let mut at = 0usize;
            while left > 0 {
                let k = usize::try_from(left).unwrap_or(usize::MAX).min(block);
                if at + k > data.len() {
                    at = 0;
                }
                s.write_all(&data[at..at + k]).await?;
                at += k;
                left -= k as u64;
            }
            let mut a = [0u8; 1];
            s.read_exact(&mut a).await?;
            if a[0] != b'A' {
                bail!("backend answered {:?} instead of A", a[0]);
            }
            Ok(())
        })
        .await?;
    } else {
        let mut buf = vec![0u8; 256 * 1024];
        let mut left = n;
        within("download", async {
            while left > 0 {
                let k = s.read(&mut buf).await?;
                if k == 0 {
                    bail!("download ended {left} bytes early");
                }
                left = left
                    .checked_sub(k as u64)
                    .ok_or_else(|| anyhow!("more bytes than asked for"))?;
            }
            Ok(())
        })
        .await?;
    }
    let took = t0.elapsed();
    let after = hook()?;
    Ok((took, before, after))
}

/// `iters` echo round trips of `size` bytes after `warm` unmeasured ones; nanoseconds each.
pub async fn rtt(addr: SocketAddr, size: usize, warm: usize, iters: usize) -> Result<Vec<u64>> {
    let mut s = open(addr, b'E', 0, 0).await?;
    let msg: Vec<u8> = (0..size).map(|i| (i * 7 + 1) as u8).collect();
    let mut back = vec![0u8; size];
    let mut out = Vec::with_capacity(iters);
    within("round trips", async {
        for i in 0..warm + iters {
            let t0 = Instant::now();
            s.write_all(&msg).await?;
            s.read_exact(&mut back).await?;
            let ns = t0.elapsed().as_nanos() as u64;
            if back != msg {
                bail!("echo changed the bytes");
            }
            if i >= warm {
                out.push(ns);
            }
        }
        Ok(())
    })
    .await?;
    Ok(out)
}

/// A byte channel a viewer speaks RFB over.
pub trait Chan {
    async fn send(&mut self, b: &[u8]) -> Result<()>;
    async fn recv(&mut self, buf: &mut [u8]) -> Result<()>;
}

impl Chan for TcpStream {
    async fn send(&mut self, b: &[u8]) -> Result<()> {
        Ok(self.write_all(b).await?)
    }
    async fn recv(&mut self, buf: &mut [u8]) -> Result<()> {
        self.read_exact(buf).await?;
        Ok(())
    }
}

/// A viewer's websocket (tungstenite, as a browser would be: not tcvnc's own framing).
pub struct WsChan<S> {
    ws: WebSocketStream<S>,
    pending: Bytes,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsChan<S> {
    fn new(ws: WebSocketStream<S>) -> Self {
        WsChan {
            ws,
            pending: Bytes::new(),
        }
    }

    async fn close(&mut self) {
        let _ = self.ws.close(None).await;
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Chan for WsChan<S> {
    async fn send(&mut self, b: &[u8]) -> Result<()> {
        self.ws
            .send(Message::Binary(Bytes::copy_from_slice(b)))
            .await?;
        Ok(())
    }
    async fn recv(&mut self, buf: &mut [u8]) -> Result<()> {
        let mut filled = 0;
        while filled < buf.len() {
            if self.pending.is_empty() {
                match self.ws.next().await {
                    Some(Ok(Message::Binary(b))) => self.pending = b,
                    Some(Ok(Message::Close(c))) => bail!("websocket closed: {c:?}"),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(e.into()),
                    None => bail!("websocket ended"),
                }
            }
            let n = self.pending.len().min(buf.len() - filled);
            buf[filled..filled + n].copy_from_slice(&self.pending.split_to(n));
            filled += n;
        }
        Ok(())
    }
}

/// Times of one viewer handshake, from the moment the connection was made, and the
/// screen its ServerInit announced.
#[derive(Debug, Clone, Copy)]
pub struct RfbTimes {
    /// The server's version greeting arrived.
    pub first_byte: Duration,
    /// ServerInit arrived: the console is ready.
    pub server_init: Duration,
    /// ServerInit's width and height.
    pub size: (u16, u16),
    /// ServerInit's pixel format, as on the wire.
    pub format: [u8; 16],
}

/// The viewer's side of RFB 3.8 with security type None, up to ServerInit.
pub async fn rfb_viewer<C: Chan>(c: &mut C, t0: Instant) -> Result<RfbTimes> {
    rfb_viewer_within(c, t0, STEP).await
}

/// [`rfb_viewer`] with a longer patience than the usual 60 s (a server that decodes a
/// whole recording before its ServerInit).
pub async fn rfb_viewer_within<C: Chan>(
    c: &mut C,
    t0: Instant,
    limit: Duration,
) -> Result<RfbTimes> {
    let handshake = async {
        let mut version = [0u8; 12];
        c.recv(&mut version).await?;
        let first_byte = t0.elapsed();
        if !version.starts_with(b"RFB 003.") {
            bail!("not an RFB greeting: {version:?}");
        }
        c.send(b"RFB 003.008\n").await?;
        let mut n = [0u8; 1];
        c.recv(&mut n).await?;
        if n[0] == 0 {
            let mut len = [0u8; 4];
            c.recv(&mut len).await?;
            let mut reason = vec![0u8; u32::from_be_bytes(len).min(4096) as usize];
            c.recv(&mut reason).await?;
            bail!("server refused: {}", String::from_utf8_lossy(&reason));
        }
        let mut types = vec![0u8; usize::from(n[0])];
        c.recv(&mut types).await?;
        if !types.contains(&1) {
            bail!("security None not offered ({types:?})");
        }
        c.send(&[1]).await?;
        let mut result = [0u8; 4];
        c.recv(&mut result).await?;
        if result != [0; 4] {
            bail!("security result {result:?}");
        }
        c.send(&[1]).await?; // ClientInit, shared
        let mut init = [0u8; 24];
        c.recv(&mut init).await?;
        let name_len = u32::from_be_bytes([init[20], init[21], init[22], init[23]]);
        let mut name = vec![0u8; name_len.min(4096) as usize];
        c.recv(&mut name).await?;
        let mut format = [0u8; 16];
        format.copy_from_slice(&init[4..20]);
        Ok(RfbTimes {
            first_byte,
            server_init: t0.elapsed(),
            size: (
                u16::from_be_bytes([init[0], init[1]]),
                u16::from_be_bytes([init[2], init[3]]),
            ),
            format,
        })
    };
    tokio::time::timeout(limit, handshake)
        .await
        .map_err(|_| anyhow!("RFB handshake: no progress in {limit:?}"))?
}

/// A viewer on raw TCP: connect and handshake.
pub async fn rfb_tcp(addr: SocketAddr) -> Result<(TcpStream, RfbTimes)> {
    let t0 = Instant::now();
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let t = rfb_viewer(&mut s, t0).await?;
    Ok((s, t))
}

/// A browser-like viewer on tcvnc's websocket path `/vnc/<instance>`.
pub async fn rfb_ws(http: SocketAddr, instance: &str) -> Result<(WsChan<TcpStream>, RfbTimes)> {
    let t0 = Instant::now();
    let s = TcpStream::connect(http).await?;
    s.set_nodelay(true)?;
    let mut req = format!("ws://{http}/vnc/{instance}").into_client_request()?;
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("binary"));
    let (ws, _) = tokio_tungstenite::client_async_with_config(req, s, Some(tcvnc::ws::config()))
        .await
        .context("websocket handshake with tcvnc")?;
    let mut io = WsChan::new(ws);
    let t = rfb_viewer(&mut io, t0).await?;
    Ok((io, t))
}

/// What a direct connection to the gateway costs: TCP + TLS + websocket upgrade, then
/// the RFB handshake over it (no proxy in between).
pub struct Direct {
    pub tls_ws: Duration,
    pub rfb: RfbTimes,
}

/// Dials the gateway URL directly, as tcvnc does, and runs the viewer's handshake.
pub async fn direct(url: &str, ca: &Path) -> Result<Direct> {
    let parsed = tcvnc::cloud::vnc_url::VncUrl::parse(url).map_err(|e| anyhow!("{e}"))?;
    let config = tcvnc::tls::client_config(Some(ca)).map_err(|e| anyhow!("{e}"))?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let t0 = Instant::now();
    let tcp = TcpStream::connect((parsed.host(), parsed.port())).await?;
    tcp.set_nodelay(true)?;
    let name = rustls_pki_types::ServerName::try_from(parsed.host().to_owned())?;
    let tls = connector.connect(name, tcp).await?;
    let req = url.into_client_request()?;
    let (ws, _) = tokio_tungstenite::client_async_with_config(req, tls, Some(tcvnc::ws::config()))
        .await
        .context("websocket handshake with the gateway")?;
    let tls_ws = t0.elapsed();
    let mut io = WsChan::new(ws);
    let rfb = rfb_viewer(&mut io, t0).await?;
    io.close().await;
    Ok(Direct { tls_ws, rfb })
}
