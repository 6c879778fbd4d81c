//! Hand-built streams for every encoding, sub-encoding and message, each decoded whole,
//! split in two at every byte, and one byte at a time: the framebuffer and the events
//! must be the same every way.

use flate2::{Compress, Compression, FlushCompress};

use super::encoding as enc;
use super::*;
use crate::console::fb::{Framebuffer, Rect};
use crate::rfb::messages::PixelFormat;

const RGB565BE: PixelFormat = PixelFormat::true_colour(16, 16, true, [31, 63, 31], [11, 5, 0]);

const BGR233: PixelFormat = PixelFormat::true_colour(8, 8, false, [7, 7, 3], [0, 3, 6]);

/// A pixel of `0x00RRGGBB` in RGB888 little-endian.
fn p32(c: u32) -> [u8; 4] {
    c.to_le_bytes()
}

/// A CPIXEL / TPIXEL of RGB888 (3 bytes).
fn c24(c: u32) -> [u8; 3] {
    let b = c.to_le_bytes();
    [b[0], b[1], b[2]]
}

/// A TPIXEL of RGB888: red, green, blue.
fn t24(c: u32) -> [u8; 3] {
    [(c >> 16) as u8, (c >> 8) as u8, c as u8]
}

fn update(rects: &[(Rect, i32, Vec<u8>)]) -> Vec<u8> {
    let mut b = vec![0, 0];
    b.extend_from_slice(&(rects.len() as u16).to_be_bytes());
    for (r, e, data) in rects {
        for v in [r.x, r.y, r.w, r.h] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.extend_from_slice(&e.to_be_bytes());
        b.extend_from_slice(data);
    }
    b
}

fn deflate(z: &mut Compress, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() * 2 + 64);
    z.compress_vec(data, &mut out, FlushCompress::Sync)
        .expect("compress");
    out
}

fn start_fb(w: u16, h: u16) -> Framebuffer {
    let mut fb = Framebuffer::new(w, h);
    let seed: Vec<u32> = (0..u32::from(w) * u32::from(h))
        .map(|i| i.wrapping_mul(2_654_435_761) & 0xff_ffff)
        .collect();
    fb.put(fb.bounds(), &seed).expect("seed");
    fb
}

fn feed_all(
    dec: &mut UpdateDecoder,
    mut data: &[u8],
    fb: &mut Framebuffer,
    events: &mut Vec<Event>,
) -> Result<(), DecodeError> {
    while !data.is_empty() {
        let fed = dec.feed(data, fb)?;
        assert!(fed.consumed > 0 || data.is_empty(), "no progress");
        events.extend(fed.events);
        data = &data[fed.consumed..];
    }
    Ok(())
}

/// Decodes `stream` whole, split at every byte, and a byte at a time; asserts all agree
/// and returns the framebuffer and events.
fn decode(pf: &PixelFormat, w: u16, h: u16, stream: &[u8]) -> (Framebuffer, Vec<Event>) {
    let run = |pieces: &[&[u8]]| {
        let mut dec = UpdateDecoder::new(pf).expect("format");
        let mut fb = start_fb(w, h);
        let mut events = Vec::new();
        for p in pieces {
            feed_all(&mut dec, p, &mut fb, &mut events).expect("decodes");
        }
        assert!(dec.at_message_boundary());
        (fb, events)
    };
    let whole = run(&[stream]);
    for k in 1..stream.len() {
        let split = run(&[&stream[..k], &stream[k..]]);
        assert!(split.0 == whole.0, "framebuffer differs when split at {k}");
        assert_eq!(split.1, whole.1, "events differ when split at {k}");
    }
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    let single = run(&bytes);
    assert!(
        single.0 == whole.0,
        "framebuffer differs fed a byte at a time"
    );
    assert_eq!(single.1, whole.1);
    whole
}

fn error(pf: &PixelFormat, w: u16, h: u16, stream: &[u8]) -> DecodeError {
    let mut dec = UpdateDecoder::new(pf).expect("format");
    let mut fb = Framebuffer::new(w, h);
    let e = feed_all(&mut dec, stream, &mut fb, &mut Vec::new()).expect_err("an error");
    assert_eq!(dec.feed(&[0], &mut fb).expect_err("sticky"), e);
    e
}

fn pixels(fb: &Framebuffer, r: Rect) -> Vec<u32> {
    (0..r.h).flat_map(|dy| fb.row(r, dy).to_vec()).collect()
}

fn damage(events: &[Event]) -> Vec<Rect> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Damage(r) => Some(*r),
            _ => None,
        })
        .collect()
}

