//! The receiving half: frames parsed from a read buffer, payloads streamed as slices.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadHalf};

use super::control::*;
use super::frame::*;
use super::*;

/// The data frame being streamed.
#[derive(Debug)]
pub(super) struct InFrame {
    pub(super) remaining: u64,
    pub(super) mask: Option<[u8; 4]>,
    pub(super) offset: usize,
    pub(super) text: bool,
    pub(super) fin: bool,
}

/// What parsing the buffer gave.
pub(super) enum Parsed {
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

/// How a reader stopped for good.
#[derive(Debug, Clone)]
pub(super) enum Ended {
    Closed(Option<(u16, String)>),
    Failed(String),
}

/// The receiving half of a [`WsIo`].
pub struct WsReader<S> {
    pub(super) rd: ReadHalf<S>,
    pub(super) role: Role,
    pub(super) mode: Mode,
    pub(super) buf: BytesMut,
    pub(super) frame: Option<InFrame>,
    /// A fragmented message is in progress: is it text?
    pub(super) message: Option<bool>,
    pub(super) base64: Base64Stream,
    pub(super) pending: Bytes,
    /// Set once a close frame or a failure was read: nothing after it counts, and every
    /// later receive repeats it.
    pub(super) ended: Option<Ended>,
    /// Report message ends ([`WsIo::recv_message`]); the data path never asks.
    pub(super) report_ends: bool,
    pub(super) end_pending: bool,
    pub(super) last_read_full: bool,
    pub(super) ctl: Arc<Control>,
}

impl<S: AsyncRead + AsyncWrite> WsReader<S> {
    /// Parses what the buffer holds, without reading.
    pub(super) fn parse(&mut self) -> Result<Parsed, Violation> {
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
    pub(super) fn close_frame(
        &mut self,
        payload: &[u8],
    ) -> Result<Option<(u16, String)>, Violation> {
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
    pub(super) async fn fill(&mut self) -> std::io::Result<usize> {
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
