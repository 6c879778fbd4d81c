//! The framing every encoder shares: the FramebufferUpdate message header, the 12-byte
//! rectangle header, the encoding numbers, and the two stateless encodings, Raw and
//! CopyRect.

use super::format::Translator;
use crate::console::fb::{Framebuffer, Rect};

/// Raw.
pub const ENC_RAW: i32 = 0;
/// CopyRect.
pub const ENC_COPY_RECT: i32 = 1;
/// Hextile.
pub const ENC_HEXTILE: i32 = 5;
/// Tight.
pub const ENC_TIGHT: i32 = 7;
/// ZRLE.
pub const ENC_ZRLE: i32 = 16;
/// Pseudo: the desktop changed size.
pub const ENC_DESKTOP_SIZE: i32 = -223;
/// Pseudo: the last rectangle of an update whose count was 0xffff.
pub const ENC_LAST_RECT: i32 = -224;
/// Pseudo: the cursor shape.
pub const ENC_CURSOR: i32 = -239;
/// Pseudo: QEMU extended key events.
pub const ENC_QEMU_EXTENDED_KEY: i32 = -258;
/// Pseudo: QEMU LED state.
pub const ENC_QEMU_LED_STATE: i32 = -261;
/// Pseudo: the desktop name.
pub const ENC_DESKTOP_NAME: i32 = -307;
/// Pseudo: the desktop size and screen layout.
pub const ENC_EXTENDED_DESKTOP_SIZE: i32 = -308;
/// Pseudo: compression level 0 (−256) to 9 (−247).
pub const ENC_COMPRESS_LEVEL_0: i32 = -256;
/// Pseudo: JPEG quality level 0 (−32) to 9 (−23).
pub const ENC_QUALITY_LEVEL_0: i32 = -32;

/// Appends the FramebufferUpdate message header announcing `count` rectangles.
pub fn update_header(count: u16, out: &mut Vec<u8>) {
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&count.to_be_bytes());
}

/// Appends a rectangle header: x, y, w, h and the encoding.
pub(crate) fn header(r: Rect, encoding: i32, out: &mut Vec<u8>) {
    out.extend_from_slice(&r.x.to_be_bytes());
    out.extend_from_slice(&r.y.to_be_bytes());
    out.extend_from_slice(&r.w.to_be_bytes());
    out.extend_from_slice(&r.h.to_be_bytes());
    out.extend_from_slice(&encoding.to_be_bytes());
}

/// Appends the Raw rectangle `r` (checked against `fb`).
pub(crate) fn raw(px: &Translator, fb: &Framebuffer, r: Rect, out: &mut Vec<u8>) {
    header(r, ENC_RAW, out);
    out.reserve(r.area() * px.bytes());
    for dy in 0..r.h {
        px.write(fb.row(r, dy), out);
    }
}

/// Appends a CopyRect rectangle: the viewer copies `dst.w` × `dst.h` pixels from
/// `(src_x, src_y)` of its own screen to `dst`.
pub(crate) fn copy_rect(dst: Rect, src_x: u16, src_y: u16, out: &mut Vec<u8>) {
    header(dst, ENC_COPY_RECT, out);
    out.extend_from_slice(&src_x.to_be_bytes());
    out.extend_from_slice(&src_y.to_be_bytes());
}