#[test]
fn raw_in_three_formats() {
    let r = Rect::new(1, 1, 3, 2);
    let colours = [0xff0000, 0x00ff00, 0x0000ff, 0xffffff, 0x000000, 0xff00ff];
    let data: Vec<u8> = colours.iter().flat_map(|&c| p32(c)).collect();
    let empty = Rect::new(0, 0, 0, 4);
    let (fb, ev) = decode(
        &PixelFormat::RGB888,
        5,
        4,
        &update(&[(r, enc::RAW, data), (empty, enc::RAW, vec![])]),
    );
    assert_eq!(pixels(&fb, r), colours);
    assert_eq!(ev, vec![Event::Damage(r), Event::UpdateEnd]);

    let data: Vec<u8> = [0xf800u16, 0x07e0, 0x001f, 0xffff, 0, 0xf81f]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect();
    let (fb, _) = decode(&RGB565BE, 5, 4, &update(&[(r, enc::RAW, data)]));
    assert_eq!(pixels(&fb, r), colours);

    let data = vec![0b111, 0b111_000, 0b11_000_000, 0xff, 0, 0b11_000_111];
    let (fb, _) = decode(&BGR233, 5, 4, &update(&[(r, enc::RAW, data)]));
    assert_eq!(pixels(&fb, r), colours);
}

#[test]
fn copy_rect_overlapping() {
    let before = start_fb(6, 6);
    let dst = Rect::new(1, 1, 4, 4);
    let (fb, ev) = decode(
        &PixelFormat::RGB888,
        6,
        6,
        &update(&[(dst, enc::COPY_RECT, vec![0, 0, 0, 0])]),
    );
    assert_eq!(pixels(&fb, dst), pixels(&before, Rect::new(0, 0, 4, 4)));
    assert_eq!(damage(&ev), vec![dst]);
}

#[test]
fn hextile_every_subencoding() {
    // 20×18: four tiles, 16×16, 4×16, 16×2, 4×2.
    let r = Rect::new(2, 1, 20, 18);
    let (bg, fg, other) = (0x102030, 0xa0b0c0, 0x00ff00);
    let mut d = Vec::new();
    // Tile 1: background + foreground + two subrects.
    d.push(2 | 4 | 8);
    d.extend(p32(bg));
    d.extend(p32(fg));
    d.extend([2, 0x00, 0x00]); // 2 subrects: (0,0) 1×1
    d.extend([0xff, 0x00]); // (15,15) 1×1
                            // Tile 2 (4×16): raw.
    d.push(1);
    for i in 0..64u32 {
        d.extend(p32(i * 0x010101));
    }
    // Tile 3 (16×2): background carried, coloured subrects.
    d.extend([8 | 16, 1]);
    d.extend(p32(other));
    d.extend([0x21, 0x10]); // (2,1) 2×1
                            // Tile 4 (4×2): background only, no subrects.
    d.push(2);
    d.extend(p32(fg));
    let (fb, ev) = decode(
        &PixelFormat::RGB888,
        24,
        20,
        &update(&[(r, enc::HEXTILE, d)]),
    );
    assert_eq!(damage(&ev), vec![r]);
    let at = |x: u16, y: u16| fb.get(r.x + x, r.y + y).expect("in");
    assert_eq!(
        (at(0, 0), at(1, 0), at(15, 15), at(14, 15)),
        (fg, bg, fg, bg)
    );
    assert_eq!((at(16, 0), at(19, 15)), (0, 63 * 0x010101));
    assert_eq!(
        (at(0, 16), at(2, 17), at(3, 17), at(4, 17)),
        (bg, other, other, bg)
    );
    assert_eq!((at(16, 16), at(19, 17)), (fg, fg));
}

#[test]
fn hextile_subrect_outside_its_tile_is_an_error() {
    let d = vec![2 | 4 | 8, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x33, 0x11];
    let e = error(
        &PixelFormat::RGB888,
        4,
        4,
        &update(&[(Rect::new(0, 0, 4, 4), enc::HEXTILE, d)]),
    );
    assert!(e.to_string().contains("outside its 4x4 tile"), "{e}");
}

#[test]
fn zlib_stream_persists_across_rectangles() {
    let mut z = Compress::new(Compression::default(), true);
    let a = Rect::new(0, 0, 4, 3);
    let b = Rect::new(2, 2, 3, 2);
    let pa: Vec<u32> = (0..12).map(|i| i * 0x111111).collect();
    let pb: Vec<u32> = (0..6).map(|i| 0xff0000 | i).collect();
    let mut rects = Vec::new();
    for (r, p) in [(a, &pa), (b, &pb)] {
        let raw: Vec<u8> = p.iter().flat_map(|&c| p32(c)).collect();
        let c = deflate(&mut z, &raw);
        let mut data = (c.len() as u32).to_be_bytes().to_vec();
        data.extend(c);
        rects.push((r, enc::ZLIB, data));
    }
    let (fb, ev) = decode(&PixelFormat::RGB888, 6, 5, &update(&rects));
    assert_eq!(pixels(&fb, b), pb);
    assert_eq!(fb.get(0, 0), Some(0));
    assert_eq!(damage(&ev), vec![a, b]);
}

/// A ZRLE run length's bytes.
fn run(mut n: usize) -> Vec<u8> {
    let mut b = Vec::new();
    n -= 1;
    while n >= 255 {
        b.push(255);
        n -= 255;
    }
    b.push(n as u8);
    b
}

