//! ZRLE (encoding 16): the inflated bytes of one rectangle, 64×64 tiles of raw, solid,
//! packed-palette, RLE or palette-RLE CPIXELs, drawn into the framebuffer. The stream
//! decoder owns the zlib stream and hands this file a rectangle's complete data.

use super::error::DecodeError;
use super::pixel::PixelReader;
use crate::console::fb::{Framebuffer, Rect};

const TILE: u16 = 64;

/// The most inflated bytes a `rect` can need: per tile a subencoding byte and a
/// 127-colour palette, per pixel a CPIXEL and a run byte.
pub(crate) fn bound(rect: Rect, px: &PixelReader) -> usize {
    let tiles = usize::from(rect.w).div_ceil(usize::from(TILE)) * usize::from(rect.h).div_ceil(64);
    let cp = px.cpixel_bytes();
    tiles * (1 + 127 * cp) + rect.area() * (cp + 1)
}

/// Reads `data` front to back.
struct Cursor<'a> {
    data: &'a [u8],
    at: usize,
    rect: Rect,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.data.len());
        let Some(end) = end else {
            return Err(DecodeError::invalid(
                "ZRLE",
                format!(
                    "data of rectangle {},{} {}x{} ends inside a tile ({} bytes)",
                    self.rect.x,
                    self.rect.y,
                    self.rect.w,
                    self.rect.h,
                    self.data.len()
                ),
            ));
        };
        let s = &self.data[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    /// A run length: one more than the sum of its bytes, ending at a byte under 255;
    /// at most `left`.
    fn run(&mut self, left: usize) -> Result<usize, DecodeError> {
        let mut n = 1usize;
        loop {
            let b = self.byte()?;
            n += usize::from(b);
            if n > left {
                return Err(DecodeError::invalid(
                    "ZRLE",
                    format!("a run of {n}+ pixels overflows its tile ({left} left)"),
                ));
            }
            if b != 255 {
                return Ok(n);
            }
        }
    }
}

/// Draws the rectangle `rect` from its complete inflated `data`.
///
/// # Errors
/// Data that ends early or runs past the tiles, undefined subencodings, palette indices
/// past the palette, runs past a tile.
pub(crate) fn draw(
    rect: Rect,
    px: &PixelReader,
    data: &[u8],
    fb: &mut Framebuffer,
) -> Result<(), DecodeError> {
    fb.check(rect).map_err(|e| DecodeError::bounds("ZRLE", e))?;
    let mut c = Cursor { data, at: 0, rect };
    let cp = px.cpixel_bytes();
    let mut tile = vec![0u32; usize::from(TILE) * usize::from(TILE)];
    let mut palette = [0u32; 128];
    let mut ty = 0;
    while ty < rect.h {
        let th = (rect.h - ty).min(TILE);
        let mut tx = 0;
        while tx < rect.w {
            let tw = (rect.w - tx).min(TILE);
            let t = Rect::new(rect.x + tx, rect.y + ty, tw, th);
            let n = t.area();
            let pixels = &mut tile[..n];
            let sub = c.byte()?;
            let size = usize::from(sub & 127);
            if size > 1 && size <= 127 && (sub >= 128 || size <= 16) {
                for p in palette.iter_mut().take(size) {
                    *p = px.cpixel(c.take(cp)?);
                }
            }
            match sub {
                0 => px.cpixel_row(c.take(n * cp)?, pixels),
                1 => pixels.fill(px.cpixel(c.take(cp)?)),
                2..=16 => {
                    let bits = match size {
                        2 => 1,
                        3 | 4 => 2,
                        _ => 4,
                    };
                    let row_bytes = (usize::from(tw) * bits).div_ceil(8);
                    let packed = c.take(row_bytes * usize::from(th))?;
                    let mask = (1u8 << bits) - 1;
                    for (row, src) in pixels
                        .chunks_exact_mut(usize::from(tw))
                        .zip(packed.chunks_exact(row_bytes))
                    {
                        for (x, p) in row.iter_mut().enumerate() {
                            let bit = x * bits;
                            let shift = 8 - bits - (bit % 8);
                            let index = usize::from((src[bit / 8] >> shift) & mask);
                            if index >= size {
                                return Err(bad_index(index, size));
                            }
                            *p = palette[index];
                        }
                    }
                }
                128 => {
                    let mut at = 0;
                    while at < n {
                        let colour = px.cpixel(c.take(cp)?);
                        let len = c.run(n - at)?;
                        pixels[at..at + len].fill(colour);
                        at += len;
                    }
                }
                130..=255 => {
                    let mut at = 0;
                    while at < n {
                        let b = c.byte()?;
                        let index = usize::from(b & 127);
                        if index >= size {
                            return Err(bad_index(index, size));
                        }
                        let len = if b & 128 != 0 { c.run(n - at)? } else { 1 };
                        pixels[at..at + len].fill(palette[index]);
                        at += len;
                    }
                }
                _ => {
                    return Err(DecodeError::invalid(
                        "ZRLE",
                        format!("tile subencoding {sub} is undefined"),
                    ))
                }
            }
            fb.put(t, pixels)
                .map_err(|e| DecodeError::bounds("ZRLE", e))?;
            tx += tw;
        }
        ty += th;
    }
    if c.at != data.len() {
        return Err(DecodeError::invalid(
            "ZRLE",
            format!(
                "{} bytes left over after the tiles of rectangle {},{} {}x{}",
                data.len() - c.at,
                rect.x,
                rect.y,
                rect.w,
                rect.h
            ),
        ));
    }
    Ok(())
}

fn bad_index(index: usize, size: usize) -> DecodeError {
    DecodeError::invalid(
        "ZRLE",
        format!("palette index {index} past a palette of {size}"),
    )
}
