//! A viewer's pixel format: the check of what SetPixelFormat asked for ([`check`],
//! refusing colour maps and formats whose channels do not fit), and the [`Translator`]
//! that turns framebuffer pixels (`0x00RRGGBB`) into the viewer's bytes through three
//! 256-entry tables built once per format. It does not choose encodings.
//!
//! A translated pixel is a "wire value": a `u32` whose little-endian bytes, cut to the
//! pixel's length, are exactly the bytes on the wire (the byte order is baked into the
//! tables). Two framebuffer colours give the same wire value exactly when the viewer
//! sees the same pixel, so encoders build palettes and runs on wire values.

use crate::rfb::messages::PixelFormat;

/// Why a viewer's SetPixelFormat is refused. Its `Display` is a fixed, viewer-safe phrase
/// a server can send as the close reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// A colour-map (palette) format: tcvnc serves true colour only.
    #[error("colour-map pixel formats are not supported: ask for a true-colour format")]
    ColourMap,
    /// Bits per pixel other than 8, 16 or 32.
    #[error("{0} bits per pixel is not supported: ask for 8, 16 or 32")]
    BitsPerPixel(u8),
    /// A channel maximum that is not `2^n - 1` (n ≥ 1).
    #[error("the {channel} maximum {max} is not 2^n-1 with n >= 1")]
    Max {
        /// `red`, `green` or `blue`.
        channel: &'static str,
        /// What the viewer sent.
        max: u16,
    },
    /// A channel whose bits, at its shift, fall outside the pixel.
    #[error("the {channel} bits at shift {shift} do not fit in a {bits_per_pixel}-bit pixel")]
    Shift {
        /// `red`, `green` or `blue`.
        channel: &'static str,
        /// What the viewer sent.
        shift: u8,
        /// The pixel size.
        bits_per_pixel: u8,
    },
    /// Two channels share bits.
    #[error("the red, green and blue bits overlap")]
    Overlap,
}

/// The bits `max << shift` covers, or `None` when they leave a `bits`-bit pixel.
fn channel_mask(max: u16, shift: u8, bits: u8) -> Option<u32> {
    let width = 16 - max.leading_zeros(); // max = 2^width - 1, checked before
    (width + u32::from(shift) <= u32::from(bits)).then(|| u32::from(max) << shift)
}

/// Checks a viewer's pixel format: true colour, 8/16/32 bits per pixel, each maximum
/// `2^n - 1`, each channel inside the pixel, no two channels sharing a bit. Depth is
/// not checked (viewers send odd depths; it only decides ZRLE's and Tight's compact
/// pixels). Returns the used-bits mask.
///
/// # Errors
/// [`FormatError`], whose text is the reason to give the viewer.
pub fn check(pf: &PixelFormat) -> Result<u32, FormatError> {
    if !pf.true_colour {
        return Err(FormatError::ColourMap);
    }
    if !matches!(pf.bits_per_pixel, 8 | 16 | 32) {
        return Err(FormatError::BitsPerPixel(pf.bits_per_pixel));
    }
    let channels = [
        ("red", pf.red_max, pf.red_shift),
        ("green", pf.green_max, pf.green_shift),
        ("blue", pf.blue_max, pf.blue_shift),
    ];
    let mut used = 0u32;
    for (channel, max, shift) in channels {
        if max == 0 || (u32::from(max) & (u32::from(max) + 1)) != 0 {
            return Err(FormatError::Max { channel, max });
        }
        let mask = channel_mask(max, shift, pf.bits_per_pixel).ok_or(FormatError::Shift {
            channel,
            shift,
            bits_per_pixel: pf.bits_per_pixel,
        })?;
        if used & mask != 0 {
            return Err(FormatError::Overlap);
        }
        used |= mask;
    }
    Ok(used)
}

/// Which pixel form a translator writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// PIXEL: `bits_per_pixel / 8` bytes in the viewer's byte order.
    Pixel,
    /// ZRLE's CPIXEL: 3 bytes for 32-bit formats of depth ≤ 24 whose channels fit in the
    /// low or high 3 bytes, else a PIXEL.
    CPixel,
    /// Tight's TPIXEL: 3 bytes R, G, B for 32-bit depth-24 formats with 8-bit channels,
    /// else a PIXEL.
    TPixel,
}

