//! RFB message types the handshake and the test-pattern server need: protocol
//! versions, pixel formats, ServerInit, and client-to-server message framing.
//! Every length read from the peer is bounded.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longest reason, name or cut-text we accept from a peer.
pub(crate) const MAX_TEXT: u32 = 64 * 1024;

/// A parse or I/O failure on an RFB stream.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The peer closed or the socket failed.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent something that is not RFB.
    #[error("protocol: {0}")]
    Protocol(String),
}

/// A `ProtocolVersion`, normalised to what we speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    /// 3.3 (and every version RFC 6143 says to treat as 3.3).
    V3_3,
    /// 3.7.
    V3_7,
    /// 3.8 (and newer, e.g. 4.x/5.x RealVNC, Apple's 3.889).
    V3_8,
}

impl Version {
    /// The 12 bytes on the wire.
    pub fn bytes(self) -> &'static [u8; 12] {
        match self {
            Version::V3_3 => b"RFB 003.003\n",
            Version::V3_7 => b"RFB 003.007\n",
            Version::V3_8 => b"RFB 003.008\n",
        }
    }

    /// Parses a 12-byte ProtocolVersion. `None` when it is not `RFB xxx.yyy\n`.
    pub fn parse(raw: &[u8; 12]) -> Option<Version> {
        if &raw[..4] != b"RFB " || raw[7] != b'.' || raw[11] != b'\n' {
            return None;
        }
        let digits = |s: &[u8]| -> Option<u32> {
            s.iter().try_fold(0u32, |acc, b| {
                b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
            })
        };
        let major = digits(&raw[4..7])?;
        let minor = digits(&raw[8..11])?;
        Some(match (major, minor) {
            (3, 7) => Version::V3_7,
            (3, 8) | (3, 889) => Version::V3_8,
            (m, _) if m > 3 => Version::V3_8,
            // 3.3, and the odd 3.x variants (3.5, 3.6, 3.16…): 3.3 per RFC 6143.
            _ => Version::V3_3,
        })
    }
}

/// PIXEL_FORMAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelFormat {
    /// 8, 16 or 32.
    pub bits_per_pixel: u8,
    /// Useful bits.
    pub depth: u8,
    /// Multi-byte pixels are big-endian.
    pub big_endian: bool,
    /// True colour (else colour map).
    pub true_colour: bool,
    /// Max red.
    pub red_max: u16,
    /// Max green.
    pub green_max: u16,
    /// Max blue.
    pub blue_max: u16,
    /// Red shift.
    pub red_shift: u8,
    /// Green shift.
    pub green_shift: u8,
    /// Blue shift.
    pub blue_shift: u8,
}

#[cfg_attr(not(feature = "sim"), allow(dead_code))] // the simulator's
impl PixelFormat {
    /// 32 bpp, depth 24, little-endian, RGB888.
    pub(crate) const RGB888: PixelFormat =
        PixelFormat::true_colour(32, 24, false, [255, 255, 255], [16, 8, 0]);

    /// A true-colour format: bits per pixel, depth, byte order, and the red, green and
    /// blue maxima and shifts.
    pub const fn true_colour(
        bits_per_pixel: u8,
        depth: u8,
        big_endian: bool,
        max: [u16; 3],
        shift: [u8; 3],
    ) -> PixelFormat {
        PixelFormat {
            bits_per_pixel,
            depth,
            big_endian,
            true_colour: true,
            red_max: max[0],
            green_max: max[1],
            blue_max: max[2],
            red_shift: shift[0],
            green_shift: shift[1],
            blue_shift: shift[2],
        }
    }

