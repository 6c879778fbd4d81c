//! A minimal reference RFB *viewer-side* decoder for tests, written from the protocol
//! document (rfbproto) and sharing no code with tcvnc's encoders: it keeps the viewer's
//! screen as pixel values in the viewer's format and decodes FramebufferUpdate messages
//! (Raw, CopyRect, Hextile, ZRLE, Tight incl. JPEG, and the pseudo-encodings). It is
//! strict where the encoder promises more than the spec: Hextile colours are not reused
//! after a raw tile (both) or coloured subrectangles (foreground), and every zlib
//! stream's output must be consumed exactly.

#![allow(dead_code)]

use flate2::{Decompress, FlushDecompress};
use tcvnc::rfb::messages::PixelFormat;

/// What went wrong decoding.
pub type Res<T> = Result<T, String>;

/// A byte reader with bounds checks.
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { data, pos: 0 }
    }
    pub fn pos(&self) -> usize {
        self.pos
    }
    pub fn left(&self) -> usize {
        self.data.len() - self.pos
    }
    pub fn bytes(&mut self, n: usize) -> Res<&'a [u8]> {
        if self.left() < n {
            return Err(format!(
                "short read: want {n} at {}, have {}",
                self.pos,
                self.left()
            ));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    pub fn u8(&mut self) -> Res<u8> {
        Ok(self.bytes(1)?[0])
    }
    pub fn u16(&mut self) -> Res<u16> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    pub fn u32(&mut self) -> Res<u32> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn i32(&mut self) -> Res<i32> {
        Ok(self.u32()? as i32)
    }
}

/// The screen-layout part of an ExtendedDesktopSize rectangle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtSize {
    pub reason: u16,
    pub status: u16,
    pub width: u16,
    pub height: u16,
    /// (id, x, y, w, h, flags)
    pub screens: Vec<(u32, u16, u16, u16, u16, u32)>,
}

/// A cursor as received: hotspot, size, pixel values, mask bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub hot: (u16, u16),
    pub size: (u16, u16),
    pub pixels: Vec<u32>,
    pub mask: Vec<u8>,
}

/// The viewer.
pub struct Viewer {
    pub pf: PixelFormat,
    pub width: u16,
    pub height: u16,
    /// Pixel values (as read from the wire in the format's byte order), row-major.
    pub screen: Vec<u32>,
    zrle: Decompress,
    tight: [Decompress; 4],
    pub name: Option<String>,
    pub ext_size: Option<ExtSize>,
    pub cursor: Option<Cursor>,
    /// Encodings seen, in order (for tests that check what was sent).
    pub seen: Vec<i32>,
    /// Tight subencodings seen: "fill", "jpeg", "copy", "palette2", "palette".
    pub tight_kinds: Vec<&'static str>,
    /// Tight stream resets seen (bits).
    pub tight_resets: u8,
    /// Tight streams reset at least once (bits): from then on every compressed chunk of
    /// that stream must reset it again, as noVNC needs (its pako 1.x inflater loses its
    /// window for good on a reset, so a chunk that continues the stream with history
    /// fails there). A chunk that does not is an error here.
    tight_ever_reset: u8,
    /// Tight streams that have inflated a chunk (bits).
    tight_used: u8,
    /// Decoding joined the session after its start (see [`Viewer::join_mid_stream`]).
    joined: bool,
    /// Tight JPEG rectangles (x, y, w, h).
    pub jpeg_rects: Vec<(usize, usize, usize, usize)>,
    /// ZRLE tile subencodings seen (each once).
    pub zrle_kinds: Vec<u8>,
    /// Hextile tile kinds seen: "raw", "bg", "mono", "coloured".
    pub hextile_kinds: Vec<&'static str>,
}

impl Viewer {
    pub fn new(pf: PixelFormat, width: u16, height: u16) -> Viewer {
        Viewer {
            pf,
            width,
            height,
            screen: vec![0; usize::from(width) * usize::from(height)],
            zrle: Decompress::new(true),
            tight: [
                Decompress::new(true),
                Decompress::new(true),
                Decompress::new(true),
                Decompress::new(true),
            ],
            name: None,
            ext_size: None,
            cursor: None,
            seen: Vec::new(),
            tight_kinds: Vec::new(),
            tight_resets: 0,
            tight_ever_reset: 0,
            tight_used: 0,
            joined: false,
            jpeg_rects: Vec::new(),
            zrle_kinds: Vec::new(),
            hextile_kinds: Vec::new(),
        }
    }

