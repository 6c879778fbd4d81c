//! The sending half: frames queued whole and written in vectored flushes.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use base64::Engine;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, WriteHalf};

use super::control::*;
use super::frame::*;
use super::*;

/// The sending half of a [`WsIo`].
pub struct WsWriter<S> {
    pub(super) wr: WriteHalf<S>,
    pub(super) role: Role,
    pub(super) mode: Mode,
    pub(super) queue: VecDeque<Bytes>,
    pub(super) queued: usize,
    /// A close frame was queued: nothing may follow it.
    pub(super) closing: bool,
    pub(super) ctl: Arc<Control>,
}

impl<S: AsyncRead + AsyncWrite> WsWriter<S> {
    /// Queues one frame from a buffer whose first [`HEADROOM`] bytes are free: the header
    /// goes there and a client masks the payload in place, so header and payload leave in
    /// one piece (one TLS record, not two) without a copy.
    pub(super) fn push_framed(&mut self, opcode: u8, mut buf: BytesMut) {
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
    pub(super) fn header(&self, opcode: u8, len: usize) -> ([u8; 14], usize, Option<[u8; 4]>) {
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
    pub(super) fn push(&mut self, opcode: u8, payload: Bytes) {
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
    pub(super) async fn make_room(&mut self, len: usize) -> std::io::Result<()> {
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
    pub(super) fn push_owed(&mut self) {
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
    pub(super) async fn write_queue(&mut self) -> std::io::Result<()> {
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
    pub(crate) async fn feed(&mut self, data: Bytes) -> std::io::Result<()> {
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
    pub(crate) async fn control_wanted(&mut self) {
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
    pub(crate) fn unanswered_pings(&self) -> u32 {
        self.ctl.pings.load(Ordering::Relaxed)
    }

    /// Whether the reader owes the peer a close frame (it read one, or a violation).
    pub(crate) fn close_owed(&self) -> bool {
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
