//! Tight (encoding 7) without JPEG: the header of a rectangle (compression control,
//! filter, palette, compact length) judged from the bytes held so far, and the drawing of
//! its filtered data (copy, palette, gradient) once complete. The stream decoder owns the
//! four zlib streams and feeds them.

use super::acc::{exactly, Parsed};
use super::error::DecodeError;
use super::pixel::PixelReader;
use crate::console::fb::{Framebuffer, Rect};

/// Filtered data under this many bytes is sent without compression.
const MIN_TO_COMPRESS: usize = 12;

/// How a basic rectangle's pixels were filtered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Filter {
    /// TPIXELs as they are.
    Copy,
    /// Indices into this palette (2 to 256 colours, `0x00RRGGBB`).
    Palette(Vec<u32>),
    /// Differences from a predicted colour.
    Gradient,
}

/// A parsed header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Head {
    /// Fill the rectangle with one colour.
    Fill {
        /// The streams to reset (low 4 bits of the control byte).
        resets: u8,
        /// The colour.
        colour: u32,
    },
    /// Filtered pixel data follows.
    Basic {
        /// The streams to reset.
        resets: u8,
        /// The zlib stream (0–3) of compressed data.
        stream: usize,
        /// The filter.
        filter: Filter,
        /// The filtered data's length.
        data_len: usize,
        /// The header's own length.
        header_len: usize,
        /// `None`: `data_len` bytes follow uncompressed; else this many compressed bytes.
        compressed: Option<usize>,
    },
}

/// The filtered data's length of a `rect`.
fn data_len(rect: Rect, px: &PixelReader, filter: &Filter) -> usize {
    match filter {
        Filter::Palette(p) if p.len() == 2 => usize::from(rect.w).div_ceil(8) * usize::from(rect.h),
        Filter::Palette(_) => rect.area(),
        Filter::Copy | Filter::Gradient => rect.area() * px.tpixel_bytes(),
    }
}

/// Parses the header of `rect` from the bytes `b` held so far.
///
/// # Errors
/// JPEG (not negotiated), compression types or filters that do not exist, a gradient
/// at 8 bits a pixel.
pub(crate) fn header(rect: Rect, px: &PixelReader, b: &[u8]) -> Result<Parsed<Head>, DecodeError> {
    let Some(&control) = b.first() else {
        return Ok(Parsed::Need(1));
    };
    let resets = control & 0x0f;
    let tp = px.tpixel_bytes();
    match control >> 4 {
        8 => {
            return Ok(match exactly(b, 1 + tp) {
                Parsed::Need(n) => Parsed::Need(n),
                Parsed::Done(_) => Parsed::Done(Head::Fill {
                    resets,
                    colour: px.tpixel(&b[1..]),
                }),
            })
        }
        9 => return Err(DecodeError::JpegNotNegotiated { rect }),
        kind @ 10.. => {
            return Err(DecodeError::invalid(
                "Tight",
                format!(
                    "compression type {kind:#06b} (PNG or without-zlib, neither negotiated, or undefined)"
                ),
            ))
        }
        _ => {}
    }
    let stream = usize::from((control >> 4) & 3);
    let mut at = 1;
    let filter_id = if control & 0x40 != 0 {
        let Some(&id) = b.get(1) else {
            return Ok(Parsed::Need(2));
        };
        at = 2;
        id
    } else {
        0
    };
    let filter = match filter_id {
        0 => Filter::Copy,
        1 => {
            let Some(&count) = b.get(at) else {
                return Ok(Parsed::Need(at + 1));
            };
            let n = usize::from(count) + 1;
            let end = at + 1 + n * tp;
            if b.len() < end {
                return Ok(Parsed::Need(end));
            }
            let palette = b[at + 1..end]
                .chunks_exact(tp)
                .map(|c| px.tpixel(c))
                .collect();
            at = end;
            Filter::Palette(palette)
        }
        2 if px.bytes() == 1 => {
            return Err(DecodeError::invalid(
                "Tight",
                "gradient filter at 8 bits a pixel",
            ))
        }
        2 => Filter::Gradient,
        f => {
            return Err(DecodeError::invalid(
                "Tight",
                format!("filter {f} is undefined"),
            ))
        }
    };
    let data_len = data_len(rect, px, &filter);
    if data_len < MIN_TO_COMPRESS {
        return Ok(Parsed::Done(Head::Basic {
            resets,
            stream,
            filter,
            data_len,
            header_len: at,
            compressed: None,
        }));
    }
    // The compact length: 7 bits, 7 bits, 8 bits.
    let mut len = 0usize;
    for (i, shift) in [0u32, 7, 14].into_iter().enumerate() {
        let Some(&byte) = b.get(at + i) else {
            return Ok(Parsed::Need(at + i + 1));
        };
        if i == 2 {
            len |= usize::from(byte) << shift;
            at += 3;
            break;
        }
        len |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            at += i + 1;
            break;
        }
    }
    Ok(Parsed::Done(Head::Basic {
        resets,
        stream,
        filter,
        data_len,
        header_len: at,
        compressed: Some(len),
    }))
}

