//! Fuzzing (proptest, like `fuzz_parsers.rs`) of the console decoder: random bytes,
//! random but well-framed updates (every encoding, valid zlib around random tile bytes),
//! and the real-server fixtures mutated. None may panic, and between feeds the decoder
//! must hold little (`held_bytes`). `PROPTEST_CASES` raises the case count.

use std::io::Read;
use std::path::Path;

use flate2::{Compress, Compression, FlushCompress};
use proptest::prelude::*;
use tcvnc::console::decode::{encoding as enc, UpdateDecoder};
use tcvnc::console::fb::Framebuffer;
use tcvnc::rfb::messages::PixelFormat;

fn cases(default: u32) -> ProptestConfig {
    let n = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases: n,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// What the decoder may hold between feeds beyond one rectangle's inflated data: a
/// minimal inflate buffer (64 KiB), four Tight streams, a partial step.
const HELD_LIMIT: usize = 1024 * 1024;

const FORMATS: [PixelFormat; 3] = [
    PixelFormat::true_colour(32, 24, false, [255, 255, 255], [16, 8, 0]),
    PixelFormat::true_colour(16, 16, true, [31, 63, 31], [11, 5, 0]),
    PixelFormat::true_colour(8, 8, false, [7, 7, 3], [0, 3, 6]),
];

/// Feeds `data` in pieces of `split` bytes until it is used up or an error; asserts the
/// decoder's holdings stay bounded: [`HELD_LIMIT`], twice what it was fed (cut text
/// grows by doubling) and the most a whole-screen rectangle can inflate to (ZRLE's
/// worst case is under 2 bytes a pixel more than Raw).
fn run(format: &PixelFormat, w: u16, h: u16, data: &[u8], split: usize) {
    let mut dec = UpdateDecoder::new(format).expect("format");
    let mut fb = Framebuffer::new(w, h);
    let screen = usize::from(w) * usize::from(h) * (usize::from(format.bits_per_pixel) / 8 + 2);
    for piece in data.chunks(split.max(1)) {
        let mut piece = piece;
        while !piece.is_empty() {
            match dec.feed(piece, &mut fb) {
                Ok(fed) => piece = &piece[fed.consumed..],
                Err(_) => return,
            }
        }
        assert!(
            dec.held_bytes() <= HELD_LIMIT + 2 * data.len() + screen,
            "held {} bytes",
            dec.held_bytes()
        );
    }
}

fn zlib(z: &mut Compress, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() * 2 + 64);
    let _ = z.compress_vec(data, &mut out, FlushCompress::Sync);
    out
}

/// A rectangle to frame: encoding (index into the list), x, y, w, h, payload, and a
/// byte that picks Tight's stream and filter.
type FramedRect = (u8, u16, u16, u16, u16, Vec<u8>, u8);

/// A well-framed update: rectangles of every encoding, mostly on the screen, with
/// random payloads (wrapped in valid zlib where the encoding uses it).
fn framed_update(rects: &[FramedRect]) -> Vec<u8> {
    const ENCODINGS: [i32; 14] = [
        enc::RAW,
        enc::COPY_RECT,
        enc::HEXTILE,
        enc::ZLIB,
        enc::TIGHT,
        enc::ZRLE,
        enc::DESKTOP_SIZE,
        enc::LAST_RECT,
        enc::CURSOR,
        enc::QEMU_EXTENDED_KEY,
        enc::LED_STATE,
        enc::DESKTOP_NAME,
        enc::EXTENDED_DESKTOP_SIZE,
        enc::QEMU_POINTER_MOTION,
    ];
    let mut zlib_stream = Compress::new(Compression::fast(), true);
    let mut zrle_stream = Compress::new(Compression::fast(), true);
    let mut tight: Vec<Compress> = (0..4)
        .map(|_| Compress::new(Compression::fast(), true))
        .collect();
    let mut b = vec![0, 0];
    b.extend((rects.len() as u16).to_be_bytes());
    for (which, x, y, w, h, payload, control) in rects {
        let encoding = ENCODINGS[usize::from(*which) % ENCODINGS.len()];
        for v in [*x, *y, *w, *h] {
            b.extend(v.to_be_bytes());
        }
        b.extend(encoding.to_be_bytes());
        match encoding {
            enc::ZLIB | enc::ZRLE => {
                let z = if encoding == enc::ZLIB {
                    &mut zlib_stream
                } else {
                    &mut zrle_stream
                };
                let c = zlib(z, payload);
                b.extend((c.len() as u32).to_be_bytes());
                b.extend(c);
            }
            enc::TIGHT => {
                // A basic rectangle on a random stream with a random filter byte; a
                // compact length and valid zlib around the random bytes.
                let stream = usize::from(control >> 4 & 3);
                b.push(control & 0x7f | 0x40);
                b.push(control % 3);
                if control % 3 == 1 {
                    b.push(control.wrapping_mul(7));
                    b.extend(std::iter::repeat_n(
                        0x55,
                        usize::from(control.wrapping_mul(7)) * 3 + 3,
                    ));
                }
                let c = zlib(&mut tight[stream], payload);
                let n = c.len().min(0x3f_ffff);
                b.push((n & 0x7f) as u8 | 0x80);
                b.push((n >> 7 & 0x7f) as u8 | 0x80);
                b.push((n >> 14) as u8);
                b.extend(&c[..n]);
            }
            _ => b.extend(payload),
        }
    }
    b
}