/// How a translation is computed: the fast forms are chosen once when the tables show
/// the format allows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `(p & and) | or` (e.g. 32-bit little-endian `0x00RRGGBB` viewers).
    Direct { and: u32, or: u32 },
    /// `(p.swap_bytes() >> 8) | or`: the bytes R, G, B (Tight's TPIXEL, RGBX viewers).
    Swapped { or: u32 },
    /// Three table lookups.
    Table,
}

/// Framebuffer pixels → one viewer's pixel bytes, in one of the [`Layout`]s.
#[derive(Clone)]
pub(crate) struct Translator {
    /// Per channel (red, green, blue): the 8-bit intensity's bits in wire order.
    tables: Box<[[u32; 256]; 3]>,
    /// Bits no channel uses (32-bit formats), in wire order: set, as in
    /// `PixelFormat::push_pixel` (noVNC reads 32-bit padding as alpha).
    pad: u32,
    /// Bytes per pixel written (1–4).
    bytes: usize,
    kind: Kind,
}

impl std::fmt::Debug for Translator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Translator({} B, {:?})", self.bytes, self.kind)
    }
}

/// Scales an 8-bit intensity to `0..=max`, rounding to nearest.
fn scale(c: u32, max: u16) -> u32 {
    (c * u32::from(max) + 127) / 255
}

impl Translator {
    /// The translator for a format [`check`] accepted (`used` is its result).
    pub(crate) fn new(pf: &PixelFormat, used: u32, layout: Layout) -> Translator {
        let bpp = pf.bits_per_pixel;
        let max888 = pf.red_max == 255 && pf.green_max == 255 && pf.blue_max == 255;
        let tpixel = layout == Layout::TPixel && bpp == 32 && pf.depth == 24 && max888;
        let mut tables = Box::new([[0u32; 256]; 3]);
        if tpixel {
            for c in 0..256u32 {
                tables[0][c as usize] = c;
                tables[1][c as usize] = c << 8;
                tables[2][c as usize] = c << 16;
            }
            return Translator::finish(tables, 0, 3);
        }
        let pad = if bpp == 32 { !used } else { 0 };
        // The wire order: big-endian values are byte-swapped within their size.
        let wire = |v: u32| match (bpp, pf.big_endian) {
            (32, true) => v.swap_bytes(),
            (16, true) => u32::from((v as u16).swap_bytes()),
            _ => v,
        };
        let channels = [
            (pf.red_max, pf.red_shift),
            (pf.green_max, pf.green_shift),
            (pf.blue_max, pf.blue_shift),
        ];
        for (table, (max, shift)) in tables.iter_mut().zip(channels) {
            for (c, slot) in table.iter_mut().enumerate() {
                *slot = wire(scale(c as u32, max) << shift);
            }
        }
        let mut pad = wire(pad);
        let mut bytes = usize::from(bpp / 8);
        // CPIXEL: drop the byte no channel uses, when there is one at either end.
        if layout == Layout::CPixel && bpp == 32 && pf.depth <= 24 {
            let low3 = used & 0xff00_0000 == 0;
            let high3 = used & 0x0000_00ff == 0;
            // Which wire byte to drop: the first (offset 1) or the last (offset 0).
            let offset = match (low3, high3, pf.big_endian) {
                (true, _, false) => Some(0),
                (true, _, true) => Some(8),
                (false, true, false) => Some(8),
                (false, true, true) => Some(0),
                (false, false, _) => None,
            };
            if let Some(offset) = offset {
                for table in tables.iter_mut() {
                    for slot in table.iter_mut() {
                        *slot = (*slot >> offset) & 0x00ff_ffff;
                    }
                }
                pad = (pad >> offset) & 0x00ff_ffff;
                bytes = 3;
            }
        }
        Translator::finish(tables, pad, bytes)
    }

