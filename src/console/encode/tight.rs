//! Tight (encoding 7): the rectangle in chunks within Tight's limits (at most 2048 wide;
//! here 256 × 64 pixels), each sent as a fill (one colour), a palette (2 colours at a
//! bit a pixel, up to 256 at a byte), JPEG (viewers that sent a quality level, chunks
//! with many colours), or copied pixels; palette and copy data go through zlib when 12
//! bytes or more. Pixels are TPIXELs (R, G, B bytes for 32-bit depth-24 8-bit-channel
//! formats). The viewer keeps Tight's zlib streams for the connection; tcvnc uses one
//! (stream 0, one deflate state per viewer).
//!
//! Shared mode resets stream 0 in every chunk that compresses: the bytes then depend only
//! on the pixels, the TPIXEL format and the levels, not on what the viewer received
//! before, so one encoding of an update can be sent to every viewer with the same
//! [`super::TightShareKey`] (the fan-out of one console to many viewers), and a player
//! can start decoding at any update (a recording's keyframe). It costs a dictionary
//! reset per chunk and the cross-chunk history.
//!
//! A cut ([`TightStreams::cut`]; a recording's keyframes) is the other way to let a
//! decoder start at an update: the next chunk that compresses fully flushes stream 0
//! first, so it and what follows refer to nothing before it, while the stream goes on
//! (no reset bit, no new header). A decoder that followed the stream reads on; one that
//! starts there reads raw deflate. It keeps the cross-chunk history between cuts.
//!
//! A stream is never reset and then continued with history across chunks: noVNC's
//! inflater (pako 1.x) empties its window for good on a reset, so a later chunk that
//! refers back past its own start fails there ("zlib inflate failed"). Hence shared mode
//! is final for the connection, and a new compression level once the stream has started
//! switches the viewer to shared mode instead of restarting its stream.

use super::deflate::Deflater;
use super::format::Translator;
use super::rect::{header, ENC_TIGHT};
use super::{EncodeError, Scratch};
use crate::console::fb::{Framebuffer, Rect};

/// Widest chunk (Tight allows 2048).
const CHUNK_W: u16 = 256;
/// Most pixels in a chunk.
const CHUNK_AREA: usize = 16 * 1024;
/// Data shorter than this is sent without zlib (Tight's fixed rule).
const MIN_TO_COMPRESS: usize = 12;
/// The largest compact length (22 bits).
const MAX_COMPACT: usize = (1 << 22) - 1;
/// Chunks smaller than this never go JPEG (headers outweigh the gain).
const JPEG_MIN_AREA: usize = 1024;
/// Most palette colours when JPEG is possible: more go JPEG.
const JPEG_PALETTE_MAX: usize = 96;

const FILL: u8 = 0x80;
const JPEG: u8 = 0x90;
const EXPLICIT_FILTER: u8 = 0x40;
const FILTER_PALETTE: u8 = 1;
/// The zlib stream every basic chunk uses.
const STREAM: usize = 0;

/// A viewer's Tight zlib streams.
#[derive(Debug)]
pub(crate) struct TightStreams {
    streams: [Option<Deflater>; 4],
    level: u8,
    /// Shared mode: stream 0 is reset in every chunk that uses it.
    shared: bool,
    /// The next chunk that compresses fully flushes stream 0 first.
    cut: bool,
}

impl TightStreams {
    /// No stream yet; they start at zlib `level` when first used.
    pub(crate) fn new(level: u8) -> TightStreams {
        TightStreams {
            streams: [None, None, None, None],
            level,
            shared: false,
            cut: false,
        }
    }

    /// Makes the next chunk that compresses refer to nothing before it (a full flush of
    /// stream 0 if it has started), so a decoder can start decoding there. A no-op in
    /// shared mode, where every chunk is such a point.
    pub(crate) fn cut(&mut self) {
        self.cut = !self.shared;
    }

    /// Turns shared mode on, for the rest of the connection (leaving it would continue a
    /// stream after its resets, which noVNC cannot decode).
    pub(crate) fn set_shared(&mut self) {
        self.shared = true;
    }

    /// In shared mode, drops stream 0 (every chunk resets it anyway: the next one starts
    /// a fresh stream, which the viewer is told to reset as always in shared mode).
    pub(crate) fn release_shared(&mut self) {
        if self.shared {
            self.streams[STREAM] = None;
        }
    }

    /// Whether shared mode is on.
    pub(crate) fn shared(&self) -> bool {
        self.shared
    }

    /// Its zlib level.
    pub(crate) fn level(&self) -> u8 {
        self.level
    }

