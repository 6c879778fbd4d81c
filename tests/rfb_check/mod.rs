//! Checks shared by `rfb_fixtures.rs` (the committed captures) and `e2e_decode.rs`
//! (fresh captures from the servers installed): decode every capture of a server and
//! compare it with the same server's Raw capture.
#![allow(dead_code)] // each test crate uses part of it

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use tcvnc::console::decode::{Event, UpdateDecoder};
use tcvnc::console::fb::Framebuffer;
use tcvnc::rfb::messages::PixelFormat;

/// The committed fixtures.
pub fn committed() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/rfb")
}

/// A fixture: the screen size and format it was captured in, and the server's bytes.
pub struct Capture {
    width: u16,
    height: u16,
    format: PixelFormat,
    stream: Vec<u8>,
}

pub fn load(path: &Path) -> Capture {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).expect("open"))
        .read_to_end(&mut raw)
        .expect("gunzip");
    let be16 = |i: usize| u16::from_be_bytes([raw[i], raw[i + 1]]);
    let name_len = u32::from_be_bytes([raw[20], raw[21], raw[22], raw[23]]) as usize;
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
    Capture {
        width: be16(0),
        height: be16(2),
        format,
        stream: raw[24 + name_len..].to_vec(),
    }
}

/// Decodes `c` fed in `pieces` (by length); returns the screen, the events and the
/// largest `held_bytes` seen.
pub fn decode(c: &Capture, pieces: &[usize]) -> (Framebuffer, Vec<Event>, usize) {
    let mut dec = UpdateDecoder::new(&c.format).expect("format");
    let mut fb = Framebuffer::new(c.width, c.height);
    let mut events = Vec::new();
    let mut held = 0;
    let mut rest: &[u8] = &c.stream;
    let mut sizes = pieces.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap_or(&usize::MAX)).clamp(1, rest.len());
        let mut piece = &rest[..n];
        while !piece.is_empty() {
            let fed = dec.feed(piece, &mut fb).expect("decodes");
            events.extend(fed.events);
            piece = &piece[fed.consumed..];
        }
        held = held.max(dec.held_bytes());
        rest = &rest[n..];
    }
    assert!(
        dec.at_message_boundary(),
        "the capture ends between messages"
    );
    (fb, events, held)
}

/// Every fixture in `dir`, grouped by server and format: `{"xvnc-rgb888": {"raw": path, …}}`.
pub fn fixtures(dir: &Path) -> BTreeMap<String, BTreeMap<String, PathBuf>> {
    let mut all: BTreeMap<String, BTreeMap<String, PathBuf>> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("the fixtures' directory") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let Some(stem) = name.strip_suffix(".rfb.gz") else {
            continue;
        };
        let Some((group, encoding)) = stem.rsplit_once('-') else {
            continue;
        };
        all.entry(group.into())
            .or_default()
            .insert(encoding.into(), path.clone());
    }
    all
}

/// The fixtures each server gives (`scripts/rfb-capture`): a missing one fails.
pub const EXPECTED: &[(&str, &[&str])] = &[
    ("qemu-rgb888", &["raw", "hextile", "zlib", "tight", "zrle"]),
    (
        "x11vnc-rgb888",
        &["raw", "hextile", "zlib", "tight", "zrle"],
    ),
    (
        "x11vnc-bgr233",
        &["raw", "hextile", "zlib", "tight", "zrle"],
    ),
    (
        "xvnc-rgb888",
        &["raw", "hextile", "tight", "zrle", "pseudo"],
    ),
    ("xvnc-rgb565be", &["raw", "hextile", "tight", "zrle"]),
];

/// Each of `servers`' encodings in `dir` decodes to exactly its Raw capture's pixels;
/// the update covers the whole screen, which is not blank. The `pseudo` capture (Raw
/// with every pseudo-encoding) also tells the screen's size and layout, and may differ
/// from Raw only where the cursor is (a server draws it into the pixels for a client
/// without the Cursor pseudo-encoding).
pub fn every_encoding_matches_raw(dir: &Path, servers: &[&str]) {
    let all = fixtures(dir);
    for (group, encodings) in EXPECTED {
        if !servers.iter().any(|s| group.starts_with(&format!("{s}-"))) {
            continue;
        }
        let found = all
            .get(*group)
            .unwrap_or_else(|| panic!("no {group} fixtures"));
        let raw = load(&found["raw"]);
        let (want, _, _) = decode(&raw, &[usize::MAX]);
        let distinct: std::collections::BTreeSet<u32> = want.pixels().iter().copied().collect();
        assert!(distinct.len() >= 2, "{group}: the raw screen has content");
        for encoding in *encodings {
            let path = found
                .get(*encoding)
                .unwrap_or_else(|| panic!("no {group}-{encoding} fixture"));
            let c = load(path);
            let (fb, events, _) = decode(&c, &[usize::MAX]);
            let mut covered = vec![false; fb.pixels().len()];
            for e in &events {
                if let Event::Damage(r) = e {
                    for y in r.y..r.y + r.h {
                        for x in r.x..r.x + r.w {
                            covered[usize::from(y) * usize::from(fb.width()) + usize::from(x)] =
                                true;
                        }
                    }
                }
            }
            assert!(
                covered.iter().all(|&c| c),
                "{group}-{encoding}: a full update"
            );
            assert!(
                events.contains(&Event::UpdateEnd),
                "{group}-{encoding}: the update ends"
            );
            assert_eq!(
                (fb.width(), fb.height()),
                (want.width(), want.height()),
                "{group}-{encoding}: size"
            );
            if *encoding == "pseudo" {
                pseudo(group, &fb, &want, &events);
                continue;
            }
            let diff = fb
                .pixels()
                .iter()
                .zip(want.pixels())
                .position(|(a, b)| a != b);
            if let Some(i) = diff {
                let w = usize::from(fb.width());
                panic!(
                    "{group}-{encoding}: pixel ({}, {}) is {:06x}, Raw has {:06x}",
                    i % w,
                    i / w,
                    fb.pixels()[i],
                    want.pixels()[i]
                );
            }
        }
    }
}

