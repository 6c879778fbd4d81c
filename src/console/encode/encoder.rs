//! [`Encoder`]: one viewer's encoding state — its pixel format (with the translators
//! built from it), its negotiated encodings, its zlib streams (which must live as long
//! as the connection) and reusable scratch buffers — and the choice of encoding per
//! rectangle. It writes bytes into the caller's buffer; it does not track damage or
//! talk to a socket.

use super::deflate::{DeflateError, Deflater};
use super::encodings::{Encoding, Encodings};
use super::format::{check, FormatError, Layout, Translator};
use super::palette::Palette;
use super::pseudo::{cursor, CursorImage};
use super::rect::{copy_rect, raw};
use super::tight::TightStreams;
use super::{hextile, tight, zrle};
use crate::console::fb::{Framebuffer, OutOfBounds, Rect};
use crate::rfb::messages::PixelFormat;

/// The zlib level when a viewer sent no compression level (fast: ZRLE's and Tight's own
/// filtering already removed most of the redundancy).
pub const DEFAULT_ZLIB_LEVEL: u8 = 1;

/// The zlib level for each RFB compression level 0–9 (see [`Encoder::zlib_level`]).
const ZLIB_LEVEL: [u8; 10] = [1, 1, 1, 1, 2, 3, 4, 5, 6, 9];

/// JPEG quality for each Tight quality level 0–9.
const JPEG_QUALITY: [u8; 10] = [15, 25, 35, 45, 55, 65, 75, 85, 90, 95];

/// Rectangles this small (in bytes of Raw pixels) go Raw whatever the viewer prefers.
const TINY: usize = 64;

/// Encoding a rectangle failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The rectangle is not within the framebuffer.
    #[error(transparent)]
    OutOfBounds(#[from] OutOfBounds),
    /// A zlib stream failed; the viewer's stream is out of step: close the viewer.
    #[error(transparent)]
    Deflate(#[from] DeflateError),
    /// The JPEG encoder failed.
    #[error("jpeg: {0}")]
    Jpeg(String),
    /// A cursor image whose buffers do not match its size.
    #[error("cursor: {0}")]
    Cursor(&'static str),
}

/// Which viewers can be sent the same Tight bytes: in shared mode
/// ([`Encoder::enable_shared_tight`]) two encoders with equal keys encode any rectangle of the
/// same pixels to the same bytes, whatever each viewer received before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TightShareKey {
    /// The viewer's pixel format, as on the wire.
    format: [u8; 16],
    /// The zlib level.
    zlib_level: u8,
    /// The JPEG quality, when JPEG is used.
    jpeg_quality: Option<u8>,
}

/// Which viewers can be sent the same bytes for a rectangle of the same pixels: Raw and
/// Hextile always (they depend on the format only), Tight and ZRLE in shared mode (with
/// the zlib level, and for Tight the JPEG quality).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShareKey {
    /// The viewer's pixel format, as on the wire.
    format: [u8; 16],
    /// The encoding.
    encoding: Encoding,
    /// The zlib level (0 for Raw and Hextile).
    zlib_level: u8,
    /// The JPEG quality (Tight only).
    jpeg_quality: Option<u8>,
}

/// Buffers reused across rectangles (none holds data between calls).
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    /// Wire values of the current tile or chunk.
    pub(crate) vals: Vec<u32>,
    /// Palette indices of the current tile or chunk.
    pub(crate) idx: Vec<u8>,
    /// The colour table.
    pub(crate) palette: Palette,
    /// Uncompressed bytes on their way to zlib.
    pub(crate) bytes: Vec<u8>,
    /// Compressed bytes whose length must be written first (Tight).
    pub(crate) zbuf: Vec<u8>,
    /// RGB bytes for JPEG.
    pub(crate) rgb: Vec<u8>,
    /// A JPEG image.
    pub(crate) jpeg: Vec<u8>,
}

