//! A websocket used as an RFB byte channel: binary messages (or base64 text, when that
//! subprotocol was chosen) in and out, exact reads across message boundaries with the
//! leftover kept, pings counted, and close frames surfaced with their code and reason.

use base64::Engine;
use bytes::Bytes;
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
        .read_buffer_size(64 * 1024)
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

/// A websocket carrying a byte stream.
pub struct WsIo<S> {
    ws: WebSocketStream<S>,
    mode: Mode,
    pending: Bytes,
    unanswered_pings: u32,
}

impl<S> std::fmt::Debug for WsIo<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsIo")
            .field("mode", &self.mode)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsIo<S> {
    /// Wraps an established websocket.
    pub fn new(ws: WebSocketStream<S>, mode: Mode) -> Self {
        WsIo {
            ws,
            mode,
            pending: Bytes::new(),
            unanswered_pings: 0,
        }
    }

    /// The data mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Pings sent since the last pong.
    pub fn unanswered_pings(&self) -> u32 {
        self.unanswered_pings
    }

    /// The next bytes from the peer. Cancel-safe: a cancelled call loses nothing.
    pub async fn recv(&mut self) -> Recv {
        if !self.pending.is_empty() {
            return Recv::Data(std::mem::take(&mut self.pending));
        }
        loop {
            match self.ws.next().await {
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
                Some(Ok(Message::Ping(_))) => {
                    // tungstenite queued the pong; push it out now.
                    if let Err(e) = self.ws.flush().await {
                        return Recv::Failed(e.to_string());
                    }
                }
                Some(Ok(Message::Pong(_))) => self.unanswered_pings = 0,
                Some(Ok(Message::Close(frame))) => {
                    return Recv::Closed(frame.map(|f| (u16::from(f.code), f.reason.to_string())));
                }
                Some(Ok(Message::Frame(_))) => {}
                Some(Err(tungstenite::Error::ConnectionClosed)) | None => {
                    return Recv::Closed(None)
                }
                Some(Err(e)) => return Recv::Failed(e.to_string()),
            }
        }
    }

    /// Reads exactly `buf.len()` bytes, keeping any surplus for the next read.
    ///
    /// # Errors
    /// `UnexpectedEof` when the peer closes, `Other` on failures.
    pub async fn read_exact(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.recv().await {
                Recv::Data(mut d) => {
                    let n = d.len().min(buf.len() - filled);
                    buf[filled..filled + n].copy_from_slice(&d[..n]);
                    filled += n;
                    if n < d.len() {
                        self.pending = d.split_off(n);
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
        std::mem::take(&mut self.pending)
    }

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
        self.ws.feed(msg).await
    }

    /// Sends what is queued.
    ///
    /// # Errors
    /// The websocket error.
    pub async fn flush(&mut self) -> Result<(), tungstenite::Error> {
        self.ws.flush().await
    }

    /// Sends `data` and flushes.
    ///
    /// # Errors
    /// The websocket error.
    pub async fn send(&mut self, data: Bytes) -> Result<(), tungstenite::Error> {
        let msg = self.message(data);
        self.ws.send(msg).await
    }

    /// Sends a ping and counts it as unanswered until a pong arrives.
    ///
    /// # Errors
    /// The websocket error.
    pub async fn ping(&mut self) -> Result<(), tungstenite::Error> {
        self.unanswered_pings += 1;
        self.ws
            .send(Message::Ping(Bytes::from_static(b"tcvnc")))
            .await
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
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            self.ws.close(Some(frame)),
        )
        .await;
    }
}