    /// Decoding starts here rather than at the session's start (a recording's keyframe):
    /// a Tight stream's first chunk from here on is read as raw deflate unless it opens
    /// with a zlib header (compression method 8 in the low four bits of its first byte),
    /// as a stream fully flushed here continues without one; raw deflate must then open
    /// with the full flush's empty stored block, or it is an error.
    pub fn join_mid_stream(&mut self) {
        self.joined = true;
    }

    fn bypp(&self) -> usize {
        usize::from(self.pf.bits_per_pixel / 8)
    }

    /// The bits the three channels use.
    pub fn used_mask(&self) -> u32 {
        let m = |max: u16, shift: u8| u32::from(max) << shift;
        m(self.pf.red_max, self.pf.red_shift)
            | m(self.pf.green_max, self.pf.green_shift)
            | m(self.pf.blue_max, self.pf.blue_shift)
    }

    fn pixel(&self, r: &mut Reader) -> Res<u32> {
        let b = r.bytes(self.bypp())?;
        Ok(match (b.len(), self.pf.big_endian) {
            (1, _) => u32::from(b[0]),
            (2, true) => u32::from(u16::from_be_bytes([b[0], b[1]])),
            (2, false) => u32::from(u16::from_le_bytes([b[0], b[1]])),
            (_, true) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            (_, false) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        })
    }