    /// The 16 wire bytes.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0] = self.bits_per_pixel;
        b[1] = self.depth;
        b[2] = u8::from(self.big_endian);
        b[3] = u8::from(self.true_colour);
        b[4..6].copy_from_slice(&self.red_max.to_be_bytes());
        b[6..8].copy_from_slice(&self.green_max.to_be_bytes());
        b[8..10].copy_from_slice(&self.blue_max.to_be_bytes());
        b[10] = self.red_shift;
        b[11] = self.green_shift;
        b[12] = self.blue_shift;
        b
    }

    /// Parses the 16 wire bytes.
    pub fn from_bytes(b: &[u8; 16]) -> PixelFormat {
        PixelFormat {
            bits_per_pixel: b[0],
            depth: b[1],
            big_endian: b[2] != 0,
            true_colour: b[3] != 0,
            red_max: u16::from_be_bytes([b[4], b[5]]),
            green_max: u16::from_be_bytes([b[6], b[7]]),
            blue_max: u16::from_be_bytes([b[8], b[9]]),
            red_shift: b[10],
            green_shift: b[11],
            blue_shift: b[12],
        }
    }

    /// Bytes per pixel, or `None` for an unsupported size.
    pub(crate) fn bytes_per_pixel(&self) -> Option<usize> {
        match self.bits_per_pixel {
            8 => Some(1),
            16 => Some(2),
            32 => Some(4),
            _ => None,
        }
    }

    /// Appends one pixel of colour `(r, g, b)` (0–255 each) in this format. Bits that
    /// no channel uses (the padding byte of 32 bpp) are set: RFB leaves them undefined,
    /// and noVNC 1.3's Raw decoder takes them as alpha (0 would draw nothing).
    pub(crate) fn push_pixel(&self, out: &mut Vec<u8>, r: u8, g: u8, b: u8) {
        let scale = |c: u8, max: u16| u32::from(c) * u32::from(max) / 255;
        let v = scale(r, self.red_max)
            .checked_shl(u32::from(self.red_shift))
            .unwrap_or(0)
            | scale(g, self.green_max)
                .checked_shl(u32::from(self.green_shift))
                .unwrap_or(0)
            | scale(b, self.blue_max)
                .checked_shl(u32::from(self.blue_shift))
                .unwrap_or(0);
        let used = |max: u16, shift: u8| u32::from(max).checked_shl(u32::from(shift)).unwrap_or(0);
        let used = used(self.red_max, self.red_shift)
            | used(self.green_max, self.green_shift)
            | used(self.blue_max, self.blue_shift);
        let v = if self.bits_per_pixel == 32 {
            v | !used
        } else {
            v
        };
        match (self.bits_per_pixel, self.big_endian) {
            (8, _) => out.push(v as u8),
            (16, true) => out.extend_from_slice(&(v as u16).to_be_bytes()),
            (16, false) => out.extend_from_slice(&(v as u16).to_le_bytes()),
            (_, true) => out.extend_from_slice(&v.to_be_bytes()),
            (_, false) => out.extend_from_slice(&v.to_le_bytes()),
        }
    }
}

/// ServerInit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInit {
    /// Framebuffer width.
    pub width: u16,
    /// Framebuffer height.
    pub height: u16,
    /// The server's pixel format.
    pub format: PixelFormat,
    /// Desktop name.
    pub name: String,
}

#[cfg_attr(not(feature = "sim"), allow(dead_code))] // the simulator's
impl ServerInit {
    /// Wire form.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(24 + self.name.len());
        b.extend_from_slice(&self.width.to_be_bytes());
        b.extend_from_slice(&self.height.to_be_bytes());
        b.extend_from_slice(&self.format.to_bytes());
        b.extend_from_slice(&(self.name.len() as u32).to_be_bytes());
        b.extend_from_slice(self.name.as_bytes());
        b
    }

    /// Reads a ServerInit (name bounded by [`MAX_TEXT`]).
    ///
    /// # Errors
    /// I/O, or a name over the bound.
    pub async fn read<R: AsyncRead + Unpin>(r: &mut R) -> Result<ServerInit, Error> {
        let width = r.read_u16().await?;
        let height = r.read_u16().await?;
        let mut pf = [0u8; 16];
        r.read_exact(&mut pf).await?;
        let name = read_text(r).await?;
        Ok(ServerInit {
            width,
            height,
            format: PixelFormat::from_bytes(&pf),
            name,
        })
    }
}

