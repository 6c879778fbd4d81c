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
/// Largest message our tungstenite peers accept (this module streams messages and has
/// no message limit of its own: it never gathers one).
pub const MAX_MESSAGE: usize = 64 << 20;
/// Close code: normal closure (also the answer to a close frame without a code).
pub const CLOSE_NORMAL: u16 = 1000;
/// Close code: the peer broke RFC 6455 (reserved bits, masking, opcodes, fragmentation,
/// an invalid close code).
pub const CLOSE_PROTOCOL: u16 = 1002;
/// Close code: a message of a type the channel does not carry (text on a binary channel).
pub const CLOSE_UNSUPPORTED: u16 = 1003;
/// Close code: data inconsistent with its type (a close reason that is not UTF-8, bad
/// base64 text).
pub const CLOSE_INVALID_DATA: u16 = 1007;
/// Close code: a frame larger than [`MAX_FRAME`].
pub const CLOSE_TOO_BIG: u16 = 1009;
/// How a [`Recv::Failed`] caused by the peer breaking the protocol begins.
pub const PROTOCOL_ERROR: &str = "websocket protocol error";
/// Read size while data flows.
const READ_CHUNK: usize = 64 * 1024;
/// Read size after a read that did not fill the buffer (idle, or small messages).
const SMALL_READ: usize = 4 * 1024;
/// Queued output beyond which `feed` writes before queueing more.
const WRITE_LIMIT: usize = 512 * 1024;
/// Free bytes [`WsWriter::feed_framed`] wants before a payload: the largest frame header.
pub const HEADROOM: usize = 14;
/// Pings answered one by one when several arrive at once (beyond, only the latest).
const MAX_OWED_PONGS: usize = 16;
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

/// What the two halves share: pings in flight, and the pong and close owed to the peer.
#[derive(Debug, Default)]
struct Control {
    pings: AtomicU32,
    /// Pongs owed, oldest first; at most [`MAX_OWED_PONGS`] (older ones are dropped:
    /// only the latest ping needs an answer, RFC 6455 §5.5.3).
    pong: Mutex<VecDeque<Bytes>>,
    /// The payload of the close frame the reader owes the peer (the first one noted wins).
    close: Mutex<Option<Bytes>>,
    wake: Notify,
}

impl Control {
    fn owe_pong(&self, payload: Bytes) {
        let mut owed = self
            .pong
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if owed.len() == MAX_OWED_PONGS {
            owed.pop_front();
        }
        owed.push_back(payload);
        self.wake.notify_one();
    }

    fn take_pong(&self) -> Option<Bytes> {
        self.pong
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop_front()
    }

    fn owe_close(&self, code: u16, reason: &str) {
        let mut owed = self
            .close
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if owed.is_none() {
            *owed = Some(close_payload(code, reason));
            self.wake.notify_one();
        }
    }