    /// Changes the zlib level. Before the first compressed chunk the stream simply starts
    /// at it; after, the stream is dropped and the viewer goes to shared mode (every
    /// chunk a fresh stream, reset by its own control byte), since a stream restarted
    /// and continued would not decode in noVNC.
    pub(crate) fn set_level(&mut self, level: u8) {
        if level == self.level {
            return;
        }
        if self.streams.iter().any(Option::is_some) {
            self.streams = [None, None, None, None];
            self.shared = true;
        }
        self.level = level;
    }

    fn stream(&mut self, id: usize) -> &mut Deflater {
        let level = self.level;
        self.streams[id & 3].get_or_insert_with(|| Deflater::new(level))
    }

    /// A control byte: `bits`, and in shared mode, for a basic chunk (`basic`), the bit
    /// that resets stream 0.
    fn control(&self, bits: u8, basic: bool) -> u8 {
        if self.shared && basic {
            bits | 1 << STREAM
        } else {
            bits
        }
    }
}

/// The chunks of `r`, left to right, top to bottom.
pub(crate) fn chunks(r: Rect) -> impl Iterator<Item = Rect> {
    let cw = r.w.clamp(1, CHUNK_W);
    let ch = u16::try_from(CHUNK_AREA / usize::from(cw))
        .unwrap_or(u16::MAX)
        .max(1);
    (0..r.h).step_by(usize::from(ch)).flat_map(move |dy| {
        (0..r.w)
            .step_by(usize::from(cw))
            .map(move |dx| Rect::new(r.x + dx, r.y + dy, (r.w - dx).min(cw), (r.h - dy).min(ch)))
    })
}

/// Appends `r` (checked against `fb`) as Tight rectangles; returns how many. `jpeg` is
/// the JPEG quality (1–100) when the viewer may get JPEG.
///
/// # Errors
/// A zlib or JPEG failure.
pub(crate) fn encode(
    tp: &Translator,
    s: &mut Scratch,
    st: &mut TightStreams,
    jpeg: Option<u8>,
    fb: &Framebuffer,
    r: Rect,
    out: &mut Vec<u8>,
) -> Result<u16, EncodeError> {
    let mut n = 0u16;
    for c in chunks(r) {
        chunk(tp, s, st, jpeg, fb, c, out)?;
        n = n.saturating_add(1);
    }
    Ok(n)
}

fn chunk(
    tp: &Translator,
    s: &mut Scratch,
    st: &mut TightStreams,
    jpeg: Option<u8>,
    fb: &Framebuffer,
    c: Rect,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    s.vals.clear();
    for dy in 0..c.h {
        tp.values(fb.row(c, dy), &mut s.vals);
    }
    let area = c.area();
    let jpeg = jpeg.filter(|_| area >= JPEG_MIN_AREA);
    let max = if jpeg.is_some() {
        JPEG_PALETTE_MAX
    } else {
        256
    };
    let a = s.palette.analyse(&s.vals, max, &mut s.idx);
    header(c, ENC_TIGHT, out);
    let tpb = tp.bytes();
    match a.colours {
        Some(1) => {
            out.push(st.control(FILL, false));
            tp.write_value(s.vals.first().copied().unwrap_or(0), out);
        }
        Some(2) => {
            out.push(st.control(((STREAM as u8) << 4) | EXPLICIT_FILTER, true));
            out.push(FILTER_PALETTE);
            out.push(1);
            tp.write_values(s.palette.colours(), out);
            s.bytes.clear();
            for row in s.idx.chunks(usize::from(c.w).max(1)) {
                for eight in row.chunks(8) {
                    let byte = eight
                        .iter()
                        .enumerate()
                        .fold(0u8, |acc, (i, &b)| acc | ((b & 1) << (7 - i)));
                    s.bytes.push(byte);
                }
            }
            compressed(st, &s.bytes, &mut s.zbuf, out)?;
        }
        Some(k) if k >= 3 && k * tpb + area < area * tpb => {
            out.push(st.control(((STREAM as u8) << 4) | EXPLICIT_FILTER, true));
            out.push(FILTER_PALETTE);
            out.push((k - 1) as u8);
            tp.write_values(s.palette.colours(), out);
            compressed(st, &s.idx, &mut s.zbuf, out)?;
        }
        _ => {
            if let Some(quality) = jpeg {
                if jpeg_chunk(st, s, quality, fb, c, out)? {
                    return Ok(());
                }
            }
            // The copy filter, implied by no filter byte.
            out.push(st.control((STREAM as u8) << 4, true));
            s.bytes.clear();
            tp.write_values(&s.vals, &mut s.bytes);
            compressed(st, &s.bytes, &mut s.zbuf, out)?;
        }
    }
    Ok(())
}