/// One viewer's encoder.
#[derive(Debug)]
pub struct Encoder {
    format: PixelFormat,
    /// PIXELs (Raw, Hextile, cursor).
    pixel: Translator,
    /// ZRLE's CPIXELs.
    cpixel: Translator,
    /// Tight's TPIXELs.
    tpixel: Translator,
    encodings: Encodings,
    /// ZRLE's stream: created at its first rectangle, at the level in force then, and
    /// kept for the connection (ZRLE cannot tell a viewer to reset it).
    zrle: Option<Deflater>,
    /// Shared ZRLE is on (see [`Encoder::enable_shared_zrle`]).
    zrle_shared: bool,
    /// Shared ZRLE: the raw deflate stream reset for every rectangle (made when needed,
    /// dropped by [`Encoder::release_buffers`]).
    zrle_raw: Option<Deflater>,
    /// Shared ZRLE: the viewer's zlib stream was started (its header sent).
    zrle_primed: bool,
    tight: TightStreams,
    scratch: Scratch,
}

impl Encoder {
    /// An encoder for a viewer that starts with `format` (ServerInit's) and Raw only.
    ///
    /// # Errors
    /// [`FormatError`] when `format` is not one tcvnc serves.
    pub fn new(format: PixelFormat) -> Result<Encoder, FormatError> {
        let used = check(&format)?;
        Ok(Encoder {
            format,
            pixel: Translator::new(&format, used, Layout::Pixel),
            cpixel: Translator::new(&format, used, Layout::CPixel),
            tpixel: Translator::new(&format, used, Layout::TPixel),
            encodings: Encodings::default(),
            zrle: None,
            zrle_shared: false,
            zrle_raw: None,
            zrle_primed: false,
            tight: TightStreams::new(DEFAULT_ZLIB_LEVEL),
            scratch: Scratch::default(),
        })
    }

    /// The viewer's pixel format.
    pub fn format(&self) -> &PixelFormat {
        &self.format
    }

    /// SetPixelFormat. A refused format leaves the current one in force; the error's
    /// text is the reason to give the viewer (closing it is the caller's decision).
    ///
    /// # Errors
    /// [`FormatError`].
    pub fn set_pixel_format(&mut self, format: PixelFormat) -> Result<(), FormatError> {
        let used = check(&format)?;
        self.format = format;
        self.pixel = Translator::new(&format, used, Layout::Pixel);
        self.cpixel = Translator::new(&format, used, Layout::CPixel);
        self.tpixel = Translator::new(&format, used, Layout::TPixel);
        Ok(())
    }

    /// SetEncodings (replaces the previous list). A new compression level applies to
    /// Tight at once (in shared mode once its stream has started: see `tight.rs`) and to
    /// ZRLE only if its stream has not started yet.
    pub fn set_encodings(&mut self, list: &[i32]) {
        self.encodings = Encodings::from_list(list);
        self.tight.set_level(self.zlib_level());
    }

    /// The negotiated encodings.
    pub fn encodings(&self) -> &Encodings {
        &self.encodings
    }

    /// The zlib level from the viewer's compression level: levels 0–3 (noVNC sends 2)
    /// all get zlib's fastest real compression, since with the deflate backend in use
    /// (miniz_oxide) level 1 is both faster and, after ZRLE's and Tight's own filtering,
    /// within a few percent of level 2's size, while level 0 (stored) is slower than 1
    /// and sends everything; higher levels step up to 9.
    fn zlib_level(&self) -> u8 {
        match self.encodings.compress_level {
            None => DEFAULT_ZLIB_LEVEL,
            Some(level) => ZLIB_LEVEL[usize::from(level.min(9))],
        }
    }

    /// The JPEG quality (1–100) Tight may use: only for viewers that sent a quality level
    /// and have 16 or 32 bits per pixel (Tight allows no JPEG at 8).
    pub fn jpeg_quality(&self) -> Option<u8> {
        let level = self.encodings.quality_level?;
        (self.format.bits_per_pixel >= 16)
            .then(|| JPEG_QUALITY.get(usize::from(level)).copied())
            .flatten()
    }

    /// The encoding for `r`: the viewer's most preferred one tcvnc sends, Raw for tiny
    /// rectangles and for viewers that listed none.
    pub fn choose(&self, r: Rect) -> Encoding {
        if r.area() * self.pixel.bytes() <= TINY {
            return Encoding::Raw;
        }
        self.encodings
            .preferred
            .first()
            .copied()
            .unwrap_or(Encoding::Raw)
    }