#[test]
fn zrle_every_subencoding() {
    // 130×66: tiles 64×64, 64×64, 2×64 over 64×2, 64×2, 2×2.
    let r = Rect::new(0, 0, 130, 66);
    let mut expect = vec![0u32; r.area()];
    let mut set = |tx: usize, ty: usize, tw: usize, f: &dyn Fn(usize, usize) -> u32, th: usize| {
        for y in 0..th {
            for x in 0..tw {
                expect[(ty + y) * 130 + tx + x] = f(x, y);
            }
        }
    };
    let mut t = Vec::new();
    // Tile (0,0) 64×64: plain RLE, a run of 300 then runs of 1, crossing rows.
    t.push(128);
    t.extend(c24(0x123456));
    t.extend(run(300));
    for i in 0..(64 * 64 - 300) {
        t.extend(c24(i as u32));
        t.extend(run(1));
    }
    set(
        0,
        0,
        64,
        &|x, y| {
            if y * 64 + x < 300 {
                0x123456
            } else {
                (y * 64 + x - 300) as u32
            }
        },
        64,
    );
    // Tile (64,0) 64×64: palette RLE of 3 colours, single pixels and runs.
    let pal = [0xff0000u32, 0x00ff00, 0x0000ff];
    t.push(128 + 3);
    for c in pal {
        t.extend(c24(c));
    }
    t.push(1); // one pixel of colour 1
    t.push(128 | 2);
    t.extend(run(64 * 64 - 2));
    t.push(0);
    set(
        64,
        0,
        64,
        &|x, y| match y * 64 + x {
            0 => pal[1],
            i if i == 64 * 64 - 1 => pal[0],
            _ => pal[2],
        },
        64,
    );
    // Tile (128,0) 2×64: raw.
    t.push(0);
    for i in 0..128u32 {
        t.extend(c24(i * 0x020202));
    }
    set(128, 0, 2, &|x, y| (y * 2 + x) as u32 * 0x020202, 64);
    // Tile (0,64) 64×2: packed palette of 2 (1 bit a pixel).
    t.push(2);
    t.extend(c24(0x000000));
    t.extend(c24(0xffffff));
    for _ in 0..2 {
        t.extend([0b1010_1010; 8]);
    }
    set(0, 64, 64, &|x, _| if x % 2 == 0 { 0xffffff } else { 0 }, 2);
    // Tile (64,64) 64×2: packed palette of 5 (4 bits a pixel).
    t.push(5);
    for c in 0..5u32 {
        t.extend(c24(c * 0x101010));
    }
    for _ in 0..2 {
        for x in 0..32u8 {
            t.push(((2 * x) % 5) << 4 | ((2 * x + 1) % 5));
        }
    }
    set(64, 64, 64, &|x, _| (x % 5) as u32 * 0x101010, 2);
    // Tile (128,64) 2×2: solid.
    t.push(1);
    t.extend(c24(0xabcdef));
    set(128, 64, 2, &|_, _| 0xabcdef, 2);

    let mut z = Compress::new(Compression::default(), true);
    let c = deflate(&mut z, &t);
    let mut data = (c.len() as u32).to_be_bytes().to_vec();
    data.extend(c);
    // A second rectangle on the same stream: packed palette of 3 (2 bits), 5×1.
    let r2 = Rect::new(3, 3, 5, 1);
    let mut t2 = vec![3];
    for c in [0x111111u32, 0x222222, 0x333333] {
        t2.extend(c24(c));
    }
    t2.extend([0b00_01_10_00, 0b01_000000]);
    let c2 = deflate(&mut z, &t2);
    let mut data2 = (c2.len() as u32).to_be_bytes().to_vec();
    data2.extend(c2);
    let stream = update(&[(r, enc::ZRLE, data), (r2, enc::ZRLE, data2)]);
    let mut dec = UpdateDecoder::new(&PixelFormat::RGB888).expect("fmt");
    let mut fb = Framebuffer::new(130, 66);
    let mut ev = Vec::new();
    feed_all(&mut dec, &stream, &mut fb, &mut ev).expect("decodes");
    for x in 0..5 {
        let i = 3 * 130 + 3 + x;
        expect[i] = [0x111111, 0x222222, 0x333333, 0x111111, 0x222222][x];
    }
    assert!(fb.pixels() == expect.as_slice(), "ZRLE pixels");
    assert_eq!(damage(&ev), vec![r, r2]);
    // The split checks on the same stream (slow for the big tiles: every 97th split).
    let whole = fb;
    for k in (1..stream.len()).step_by(97) {
        let mut dec = UpdateDecoder::new(&PixelFormat::RGB888).expect("fmt");
        let mut fb = Framebuffer::new(130, 66);
        for p in [&stream[..k], &stream[k..]] {
            feed_all(&mut dec, p, &mut fb, &mut Vec::new()).expect("decodes");
        }
        assert!(fb == whole, "split at {k}");
    }
}

