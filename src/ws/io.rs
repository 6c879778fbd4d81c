//! Both halves as one websocket carrying a byte stream.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use super::control::Control;
use super::frame::*;
use super::reader::WsReader;
use super::writer::WsWriter;
use super::*;

/// A websocket carrying a byte stream, kept as two halves so that both directions can
/// make progress at once (a pump blocked on sending never stops the other from reading).
pub struct WsIo<S> {
    pub(super) r: WsReader<S>,
    pub(super) w: WsWriter<S>,
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
    pub(crate) async fn answer_close(&mut self) {
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
    pub(crate) fn take_pending(&mut self) -> Bytes {
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

    /// Pings sent that no pong has answered yet.
    pub fn unanswered_pings(&self) -> u32 {
        self.w.unanswered_pings()
    }

    /// Sends a close frame with `code` and `reason` (cut to the 123 bytes a frame allows)
    /// and ends the write side; errors are ignored (the peer may be gone). When the
    /// reader owes the peer a close (see [`Self::recv`]), that one is sent instead: one
    /// close frame per websocket. As the client (tcvnc towards a gateway), it then lets
    /// the server end the connection, up to [`CLIENT_LINGER`] (RFC 6455 §7.1.1): dropping
    /// the socket with the server's answer unread would reset it, and a reset can destroy
    /// our close frame before the gateway reads it.
    pub async fn close(&mut self, code: u16, reason: &str) {
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            self.w.close(code, reason),
        )
        .await;
        if self.r.role == Role::Client {
            self.linger(CLIENT_LINGER).await;
        }
    }
}