/// Reads `u32 length` + that many bytes (bounded), lossily as UTF-8.
///
/// # Errors
/// I/O, or a length over [`MAX_TEXT`].
pub(crate) async fn read_text<R: AsyncRead + Unpin>(r: &mut R) -> Result<String, Error> {
    let len = r.read_u32().await?;
    if len > MAX_TEXT {
        return Err(Error::Protocol(format!(
            "peer announced a {len}-byte text; the limit is {MAX_TEXT}"
        )));
    }
    let mut buf = vec![0u8; len as usize];
    r.read_exact(&mut buf).await?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

#[cfg_attr(not(feature = "sim"), allow(dead_code))] // the simulator's
/// Writes `u32 length` + text.
///
/// # Errors
/// I/O.
pub(crate) async fn write_text<W: AsyncWrite + Unpin>(w: &mut W, text: &str) -> Result<(), Error> {
    w.write_u32(text.len() as u32).await?;
    w.write_all(text.as_bytes()).await?;
    Ok(())
}

/// A client-to-server message, as far as a server needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    /// SetPixelFormat.
    SetPixelFormat(PixelFormat),
    /// SetEncodings.
    SetEncodings(Vec<i32>),
    /// FramebufferUpdateRequest.
    FramebufferUpdateRequest {
        /// Only changes wanted.
        incremental: bool,
        /// Left.
        x: u16,
        /// Top.
        y: u16,
        /// Width.
        w: u16,
        /// Height.
        h: u16,
    },
    /// KeyEvent.
    KeyEvent {
        /// Pressed.
        down: bool,
        /// X keysym.
        keysym: u32,
    },
    /// PointerEvent.
    PointerEvent {
        /// Buttons.
        mask: u8,
        /// X.
        x: u16,
        /// Y.
        y: u16,
    },
    /// ClientCutText: its length and, when it is at most [`SMALL_CUT_TEXT`] bytes
    /// (and not the extended clipboard's negative length), its bytes (Latin-1).
    ClientCutText {
        /// Bytes of text (or of the extended clipboard message).
        length: u32,
        /// The text, kept only when small.
        text: Option<Vec<u8>>,
    },
    /// QEMU extended key event (message 255, submessage 0).
    QemuKeyEvent {
        /// Pressed.
        down: bool,
        /// X keysym.
        keysym: u32,
        /// XT scan code (QEMU's keycode).
        keycode: u32,
    },
    /// Another QEMU client message (its submessage; payload skipped).
    Qemu(u8),
}

/// ClientCutText up to this many bytes is returned with its text; longer ones by length
/// only.
pub const SMALL_CUT_TEXT: u32 = 1024;