#[test]
fn zrle_small_tiles_split_everywhere_and_16bpp() {
    let r = Rect::new(1, 0, 3, 2);
    let mut z = Compress::new(Compression::default(), true);
    // RGB565 big-endian: CPIXELs are 2 bytes. Palette RLE with 2 colours.
    let t = [130u8, 0xf8, 0x00, 0x00, 0x1f, 0x80, 4, 1];
    let c = deflate(&mut z, &t);
    let mut data = (c.len() as u32).to_be_bytes().to_vec();
    data.extend(c);
    let (fb, _) = decode(&RGB565BE, 4, 2, &update(&[(r, enc::ZRLE, data)]));
    assert_eq!(
        pixels(&fb, r),
        [0xff0000, 0xff0000, 0xff0000, 0xff0000, 0xff0000, 0x0000ff]
    );
}

#[test]
fn zrle_errors_name_what_is_wrong() {
    let r = Rect::new(0, 0, 2, 2);
    let mut z = Compress::new(Compression::default(), true);
    let bad = |t: &[u8], z: &mut Compress| {
        let c = deflate(z, t);
        let mut data = (c.len() as u32).to_be_bytes().to_vec();
        data.extend(c);
        error(&PixelFormat::RGB888, 2, 2, &update(&[(r, enc::ZRLE, data)])).to_string()
    };
    assert!(bad(&[17], &mut z).contains("subencoding 17"));
    let mut z = Compress::new(Compression::default(), true);
    assert!(bad(&[128, 1, 2, 3, 4], &mut z).contains("overflows its tile"));
    let mut z = Compress::new(Compression::default(), true);
    assert!(bad(&[130, 0, 0, 0, 1, 1, 1, 5, 0, 0, 0], &mut z).contains("palette index 5"));
    let mut z = Compress::new(Compression::default(), true);
    assert!(bad(&[1, 0, 0, 0, 9], &mut z).contains("left over"));
    let mut z = Compress::new(Compression::default(), true);
    assert!(bad(&[0, 1, 2], &mut z).contains("ends inside a tile"));
    let mut data = (MAX_COMPRESSED + 1).to_be_bytes().to_vec();
    data.push(0);
    let e = error(&PixelFormat::RGB888, 2, 2, &update(&[(r, enc::ZRLE, data)]));
    assert!(
        e.to_string()
            .contains("ZRLE data of 67108865 bytes exceeds"),
        "{e}"
    );
}

/// Tight basic data: compact length + zlib bytes when 12 bytes or more.
fn tight_data(z: &mut Compress, filtered: &[u8]) -> Vec<u8> {
    if filtered.len() < 12 {
        return filtered.to_vec();
    }
    let c = deflate(z, filtered);
    let n = c.len();
    let mut b = vec![(n & 0x7f) as u8];
    if n > 0x7f {
        b[0] |= 0x80;
        b.push(((n >> 7) & 0x7f) as u8);
        if n > 0x3fff {
            b[1] |= 0x80;
            b.push((n >> 14) as u8);
        }
    }
    b.extend(c);
    b
}

/// The gradient filter, as an encoder applies it to 8-bit components.
fn gradient_filter(w: usize, pixels: &[u32]) -> Vec<u8> {
    let comp = |p: u32| [(p >> 16) & 255, (p >> 8) & 255, p & 255];
    let mut out = Vec::new();
    for (i, &p) in pixels.iter().enumerate() {
        let (x, y) = (i % w, i / w);
        let get = |x: Option<usize>, y: Option<usize>| match (x, y) {
            (Some(x), Some(y)) => comp(pixels[y * w + x]),
            _ => [0; 3],
        };
        let left = get(x.checked_sub(1), Some(y));
        let up = get(Some(x), y.checked_sub(1));
        let ul = get(x.checked_sub(1), y.checked_sub(1));
        let v = comp(p);
        for c in 0..3 {
            let pred = (left[c] as i32 + up[c] as i32 - ul[c] as i32).clamp(0, 255) as u32;
            out.push(v[c].wrapping_sub(pred) as u8);
        }
    }
    out
}

