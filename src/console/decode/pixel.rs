//! Reading the console's pixels: a true-colour [`PixelFormat`] (8, 16 or 32 bits a
//! pixel, either byte order) to the framebuffer's `0x00RRGGBB`, and the compact forms
//! ZRLE (`CPIXEL`) and Tight (`TPIXEL`) use. Owns no state beyond the format.

use super::error::DecodeError;
use crate::rfb::messages::PixelFormat;

/// Which bytes of a 32-bit pixel a 3-byte compact pixel carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compact {
    /// The compact pixel is the whole pixel.
    Whole,
    /// The three least significant bytes (the colour bits fit there).
    Low3,
    /// The three most significant bytes.
    High3,
}

/// A validated true-colour pixel format, ready to convert pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PixelReader {
    /// Bytes a pixel: 1, 2 or 4.
    bytes: usize,
    big_endian: bool,
    /// `(shift, max)` of red, green and blue.
    channels: [(u32, u32); 3],
    /// 8-bit channels: `rgb` is three shifts and masks.
    eight_bit: bool,
    /// 32 bpp with red at 16, green at 8, blue at 0, 8 bits each: `rgb` is one mask.
    identity: bool,
    /// ZRLE's CPIXEL.
    cpixel: Compact,
    /// Tight's TPIXEL is 3 bytes, red, green, blue.
    tpixel_rgb: bool,
}

impl PixelReader {
    /// Checks that `pf` is a format tcvnc decodes: true colour, 8, 16 or 32 bits a pixel.
    ///
    /// # Errors
    /// [`DecodeError::PixelFormat`] naming what is unsupported.
    pub(crate) fn new(pf: &PixelFormat) -> Result<PixelReader, DecodeError> {
        if !pf.true_colour {
            return Err(DecodeError::PixelFormat(
                "colour-map formats are not supported (tcvnc asks for true colour)".into(),
            ));
        }
        let bytes = match pf.bits_per_pixel {
            8 => 1,
            16 => 2,
            32 => 4,
            b => {
                return Err(DecodeError::PixelFormat(format!(
                    "{b} bits per pixel (8, 16 or 32 are valid)"
                )))
            }
        };
        let channels = [
            (u32::from(pf.red_shift), u32::from(pf.red_max)),
            (u32::from(pf.green_shift), u32::from(pf.green_max)),
            (u32::from(pf.blue_shift), u32::from(pf.blue_max)),
        ];
        let used = channels.iter().fold(0u64, |m, &(shift, max)| {
            m | u64::from(max).checked_shl(shift).unwrap_or(0)
        });
        let eight_bit = channels.iter().all(|&(_, max)| max == 255);
        let identity = bytes == 4 && eight_bit && channels.map(|c| c.0) == [16, 8, 0];
        let cpixel = if bytes == 4 && pf.depth <= 24 && used <= 0x00ff_ffff {
            Compact::Low3
        } else if bytes == 4 && pf.depth <= 24 && used & 0xff == 0 && used <= 0xffff_ffff {
            Compact::High3
        } else {
            Compact::Whole
        };
        Ok(PixelReader {
            bytes,
            big_endian: pf.big_endian,
            channels,
            eight_bit,
            identity,
            cpixel,
            tpixel_rgb: bytes == 4 && pf.depth == 24 && eight_bit,
        })
    }

    /// Bytes a pixel.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Bytes a ZRLE CPIXEL.
    pub(crate) fn cpixel_bytes(&self) -> usize {
        if self.cpixel == Compact::Whole {
            self.bytes
        } else {
            3
        }
    }

    /// Bytes a Tight TPIXEL.
    pub(crate) fn tpixel_bytes(&self) -> usize {
        if self.tpixel_rgb {
            3
        } else {
            self.bytes
        }
    }

    /// Whether Tight's TPIXEL is 3 bytes of red, green, blue.
    pub(crate) fn tpixel_rgb(&self) -> bool {
        self.tpixel_rgb
    }