/// Draws `rect` from its complete filtered `data` (`data_len` bytes).
///
/// # Errors
/// Palette indices past the palette; the rectangle outside the screen.
pub(crate) fn draw(
    rect: Rect,
    px: &PixelReader,
    filter: &Filter,
    data: &[u8],
    fb: &mut Framebuffer,
) -> Result<(), DecodeError> {
    let bounds = |e| DecodeError::bounds("Tight", e);
    fb.check(rect).map_err(bounds)?;
    if data.len() < data_len(rect, px, filter) {
        return Err(DecodeError::invalid(
            "Tight",
            format!(
                "data of rectangle {},{} {}x{} is {} bytes, {} short",
                rect.x,
                rect.y,
                rect.w,
                rect.h,
                data.len(),
                data_len(rect, px, filter) - data.len()
            ),
        ));
    }
    let w = usize::from(rect.w);
    let tp = px.tpixel_bytes();
    match filter {
        Filter::Copy => {
            for dy in 0..rect.h {
                let src = &data[usize::from(dy) * w * tp..];
                for (d, s) in fb.row_mut(rect, dy).iter_mut().zip(src.chunks_exact(tp)) {
                    *d = px.tpixel(s);
                }
            }
        }
        Filter::Palette(p) if p.len() == 2 => {
            let row_bytes = w.div_ceil(8);
            for dy in 0..rect.h {
                let src = &data[usize::from(dy) * row_bytes..];
                for (x, d) in fb.row_mut(rect, dy).iter_mut().enumerate() {
                    *d = p[usize::from((src[x / 8] >> (7 - x % 8)) & 1)];
                }
            }
        }
        Filter::Palette(p) => {
            for dy in 0..rect.h {
                let src = &data[usize::from(dy) * w..];
                for (d, &i) in fb.row_mut(rect, dy).iter_mut().zip(src) {
                    *d = *p.get(usize::from(i)).ok_or_else(|| {
                        DecodeError::invalid(
                            "Tight",
                            format!("palette index {i} past a palette of {}", p.len()),
                        )
                    })?;
                }
            }
        }
        Filter::Gradient => gradient(rect, px, data, fb),
    }
    Ok(())
}

/// Undoes the gradient filter: each component is its difference plus the prediction
/// left + above − above-left (clamped to the component's range), modulo its range.
fn gradient(rect: Rect, px: &PixelReader, data: &[u8], fb: &mut Framebuffer) {
    let w = usize::from(rect.w);
    let tp = px.tpixel_bytes();
    let max = if px.tpixel_rgb() {
        [255; 3]
    } else {
        px.maxima()
    };
    let mut above = vec![[0u32; 3]; w];
    for dy in 0..rect.h {
        let src = &data[usize::from(dy) * w * tp..];
        let row = fb.row_mut(rect, dy);
        let mut left = [0u32; 3];
        let mut above_left = [0u32; 3];
        for (x, (d, s)) in row.iter_mut().zip(src.chunks_exact(tp)).enumerate() {
            let diff = if px.tpixel_rgb() {
                [u32::from(s[0]), u32::from(s[1]), u32::from(s[2])]
            } else {
                px.components(px.value(s))
            };
            let up = above[x];
            let mut v = [0u32; 3];
            for c in 0..3 {
                let predicted = (i64::from(left[c]) + i64::from(up[c]) - i64::from(above_left[c]))
                    .clamp(0, i64::from(max[c])) as u32;
                v[c] = (predicted + diff[c]) % (max[c] + 1);
            }
            above_left = up;
            above[x] = v;
            left = v;
            *d = if px.tpixel_rgb() {
                v[0] << 16 | v[1] << 8 | v[2]
            } else {
                px.rgb_of_components(v)
            };
        }
    }
}