#[test]
fn tight_every_method_and_filter() {
    let mut zs: Vec<Compress> = (0..4)
        .map(|_| Compress::new(Compression::default(), true))
        .collect();
    let mut rects = Vec::new();
    let mut expect: Vec<(Rect, Vec<u32>)> = Vec::new();
    // Fill.
    let r = Rect::new(0, 0, 8, 8);
    let mut d = vec![0x80];
    d.extend(t24(0x334455));
    rects.push((r, enc::TIGHT, d));
    expect.push((r, vec![0x334455; 64]));
    // Copy filter, no filter byte, uncompressed (2×1×3 = 6 < 12 bytes), stream 0.
    let r = Rect::new(8, 0, 2, 1);
    let mut d = vec![0x00];
    d.extend(t24(0x010203));
    d.extend(t24(0x040506));
    rects.push((r, enc::TIGHT, d));
    expect.push((r, vec![0x010203, 0x040506]));
    // Copy filter with filter byte, compressed, stream 1, a 2-byte compact length.
    let r = Rect::new(0, 8, 20, 10);
    let px: Vec<u32> = (0..200u32)
        .map(|i| i.wrapping_mul(0x9e3779b1) & 0xffffff)
        .collect();
    let mut d = vec![0x40 | 0x10, 0];
    d.extend(tight_data(
        &mut zs[1],
        &px.iter().flat_map(|&c| t24(c)).collect::<Vec<_>>(),
    ));
    rects.push((r, enc::TIGHT, d));
    expect.push((r, px));
    // Palette of 2 (bitmap), stream 2: 10×3 → 2 bytes a row.
    let r = Rect::new(20, 0, 10, 3);
    let mut d = vec![0x40 | 0x20, 1, 1];
    d.extend(t24(0xff0000));
    d.extend(t24(0x00ff00));
    let bits = [[0b1000_0000u8, 0b0100_0000], [0xff, 0xc0], [0, 0]];
    let filtered: Vec<u8> = bits.iter().flatten().copied().collect();
    assert!(filtered.len() < 12);
    d.extend(tight_data(&mut zs[2], &filtered));
    rects.push((r, enc::TIGHT, d));
    let mut p = vec![0xff0000; 30];
    p[0] = 0x00ff00;
    p[9] = 0x00ff00;
    p[10..20].fill(0x00ff00);
    expect.push((r, p));
    // Palette of 3 (a byte a pixel), stream 2 again: 6×4 = 24 bytes, compressed.
    let r = Rect::new(20, 4, 6, 4);
    let pal = [0x111111u32, 0x222222, 0x333333];
    let mut d = vec![0x40 | 0x20, 1, 2];
    for c in pal {
        d.extend(t24(c));
    }
    let idx: Vec<u8> = (0..24u8).map(|i| i % 3).collect();
    d.extend(tight_data(&mut zs[2], &idx));
    rects.push((r, enc::TIGHT, d));
    expect.push((r, idx.iter().map(|&i| pal[usize::from(i)]).collect()));
    // Gradient, stream 3.
    let r = Rect::new(30, 0, 7, 5);
    let px: Vec<u32> = (0..35u32)
        .map(|i| ((i % 7) * 30) << 16 | ((i / 7) * 50) << 8 | (255 - i * 3))
        .collect();
    let mut d = vec![0x40 | 0x30, 2];
    d.extend(tight_data(&mut zs[3], &gradient_filter(7, &px)));
    rects.push((r, enc::TIGHT, d));
    expect.push((r, px));
    // Stream 1 reset (bit 1), then used afresh: a 3-byte compact length (random data).
    zs[1] = Compress::new(Compression::default(), true);
    let r = Rect::new(0, 20, 100, 60);
    let px: Vec<u32> = (0..6000u32)
        .map(|i| i.wrapping_mul(2_654_435_761).rotate_left(7) & 0xffffff)
        .collect();
    let mut d = vec![0x10 | 0x02];
    let data = tight_data(
        &mut zs[1],
        &px.iter().flat_map(|&c| t24(c)).collect::<Vec<_>>(),
    );
    assert!(data[1] & 0x80 != 0, "a 3-byte length");
    d.extend(data);
    rects.push((r, enc::TIGHT, d));
    expect.push((r, px));

    let stream = update(&rects);
    let mut dec = UpdateDecoder::new(&PixelFormat::RGB888).expect("fmt");
    let mut fb = Framebuffer::new(100, 80);
    let mut ev = Vec::new();
    feed_all(&mut dec, &stream, &mut fb, &mut ev).expect("decodes");
    for (r, p) in &expect {
        assert_eq!(&pixels(&fb, *r), p, "rectangle {r:?}");
    }
    assert_eq!(damage(&ev).len(), expect.len());
    for k in (1..stream.len()).step_by(53) {
        let mut dec = UpdateDecoder::new(&PixelFormat::RGB888).expect("fmt");
        let mut fb2 = Framebuffer::new(100, 80);
        for p in [&stream[..k], &stream[k..]] {
            feed_all(&mut dec, p, &mut fb2, &mut Vec::new()).expect("decodes");
        }
        assert!(fb2 == fb, "split at {k}");
    }
    // The small rectangles alone, split at every byte and a byte at a time.
    decode(&PixelFormat::RGB888, 100, 80, &update(&rects[..6]));
}

#[test]
fn tight_in_16bpp_with_gradient() {
    // RGB565: TPIXELs are 2-byte pixels; the gradient works on 5/6/5-bit components.
    let r = Rect::new(0, 0, 3, 2);
    let comps = [
        [31u32, 0, 0],
        [30, 2, 1],
        [29, 4, 2],
        [0, 63, 31],
        [1, 62, 30],
        [2, 61, 29],
    ];
    let max = [31i32, 63, 31];
    let mut filtered = Vec::new();
    for (i, v) in comps.iter().enumerate() {
        let (x, y) = (i % 3, i / 3);
        let get = |x: Option<usize>, y: Option<usize>| match (x, y) {
            (Some(x), Some(y)) => comps[y * 3 + x],
            _ => [0; 3],
        };
        let (l, u, ul) = (
            get(x.checked_sub(1), Some(y)),
            get(Some(x), y.checked_sub(1)),
            get(x.checked_sub(1), y.checked_sub(1)),
        );
        let mut d = [0u32; 3];
        for c in 0..3 {
            let pred = (l[c] as i32 + u[c] as i32 - ul[c] as i32).clamp(0, max[c]);
            d[c] = (v[c] as i32 - pred).rem_euclid(max[c] + 1) as u32;
        }
        filtered.extend(((d[0] << 11 | d[1] << 5 | d[2]) as u16).to_be_bytes());
    }
    let mut z = Compress::new(Compression::default(), true);
    let mut d = vec![0x40, 2];
    d.extend(tight_data(&mut z, &filtered));
    let (fb, _) = decode(&RGB565BE, 3, 2, &update(&[(r, enc::TIGHT, d)]));
    let scale = |c: u32, m: u32| (c * 255).div_ceil(m);
    let want: Vec<u32> = comps
        .iter()
        .map(|c| scale(c[0], 31) << 16 | scale(c[1], 63) << 8 | scale(c[2], 31))
        .collect();
    assert_eq!(pixels(&fb, r), want);
}