    /// Appends `r` of `fb` in the encoding [`Encoder::choose`] picks; returns how many
    /// rectangles it wrote (Tight splits large ones) for the FramebufferUpdate count.
    ///
    /// # Errors
    /// [`EncodeError`]; after a zlib error the viewer must be closed.
    pub fn encode(
        &mut self,
        fb: &Framebuffer,
        r: Rect,
        out: &mut Vec<u8>,
    ) -> Result<u16, EncodeError> {
        let enc = self.choose(r);
        self.encode_as(enc, fb, r, out)
    }

    /// Appends `r` of `fb` in `enc` (whether the viewer listed it is the caller's
    /// business); returns how many rectangles it wrote.
    ///
    /// # Errors
    /// [`EncodeError`]; after a zlib error the viewer must be closed.
    pub fn encode_as(
        &mut self,
        enc: Encoding,
        fb: &Framebuffer,
        r: Rect,
        out: &mut Vec<u8>,
    ) -> Result<u16, EncodeError> {
        fb.check(r)?;
        match enc {
            Encoding::Raw => raw(&self.pixel, fb, r, out),
            Encoding::Hextile => hextile::encode(&self.pixel, &mut self.scratch, fb, r, out),
            Encoding::Zrle => {
                // A shared stream not started yet gets its primer first (callers that
                // share bytes call `prime_zrle` before, so the shared bytes hold none).
                let primer = self.prime_zrle(fb, out)?;
                let level = self.zlib_level();
                let z = if self.zrle_shared {
                    match &mut self.zrle_raw {
                        Some(z) if z.level() == level => {
                            z.reset();
                            z
                        }
                        raw => raw.insert(Deflater::new_raw(level)),
                    }
                } else {
                    self.zrle.get_or_insert_with(|| Deflater::new(level))
                };
                zrle::encode(&self.cpixel, &mut self.scratch, z, fb, r, out)?;
                return Ok(1 + primer);
            }
            Encoding::Tight => {
                let jpeg = self.jpeg_quality();
                return tight::encode(
                    &self.tpixel,
                    &mut self.scratch,
                    &mut self.tight,
                    jpeg,
                    fb,
                    r,
                    out,
                );
            }
        }
        Ok(1)
    }

    /// ZRLE's first half, for encoding an update once for many viewers: appends the
    /// uncompressed tile data of `r` to `plain`. It depends only on the pixels and the
    /// pixel format, so it serves every viewer whose [`Encoder::format`] is equal; each
    /// then compresses it through its own stream with [`Encoder::zrle_from_tiles`].
    ///
    /// # Errors
    /// [`EncodeError::OutOfBounds`].
    pub fn zrle_tiles(
        &mut self,
        fb: &Framebuffer,
        r: Rect,
        plain: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        fb.check(r)?;
        zrle::plain(&self.cpixel, &mut self.scratch, fb, r, plain);
        Ok(())
    }

