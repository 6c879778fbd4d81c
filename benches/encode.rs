//! Console-mode encoder throughput: one viewer's full-screen update of a 1920×1080
//! desktop-like screen (tests/rfbref's synthetic desktop) in each encoding, through one
//! encoder (persistent zlib streams), alternating two screens that differ in a moving
//! region. Prints milliseconds per frame, MB/s of framebuffer input (4 bytes a pixel)
//! and the bytes sent per frame; first, the memory an idle viewer's encoder keeps (resident
//! set growth over 50 encoders that each started their zlib stream and released their
//! buffers). `cargo bench --bench encode [-- FRAMES] [CASE-WORD]`.
//!
//! Issue 15's fan-out goal (50 viewers × 10 full-screen updates/s on 2 cores) leaves
//! about 4 ms per viewer-frame if each viewer is encoded on its own; the "shared" cases
//! are Tight's shared mode, where one encode serves every viewer of the same format and
//! levels (`Encoder::enable_shared_tight`).

#[path = "../tests/rfbref/mod.rs"]
mod rfbref;

use tcvnc::console::encode::{update_header, Encoder, Encoding};
use tcvnc::console::fb::Rect;
use tcvnc::rfb::messages::PixelFormat;

/// Resident set size in KiB (Linux), 0 where unknown.
fn rss_kib() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4)
}

#[allow(clippy::disallowed_types)] // wall time of a CPU-bound loop, outside tokio
fn now() -> std::time::Instant {
    std::time::Instant::now()
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let frames: u32 = args.iter().find_map(|a| a.parse().ok()).unwrap_or(20);
    // A word that is not a number keeps only the cases whose name contains it.
    let only = args.iter().find(|a| a.parse::<u32>().is_err());
    let (w, h) = (1920u16, 1080u16);
    let a = rfbref::desktop(w, h);
    let mut b = a.clone();
    b.fill(Rect::new(400, 300, 500, 200), 0x0020_4060)
        .expect("in the screen");
    let screens = [a, b];
    let rgb888 = PixelFormat {
        bits_per_pixel: 32,
        depth: 24,
        big_endian: false,
        true_colour: true,
        red_max: 255,
        green_max: 255,
        blue_max: 255,
        red_shift: 16,
        green_shift: 8,
        blue_shift: 0,
    };
    let rgb565 = PixelFormat {
        bits_per_pixel: 16,
        depth: 16,
        red_max: 31,
        green_max: 63,
        blue_max: 31,
        red_shift: 11,
        green_shift: 5,
        blue_shift: 0,
        ..rgb888
    };
    // Levels are RFB compression levels (−256 + n); noVNC sends 2 and quality 6.
    let cases: [(&str, PixelFormat, &[i32], Encoding); 12] = [
        ("raw rgb888", rgb888, &[0], Encoding::Raw),
        ("raw rgb565", rgb565, &[0], Encoding::Raw),
        ("hextile rgb888", rgb888, &[5], Encoding::Hextile),
        ("zrle rgb888 level 2", rgb888, &[16, -254], Encoding::Zrle),
        ("zrle rgb888 level 6", rgb888, &[16, -250], Encoding::Zrle),
        ("zrle rgb565 level 2", rgb565, &[16, -254], Encoding::Zrle),
        ("tight rgb888 level 2", rgb888, &[7, -254], Encoding::Tight),
        ("tight rgb888 level 6", rgb888, &[7, -250], Encoding::Tight),
        (
            "tight rgb888 jpeg q6",
            rgb888,
            &[7, -254, -26],
            Encoding::Tight,
        ),
        ("tight rgb565 level 2", rgb565, &[7, -254], Encoding::Tight),
        (
            "tight rgb888 level 2 shared",
            rgb888,
            &[7, -254],
            Encoding::Tight,
        ),
        (
            "tight rgb888 jpeg q6 shared",
            rgb888,
            &[7, -254, -26],
            Encoding::Tight,
        ),
    ];
    // Memory an idle viewer keeps: translators, negotiated state and its zlib stream.
    for (name, list, enc) in [
        ("zrle", &[16, -254][..], Encoding::Zrle),
        ("tight", &[7, -254][..], Encoding::Tight),
    ] {
        let before = rss_kib();
        let mut viewers = Vec::new();
        for _ in 0..50 {
            let mut e = Encoder::new(rgb888).expect("format");
            e.set_encodings(list);
            // A small rectangle: enough to start the zlib stream.
            let mut out = Vec::new();
            e.encode_as(enc, &screens[0], Rect::new(0, 0, 64, 64), &mut out)
                .expect("encode");
            e.release_buffers();
            viewers.push(e);
        }
        let per = rss_kib().saturating_sub(before) / viewers.len();
        println!("idle {name} viewer: about {per} KiB (resident growth over 50 viewers)");
    }
    let input = f64::from(w) * f64::from(h) * 4.0;
    println!("1920x1080 desktop-like screen, {frames} frames each, one encoder per case");
    println!(
        "{:<24} {:>10} {:>10} {:>12}",
        "case", "ms/frame", "MB/s", "bytes/frame"
    );
    let mut out = Vec::new();
    for (name, pf, list, enc) in cases {
        if only.is_some_and(|o| !name.contains(o.as_str())) {
            continue;
        }
        let mut e = Encoder::new(pf).expect("format");
        e.set_encodings(list);
        if name.ends_with("shared") {
            e.enable_shared_tight();
        }
        // One warm-up frame.
        out.clear();
        e.encode_as(enc, &screens[0], screens[0].bounds(), &mut out)
            .expect("encode");
        let mut bytes = 0usize;
        let t = now();
        for i in 0..frames {
            let fb = &screens[(i % 2) as usize];
            out.clear();
            update_header(0, &mut out);
            e.encode_as(enc, fb, fb.bounds(), &mut out).expect("encode");
            bytes += out.len();
        }
        let secs = t.elapsed().as_secs_f64();
        let per = secs / f64::from(frames);
        println!(
            "{name:<24} {:>10.2} {:>10.0} {:>12}",
            per * 1e3,
            input / per / 1e6,
            bytes / frames as usize
        );
    }
    // ZRLE made once per update: each viewer only compresses the shared tile data.
    {
        let mut e = Encoder::new(rgb888).expect("format");
        e.set_encodings(&[16, -254]);
        let mut plain = Vec::new();
        let t = now();
        for i in 0..frames {
            let fb = &screens[(i % 2) as usize];
            plain.clear();
            e.zrle_tiles(fb, fb.bounds(), &mut plain).expect("tiles");
        }
        let tiles = t.elapsed().as_secs_f64() / f64::from(frames);
        let mut out = Vec::new();
        let t = now();
        for _ in 0..frames {
            out.clear();
            e.zrle_from_tiles(screens[0].bounds(), &plain, &mut out)
                .expect("deflate");
        }
        let deflate = t.elapsed().as_secs_f64() / f64::from(frames);
        println!(
            "zrle rgb888 level 2 in halves: tiles {:.2} ms once per update, then {:.2} ms per viewer ({} bytes of tile data)",
            tiles * 1e3,
            deflate * 1e3,
            plain.len()
        );
    }
}
