//! Decoding what a console sends after ServerInit into a [`super::fb::Framebuffer`]:
//! FramebufferUpdate rectangles in Raw, CopyRect, Hextile, Zlib, Tight (fill and basic
//! with the copy, palette and gradient filters over four zlib streams; no JPEG) and ZRLE,
//! the pseudo-encodings DesktopSize, ExtendedDesktopSize, Cursor, DesktopName, LastRect,
//! QEMU extended key event, QEMU pointer motion and LED state, and the other server
//! messages (Bell, ServerCutText, ServerFence, EndOfContinuousUpdates, QEMU audio
//! skipped; SetColourMapEntries refused). Any true-colour 8, 16 or 32 bits-a-pixel
//! format of either byte order.
//!
//! [`UpdateDecoder`] is sans-IO: the engine feeds it bytes as they arrive, split
//! anywhere, and reads [`Event`]s. It never panics on input and holds at most one step
//! (a header, a tile, a row) plus one rectangle's inflated data, bounded by what that
//! rectangle can need; compressed lengths are capped at 64 MiB.
//!
//! The engine makes one per upstream connection, with the pixel format it set by
//! SetPixelFormat before its first FramebufferUpdateRequest (and asks for
//! [`encoding::PREFERRED`]), then feeds it: `feed` returns right after each update ends,
//! when the framebuffer is exactly the console's screen, with the damage since the last
//! call. Any error is fatal to the connection. Colours narrower than 8 bits are widened
//! rounding up, so an encoder's `c * max / 255` gives the console's value back.
//!
//! - `stream`: the state machine over messages and rectangles.
//! - `event`: what it reports ([`Event`], [`Fed`]).
//! - `acc`: bytes of a step gathered across feeds.
//! - `pixel`: a pixel format's pixels (and ZRLE's CPIXEL, Tight's TPIXEL) to `0x00RRGGBB`.
//! - `inflate`: the persistent zlib streams and the bounded output buffer.
//! - `hextile`, `zrle`, `tight`: each encoding's rules over complete bytes.
//! - `pseudo`: pseudo-encodings' and the other server messages' payloads, and their limits.
//! - [`encoding`]: the encoding numbers and what the engine should ask for.
//! - `error`: [`DecodeError`].

mod acc;
pub mod encoding;
mod error;
mod event;
mod hextile;
mod inflate;
mod pixel;
mod pseudo;
mod stream;
mod tight;
mod zrle;

pub use error::DecodeError;
pub use event::{CursorShape, Event, Fed, Screen};
pub use inflate::MAX_COMPRESSED;
pub use pseudo::{MAX_CURSOR_SIDE, MAX_CUT_TEXT, MAX_NAME};
pub use stream::UpdateDecoder;

#[cfg(test)]
mod tests;