/// Appends a JPEG chunk (its header is already in `out`); false (nothing appended) when
/// the image would not fit a compact length.
fn jpeg_chunk(
    st: &mut TightStreams,
    s: &mut Scratch,
    quality: u8,
    fb: &Framebuffer,
    c: Rect,
    out: &mut Vec<u8>,
) -> Result<bool, EncodeError> {
    s.rgb.clear();
    s.rgb.reserve(c.area() * 3);
    for dy in 0..c.h {
        for &p in fb.row(c, dy) {
            s.rgb
                .extend_from_slice(&[(p >> 16) as u8, (p >> 8) as u8, p as u8]);
        }
    }
    s.jpeg.clear();
    let enc = jpeg_encoder::Encoder::new(&mut s.jpeg, quality.clamp(1, 100));
    enc.encode(&s.rgb, c.w, c.h, jpeg_encoder::ColorType::Rgb)
        .map_err(|e| EncodeError::Jpeg(e.to_string()))?;
    if s.jpeg.len() > MAX_COMPACT {
        return Ok(false);
    }
    out.push(st.control(JPEG, false));
    compact_length(s.jpeg.len(), out);
    out.extend_from_slice(&s.jpeg);
    Ok(true)
}

/// Appends `data` as Tight sends filtered data: as is under 12 bytes, else a compact
/// length and the zlib stream's sync-flushed output.
fn compressed(
    st: &mut TightStreams,
    data: &[u8],
    zbuf: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    if data.len() < MIN_TO_COMPRESS {
        out.extend_from_slice(data);
        return Ok(());
    }
    zbuf.clear();
    let shared = st.shared;
    let cut = std::mem::take(&mut st.cut) && st.streams[STREAM].is_some();
    let z = st.stream(STREAM);
    if shared {
        z.reset();
    } else if cut {
        z.cut(zbuf)?;
    }
    z.flush(data, zbuf)?;
    if zbuf.len() > MAX_COMPACT {
        // Unreachable within the chunk limits (64 KiB of pixels at most).
        return Err(EncodeError::Deflate(super::deflate::DeflateError::new(
            "compressed chunk over Tight's 4 MiB length",
        )));
    }
    compact_length(zbuf.len(), out);
    out.extend_from_slice(zbuf);
    Ok(())
}

/// Tight's compact length: 7 bits a byte, low first, continuation in the top bit; the
/// third byte carries 8 bits. `n` must be at most 2^22 − 1.
pub(crate) fn compact_length(n: usize, out: &mut Vec<u8>) {
    let n = n.min(MAX_COMPACT);
    if n < 0x80 {
        out.push(n as u8);
    } else if n < 0x4000 {
        out.extend_from_slice(&[(n as u8 & 0x7f) | 0x80, (n >> 7) as u8]);
    } else {
        out.extend_from_slice(&[
            (n as u8 & 0x7f) | 0x80,
            ((n >> 7) as u8 & 0x7f) | 0x80,
            (n >> 14) as u8,
        ]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_lengths() {
        let enc = |n| {
            let mut v = Vec::new();
            compact_length(n, &mut v);
            v
        };
        assert_eq!(enc(0), [0]);
        assert_eq!(enc(127), [0x7f]);
        assert_eq!(enc(128), [0x80, 0x01]);
        assert_eq!(enc(10000), [0x90, 0x4e]);
        assert_eq!(enc(16383), [0xff, 0x7f]);
        assert_eq!(enc(16384), [0x80, 0x80, 0x01]);
        assert_eq!(enc(MAX_COMPACT), [0xff, 0xff, 0xff]);
    }

    #[test]
    fn chunks_tile_the_rectangle_within_limits() {
        for r in [
            Rect::new(3, 5, 1920, 1080),
            Rect::new(0, 0, 1, 1),
            Rect::new(0, 0, 8192, 3),
            Rect::new(7, 0, 100, 700),
            Rect::new(0, 0, 0, 10),
        ] {
            let mut area = 0;
            for c in chunks(r) {
                assert!(c.w <= 2048 && c.area() <= CHUNK_AREA && !c.is_empty());
                assert!(c.x >= r.x && c.x + c.w <= r.x + r.w);
                assert!(c.y >= r.y && c.y + c.h <= r.y + r.h);
                area += c.area();
            }
            assert_eq!(area, r.area(), "{r:?}");
        }
    }
}
