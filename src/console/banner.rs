//! The status banner console mode draws over the screen ("reconnecting: next URL in 14 s"):
//! text in the 6×13 font of [`super::font`], and the full-width bar that holds one line of
//! it. Everything is clipped to the framebuffer: no size, position or text panics.

use std::borrow::Cow;

use super::fb::{Framebuffer, Rect};
use super::font::GLYPHS;

/// Width of a character cell in pixels.
pub const CELL_W: u16 = 6;
/// Height of a character cell in pixels (ascent 11, descent 2).
pub const CELL_H: u16 = 13;
/// The banner's height: one line of text and 2 pixels above and below it.
pub const BANNER_H: u16 = CELL_H + 2 * PAD_Y;
/// The banner's background (dark grey).
pub const BANNER_BG: u32 = 0x0020_2020;
/// The banner's text colour (amber).
pub const BANNER_FG: u32 = 0x00FF_B000;

/// Space left and right of the banner's text.
const PAD_X: u16 = 4;
/// Space above and below the banner's text.
const PAD_Y: u16 = 2;
/// What replaces the end of a banner too long for the screen.
const ELLIPSIS: &str = "...";

/// The glyph of `ch`: printable ASCII as itself, anything else as `?`.
fn glyph(ch: char) -> &'static [u8; CELL_H as usize] {
    let index = match u8::try_from(ch) {
        Ok(b @ 32..=126) => b - 32,
        _ => b'?' - 32,
    };
    &GLYPHS[usize::from(index)]
}

/// Draws `text` in `fg` on `bg`, one [`CELL_W`] × [`CELL_H`] cell per `char` (any outside
/// printable ASCII drawn as `?`), its top-left at `(x, y)`. Whatever falls off the screen
/// is clipped; the work is bounded by the screen, not by the text. Returns the rectangle
/// written (every pixel of it, as `fg` or `bg`): the damage, empty if nothing was.
pub fn draw_text(fb: &mut Framebuffer, x: u16, y: u16, text: &str, fg: u32, bg: u32) -> Rect {
    let (width, height) = (fb.width(), fb.height());
    if x >= width || y >= height {
        return Rect::default();
    }
    let max_cells = (width - x).div_ceil(CELL_W);
    let cells = text.chars().take(usize::from(max_cells)).count();
    // cells <= max_cells, so cells * CELL_W < width - x + CELL_W: it fits u16 and the sum
    // stays below u16::MAX (width <= MAX_SIDE).
    let cells_w = u16::try_from(cells).unwrap_or(max_cells) * CELL_W;
    let right = x.saturating_add(cells_w).min(width);
    let bottom = y.saturating_add(CELL_H).min(height);
    let touched = Rect::new(x, y, right - x, bottom - y);
    if touched.is_empty() {
        return Rect::default();
    }
    let mut left = x;
    for ch in text.chars().take(cells) {
        let rows = glyph(ch);
        // The part of this cell on screen: `touched` rows, columns up to `right`.
        let cell = Rect::new(left, y, CELL_W.min(right - left), touched.h);
        for (dy, &bits) in (0..cell.h).zip(rows.iter()) {
            for (col, px) in fb.row_mut(cell, dy).iter_mut().enumerate() {
                *px = if bits & (0x80 >> col) != 0 { fg } else { bg };
            }
        }
        left += cell.w;
    }
    touched
}

/// Draws the banner: a bar of [`BANNER_H`] across the top of the screen in [`BANNER_BG`],
/// with `text` in [`BANNER_FG`] at `(4, 2)`; text wider than the screen (less 4 pixels a
/// side) is cut and ends in `...`. Returns the bar's rectangle, clipped to the screen
/// (empty on a screen with no pixel).
pub fn draw_banner(fb: &mut Framebuffer, text: &str) -> Rect {
    let bar = Rect::new(0, 0, fb.width(), BANNER_H.min(fb.height()));
    if bar.is_empty() || fb.fill(bar, BANNER_BG).is_err() {
        // The bar is clipped to the screen, so fill cannot refuse it.
        return Rect::default();
    }
    let cells = fb.width().saturating_sub(2 * PAD_X) / CELL_W;
    draw_text(
        fb,
        PAD_X,
        PAD_Y,
        &fit(text, usize::from(cells)),
        BANNER_FG,
        BANNER_BG,
    );
    bar
}