#[test]
fn tight_jpeg_and_undefined_types_are_errors() {
    let r = Rect::new(0, 0, 2, 2);
    let e = error(
        &PixelFormat::RGB888,
        4,
        4,
        &update(&[(r, enc::TIGHT, vec![0x90, 1, 0])]),
    );
    assert!(e.to_string().contains("JPEG not negotiated"), "{e}");
    let e = error(
        &PixelFormat::RGB888,
        4,
        4,
        &update(&[(r, enc::TIGHT, vec![0xa0])]),
    );
    assert!(e.to_string().contains("compression type"), "{e}");
    let e = error(
        &PixelFormat::RGB888,
        4,
        4,
        &update(&[(r, enc::TIGHT, vec![0x40, 3])]),
    );
    assert!(e.to_string().contains("filter 3"), "{e}");
    let e = error(&BGR233, 4, 4, &update(&[(r, enc::TIGHT, vec![0x40, 2])]));
    assert!(e.to_string().contains("gradient"), "{e}");
}

#[test]
fn pseudo_encodings() {
    let mut rects = vec![
        (Rect::new(0, 0, 6, 5), enc::DESKTOP_SIZE, vec![]),
        (Rect::new(1, 0, 0, 0), enc::QEMU_EXTENDED_KEY, vec![]),
        (Rect::new(0, 0, 0, 0), enc::LED_STATE, vec![0b101]),
        (Rect::new(1, 0, 0, 0), enc::QEMU_POINTER_MOTION, vec![]),
    ];
    let mut name = 8u32.to_be_bytes().to_vec();
    name.extend("désktop".as_bytes());
    rects.push((Rect::new(0, 0, 0, 0), enc::DESKTOP_NAME, name));
    let mut screens = vec![1, 0, 0, 0];
    for v in [
        7u32.to_be_bytes().to_vec(),
        vec![0, 0, 0, 0, 0, 8, 0, 4],
        0u32.to_be_bytes().to_vec(),
    ] {
        screens.extend(v);
    }
    rects.push((Rect::new(1, 0, 8, 4), enc::EXTENDED_DESKTOP_SIZE, screens));
    // A 9×2 cursor: 18 pixels, then 2 bytes of mask a row.
    let mut cursor: Vec<u8> = (0..18u32).flat_map(p32).collect();
    cursor.extend([0xff, 0x80, 0x00, 0x00]);
    rects.push((Rect::new(4, 1, 9, 2), enc::CURSOR, cursor));
    rects.push((Rect::new(0, 0, 0, 0), enc::CURSOR, vec![]));
    let (fb, ev) = decode(&PixelFormat::RGB888, 3, 3, &update(&rects));
    assert_eq!((fb.width(), fb.height()), (8, 4));
    assert_eq!(
        &ev[..5],
        &[
            Event::Resize {
                width: 6,
                height: 5,
                reason: 0,
                status: 0,
                screens: vec![]
            },
            Event::QemuExtendedKeyEvent,
            Event::LedState(5),
            Event::PointerMotion { absolute: true },
            Event::DesktopName("désktop".into()),
        ]
    );
    assert_eq!(
        ev[5],
        Event::Resize {
            width: 8,
            height: 4,
            reason: 1,
            status: 0,
            screens: vec![Screen {
                id: 7,
                rect: Rect::new(0, 0, 8, 4),
                flags: 0
            }],
        }
    );
    let Event::Cursor(c) = &ev[6] else {
        panic!("a cursor: {:?}", ev[6])
    };
    assert_eq!((c.hotspot_x, c.hotspot_y, c.width, c.height), (4, 1, 9, 2));
    assert_eq!(c.pixels, (0..18).collect::<Vec<u32>>());
    assert_eq!(c.mask, [0xff, 0x80, 0, 0]);
    let Event::Cursor(hidden) = &ev[7] else {
        panic!("a cursor")
    };
    assert!(hidden.pixels.is_empty() && hidden.mask.is_empty());
    assert_eq!(ev[8], Event::UpdateEnd);
}