    fn take_close(&self) -> Option<Bytes> {
        self.close
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    fn close_owed(&self) -> bool {
        self.close
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some()
    }
}

/// A close frame's payload: `code`, then `reason` cut to the 123 bytes a frame allows
/// (at a character boundary).
fn close_payload(code: u16, reason: &str) -> Bytes {
    let mut cut = reason.len().min(123);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut payload = BytesMut::with_capacity(2 + cut);
    payload.put_u16(code);
    payload.put_slice(&reason.as_bytes()[..cut]);
    payload.freeze()
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
    /// A message ended (reported only to [`WsIo::recv_message`]).
    MessageEnd,
    /// Something was consumed (a header, a control frame, an empty payload).
    Progress,
    /// More bytes are needed.
    NeedMore,
}

/// A broken rule of RFC 6455 (or of our channel): the close code owed to the peer and
/// what was wrong. Built only on the error path.
#[derive(Debug)]
struct Violation {
    code: u16,
    what: String,
}

fn violation(code: u16, what: impl Into<String>) -> Violation {
    Violation {
        code,
        what: what.into(),
    }
}

/// Whether a peer may send `code` in a close frame (RFC 6455 §7.4, the IANA registry):
/// 1000–1003, 1007–1014 and 3000–4999. 1004–1006 and 1015 are reserved or may never be
/// sent; 0–999, 1016–2999 and 5000 and up are not defined.
pub fn close_code_valid(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Base64 text decoded as it streams, in 4-character groups: at most 3 characters are
/// held between frames, so a huge text message costs no memory (websockify's `base64`).
#[derive(Debug, Default)]
struct Base64Stream {
    carry: [u8; 4],
    held: usize,
    /// A padded group ended the data: nothing more may follow in this message.
    padded: bool,
}

impl Base64Stream {
    /// Decodes what complete groups `chunk` finishes; keeps the rest.
    fn decode(&mut self, mut chunk: &[u8]) -> Result<Vec<u8>, Violation> {
        let engine = &base64::engine::general_purpose::STANDARD;
        let bad = |e: base64::DecodeError| {
            violation(CLOSE_INVALID_DATA, format!("bad base64 text message: {e}"))
        };
        if chunk.is_empty() {
            return Ok(Vec::new());
        }
        if self.padded {
            return Err(violation(
                CLOSE_INVALID_DATA,
                "bad base64 text message: data after padding",
            ));
        }
        let mut out = Vec::with_capacity((self.held + chunk.len()) / 4 * 3);
        if self.held > 0 {
            let take = (4 - self.held).min(chunk.len());
            self.carry[self.held..self.held + take].copy_from_slice(&chunk[..take]);
            self.held += take;
            chunk = &chunk[take..];
            if self.held < 4 {
                return Ok(out);
            }
            self.held = 0;
            self.padded = self.carry[3] == b'=';
            engine.decode_vec(self.carry, &mut out).map_err(bad)?;
            if self.padded && !chunk.is_empty() {
                return Err(violation(
                    CLOSE_INVALID_DATA,
                    "bad base64 text message: data after padding",
                ));
            }
        }
        let whole = chunk.len() / 4 * 4;
        if whole > 0 {
            self.padded = chunk[whole - 1] == b'=';
            engine.decode_vec(&chunk[..whole], &mut out).map_err(bad)?;
        }
        let rest = &chunk[whole..];
        if !rest.is_empty() && self.padded {
            return Err(violation(
                CLOSE_INVALID_DATA,
                "bad base64 text message: data after padding",
            ));
        }
        self.carry[..rest.len()].copy_from_slice(rest);
        self.held = rest.len();
        Ok(out)
    }

    /// The message ended: no partial group may remain.
    fn finish(&mut self) -> Result<(), Violation> {
        let held = std::mem::take(&mut self.held);
        self.padded = false;
        if held == 0 {
            Ok(())
        } else {
            Err(violation(
                CLOSE_INVALID_DATA,
                "bad base64 text message: its length is not a multiple of 4",
            ))
        }
    }
}

/// How a reader stopped for good.
#[derive(Debug, Clone)]
enum Ended {
    Closed(Option<(u16, String)>),
    Failed(String),
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
    base64: Base64Stream,
    pending: Bytes,
    /// Set once a close frame or a failure was read: nothing after it counts, and every
    /// later receive repeats it.
    ended: Option<Ended>,
    /// Report message ends ([`WsIo::recv_message`]); the data path never asks.
    report_ends: bool,
    end_pending: bool,
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
    fn parse(&mut self) -> Result<Parsed, Violation> {
        if self.end_pending {
            self.end_pending = false;
            return Ok(Parsed::MessageEnd);
        }
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
            let message_done = done && fin;
            if done {
                self.frame = None;
                if fin {
                    self.message = None;
                    self.end_pending = self.report_ends;
                }
            }
            let data = if text {
                let mut decoded = self.base64.decode(&chunk)?;
                if message_done {
                    self.base64.finish()?;
                }
                if decoded.is_empty() {
                    Bytes::new()
                } else {
                    decoded.shrink_to_fit();
                    Bytes::from(decoded)
                }
            } else {
                chunk.freeze()
            };
            return Ok(if data.is_empty() {
                Parsed::Progress
            } else {
                Parsed::Data(data)
            });
        }

        if self.buf.len() < 2 {
            return Ok(Parsed::NeedMore);
        }
        let (b0, b1) = (self.buf[0], self.buf[1]);
        let fin = b0 & 0x80 != 0;
        if b0 & 0x70 != 0 {
            return Err(violation(
                CLOSE_PROTOCOL,
                "frame with reserved bits set (no extension was agreed)",
            ));
        }
        let opcode = b0 & 0x0F;
        let masked = b1 & 0x80 != 0;
        match (self.role, masked) {
            (Role::Client, true) => {
                return Err(violation(CLOSE_PROTOCOL, "the server sent a masked frame"))
            }
            (Role::Server, false) => {
                return Err(violation(
                    CLOSE_PROTOCOL,
                    "the client sent an unmasked frame",
                ))
            }
            _ => {}
        }
        if opcode & 0x8 != 0 && (!fin || b1 & 0x7F > 125) {
            return Err(violation(
                CLOSE_PROTOCOL,
                "fragmented or oversized control frame",
            ));
        }
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
        if len >> 63 != 0 {
            return Err(violation(
                CLOSE_PROTOCOL,
                "frame length with its most significant bit set",
            ));
        }
        if len > MAX_FRAME as u64 {
            return Err(violation(
                CLOSE_TOO_BIG,
                format!("frame of {len} bytes exceeds the {MAX_FRAME}-byte limit"),
            ));
        }
        let mask_at = head;
        if masked {
            head += 4;
        }
        if self.buf.len() < head {
            return Ok(Parsed::NeedMore);
        }
        let mask = masked.then(|| {
            let mut m = [0u8; 4];
            m.copy_from_slice(&self.buf[mask_at..mask_at + 4]);
            m
        });
        let len = usize::try_from(len).unwrap_or(usize::MAX);

        if opcode & 0x8 != 0 {
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
                OP_CLOSE => self.close_frame(&payload).map(Parsed::Closed),
                other => Err(violation(
                    CLOSE_PROTOCOL,
                    format!("unknown control opcode {other:#x}"),
                )),
            };
        }

        let text = match opcode {
            OP_CONTINUATION => match self.message {
                Some(text) => text,
                None => {
                    return Err(violation(
                        CLOSE_PROTOCOL,
                        "continuation frame outside a message",
                    ))
                }
            },
            OP_TEXT | OP_BINARY => {
                if self.message.is_some() {
                    return Err(violation(
                        CLOSE_PROTOCOL,
                        "new message before the previous one ended",
                    ));
                }
                opcode == OP_TEXT
            }
            other => {
                return Err(violation(
                    CLOSE_PROTOCOL,
                    format!("unknown opcode {other:#x}"),
                ))
            }
        };
        if text && self.mode == Mode::Binary {
            return Err(violation(
                CLOSE_UNSUPPORTED,
                "text message on a binary channel",
            ));
        }
        if !text && self.mode == Mode::Base64 {
            return Err(violation(
                CLOSE_UNSUPPORTED,
                "binary message on a base64 (text) channel",
            ));
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

    /// Checks a close frame's payload and notes the answer owed: the peer's code echoed
    /// (1000 when it sent none), or 1002 / 1007 when the frame itself is invalid.
    fn close_frame(&mut self, payload: &[u8]) -> Result<Option<(u16, String)>, Violation> {
        match payload {
            [] => {
                self.ctl.owe_close(CLOSE_NORMAL, "");
                Ok(None)
            }
            [_] => Err(violation(
                CLOSE_PROTOCOL,
                "close frame with a one-byte payload",
            )),
            [hi, lo, reason @ ..] => {
                let code = u16::from_be_bytes([*hi, *lo]);
                if !close_code_valid(code) {
                    return Err(violation(
                        CLOSE_PROTOCOL,
                        format!("close frame with the invalid code {code}"),
                    ));
                }
                let Ok(reason) = std::str::from_utf8(reason) else {
                    return Err(violation(
                        CLOSE_INVALID_DATA,
                        "close frame whose reason is not UTF-8",
                    ));
                };
                self.ctl.owe_close(code, "");
                Ok(Some((code, reason.to_owned())))
            }
        }
    }

    /// Reads more bytes: up to 4 KiB while idle, 64 KiB while data flows. The buffer's
    /// capacity stays within [`READ_CHUNK`]: what is left of the last read (at most a
    /// partial header or control frame, 131 bytes) moves to a new buffer when the old one
    /// cannot be reclaimed, instead of letting `reserve` double it.
    async fn fill(&mut self) -> std::io::Result<usize> {
        let cap = if self.last_read_full {
            READ_CHUNK
        } else {
            SMALL_READ
        };
        let room = cap.saturating_sub(self.buf.len()).max(512);
        if self.buf.capacity() - self.buf.len() < room && !self.buf.try_reclaim(room) {
            let mut fresh = BytesMut::with_capacity(self.buf.len() + room);
            fresh.extend_from_slice(&self.buf);
            self.buf = fresh;
        }
        let n = self.rd.read_buf(&mut self.buf).await?;
        self.last_read_full = n >= room;
        Ok(n)
    }

    /// The next bytes from the peer. Cancel-safe: a cancelled call loses nothing.
    ///
    /// A close frame or a protocol violation also notes the close frame owed to the peer
    /// (its code echoed, or 1002, 1003, 1007, 1009); the writer sends it with its next
    /// flush or [`WsWriter::close`], and [`WsIo::recv`] sends it before returning. After
    /// `Closed` or `Failed`, every call returns the same again.
    pub async fn recv(&mut self) -> Recv {
        if !self.pending.is_empty() {
            return Recv::Data(std::mem::take(&mut self.pending));
        }
        loop {
            if let Some(end) = &self.ended {
                return match end {
                    Ended::Closed(c) => Recv::Closed(c.clone()),
                    Ended::Failed(e) => Recv::Failed(e.clone()),
                };
            }
            match self.parse() {
                Ok(Parsed::Data(b)) => return Recv::Data(b),
                Ok(Parsed::Closed(c)) => {
                    self.ended = Some(Ended::Closed(c.clone()));
                    return Recv::Closed(c);
                }
                Ok(Parsed::MessageEnd) => return Recv::Data(Bytes::new()),
                Ok(Parsed::Progress) => continue,
                Ok(Parsed::NeedMore) => {}
                Err(v) => {
                    self.ctl.owe_close(v.code, &v.what);
                    self.ended = Some(Ended::Failed(format!("{PROTOCOL_ERROR}: {}", v.what)));
                    continue;
                }
            }
            match self.fill().await {
                Ok(0) => {
                    self.ended = Some(Ended::Failed(
                        "connection closed without a websocket close frame".into(),
                    ));
                }
                Ok(_) => {}
                Err(e) => self.ended = Some(Ended::Failed(e.to_string())),
            }
        }
    }

    /// Bytes this reader holds: its read buffer's capacity and the bytes received but not
    /// yet taken. The buffer stays within 64 KiB whatever the peer sends.
    pub fn held_bytes(&self) -> usize {
        self.buf.capacity() + self.pending.len() + self.base64.held
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
        self.push_owed();
        if self.closing {
            // Nothing may follow a close frame (RFC 6455 §5.5.1).
            return Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the websocket is closing",
            ));
        }
        if self.queued + len > WRITE_LIMIT {
            self.write_queue().await?;
        }
        Ok(())
    }

