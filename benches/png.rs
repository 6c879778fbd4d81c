//! Screenshot encoding time: a 1920×1080 screen as a PNG (`console::png::encode`), for a
//! desktop-like screen (tests/rfbref's synthetic desktop), a text console (black with
//! sparse glyphs) and noise (the worst case). Prints milliseconds per image (median and
//! worst) and the PNG's size; then, for comparison, other settings of the `png` crate on
//! the desktop (flate2's zlib levels stand for a hand-written encoder on flate2).
//! `cargo bench --bench png [-- IMAGES]`.

#[path = "../tests/rfbref/mod.rs"]
mod rfbref;

use tcvnc::console::fb::{Framebuffer, Rect};

#[allow(clippy::disallowed_types)] // wall time of a CPU-bound loop, outside tokio
fn now() -> std::time::Instant {
    std::time::Instant::now()
}

/// Black with grey 6×13 glyph-like strokes on 80% of the text rows, as a Linux console.
fn text_console(w: u16, h: u16) -> Framebuffer {
    let mut fb = Framebuffer::new(w, h);
    let mut seed = 0x2545_f491u32;
    for row in 0..h / 16 {
        if row % 5 == 4 {
            continue;
        }
        for col in 0..(w / 8) * 2 / 3 {
            for dy in 2..14u16 {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let bits = seed & 0x3f;
                for dx in 0..6u16 {
                    if bits & (1 << dx) != 0 {
                        let r = Rect::new(col * 8 + dx, row * 16 + dy, 1, 1);
                        fb.fill(r, 0x00aa_aaaa).expect("in the screen");
                    }
                }
            }
        }
    }
    fb
}

fn noise(w: u16, h: u16) -> Framebuffer {
    let mut fb = Framebuffer::new(w, h);
    let mut seed = 0x9e37_79b9u32;
    let px: Vec<u32> = (0..usize::from(w) * usize::from(h))
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed & 0x00ff_ffff
        })
        .collect();
    fb.put(fb.bounds(), &px).expect("fits");
    fb
}

/// The desktop through the `png` crate with other settings, timed the same way.
fn alternative(fb: &Framebuffer, deflate: png::DeflateCompression, filter: png::Filter) -> Vec<u8> {
    let r = fb.bounds();
    let mut rgb = Vec::with_capacity(r.area() * 3);
    for dy in 0..r.h {
        for &p in fb.row(r, dy) {
            rgb.extend_from_slice(&[(p >> 16) as u8, (p >> 8) as u8, p as u8]);
        }
    }
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, u32::from(r.w), u32::from(r.h));
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_deflate_compression(deflate);
    enc.set_filter(filter);
    let mut w = enc.write_header().expect("header");
    w.write_image_data(&rgb).expect("data");
    w.finish().expect("finish");
    out
}

fn report(name: &str, images: usize, raw: usize, mut encode: impl FnMut() -> Vec<u8>) {
    let mut times = Vec::with_capacity(images);
    let mut size = 0;
    for _ in 0..images {
        let t = now();
        size = encode().len();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{name:>26}: median {:6.2} ms, worst {:6.2} ms, {:8} bytes ({:.1}% of RGB)",
        times[times.len() / 2],
        times[times.len() - 1],
        size,
        size as f64 * 100.0 / raw as f64
    );
}

fn main() {
    let images: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(30);
    let (w, h) = (1920u16, 1080u16);
    let cases = [
        ("desktop", rfbref::desktop(w, h)),
        ("text console", text_console(w, h)),
        ("noise", noise(w, h)),
    ];
    let raw = usize::from(w) * usize::from(h) * 3;
    println!("PNG of a {w}x{h} screen, {images} images a case");
    for (name, fb) in &cases {
        report(name, images, raw, || {
            tcvnc::console::png::encode(fb).expect("encodes")
        });
    }
    use png::{DeflateCompression as D, Filter as F};
    for (name, fb) in &cases {
        println!("other settings, {name}:");
        for (setting, d, f) in [
            ("fdeflate, adaptive", D::FdeflateUltraFast, F::Adaptive),
            ("fdeflate, Up", D::FdeflateUltraFast, F::Up),
            ("zlib 1, Up", D::Level(1), F::Up),
            ("zlib 1, Sub", D::Level(1), F::Sub),
            ("zlib 1, adaptive", D::Level(1), F::Adaptive),
            ("zlib 6, adaptive", D::Level(6), F::Adaptive),
        ] {
            report(setting, images, raw, || alternative(fb, d, f));
        }
    }
}
