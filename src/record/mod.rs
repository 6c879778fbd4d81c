//! Recordings of console-mode sessions (`[recording]`): what viewers saw, as an RFB
//! server's byte stream in websockify's record format, so noVNC's playback page plays it
//! as it is and `tcvnc play` serves it to any viewer.
//!
//! - `format.rs`: the file format, written and read.
//! - `writer.rs`: the file, written on its own thread (a slow or full disk stops the
//!   recording, never the session; durable every second).
//! - `sidecar.rs`: the small JSON beside each recording (instance, times, viewers, URLs
//!   spent, resumes), `GET /api/recordings`, and retention.
//! - `source.rs`: a recording read back as a console (for `tcvnc play` and `tcvnc
//!   export`): the handshake parsed, then timed server messages.
//!
//! The engine's recorder (`engine/recorder.rs`) is a viewer of the engine like any
//! other, with a fixed pixel format and encodings every player decodes: the stream it
//! writes is a whole RFB session (version, no security, ServerInit, updates), one step
//! per message, as a viewer would have received it.

pub mod format;
pub mod sidecar;
pub mod source;
pub mod writer;

use crate::rfb::messages::PixelFormat;

/// The pixel format recordings are written in: noVNC's (32 bits, little-endian, red in
/// the lowest byte). noVNC's playback never reads the ServerInit's format, so a
/// recording it plays must be in the one it would have asked for; the ServerInit says
/// this format too, for every other reader.
pub const FORMAT: PixelFormat =
    PixelFormat::true_colour(32, 24, false, [255, 255, 255], [0, 8, 16]);

/// The encodings recordings use: lossless Tight (zlib, no JPEG), Hextile and Raw, which
/// noVNC (every version) and other players decode; the screen's size, name and cursor.
pub const ENCODINGS: &[i32] = &[
    crate::console::decode::encoding::TIGHT,
    crate::console::decode::encoding::HEXTILE,
    crate::console::decode::encoding::RAW,
    crate::console::decode::encoding::EXTENDED_DESKTOP_SIZE,
    crate::console::decode::encoding::DESKTOP_SIZE,
    crate::console::decode::encoding::CURSOR,
    crate::console::decode::encoding::DESKTOP_NAME,
];

/// A recording's first messages, one per handshake step (noVNC reads one step per
/// message): ProtocolVersion 3.8, the None security type, SecurityResult OK, ServerInit.
pub fn preamble(width: u16, height: u16, name: &str) -> [Vec<u8>; 4] {
    let init = crate::rfb::messages::ServerInit {
        width,
        height,
        format: FORMAT,
        name: name.to_owned(),
    };
    [
        b"RFB 003.008\n".to_vec(),
        vec![1, 1],
        vec![0, 0, 0, 0],
        init.to_bytes(),
    ]
}
