//! Hextile (encoding 5): the rectangle in 16×16 tiles, each a background with
//! subrectangles of one foreground colour or of their own colours, or raw pixels when
//! that is smaller. Colours are remembered between tiles only where every viewer agrees
//! on them: after a raw tile both colours are sent again, after a tile of coloured
//! subrectangles the foreground is (vncdotool, for one, takes the last subrectangle's
//! colour as the next foreground).

use super::format::Translator;
use super::rect::{header, ENC_HEXTILE};
use super::Scratch;
use crate::console::fb::{Framebuffer, Rect};

const RAW: u8 = 1;
const BACKGROUND: u8 = 2;
const FOREGROUND: u8 = 4;
const ANY_SUBRECTS: u8 = 8;
const COLOURED: u8 = 16;

/// Appends the Hextile rectangle `r` (checked against `fb`).
pub(crate) fn encode(
    px: &Translator,
    s: &mut Scratch,
    fb: &Framebuffer,
    r: Rect,
    out: &mut Vec<u8>,
) {
    header(r, ENC_HEXTILE, out);
    let bpp = px.bytes();
    let (mut bg, mut fg): (Option<u32>, Option<u32>) = (None, None);
    for ty in (0..r.h).step_by(16) {
        for tx in (0..r.w).step_by(16) {
            let t = Rect::new(r.x + tx, r.y + ty, (r.w - tx).min(16), (r.h - ty).min(16));
            s.vals.clear();
            for dy in 0..t.h {
                px.values(fb.row(t, dy), &mut s.vals);
            }
            // A tile has at most 256 pixels: the palette never overflows.
            let _ = s.palette.analyse(&s.vals, 256, &mut s.idx);
            let colours = s.palette.colours();
            if let [only] = colours {
                if bg == Some(*only) {
                    out.push(0);
                } else {
                    out.push(BACKGROUND);
                    px.write_value(*only, out);
                    bg = Some(*only);
                }
                continue;
            }
            let counts = s.palette.counts();
            let bg_index = counts
                .iter()
                .enumerate()
                .max_by_key(|&(_, &n)| n)
                .map_or(0, |(i, _)| i);
            let bg_colour = colours.get(bg_index).copied().unwrap_or(0);
            let mono = colours.len() == 2;
            let fg_colour = if mono {
                colours.get(1 - bg_index).copied().unwrap_or(0)
            } else {
                0
            };
            let start = out.len();
            let raw_cost = 1 + t.area() * bpp;
            let mut mask = ANY_SUBRECTS | if mono { 0 } else { COLOURED };
            out.push(0);
            if bg != Some(bg_colour) {
                mask |= BACKGROUND;
                px.write_value(bg_colour, out);
            }
            if mono && fg != Some(fg_colour) {
                mask |= FOREGROUND;
                px.write_value(fg_colour, out);
            }
            let count_at = out.len();
            out.push(0);
            let per = if mono { 2 } else { 2 + bpp };
            let (tw, th) = (usize::from(t.w), usize::from(t.h));
            let mut count = 0usize;
            let fits = subrects(&s.idx, tw, th, bg_index as u8, |x, y, w, h, c| {
                count += 1;
                if count > 255 || out.len() - start + per > raw_cost {
                    return false;
                }
                if !mono {
                    px.write_value(colours.get(usize::from(c)).copied().unwrap_or(0), out);
                }
                out.push(((x as u8) << 4) | y as u8);
                out.push((((w - 1) as u8) << 4) | (h - 1) as u8);
                true
            });
            if fits {
                out[start] = mask;
                out[count_at] = count as u8;
                bg = Some(bg_colour);
                fg = if mono { Some(fg_colour) } else { None };
            } else {
                out.truncate(start);
                out.push(RAW);
                px.write_values(&s.vals, out);
                bg = None;
                fg = None;
            }
        }
    }
}

/// Covers the pixels of `idx` (a `tw` × `th` tile, row-major palette indices) that are
/// not `bg` with rectangles of one index each, greedily: from each uncovered pixel, the
/// larger of the widest-then-tallest and the tallest-then-widest run. `emit(x, y, w, h,
/// index)` returns false to stop; then so does this (false).
fn subrects(
    idx: &[u8],
    tw: usize,
    th: usize,
    bg: u8,
    mut emit: impl FnMut(usize, usize, usize, usize, u8) -> bool,
) -> bool {
    let mut covered = [0u16; 16];
    let at = |x: usize, y: usize| idx.get(y * tw + x).copied().unwrap_or(bg);
    for y in 0..th.min(16) {
        for x in 0..tw.min(16) {
            let c = at(x, y);
            if c == bg || covered[y] & (1 << x) != 0 {
                continue;
            }
            let mut w = 1;
            while x + w < tw && at(x + w, y) == c {
                w += 1;
            }
            let mut h = 1;
            while y + h < th && (x..x + w).all(|xx| at(xx, y + h) == c) {
                h += 1;
            }
            let mut h2 = 1;
            while y + h2 < th && at(x, y + h2) == c {
                h2 += 1;
            }
            let mut w2 = 1;
            while x + w2 < tw && (y..y + h2).all(|yy| at(x + w2, yy) == c) {
                w2 += 1;
            }
            if w2 * h2 > w * h {
                (w, h) = (w2, h2);
            }
            let bits = (((1u32 << w) - 1) << x) as u16;
            for row in covered.iter_mut().skip(y).take(h) {
                *row |= bits;
            }
            if !emit(x, y, w, h, c) {
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subrects_cover_every_foreground_pixel_once_enough() {
        // A 4×3 tile: background 0, an L of 1s and a lone 2.
        let idx = [1, 1, 0, 2, 1, 0, 0, 0, 1, 0, 0, 0];
        let mut paint = [0u8; 12];
        let mut n = 0;
        assert!(subrects(&idx, 4, 3, 0, |x, y, w, h, c| {
            n += 1;
            for yy in y..y + h {
                for xx in x..x + w {
                    paint[yy * 4 + xx] = c;
                }
            }
            true
        }));
        assert_eq!(paint, idx);
        assert_eq!(n, 3);
        assert!(!subrects(&idx, 4, 3, 0, |_, _, _, _, _| false));
    }
}
