//! A websocket used as an RFB byte channel: binary messages (or base64 text, when that
//! subprotocol was chosen) in and out, exact reads across message boundaries with the
//! leftover kept, pings counted, and close frames surfaced with their code and reason.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

/// Largest frame we accept from a peer.
pub const MAX_FRAME: usize = 16 << 20;
/// Largest message we accept from a peer.
pub const MAX_MESSAGE: usize = 64 << 20;

/// Websocket limits used on both sides: bounded frames, messages and write buffer.
pub fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(64 * 1024)
        .max_write_buffer_size(512 * 1024)
        .max_frame_size(Some(MAX_FRAME))
        .max_message_size(Some(MAX_MESSAGE))
}

/// How data travels in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Binary messages carry raw bytes.
    Binary,
    /// Text messages carry base64 (the old websockify `base64` subprotocol).
    Base64,
}

/// What one receive produced.
#[derive(Debug)]
pub enum Recv {
    /// Some bytes.
    Data(Bytes),
    /// The peer sent a close frame (code, reason) or the stream ended (`None`).
    Closed(Option<(u16, String)>),
    /// A transport or protocol failure.
    Failed(String),
}

/// The receiving half of a [`WsIo`].
pub struct WsReader<S> {
    stream: SplitStream<WebSocketStream<S>>,
    mode: Mode,
    pending: Bytes,
    pings: Arc<AtomicU32>,
}

/// The sending half of a [`WsIo`].
pub struct WsWriter<S> {
    sink: SplitSink<WebSocketStream<S>, Message>,
    mode: Mode,
    pings: Arc<AtomicU32>,
}

/// A websocket carrying a byte stream, kept as two halves so that both directions can
/// make progress at once (a pump blocked on sending never stops the other from reading).
pub struct WsIo<S> {
    r: WsReader<S>,
    w: WsWriter<S>,
}

