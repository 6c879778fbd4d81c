//! One viewer's damage: the parts of the screen that changed since its last update, as a
//! short list of rectangles. A viewer that falls behind gets its damage coalesced (never
//! a queue of updates): past [`MAX_RECTS`] rectangles, the list becomes its bounding box,
//! so what a slow viewer costs is bounded whatever the console sends.

use crate::console::fb::Rect;

/// Rectangles kept before the list collapses into one bounding box.
pub(crate) const MAX_RECTS: usize = 32;

/// A set of changed rectangles, possibly overlapping.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Damage {
    rects: Vec<Rect>,
}

impl Damage {
    /// Whether nothing changed.
    pub(crate) fn is_empty(&self) -> bool {
        self.rects.is_empty()
    }

    /// Adds `r`: dropped when empty or inside a rectangle already held; absorbs the ones
    /// inside it; collapses the list into its bounding box past [`MAX_RECTS`].
    pub(crate) fn add(&mut self, r: Rect) {
        if r.is_empty() || self.rects.iter().any(|h| contains(*h, r)) {
            return;
        }
        self.rects.retain(|h| !contains(r, *h));
        self.rects.push(r);
        if self.rects.len() > MAX_RECTS {
            let b = self.bounds();
            self.rects.clear();
            self.rects.push(b);
        }
    }

    /// The whole of `other`.
    pub(crate) fn add_all(&mut self, other: &Damage) {
        for r in &other.rects {
            self.add(*r);
        }
    }

    /// The rectangles, each clipped to a `width` × `height` screen (the screen may have
    /// shrunk since they were added); empty ones left out.
    pub(crate) fn clipped(&self, width: u16, height: u16) -> impl Iterator<Item = Rect> + '_ {
        self.rects
            .iter()
            .filter_map(move |r| clip(*r, width, height))
    }

    /// Takes everything, leaving it empty.
    pub(crate) fn take(&mut self) -> Damage {
        std::mem::take(self)
    }

    /// The bounding box of every rectangle (empty when there is none).
    pub(crate) fn bounds(&self) -> Rect {
        let mut it = self.rects.iter();
        let Some(first) = it.next() else {
            return Rect::default();
        };
        let (mut x0, mut y0) = (u32::from(first.x), u32::from(first.y));
        let (mut x1, mut y1) = (x0 + u32::from(first.w), y0 + u32::from(first.h));
        for r in it {
            x0 = x0.min(u32::from(r.x));
            y0 = y0.min(u32::from(r.y));
            x1 = x1.max(u32::from(r.x) + u32::from(r.w));
            y1 = y1.max(u32::from(r.y) + u32::from(r.h));
        }
        let side = |a: u32, b: u32| u16::try_from(b - a).unwrap_or(u16::MAX);
        Rect::new(x0 as u16, y0 as u16, side(x0, x1), side(y0, y1))
    }
}

/// Whether `outer` holds all of `inner`.
fn contains(outer: Rect, inner: Rect) -> bool {
    let end = |p: u16, len: u16| u32::from(p) + u32::from(len);
    outer.x <= inner.x
        && outer.y <= inner.y
        && end(outer.x, outer.w) >= end(inner.x, inner.w)
        && end(outer.y, outer.h) >= end(inner.y, inner.h)
}

