//! A websocket used as an RFB byte channel: RFC 6455 framing written for the data path.
//!
//! Binary messages (or base64 text, when that subprotocol was chosen) carry the byte
//! stream. Payloads are streamed as they arrive, not gathered into whole messages: a
//! binary frame's bytes leave the read buffer as slices of it (no copy), and nothing is
//! allocated per frame. A new session reads 4 KiB at a time and 64 KiB only once data
//! flows, so a session that has only done its handshake costs a few KiB (a buffer that
//! grew during a burst is kept for the next one). Writes queue whole frames and go out
//! in one vectored write per flush; the bridge's frames carry their header in headroom
//! in front of the payload, which a client masks in place.
//!
//! Pings from the peer are answered: the reader notes the pong owed and the writer sends
//! it with its next write, or when the bridge wakes it through
//! [`WsWriter::control_wanted`]. Close frames surface with their code and reason.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Largest frame we accept from a peer.
pub const MAX_FRAME: usize = 16 << 20;
/// Largest message we accept from a peer (text messages are gathered to decode them).
pub const MAX_MESSAGE: usize = 64 << 20;
/// Read size while data flows.
const READ_CHUNK: usize = 64 * 1024;
/// Read size after a read that did not fill the buffer (idle, or small messages).
const SMALL_READ: usize = 4 * 1024;
/// Queued output beyond which `feed` writes before queueing more.
const WRITE_LIMIT: usize = 512 * 1024;
/// Free bytes [`WsWriter::feed_framed`] wants before a payload: the largest frame header.
pub const HEADROOM: usize = 14;
/// Slices per vectored write.
const MAX_SLICES: usize = 32;

/// Limits for tungstenite peers of ours (the simulator's gateway, test and benchmark
/// clients): the same frame and message bounds as this module's.
pub fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(64 * 1024)
        .max_write_buffer_size(2 * WRITE_LIMIT)
        .max_frame_size(Some(MAX_FRAME))
        .max_message_size(Some(MAX_MESSAGE))
}

/// Copies what fits of `data` into `buf[*filled..]`, advancing `filled`; returns the
/// bytes that did not fit (to keep for the next read).
pub fn fill_from(buf: &mut [u8], filled: &mut usize, mut data: Bytes) -> Bytes {
    let n = data.len().min(buf.len() - *filled);
    buf[*filled..*filled + n].copy_from_slice(&data[..n]);
    *filled += n;
    data.split_off(n)
}

/// Which end of the websocket we are: a client masks what it sends and must not receive
/// masked frames; a server the reverse (RFC 6455 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We opened the websocket (tcvnc towards the console gateway).
    Client,
    /// We accepted it (a browser's websocket on the HTTP listener).
    Server,
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
    /// The peer sent a close frame (code, reason; `None` when it carried no code).
    Closed(Option<(u16, String)>),
    /// A transport or protocol failure.
    Failed(String),
}

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// What the two halves share: pings in flight, and the pong owed to the peer.
#[derive(Debug, Default)]
struct Control {
    pings: AtomicU32,
    pong: Mutex<Option<Bytes>>,
    wake: Notify,
}

impl Control {
    fn owe_pong(&self, payload: Bytes) {
        // Only the latest ping needs an answer (RFC 6455 §5.5.3).
        *self
            .pong
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(payload);
        self.wake.notify_one();
    }