    /// The pixel value of the first [`Self::bytes`] bytes of `b` (which must hold them).
    pub(crate) fn value(&self, b: &[u8]) -> u32 {
        match (self.bytes, self.big_endian) {
            (1, _) => u32::from(b[0]),
            (2, true) => u32::from(u16::from_be_bytes([b[0], b[1]])),
            (2, false) => u32::from(u16::from_le_bytes([b[0], b[1]])),
            (_, true) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            (_, false) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        }
    }

    /// A pixel value's colour as `0x00RRGGBB`.
    pub(crate) fn rgb(&self, v: u32) -> u32 {
        if self.identity {
            return v & 0x00ff_ffff;
        }
        if self.eight_bit {
            let [(rs, _), (gs, _), (bs, _)] = self.channels;
            let c = |s: u32| v.checked_shr(s).unwrap_or(0) & 0xff;
            return c(rs) << 16 | c(gs) << 8 | c(bs);
        }
        let [r, g, b] = self.components(v);
        let [(_, rm), (_, gm), (_, bm)] = self.channels;
        scale(r, rm) << 16 | scale(g, gm) << 8 | scale(b, bm)
    }

    /// The colour of the pixel in the first [`Self::bytes`] bytes of `b`.
    pub(crate) fn pixel(&self, b: &[u8]) -> u32 {
        self.rgb(self.value(b))
    }

    /// The colour of the CPIXEL in the first [`Self::cpixel_bytes`] bytes of `b`.
    pub(crate) fn cpixel(&self, b: &[u8]) -> u32 {
        let v = match (self.cpixel, self.big_endian) {
            (Compact::Whole, _) => return self.pixel(b),
            (Compact::Low3, false) => u32::from_le_bytes([b[0], b[1], b[2], 0]),
            (Compact::Low3, true) => u32::from_be_bytes([0, b[0], b[1], b[2]]),
            (Compact::High3, false) => u32::from_le_bytes([0, b[0], b[1], b[2]]),
            (Compact::High3, true) => u32::from_be_bytes([b[0], b[1], b[2], 0]),
        };
        self.rgb(v)
    }

    /// The colour of the TPIXEL in the first [`Self::tpixel_bytes`] bytes of `b`.
    pub(crate) fn tpixel(&self, b: &[u8]) -> u32 {
        if self.tpixel_rgb {
            u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2])
        } else {
            self.pixel(b)
        }
    }

    /// Red, green and blue of a pixel value, each in `0..=max`.
    pub(crate) fn components(&self, v: u32) -> [u32; 3] {
        self.channels
            .map(|(shift, max)| v.checked_shr(shift).unwrap_or(0) & max)
    }

    /// The largest value of each component.
    pub(crate) fn maxima(&self) -> [u32; 3] {
        self.channels.map(|c| c.1)
    }

    /// The colour of red, green and blue components (each in `0..=max`).
    pub(crate) fn rgb_of_components(&self, c: [u32; 3]) -> u32 {
        let [(_, rm), (_, gm), (_, bm)] = self.channels;
        scale(c[0], rm) << 16 | scale(c[1], gm) << 8 | scale(c[2], bm)
    }

    /// Converts a row of pixels: `dst.len()` pixels from `src` (which must hold them).
    pub(crate) fn row(&self, src: &[u8], dst: &mut [u32]) {
        if self.identity && !self.big_endian {
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *d = u32::from_le_bytes([s[0], s[1], s[2], 0]);
            }
            return;
        }
        for (d, s) in dst.iter_mut().zip(src.chunks_exact(self.bytes)) {
            *d = self.pixel(s);
        }
    }

    /// Converts a row of CPIXELs.
    pub(crate) fn cpixel_row(&self, src: &[u8], dst: &mut [u32]) {
        for (d, s) in dst.iter_mut().zip(src.chunks_exact(self.cpixel_bytes())) {
            *d = self.cpixel(s);
        }
    }
}