    /// Queues the pong owed, then the close owed (after which nothing is sent).
    fn push_owed(&mut self) {
        if self.closing {
            return;
        }
        while let Some(p) = self.ctl.take_pong() {
            self.push(OP_PONG, p);
        }
        if let Some(c) = self.ctl.take_close() {
            self.closing = true;
            self.push(OP_CLOSE, c);
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

    /// Sends what is queued, and any pong or close owed.
    ///
    /// # Errors
    /// The transport error.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        self.push_owed();
        self.write_queue().await?;
        self.wr.flush().await
    }

    /// Resolves when a pong or a close is owed to the peer (then call [`Self::flush`]).
    /// Cancel-safe.
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

    /// Whether a close frame was queued or sent: nothing more can be.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// Whether the reader owes the peer a close frame (it read one, or a violation).
    pub fn close_owed(&self) -> bool {
        !self.closing && self.ctl.close_owed()
    }

    /// Sends a close frame and ends the write side. One close frame only: when the reader
    /// owes one (the answer to the peer's close, or 1002/1003/1007/1009 after a violation)
    /// that one goes instead of `code` and `reason`.
    ///
    /// # Errors
    /// The transport error.
    pub async fn close(&mut self, code: u16, reason: &str) -> std::io::Result<()> {
        self.push_owed();
        if !self.closing {
            self.closing = true;
            self.push(OP_CLOSE, close_payload(code, reason));
        }
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
                base64: Base64Stream::default(),
                pending: Bytes::new(),
                ended: None,
                report_ends: false,
                end_pending: false,
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

    /// The next bytes from the peer, answering its pings meanwhile. Cancel-safe: a
    /// cancelled call loses no data, and a close it read is returned again by the next.
    ///
    /// This is the call that watches a websocket client in any phase (greeting,
    /// handshakes, waiting for budget): a close frame from the peer is answered here
    /// (its code echoed) and surfaces as [`Recv::Closed`]; a violation is answered with
    /// 1002, 1003, 1007 or 1009 and surfaces as [`Recv::Failed`]. After either, the write
    /// side is shut and every later call returns the same. [`Self::read_exact`] goes
    /// through it.
    pub async fn recv(&mut self) -> Recv {
        let r = loop {
            tokio::select! {
                r = self.r.recv() => break r,
                () = self.w.control_wanted() => {
                    // A pong that cannot be written is not the story: the read side
                    // tells what happened to the peer (a close frame may be waiting).
                    if let Err(e) = self.w.flush().await {
                        tracing::debug!(error = %e, "could not answer a websocket ping");
                    }
                }
            }
        };
        if !matches!(r, Recv::Data(_)) {
            self.answer_close().await;
        }
        r
    }

    /// Sends the close frame the reader owes the peer, if any (the answer to its close,
    /// or the code of a violation), and ends the write side; bounded by 2 s, errors
    /// ignored (the peer may be gone). Nothing happens when nothing is owed.
    pub async fn answer_close(&mut self) {
        if self.w.close_owed() {
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(2),
                self.w.close(CLOSE_NORMAL, ""),
            )
            .await;
        }
    }

    /// The next whole message, appended to `out` (decoded, in base64 mode); pings are
    /// answered meanwhile. For conformance harnesses and tools that need message
    /// boundaries: the data path streams and never gathers. A message longer than
    /// `limit` is refused with 1009.
    ///
    /// Not cancel-safe for the message boundary: a cancelled call leaves part of a
    /// message in `out`.
    ///
    /// # Errors
    /// What ended the websocket instead: [`Recv::Closed`] or [`Recv::Failed`] (the close
    /// owed to the peer already sent).
    pub async fn recv_message(&mut self, out: &mut BytesMut, limit: usize) -> Result<(), Recv> {
        self.r.report_ends = true;
        let r = loop {
            // With `report_ends`, an empty `Data` is a message end (payload chunks are
            // never empty).
            match self.recv().await {
                Recv::Data(d) if d.is_empty() => break Ok(()),
                Recv::Data(d) if out.len() + d.len() > limit => {
                    self.w.ctl.owe_close(CLOSE_TOO_BIG, "message too big");
                    self.answer_close().await;
                    break Err(Recv::Failed(format!(
                        "message larger than the {limit}-byte limit"
                    )));
                }
                Recv::Data(d) => out.extend_from_slice(&d),
                other => break Err(other),
            }
        };
        self.r.report_ends = false;
        r
    }

    /// After a close, waits up to `within` for the peer to end the connection, reading
    /// and discarding what it still sends. A client should let the server close the TCP
    /// connection (RFC 6455 §7.1.1); dropping a socket with unread bytes resets it, and a
    /// reset can destroy the close frame before the peer reads it.
    pub async fn linger(&mut self, within: std::time::Duration) {
        let mut sink = [0u8; 4096];
        let drain = async {
            while let Ok(n) = self.r.rd.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(within, drain).await;
    }

    /// Bytes the reading side holds (read buffer capacity, bytes not yet taken, partial
    /// base64 group): 64 KiB at most (plus what the caller left untaken), whatever the
    /// peer sends.
    pub fn held_bytes(&self) -> usize {
        self.r.held_bytes()
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
    /// and ends the write side; errors are ignored (the peer may be gone). When the
    /// reader owes the peer a close (see [`Self::recv`]), that one is sent instead: one
    /// close frame per websocket.
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