    fn take_pong(&self) -> Option<Bytes> {
        self.pong
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

/// XORs `data` with `mask` as if `data` began `offset` bytes into the payload.
pub fn apply_mask(data: &mut [u8], mask: [u8; 4], offset: usize) {
    let mut m = mask;
    m.rotate_left(offset % 4);
    let half = u64::from(u32::from_ne_bytes(m));
    let word = half | (half << 32);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        c.copy_from_slice(&(u64::from_ne_bytes(w) ^ word).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= m[i & 3];
    }
}

/// The data frame being streamed.
#[derive(Debug)]
struct InFrame {
    remaining: u64,
    mask: Option<[u8; 4]>,
    offset: usize,
    text: bool,
    fin: bool,
}

/// What parsing the buffer gave.
enum Parsed {
    /// Bytes for the caller.
    Data(Bytes),
    /// A close frame.
    Closed(Option<(u16, String)>),
    /// Something was consumed (a header, a control frame, part of a text message).
    Progress,
    /// More bytes are needed.
    NeedMore,
}

/// The receiving half of a [`WsIo`].
pub struct WsReader<S> {
    rd: ReadHalf<S>,
    role: Role,
    mode: Mode,
    buf: BytesMut,
    frame: Option<InFrame>,
    /// A fragmented message is in progress: is it text?
    message: Option<bool>,
    text: BytesMut,
    pending: Bytes,
    closed: bool,
    last_read_full: bool,
    ctl: Arc<Control>,
}

/// The sending half of a [`WsIo`].
pub struct WsWriter<S> {
    wr: WriteHalf<S>,
    role: Role,
    mode: Mode,
    queue: VecDeque<Bytes>,
    queued: usize,
    /// A close frame was queued: nothing may follow it.
    closing: bool,
    ctl: Arc<Control>,
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
            .field("role", &self.r.role)
            .field("mode", &self.r.mode)
            .field("pending", &self.r.pending.len())
            .finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite> WsReader<S> {
    /// Parses what the buffer holds, without reading.
    fn parse(&mut self) -> Result<Parsed, String> {
        if let Some(f) = &mut self.frame {
            let n = usize::try_from(f.remaining)
                .unwrap_or(usize::MAX)
                .min(self.buf.len());
            if n == 0 && f.remaining > 0 {
                return Ok(Parsed::NeedMore);
            }
            let mut chunk = self.buf.split_to(n);
            if let Some(m) = f.mask {
                apply_mask(&mut chunk, m, f.offset);
                f.offset += n;
            }
            f.remaining -= n as u64;
            let (done, text, fin) = (f.remaining == 0, f.text, f.fin);
            if done {
                self.frame = None;
                if fin {
                    self.message = None;
                }
            }
            if !text {
                return Ok(if chunk.is_empty() {
                    Parsed::Progress
                } else {
                    Parsed::Data(chunk.freeze())
                });
            }
            if self.text.len() + chunk.len() > MAX_MESSAGE {
                return Err(format!("text message larger than {MAX_MESSAGE} bytes"));
            }
            self.text.extend_from_slice(&chunk);
            if !(done && fin) {
                return Ok(Parsed::Progress);
            }
            let text = std::mem::take(&mut self.text);
            return match base64::engine::general_purpose::STANDARD.decode(&text) {
                Ok(b) if b.is_empty() => Ok(Parsed::Progress),
                Ok(b) => Ok(Parsed::Data(Bytes::from(b))),
                Err(e) => Err(format!("bad base64 text message: {e}")),
            };
        }

        if self.buf.len() < 2 {
            return Ok(Parsed::NeedMore);
        }
        let (b0, b1) = (self.buf[0], self.buf[1]);
        let fin = b0 & 0x80 != 0;
        if b0 & 0x70 != 0 {
            return Err("frame with reserved bits set (no extension was agreed)".into());
        }
        let opcode = b0 & 0x0F;
        let masked = b1 & 0x80 != 0;
        let (len, mut head) = match b1 & 0x7F {
            126 if self.buf.len() >= 4 => {
                (u64::from(u16::from_be_bytes([self.buf[2], self.buf[3]])), 4)
            }
            127 if self.buf.len() >= 10 => {
                let mut l = [0u8; 8];
                l.copy_from_slice(&self.buf[2..10]);
                (u64::from_be_bytes(l), 10)
            }
            126 | 127 => return Ok(Parsed::NeedMore),
            n => (u64::from(n), 2),
        };
        let mask_at = head;
        if masked {
            head += 4;
        }
        if self.buf.len() < head {
            return Ok(Parsed::NeedMore);
        }
        match (self.role, masked) {
            (Role::Client, true) => return Err("the server sent a masked frame".into()),
            (Role::Server, false) => return Err("the client sent an unmasked frame".into()),
            _ => {}
        }
        if len > MAX_FRAME as u64 {
            return Err(format!(
                "frame of {len} bytes exceeds the {MAX_FRAME}-byte limit"
            ));
        }
        let mask = masked.then(|| {
            let mut m = [0u8; 4];
            m.copy_from_slice(&self.buf[mask_at..mask_at + 4]);
            m
        });
        let len = usize::try_from(len).unwrap_or(usize::MAX);

        if opcode & 0x8 != 0 {
            if !fin || len > 125 {
                return Err("fragmented or oversized control frame".into());
            }
            if self.buf.len() < head + len {
                return Ok(Parsed::NeedMore);
            }
            self.buf.advance(head);
            let mut payload = self.buf.split_to(len);
            if let Some(m) = mask {
                apply_mask(&mut payload, m, 0);
            }
            return match opcode {
                OP_PING => {
                    self.ctl.owe_pong(payload.freeze());
                    Ok(Parsed::Progress)
                }
                OP_PONG => {
                    self.ctl.pings.store(0, Ordering::Relaxed);
                    Ok(Parsed::Progress)
                }
                OP_CLOSE => {
                    self.closed = true;
                    match payload.len() {
                        0 => Ok(Parsed::Closed(None)),
                        1 => Err("close frame with a one-byte payload".into()),
                        _ => {
                            let code = u16::from_be_bytes([payload[0], payload[1]]);
                            let reason = String::from_utf8_lossy(&payload[2..]).into_owned();
                            Ok(Parsed::Closed(Some((code, reason))))
                        }
                    }
                }
                other => Err(format!("unknown control opcode {other:#x}")),
            };
        }

        let text = match opcode {
            OP_CONTINUATION => match self.message {
                Some(text) => text,
                None => return Err("continuation frame outside a message".into()),
            },
            OP_TEXT | OP_BINARY => {
                if self.message.is_some() {
                    return Err("new message before the previous one ended".into());
                }
                opcode == OP_TEXT
            }
            other => return Err(format!("unknown opcode {other:#x}")),
        };
        if text && self.mode == Mode::Binary {
            return Err("text message on a binary channel".into());
        }
        if !fin {
            self.message = Some(text);
        }
        self.buf.advance(head);
        self.frame = Some(InFrame {
            remaining: len as u64,
            mask,
            offset: 0,
            text,
            fin,
        });
        Ok(Parsed::Progress)
    }

    /// The next bytes from the peer. Cancel-safe: a cancelled call loses nothing.
    pub async fn recv(&mut self) -> Recv {
        if !self.pending.is_empty() {
            return Recv::Data(std::mem::take(&mut self.pending));
        }
        if self.closed {
            // Nothing after a close frame counts (RFC 6455 §5.5.1).
            return Recv::Closed(None);
        }
        loop {
            match self.parse() {
                Ok(Parsed::Data(b)) => return Recv::Data(b),
                Ok(Parsed::Closed(c)) => return Recv::Closed(c),
                Ok(Parsed::Progress) => continue,
                Ok(Parsed::NeedMore) => {}
                Err(e) => return Recv::Failed(format!("websocket protocol error: {e}")),
            }
            if self.closed {
                return Recv::Closed(None);
            }
            let want = if self.last_read_full {
                READ_CHUNK
            } else {
                SMALL_READ
            };
            self.buf.reserve(want);
            match self.rd.read_buf(&mut self.buf).await {
                Ok(0) => {
                    return Recv::Failed("connection closed without a websocket close frame".into())
                }
                Ok(n) => self.last_read_full = n >= want,
                Err(e) => return Recv::Failed(e.to_string()),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite> WsWriter<S> {
    /// Queues one frame from a buffer whose first [`HEADROOM`] bytes are free: the header
    /// goes there and a client masks the payload in place, so header and payload leave in
    /// one piece (one TLS record, not two) without a copy.
    fn push_framed(&mut self, opcode: u8, mut buf: BytesMut) {
        let len = buf.len() - HEADROOM;
        let (head, n, mask) = self.header(opcode, len);
        if let Some(mask) = mask {
            apply_mask(&mut buf[HEADROOM..], mask, 0);
        }
        buf[HEADROOM - n..HEADROOM].copy_from_slice(&head[..n]);
        buf.advance(HEADROOM - n);
        self.queued += buf.len();
        self.queue.push_back(buf.freeze());
    }

    /// The frame header for `len` bytes, its length, and a client's fresh mask key.
    fn header(&self, opcode: u8, len: usize) -> ([u8; 14], usize, Option<[u8; 4]>) {
        let mut head = [0u8; 14];
        head[0] = 0x80 | opcode;
        let mut n = 2;
        if len < 126 {
            head[1] = len as u8;
        } else if let Ok(l) = u16::try_from(len) {
            head[1] = 126;
            head[2..4].copy_from_slice(&l.to_be_bytes());
            n = 4;
        } else {
            head[1] = 127;
            head[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            n = 10;
        }
        let mut mask = None;
        if self.role == Role::Client {
            head[1] |= 0x80;
            let key: [u8; 4] = rand::random();
            head[n..n + 4].copy_from_slice(&key);
            n += 4;
            mask = Some(key);
        }
        (head, n, mask)
    }

    /// Queues one frame. A server sends the payload as it is (header and payload as two
    /// slices of one vectored write); a client, which must mask, copies it once into a
    /// buffer with header room and masks it there.
    fn push(&mut self, opcode: u8, payload: Bytes) {
        if self.role == Role::Client {
            let mut buf = BytesMut::with_capacity(HEADROOM + payload.len());
            buf.put_bytes(0, HEADROOM);
            buf.put_slice(&payload);
            return self.push_framed(opcode, buf);
        }
        let (head, n, _) = self.header(opcode, payload.len());
        self.queued += n + payload.len();
        self.queue.push_back(Bytes::copy_from_slice(&head[..n]));
        if !payload.is_empty() {
            self.queue.push_back(payload);
        }
    }

    /// Sends the pong owed, and makes room for `len` more bytes in the queue.
    async fn make_room(&mut self, len: usize) -> std::io::Result<()> {
        self.push_owed_pong();
        if self.queued + len > WRITE_LIMIT {
            self.write_queue().await?;
        }
        Ok(())
    }

    fn push_owed_pong(&mut self) {
        if self.closing {
            return;
        }
        if let Some(p) = self.ctl.take_pong() {
            self.push(OP_PONG, p);
        }
    }

    /// Writes everything queued (vectored).
    async fn write_queue(&mut self) -> std::io::Result<()> {
        while !self.queue.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let mut k = 0;
            for b in self.queue.iter().take(MAX_SLICES) {
                slices[k] = IoSlice::new(b);
                k += 1;
            }
            let mut n = self.wr.write_vectored(&slices[..k]).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            self.queued -= n;
            while n > 0 {
                let Some(front) = self.queue.front_mut() else {
                    break;
                };
                if n >= front.len() {
                    n -= front.len();
                    self.queue.pop_front();
                } else {
                    front.advance(n);
                    n = 0;
                }
            }
        }
        Ok(())
    }

    /// Queues `data` without flushing (writes first only when the queue is full).
    ///
    /// # Errors
    /// The transport error.
    pub async fn feed(&mut self, data: Bytes) -> std::io::Result<()> {
        self.make_room(data.len()).await?;
        match self.mode {
            Mode::Binary => self.push(OP_BINARY, data),
            Mode::Base64 => {
                let text = base64::engine::general_purpose::STANDARD.encode(&data);
                self.push(OP_TEXT, Bytes::from(text));
            }
        }
        Ok(())
    }

    /// Queues the bytes after the first [`HEADROOM`] of `buf` (free space the frame header
    /// is written into), without flushing and without copying them.
    ///
    /// # Errors
    /// The transport error.
    ///
    /// # Panics
    /// When `buf` is shorter than [`HEADROOM`] (a caller bug).
    pub(crate) async fn feed_framed(&mut self, buf: BytesMut) -> std::io::Result<()> {
        assert!(
            buf.len() >= HEADROOM,
            "feed_framed needs HEADROOM free bytes first"
        );
        if self.mode == Mode::Base64 {
            // Text frames carry a new (encoded) payload: the headroom is of no use.
            return self.feed(buf.freeze().slice(HEADROOM..)).await;
        }
        self.make_room(buf.len()).await?;
        self.push_framed(OP_BINARY, buf);
        Ok(())
    }

    /// Sends what is queued, and any pong owed.
    ///
    /// # Errors
    /// The transport error.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        self.push_owed_pong();
        self.write_queue().await?;
        self.wr.flush().await
    }

    /// Resolves when a pong is owed to the peer (then call [`Self::flush`]). Cancel-safe.
    pub async fn control_wanted(&mut self) {
        self.ctl.wake.notified().await;
    }

    /// Sends a ping and counts it as unanswered until a pong arrives.
    ///
    /// # Errors
    /// The transport error.
    pub async fn ping(&mut self) -> std::io::Result<()> {
        self.ctl.pings.fetch_add(1, Ordering::Relaxed);
        self.push(OP_PING, Bytes::from_static(b"tcvnc"));
        self.flush().await
    }

    /// Pings sent since the last pong.
    pub fn unanswered_pings(&self) -> u32 {
        self.ctl.pings.load(Ordering::Relaxed)
    }

    /// Sends a close frame and ends the write side.
    async fn close(&mut self, code: u16, reason: &str) -> std::io::Result<()> {
        let mut cut = reason.len().min(123);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut payload = BytesMut::with_capacity(2 + cut);
        payload.put_u16(code);
        payload.put_slice(&reason.as_bytes()[..cut]);
        self.push_owed_pong();
        if self.closing {
            return Ok(()); // one close frame only
        }
        self.closing = true;
        self.push(OP_CLOSE, payload.freeze());
        self.flush().await?;
        self.wr.shutdown().await
    }
}

impl<S: AsyncRead + AsyncWrite> WsIo<S> {
    /// Wraps a stream whose upgrade handshake is complete; `leftover` holds bytes read
    /// past the handshake (the first frames, when the peer was quick).
    pub fn new(stream: S, role: Role, mode: Mode, leftover: Bytes) -> Self {
        let (rd, wr) = tokio::io::split(stream);
        let ctl = Arc::new(Control::default());
        WsIo {
            r: WsReader {
                rd,
                role,
                mode,
                buf: BytesMut::from(&leftover[..]),
                frame: None,
                message: None,
                text: BytesMut::new(),
                pending: Bytes::new(),
                closed: false,
                last_read_full: false,
                ctl: ctl.clone(),
            },
            w: WsWriter {
                wr,
                role,
                mode,
                queue: VecDeque::new(),
                queued: 0,
                closing: false,
                ctl,
            },
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

    /// The next bytes from the peer, answering its pings meanwhile. Cancel-safe.
    pub async fn recv(&mut self) -> Recv {
        loop {
            tokio::select! {
                r = self.r.recv() => return r,
                () = self.w.control_wanted() => {
                    // A pong that cannot be written is not the story: the read side
                    // tells what happened to the peer (a close frame may be waiting).
                    if let Err(e) = self.w.flush().await {
                        tracing::debug!(error = %e, "could not answer a websocket ping");
                    }
                }
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
                Recv::Data(d) => self.r.pending = fill_from(buf, &mut filled, d),
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

    /// Puts `data` (just returned by [`WsIo::recv`]) back, ahead of anything unread: the
    /// next read returns it first.
    pub fn unread(&mut self, data: Bytes) {
        if self.r.pending.is_empty() {
            self.r.pending = data;
        } else {
            let mut joined = BytesMut::with_capacity(data.len() + self.r.pending.len());
            joined.extend_from_slice(&data);
            joined.extend_from_slice(&self.r.pending);
            self.r.pending = joined.freeze();
        }
    }

    /// Queues `data` without flushing.
    ///
    /// # Errors
    /// The transport error.
    pub async fn feed(&mut self, data: Bytes) -> std::io::Result<()> {
        self.w.feed(data).await
    }

    /// Sends what is queued.
    ///
    /// # Errors
    /// The transport error.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        self.w.flush().await
    }

    /// Sends `data` and flushes.
    ///
    /// # Errors
    /// The transport error.
    pub async fn send(&mut self, data: Bytes) -> std::io::Result<()> {
        self.w.feed(data).await?;
        self.w.flush().await
    }

    /// Sends a ping and counts it as unanswered until a pong arrives.
    ///
    /// # Errors
    /// The transport error.
    pub async fn ping(&mut self) -> std::io::Result<()> {
        self.w.ping().await
    }

    /// Sends a close frame with `code` and `reason` (cut to the 123 bytes a frame allows)
    /// and ends the write side; errors are ignored (the peer may be gone).
    pub async fn close(&mut self, code: u16, reason: &str) {
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            self.w.close(code, reason),
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pair(mode: Mode) -> (WsIo<tokio::io::DuplexStream>, WsIo<tokio::io::DuplexStream>) {
        let (a, b) = tokio::io::duplex(1 << 20);
        (
            WsIo::new(a, Role::Client, mode, Bytes::new()),
            WsIo::new(b, Role::Server, mode, Bytes::new()),
        )
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    async fn read_all<S: AsyncRead + AsyncWrite>(io: &mut WsIo<S>, n: usize) -> Vec<u8> {
        let mut out = vec![0u8; n];
        io.read_exact(&mut out).await.expect("read");
        out
    }

    #[test]
    fn mask_matches_bytewise_at_every_offset() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        for offset in 0..8 {
            for len in 0..40 {
                let data: Vec<u8> = (0..len).map(|i| (i * 31) as u8).collect();
                let mut fast = data.clone();
                apply_mask(&mut fast, mask, offset);
                let slow: Vec<u8> = data
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ mask[(offset + i) % 4])
                    .collect();
                assert_eq!(fast, slow, "offset {offset} len {len}");
            }
        }
    }

    #[test]
    fn both_roles_both_modes_round_trip() {
        rt().block_on(async {
            for mode in [Mode::Binary, Mode::Base64] {
                let (mut c, mut s) = pair(mode);
                let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
                c.send(Bytes::from(big.clone())).await.expect("send");
                assert_eq!(read_all(&mut s, big.len()).await, big);
                s.send(Bytes::from_static(b"RFB 003.008\n"))
                    .await
                    .expect("send");
                assert_eq!(read_all(&mut c, 12).await, b"RFB 003.008\n");
                c.close(1000, "bye").await;
                match s.recv().await {
                    Recv::Closed(Some((1000, r))) => assert_eq!(r, "bye"),
                    other => panic!("{other:?}"),
                }
            }
        });
    }

    #[test]
    fn pings_are_answered_and_pongs_counted() {
        rt().block_on(async {
            let (mut c, mut s) = pair(Mode::Binary);
            c.ping().await.expect("ping");
            assert_eq!(c.unanswered_pings(), 1);
            // The server's reader owes a pong; its recv answers while waiting for data.
            let server = async {
                let mut b = [0u8; 2];
                s.read_exact(&mut b).await.expect("data");
                b
            };
            let client = async {
                // The pong arrives before the data; recv consumes it on the way.
                loop {
                    if c.unanswered_pings() == 0 {
                        break;
                    }
                    tokio::select! {
                        r = c.recv() => panic!("unexpected {r:?}"),
                        () = tokio::task::yield_now() => {}
                    }
                }
                c.send(Bytes::from_static(b"ok")).await.expect("send");
            };
            let (b, ()) = tokio::join!(server, client);
            assert_eq!(&b, b"ok");
        });
    }

    /// Hand-made frames for the reader's error paths.
    fn frame(b0: u8, masked: bool, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![b0];
        let m = if masked { 0x80 } else { 0 };
        if payload.len() < 126 {
            v.push(m | payload.len() as u8);
        } else {
            v.push(m | 126);
            v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        if masked {
            let key = [1, 2, 3, 4];
            v.extend_from_slice(&key);
            let mut p = payload.to_vec();
            apply_mask(&mut p, key, 0);
            v.extend_from_slice(&p);
        } else {
            v.extend_from_slice(payload);
        }
        v
    }

    async fn server_reads(bytes: Vec<u8>) -> Vec<String> {
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let mut io = WsIo::new(a, Role::Server, Mode::Binary, Bytes::new());
        b.write_all(&bytes).await.expect("write");
        drop(b);
        let mut out = Vec::new();
        loop {
            match io.recv().await {
                Recv::Data(d) => out.push(format!("data {}", String::from_utf8_lossy(&d))),
                Recv::Closed(c) => {
                    out.push(format!("closed {c:?}"));
                    return out;
                }
                Recv::Failed(e) => {
                    out.push(format!("failed {e}"));
                    return out;
                }
            }
        }
    }

    #[test]
    fn reader_rules() {
        rt().block_on(async {
            let unmasked = server_reads(frame(0x82, false, b"x")).await;
            assert!(unmasked[0].contains("unmasked"), "{unmasked:?}");
            let rsv = server_reads(frame(0xC2, true, b"x")).await;
            assert!(rsv[0].contains("reserved bits"), "{rsv:?}");
            let text = server_reads(frame(0x81, true, b"aGk=")).await;
            assert!(
                text[0].contains("text message on a binary channel"),
                "{text:?}"
            );
            let big_ping = server_reads(frame(0x89, true, &[0u8; 126])).await;
            assert!(big_ping[0].contains("control frame"), "{big_ping:?}");
            let stray = server_reads(frame(0x80, true, b"x")).await;
            assert!(stray[0].contains("continuation"), "{stray:?}");
            let eof = server_reads(frame(0x82, true, b"ab")).await;
            assert_eq!(eof[0], "data ab");
            assert!(
                eof[1].contains("without a websocket close frame"),
                "{eof:?}"
            );
            // Fragments with a ping between them, then a close with code and reason.
            let mut v = frame(0x02, true, b"he");
            v.extend(frame(0x89, true, b"p"));
            v.extend(frame(0x80, true, b"llo"));
            let mut close = 1001u16.to_be_bytes().to_vec();
            close.extend_from_slice(b"going");
            v.extend(frame(0x88, true, &close));
            let r = server_reads(v).await;
            assert_eq!(
                r,
                vec!["data he", "data llo", "closed Some((1001, \"going\"))"]
            );
        });
    }

    proptest! {
        /// Arbitrary bytes from a peer, in either role and mode, end in data, a close or
        /// a failure: never a panic, never a hang.
        #[test]
        fn reader_survives_any_input(
            bytes in proptest::collection::vec(any::<u8>(), 0..2_000),
            server in any::<bool>(),
            base64 in any::<bool>(),
        ) {
            let role = if server { Role::Server } else { Role::Client };
            let mode = if base64 { Mode::Base64 } else { Mode::Binary };
            rt().block_on(async {
                let (a, mut b) = tokio::io::duplex(1 << 16);
                let mut io = WsIo::new(a, role, mode, Bytes::new());
                b.write_all(&bytes).await.expect("write");
                drop(b);
                for _ in 0..=bytes.len() {
                    match io.recv().await {
                        Recv::Data(_) => {}
                        Recv::Closed(_) | Recv::Failed(_) => return,
                    }
                }
                panic!("more results than input bytes");
            });
        }

        /// Any byte stream, cut into any messages and delivered in any pieces, arrives
        /// intact in order, whichever side sends.
        #[test]
        fn stream_survives_any_split(
            data in proptest::collection::vec(any::<u8>(), 0..20_000),
            cuts in proptest::collection::vec(1usize..5_000, 1..20),
            base64 in any::<bool>(),
            client_sends in any::<bool>(),
        ) {
            let mode = if base64 { Mode::Base64 } else { Mode::Binary };
            rt().block_on(async {
                let (mut c, mut s) = pair(mode);
                let (tx, rx) = if client_sends { (&mut c, &mut s) } else { (&mut s, &mut c) };
                let mut at = 0;
                let mut i = 0;
                while at < data.len() {
                    let end = (at + cuts[i % cuts.len()]).min(data.len());
                    if i % 2 == 0 {
                        tx.feed(Bytes::copy_from_slice(&data[at..end])).await.expect("feed");
                    } else {
                        // The bridge's zero-copy path: header space in front of the payload.
                        let mut b = BytesMut::with_capacity(HEADROOM + end - at);
                        b.put_bytes(0xEE, HEADROOM);
                        b.put_slice(&data[at..end]);
                        tx.w.feed_framed(b).await.expect("feed_framed");
                    }
                    if i % 3 == 0 {
                        tx.flush().await.expect("flush");
                    }
                    at = end;
                    i += 1;
                }
                tx.flush().await.expect("flush");
                let got = read_all(rx, data.len()).await;
                prop_assert_eq!(got, data.clone());
                Ok(())
            })?;
        }
    }
}