    /// rfbproto ZRLE: "CPIXEL is the same as PIXEL except where true-colour-flag is
    /// non-zero, bits-per-pixel is 32, depth is 24 or less and all of the bits making up
    /// the red, green and blue intensities fit in either the least significant 3 bytes or
    /// the most significant 3 bytes."
    fn cpixel(&self, r: &mut Reader) -> Res<u32> {
        let used = self.used_mask();
        let pf = &self.pf;
        if pf.true_colour && pf.bits_per_pixel == 32 && pf.depth <= 24 {
            let ls = used & 0xff00_0000 == 0;
            let ms = used & 0x0000_00ff == 0;
            if ls || ms {
                let b = r.bytes(3)?;
                // The three bytes in the pixel's byte order.
                let v = if pf.big_endian {
                    u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2])
                } else {
                    u32::from(b[2]) << 16 | u32::from(b[1]) << 8 | u32::from(b[0])
                };
                return Ok(if ls { v } else { v << 8 });
            }
        }
        self.pixel(r)
    }

    /// TightVNC's NOTE 1: depth 24 with 8-bit channels (at 32 bits per pixel) sends
    /// R, G, B bytes.
    fn tight_rgb(&self) -> bool {
        let pf = &self.pf;
        pf.true_colour
            && pf.bits_per_pixel == 32
            && pf.depth == 24
            && pf.red_max == 255
            && pf.green_max == 255
            && pf.blue_max == 255
    }

    fn tpixel(&self, r: &mut Reader) -> Res<u32> {
        if self.tight_rgb() {
            let b = r.bytes(3)?;
            return Ok(self.value_of_rgb(b[0], b[1], b[2]));
        }
        self.pixel(r)
    }

    /// A pixel value from 8-bit intensities (the same rounding the tests expect).
    pub fn value_of_rgb(&self, r: u8, g: u8, b: u8) -> u32 {
        let c = |v: u8, max: u16, shift: u8| ((u32::from(v) * u32::from(max) + 127) / 255) << shift;
        c(r, self.pf.red_max, self.pf.red_shift)
            | c(g, self.pf.green_max, self.pf.green_shift)
            | c(b, self.pf.blue_max, self.pf.blue_shift)
    }

    fn check_rect(&self, x: u16, y: u16, w: u16, h: u16) -> Res<()> {
        if u32::from(x) + u32::from(w) > u32::from(self.width)
            || u32::from(y) + u32::from(h) > u32::from(self.height)
        {
            return Err(format!(
                "rect {x},{y} {w}x{h} outside {}x{}",
                self.width, self.height
            ));
        }
        Ok(())
    }

    fn set(&mut self, x: usize, y: usize, v: u32) {
        let w = usize::from(self.width);
        self.screen[y * w + x] = v;
    }

    fn fill(&mut self, x: usize, y: usize, w: usize, h: usize, v: u32) {
        for yy in y..y + h {
            for xx in x..x + w {
                self.set(xx, yy, v);
            }
        }
    }

    /// Decodes one FramebufferUpdate message; returns the bytes it used.
    pub fn update(&mut self, data: &[u8]) -> Res<usize> {
        let mut r = Reader::new(data);
        if r.u8()? != 0 {
            return Err("not a FramebufferUpdate".into());
        }
        r.u8()?;
        let n = r.u16()?;
        for _ in 0..n {
            if !self.rect(&mut r)? {
                break;
            }
        }
        Ok(r.pos())
    }

    /// Decodes the rectangle at the start of `data` (within an update whose header was
    /// read): the bytes it used, and false after LastRect. A short read leaves the zlib
    /// streams as they were (a compressed block is taken whole before it is inflated), so
    /// the caller can try the same rectangle again with more bytes.
    pub fn one_rect(&mut self, data: &[u8]) -> Res<(usize, bool)> {
        let mut r = Reader::new(data);
        let more = self.rect(&mut r)?;
        Ok((r.pos(), more))
    }

    /// Decodes a bare sequence of rectangles (no message header) until the data ends.
    pub fn rects(&mut self, data: &[u8]) -> Res<usize> {
        let mut r = Reader::new(data);
        let mut n = 0;
        while r.left() > 0 {
            if !self.rect(&mut r)? {
                break;
            }
            n += 1;
        }
        Ok(n)
    }

    /// One rectangle; false after LastRect.
    fn rect(&mut self, r: &mut Reader) -> Res<bool> {
        let (x, y, w, h) = (r.u16()?, r.u16()?, r.u16()?, r.u16()?);
        let enc = r.i32()?;
        self.seen.push(enc);
        match enc {
            0 => {
                self.check_rect(x, y, w, h)?;
                for yy in 0..h {
                    for xx in 0..w {
                        let v = self.pixel(r)?;
                        self.set(usize::from(x + xx), usize::from(y + yy), v);
                    }
                }
            }
            1 => {
                self.check_rect(x, y, w, h)?;
                let (sx, sy) = (r.u16()?, r.u16()?);
                self.check_rect(sx, sy, w, h)?;
                let mut tmp = Vec::new();
                for yy in 0..usize::from(h) {
                    for xx in 0..usize::from(w) {
                        tmp.push(
                            self.screen[(usize::from(sy) + yy) * usize::from(self.width)
                                + usize::from(sx)
                                + xx],
                        );
                    }
                }
                for yy in 0..usize::from(h) {
                    for xx in 0..usize::from(w) {
                        let v = tmp[yy * usize::from(w) + xx];
                        self.set(usize::from(x) + xx, usize::from(y) + yy, v);
                    }
                }
            }
            5 => self.hextile(r, x, y, w, h)?,
            16 => self.zrle(r, x, y, w, h)?,
            7 => self.tight(r, x, y, w, h)?,
            -223 => {
                self.width = w;
                self.height = h;
                self.screen = vec![0; usize::from(w) * usize::from(h)];
            }
            -224 => return Ok(false),
            -239 => {
                let n = usize::from(w) * usize::from(h);
                let mut pixels = Vec::with_capacity(n);
                for _ in 0..n {
                    pixels.push(self.pixel(r)?);
                }
                let mask = r
                    .bytes(usize::from(w).div_ceil(8) * usize::from(h))?
                    .to_vec();
                self.cursor = Some(Cursor {
                    hot: (x, y),
                    size: (w, h),
                    pixels,
                    mask,
                });
            }
            -307 => {
                let len = r.u32()? as usize;
                let name = r.bytes(len)?;
                self.name = Some(String::from_utf8(name.to_vec()).map_err(|e| e.to_string())?);
            }
            -308 => {
                let n = r.u8()?;
                r.bytes(3)?;
                let mut screens = Vec::new();
                for _ in 0..n {
                    screens.push((r.u32()?, r.u16()?, r.u16()?, r.u16()?, r.u16()?, r.u32()?));
                }
                self.width = w;
                self.height = h;
                self.screen = vec![0; usize::from(w) * usize::from(h)];
                self.ext_size = Some(ExtSize {
                    reason: x,
                    status: y,
                    width: w,
                    height: h,
                    screens,
                });
            }
            other => return Err(format!("unexpected encoding {other}")),
        }
        Ok(true)
    }

    fn hextile(&mut self, r: &mut Reader, x: u16, y: u16, w: u16, h: u16) -> Res<()> {
        self.check_rect(x, y, w, h)?;
        let (mut bg, mut fg): (Option<u32>, Option<u32>) = (None, None);
        let mut ty = 0;
        while ty < h {
            let th = (h - ty).min(16);
            let mut tx = 0;
            while tx < w {
                let tw = (w - tx).min(16);
                let (ox, oy) = (usize::from(x + tx), usize::from(y + ty));
                let mask = r.u8()?;
                if mask & 1 != 0 {
                    for yy in 0..usize::from(th) {
                        for xx in 0..usize::from(tw) {
                            let v = self.pixel(r)?;
                            self.set(ox + xx, oy + yy, v);
                        }
                    }
                    // Strict: nothing is assumed to survive a raw tile.
                    bg = None;
                    fg = None;
                    self.hextile_kind("raw");
                } else {
                    if mask & 2 != 0 {
                        bg = Some(self.pixel(r)?);
                    }
                    let b = bg.ok_or("hextile tile relies on an unknown background")?;
                    self.fill(ox, oy, usize::from(tw), usize::from(th), b);
                    if mask & 4 != 0 {
                        fg = Some(self.pixel(r)?);
                    }
                    if mask & 8 == 0 {
                        self.hextile_kind("bg");
                    }
                    if mask & 8 != 0 {
                        let n = r.u8()?;
                        let coloured = mask & 16 != 0;
                        self.hextile_kind(if coloured { "coloured" } else { "mono" });
                        for _ in 0..n {
                            let c = if coloured {
                                self.pixel(r)?
                            } else {
                                fg.ok_or("hextile subrect relies on an unknown foreground")?
                            };
                            let xy = r.u8()?;
                            let wh = r.u8()?;
                            let (sx, sy) = (usize::from(xy >> 4), usize::from(xy & 15));
                            let (sw, sh) = (usize::from(wh >> 4) + 1, usize::from(wh & 15) + 1);
                            if sx + sw > usize::from(tw) || sy + sh > usize::from(th) {
                                return Err("hextile subrect outside its tile".into());
                            }
                            self.fill(ox + sx, oy + sy, sw, sh, c);
                        }
                        if coloured {
                            fg = None;
                        }
                    }
                }
                tx += 16;
            }
            ty += 16;
        }
        Ok(())
    }

    fn hextile_kind(&mut self, k: &'static str) {
        if !self.hextile_kinds.contains(&k) {
            self.hextile_kinds.push(k);
        }
    }

    fn inflate(z: &mut Decompress, data: &[u8], want: Option<usize>) -> Res<Vec<u8>> {
        let mut out = Vec::with_capacity(want.unwrap_or(data.len() * 4 + 1024));
        let start_in = z.total_in();
        loop {
            let done = (z.total_in() - start_in) as usize;
            if out.len() == out.capacity() {
                out.reserve(out.capacity().max(1024));
            }
            let before = (z.total_in(), z.total_out());
            z.decompress_vec(&data[done..], &mut out, FlushDecompress::Sync)
                .map_err(|e| format!("inflate: {e}"))?;
            let done = (z.total_in() - start_in) as usize;
            if done == data.len() && out.len() < out.capacity() {
                break;
            }
            if (z.total_in(), z.total_out()) == before {
                return Err("inflate made no progress".into());
            }
        }
        Ok(out)
    }

    fn zrle(&mut self, r: &mut Reader, x: u16, y: u16, w: u16, h: u16) -> Res<()> {
        self.check_rect(x, y, w, h)?;
        let len = r.u32()? as usize;
        let data = r.bytes(len)?;
        let plain = Self::inflate(&mut self.zrle, data, None)?;
        let mut p = Reader::new(&plain);
        let mut ty = 0;
        while ty < h {
            let th = usize::from((h - ty).min(64));
            let mut tx = 0;
            while tx < w {
                let tw = usize::from((w - tx).min(64));
                let (ox, oy) = (usize::from(x + tx), usize::from(y + ty));
                let sub = p.u8()?;
                if !self.zrle_kinds.contains(&sub) {
                    self.zrle_kinds.push(sub);
                }
                let n = tw * th;
                let mut px = Vec::with_capacity(n);
                match sub {
                    0 => {
                        for _ in 0..n {
                            px.push(self.cpixel(&mut p)?);
                        }
                    }
                    1 => {
                        let c = self.cpixel(&mut p)?;
                        px.resize(n, c);
                    }
                    2..=16 => {
                        let mut pal = Vec::new();
                        for _ in 0..sub {
                            pal.push(self.cpixel(&mut p)?);
                        }
                        let bits = match sub {
                            2 => 1,
                            3 | 4 => 2,
                            _ => 4,
                        };
                        for _ in 0..th {
                            let row = p.bytes((tw * bits).div_ceil(8))?;
                            for i in 0..tw {
                                let bit = i * bits;
                                let byte = row[bit / 8];
                                let idx = (byte >> (8 - bits - bit % 8)) & ((1 << bits) - 1);
                                px.push(*pal.get(usize::from(idx)).ok_or("packed index")?);
                            }
                        }
                    }
                    128 => {
                        while px.len() < n {
                            let c = self.cpixel(&mut p)?;
                            let len = Self::run_len(&mut p)?;
                            px.extend(std::iter::repeat_n(c, len));
                        }
                    }
                    130..=255 => {
                        let mut pal = Vec::new();
                        for _ in 0..sub - 128 {
                            pal.push(self.cpixel(&mut p)?);
                        }
                        while px.len() < n {
                            let i = p.u8()?;
                            let c = *pal.get(usize::from(i & 127)).ok_or("rle index")?;
                            let len = if i & 128 != 0 {
                                Self::run_len(&mut p)?
                            } else {
                                1
                            };
                            px.extend(std::iter::repeat_n(c, len));
                        }
                    }
                    other => return Err(format!("zrle subencoding {other}")),
                }
                if px.len() != n {
                    return Err(format!("zrle tile has {} pixels, not {n}", px.len()));
                }
                for yy in 0..th {
                    for xx in 0..tw {
                        self.set(ox + xx, oy + yy, px[yy * tw + xx]);
                    }
                }
                tx += 64;
            }
            ty += 64;
        }
        if p.left() != 0 {
            return Err(format!("{} zrle bytes left over", p.left()));
        }
        Ok(())
    }

    fn run_len(p: &mut Reader) -> Res<usize> {
        let mut len = 1;
        loop {
            let b = p.u8()?;
            len += usize::from(b);
            if b != 255 {
                return Ok(len);
            }
        }
    }

    fn compact(r: &mut Reader) -> Res<usize> {
        let b0 = r.u8()?;
        let mut n = usize::from(b0 & 0x7f);
        if b0 & 0x80 != 0 {
            let b1 = r.u8()?;
            n |= usize::from(b1 & 0x7f) << 7;
            if b1 & 0x80 != 0 {
                n |= usize::from(r.u8()?) << 14;
            }
        }
        Ok(n)
    }

    fn tight(&mut self, r: &mut Reader, x: u16, y: u16, w: u16, h: u16) -> Res<()> {
        self.check_rect(x, y, w, h)?;
        if w > 2048 {
            return Err("tight rectangle wider than 2048".into());
        }
        let ctl = r.u8()?;
        for i in 0..4 {
            if ctl & (1 << i) != 0 {
                self.tight[i] = Decompress::new(true);
                self.tight_resets |= 1 << i;
                self.tight_ever_reset |= 1 << i;
            }
        }
        let (ox, oy, w, h) = (
            usize::from(x),
            usize::from(y),
            usize::from(w),
            usize::from(h),
        );
        match ctl >> 4 {
            8 => {
                let c = self.tpixel(r)?;
                self.fill(ox, oy, w, h, c);
                self.tight_kinds.push("fill");
            }
            9 => {
                let len = Self::compact(r)?;
                let jpeg = r.bytes(len)?;
                let mut d = zune_jpeg::JpegDecoder::new(
                    zune_jpeg::zune_core::bytestream::ZCursor::new(jpeg),
                );
                let rgb = d.decode().map_err(|e| format!("jpeg: {e:?}"))?;
                let info = d.info().ok_or("jpeg info")?;
                if (usize::from(info.width), usize::from(info.height)) != (w, h) {
                    return Err("jpeg size differs from the rectangle".into());
                }
                if rgb.len() != w * h * 3 {
                    return Err(format!("jpeg gave {} bytes", rgb.len()));
                }
                for yy in 0..h {
                    for xx in 0..w {
                        let i = (yy * w + xx) * 3;
                        let v = self.value_of_rgb(rgb[i], rgb[i + 1], rgb[i + 2]);
                        self.set(ox + xx, oy + yy, v);
                    }
                }
                self.tight_kinds.push("jpeg");
                self.jpeg_rects.push((ox, oy, w, h));
            }
            k if k & 8 == 0 => {
                let stream = usize::from(k & 3);
                let filter = if k & 4 != 0 { r.u8()? } else { 0 };
                let tpb = if self.tight_rgb() { 3 } else { self.bypp() };
                let (pal, len) = match filter {
                    0 => (Vec::new(), w * h * tpb),
                    1 => {
                        let n = usize::from(r.u8()?) + 1;
                        let mut pal = Vec::new();
                        for _ in 0..n {
                            pal.push(self.tpixel(r)?);
                        }
                        let len = if n == 2 { w.div_ceil(8) * h } else { w * h };
                        (pal, len)
                    }
                    f => return Err(format!("tight filter {f} not expected")),
                };
                let data = if len < 12 {
                    r.bytes(len)?.to_vec()
                } else {
                    if self.tight_ever_reset & !ctl & (1 << stream) != 0 {
                        return Err(format!(
                            "Tight stream {stream} continued after a reset: noVNC cannot decode that (its inflater's window is gone after a reset)"
                        ));
                    }
                    let clen = Self::compact(r)?;
                    let z = r.bytes(clen)?;
                    let bit = 1 << stream;
                    if self.joined
                        && self.tight_used & bit == 0
                        && z.first().is_some_and(|b| b & 0x0f != 8)
                    {
                        // Raw deflate from here, which only a full flush allows: an
                        // empty stored block on a byte boundary.
                        if !z.starts_with(&[0, 0, 0, 0xff, 0xff]) {
                            return Err(format!(
                                "Tight stream {stream} joined where it was not cut by a full flush"
                            ));
                        }
                        self.tight[stream] = Decompress::new(false);
                    }
                    self.tight_used |= bit;
                    let out = Self::inflate(&mut self.tight[stream], z, Some(len))?;
                    if out.len() != len {
                        return Err(format!("tight data {} bytes, want {len}", out.len()));
                    }
                    out
                };
                let mut d = Reader::new(&data);
                for yy in 0..h {
                    match (filter, pal.len()) {
                        (0, _) => {
                            for xx in 0..w {
                                let v = self.tpixel(&mut d)?;
                                self.set(ox + xx, oy + yy, v);
                            }
                        }
                        (_, 2) => {
                            let row = d.bytes(w.div_ceil(8))?;
                            for xx in 0..w {
                                let bit = (row[xx / 8] >> (7 - xx % 8)) & 1;
                                self.set(ox + xx, oy + yy, pal[usize::from(bit)]);
                            }
                        }
                        _ => {
                            for xx in 0..w {
                                let i = usize::from(d.u8()?);
                                let c = *pal.get(i).ok_or("tight palette index")?;
                                self.set(ox + xx, oy + yy, c);
                            }
                        }
                    }
                }
                self.tight_kinds.push(match (filter, pal.len()) {
                    (0, _) => "copy",
                    (_, 2) => "palette2",
                    _ => "palette",
                });
            }
            other => return Err(format!("tight compression {other}")),
        }
        Ok(())
    }
}

