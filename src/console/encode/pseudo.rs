//! The pseudo-encoding rectangles a server sends: DesktopSize, ExtendedDesktopSize,
//! DesktopName, LastRect and the cursor shape (its pixels in the viewer's format, through
//! the viewer's [`super::Encoder`]). Whether a viewer may receive each is for the caller
//! to ask [`super::Encodings`].

use super::format::Translator;
use super::rect::{
    header, ENC_CURSOR, ENC_DESKTOP_NAME, ENC_DESKTOP_SIZE, ENC_EXTENDED_DESKTOP_SIZE,
    ENC_LAST_RECT,
};
use super::EncodeError;
use crate::console::fb::Rect;

/// The longest desktop name sent (longer ones are cut at a character boundary).
pub const MAX_NAME: usize = 1024;

/// Appends DesktopSize: the screen is now `width` × `height`.
pub fn desktop_size(width: u16, height: u16, out: &mut Vec<u8>) {
    header(Rect::new(0, 0, width, height), ENC_DESKTOP_SIZE, out);
}

/// Appends LastRect: no rectangle follows in this update (its count was 0xffff).
pub fn last_rect(out: &mut Vec<u8>) {
    header(Rect::default(), ENC_LAST_RECT, out);
}

/// Appends DesktopName.
pub fn desktop_name(name: &str, out: &mut Vec<u8>) {
    let mut end = name.len().min(MAX_NAME);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let name = &name.as_bytes()[..end];
    header(Rect::default(), ENC_DESKTOP_NAME, out);
    out.extend_from_slice(&(name.len() as u32).to_be_bytes());
    out.extend_from_slice(name);
}

/// Why an ExtendedDesktopSize rectangle is sent (its x field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeReason {
    /// The server changed the size (or answers the viewer's first request for it).
    Server = 0,
    /// This viewer's SetDesktopSize.
    ThisClient = 1,
    /// Another viewer's SetDesktopSize.
    OtherClient = 2,
}

/// One screen of ExtendedDesktopSize.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Screen {
    /// Its id.
    pub id: u32,
    /// Where and how large.
    pub area: Rect,
    /// Flags (none defined: 0).
    pub flags: u32,
}

/// Appends ExtendedDesktopSize: the size, why, the status of a viewer's request (0 when
/// none) and the screens (at most 255 sent).
pub fn extended_desktop_size(
    width: u16,
    height: u16,
    reason: SizeReason,
    status: u16,
    screens: &[Screen],
    out: &mut Vec<u8>,
) {
    header(
        Rect::new(reason as u16, status, width, height),
        ENC_EXTENDED_DESKTOP_SIZE,
        out,
    );
    let screens = &screens[..screens.len().min(255)];
    out.extend_from_slice(&[screens.len() as u8, 0, 0, 0]);
    for s in screens {
        out.extend_from_slice(&s.id.to_be_bytes());
        for v in [s.area.x, s.area.y, s.area.w, s.area.h] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(&s.flags.to_be_bytes());
    }
}

/// A cursor shape: `0x00RRGGBB` pixels and a 1-bit mask (1 = drawn), rows of
/// `(width + 7) / 8` bytes, leftmost pixel in the top bit, as RFB carries it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CursorImage {
    /// Hotspot x.
    pub hot_x: u16,
    /// Hotspot y.
    pub hot_y: u16,
    /// Width.
    pub width: u16,
    /// Height.
    pub height: u16,
    /// `width × height` pixels, row-major.
    pub pixels: Vec<u32>,
    /// `(width + 7) / 8 × height` bytes.
    pub mask: Vec<u8>,
}

impl CursorImage {
    /// Bytes of the mask.
    pub fn mask_len(width: u16, height: u16) -> usize {
        usize::from(width).div_ceil(8) * usize::from(height)
    }
}

/// Appends the Cursor pseudo-rectangle in `px`'s format.
///
/// # Errors
/// [`EncodeError::Cursor`] when the pixels or mask do not match the size.
pub(crate) fn cursor(
    px: &Translator,
    c: &CursorImage,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let area = usize::from(c.width) * usize::from(c.height);
    if c.pixels.len() != area || c.mask.len() != CursorImage::mask_len(c.width, c.height) {
        return Err(EncodeError::Cursor(
            "pixel or mask length does not match the size",
        ));
    }
    header(
        Rect::new(c.hot_x, c.hot_y, c.width, c.height),
        ENC_CURSOR,
        out,
    );
    px.write(&c.pixels, out);
    out.extend_from_slice(&c.mask);
    Ok(())
}
