//! What a viewer sends, parsed without I/O: bytes go in as they arrive (split anywhere),
//! whole messages come out. Every length is bounded before anything is held: a
//! SetEncodings list of at most [`MAX_ENCODINGS`], cut text of at most [`MAX_CUT`] bytes
//! (longer text is skipped, not held), fences and SetDesktopSize by their own limits.
//! An unknown message type ends the viewer (its length cannot be known).

use bytes::{Buf, Bytes, BytesMut};

use crate::console::fb::Rect;
use crate::rfb::messages::PixelFormat;

/// The most encodings a SetEncodings may list (viewers send 10 to 30).
pub(crate) const MAX_ENCODINGS: usize = 1024;
/// The most cut text forwarded to the console; longer text is skipped.
pub(crate) const MAX_CUT: usize = 256 * 1024;

/// One message from a viewer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ViewerMsg {
    /// SetPixelFormat.
    SetPixelFormat(PixelFormat),
    /// SetEncodings.
    SetEncodings(Vec<i32>),
    /// FramebufferUpdateRequest.
    UpdateRequest {
        /// Only changes wanted.
        incremental: bool,
        /// The area.
        area: Rect,
    },
    /// KeyEvent (the message as sent, 8 bytes).
    Key {
        /// Pressed.
        down: bool,
        /// X keysym.
        keysym: u32,
    },
    /// PointerEvent (the message as sent, 6 bytes).
    Pointer(Bytes),
    /// QEMU extended key event.
    QemuKey {
        /// Pressed.
        down: bool,
        /// X keysym.
        keysym: u32,
        /// XT scancode.
        keycode: u32,
    },
    /// ClientCutText (the message as sent), at most [`MAX_CUT`] bytes of text.
    CutText(Bytes),
    /// Cut text too long to forward (skipped), or the extended clipboard's.
    CutTextSkipped(u32),
    /// A message tcvnc takes and ignores (fences, continuous updates, SetDesktopSize,
    /// QEMU audio): it never offered them.
    Ignored(&'static str),
}

/// The parser.
#[derive(Debug, Default)]
pub(crate) struct Parser {
    buf: BytesMut,
    /// Bytes of an over-long cut text still to skip.
    skip: usize,
}

/// A viewer sent something that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct BadMessage(pub String);

