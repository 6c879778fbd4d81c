//! The payloads of pseudo-encodings and of the server messages other than
//! FramebufferUpdate, judged and parsed from complete bytes: DesktopName,
//! ExtendedDesktopSize's screens, Cursor, ServerFence, the QEMU server message. The
//! stream decoder gathers the bytes; this file holds the limits and the layouts.

use super::acc::{be16, be32, exactly, Parsed};
use super::error::DecodeError;
use super::event::{CursorShape, Screen};
use super::inflate::MAX_COMPRESSED;
use super::pixel::PixelReader;
use crate::console::fb::Rect;

/// The most ServerCutText kept; the rest of a longer text is skipped.
pub const MAX_CUT_TEXT: usize = 1024 * 1024;
/// The longest desktop name accepted.
pub const MAX_NAME: u32 = 64 * 1024;
/// The widest and tallest cursor accepted.
pub const MAX_CURSOR_SIDE: u16 = 512;

/// DesktopName's length, once its `u32` is held.
///
/// # Errors
/// A name over [`MAX_NAME`].
pub(crate) fn desktop_name(b: &[u8]) -> Result<Parsed<usize>, DecodeError> {
    if b.len() < 4 {
        return Ok(Parsed::Need(4));
    }
    let len = be32(b);
    if len > MAX_NAME {
        return Err(DecodeError::TooLong {
            what: "DesktopName",
            len: u64::from(len),
            cap: u64::from(MAX_NAME),
        });
    }
    Ok(exactly(b, 4 + len as usize))
}

/// ExtendedDesktopSize's length: a count, 3 bytes of padding, 16 bytes a screen.
///
/// # Errors
/// None; the count is a byte.
pub(crate) fn layout_len(b: &[u8]) -> Result<Parsed<usize>, DecodeError> {
    Ok(match b.first() {
        None => Parsed::Need(4),
        Some(&count) => exactly(b, 4 + 16 * usize::from(count)),
    })
}

/// The screens of an ExtendedDesktopSize (the bytes after the count and padding).
pub(crate) fn screens(b: &[u8]) -> Vec<Screen> {
    b.chunks_exact(16)
        .map(|s| Screen {
            id: be32(s),
            rect: Rect::new(be16(&s[4..]), be16(&s[6..]), be16(&s[8..]), be16(&s[10..])),
            flags: be32(&s[12..]),
        })
        .collect()
}

/// A Cursor's length: its pixels, then a bitmask of whole bytes a row.
pub(crate) fn cursor_len(rect: Rect, px: &PixelReader) -> usize {
    let (w, h) = (usize::from(rect.w), usize::from(rect.h));
    w * h * px.bytes() + w.div_ceil(8) * h
}

/// A Cursor from its complete bytes (`rect` is its hotspot and size).
pub(crate) fn cursor(rect: Rect, px: &PixelReader, b: &[u8]) -> CursorShape {
    let (w, h) = (usize::from(rect.w), usize::from(rect.h));
    let pixels_len = w * h * px.bytes();
    let mut pixels = vec![0u32; w * h];
    px.row(&b[..pixels_len], &mut pixels);
    CursorShape {
        hotspot_x: rect.x,
        hotspot_y: rect.y,
        width: rect.w,
        height: rect.h,
        pixels,
        mask: b[pixels_len..].to_vec(),
    }
}

/// ServerFence's length: 3 bytes of padding, flags, a length byte, at most 64 bytes.
///
/// # Errors
/// A payload over 64 bytes.
pub(crate) fn fence_len(b: &[u8]) -> Result<Parsed<usize>, DecodeError> {
    match b.get(7) {
        None => Ok(Parsed::Need(8)),
        Some(&len) if len > 64 => Err(DecodeError::invalid(
            "ServerFence",
            format!("payload of {len} bytes (64 at most)"),
        )),
        Some(&len) => Ok(exactly(b, 8 + usize::from(len))),
    }
}

/// A QEMU server message's header; `Done` with the audio bytes to skip.
/// # Errors
/// Submessages and operations RFB does not define; audio over the cap.
pub(crate) fn qemu_message(b: &[u8]) -> Result<Parsed<u32>, DecodeError> {
    let Some(&sub) = b.first() else {
        return Ok(Parsed::Need(1));
    };
    if sub != 1 {
        return Err(DecodeError::invalid(
            "QEMU server message",
            format!("submessage {sub} is undefined"),
        ));
    }
    if b.len() < 3 {
        return Ok(Parsed::Need(3));
    }
    match be16(&b[1..]) {
        0 | 1 => Ok(Parsed::Done(0)),
        2 if b.len() < 7 => Ok(Parsed::Need(7)),
        2 => {
            let len = be32(&b[3..]);
            if len > MAX_COMPRESSED {
                return Err(DecodeError::TooLong {
                    what: "QEMU audio data",
                    len: u64::from(len),
                    cap: u64::from(MAX_COMPRESSED),
                });
            }
            Ok(Parsed::Done(len))
        }
        op => Err(DecodeError::invalid(
            "QEMU server message",
            format!("audio operation {op} is undefined"),
        )),
    }
}
