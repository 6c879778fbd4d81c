//! What can go wrong decoding a console's stream. Every error is fatal to the stream
//! (its position is lost), so each names what it saw: the encoding, the rectangle, the
//! length and the cap it broke.

use crate::console::fb::{OutOfBounds, Rect};

/// A console sent something tcvnc cannot decode; the upstream must be dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A pixel rectangle outside the screen.
    #[error("{encoding} rectangle: {source}")]
    OutOfBounds {
        /// The rectangle's encoding.
        encoding: &'static str,
        /// The rectangle and the screen.
        source: OutOfBounds,
    },
    /// A rectangle in an encoding tcvnc did not ask for.
    #[error(
        "rectangle {},{} {}x{} has encoding {encoding}, which tcvnc did not ask for",
            .rect.x, .rect.y, .rect.w, .rect.h
    )]
    UnknownEncoding {
        /// The encoding number.
        encoding: i32,
        /// The rectangle.
        rect: Rect,
    },
    /// A server message type tcvnc does not know (its length is unknown).
    #[error("unknown server message type {0}")]
    UnknownMessage(u8),
    /// SetColourMapEntries.
    #[error("SetColourMapEntries: colour map not supported (tcvnc always asks for true colour)")]
    ColourMap,
    /// A length over its cap.
    #[error("{what} of {len} bytes exceeds the cap of {cap} bytes")]
    TooLong {
        /// What carried the length.
        what: &'static str,
        /// The announced or decompressed length.
        len: u64,
        /// The cap.
        cap: u64,
    },
    /// A zlib stream failed to inflate.
    #[error("{encoding}: zlib stream: {detail}")]
    Zlib {
        /// The encoding whose stream it is.
        encoding: &'static str,
        /// What zlib said.
        detail: String,
    },
    /// Data that breaks an encoding's rules.
    #[error("{encoding}: {detail}")]
    Invalid {
        /// The encoding or message.
        encoding: &'static str,
        /// What is wrong, with the values seen.
        detail: String,
    },
    /// A Tight JPEG rectangle: tcvnc sends no quality level, so none should come.
    #[error("Tight rectangle {},{} {}x{}: JPEG not negotiated", .rect.x, .rect.y, .rect.w, .rect.h)]
    JpegNotNegotiated {
        /// The rectangle.
        rect: Rect,
    },
    /// A pixel format tcvnc does not decode.
    #[error("pixel format: {0}")]
    PixelFormat(String),
    /// A new screen size over [`crate::console::fb::MAX_SIDE`].
    #[error("screen size {width}x{height} exceeds the limit of {max} pixels a side")]
    ScreenTooLarge {
        /// Announced width.
        width: u16,
        /// Announced height.
        height: u16,
        /// The limit.
        max: u16,
    },
}

impl DecodeError {
    /// An [`DecodeError::Invalid`].
    pub(crate) fn invalid(encoding: &'static str, detail: impl Into<String>) -> DecodeError {
        DecodeError::Invalid {
            encoding,
            detail: detail.into(),
        }
    }

    /// An [`DecodeError::OutOfBounds`].
    pub(crate) fn bounds(encoding: &'static str, source: OutOfBounds) -> DecodeError {
        DecodeError::OutOfBounds { encoding, source }
    }
}