    /// ZRLE's second half: appends the ZRLE rectangle `r` made from `plain` (from
    /// [`Encoder::zrle_tiles`] of a viewer with the same pixel format) through this
    /// viewer's zlib stream. Returns the rectangle count (1).
    ///
    /// # Errors
    /// [`EncodeError::Deflate`]; the viewer must then be closed.
    pub fn zrle_from_tiles(
        &mut self,
        r: Rect,
        plain: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<u16, EncodeError> {
        let level = self.zlib_level();
        let z = self.zrle.get_or_insert_with(|| Deflater::new(level));
        zrle::from_plain(z, r, plain, out)?;
        Ok(1)
    }

    /// Shared Tight: every Tight chunk that compresses resets the zlib stream, so the
    /// output no longer depends on this viewer's history and can be encoded once for all
    /// viewers with the same [`TightShareKey`] (then copied to each), and a decoder can
    /// start at any update. Final for the connection, like shared ZRLE (a stream reset
    /// and then continued does not decode in noVNC). ZRLE has no such mode (it cannot
    /// reset its stream); Raw and Hextile are always shareable (no stream).
    pub fn enable_shared_tight(&mut self) {
        self.tight.set_shared();
    }

    /// Makes the next Tight chunk that compresses refer to nothing before it: the zlib
    /// stream is fully flushed there and goes on (no reset bit, which noVNC could not
    /// follow), so a decoder can start at this update
    /// ([`crate::console::decode::UpdateDecoder::join_mid_stream`]) while one that
    /// followed from the start reads on. A recording's keyframes; unlike shared mode it
    /// keeps the history between such points. A no-op in shared mode.
    pub fn cut_tight(&mut self) {
        self.tight.cut();
    }

    /// The key under which this viewer's Tight output may be shared, in shared mode.
    pub fn tight_share_key(&self) -> Option<TightShareKey> {
        self.tight.shared().then(|| TightShareKey {
            format: self.format.to_bytes(),
            zlib_level: self.tight.level(),
            jpeg_quality: self.jpeg_quality(),
        })
    }

    /// Shared ZRLE, for encoding an update once for many viewers: from now on every ZRLE
    /// rectangle is compressed on its own (a raw deflate stream reset per rectangle and
    /// sync-flushed), so its bytes refer to nothing the viewer received before and serve
    /// every viewer with the same [`ShareKey`]. The viewer's zlib stream still needs its
    /// two-byte header once: [`Encoder::prime_zrle`] sends it in a 1×1 rectangle before the
    /// first shared one. Final for the connection (the viewer's stream then holds bytes
    /// this encoder's own stream never saw).
    pub fn enable_shared_zrle(&mut self) {
        if !self.zrle_shared {
            self.zrle_primed = self.zrle.is_some();
            self.zrle = None;
            self.zrle_shared = true;
        }
    }

    /// Before a shared ZRLE rectangle: the first time, appends a 1×1 ZRLE rectangle of
    /// `fb`'s top-left pixel that starts the viewer's zlib stream; returns the
    /// rectangles written (0 or 1).
    ///
    /// # Errors
    /// [`EncodeError`].
    pub fn prime_zrle(&mut self, fb: &Framebuffer, out: &mut Vec<u8>) -> Result<u16, EncodeError> {
        if !self.zrle_shared || self.zrle_primed || fb.bounds().is_empty() {
            return Ok(0);
        }
        let mut z = Deflater::new(self.zlib_level());
        zrle::encode(
            &self.cpixel,
            &mut self.scratch,
            &mut z,
            fb,
            Rect::new(0, 0, 1, 1),
            out,
        )?;
        self.zrle_primed = true;
        Ok(1)
    }

    /// The key under which `enc`'s bytes for a rectangle may be shared with other
    /// viewers, if they may.
    pub fn share_key(&self, enc: Encoding) -> Option<ShareKey> {
        let key = |zlib_level, jpeg_quality| ShareKey {
            format: self.format.to_bytes(),
            encoding: enc,
            zlib_level,
            jpeg_quality,
        };
        match enc {
            Encoding::Raw | Encoding::Hextile => Some(key(0, None)),
            Encoding::Zrle => self.zrle_shared.then(|| key(self.zlib_level(), None)),
            Encoding::Tight => self
                .tight
                .shared()
                .then(|| key(self.tight.level(), self.jpeg_quality())),
        }
    }

    /// Appends a CopyRect rectangle: the viewer copies `dst.w` × `dst.h` pixels from
    /// `(src_x, src_y)` of its screen to `dst`. Only for viewers that listed CopyRect
    /// and have the source area up to date (the caller knows both).
    pub fn copy_rect(&self, dst: Rect, src_x: u16, src_y: u16, out: &mut Vec<u8>) {
        copy_rect(dst, src_x, src_y, out);
    }

    /// Appends the Cursor pseudo-rectangle in the viewer's format.
    ///
    /// # Errors
    /// [`EncodeError::Cursor`] when the image's buffers do not match its size.
    pub fn cursor(&self, image: &CursorImage, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        cursor(&self.pixel, image, out)
    }

    /// Frees the scratch buffers (an idle viewer then holds little beyond its zlib
    /// stream); they grow again on the next rectangle.
    pub fn release_buffers(&mut self) {
        self.scratch = Scratch::default();
        // Shared modes restart their streams for every rectangle anyway.
        self.zrle_raw = None;
        self.tight.release_shared();
    }
}