/// Reads one client message. Unknown types are a protocol error (their length is unknown).
///
/// # Errors
/// I/O, unknown message types, or lengths over the bounds.
pub async fn read_client_message<R: AsyncRead + Unpin>(r: &mut R) -> Result<ClientMessage, Error> {
    let kind = r.read_u8().await?;
    match kind {
        0 => {
            let mut b = [0u8; 19];
            r.read_exact(&mut b).await?;
            let mut pf = [0u8; 16];
            pf.copy_from_slice(&b[3..]);
            Ok(ClientMessage::SetPixelFormat(PixelFormat::from_bytes(&pf)))
        }
        2 => {
            r.read_u8().await?;
            let n = r.read_u16().await?;
            let mut encs = Vec::with_capacity(usize::from(n));
            for _ in 0..n {
                encs.push(r.read_i32().await?);
            }
            Ok(ClientMessage::SetEncodings(encs))
        }
        3 => {
            let incremental = r.read_u8().await? != 0;
            let x = r.read_u16().await?;
            let y = r.read_u16().await?;
            let w = r.read_u16().await?;
            let h = r.read_u16().await?;
            Ok(ClientMessage::FramebufferUpdateRequest {
                incremental,
                x,
                y,
                w,
                h,
            })
        }
        4 => {
            let down = r.read_u8().await? != 0;
            r.read_u16().await?;
            let keysym = r.read_u32().await?;
            Ok(ClientMessage::KeyEvent { down, keysym })
        }
        5 => {
            let mask = r.read_u8().await?;
            let x = r.read_u16().await?;
            let y = r.read_u16().await?;
            Ok(ClientMessage::PointerEvent { mask, x, y })
        }
        6 => {
            let mut pad = [0u8; 3];
            r.read_exact(&mut pad).await?;
            let len = r.read_i32().await?;
            let n = len.unsigned_abs();
            if n > MAX_TEXT {
                return Err(Error::Protocol(format!(
                    "ClientCutText of {n} bytes exceeds {MAX_TEXT}"
                )));
            }
            if len >= 0 && n <= SMALL_CUT_TEXT {
                let mut text = vec![0u8; n as usize];
                r.read_exact(&mut text).await?;
                return Ok(ClientMessage::ClientCutText {
                    length: n,
                    text: Some(text),
                });
            }
            tokio::io::copy(&mut r.take(u64::from(n)), &mut tokio::io::sink()).await?;
            Ok(ClientMessage::ClientCutText {
                length: n,
                text: None,
            })
        }
        255 => {
            let sub = r.read_u8().await?;
            match sub {
                // Extended key event: u16 down, u32 keysym, u32 keycode.
                0 => {
                    let down = r.read_u16().await? != 0;
                    let keysym = r.read_u32().await?;
                    let keycode = r.read_u32().await?;
                    return Ok(ClientMessage::QemuKeyEvent {
                        down,
                        keysym,
                        keycode,
                    });
                }
                // Audio: u16 operation (+ format for op 2).
                1 => {
                    let op = r.read_u16().await?;
                    if op == 2 {
                        let mut b = [0u8; 6];
                        r.read_exact(&mut b).await?;
                    }
                }
                s => {
                    return Err(Error::Protocol(format!(
                        "unknown QEMU client submessage {s}"
                    )))
                }
            }
            Ok(ClientMessage::Qemu(sub))
        }
        t => Err(Error::Protocol(format!("unknown client message type {t}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_in_the_wild() {
        let v = |s: &[u8; 12]| Version::parse(s);
        assert_eq!(v(b"RFB 003.003\n"), Some(Version::V3_3));
        assert_eq!(v(b"RFB 003.007\n"), Some(Version::V3_7));
        assert_eq!(v(b"RFB 003.008\n"), Some(Version::V3_8));
        assert_eq!(v(b"RFB 003.889\n"), Some(Version::V3_8));
        assert_eq!(v(b"RFB 004.001\n"), Some(Version::V3_8));
        assert_eq!(v(b"RFB 005.000\n"), Some(Version::V3_8));
        assert_eq!(v(b"RFB 003.006\n"), Some(Version::V3_3));
        assert_eq!(v(b"RFB 003.016\n"), Some(Version::V3_3));
        assert_eq!(v(b"GET / HTTP/1"), None);
        assert_eq!(v(b"RFB 00a.008\n"), None);
    }

    #[test]
    fn pixel_format_round_trip_and_pixels() {
        let pf = PixelFormat::RGB888;
        assert_eq!(PixelFormat::from_bytes(&pf.to_bytes()), pf);
        let mut out = Vec::new();
        pf.push_pixel(&mut out, 0x12, 0x34, 0x56);
        assert_eq!(out, [0x56, 0x34, 0x12, 0xff], "padding bits set");
        let rgb565 = PixelFormat {
            bits_per_pixel: 16,
            depth: 16,
            big_endian: true,
            red_max: 31,
            green_max: 63,
            blue_max: 31,
            red_shift: 11,
            green_shift: 5,
            blue_shift: 0,
            ..pf
        };
        out.clear();
        rgb565.push_pixel(&mut out, 255, 0, 255);
        assert_eq!(out, [0xf8, 0x1f]);
    }

    /// The input messages come back with their fields: QEMU's extended key event, and
    /// cut text with its bytes when small, by length only when large or extended.
    #[tokio::test]
    async fn input_messages_carry_their_fields() {
        let mut data: Vec<u8> = vec![255, 0, 0, 1, 0, 0, 0xff, 0x0d, 0, 0, 0, 0x1c];
        data.extend_from_slice(&[255, 0, 0, 0, 0, 0, 0, 0x61, 0, 0, 0, 0x1e]);
        data.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 2]);
        data.extend_from_slice(b"hi");
        data.extend_from_slice(&[6, 0, 0, 0]);
        data.extend_from_slice(&(SMALL_CUT_TEXT as i32 + 1).to_be_bytes());
        data.resize(data.len() + SMALL_CUT_TEXT as usize + 1, b'x');
        data.extend_from_slice(&[6, 0, 0, 0]);
        data.extend_from_slice(&(-4i32).to_be_bytes());
        data.extend_from_slice(&[0, 0, 0, 1]);
        data.extend_from_slice(&[255, 1, 0, 0]);
        let mut r: &[u8] = &data;
        let mut got = Vec::new();
        while !r.is_empty() {
            got.push(read_client_message(&mut r).await.expect("message"));
        }
        assert_eq!(
            got,
            [
                ClientMessage::QemuKeyEvent {
                    down: true,
                    keysym: 0xff0d,
                    keycode: 0x1c
                },
                ClientMessage::QemuKeyEvent {
                    down: false,
                    keysym: 0x61,
                    keycode: 0x1e
                },
                ClientMessage::ClientCutText {
                    length: 2,
                    text: Some(b"hi".to_vec())
                },
                ClientMessage::ClientCutText {
                    length: SMALL_CUT_TEXT + 1,
                    text: None
                },
                ClientMessage::ClientCutText {
                    length: 4,
                    text: None
                },
                ClientMessage::Qemu(1),
            ]
        );
    }

    #[tokio::test]
    async fn huge_text_length_is_refused_without_allocating() {
        let mut data: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        let err = read_text(&mut data).await.expect_err("refused");
        assert!(err.to_string().contains("limit"));
    }
}
