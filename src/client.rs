//! A client's connection, whatever it came through: raw TCP (a native viewer) or a
//! websocket (a browser), with the read and write halves the bridge pumps use. Reads
//! from TCP land behind the websocket header's headroom, so what a viewer sends reaches
//! the console framed in place.

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::ws::{Recv, WsIo, WsReader, WsWriter, HEADROOM};

/// Size of the TCP read buffer and of a coalesced batch.
pub const CHUNK: usize = 64 * 1024;

/// A client's connection: raw TCP or a websocket.
#[allow(clippy::large_enum_variant)] // one per session, never moved in a hot loop
pub enum ClientIo<W> {
    /// A native viewer on raw TCP.
    Tcp(TcpStream),
    /// A browser on a websocket.
    Ws(WsIo<W>),
}

impl<W> std::fmt::Debug for ClientIo<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientIo::Tcp(_) => f.write_str("ClientIo::Tcp"),
            ClientIo::Ws(_) => f.write_str("ClientIo::Ws"),
        }
    }
}

impl<W: AsyncRead + AsyncWrite + Unpin> ClientIo<W> {
    /// Writes `data` and flushes.
    ///
    /// # Errors
    /// The transport error, as text.
    pub async fn send(&mut self, data: Bytes) -> Result<(), String> {
        let (_, mut w) = self.halves();
        w.write(data).await?;
        w.flush().await
    }

    /// Ends the client side: a close frame for websockets, FIN for TCP.
    pub async fn close(&mut self, code: u16, reason: &str) {
        match self {
            ClientIo::Tcp(s) => {
                let _ = s.shutdown().await;
            }
            ClientIo::Ws(ws) => ws.close(code, reason).await,
        }
    }
}

pub(crate) enum ClientReader<'a, W> {
    Tcp(tokio::net::tcp::ReadHalf<'a>),
    Ws(&'a mut WsReader<W>),
}

pub(crate) enum ClientWriter<'a, W> {
    Tcp(tokio::net::tcp::WriteHalf<'a>),
    Ws(&'a mut WsWriter<W>),
}

impl<W: AsyncRead + AsyncWrite + Unpin> ClientIo<W> {
    pub(crate) fn halves(&mut self) -> (ClientReader<'_, W>, ClientWriter<'_, W>) {
        match self {
            ClientIo::Tcp(s) => {
                let (r, w) = s.split();
                (ClientReader::Tcp(r), ClientWriter::Tcp(w))
            }
            ClientIo::Ws(ws) => {
                let (r, w) = ws.halves();
                (ClientReader::Ws(r), ClientWriter::Ws(w))
            }
        }
    }
}

/// Bytes from the client. Raw TCP reads land after [`HEADROOM`] free bytes, so the frame
/// header is written in front and the payload masked in place: no copy towards the console.
pub(crate) enum Chunk {
    Framed(BytesMut),
    Shared(Bytes),
}

impl Chunk {
    /// The bytes the client sent.
    pub(crate) fn payload(&self) -> &[u8] {
        match self {
            Chunk::Framed(b) => &b[HEADROOM..],
            Chunk::Shared(b) => b,
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Chunk::Framed(b) => b.len() - HEADROOM,
            Chunk::Shared(b) => b.len(),
        }
    }

    pub(crate) async fn feed_to<U: AsyncRead + AsyncWrite + Unpin>(
        self,
        upstream: &mut WsWriter<U>,
    ) -> std::io::Result<()> {
        match self {
            Chunk::Framed(b) => upstream.feed_framed(b).await,
            Chunk::Shared(b) => upstream.feed(b).await,
        }
    }
}

/// What one client read gave.
pub(crate) enum In {
    Data(Chunk),
    Closed,
    Failed(String),
}

impl<W: AsyncRead + AsyncWrite + Unpin> ClientReader<'_, W> {
    /// Cancel-safe.
    pub(crate) async fn recv(&mut self, buf: &mut BytesMut) -> In {
        match self {
            ClientReader::Tcp(s) => loop {
                // Wait for data before taking memory: an idle viewer holds no buffer.
                if let Err(e) = s.as_ref().readable().await {
                    return In::Failed(e.to_string());
                }
                buf.clear();
                buf.reserve(HEADROOM + CHUNK);
                buf.put_bytes(0, HEADROOM);
                match s.as_ref().try_read_buf(buf) {
                    Ok(0) => return In::Closed,
                    Ok(_) => {
                        // What else already arrived joins the same frame: a viewer
                        // trickling bytes costs no extra buffer and no extra frame.
                        while buf.len() < HEADROOM + CHUNK {
                            match s.as_ref().try_read_buf(buf) {
                                Ok(n) if n > 0 => {}
                                _ => break, // EOF and errors show on the next read
                            }
                        }
                        return In::Data(Chunk::Framed(buf.split()));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => buf.clear(),
                    Err(e) => return In::Failed(e.to_string()),
                }
            },
            ClientReader::Ws(ws) => match ws.recv().await {
                Recv::Data(b) => In::Data(Chunk::Shared(b)),
                Recv::Closed(_) => In::Closed,
                Recv::Failed(e) => In::Failed(e),
            },
        }
    }
}

impl<W: AsyncRead + AsyncWrite + Unpin> ClientWriter<'_, W> {
    pub(crate) async fn write(&mut self, data: Bytes) -> Result<(), String> {
        match self {
            ClientWriter::Tcp(s) => s.write_all(&data).await.map_err(|e| e.to_string()),
            ClientWriter::Ws(ws) => ws.feed(data).await.map_err(|e| e.to_string()),
        }
    }

    pub(crate) async fn flush(&mut self) -> Result<(), String> {
        match self {
            ClientWriter::Tcp(_) => Ok(()),
            ClientWriter::Ws(ws) => ws.flush().await.map_err(|e| e.to_string()),
        }
    }

    /// Resolves when a pong is owed to a websocket client. Cancel-safe.
    pub(crate) async fn control_wanted(&mut self) {
        match self {
            ClientWriter::Tcp(_) => std::future::pending().await,
            ClientWriter::Ws(ws) => ws.control_wanted().await,
        }
    }
}
