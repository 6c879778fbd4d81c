//! Hextile (encoding 5): 16×16 tiles, each raw or a background with subrectangles. This
//! file knows a tile's length from its first bytes and draws a complete tile; the
//! stream decoder gathers the bytes and walks the tiles.

use super::acc::Parsed;
use super::error::DecodeError;
use super::pixel::PixelReader;
use crate::console::fb::{Framebuffer, Rect};

const RAW: u8 = 1;
const BACKGROUND: u8 = 2;
const FOREGROUND: u8 = 4;
const ANY_SUBRECTS: u8 = 8;
const COLOURED: u8 = 16;

/// Where the walk through a Hextile rectangle is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tiles {
    /// The whole rectangle.
    pub(crate) rect: Rect,
    /// The next tile, counted left to right, top to bottom.
    next: u32,
    /// The background carried from the previous tile (black until one is given).
    background: u32,
    /// The foreground carried from the previous tile.
    foreground: u32,
}

impl Tiles {
    /// The start of a rectangle.
    pub(crate) fn new(rect: Rect) -> Tiles {
        Tiles {
            rect,
            next: 0,
            background: 0,
            foreground: 0,
        }
    }

    /// The next tile's rectangle, or `None` when every tile is drawn.
    pub(crate) fn current(&self) -> Option<Rect> {
        let across = u32::from(self.rect.w).div_ceil(16);
        let down = u32::from(self.rect.h).div_ceil(16);
        if self.next >= across * down {
            return None;
        }
        let (tx, ty) = (
            (self.next % across) as u16 * 16,
            (self.next / across) as u16 * 16,
        );
        Some(Rect::new(
            self.rect.x + tx,
            self.rect.y + ty,
            (self.rect.w - tx).min(16),
            (self.rect.h - ty).min(16),
        ))
    }

    /// How many bytes the tile `tile` takes, judged from the bytes `b` held so far.
    pub(crate) fn tile_len(tile: Rect, px: &PixelReader, b: &[u8]) -> Parsed<usize> {
        let Some(&sub) = b.first() else {
            return Parsed::Need(1);
        };
        let bpp = px.bytes();
        if sub & RAW != 0 {
            return super::acc::exactly(b, 1 + tile.area() * bpp);
        }
        let mut n = 1;
        if sub & BACKGROUND != 0 {
            n += bpp;
        }
        if sub & FOREGROUND != 0 {
            n += bpp;
        }
        if sub & ANY_SUBRECTS != 0 {
            n += 1;
            let Some(&count) = b.get(n - 1) else {
                return Parsed::Need(n);
            };
            let each = if sub & COLOURED != 0 { bpp + 2 } else { 2 };
            n += usize::from(count) * each;
        }
        super::acc::exactly(b, n)
    }

    /// Draws the tile whose complete bytes are `b` and moves to the next tile.
    ///
    /// # Errors
    /// A subrectangle outside its tile, or a tile outside the screen.
    pub(crate) fn draw(
        &mut self,
        tile: Rect,
        px: &PixelReader,
        b: &[u8],
        fb: &mut Framebuffer,
    ) -> Result<(), DecodeError> {
        let bounds = |e| DecodeError::bounds("Hextile", e);
        let bpp = px.bytes();
        let sub = b[0];
        let mut at = 1;
        if sub & RAW != 0 {
            fb.check(tile).map_err(bounds)?;
            let w = usize::from(tile.w) * bpp;
            for dy in 0..tile.h {
                let from = at + usize::from(dy) * w;
                px.row(&b[from..from + w], fb.row_mut(tile, dy));
            }
            self.next += 1;
            return Ok(());
        }
        if sub & BACKGROUND != 0 {
            self.background = px.pixel(&b[at..]);
            at += bpp;
        }
        if sub & FOREGROUND != 0 {
            self.foreground = px.pixel(&b[at..]);
            at += bpp;
        }
        fb.fill(tile, self.background).map_err(bounds)?;
        if sub & ANY_SUBRECTS != 0 {
            let count = b[at];
            at += 1;
            for _ in 0..count {
                let colour = if sub & COLOURED != 0 {
                    at += bpp;
                    px.pixel(&b[at - bpp..])
                } else {
                    self.foreground
                };
                let (xy, wh) = (b[at], b[at + 1]);
                at += 2;
                let (sx, sy) = (u16::from(xy >> 4), u16::from(xy & 15));
                let (sw, sh) = (u16::from(wh >> 4) + 1, u16::from(wh & 15) + 1);
                if sx + sw > tile.w || sy + sh > tile.h {
                    return Err(DecodeError::invalid(
                        "Hextile",
                        format!(
                            "subrectangle {sx},{sy} {sw}x{sh} is outside its {}x{} tile at {},{}",
                            tile.w, tile.h, tile.x, tile.y
                        ),
                    ));
                }
                fb.fill(Rect::new(tile.x + sx, tile.y + sy, sw, sh), colour)
                    .map_err(bounds)?;
            }
        }
        self.next += 1;
        Ok(())
    }
}