/// A deterministic desktop-like test screen: a gradient wallpaper, windows with solid
/// fills and title bars, text-like glyphs (two colours and anti-aliased), a photo-like
/// noisy area and a few single odd pixels.
pub fn desktop(width: u16, height: u16) -> tcvnc::console::fb::Framebuffer {
    let (w, h) = (usize::from(width), usize::from(height));
    let mut px = vec![0u32; w * h];
    let mut seed = 0x1234_5678u32;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    for y in 0..h {
        for x in 0..w {
            let r = (x * 255 / w.max(1)) as u32;
            let g = (y * 255 / h.max(1)) as u32;
            px[y * w + x] = r << 16 | g << 8 | 0x60;
        }
    }
    let rect = |px: &mut Vec<u32>, x0: usize, y0: usize, rw: usize, rh: usize, c: u32| {
        for y in y0..(y0 + rh).min(h) {
            for x in x0..(x0 + rw).min(w) {
                px[y * w + x] = c;
            }
        }
    };
    // Windows: a body, a title bar, a border.
    let windows = [(w / 10, h / 8, w / 2, h / 2), (w / 3, h / 3, w / 2, h / 2)];
    for (i, &(x0, y0, ww, wh)) in windows.iter().enumerate() {
        rect(&mut px, x0, y0, ww, wh, 0x00f0_f0f0);
        rect(
            &mut px,
            x0,
            y0,
            ww,
            18.min(wh),
            if i == 0 { 0x0030_5080 } else { 0x0080_3050 },
        );
        rect(&mut px, x0, y0 + wh.saturating_sub(1), ww, 1, 0x0020_2020);
        // Text lines: 6×9 glyph cells of pseudo-random strokes.
        // Text over the top-left two thirds: the rest of the body stays blank.
        let mut ty = y0 + 24;
        while ty + 9 < (y0 + wh * 2 / 3).min(h) {
            let mut tx = x0 + 6;
            while tx + 6 < (x0 + ww * 2 / 3).min(w) {
                let bits = rnd();
                for gy in 0..9 {
                    for gx in 0..5 {
                        if bits >> ((gy * 5 + gx) % 32) & 1 == 1 && (gy + gx) % 3 != 0 {
                            let c = if i == 0 {
                                0x0010_1010
                            } else {
                                // anti-aliased grey levels
                                let l = 0x40 + (bits >> 8 & 0x7f);
                                l << 16 | l << 8 | l
                            };
                            px[(ty + gy) * w + tx + gx] = c;
                        }
                    }
                }
                tx += 6;
            }
            ty += 12;
        }
    }
    // A panel along the bottom.
    rect(&mut px, 0, h - h / 10, w, h / 10, 0x0033_3333);
    // A photo-like area: noise over a gradient.
    let (px0, py0) = (w * 2 / 3, h / 10);
    for y in py0..(py0 + h / 4).min(h) {
        for x in px0..(px0 + w / 4).min(w) {
            let n = rnd();
            let r = ((x * 3 + y) as u32 + (n & 31)) & 255;
            let g = ((y * 2) as u32 + (n >> 8 & 31)) & 255;
            let b = ((x + y * 2) as u32 + (n >> 16 & 31)) & 255;
            px[y * w + x] = r << 16 | g << 8 | b;
        }
    }
    // Odd single pixels at the edges.
    for i in 0..w.min(h) {
        if i % 7 == 0 {
            px[i * w + (w - 1 - i % w.max(1)).min(w - 1)] = rnd() & 0x00ff_ffff;
        }
    }
    let mut fb = tcvnc::console::fb::Framebuffer::new(width, height);
    fb.put(fb.bounds(), &px).expect("the screen");
    fb
}