#[test]
fn last_rect_ends_an_update_of_unknown_length() {
    let mut s = vec![0, 0, 0xff, 0xff];
    for (r, e, d) in [
        (Rect::new(0, 0, 1, 1), enc::RAW, p32(0xabcdef).to_vec()),
        (Rect::new(0, 0, 0, 0), enc::LAST_RECT, vec![]),
    ] {
        for v in [r.x, r.y, r.w, r.h] {
            s.extend(v.to_be_bytes());
        }
        s.extend(e.to_be_bytes());
        s.extend(d);
    }
    s.push(2); // a Bell after it
    let (fb, ev) = decode(&PixelFormat::RGB888, 2, 2, &s);
    assert_eq!(fb.get(0, 0), Some(0xabcdef));
    assert_eq!(
        ev,
        [
            Event::Damage(Rect::new(0, 0, 1, 1)),
            Event::UpdateEnd,
            Event::Bell
        ]
    );
}

#[test]
fn feed_stops_at_the_end_of_each_update() {
    let mut s = update(&[(Rect::new(0, 0, 1, 1), enc::RAW, p32(1).to_vec())]);
    let first = s.len();
    s.extend(update(&[(
        Rect::new(0, 0, 1, 1),
        enc::RAW,
        p32(2).to_vec(),
    )]));
    let mut dec = UpdateDecoder::new(&PixelFormat::RGB888).expect("fmt");
    let mut fb = Framebuffer::new(1, 1);
    let fed = dec.feed(&s, &mut fb).expect("ok");
    assert_eq!((fed.consumed, fb.get(0, 0)), (first, Some(1)));
    let fed = dec.feed(&s[first..], &mut fb).expect("ok");
    assert_eq!((fed.consumed, fb.get(0, 0)), (s.len() - first, Some(2)));
    assert_eq!(update(&[]), [0, 0, 0, 0]);
    let fed = dec.feed(&[0, 0, 0, 0], &mut fb).expect("ok");
    assert_eq!(fed.events, [Event::UpdateEnd]);
}

#[test]
fn server_messages() {
    let mut s = vec![2u8];
    s.extend([3, 0, 0, 0, 0, 0, 0, 3]);
    s.extend(b"a\xe9b");
    s.extend([248, 0, 0, 0, 0x80, 0, 0, 2, 2, 3, 2]);
    s.extend([150]);
    s.extend([255, 1, 0, 1]);
    s.extend([255, 1, 0, 2, 0, 0, 0, 3, 9, 9, 9]);
    s.extend([255, 1, 0, 0]);
    let (_, ev) = decode(&PixelFormat::RGB888, 1, 1, &s);
    assert_eq!(
        ev,
        [
            Event::Bell,
            Event::CutText {
                text: "a\u{e9}b".into(),
                truncated: false
            },
            Event::Fence {
                flags: 0x8000_0002,
                payload: vec![3, 2]
            },
            Event::EndOfContinuousUpdates,
        ]
    );
}

#[test]
fn long_cut_text_is_truncated_not_held() {
    let n = MAX_CUT_TEXT + 1000;
    let mut s = vec![3, 0, 0, 0];
    s.extend((n as u32).to_be_bytes());
    s.extend(std::iter::repeat_n(b'x', n));
    s.push(2);
    let mut dec = UpdateDecoder::new(&PixelFormat::RGB888).expect("fmt");
    let mut fb = Framebuffer::new(1, 1);
    let mut ev = Vec::new();
    for chunk in s.chunks(4096) {
        feed_all(&mut dec, chunk, &mut fb, &mut ev).expect("ok");
        assert!(dec.held_bytes() <= MAX_CUT_TEXT + 128 * 1024);
    }
    let Event::CutText { text, truncated } = &ev[0] else {
        panic!("cut text")
    };
    assert_eq!((text.len(), *truncated), (MAX_CUT_TEXT, true));
    assert_eq!(ev[1], Event::Bell);
    assert!(
        dec.held_bytes() < 64 * 1024,
        "released: {}",
        dec.held_bytes()
    );
}

#[test]
fn errors_name_what_they_saw() {
    let fmt = PixelFormat::RGB888;
    let e = error(&fmt, 4, 4, &[1, 0, 0, 0, 0, 0]);
    assert!(e.to_string().contains("colour map not supported"), "{e}");
    let e = error(&fmt, 4, 4, &[77]);
    assert!(e.to_string().contains("message type 77"), "{e}");
    let e = error(
        &fmt,
        4,
        4,
        &update(&[(Rect::new(2, 3, 4, 4), enc::RAW, vec![])]),
    );
    assert_eq!(
        e.to_string(),
        "Raw rectangle: rectangle 2,3 4x4 is outside the 4x4 screen"
    );
    let e = error(&fmt, 4, 4, &update(&[(Rect::new(0, 0, 1, 1), 2, vec![])]));
    assert!(
        e.to_string()
            .contains("encoding 2, which tcvnc did not ask for"),
        "{e}"
    );
    let e = error(
        &fmt,
        4,
        4,
        &update(&[(Rect::new(0, 0, 1, 1), enc::COPY_RECT, vec![0, 4, 0, 4])]),
    );
    assert!(e.to_string().starts_with("CopyRect rectangle"), "{e}");
    let e = error(
        &fmt,
        4,
        4,
        &update(&[(Rect::new(0, 0, 9000, 1), enc::DESKTOP_SIZE, vec![])]),
    );
    assert!(e.to_string().contains("9000x1"), "{e}");
    let e = error(
        &fmt,
        4,
        4,
        &update(&[(Rect::new(0, 0, 600, 1), enc::CURSOR, vec![])]),
    );
    assert!(e.to_string().contains("600x1 cursor"), "{e}");
    let e = error(&fmt, 4, 4, &[3, 0, 0, 0, 0xff, 0xff, 0xff, 0xf0]);
    assert!(e.to_string().contains("extended clipboard"), "{e}");
    let name = (MAX_NAME + 1).to_be_bytes().to_vec();
    let e = error(
        &fmt,
        4,
        4,
        &update(&[(Rect::new(0, 0, 0, 0), enc::DESKTOP_NAME, name)]),
    );
    assert!(e.to_string().contains("DesktopName of 65537 bytes"), "{e}");
    let mut z = Compress::new(Compression::default(), true);
    let c = deflate(&mut z, &[0u8; 20]);
    let mut data = (c.len() as u32).to_be_bytes().to_vec();
    data.extend(c);
    let e = error(
        &fmt,
        4,
        4,
        &update(&[(Rect::new(0, 0, 2, 2), enc::ZLIB, data)]),
    );
    assert!(
        e.to_string()
            .contains("Zlib data of 17 bytes exceeds the cap of 16"),
        "{e}"
    );
}

