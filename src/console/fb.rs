//! The framebuffer: the console's screen as tcvnc holds it, one `u32` per pixel
//! (`0x00RRGGBB`, 8 bits a channel), row-major. Decoders write into it; encoders read
//! rectangles of it and convert them to each viewer's pixel format. Every method checks
//! its rectangle against the screen: a console's bad coordinates are an error, never a
//! panic, and nothing allocates more than the screen's size.

/// The largest screen accepted (RFB sizes are 16-bit; 8192 × 8192 × 4 B = 256 MiB bounds
/// what a hostile console can make tcvnc allocate).
pub const MAX_SIDE: u16 = 8192;

/// A rectangle of the screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Rect {
    /// Left.
    pub x: u16,
    /// Top.
    pub y: u16,
    /// Width.
    pub w: u16,
    /// Height.
    pub h: u16,
}

impl Rect {
    /// A rectangle.
    pub const fn new(x: u16, y: u16, w: u16, h: u16) -> Rect {
        Rect { x, y, w, h }
    }

    /// Its pixel count.
    pub fn area(&self) -> usize {
        usize::from(self.w) * usize::from(self.h)
    }

    /// Whether it has no pixel.
    pub fn is_empty(&self) -> bool {
        self.w == 0 || self.h == 0
    }
}

/// A rectangle outside the screen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rectangle {x},{y} {w}x{h} is outside the {width}x{height} screen")]
pub struct OutOfBounds {
    /// Left.
    pub x: u16,
    /// Top.
    pub y: u16,
    /// Width.
    pub w: u16,
    /// Height.
    pub h: u16,
    /// Screen width.
    pub width: u16,
    /// Screen height.
    pub height: u16,
}

/// The screen.
#[derive(Clone, PartialEq, Eq)]
pub struct Framebuffer {
    width: u16,
    height: u16,
    pixels: Vec<u32>,
}

impl std::fmt::Debug for Framebuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Framebuffer({}x{})", self.width, self.height)
    }
}

impl Framebuffer {
    /// A black screen of `width` × `height`, each side capped at [`MAX_SIDE`].
    pub fn new(width: u16, height: u16) -> Framebuffer {
        let (width, height) = (width.min(MAX_SIDE), height.min(MAX_SIDE));
        Framebuffer {
            width,
            height,
            pixels: vec![0; usize::from(width) * usize::from(height)],
        }
    }

    /// Width in pixels.
    pub fn width(&self) -> u16 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u16 {
        self.height
    }

    /// The whole screen.
    pub fn bounds(&self) -> Rect {
        Rect::new(0, 0, self.width, self.height)
    }

    /// Every pixel, row-major.
    pub fn pixels(&self) -> &[u32] {
        &self.pixels
    }

    /// Changes the size (DesktopSize): the overlapping part is kept, the rest is black.
    pub fn resize(&mut self, width: u16, height: u16) {
        let mut fresh = Framebuffer::new(width, height);
        let w = usize::from(self.width.min(fresh.width));
        for y in 0..usize::from(self.height.min(fresh.height)) {
            let src = y * usize::from(self.width);
            let dst = y * usize::from(fresh.width);
            fresh.pixels[dst..dst + w].copy_from_slice(&self.pixels[src..src + w]);
        }
        *self = fresh;
    }

    /// Checks that `r` lies within the screen.
    ///
    /// # Errors
    /// [`OutOfBounds`].
    pub fn check(&self, r: Rect) -> Result<(), OutOfBounds> {
        if u32::from(r.x) + u32::from(r.w) <= u32::from(self.width)
            && u32::from(r.y) + u32::from(r.h) <= u32::from(self.height)
        {
            Ok(())
        } else {
            Err(OutOfBounds {
                x: r.x,
                y: r.y,
                w: r.w,
                h: r.h,
                width: self.width,
                height: self.height,
            })
        }
    }

    /// The pixel at `(x, y)`, or `None` outside the screen.
    pub fn get(&self, x: u16, y: u16) -> Option<u32> {
        (x < self.width && y < self.height)
            .then(|| self.pixels[usize::from(y) * usize::from(self.width) + usize::from(x)])
    }