/// A component of `0..=max` as 8 bits, rounded up so that `c * max / 255` (how encoders
/// scale back, as `PixelFormat::push_pixel` does) gives `c` again.
fn scale(c: u32, max: u32) -> u32 {
    match max {
        0 => 0,
        255 => c & 0xff,
        _ => ((u64::from(c.min(max)) * 255).div_ceil(u64::from(max)) as u32) & 0xff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_convert_to_rgb() {
        let rgb888 = PixelReader::new(&PixelFormat::RGB888).expect("ok");
        assert_eq!(rgb888.pixel(&[0x56, 0x34, 0x12, 0xff]), 0x12_3456);
        let be = PixelReader::new(&PixelFormat::true_colour(
            32,
            24,
            true,
            [255; 3],
            [16, 8, 0],
        ))
        .expect("ok");
        assert_eq!(be.pixel(&[0xff, 0x12, 0x34, 0x56]), 0x12_3456);
        let bgr = PixelReader::new(&PixelFormat::true_colour(
            32,
            24,
            false,
            [255; 3],
            [0, 8, 16],
        ))
        .expect("ok");
        assert_eq!(bgr.pixel(&[0x12, 0x34, 0x56, 0]), 0x12_3456);
        let rgb565 = PixelReader::new(&PixelFormat::true_colour(
            16,
            16,
            true,
            [31, 63, 31],
            [11, 5, 0],
        ))
        .expect("ok");
        assert_eq!(rgb565.pixel(&[0xf8, 0x1f]), 0xff_00ff);
        let bgr233 = PixelReader::new(&PixelFormat::true_colour(8, 8, false, [7, 7, 3], [0, 3, 6]))
            .expect("ok");
        assert_eq!(bgr233.pixel(&[0b11_000_111]), 0xff_00ff);
        assert!(PixelReader::new(&PixelFormat::true_colour(
            24,
            24,
            false,
            [255; 3],
            [16, 8, 0]
        ))
        .is_err());
        let mut cmap = PixelFormat::RGB888;
        cmap.true_colour = false;
        assert!(PixelReader::new(&cmap).is_err());
    }

    #[test]
    fn scaling_round_trips_through_push_pixel() {
        for max in [1u32, 3, 7, 31, 63, 255] {
            for c in 0..=max {
                let eight = scale(c, max);
                assert_eq!(eight * max / 255, c, "max {max} c {c}");
            }
        }
    }

    #[test]
    fn compact_pixels_follow_the_three_byte_rule() {
        let le = PixelReader::new(&PixelFormat::RGB888).expect("ok");
        assert_eq!((le.cpixel_bytes(), le.tpixel_bytes()), (3, 3));
        assert_eq!(le.cpixel(&[0x56, 0x34, 0x12]), 0x12_3456);
        assert_eq!(le.tpixel(&[0x12, 0x34, 0x56]), 0x12_3456);
        let high = PixelReader::new(&PixelFormat::true_colour(
            32,
            24,
            false,
            [255; 3],
            [24, 16, 8],
        ))
        .expect("ok");
        assert_eq!(high.cpixel_bytes(), 3);
        assert_eq!(high.cpixel(&[0x56, 0x34, 0x12]), 0x12_3456);
        let high_be = PixelReader::new(&PixelFormat::true_colour(
            32,
            24,
            true,
            [255; 3],
            [24, 16, 8],
        ))
        .expect("ok");
        assert_eq!(high_be.cpixel(&[0x12, 0x34, 0x56]), 0x12_3456);
        let low_be = PixelReader::new(&PixelFormat::true_colour(
            32,
            24,
            true,
            [255; 3],
            [16, 8, 0],
        ))
        .expect("ok");
        assert_eq!(low_be.cpixel(&[0x12, 0x34, 0x56]), 0x12_3456);
        let deep = PixelReader::new(&PixelFormat::true_colour(
            32,
            30,
            false,
            [1023; 3],
            [20, 10, 0],
        ))
        .expect("ok");
        assert_eq!((deep.cpixel_bytes(), deep.tpixel_bytes()), (4, 4));
        let rgb565 = PixelReader::new(&PixelFormat::true_colour(
            16,
            16,
            false,
            [31, 63, 31],
            [11, 5, 0],
        ))
        .expect("ok");
        assert_eq!((rgb565.cpixel_bytes(), rgb565.tpixel_bytes()), (2, 2));
    }
}
