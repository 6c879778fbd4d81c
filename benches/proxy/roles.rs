//! The physical limits tcvnc is compared with, each run as its own process so that its
//! CPU time is its own: a plain TCP pipe and a plain rustls TLS pipe, each a proxy and a
//! terminator (the gateway's place). Also the backend the paths end at.
//!
//! Backend protocol: the client sends a 13-byte header (`U`pload, `D`ownload, `F`rames
//! or `E`cho, a big-endian byte count and a big-endian block size) and waits for `R`.
//! Upload: the backend reads the count and answers `A`. Download: the backend writes the
//! count in writes of the block size (1 MiB when 0). Frames: the count as RFB-shaped
//! bursts (see [`rfb_burst`]). Echo: every byte comes back.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Buffer per direction of the pipes (tokio's default is 8 KiB; 64 KiB moves bulk data
/// with fewer system calls, so the limit is a fair one).
const PIPE_BUF: usize = 64 * 1024;

/// Runs a role named on the command line; prints the listen address once ready.
pub fn run(args: &[String]) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let role = args.first().map(String::as_str).unwrap_or_default();
        let arg = |i: usize| {
            args.get(i)
                .cloned()
                .ok_or_else(|| anyhow!("role {role}: missing argument {i}"))
        };
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        match role {
            "tcp-proxy" => {
                let to: SocketAddr = arg(1)?.parse()?;
                serve(listener, move |client| async move {
                    pipe(client, dial(to).await?, PIPE_BUF).await
                })
                .await
            }
            "tcp-term" => {
                let to: SocketAddr = arg(1)?.parse()?;
                let read: usize = arg(2)?.parse()?;
                serve(listener, move |client| async move {
                    pipe(client, dial(to).await?, read).await
                })
                .await
            }
            "tls-term" => {
                // The gateway's place: it reads the backend `read` bytes at a time, so
                // that its TLS records are as large as a gateway's frames would be.
                let to: SocketAddr = arg(1)?.parse()?;
                let ca = PathBuf::from(arg(2)?);
                let read: usize = arg(3)?.parse()?;
                let acceptor = tcvnc::sim::gateway::tls_acceptor([127, 0, 0, 1].into(), &ca)
                    .map_err(|e| anyhow!("{e}"))?;
                serve(listener, move |client| {
                    let acceptor = acceptor.clone();
                    async move { pipe(acceptor.accept(client).await?, dial(to).await?, read).await }
                })
                .await
            }
            "tls-proxy" => {
                let to: SocketAddr = arg(1)?.parse()?;
                let ca = PathBuf::from(arg(2)?);
                let config = tcvnc::tls::client_config(Some(&ca)).map_err(|e| anyhow!("{e}"))?;
                let connector = tokio_rustls::TlsConnector::from(config);
                serve(listener, move |client| {
                    let connector = connector.clone();
                    async move {
                        let name = rustls_pki_types::ServerName::try_from("127.0.0.1")?;
                        let tls = connector.connect(name, dial(to).await?).await?;
                        pipe(client, tls, PIPE_BUF).await
                    }
                })
                .await
            }
            other => bail!("unknown role {other:?}"),
        }
    })
}

/// A TCP connection to the next hop, without Nagle's delay.
async fn dial(to: SocketAddr) -> Result<TcpStream> {
    let s = TcpStream::connect(to).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Copies both ways until both sides are done; `b_to_a` bytes at most per read of `b`.
async fn pipe<A, B>(mut a: A, mut b: B, b_to_a: usize) -> Result<()>
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    tokio::io::copy_bidirectional_with_sizes(&mut a, &mut b, PIPE_BUF, b_to_a).await?;
    Ok(())
}

async fn serve<F, Fut>(listener: TcpListener, handle: F) -> Result<()>
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send + 'static,
{
    // The address line says "ready": set-up (the CA file a peer reads) is done by now.
    println!("{}", listener.local_addr()?);
    let handle = Arc::new(handle);
    loop {
        let (s, _) = listener.accept().await?;
        s.set_nodelay(true)?;
        let handle = handle.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(s).await {
                eprintln!("connection ended: {e:#}");
            }
        });
    }
}