/// Decoding speed of a 1920×1080 full update in ZRLE (raw and palette tiles), Tight
/// (copy filter) and Raw. Run with
/// `cargo test --release --lib -- --ignored decode_speed --nocapture`.
#[test]
#[ignore = "a measurement, not a check: run by hand in release mode"]
#[allow(clippy::disallowed_types)] // a wall clock outside tokio, for a measurement
fn decode_speed() {
    let (w, h) = (1920u16, 1080u16);
    let r = Rect::new(0, 0, w, h);
    let colour = |x: usize, y: usize| ((x * 7) ^ (y * 13)) as u32 & 0xffffff;
    // ZRLE: tiles alternate raw and a 16-colour packed palette.
    let mut tiles = Vec::new();
    for ty in (0..usize::from(h)).step_by(64) {
        for tx in (0..usize::from(w)).step_by(64) {
            let (tw, th) = (64.min(usize::from(w) - tx), 64.min(usize::from(h) - ty));
            if (tx / 64 + ty / 64) % 2 == 0 {
                tiles.push(0);
                for y in 0..th {
                    for x in 0..tw {
                        tiles.extend(c24(colour(tx + x, ty + y)));
                    }
                }
            } else {
                tiles.push(16);
                for c in 0..16u32 {
                    tiles.extend(c24(c * 0x0f0f0f));
                }
                for y in 0..th {
                    for x in (0..tw).step_by(2) {
                        tiles.push((((x + y) % 16) << 4 | ((x + y + 1) % 16)) as u8);
                    }
                }
            }
        }
    }
    let mut z = Compress::new(Compression::fast(), true);
    let c = deflate(&mut z, &tiles);
    let mut zrle = (c.len() as u32).to_be_bytes().to_vec();
    zrle.extend(c);
    let pixels: Vec<u8> = (0..r.area())
        .flat_map(|i| t24(colour(i % usize::from(w), i / usize::from(w))))
        .collect();
    // Tight: strips of 1920×32 (servers keep a rectangle's data under the 4 MiB a
    // compact length can say), copy filter on stream 0.
    let mut z = Compress::new(Compression::fast(), true);
    let mut strips = Vec::new();
    for y in (0..h).step_by(32) {
        let strip = Rect::new(0, y, w, 32.min(h - y));
        let from = usize::from(y) * usize::from(w) * 3;
        let c = deflate(&mut z, &pixels[from..from + strip.area() * 3]);
        let n = c.len();
        let mut d = vec![0x00, (n & 0x7f) as u8 | 0x80, (n >> 7 & 0x7f) as u8 | 0x80];
        d.push((n >> 14) as u8);
        d.extend(c);
        strips.push((strip, enc::TIGHT, d));
    }
    let raw: Vec<u8> = (0..r.area())
        .flat_map(|i| p32(colour(i % usize::from(w), i / usize::from(w))))
        .collect();
    let updates = [
        ("ZRLE", update(&[(r, enc::ZRLE, zrle)])),
        ("Tight", update(&strips)),
        ("Raw", update(&[(r, enc::RAW, raw)])),
    ];
    for (name, stream) in updates {
        let mut dec = UpdateDecoder::new(&PixelFormat::RGB888).expect("fmt");
        let mut fb = Framebuffer::new(w, h);
        let t = std::time::Instant::now();
        let rounds = 20;
        for _ in 0..rounds {
            let mut dec2 = UpdateDecoder::new(&PixelFormat::RGB888).expect("fmt");
            feed_all(&mut dec2, &stream, &mut fb, &mut Vec::new()).expect("decodes");
        }
        let per = t.elapsed() / rounds;
        feed_all(&mut dec, &stream, &mut fb, &mut Vec::new()).expect("decodes");
        eprintln!("{name}: {} bytes, {per:?} a 1920x1080 update", stream.len());
    }
}
