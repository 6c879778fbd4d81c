//! ZRLE (encoding 16): the rectangle in 64×64 tiles of compact pixels (CPIXEL), each tile
//! solid, packed palette, plain RLE, palette RLE or raw, whichever its colour analysis
//! says is smallest, all through the viewer's one zlib stream (which lives as long as
//! the connection: every rectangle ends with a sync flush). Tiles are compressed as they
//! are made, so no buffer grows with the rectangle.

use super::deflate::{DeflateError, Deflater};
use super::format::Translator;
use super::palette::Analysis;
use super::rect::{header, ENC_ZRLE};
use super::Scratch;
use crate::console::fb::{Framebuffer, Rect};

const TILE: u16 = 64;
/// Uncompressed tile bytes gathered before they are handed to zlib.
const BATCH: usize = 32 * 1024;

/// Appends the ZRLE rectangle `r` (checked against `fb`); `cp` writes CPIXELs.
///
/// # Errors
/// [`DeflateError`] (the stream is then unusable).
pub(crate) fn encode(
    cp: &Translator,
    s: &mut Scratch,
    z: &mut Deflater,
    fb: &Framebuffer,
    r: Rect,
    out: &mut Vec<u8>,
) -> Result<(), DeflateError> {
    header(r, ENC_ZRLE, out);
    let len_at = out.len();
    out.extend_from_slice(&[0; 4]);
    tiles(cp, s, fb, r, |bytes| {
        z.push(bytes, out)?;
        bytes.clear();
        Ok(())
    })?;
    z.flush(&s.bytes, out)?;
    s.bytes.clear();
    patch_length(len_at, out)
}

/// Appends the uncompressed ZRLE data of `r` (its tiles) to `plain`: what
/// [`from_plain`] compresses. It depends only on the pixels and the CPIXEL format.
pub(crate) fn plain(
    cp: &Translator,
    s: &mut Scratch,
    fb: &Framebuffer,
    r: Rect,
    plain: &mut Vec<u8>,
) {
    let gathered: Result<(), DeflateError> = tiles(cp, s, fb, r, |bytes| {
        plain.extend_from_slice(bytes);
        bytes.clear();
        Ok(())
    });
    debug_assert!(gathered.is_ok(), "gathering cannot fail");
    plain.extend_from_slice(&s.bytes);
    s.bytes.clear();
}

/// Appends the ZRLE rectangle `r` made from `plain` (from [`plain`]) through this
/// viewer's stream.
///
/// # Errors
/// [`DeflateError`] (the stream is then unusable).
pub(crate) fn from_plain(
    z: &mut Deflater,
    r: Rect,
    plain: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), DeflateError> {
    header(r, ENC_ZRLE, out);
    let len_at = out.len();
    out.extend_from_slice(&[0; 4]);
    z.flush(plain, out)?;
    patch_length(len_at, out)
}

/// Writes the length of the zlib data that follows the 4 bytes at `len_at`.
fn patch_length(len_at: usize, out: &mut [u8]) -> Result<(), DeflateError> {
    let len = u32::try_from(out.len() - len_at - 4)
        .map_err(|_| DeflateError::new("rectangle over 4 GiB compressed"))?;
    out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Makes the tiles of `r` into `s.bytes`, calling `batch(&mut s.bytes)` whenever it
/// holds [`BATCH`] bytes or more (the caller drains it).
fn tiles(
    cp: &Translator,
    s: &mut Scratch,
    fb: &Framebuffer,
    r: Rect,
    mut batch: impl FnMut(&mut Vec<u8>) -> Result<(), DeflateError>,
) -> Result<(), DeflateError> {
    s.bytes.clear();
    for ty in (0..r.h).step_by(usize::from(TILE)) {
        for tx in (0..r.w).step_by(usize::from(TILE)) {
            let t = Rect::new(
                r.x + tx,
                r.y + ty,
                (r.w - tx).min(TILE),
                (r.h - ty).min(TILE),
            );
            s.vals.clear();
            for dy in 0..t.h {
                cp.values(fb.row(t, dy), &mut s.vals);
            }
            tile(cp, s, usize::from(t.w));
            if s.bytes.len() >= BATCH {
                batch(&mut s.bytes)?;
            }
        }
    }
    Ok(())
}

/// Which subencoding a tile gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Choice {
    Raw,
    Solid,
    Packed,
    PlainRle,
    PaletteRle,
}