proptest! {
    #![proptest_config(cases(1000))]

    /// Any bytes, in any format, fed in any pieces: no panic, little held.
    #[test]
    fn any_bytes(data in proptest::collection::vec(any::<u8>(), 0..3000), f in 0usize..3, split in 1usize..700) {
        run(&FORMATS[f], 64, 48, &data, split);
    }

    /// Bytes that start like an update and a rectangle, so the encodings' own parsers
    /// see the random rest.
    #[test]
    fn any_rectangle(which in 0u8..14, x in 0u16..70, y in 0u16..50, w in 0u16..70, h in 0u16..50,
                     payload in proptest::collection::vec(any::<u8>(), 0..3000),
                     f in 0usize..3, split in 1usize..700, control in any::<u8>()) {
        let data = framed_update(&[(which, x, y, w, h, payload, control)]);
        run(&FORMATS[f], 64, 48, &data, split);
    }

    /// Several framed rectangles on the connection's persistent streams.
    #[test]
    fn framed_updates(rects in proptest::collection::vec(
                        (0u8..14, 0u16..64, 0u16..48, 0u16..40, 0u16..40,
                         proptest::collection::vec(any::<u8>(), 0..600), any::<u8>()), 1..6),
                      f in 0usize..3, split in 1usize..300) {
        let data = framed_update(&rects);
        run(&FORMATS[f], 64, 48, &data, split);
    }
}

/// The real-server fixtures, decompressed.
fn fixtures() -> Vec<(PixelFormat, u16, u16, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/rfb");
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return out;
    };
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if !path.to_string_lossy().ends_with(".rfb.gz") {
            continue;
        }
        let mut raw = Vec::new();
        let file = std::fs::File::open(&path).expect("open");
        flate2::read::GzDecoder::new(file)
            .read_to_end(&mut raw)
            .expect("gunzip");
        let f = &raw[4..20];
        let format = PixelFormat {
            bits_per_pixel: f[0],
            depth: f[1],
            big_endian: f[2] != 0,
            true_colour: f[3] != 0,
            red_max: u16::from_be_bytes([f[4], f[5]]),
            green_max: u16::from_be_bytes([f[6], f[7]]),
            blue_max: u16::from_be_bytes([f[8], f[9]]),
            red_shift: f[10],
            green_shift: f[11],
            blue_shift: f[12],
        };
        let name_len = u32::from_be_bytes([raw[20], raw[21], raw[22], raw[23]]) as usize;
        let (w, h) = (
            u16::from_be_bytes([raw[0], raw[1]]),
            u16::from_be_bytes([raw[2], raw[3]]),
        );
        out.push((format, w, h, raw[24 + name_len..].to_vec()));
    }
    out
}

proptest! {
    #![proptest_config(cases(400))]

    /// A fixture with a few bytes changed, inserted or cut: no panic, little held.
    #[test]
    fn mutated_fixtures(pick in any::<usize>(), edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..6), split in 1usize..5000) {
        let all = fixtures();
        prop_assume!(!all.is_empty());
        let (format, w, h, mut data) = all[pick % all.len()].clone();
        for (at, byte, kind) in edits {
            // Bias edits to the first bytes, where the headers are.
            let at = if at % 2 == 0 { at % data.len().clamp(1, 64) } else { at % data.len().max(1) };
            match kind {
                0 if at < data.len() => data[at] = byte,
                1 => data.insert(at.min(data.len()), byte),
                _ => data.truncate(at),
            }
        }
        run(&format, w, h, &data, split);
    }
}
