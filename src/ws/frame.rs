//! The wire format: opcodes, masking, close payloads and codes, base64 text decoded as
//! it streams.

use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};

use super::*;

pub(super) const OP_CONTINUATION: u8 = 0x0;
pub(super) const OP_TEXT: u8 = 0x1;
pub(super) const OP_BINARY: u8 = 0x2;
pub(super) const OP_CLOSE: u8 = 0x8;
pub(super) const OP_PING: u8 = 0x9;
pub(super) const OP_PONG: u8 = 0xA;

/// A close frame's payload: `code`, then `reason` cut to the 123 bytes a frame allows
/// (at a character boundary).
pub(super) fn close_payload(code: u16, reason: &str) -> Bytes {
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

/// A broken rule of RFC 6455 (or of our channel): the close code owed to the peer and
/// what was wrong. Built only on the error path.
#[derive(Debug)]
pub(super) struct Violation {
    pub(super) code: u16,
    pub(super) what: String,
}

pub(super) fn violation(code: u16, what: impl Into<String>) -> Violation {
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
pub(super) struct Base64Stream {
    pub(super) carry: [u8; 4],
    pub(super) held: usize,
    /// A padded group ended the data: nothing more may follow in this message.
    pub(super) padded: bool,
}

impl Base64Stream {
    /// Decodes what complete groups `chunk` finishes; keeps the rest.
    pub(super) fn decode(&mut self, mut chunk: &[u8]) -> Result<Vec<u8>, Violation> {
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
    pub(super) fn finish(&mut self) -> Result<(), Violation> {
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
