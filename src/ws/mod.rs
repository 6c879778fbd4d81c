//! A websocket used as an RFB byte channel: RFC 6455 framing written for the data path,
//! both roles. `frame` owns the wire format (opcodes, masking, close codes, base64 text),
//! `reader` and `writer` the two halves, `io` the pair; `control` what the halves share.
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

mod control;
mod frame;
mod io;
mod reader;
#[cfg(test)]
mod tests;
mod writer;

pub use frame::{apply_mask, close_code_valid};
pub use io::WsIo;
pub use reader::WsReader;
pub use writer::WsWriter;

use bytes::Bytes;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Largest frame we accept from a peer.
pub const MAX_FRAME: usize = 16 << 20;
/// Largest message our tungstenite peers accept (this module streams messages and has
/// no message limit of its own: it never gathers one).
pub(crate) const MAX_MESSAGE: usize = 64 << 20;
/// Close code: normal closure (also the answer to a close frame without a code).
pub(crate) const CLOSE_NORMAL: u16 = 1000;
/// Close code: the peer broke RFC 6455 (reserved bits, masking, opcodes, fragmentation,
/// an invalid close code).
pub(crate) const CLOSE_PROTOCOL: u16 = 1002;
/// Close code: a message of a type the channel does not carry (text on a binary channel).
pub(crate) const CLOSE_UNSUPPORTED: u16 = 1003;
/// Close code: data inconsistent with its type (a close reason that is not UTF-8, bad
/// base64 text).
pub(crate) const CLOSE_INVALID_DATA: u16 = 1007;
/// Close code: a frame larger than [`MAX_FRAME`].
pub(crate) const CLOSE_TOO_BIG: u16 = 1009;
/// How a [`Recv::Failed`] caused by the peer breaking the protocol begins.
pub(crate) const PROTOCOL_ERROR: &str = "websocket protocol error";
/// Read size while data flows.
pub(super) const READ_CHUNK: usize = 64 * 1024;
/// Read size after a read that did not fill the buffer (idle, or small messages).
pub(super) const SMALL_READ: usize = 4 * 1024;
/// Queued output beyond which `feed` writes before queueing more.
pub(super) const WRITE_LIMIT: usize = 512 * 1024;
/// How long a client waits, after its close frame, for the server to end the connection.
pub const CLIENT_LINGER: std::time::Duration = std::time::Duration::from_secs(1);
/// Free bytes [`WsWriter::feed_framed`] wants before a payload: the largest frame header.
pub(crate) const HEADROOM: usize = 14;
/// Pings answered one by one when several arrive at once (beyond, only the latest).
pub(super) const MAX_OWED_PONGS: usize = 16;
/// Slices per vectored write.
pub(super) const MAX_SLICES: usize = 32;

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