/// `text` if it has at most `cells` chars; else its start and [`ELLIPSIS`] in `cells`
/// chars (trailing spaces of the start dropped), or as much of the ellipsis as fits.
fn fit(text: &str, cells: usize) -> Cow<'_, str> {
    if text.chars().nth(cells).is_none() {
        return Cow::Borrowed(text);
    }
    let Some(keep) = cells.checked_sub(ELLIPSIS.len()) else {
        return Cow::Borrowed(&ELLIPSIS[..cells]);
    };
    let end = text
        .char_indices()
        .nth(keep)
        .map_or(text.len(), |(at, _)| at);
    Cow::Owned(format!("{}{ELLIPSIS}", text[..end].trim_end()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A colour neither call draws, to see what was left alone.
    const UNTOUCHED: u32 = 0x00AB_CDEF;
    const FG: u32 = 1;
    const BG: u32 = 2;

    fn screen(width: u16, height: u16) -> Framebuffer {
        let mut fb = Framebuffer::new(width, height);
        fb.fill(fb.bounds(), UNTOUCHED).expect("whole screen");
        fb
    }

    /// A glyph as art: `#` ink, `.` none, 6 columns a row.
    fn art(ch: char) -> Vec<String> {
        glyph(ch)
            .iter()
            .map(|&row| {
                (0..CELL_W)
                    .map(|col| if row & (0x80 >> col) != 0 { '#' } else { '.' })
                    .collect()
            })
            .collect()
    }

    /// What `text` drawn at `(x, y)` should leave at `(px, py)`, by the table.
    fn expected(text: &str, x: u16, y: u16, px: u16, py: u16) -> u32 {
        let (dx, dy) = (usize::from(px - x), usize::from(py - y));
        let ch = text
            .chars()
            .nth(dx / usize::from(CELL_W))
            .expect("inside the text");
        if glyph(ch)[dy] & (0x80 >> (dx % usize::from(CELL_W))) != 0 {
            FG
        } else {
            BG
        }
    }

    /// The table holds the misc-fixed shapes, aligned on a common baseline (row 10).
    #[test]
    fn glyphs_have_their_known_shapes() {
        let a = [
            "......", "......", "..#...", ".#.#..", "#...#.", "#...#.", "#...#.", "#####.",
            "#...#.", "#...#.", "#...#.", "......", "......",
        ];
        assert_eq!(art('A'), a);
        assert_eq!(glyph(' '), &[0; 13]);
        assert_ne!(glyph('l'), glyph('1'));
        assert_ne!(glyph('O'), glyph('0'));
        assert_ne!(glyph('I'), glyph('l'));
        for ch in (33u8..=126).map(char::from) {
            let rows = glyph(ch);
            assert!(rows.iter().any(|&r| r != 0), "{ch:?} has no ink");
            assert!(
                rows.iter().all(|&r| r & 0x03 == 0),
                "{ch:?} is wider than 6"
            );
        }
        // Descenders below the baseline, capitals not.
        assert!(glyph('g')[11..].iter().any(|&r| r != 0));
        assert!(glyph('A')[11..].iter().all(|&r| r == 0));
        assert_ne!(glyph('_')[11], 0);
    }

    /// Non-ASCII and control characters take one cell each, drawn as `?`.
    #[test]
    fn other_characters_draw_as_question_marks() {
        assert_eq!(glyph('é'), glyph('?'));
        assert_eq!(glyph('\n'), glyph('?'));
        assert_eq!(glyph('\u{7f}'), glyph('?'));
        let mut fb = screen(40, 20);
        assert_eq!(
            draw_text(&mut fb, 0, 0, "aé…", FG, BG),
            Rect::new(0, 0, 18, 13)
        );
        let mut want = screen(40, 20);
        draw_text(&mut want, 0, 0, "a??", FG, BG);
        assert_eq!(fb, want);
    }

    /// Each pixel of the text is fg or bg as the glyph says; nothing outside it changes.
    #[test]
    fn draw_text_paints_the_glyph_cells() {
        let mut fb = screen(30, 20);
        let r = draw_text(&mut fb, 1, 2, "I!", FG, BG);
        assert_eq!(r, Rect::new(1, 2, 12, 13));
        // 'I' row 2 is ".###..": its bar starts one column into the cell.
        assert_eq!(fb.get(1, 4), Some(BG));
        assert_eq!(fb.get(2, 4), Some(FG));
        assert_eq!(fb.get(4, 4), Some(FG));
        assert_eq!(fb.get(5, 4), Some(BG));
        // '!' has its stem in column 2, a gap at row 9 and its dot at row 10.
        assert_eq!(fb.get(7 + 2, 2 + 8), Some(FG));
        assert_eq!(fb.get(7 + 2, 2 + 9), Some(BG));
        assert_eq!(fb.get(7 + 2, 2 + 10), Some(FG));
        for py in 0..20 {
            for px in 0..30 {
                let inside = (1..13).contains(&px) && (2..15).contains(&py);
                let want = if inside {
                    expected("I!", 1, 2, px, py)
                } else {
                    UNTOUCHED
                };
                assert_eq!(fb.get(px, py), Some(want), "({px}, {py})");
            }
        }
    }

    /// Text running off the right and bottom edges is cut there, the rest drawn right.
    #[test]
    fn draw_text_clips_at_the_edges() {
        let mut fb = screen(16, 10);
        let r = draw_text(&mut fb, 7, 4, "AB", FG, BG);
        assert_eq!(r, Rect::new(7, 4, 9, 6));
        for py in 4..10 {
            for px in 7..16 {
                assert_eq!(fb.get(px, py), Some(expected("AB", 7, 4, px, py)));
            }
        }
        assert_eq!(fb.get(6, 4), Some(UNTOUCHED));
        assert_eq!(fb.get(7, 3), Some(UNTOUCHED));
    }

    /// Nothing is drawn, and nothing panics, for text off screen, empty text, tiny screens.
    #[test]
    fn draw_text_off_screen_draws_nothing() {
        let mut fb = screen(8, 8);
        let before = fb.clone();
        for (x, y) in [(8, 0), (0, 8), (u16::MAX, u16::MAX), (u16::MAX, 0)] {
            assert_eq!(draw_text(&mut fb, x, y, "hello", FG, BG), Rect::default());
        }
        assert_eq!(draw_text(&mut fb, 0, 0, "", FG, BG), Rect::default());
        assert_eq!(fb, before);
        let mut empty = Framebuffer::new(0, 0);
        assert_eq!(draw_text(&mut empty, 0, 0, "x", FG, BG), Rect::default());
        let mut one = screen(1, 1);
        assert_eq!(
            draw_text(&mut one, 0, 0, "xyz", FG, BG),
            Rect::new(0, 0, 1, 1)
        );
        assert_eq!(one.get(0, 0), Some(BG));
    }

    /// A long text costs the screen's width, not its own length.
    #[test]
    fn draw_text_stops_at_the_screen_edge() {
        let long = "x".repeat(1 << 20);
        let mut fb = screen(20, 13);
        assert_eq!(
            draw_text(&mut fb, 3, 0, &long, FG, BG),
            Rect::new(3, 0, 17, 13)
        );
    }

    /// The banner is the top bar; short text is drawn whole at (4, 2) in the banner colours.
    #[test]
    fn banner_is_the_top_bar_with_its_text() {
        let mut fb = screen(200, 40);
        let text = "instance is STOPPED";
        assert_eq!(draw_banner(&mut fb, text), Rect::new(0, 0, 200, BANNER_H));
        let mut want = screen(200, 40);
        want.fill(Rect::new(0, 0, 200, BANNER_H), BANNER_BG)
            .expect("bar");
        draw_text(&mut want, 4, 2, text, BANNER_FG, BANNER_BG);
        assert_eq!(fb, want);
        assert_eq!(fb.get(0, BANNER_H - 1), Some(BANNER_BG));
        assert_eq!(fb.get(0, BANNER_H), Some(UNTOUCHED));
    }

    /// Text wider than the screen is cut to end in "..." and keeps 4 pixels off the edge.
    #[test]
    fn banner_truncates_long_text() {
        // (100 - 2 * 4) / 6 = 15 cells.
        let text = "reconnecting: next URL in 14 s";
        assert_eq!(fit(text, 15), "reconnecting...");
        assert_eq!(fit("waiting for it to start", 11), "waiting...");
        assert_eq!(fit(text, 30), text);
        assert_eq!(fit(text, 2), "..");
        assert_eq!(fit(text, 0), "");
        assert_eq!(fit("", 0), "");
        let mut fb = screen(100, 30);
        draw_banner(&mut fb, text);
        let mut want = screen(100, 30);
        want.fill(Rect::new(0, 0, 100, BANNER_H), BANNER_BG)
            .expect("bar");
        draw_text(&mut want, 4, 2, "reconnecting...", BANNER_FG, BANNER_BG);
        assert_eq!(fb, want);
        for py in 0..BANNER_H {
            for px in 96..100 {
                assert_eq!(fb.get(px, py), Some(BANNER_BG));
            }
        }
    }

    /// Screens shorter than the bar or narrower than one cell still get a clipped bar.
    #[test]
    fn banner_on_small_screens() {
        assert_eq!(
            draw_banner(&mut Framebuffer::new(0, 0), "x"),
            Rect::default()
        );
        assert_eq!(
            draw_banner(&mut Framebuffer::new(0, 50), "x"),
            Rect::default()
        );
        assert_eq!(
            draw_banner(&mut Framebuffer::new(50, 0), "x"),
            Rect::default()
        );
        let mut one = screen(1, 1);
        assert_eq!(draw_banner(&mut one, "x"), Rect::new(0, 0, 1, 1));
        assert_eq!(one.get(0, 0), Some(BANNER_BG));
        let mut short = screen(30, 5);
        assert_eq!(draw_banner(&mut short, "hello"), Rect::new(0, 0, 30, 5));
    }

    fn position() -> impl Strategy<Value = u16> {
        prop_oneof![0u16..48, any::<u16>()]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

        /// Any screen, position and text: no panic, the rectangle is on screen and is
        /// exactly what changed, every pixel in it is fg or bg.
        #[test]
        fn draw_text_is_clipped(
            w in 0u16..40, h in 0u16..30, x in position(), y in position(), text in ".{0,12}",
        ) {
            let mut fb = screen(w, h);
            let r = draw_text(&mut fb, x, y, &text, FG, BG);
            prop_assert!(fb.check(r).is_ok());
            let cells = u32::try_from(text.chars().count()).expect("short");
            if r.is_empty() {
                prop_assert_eq!(r, Rect::default());
            } else {
                prop_assert_eq!((r.x, r.y), (x, y));
                let right = (u32::from(x) + cells * u32::from(CELL_W)).min(u32::from(w));
                let bottom = (u32::from(y) + u32::from(CELL_H)).min(u32::from(h));
                prop_assert_eq!(u32::from(r.x + r.w), right);
                prop_assert_eq!(u32::from(r.y + r.h), bottom);
            }
            for py in 0..h {
                for px in 0..w {
                    let inside = px >= r.x && px - r.x < r.w && py >= r.y && py - r.y < r.h;
                    let got = fb.get(px, py).expect("on screen");
                    if inside {
                        prop_assert_eq!(got, expected(&text, x, y, px, py));
                    } else {
                        prop_assert_eq!(got, UNTOUCHED);
                    }
                }
            }
        }

        /// Any screen and text: the banner is the top bar, clipped, and nothing below it
        /// changes.
        #[test]
        fn banner_is_clipped(w in 0u16..120, h in 0u16..40, text in ".{0,40}") {
            let mut fb = screen(w, h);
            let r = draw_banner(&mut fb, &text);
            if w == 0 || h == 0 {
                prop_assert_eq!(r, Rect::default());
            } else {
                prop_assert_eq!(r, Rect::new(0, 0, w, BANNER_H.min(h)));
            }
            for py in 0..h {
                for px in 0..w {
                    let got = fb.get(px, py).expect("on screen");
                    if py < r.h {
                        prop_assert!(got == BANNER_BG || got == BANNER_FG);
                    } else {
                        prop_assert_eq!(got, UNTOUCHED);
                    }
                }
            }
            let shown = fit(&text, usize::from(w.saturating_sub(8) / CELL_W));
            prop_assert!(shown.chars().count() <= usize::from(w.saturating_sub(8) / CELL_W));
        }
    }
}