impl<S> std::fmt::Debug for WsIo<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsIo")
            .field("mode", &self.r.mode)
            .field("pending", &self.r.pending.len())
            .finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsReader<S> {
    /// The next bytes from the peer. Cancel-safe: a cancelled call loses nothing.
    /// Pongs to the peer's pings are queued by tungstenite and flushed on the next read or
    /// write of either half.
    pub async fn recv(&mut self) -> Recv {
        if !self.pending.is_empty() {
            return Recv::Data(std::mem::take(&mut self.pending));
        }
        loop {
            match self.stream.next().await {
                Some(Ok(Message::Binary(b))) => {
                    if !b.is_empty() {
                        return Recv::Data(b);
                    }
                }
                Some(Ok(Message::Text(t))) => match self.mode {
                    Mode::Base64 => {
                        return match base64::engine::general_purpose::STANDARD.decode(t.as_str()) {
                            Ok(b) => Recv::Data(Bytes::from(b)),
                            Err(e) => Recv::Failed(format!("bad base64 text message: {e}")),
                        }
                    }
                    Mode::Binary => {
                        return Recv::Failed("text message on a binary channel".into());
                    }
                },
                Some(Ok(Message::Pong(_))) => self.pings.store(0, Ordering::Relaxed),
                Some(Ok(Message::Ping(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(frame))) => {
                    return Recv::Closed(frame.map(|f| (u16::from(f.code), f.reason.to_string())));
                }
                Some(Err(tungstenite::Error::ConnectionClosed)) | None => {
                    return Recv::Closed(None)
                }
                Some(Err(e)) => return Recv::Failed(e.to_string()),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsWriter<S> {
    fn message(&self, data: Bytes) -> Message {
        match self.mode {
            Mode::Binary => Message::Binary(data),
            Mode::Base64 => Message::text(base64::engine::general_purpose::STANDARD.encode(&data)),
        }
    }

    /// Queues `data` without flushing (waits only when the bounded write buffer is full).
    ///
    /// # Errors
    /// The websocket error.
    pub async fn feed(&mut self, data: Bytes) -> Result<(), tungstenite::Error> {
        let msg = self.message(data);
        self.sink.feed(msg).await
    }

    /// Sends what is queued.
    ///
    /// # Errors
    /// The websocket error.
    pub async fn flush(&mut self) -> Result<(), tungstenite::Error> {
        self.sink.flush().await
    }

    /// Sends a ping and counts it as unanswered until a pong arrives.
    ///
    /// # Errors
    /// The websocket error.
    pub async fn ping(&mut self) -> Result<(), tungstenite::Error> {
        self.pings.fetch_add(1, Ordering::Relaxed);
        self.sink
            .send(Message::Ping(Bytes::from_static(b"tcvnc")))
            .await
    }

    /// Pings sent since the last pong.
    pub fn unanswered_pings(&self) -> u32 {
        self.pings.load(Ordering::Relaxed)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsIo<S> {
    /// Wraps an established websocket.
    pub fn new(ws: WebSocketStream<S>, mode: Mode) -> Self {
        let (sink, stream) = ws.split();
        let pings = Arc::new(AtomicU32::new(0));
        WsIo {
            r: WsReader {
                stream,
                mode,
                pending: Bytes::new(),
                pings: pings.clone(),
            },
            w: WsWriter { sink, mode, pings },
        }
    }

    /// Both halves, borrowed, for the two pumps of a bridge.
    pub fn halves(&mut self) -> (&mut WsReader<S>, &mut WsWriter<S>) {
        (&mut self.r, &mut self.w)
    }

    /// The data mode.
    pub fn mode(&self) -> Mode {
        self.r.mode
    }

    /// Pings sent since the last pong.
    pub fn unanswered_pings(&self) -> u32 {
        self.w.unanswered_pings()
    }

    /// The next bytes from the peer. Cancel-safe.
    pub async fn recv(&mut self) -> Recv {
        self.r.recv().await
    }

    /// Reads exactly `buf.len()` bytes, keeping any surplus for the next read.
    ///
    /// # Errors
    /// `UnexpectedEof` when the peer closes, `Other` on failures.
    pub async fn read_exact(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.r.recv().await {
                Recv::Data(mut d) => {
                    let n = d.len().min(buf.len() - filled);
                    buf[filled..filled + n].copy_from_slice(&d[..n]);
                    filled += n;
                    if n < d.len() {
                        self.r.pending = d.split_off(n);
                    }
                }
                Recv::Closed(c) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        match c {
                            Some((code, reason)) => format!("websocket closed ({code} {reason})"),
                            None => "websocket closed".into(),
                        },
                    ))
                }
                Recv::Failed(e) => return Err(std::io::Error::other(e)),
            }
        }
        Ok(())
    }

    /// Bytes already received but not yet consumed (handed to the bridge after a handshake).
    pub fn take_pending(&mut self) -> Bytes {
        std::mem::take(&mut self.r.pending)
    }

    /// Queues `data` without flushing.
    ///
    /// # Errors
    /// The websocket error.
    pub async fn feed(&mut self, data: Bytes) -> Result<(), tungstenite::Error> {
        self.w.feed(data).await
    }

    /// Sends what is queued.
    ///
    /// # Errors
    /// The websocket error.
    pub async fn flush(&mut self) -> Result<(), tungstenite::Error> {
        self.w.flush().await
    }

    /// Sends `data` and flushes.
    ///
    /// # Errors
    /// The websocket error.
    pub async fn send(&mut self, data: Bytes) -> Result<(), tungstenite::Error> {
        let msg = self.w.message(data);
        self.w.sink.send(msg).await
    }

    /// Sends a ping and counts it as unanswered until a pong arrives.
    ///
    /// # Errors
    /// The websocket error.
    pub async fn ping(&mut self) -> Result<(), tungstenite::Error> {
        self.w.ping().await
    }

    /// Sends a close frame with `code` and `reason` (cut to the 123 bytes a frame allows)
    /// and flushes; errors are ignored (the peer may be gone).
    pub async fn close(&mut self, code: u16, reason: &str) {
        let mut cut = reason.len().min(123);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason[..cut].to_owned().into(),
        };
        let close = async {
            let _ = self.w.sink.send(Message::Close(Some(frame))).await;
            let _ = self.w.sink.close().await;
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), close).await;
    }
}
