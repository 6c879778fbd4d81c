//! Per-viewer encoders: rectangles of a [`super::fb::Framebuffer`] in the viewer's pixel
//! format and encoding, as FramebufferUpdate rectangles (12-byte header + payload)
//! appended to the caller's buffer.
//!
//! - [`Encoder`] (`encoder.rs`): one viewer's state — pixel format, negotiated encodings,
//!   persistent zlib streams, scratch buffers — and the choice of encoding per rectangle.
//! - `format.rs`: SetPixelFormat checked ([`check_format`], [`FormatError`]: colour maps
//!   and channels that do not fit are refused with a viewer-safe reason) and the
//!   per-format translator (three 256-entry tables; fast paths for 32-bit RGB888 and
//!   RGBX), PIXEL, ZRLE's CPIXEL and Tight's TPIXEL.
//! - [`Encodings`] (`encodings.rs`): what SetEncodings asked for, in the viewer's order.
//! - `rect.rs`: headers, encoding numbers, Raw (0) and CopyRect (1).
//! - `hextile.rs` (5), `zrle.rs` (16), `tight.rs` (7: fill, palette, copy, JPEG).
//!
//! For one console fanned out to many viewers, the work can be shared: Raw and Hextile
//! bytes depend only on the pixels and the format; ZRLE splits into tile data made once
//! per format ([`Encoder::zrle_tiles`]) and each viewer's own compression of it
//! ([`Encoder::zrle_from_tiles`]); Tight's shared mode ([`Encoder::enable_shared_tight`])
//! resets the zlib stream in every chunk so its bytes serve every viewer with the same
//! [`TightShareKey`].
//! - `pseudo.rs`: DesktopSize, ExtendedDesktopSize, DesktopName, LastRect, Cursor.
//! - `deflate.rs`: a persistent zlib stream, sync-flushed per rectangle; `palette.rs`:
//!   the colour analysis of a tile the encoders choose subencodings from.
//!
//! Pixels are translated once per tile into "wire values" (a `u32` whose little-endian
//! bytes are the viewer's bytes), on which palettes and runs are built; no allocation
//! happens per pixel and scratch buffers are reused between rectangles. Nothing here
//! panics on a viewer's input: formats are checked, rectangles are checked against the
//! framebuffer, and every length is bounded.

mod deflate;
mod encoder;
mod encodings;
mod format;
mod hextile;
mod palette;
mod pseudo;
mod rect;
mod tight;
mod zrle;

pub use deflate::DeflateError;
pub(crate) use encoder::Scratch;
pub use encoder::{EncodeError, Encoder, ShareKey, TightShareKey, DEFAULT_ZLIB_LEVEL};
pub use encodings::{Encoding, Encodings};
pub use format::{check as check_format, FormatError};
pub use pseudo::{
    desktop_name, desktop_size, extended_desktop_size, last_rect, CursorImage, Screen, SizeReason,
    MAX_NAME,
};
pub use rect::{
    update_header, ENC_COMPRESS_LEVEL_0, ENC_COPY_RECT, ENC_CURSOR, ENC_DESKTOP_NAME,
    ENC_DESKTOP_SIZE, ENC_EXTENDED_DESKTOP_SIZE, ENC_HEXTILE, ENC_LAST_RECT, ENC_QEMU_EXTENDED_KEY,
    ENC_QEMU_LED_STATE, ENC_QUALITY_LEVEL_0, ENC_RAW, ENC_TIGHT, ENC_ZRLE,
};