impl Parser {
    /// Takes `data`, dropping what an over-long cut text still has to skip.
    pub(crate) fn push(&mut self, mut data: &[u8]) {
        if self.skip > 0 {
            let n = self.skip.min(data.len());
            self.skip -= n;
            data = &data[n..];
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes held (a partial message).
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.buf.len()
    }

    /// The next whole message, `None` when more bytes are needed.
    ///
    /// # Errors
    /// [`BadMessage`]: an unknown type or a length over its bound; the viewer must go.
    pub(crate) fn next(&mut self) -> Result<Option<ViewerMsg>, BadMessage> {
        if self.skip > 0 {
            return Ok(None);
        }
        let b = &self.buf;
        let Some(&kind) = b.first() else {
            return Ok(None);
        };
        let need = match kind {
            0 => 20,
            2 => {
                if b.len() < 4 {
                    return Ok(None);
                }
                let n = usize::from(u16::from_be_bytes([b[2], b[3]]));
                if n > MAX_ENCODINGS {
                    return Err(BadMessage(format!(
                        "SetEncodings lists {n} encodings (at most {MAX_ENCODINGS})"
                    )));
                }
                4 + 4 * n
            }
            3 => 10,
            4 => 8,
            5 => 6,
            6 => {
                if b.len() < 8 {
                    return Ok(None);
                }
                let len = i32::from_be_bytes([b[4], b[5], b[6], b[7]]);
                let n = len.unsigned_abs() as usize;
                if len < 0 || n > MAX_CUT {
                    // Skip the text without holding it.
                    let held = (self.buf.len() - 8).min(n);
                    self.buf.advance(8 + held);
                    self.skip = n - held;
                    return Ok(Some(ViewerMsg::CutTextSkipped(len.unsigned_abs())));
                }
                8 + n
            }
            150 => 10,
            248 => {
                if b.len() < 9 {
                    return Ok(None);
                }
                let n = usize::from(b[8]);
                if n > 64 {
                    return Err(BadMessage(format!(
                        "ClientFence carries {n} bytes (at most 64)"
                    )));
                }
                9 + n
            }
            251 => {
                if b.len() < 7 {
                    return Ok(None);
                }
                8 + 16 * usize::from(b[6])
            }
            255 => {
                if b.len() < 2 {
                    return Ok(None);
                }
                match b[1] {
                    0 => 12,
                    1 => {
                        if b.len() < 4 {
                            return Ok(None);
                        }
                        if u16::from_be_bytes([b[2], b[3]]) == 2 {
                            10
                        } else {
                            4
                        }
                    }
                    s => {
                        return Err(BadMessage(format!(
                            "unknown QEMU client message subtype {s}"
                        )))
                    }
                }
            }
            t => return Err(BadMessage(format!("unknown client message type {t}"))),
        };
        if self.buf.len() < need {
            return Ok(None);
        }
        let m = self.buf.split_to(need).freeze();
        let u16_at = |i: usize| u16::from_be_bytes([m[i], m[i + 1]]);
        let u32_at = |i: usize| u32::from_be_bytes([m[i], m[i + 1], m[i + 2], m[i + 3]]);
        Ok(Some(match kind {
            0 => {
                let mut pf = [0u8; 16];
                pf.copy_from_slice(&m[4..20]);
                ViewerMsg::SetPixelFormat(PixelFormat::from_bytes(&pf))
            }
            2 => ViewerMsg::SetEncodings(
                m[4..]
                    .chunks_exact(4)
                    .map(|c| i32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            3 => ViewerMsg::UpdateRequest {
                incremental: m[1] != 0,
                area: Rect::new(u16_at(2), u16_at(4), u16_at(6), u16_at(8)),
            },
            4 => ViewerMsg::Key {
                down: m[1] != 0,
                keysym: u32_at(4),
            },
            5 => ViewerMsg::Pointer(m),
            6 => ViewerMsg::CutText(m),
            150 => ViewerMsg::Ignored("EnableContinuousUpdates"),
            248 => ViewerMsg::Ignored("ClientFence"),
            251 => ViewerMsg::Ignored("SetDesktopSize"),
            _ if m[1] == 0 => ViewerMsg::QemuKey {
                down: u16_at(2) != 0,
                keysym: u32_at(4),
                keycode: u32_at(8),
            },
            _ => ViewerMsg::Ignored("QEMU audio"),
        }))
    }
}

/// A KeyEvent message.
pub(crate) fn key_event(down: bool, keysym: u32) -> [u8; 8] {
    let k = keysym.to_be_bytes();
    [4, u8::from(down), 0, 0, k[0], k[1], k[2], k[3]]
}

/// A QEMU extended key event message.
pub(crate) fn qemu_key_event(down: bool, keysym: u32, keycode: u32) -> [u8; 12] {
    let mut m = [0u8; 12];
    m[0] = 255;
    m[3] = u8::from(down);
    m[4..8].copy_from_slice(&keysym.to_be_bytes());
    m[8..12].copy_from_slice(&keycode.to_be_bytes());
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all(p: &mut Parser) -> Result<Vec<ViewerMsg>, BadMessage> {
        let mut out = Vec::new();
        while let Some(m) = p.next()? {
            out.push(m);
        }
        Ok(out)
    }

    #[test]
    fn messages_split_anywhere() {
        let mut stream = Vec::new();
        stream.extend_from_slice(&[0, 0, 0, 0]);
        stream.extend_from_slice(&PixelFormat::RGB888.to_bytes());
        stream.extend_from_slice(&[2, 0, 0, 2, 0, 0, 0, 16, 0xff, 0xff, 0xff, 0x21]);
        stream.extend_from_slice(&[3, 1, 0, 1, 0, 2, 0, 3, 0, 4]);
        stream.extend_from_slice(&key_event(true, 0x61));
        stream.extend_from_slice(&[5, 1, 0, 10, 0, 20]);
        stream.extend_from_slice(&qemu_key_event(false, 0x62, 0x30));
        stream.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 2, b'h', b'i']);
        stream.extend_from_slice(&[248, 0, 0, 0, 0, 0, 0, 0, 1, 9]);
        let want = vec![
            ViewerMsg::SetPixelFormat(PixelFormat::RGB888),
            ViewerMsg::SetEncodings(vec![16, -223]),
            ViewerMsg::UpdateRequest {
                incremental: true,
                area: Rect::new(1, 2, 3, 4),
            },
            ViewerMsg::Key {
                down: true,
                keysym: 0x61,
            },
            ViewerMsg::Pointer(Bytes::from_static(&[5, 1, 0, 10, 0, 20])),
            ViewerMsg::QemuKey {
                down: false,
                keysym: 0x62,
                keycode: 0x30,
            },
            ViewerMsg::CutText(Bytes::from_static(&[6, 0, 0, 0, 0, 0, 0, 2, b'h', b'i'])),
            ViewerMsg::Ignored("ClientFence"),
        ];
        for split in 0..stream.len() {
            let mut p = Parser::default();
            p.push(&stream[..split]);
            let mut got = all(&mut p).expect("parsed");
            p.push(&stream[split..]);
            got.extend(all(&mut p).expect("parsed"));
            assert_eq!(got, want, "split at {split}");
            assert_eq!(p.held(), 0);
        }
    }

    #[test]
    fn long_cut_text_is_skipped_not_held() {
        let mut p = Parser::default();
        let n = MAX_CUT as u32 + 1;
        let mut m = vec![6, 0, 0, 0];
        m.extend_from_slice(&n.to_be_bytes());
        m.extend_from_slice(&[b'x'; 100]);
        p.push(&m);
        assert_eq!(p.next(), Ok(Some(ViewerMsg::CutTextSkipped(n))));
        assert_eq!(p.held(), 0);
        p.push(&vec![b'x'; MAX_CUT - 99]);
        p.push(&key_event(true, 1));
        assert_eq!(
            all(&mut p),
            Ok(vec![ViewerMsg::Key {
                down: true,
                keysym: 1
            }])
        );
    }

    #[test]
    fn bounds_and_unknown_types() {
        let mut p = Parser::default();
        p.push(&[2, 0, 0xff, 0xff]);
        assert!(p.next().is_err());
        let mut p = Parser::default();
        p.push(&[7]);
        assert_eq!(
            p.next().expect_err("unknown").0,
            "unknown client message type 7"
        );
        let mut p = Parser::default();
        p.push(&[248, 0, 0, 0, 0, 0, 0, 0, 65]);
        assert!(p.next().is_err());
    }

    proptest! {
        /// Any bytes: no panic, and what is held stays bounded by the largest message.
        #[test]
        fn never_panics(input in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut p = Parser::default();
            p.push(&input);
            let _ = all(&mut p);
            prop_assert!(p.held() <= input.len());
        }
    }
}