/// Every fixture in `dir` fed in uneven pieces (1 to 4099 bytes, a fixed pseudo-random
/// walk) decodes to the same screen as fed whole, holding little between feeds.
pub fn same_in_pieces(dir: &Path) {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut pieces = Vec::new();
    for _ in 0..257 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        pieces.push(match seed % 4 {
            0 => 1,
            1 => (seed >> 8) as usize % 16 + 1,
            _ => (seed >> 8) as usize % 4099 + 1,
        });
    }
    for (group, found) in fixtures(dir) {
        for (encoding, path) in found {
            let c = load(&path);
            let (whole, events, _) = decode(&c, &[usize::MAX]);
            let (split, split_events, held) = decode(&c, &pieces);
            assert!(split == whole, "{group}-{encoding}: same screen in pieces");
            assert_eq!(split_events, events, "{group}-{encoding}: same events");
            assert!(
                held <= 5 * 1024 * 1024,
                "{group}-{encoding}: held {held} bytes between feeds"
            );
        }
    }
}

/// The pseudo-encodings a server sent with Raw: the screen's size (ExtendedDesktopSize
/// with its screens), QEMU's extended key events and LED state where the server has them,
/// a valid cursor; the pixels equal Raw's outside a cursor-sized box.
fn pseudo(group: &str, fb: &Framebuffer, raw: &Framebuffer, events: &[Event]) {
    let resized = events.iter().any(|e| {
        matches!(e, Event::Resize { width, height, screens, .. }
            if (*width, *height) == (fb.width(), fb.height()) && screens.len() == 1)
    });
    assert!(
        resized,
        "{group}-pseudo: ExtendedDesktopSize with one screen"
    );
    if !group.starts_with("x11vnc") {
        assert!(
            events.contains(&Event::QemuExtendedKeyEvent),
            "{group}-pseudo: QEMU keys"
        );
        assert!(
            events.iter().any(|e| matches!(e, Event::LedState(_))),
            "{group}-pseudo: LEDs"
        );
    }
    let cursor = events.iter().rev().find_map(|e| match e {
        Event::Cursor(c) => Some(c),
        _ => None,
    });
    if group.starts_with("x11vnc") {
        let c = cursor.expect("x11vnc sends its cursor");
        assert!(
            c.width > 0 && c.mask.iter().any(|&b| b != 0),
            "{group}: a visible cursor"
        );
    }
    if let Some(c) = cursor {
        assert_eq!(c.pixels.len(), usize::from(c.width) * usize::from(c.height));
        assert_eq!(
            c.mask.len(),
            usize::from(c.width).div_ceil(8) * usize::from(c.height)
        );
        assert!(
            c.hotspot_x <= c.width && c.hotspot_y <= c.height,
            "{group}: hotspot"
        );
    }
    let w = usize::from(fb.width());
    let differ: Vec<usize> = (0..fb.pixels().len())
        .filter(|&i| fb.pixels()[i] != raw.pixels()[i])
        .collect();
    if let (Some(&first), Some(&last)) = (differ.first(), differ.last()) {
        let (xs, ys) = (differ.iter().map(|i| i % w), differ.iter().map(|i| i / w));
        let (x0, x1) = (xs.clone().min().unwrap_or(0), xs.max().unwrap_or(0));
        let (y0, y1) = (ys.clone().min().unwrap_or(0), ys.max().unwrap_or(0));
        let (cw, ch) = cursor.map_or((0, 0), |c| (usize::from(c.width), usize::from(c.height)));
        assert!(
            x1 - x0 < cw && y1 - y0 < ch,
            "{group}-pseudo: pixels {first}..{last} differ from Raw in {}x{}, beyond a {cw}x{ch} cursor",
            x1 - x0 + 1,
            y1 - y0 + 1
        );
    }
}