    /// One row of `r`: its `w` pixels at row `r.y + dy`. `r` must have been checked.
    pub fn row(&self, r: Rect, dy: u16) -> &[u32] {
        let at = usize::from(r.y + dy) * usize::from(self.width) + usize::from(r.x);
        &self.pixels[at..at + usize::from(r.w)]
    }

    /// One row of `r`, to write. `r` must have been checked.
    pub fn row_mut(&mut self, r: Rect, dy: u16) -> &mut [u32] {
        let at = usize::from(r.y + dy) * usize::from(self.width) + usize::from(r.x);
        &mut self.pixels[at..at + usize::from(r.w)]
    }

    /// Fills `r` with `colour`.
    ///
    /// # Errors
    /// [`OutOfBounds`].
    pub fn fill(&mut self, r: Rect, colour: u32) -> Result<(), OutOfBounds> {
        self.check(r)?;
        for dy in 0..r.h {
            self.row_mut(r, dy).fill(colour);
        }
        Ok(())
    }

    /// Writes `r` from `src`, `r.w` pixels a row, row-major.
    ///
    /// # Errors
    /// [`OutOfBounds`], or `src` shorter than the rectangle (reported as out of bounds).
    pub fn put(&mut self, r: Rect, src: &[u32]) -> Result<(), OutOfBounds> {
        self.check(r)?;
        if src.len() < r.area() {
            return Err(OutOfBounds {
                x: r.x,
                y: r.y,
                w: r.w,
                h: r.h,
                width: self.width,
                height: self.height,
            });
        }
        let w = usize::from(r.w);
        for dy in 0..r.h {
            let s = usize::from(dy) * w;
            self.row_mut(r, dy).copy_from_slice(&src[s..s + w]);
        }
        Ok(())
    }

    /// CopyRect: copies the `dst.w` × `dst.h` pixels at `(sx, sy)` to `dst` (the two may
    /// overlap).
    ///
    /// # Errors
    /// [`OutOfBounds`] for either rectangle.
    pub fn copy(&mut self, dst: Rect, sx: u16, sy: u16) -> Result<(), OutOfBounds> {
        let src = Rect::new(sx, sy, dst.w, dst.h);
        self.check(dst)?;
        self.check(src)?;
        let width = usize::from(self.width);
        let w = usize::from(dst.w);
        let rows: Vec<u16> = if dst.y > sy {
            (0..dst.h).rev().collect()
        } else {
            (0..dst.h).collect()
        };
        for dy in rows {
            let from = usize::from(sy + dy) * width + usize::from(sx);
            let to = usize::from(dst.y + dy) * width + usize::from(dst.x);
            self.pixels.copy_within(from..from + w, to);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_bounds_rectangles_are_errors() {
        let mut fb = Framebuffer::new(10, 10);
        assert!(fb.fill(Rect::new(5, 5, 6, 1), 1).is_err());
        assert!(fb.fill(Rect::new(u16::MAX, 0, 2, 1), 1).is_err());
        assert!(fb.copy(Rect::new(0, 0, 5, 5), 6, 6).is_err());
        assert!(fb.put(Rect::new(0, 0, 2, 2), &[1, 2, 3]).is_err());
        assert_eq!(fb.pixels().iter().filter(|&&p| p != 0).count(), 0);
    }

    #[test]
    fn copy_handles_overlap_both_ways() {
        let mut fb = Framebuffer::new(4, 4);
        let src: Vec<u32> = (0..16).collect();
        fb.put(fb.bounds(), &src).expect("put");
        fb.copy(Rect::new(0, 1, 4, 3), 0, 0).expect("down");
        assert_eq!(&fb.pixels()[4..], &src[..12]);
        fb.put(fb.bounds(), &src).expect("put");
        fb.copy(Rect::new(0, 0, 3, 4), 1, 0).expect("left");
        assert_eq!(fb.row(Rect::new(0, 0, 4, 1), 0), &[1, 2, 3, 3]);
    }

    #[test]
    fn resize_keeps_the_overlap() {
        let mut fb = Framebuffer::new(3, 2);
        fb.put(fb.bounds(), &[1, 2, 3, 4, 5, 6]).expect("put");
        fb.resize(2, 3);
        assert_eq!(fb.pixels(), &[1, 2, 4, 5, 0, 0]);
        fb.resize(9000, 1);
        assert_eq!(fb.width(), MAX_SIDE);
    }
}