/// Framebuffer-like bytes: 32-bit pixels with gradients, edges and some noise, 1 MiB.
pub fn pattern() -> Arc<Vec<u8>> {
    let (w, h) = (512usize, 512usize);
    let mut v = Vec::with_capacity(w * h * 4);
    let mut noise: u32 = 0x9E37_79B9;
    for y in 0..h {
        for x in 0..w {
            noise ^= noise << 13;
            noise ^= noise >> 17;
            noise ^= noise << 5;
            let edge = if (x / 64 + y / 64) % 2 == 0 { 40 } else { 0 };
            v.push(((x * 255 / w) as u8).wrapping_add(edge));
            v.push(((y * 255 / h) as u8).wrapping_add((noise & 7) as u8));
            v.push((((x + y) * 255 / (w + h)) as u8) ^ edge);
            v.push(0);
        }
    }
    Arc::new(v)
}

/// The pause between two RFB-shaped updates (a console that redraws 100 times a second
/// at most, as a busy screen does).
pub const RFB_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);

/// The writes of one RFB-shaped update, as a VNC server makes them: the 4-byte
/// FramebufferUpdate header, then per rectangle its 12-byte header and its pixels
/// (between 64 B, a cursor or a glyph, and 64 KiB, a tile row of a ZRLE update), 1 to 40
/// rectangles, about 640 KiB at most. Deterministic from `seed`.
pub fn rfb_burst(seed: &mut u32) -> Vec<usize> {
    let mut next = || {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 17;
        *seed ^= *seed << 5;
        *seed
    };
    let rects = 1 + next() % 40;
    let mut out = vec![4];
    for _ in 0..rects {
        out.push(12);
        // Sizes spread on a log scale, as an update's rectangles are.
        let shift = 6 + next() % 11; // 64 B .. 64 KiB
        out.push((1usize << shift) + (next() as usize % (1usize << shift)) / 2);
    }
    out
}

/// The backend: accepts connections on `listener` until the process ends.
pub async fn backend(listener: TcpListener) {
    let data = pattern();
    loop {
        let Ok((s, _)) = listener.accept().await else {
            continue;
        };
        let _ = s.set_nodelay(true);
        let data = data.clone();
        tokio::spawn(async move {
            if let Err(e) = backend_conn(s, &data).await {
                eprintln!("backend connection: {e:#}");
            }
        });
    }
}

async fn backend_conn(mut s: TcpStream, data: &[u8]) -> Result<()> {
    let mut hdr = [0u8; 13];
    if s.read_exact(&mut hdr).await.is_err() {
        return Ok(()); // a readiness probe
    }
    let n = u64::from_be_bytes(hdr[1..9].try_into()?);
    let block = match u32::from_be_bytes(hdr[9..13].try_into()?) {
        0 => data.len(),
        b => (b as usize).min(data.len()),
    };
    s.write_all(b"R").await?;
    match hdr[0] {
        b'U' => {
            let mut buf = vec![0u8; 256 * 1024];
            let mut left = n;
            while left > 0 {
                let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                let k = s.read(&mut buf[..want]).await?;
                if k == 0 {
                    bail!("upload ended {left} bytes early");
                }
                left -= k as u64;
            }
            s.write_all(b"A").await?;
        }
        b'D' => {
            let (mut left, mut at) = (n, 0usize);
            while left > 0 {
                let k = usize::try_from(left).unwrap_or(usize::MAX).min(block);
                if at + k > data.len() {
                    at = 0;
                }
                s.write_all(&data[at..at + k]).await?;
                at += k;
                left -= k as u64;
            }
        }
        b'F' => {
            let (mut left, mut at, mut seed) = (n, 0usize, 0x2545_F491u32);
            while left > 0 {
                for k in rfb_burst(&mut seed) {
                    let k = usize::try_from(left).unwrap_or(usize::MAX).min(k);
                    if k == 0 {
                        break;
                    }
                    if at + k > data.len() {
                        at = 0;
                    }
                    s.write_all(&data[at..at + k]).await?;
                    at += k;
                    left -= k as u64;
                }
                tokio::time::sleep(RFB_PAUSE).await;
            }
        }
        b'E' => {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let k = s.read(&mut buf).await?;
                if k == 0 {
                    break;
                }
                s.write_all(&buf[..k]).await?;
            }
        }
        m => bail!("unknown mode {m}"),
    }
    // Wait for the client to hang up, so no byte is cut short by our close.
    let mut sink = [0u8; 1024];
    while s.read(&mut sink).await.context("drain")? > 0 {}
    Ok(())
}