    /// Picks the fastest [`Kind`] that gives the same values as the tables.
    fn finish(tables: Box<[[u32; 256]; 3]>, pad: u32, bytes: usize) -> Translator {
        let mut t = Translator {
            tables,
            pad,
            bytes,
            kind: Kind::Table,
        };
        let all = |f: &dyn Fn(u32) -> u32| {
            (0..256u32).all(|c| {
                let (r, g, b) = (c << 16, c << 8, c);
                t.by_table(r) == f(r) && t.by_table(g) == f(g) && t.by_table(b) == f(b)
            })
        };
        let direct = all(&|p| (p & 0x00ff_ffff) | pad);
        let swapped = all(&|p| (p.swap_bytes() >> 8) | pad);
        t.kind = if direct {
            Kind::Direct {
                and: 0x00ff_ffff,
                or: pad,
            }
        } else if swapped {
            Kind::Swapped { or: pad }
        } else {
            Kind::Table
        };
        t
    }

    #[inline(always)]
    fn by_table(&self, p: u32) -> u32 {
        self.tables[0][(p >> 16) as u8 as usize]
            | self.tables[1][(p >> 8) as u8 as usize]
            | self.tables[2][p as u8 as usize]
            | self.pad
    }

    /// Bytes per translated pixel.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The wire value of one framebuffer pixel.
    #[cfg(test)]
    pub(crate) fn value(&self, p: u32) -> u32 {
        match self.kind {
            Kind::Direct { and, or } => (p & and) | or,
            Kind::Swapped { or } => (p.swap_bytes() >> 8) | or,
            Kind::Table => self.by_table(p),
        }
    }

    /// Appends the wire values of `src` to `dst`.
    pub(crate) fn values(&self, src: &[u32], dst: &mut Vec<u32>) {
        match self.kind {
            Kind::Direct { and, or } => dst.extend(src.iter().map(|&p| (p & and) | or)),
            Kind::Swapped { or } => dst.extend(src.iter().map(|&p| (p.swap_bytes() >> 8) | or)),
            Kind::Table => dst.extend(src.iter().map(|&p| self.by_table(p))),
        }
    }

    /// Appends the bytes of framebuffer pixels `src`.
    pub(crate) fn write(&self, src: &[u32], out: &mut Vec<u8>) {
        match self.kind {
            Kind::Direct { and, or } => self.put(src, out, |p| (p & and) | or),
            Kind::Swapped { or } => self.put(src, out, |p| (p.swap_bytes() >> 8) | or),
            Kind::Table => self.put(src, out, |p| self.by_table(p)),
        }
    }

    /// Appends the bytes of wire values (from [`Translator::values`]).
    pub(crate) fn write_values(&self, vals: &[u32], out: &mut Vec<u8>) {
        self.put(vals, out, |v| v);
    }

    /// Appends the bytes of one wire value (a fixed-size copy per size, not a memcpy
    /// call: RLE writes one per run).
    #[inline]
    pub(crate) fn write_value(&self, v: u32, out: &mut Vec<u8>) {
        let b = v.to_le_bytes();
        match self.bytes {
            4 => out.extend_from_slice(&b),
            3 => out.extend_from_slice(&b[..3]),
            2 => out.extend_from_slice(&b[..2]),
            _ => out.push(b[0]),
        }
    }

    /// One loop per pixel size, so the size is no branch inside it.
    #[inline(always)]
    fn put(&self, src: &[u32], out: &mut Vec<u8>, f: impl Fn(u32) -> u32) {
        match self.bytes {
            4 => put_n::<4>(src, out, f),
            3 => put_n::<3>(src, out, f),
            2 => put_n::<2>(src, out, f),
            _ => put_n::<1>(src, out, f),
        }
    }
}