/// `r` clipped to a `width` × `height` screen, `None` when nothing is left.
pub(crate) fn clip(r: Rect, width: u16, height: u16) -> Option<Rect> {
    if r.x >= width || r.y >= height {
        return None;
    }
    let w = r.w.min(width - r.x);
    let h = r.h.min(height - r.y);
    let c = Rect::new(r.x, r.y, w, h);
    (!c.is_empty()).then_some(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn contained_rectangles_are_absorbed() {
        let mut d = Damage::default();
        d.add(Rect::new(10, 10, 5, 5));
        d.add(Rect::new(0, 0, 100, 100));
        d.add(Rect::new(20, 20, 5, 5));
        assert_eq!(
            d.clipped(640, 480).collect::<Vec<_>>(),
            [Rect::new(0, 0, 100, 100)]
        );
        d.add(Rect::new(0, 0, 0, 9));
        assert_eq!(d.clipped(640, 480).count(), 1);
    }

    #[test]
    fn a_slow_viewer_gets_a_bounding_box() {
        let mut d = Damage::default();
        for i in 0..=MAX_RECTS as u16 {
            d.add(Rect::new(i * 10, i, 2, 2));
        }
        let got: Vec<_> = d.clipped(u16::MAX, u16::MAX).collect();
        assert_eq!(
            got,
            [Rect::new(
                0,
                0,
                MAX_RECTS as u16 * 10 + 2,
                MAX_RECTS as u16 + 2
            )]
        );
    }

    #[test]
    fn clipping_to_a_smaller_screen() {
        let mut d = Damage::default();
        d.add(Rect::new(600, 400, 100, 100));
        d.add(Rect::new(700, 0, 10, 10));
        assert_eq!(
            d.clipped(640, 480).collect::<Vec<_>>(),
            [Rect::new(600, 400, 40, 80)]
        );
        assert!(d.take().clipped(0, 0).next().is_none());
        assert!(d.is_empty());
    }

    proptest! {
        /// Whatever is added, every added pixel stays covered and the list stays short.
        #[test]
        fn covers_everything_added(rects in proptest::collection::vec((0u16..2000, 0u16..2000, 0u16..300, 0u16..300), 0..100)) {
            let mut d = Damage::default();
            for &(x, y, w, h) in &rects {
                d.add(Rect::new(x, y, w, h));
            }
            prop_assert!(d.rects.len() <= MAX_RECTS);
            for &(x, y, w, h) in &rects {
                let r = Rect::new(x, y, w, h);
                if !r.is_empty() {
                    let covered = d.rects.iter().any(|h| contains(*h, r))
                        || [(x, y), (x + w - 1, y + h - 1)].iter().all(|&(px, py)| {
                            d.rects.iter().any(|h| contains(*h, Rect::new(px, py, 1, 1)))
                        });
                    prop_assert!(covered, "{r:?} lost in {:?}", d.rects);
                }
            }
        }
    }
}

/// Which pixels have been painted since a console connection began: the screen is the
/// console's only once every pixel was (a console may send its first full screen in
/// several updates). One bit a pixel, dropped once complete.
#[derive(Debug)]
pub(crate) struct Coverage {
    w: usize,
    h: usize,
    bits: Vec<u64>,
    set: usize,
}

impl Coverage {
    /// Nothing painted on a `w` × `h` screen.
    pub(crate) fn new(w: u16, h: u16) -> Coverage {
        let (w, h) = (usize::from(w), usize::from(h));
        Coverage {
            w,
            h,
            bits: vec![0; (w * h).div_ceil(64)],
            set: 0,
        }
    }

    /// Marks `r` (clipped to the screen) painted.
    pub(crate) fn paint(&mut self, r: Rect) {
        let Some(r) = clip(r, self.w as u16, self.h as u16) else {
            return;
        };
        for y in usize::from(r.y)..usize::from(r.y) + usize::from(r.h) {
            let row = y * self.w;
            for x in usize::from(r.x)..usize::from(r.x) + usize::from(r.w) {
                let i = row + x;
                let (word, bit) = (i / 64, 1u64 << (i % 64));
                if self.bits[word] & bit == 0 {
                    self.bits[word] |= bit;
                    self.set += 1;
                }
            }
        }
    }

    /// Whether every pixel was painted.
    pub(crate) fn complete(&self) -> bool {
        self.set >= self.w * self.h
    }
}

#[cfg(test)]
mod coverage_tests {
    use super::*;

    #[test]
    fn complete_once_every_pixel_is_painted_in_any_pieces() {
        let mut c = Coverage::new(100, 50);
        c.paint(Rect::new(0, 0, 100, 20));
        c.paint(Rect::new(0, 10, 60, 40));
        assert!(!c.complete());
        c.paint(Rect::new(60, 20, 100, 100));
        assert!(c.complete());
        let mut empty = Coverage::new(0, 0);
        empty.paint(Rect::new(0, 0, 5, 5));
        assert!(empty.complete());
    }
}
