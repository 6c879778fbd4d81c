//! The screen as a PNG (8-bit RGB, no alpha): what `GET /vnc/<instance>/screenshot.png`
//! and `tcvnc screenshot` return. Pure: a framebuffer (or a rectangle of it) in, bytes out.
//!
//! Encoded by image-rs's `png` crate rather than by hand: it is the maintained reference
//! encoder in Rust, pure Rust like the rest, and adds only `fdeflate` and an older
//! `miniz_oxide` beside flate2's. Settings, from `cargo bench --bench png` (release, this
//! project's 2-core machine, 1920×1080): zlib level 1 (flate2, miniz_oxide) with the
//! adaptive per-row filter takes 8–9 ms for a desktop or a text console and gives 7–9% of
//! the raw RGB size; the crate's fastest mode (fdeflate) saves 2–3 ms but is 2–4 times
//! larger; level 6 takes 65–105 ms. Noise, the worst case, takes 20–30 ms.
//!
//! A PNG needs at least one pixel: an empty screen (0×0, as a console may report before
//! its first DesktopSize) or rectangle is [`PngError::Empty`], not a made-up black pixel,
//! so that a caller can say "no screen yet" instead of serving an image of nothing.

use super::fb::{Framebuffer, OutOfBounds, Rect};

/// Why a screen could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum PngError {
    /// No pixel to encode.
    #[error("the screen is empty ({w}x{h}): there is no picture to take yet")]
    Empty {
        /// Width asked for.
        w: u16,
        /// Height asked for.
        h: u16,
    },
    /// The rectangle is not within the screen.
    #[error(transparent)]
    OutOfBounds(#[from] OutOfBounds),
    /// The encoder failed (not expected with a checked size; kept rather than a panic).
    #[error("cannot encode the PNG: {0}")]
    Encode(#[from] ::png::EncodingError),
}

/// The whole screen as a PNG.
///
/// # Errors
/// [`PngError::Empty`] for a 0×0 screen; [`PngError::Encode`] should the encoder fail.
pub fn encode(fb: &Framebuffer) -> Result<Vec<u8>, PngError> {
    encode_rect(fb, fb.bounds())
}

/// The rectangle `r` of the screen as a PNG of `r.w` × `r.h` pixels.
///
/// # Errors
/// [`PngError::Empty`] for an empty rectangle, [`PngError::OutOfBounds`] for one outside
/// the screen, [`PngError::Encode`] should the encoder fail.
pub fn encode_rect(fb: &Framebuffer, r: Rect) -> Result<Vec<u8>, PngError> {
    if r.is_empty() {
        return Err(PngError::Empty { w: r.w, h: r.h });
    }
    fb.check(r)?;
    let mut rgb = Vec::with_capacity(r.area() * 3);
    for dy in 0..r.h {
        for &p in fb.row(r, dy) {
            rgb.extend_from_slice(&[(p >> 16) as u8, (p >> 8) as u8, p as u8]);
        }
    }
    // PNGs of screens are under a tenth of the raw size; this avoids most regrowth.
    let mut out = Vec::with_capacity(rgb.len() / 8 + 1024);
    let mut enc = ::png::Encoder::new(&mut out, u32::from(r.w), u32::from(r.h));
    enc.set_color(::png::ColorType::Rgb);
    enc.set_depth(::png::BitDepth::Eight);
    enc.set_deflate_compression(::png::DeflateCompression::Level(1));
    enc.set_filter(::png::Filter::Adaptive);
    let mut writer = enc.write_header()?;
    writer.write_image_data(&rgb)?;
    writer.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes with an independent decoder (zune-png) into `0x00RRGGBB` pixels.
    fn decode(png: &[u8]) -> (usize, usize, Vec<u32>) {
        use zune_png::zune_core::colorspace::ColorSpace;
        let mut d = zune_png::PngDecoder::new(png);
        let pixels = d.decode_raw().expect("a valid PNG");
        let (w, h) = d.get_dimensions().expect("dimensions");
        assert_eq!(d.get_colorspace(), Some(ColorSpace::RGB), "8-bit RGB");
        assert_eq!(
            d.get_depth(),
            Some(zune_png::zune_core::bit_depth::BitDepth::Eight)
        );
        assert_eq!(pixels.len(), w * h * 3);
        let px = pixels
            .chunks_exact(3)
            .map(|c| u32::from(c[0]) << 16 | u32::from(c[1]) << 8 | u32::from(c[2]))
            .collect();
        (w, h, px)
    }

    fn noisy(w: u16, h: u16) -> Framebuffer {
        let mut fb = Framebuffer::new(w, h);
        let mut seed = 0x9e37_79b9u32;
        let px: Vec<u32> = (0..usize::from(w) * usize::from(h))
            .map(|i| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                // Flat runs, gradients and noise, so every filter gets used.
                match (i / 97) % 3 {
                    0 => 0x0020_4060,
                    1 => (i as u32).wrapping_mul(0x0001_0203) & 0x00ff_ffff,
                    _ => seed & 0x00ff_ffff,
                }
            })
            .collect();
        fb.put(fb.bounds(), &px).expect("fits");
        fb
    }

    #[test]
    fn round_trips_exactly() {
        for (w, h) in [(1, 1), (2, 1), (1, 3), (7, 5), (64, 48), (333, 17)] {
            let fb = noisy(w, h);
            let png = encode(&fb).expect("encodes");
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
            let (dw, dh, px) = decode(&png);
            assert_eq!((dw, dh), (usize::from(w), usize::from(h)));
            assert_eq!(px, fb.pixels(), "{w}x{h}");
        }
    }

    #[test]
    fn the_high_byte_is_ignored() {
        let mut fb = Framebuffer::new(2, 1);
        fb.put(fb.bounds(), &[0xff12_3456, 0x00ab_cdef])
            .expect("fits");
        let (_, _, px) = decode(&encode(&fb).expect("encodes"));
        assert_eq!(px, vec![0x0012_3456, 0x00ab_cdef]);
    }

    #[test]
    fn a_rectangle_round_trips() {
        let fb = noisy(200, 100);
        let r = Rect::new(13, 7, 101, 55);
        let (w, h, px) = decode(&encode_rect(&fb, r).expect("encodes"));
        assert_eq!((w, h), (101, 55));
        let want: Vec<u32> = (0..r.h).flat_map(|dy| fb.row(r, dy).to_vec()).collect();
        assert_eq!(px, want);
    }

    #[test]
    fn empty_and_outside_are_errors_not_panics() {
        let zero = Framebuffer::new(0, 0);
        let e = encode(&zero).expect_err("no pixel");
        assert!(matches!(e, PngError::Empty { w: 0, h: 0 }), "{e}");
        assert!(e.to_string().contains("empty"), "{e}");
        assert!(matches!(
            encode(&Framebuffer::new(5, 0)),
            Err(PngError::Empty { w: 5, h: 0 })
        ));
        let fb = noisy(10, 10);
        assert!(matches!(
            encode_rect(&fb, Rect::new(3, 3, 0, 4)),
            Err(PngError::Empty { .. })
        ));
        assert!(matches!(
            encode_rect(&fb, Rect::new(5, 5, 6, 1)),
            Err(PngError::OutOfBounds(_))
        ));
        assert!(matches!(
            encode_rect(&fb, Rect::new(u16::MAX, u16::MAX, u16::MAX, u16::MAX)),
            Err(PngError::OutOfBounds(_))
        ));
    }

    #[test]
    fn a_flat_screen_compresses() {
        let fb = Framebuffer::new(1920, 1080);
        let png = encode(&fb).expect("encodes");
        assert!(png.len() < 64 * 1024, "{} bytes", png.len());
        let (w, h, px) = decode(&png);
        assert_eq!((w, h), (1920, 1080));
        assert!(px.iter().all(|&p| p == 0));
    }
}