#[inline(always)]
fn put_n<const N: usize>(src: &[u32], out: &mut Vec<u8>, f: impl Fn(u32) -> u32) {
    let start = out.len();
    out.resize(start + src.len() * N, 0);
    for (d, &p) in out[start..].chunks_exact_mut(N).zip(src) {
        d.copy_from_slice(&f(p).to_le_bytes()[..N]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(f: &PixelFormat, layout: Layout, p: u32) -> Vec<u8> {
        let used = check(f).expect("valid");
        let t = Translator::new(f, used, layout);
        let mut out = Vec::new();
        t.write(&[p], &mut out);
        let mut again = Vec::new();
        t.write_value(t.value(p), &mut again);
        assert_eq!(out, again);
        out
    }

    #[test]
    fn formats_the_wild_sends() {
        let p = 0x0012_3456;
        let rgb888 = PixelFormat::RGB888;
        assert_eq!(bytes(&rgb888, Layout::Pixel, p), [0x56, 0x34, 0x12, 0xff]);
        assert_eq!(bytes(&rgb888, Layout::CPixel, p), [0x56, 0x34, 0x12]);
        assert_eq!(bytes(&rgb888, Layout::TPixel, p), [0x12, 0x34, 0x56]);
        let be = PixelFormat {
            big_endian: true,
            ..rgb888
        };
        assert_eq!(bytes(&be, Layout::Pixel, p), [0xff, 0x12, 0x34, 0x56]);
        assert_eq!(bytes(&be, Layout::CPixel, p), [0x12, 0x34, 0x56]);
        // vncdotool's RGBX (red in the lowest byte).
        let rgbx = PixelFormat::true_colour(32, 24, false, [255; 3], [0, 8, 16]);
        assert_eq!(bytes(&rgbx, Layout::Pixel, p), [0x12, 0x34, 0x56, 0xff]);
        // Channels in the high 3 bytes: CPIXEL drops the low one.
        let high = PixelFormat::true_colour(32, 24, false, [255; 3], [24, 16, 8]);
        assert_eq!(bytes(&high, Layout::Pixel, p), [0xff, 0x56, 0x34, 0x12]);
        assert_eq!(bytes(&high, Layout::CPixel, p), [0x56, 0x34, 0x12]);
        let high_be = PixelFormat {
            big_endian: true,
            ..high
        };
        assert_eq!(bytes(&high_be, Layout::CPixel, p), [0x12, 0x34, 0x56]);
        // Depth 32: no compact pixel.
        let deep = PixelFormat {
            depth: 32,
            ..rgb888
        };
        assert_eq!(bytes(&deep, Layout::CPixel, p).len(), 4);
        assert_eq!(bytes(&deep, Layout::TPixel, p).len(), 4);
        let rgb565 = PixelFormat::true_colour(16, 16, true, [31, 63, 31], [11, 5, 0]);
        assert_eq!(bytes(&rgb565, Layout::Pixel, 0x00ff_00ff), [0xf8, 0x1f]);
        assert_eq!(bytes(&rgb565, Layout::TPixel, 0x00ff_00ff), [0xf8, 0x1f]);
        let le565 = PixelFormat {
            big_endian: false,
            ..rgb565
        };
        assert_eq!(bytes(&le565, Layout::Pixel, 0x00ff_00ff), [0x1f, 0xf8]);
        let bgr233 = PixelFormat::true_colour(8, 8, false, [7, 7, 3], [0, 3, 6]);
        assert_eq!(bytes(&bgr233, Layout::Pixel, 0x00ff_0080), [0x87]);
    }

    #[test]
    fn bad_formats_are_refused_not_panicked_on() {
        let ok = PixelFormat::RGB888;
        let cm = PixelFormat {
            true_colour: false,
            ..ok
        };
        assert_eq!(check(&cm), Err(FormatError::ColourMap));
        assert!(check(&cm)
            .expect_err("x")
            .to_string()
            .contains("true-colour"));
        for bpp in [0, 1, 4, 12, 24, 64, 255] {
            let f = PixelFormat {
                bits_per_pixel: bpp,
                ..ok
            };
            assert_eq!(check(&f), Err(FormatError::BitsPerPixel(bpp)));
        }
        for max in [0, 254, 256, 1000] {
            let f = PixelFormat { red_max: max, ..ok };
            assert!(matches!(check(&f), Err(FormatError::Max { .. })), "{max}");
        }
        for shift in [25, 31, 32, 200, 255] {
            let f = PixelFormat {
                red_shift: shift,
                ..ok
            };
            assert!(
                matches!(check(&f), Err(FormatError::Shift { .. })),
                "{shift}"
            );
        }
        let f = PixelFormat {
            green_shift: 12,
            ..ok
        };
        assert_eq!(check(&f), Err(FormatError::Overlap));
        let f = PixelFormat {
            red_max: u16::MAX,
            red_shift: 17,
            ..ok
        };
        assert!(matches!(check(&f), Err(FormatError::Shift { .. })));
        let wide = PixelFormat::true_colour(32, 30, false, [1023; 3], [20, 10, 0]);
        assert_eq!(bytes(&wide, Layout::Pixel, 0x00ff_ffff), [0xff; 4]);
    }
}