/// Picks the smallest subencoding from the analysis (`cpb` bytes per CPIXEL, `n`
/// pixels, rows `w` wide).
fn choose(a: Analysis, cpb: usize, n: usize, w: usize) -> Choice {
    let h = n.checked_div(w).unwrap_or(0);
    let raw = n * cpb;
    let plain = (cpb + 1) * a.runs;
    let mut best = (raw, Choice::Raw);
    let mut consider = |cost: usize, c: Choice| {
        if cost < best.0 {
            best = (cost, c);
        }
    };
    consider(plain, Choice::PlainRle);
    match a.colours {
        Some(1) => return Choice::Solid,
        Some(k) if k >= 2 => {
            let pal = k * cpb;
            consider(pal + 2 * a.runs - a.singles, Choice::PaletteRle);
            if k <= 16 {
                let bits = packed_bits(k);
                consider(pal + (w * bits).div_ceil(8) * h, Choice::Packed);
            }
        }
        _ => {}
    }
    best.1
}

/// Bits per index in a packed-palette tile of `k` colours.
fn packed_bits(k: usize) -> usize {
    match k {
        0..=2 => 1,
        3..=4 => 2,
        _ => 4,
    }
}

/// Appends one tile (its wire values in `s.vals`, rows `w` wide) to `s.bytes`.
fn tile(cp: &Translator, s: &mut Scratch, w: usize) {
    let Scratch {
        vals,
        idx,
        palette,
        bytes,
        ..
    } = s;
    let a = palette.analyse(vals, 127, idx);
    let out = bytes;
    match choose(a, cp.bytes(), vals.len(), w) {
        Choice::Solid => {
            out.push(1);
            cp.write_value(vals.first().copied().unwrap_or(0), out);
        }
        Choice::Raw => {
            out.push(0);
            cp.write_values(vals, out);
        }
        Choice::Packed => {
            let colours = palette.colours();
            out.push(colours.len() as u8);
            cp.write_values(colours, out);
            let bits = packed_bits(colours.len());
            for row in idx.chunks(w.max(1)) {
                let (mut acc, mut filled) = (0u8, 0usize);
                for &i in row {
                    acc = (acc << bits) | i;
                    filled += bits;
                    if filled == 8 {
                        out.push(acc);
                        (acc, filled) = (0, 0);
                    }
                }
                if filled > 0 {
                    out.push(acc << (8 - filled));
                }
            }
        }
        Choice::PlainRle => {
            out.push(128);
            runs(vals.as_slice(), |v, len| {
                cp.write_value(v, out);
                run_length(len, out);
            });
        }
        Choice::PaletteRle => {
            let colours = palette.colours();
            out.push(128 + colours.len() as u8);
            cp.write_values(colours, out);
            runs(idx.as_slice(), |i, len| {
                if len == 1 {
                    out.push(i);
                } else {
                    out.push(i | 128);
                    run_length(len, out);
                }
            });
        }
    }
}

/// Calls `f(value, length)` for each run of equal values.
fn runs<T: Copy + PartialEq>(vals: &[T], mut f: impl FnMut(T, usize)) {
    let Some(&first) = vals.first() else {
        return;
    };
    let (mut prev, mut len) = (first, 0usize);
    for &v in vals {
        if v != prev {
            f(prev, len);
            (prev, len) = (v, 0);
        }
        len += 1;
    }
    f(prev, len);
}

/// A run length (≥ 1) as ZRLE writes it: `len - 1` in 255s and a final byte below 255.
fn run_length(len: usize, out: &mut Vec<u8>) {
    let mut rest = len.saturating_sub(1);
    while rest >= 255 {
        out.push(255);
        rest -= 255;
    }
    out.push(rest as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_lengths() {
        let enc = |n| {
            let mut v = Vec::new();
            run_length(n, &mut v);
            v
        };
        assert_eq!(enc(1), [0]);
        assert_eq!(enc(255), [254]);
        assert_eq!(enc(256), [255, 0]);
        assert_eq!(
            enc(4096),
            [255; 16].iter().copied().chain([15]).collect::<Vec<_>>()
        );
    }

    #[test]
    fn choices() {
        let a = |colours, runs, singles| Analysis {
            colours,
            runs,
            singles,
        };
        assert_eq!(choose(a(Some(1), 1, 0), 3, 4096, 64), Choice::Solid);
        assert_eq!(choose(a(Some(2), 2000, 1000), 3, 4096, 64), Choice::Packed);
        assert_eq!(choose(a(Some(20), 40, 0), 3, 4096, 64), Choice::PaletteRle);
        assert_eq!(choose(a(None, 50, 0), 3, 4096, 64), Choice::PlainRle);
        assert_eq!(choose(a(None, 4096, 4096), 3, 4096, 64), Choice::Raw);
    }
}
