//! Console-mode encoders against an independent decoder (`tests/rfbref`, written from the
//! protocol document): every encoding in every pixel format tcvnc serves, on a
//! desktop-like screen, decodes back to the framebuffer exactly (Tight JPEG within a
//! small error); refused formats are refused with a reason and never panic.

mod rfbref;

use proptest::prelude::*;
use rfbref::{desktop, Viewer};
use tcvnc::console::encode::{
    check_format, desktop_name, desktop_size, extended_desktop_size, update_header, CursorImage,
    EncodeError, Encoder, Encoding, FormatError, Screen, SizeReason,
};
use tcvnc::console::fb::{Framebuffer, Rect};
use tcvnc::rfb::messages::PixelFormat;

/// Formats viewers send, and odd ones the spec allows.
fn formats() -> Vec<(&'static str, PixelFormat)> {
    vec![
        (
            "rgb888-le",
            PixelFormat::true_colour(32, 24, false, [255; 3], [16, 8, 0]),
        ),
        (
            "rgb888-be",
            PixelFormat::true_colour(32, 24, true, [255; 3], [16, 8, 0]),
        ),
        (
            "rgbx-le",
            PixelFormat::true_colour(32, 24, false, [255; 3], [0, 8, 16]),
        ),
        (
            "high-le",
            PixelFormat::true_colour(32, 24, false, [255; 3], [24, 16, 8]),
        ),
        (
            "high-be",
            PixelFormat::true_colour(32, 24, true, [255; 3], [8, 16, 24]),
        ),
        (
            "depth32-le",
            PixelFormat::true_colour(32, 32, false, [255; 3], [16, 8, 0]),
        ),
        (
            "rgb101010-be",
            PixelFormat::true_colour(32, 30, true, [1023; 3], [20, 10, 0]),
        ),
        (
            "rgb565-le",
            PixelFormat::true_colour(16, 16, false, [31, 63, 31], [11, 5, 0]),
        ),
        (
            "rgb565-be",
            PixelFormat::true_colour(16, 16, true, [31, 63, 31], [11, 5, 0]),
        ),
        (
            "rgb555-be",
            PixelFormat::true_colour(16, 15, true, [31, 31, 31], [10, 5, 0]),
        ),
        (
            "bgr444-le",
            PixelFormat::true_colour(16, 12, false, [15, 15, 15], [0, 4, 8]),
        ),
        (
            "bgr233",
            PixelFormat::true_colour(8, 8, false, [7, 7, 3], [0, 3, 6]),
        ),
        (
            "rgb332-be",
            PixelFormat::true_colour(8, 8, true, [7, 7, 3], [5, 2, 0]),
        ),
    ]
}

const ENCODINGS: [Encoding; 4] = [
    Encoding::Raw,
    Encoding::Hextile,
    Encoding::Zrle,
    Encoding::Tight,
];

/// One FramebufferUpdate of `rects`, each in `enc`.
fn update(e: &mut Encoder, enc: Encoding, fb: &Framebuffer, rects: &[Rect]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut n = 0u16;
    for &r in rects {
        n += e.encode_as(enc, fb, r, &mut body).expect("encode");
    }
    let mut msg = Vec::new();
    update_header(n, &mut msg);
    msg.extend_from_slice(&body);
    msg
}

/// 32-bit little-endian true colour, red in the third byte: the format most tests here
/// serve.
fn rgb32() -> PixelFormat {
    PixelFormat::true_colour(32, 24, false, [255; 3], [16, 8, 0])
}

/// A 320×240 desktop and the same with one rectangle changed: two screens that share most
/// of their pixels, so a zlib stream that carries over refers back between them.
fn desktop_and_changed() -> (Framebuffer, Framebuffer) {
    let fb = desktop(320, 240);
    let mut changed = fb.clone();
    changed
        .fill(Rect::new(30, 40, 100, 50), 0x0012_3456)
        .expect("fill");
    (fb, changed)
}

/// The viewer's screen equals `fb` within `r` (channel bits only; padding is free).
fn assert_same(v: &Viewer, fb: &Framebuffer, r: Rect, what: &str) {
    let mask = v.used_mask();
    let mut bad = 0;
    let mut first = None;
    for y in r.y..r.y + r.h {
        for x in r.x..r.x + r.w {
            let p = fb.get(x, y).expect("in fb");
            let want = v.value_of_rgb((p >> 16) as u8, (p >> 8) as u8, p as u8) & mask;
            let got = v.screen[usize::from(y) * usize::from(v.width) + usize::from(x)] & mask;
            if got != want {
                bad += 1;
                first.get_or_insert((x, y, got, want));
            }
        }
    }
    assert_eq!(bad, 0, "{what}: {bad} pixels differ, first {first:x?}");
}

fn decode(v: &mut Viewer, msg: &[u8], what: &str) {
    let used = v
        .update(msg)
        .unwrap_or_else(|e| panic!("{what}: decode: {e}"));
    assert_eq!(used, msg.len(), "{what}: trailing bytes");
}

/// Every encoding × every format: several updates on one connection (the zlib streams
/// carry over), partial and edge rectangles, the screen changing between updates.
#[test]
fn every_encoding_in_every_format_decodes_exactly() {
    let (w, h) = (300u16, 200u16);
    for (name, f) in formats() {
        for enc in ENCODINGS {
            let what = format!("{name} {enc:?}");
            let mut fb = desktop(w, h);
            let mut e = Encoder::new(f).unwrap_or_else(|err| panic!("{what}: {err}"));
            e.set_encodings(&[enc.id()]);
            let mut v = Viewer::new(f, w, h);
            let rects = [
                fb.bounds(),
                Rect::new(13, 7, 200, 100),
                Rect::new(w - 1, h - 1, 1, 1),
                Rect::new(0, h - 10, w, 10),
                Rect::new(64, 64, 65, 17),
            ];
            for (i, &r) in rects.iter().enumerate() {
                // Change part of the screen, then send it.
                fb.fill(
                    Rect::new(20 + i as u16 * 9, 30, 40, 20),
                    0x0011_2233 * (i as u32 + 1),
                )
                .expect("fill");
                let msg = update(&mut e, enc, &fb, &[r]);
                decode(&mut v, &msg, &what);
                assert_same(&v, &fb, r, &format!("{what} rect {i}"));
            }
            // Two rectangles in one update.
            let msg = update(&mut e, enc, &fb, &[Rect::new(0, 0, 50, 50), fb.bounds()]);
            decode(&mut v, &msg, &what);
            assert_same(&v, &fb, fb.bounds(), &what);
        }
    }
}

/// A full HD screen through ZRLE, Tight and Hextile: every subencoding shows up, and the
/// result is exact.
#[test]
fn full_hd_uses_every_subencoding() {
    let fb = desktop(1920, 1080);
    let f = rgb32();
    for enc in [Encoding::Zrle, Encoding::Tight, Encoding::Hextile] {
        let mut e = Encoder::new(f).expect("format");
        e.set_encodings(&[enc.id()]);
        let mut v = Viewer::new(f, 1920, 1080);
        let msg = update(&mut e, enc, &fb, &[fb.bounds()]);
        decode(&mut v, &msg, &format!("{enc:?}"));
        assert_same(&v, &fb, fb.bounds(), &format!("{enc:?}"));
        let raw = 1920 * 1080 * 4;
        eprintln!(
            "{enc:?}: {} bytes ({:.1}% of raw)",
            msg.len(),
            msg.len() as f64 * 100.0 / raw as f64
        );
        match enc {
            Encoding::Zrle => {
                let k = &v.zrle_kinds;
                assert!(
                    k.contains(&0) && k.contains(&1),
                    "raw and solid tiles: {k:?}"
                );
                assert!(k.iter().any(|s| (2..=16).contains(s)), "packed: {k:?}");
                assert!(
                    k.contains(&128) || k.iter().any(|&s| s >= 130),
                    "rle: {k:?}"
                );
            }
            Encoding::Tight => {
                let k = &v.tight_kinds;
                for want in ["fill", "palette2", "palette", "copy"] {
                    assert!(k.contains(&want), "{want}: {k:?}");
                }
                assert!(!k.contains(&"jpeg"), "no JPEG without a quality level");
            }
            _ => {
                let k = &v.hextile_kinds;
                for want in ["raw", "bg", "mono", "coloured"] {
                    assert!(k.contains(&want), "{want}: {k:?}");
                }
            }
        }
    }
}

/// Tight JPEG for a viewer that sent a quality level: photo-like chunks go JPEG and come
/// back close; the rest stays exact. 8-bit viewers never get JPEG.
#[test]
fn tight_jpeg_for_viewers_that_ask() {
    let fb = desktop(640, 480);
    let f = rgb32();
    let mut e = Encoder::new(f).expect("format");
    e.set_encodings(&[7, -23]);
    assert_eq!(e.choose(fb.bounds()), Encoding::Tight);
    let mut v = Viewer::new(f, 640, 480);
    let msg = update(&mut e, Encoding::Tight, &fb, &[fb.bounds()]);
    decode(&mut v, &msg, "jpeg");
    assert!(!v.jpeg_rects.is_empty(), "some JPEG: {:?}", v.tight_kinds);
    let (mut err, mut n) = (0u64, 0u64);
    for &(x, y, w, h) in &v.jpeg_rects {
        for yy in y..y + h {
            for xx in x..x + w {
                let p = fb.get(xx as u16, yy as u16).expect("px");
                let q = v.screen[yy * 640 + xx];
                for s in [0, 8, 16] {
                    err += u64::from(((p >> s) & 255).abs_diff((q >> s) & 255));
                    n += 1;
                }
            }
        }
    }
    let mean = err as f64 / n as f64;
    assert!(mean < 8.0, "mean JPEG error {mean}");
    // Chunks not sent as JPEG are exact.
    for c in 0..640 * 480 {
        let (x, y) = (c % 640, c / 640);
        if v.jpeg_rects
            .iter()
            .any(|&(rx, ry, rw, rh)| x >= rx && x < rx + rw && y >= ry && y < ry + rh)
        {
            continue;
        }
        let p = fb.get(x as u16, y as u16).expect("px");
        assert_eq!(v.screen[c] & 0xff_ffff, p, "pixel {x},{y}");
    }
    let mut e8 =
        Encoder::new(PixelFormat::true_colour(8, 8, false, [7, 7, 3], [0, 3, 6])).expect("8 bit");
    e8.set_encodings(&[7, -23]);
    assert_eq!(e8.jpeg_quality(), None);
}

/// A new compression level once Tight's stream has started never restarts the stream
/// and continues it (noVNC cannot decode that: the reference viewer refuses it, as noVNC
/// would fail): from then on every compressed chunk starts a fresh stream and resets the
/// viewer's, and the viewer keeps up over several updates. Before the stream starts, the
/// level simply applies.
#[test]
fn tight_level_change_never_continues_a_reset_stream() {
    let (fb, fb2) = desktop_and_changed();
    let f = rgb32();
    let mut e = Encoder::new(f).expect("format");
    let mut v = Viewer::new(f, 320, 240);
    e.set_encodings(&[7, -256 + 9]);
    e.set_encodings(&[7, -256 + 6]);
    assert_eq!(e.tight_share_key(), None, "no stream yet: its own stream");
    decode(
        &mut v,
        &update(&mut e, Encoding::Tight, &fb, &[fb.bounds()]),
        "level 6",
    );
    assert_eq!(v.tight_resets, 0);
    e.set_encodings(&[7, -256 + 1]);
    assert!(e.tight_share_key().is_some(), "shared mode from here on");
    for (i, screen) in [&fb2, &fb, &fb2].into_iter().enumerate() {
        v.tight_resets = 0;
        decode(
            &mut v,
            &update(&mut e, Encoding::Tight, screen, &[screen.bounds()]),
            &format!("level 1, update {i}"),
        );
        assert_eq!(v.tight_resets, 1, "stream 0 reset by the chunks");
        assert_same(&v, screen, screen.bounds(), "after the level change");
    }
}

/// A cut (a recording's keyframe, `Encoder::cut_tight`) lets a decoder start there while
/// the stream goes on: a viewer that followed from the start reads on through it with no
/// reset (which noVNC could not follow), and a fresh decoder that joins at the cut (the
/// reference viewer and tcvnc's own, both told they join mid-stream) decodes the updates
/// from there exactly, tcvnc's also when fed a byte at a time. Without the cut, joining
/// there is an error in both, not a wrong screen (the stream refers back past it), also
/// for a stored block (whose first byte is the cut's) fed a byte at a time.
#[test]
fn a_cut_tight_stream_reads_on_and_can_be_joined_there() {
    use tcvnc::console::decode::UpdateDecoder;
    let (fb, fb2) = desktop_and_changed();
    let f = rgb32();
    let mut e = Encoder::new(f).expect("format");
    e.set_encodings(&[7, -256 + 6]);
    let mut before = Vec::new();
    for screen in [&fb, &fb2] {
        before.push(update(&mut e, Encoding::Tight, screen, &[screen.bounds()]));
    }
    e.cut_tight();
    let mut after = Vec::new();
    for screen in [&fb, &fb2, &fb] {
        after.push(update(&mut e, Encoding::Tight, screen, &[screen.bounds()]));
    }
    assert_eq!(e.tight_share_key(), None, "never shared mode");
    let screens = [&fb, &fb2, &fb];

    let mut all = Viewer::new(f, 320, 240);
    for (i, m) in before.iter().chain(&after).enumerate() {
        decode(&mut all, m, &format!("from the start, update {i}"));
    }
    assert_eq!(all.tight_resets, 0, "one stream, never reset");
    assert_same(&all, &fb, fb.bounds(), "from the start");

    let mut joined = Viewer::new(f, 320, 240);
    joined.join_mid_stream();
    let mut ours = UpdateDecoder::new(&f).expect("format");
    ours.join_mid_stream();
    let mut ours_fb = Framebuffer::new(320, 240);
    for (i, (m, screen)) in after.iter().zip(screens).enumerate() {
        decode(&mut joined, m, &format!("joined at the cut, update {i}"));
        assert_same(&joined, screen, screen.bounds(), "joined at the cut");
        ours.feed(m, &mut ours_fb)
            .unwrap_or_else(|err| panic!("tcvnc's decoder joined at the cut, update {i}: {err}"));
        assert!(ours.at_message_boundary());
        assert!(
            ours_fb == *screen,
            "tcvnc's decoder joined at the cut, update {i}: another screen"
        );
    }

    // tcvnc's decoder takes the bytes in pieces of any size: here one at a time.
    let mut ours = UpdateDecoder::new(&f).expect("format");
    ours.join_mid_stream();
    let mut ours_fb = Framebuffer::new(320, 240);
    for b in after[0].chunks(1) {
        ours.feed(b, &mut ours_fb)
            .unwrap_or_else(|err| panic!("joined at the cut, a byte at a time: {err}"));
    }
    assert!(
        ours.at_message_boundary() && ours_fb == fb,
        "joined at the cut, a byte at a time"
    );

    // Without the cut: one chunk's screen sent twice, so the second is mostly references
    // back to the first, past the join.
    let small = desktop(64, 32);
    let mut e = Encoder::new(f).expect("format");
    e.set_encodings(&[7, -256 + 6]);
    update(&mut e, Encoding::Tight, &small, &[small.bounds()]);
    let uncut = update(&mut e, Encoding::Tight, &small, &[small.bounds()]);
    let mut v = Viewer::new(f, 64, 32);
    v.join_mid_stream();
    // Both decoders say so rather than draw from an empty window.
    let reference = v
        .update(&uncut)
        .expect_err("the reference joined where not cut");
    assert!(reference.contains("not cut"), "{reference}");
    let mut ours = UpdateDecoder::new(&f).expect("format");
    ours.join_mid_stream();
    let mut ours_fb = Framebuffer::new(64, 32);
    let e = ours
        .feed(&uncut, &mut ours_fb)
        .expect_err("tcvnc's decoder joined where not cut")
        .to_string();
    assert!(e.contains("not cut by a full flush"), "{e}");

    // Uncut noise, a byte at a time: deflate stores what does not compress, and a stored
    // block starts on a byte boundary with the cut's first byte; refused at its length,
    // not passed on that first byte.
    let noise = |mut seed: u32| {
        let mut fb = Framebuffer::new(64, 32);
        for y in 0..32 {
            for x in 0..64 {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                fb.fill(Rect::new(x, y, 1, 1), seed >> 8).expect("pixel");
            }
        }
        fb
    };
    let mut e = Encoder::new(f).expect("format");
    e.set_encodings(&[7, -256 + 6]);
    let first = noise(1);
    update(&mut e, Encoding::Tight, &first, &[first.bounds()]);
    let second = noise(2);
    let stored = update(&mut e, Encoding::Tight, &second, &[second.bounds()]);
    // After the update's header (16 bytes): the control byte, a filter byte if it says
    // so, the compact length (7 bits a byte), then the deflate data.
    let mut at = 17 + usize::from(stored[16] & 0x40 != 0);
    while stored[at] & 0x80 != 0 {
        at += 1;
    }
    at += 1;
    assert_eq!(
        stored[at],
        0,
        "deflate data that opens with a stored block: {:02x?}",
        &stored[..at + 5]
    );
    let mut ours = UpdateDecoder::new(&f).expect("format");
    ours.join_mid_stream();
    let mut ours_fb = Framebuffer::new(64, 32);
    let e = stored
        .chunks(1)
        .find_map(|b| ours.feed(b, &mut ours_fb).err())
        .expect("an uncut stored block, a byte at a time, is refused")
        .to_string();
    assert!(e.contains("not cut by a full flush"), "{e}");
    assert!(e.contains("not cut by a full flush"), "{e}");
}

/// The reference viewer refuses what noVNC cannot decode: a Tight stream reset and then
/// continued with history (checked here on hand-made chunks, so the check itself can
/// fail).
#[test]
fn a_reset_stream_continued_is_refused_as_novnc_would_fail() {
    use flate2::{Compress, Compression, FlushCompress};
    let f = rgb32();
    let chunk = |z: &mut Compress, ctl: u8| {
        let pixels: Vec<u8> = (0..16 * 4 * 3).map(|i| (i % 7) as u8).collect();
        let mut out = vec![0u8; 1024];
        let before = z.total_out();
        z.compress(&pixels, &mut out, FlushCompress::Sync)
            .expect("deflate");
        out.truncate((z.total_out() - before) as usize);
        let mut m = vec![0, 0, 0, 1, 0, 0, 0, 0, 0, 16, 0, 4, 0, 0, 0, 7, ctl];
        assert!(out.len() < 128, "a one-byte compact length");
        m.push(out.len() as u8);
        m.extend_from_slice(&out);
        m
    };
    let mut v = Viewer::new(f, 16, 4);
    let mut z = Compress::new(Compression::fast(), true);
    decode(&mut v, &chunk(&mut z, 0), "a fresh stream");
    decode(&mut v, &chunk(&mut z, 0), "continued, never reset");
    let mut z = Compress::new(Compression::fast(), true);
    decode(&mut v, &chunk(&mut z, 1), "reset, a fresh stream");
    let e = v
        .update(&chunk(&mut z, 0))
        .expect_err("continued after its reset");
    assert!(e.contains("noVNC"), "{e}");
}

/// Shared Tight: encoders with different histories give the same bytes for the same
/// update, each viewer decodes the bytes the other encoder made, and (shared mode being
/// final) further updates keep resetting the stream in every chunk.
#[test]
fn shared_tight_bytes_fit_every_viewer() {
    let f = rgb32();
    let (fb1, fb2) = desktop_and_changed();
    let (mut a, mut b) = (Encoder::new(f).expect("a"), Encoder::new(f).expect("b"));
    a.set_encodings(&[7, -254]);
    b.set_encodings(&[7, -254]);
    let (mut va, mut vb) = (Viewer::new(f, 320, 240), Viewer::new(f, 320, 240));
    // Viewer A has a history on its own stream first.
    decode(
        &mut va,
        &update(&mut a, Encoding::Tight, &fb1, &[fb1.bounds()]),
        "a alone",
    );
    assert_eq!(a.tight_share_key(), None);
    a.enable_shared_tight();
    b.enable_shared_tight();
    assert!(a.tight_share_key().is_some());
    assert_eq!(a.tight_share_key(), b.tight_share_key());
    let from_a = update(&mut a, Encoding::Tight, &fb2, &[fb2.bounds()]);
    let from_b = update(&mut b, Encoding::Tight, &fb2, &[fb2.bounds()]);
    assert_eq!(from_a, from_b, "shared bytes do not depend on history");
    decode(&mut va, &from_b, "b's bytes to a");
    decode(&mut vb, &from_a, "a's bytes to b");
    assert_same(&va, &fb2, fb2.bounds(), "viewer a");
    assert_same(&vb, &fb2, fb2.bounds(), "viewer b");
    // A further update still resets in every chunk.
    va.tight_resets = 0;
    decode(
        &mut va,
        &update(&mut a, Encoding::Tight, &fb1, &[fb1.bounds()]),
        "a again",
    );
    assert_eq!(va.tight_resets & 1, 1);
    assert_same(&va, &fb1, fb1.bounds(), "viewer a, a further update");
    let mut c = Encoder::new(f).expect("c");
    c.set_encodings(&[7, -254, -26]);
    c.enable_shared_tight();
    assert_ne!(
        c.tight_share_key(),
        b.tight_share_key(),
        "JPEG quality is part of the key"
    );
}

/// Shared ZRLE: once primed, every rectangle is compressed on its own, so encoders with
/// different histories give the same bytes, and a viewer whose stream holds another
/// encoder's rectangles (or its own from before) decodes them all.
#[test]
fn shared_zrle_bytes_fit_every_viewer() {
    let f = rgb32();
    let (fb1, fb2) = desktop_and_changed();
    let (mut a, mut b) = (Encoder::new(f).expect("a"), Encoder::new(f).expect("b"));
    a.set_encodings(&[16]);
    b.set_encodings(&[16, -250]);
    let (mut va, mut vb) = (Viewer::new(f, 320, 240), Viewer::new(f, 320, 240));
    // A's stream has a history of its own first; B's has none.
    decode(
        &mut va,
        &update(&mut a, Encoding::Zrle, &fb1, &[fb1.bounds()]),
        "a alone",
    );
    assert_eq!(a.share_key(Encoding::Zrle), None, "not shared yet");
    a.enable_shared_zrle();
    b.enable_shared_zrle();
    b.set_encodings(&[16]);
    assert_eq!(a.share_key(Encoding::Zrle), b.share_key(Encoding::Zrle));
    // B's stream must be started once; A's already was.
    let mut prime_a = Vec::new();
    assert_eq!(a.prime_zrle(&fb2, &mut prime_a).expect("prime"), 0);
    let mut prime_b = Vec::new();
    assert_eq!(b.prime_zrle(&fb2, &mut prime_b).expect("prime"), 1);
    assert_eq!(b.prime_zrle(&fb2, &mut prime_b).expect("prime"), 0, "once");
    vb.rects(&prime_b).expect("b's primer decodes");
    let damage = [Rect::new(0, 0, 320, 120), Rect::new(0, 120, 320, 120)];
    let from_a = update(&mut a, Encoding::Zrle, &fb2, &damage);
    let from_b = update(&mut b, Encoding::Zrle, &fb2, &damage);
    assert_eq!(from_a, from_b, "shared bytes do not depend on history");
    decode(&mut va, &from_b, "b's bytes to a");
    decode(&mut vb, &from_a, "a's bytes to b");
    assert_same(&va, &fb2, fb2.bounds(), "viewer a");
    assert_same(&vb, &fb2, fb2.bounds(), "viewer b");
    // And again, on streams that now hold both.
    let again = update(&mut a, Encoding::Zrle, &fb1, &[fb1.bounds()]);
    decode(&mut vb, &again, "a's bytes to b again");
    assert_same(&vb, &fb1, fb1.bounds(), "viewer b again");
}

/// ZRLE in two halves: tile data made once serves viewers with different stream
/// histories, each compressing it through its own stream.
#[test]
fn zrle_tiles_made_once_serve_every_viewer() {
    let f = PixelFormat::true_colour(16, 16, false, [31, 63, 31], [11, 5, 0]);
    let fb1 = desktop(320, 240);
    let mut fb2 = fb1.clone();
    fb2.fill(Rect::new(100, 10, 80, 60), 0x00ab_cdef)
        .expect("fill");
    let (mut a, mut b) = (Encoder::new(f).expect("a"), Encoder::new(f).expect("b"));
    a.set_encodings(&[16]);
    b.set_encodings(&[16, -250]);
    let (mut va, mut vb) = (Viewer::new(f, 320, 240), Viewer::new(f, 320, 240));
    decode(
        &mut va,
        &update(&mut a, Encoding::Zrle, &fb1, &[fb1.bounds()]),
        "a history",
    );
    let r = Rect::new(5, 5, 300, 200);
    let mut plain = Vec::new();
    a.zrle_tiles(&fb2, r, &mut plain).expect("tiles");
    for (e, v, name) in [(&mut a, &mut va, "a"), (&mut b, &mut vb, "b")] {
        let mut msg = Vec::new();
        update_header(1, &mut msg);
        assert_eq!(e.zrle_from_tiles(r, &plain, &mut msg), Ok(1));
        decode(v, &msg, name);
        assert_same(v, &fb2, r, name);
    }
    let mut out = Vec::new();
    assert!(matches!(
        a.zrle_tiles(&fb2, Rect::new(300, 0, 21, 1), &mut out),
        Err(EncodeError::OutOfBounds(_))
    ));
}

/// CopyRect moves pixels the viewer has; overlapping moves work.
#[test]
fn copy_rect_moves_what_the_viewer_has() {
    let mut fb = desktop(200, 150);
    let f = PixelFormat::true_colour(16, 16, true, [31, 63, 31], [11, 5, 0]);
    let mut e = Encoder::new(f).expect("format");
    e.set_encodings(&[1, 0]);
    assert!(e.encodings().copy_rect);
    let mut v = Viewer::new(f, 200, 150);
    decode(
        &mut v,
        &update(&mut e, Encoding::Raw, &fb, &[fb.bounds()]),
        "raw",
    );
    for (dst, sx, sy) in [
        (Rect::new(10, 20, 100, 50), 15, 25),
        (Rect::new(0, 0, 200, 100), 0, 50),
        (Rect::new(50, 60, 30, 30), 0, 0),
    ] {
        fb.copy(dst, sx, sy).expect("copy");
        let mut msg = Vec::new();
        update_header(1, &mut msg);
        e.copy_rect(dst, sx, sy, &mut msg);
        decode(&mut v, &msg, "copyrect");
        assert_same(&v, &fb, fb.bounds(), "copyrect");
    }
}

/// The pseudo-encodings decode to what was meant.
#[test]
fn pseudo_encodings() {
    let f = PixelFormat::true_colour(16, 16, false, [31, 63, 31], [11, 5, 0]);
    let mut v = Viewer::new(f, 10, 10);
    let mut msg = Vec::new();
    update_header(4, &mut msg);
    desktop_size(640, 480, &mut msg);
    let long = "é".repeat(600); // 1200 bytes: cut at a character boundary
    desktop_name(&long, &mut msg);
    let e = Encoder::new(f).expect("format");
    let cursor = CursorImage {
        hot_x: 2,
        hot_y: 3,
        width: 9,
        height: 2,
        pixels: (0..18).map(|i| i * 0x0010_2030).collect(),
        mask: vec![0xff, 0x80, 0x55, 0x00],
    };
    e.cursor(&cursor, &mut msg).expect("cursor");
    let screens = [Screen {
        id: 7,
        area: Rect::new(0, 0, 800, 600),
        flags: 0,
    }];
    extended_desktop_size(800, 600, SizeReason::OtherClient, 0, &screens, &mut msg);
    decode(&mut v, &msg, "pseudo");
    assert_eq!(v.seen, [-223, -307, -239, -308]);
    let name = v.name.clone().expect("name");
    assert!(name.len() <= 1024 && name.chars().all(|c| c == 'é') && !name.is_empty());
    let c = v.cursor.clone().expect("cursor");
    assert_eq!(
        (c.hot, c.size, c.mask.clone()),
        ((2, 3), (9, 2), cursor.mask.clone())
    );
    for (i, &p) in cursor.pixels.iter().enumerate() {
        let want = v.value_of_rgb((p >> 16) as u8, (p >> 8) as u8, p as u8);
        assert_eq!(c.pixels[i], want, "cursor pixel {i}");
    }
    let x = v.ext_size.clone().expect("ext size");
    assert_eq!((x.reason, x.status, x.width, x.height), (2, 0, 800, 600));
    assert_eq!(x.screens, [(7, 0, 0, 800, 600, 0)]);
    assert_eq!((v.width, v.height), (800, 600));
    let bad = CursorImage {
        width: 9,
        height: 2,
        ..CursorImage::default()
    };
    assert!(matches!(
        e.cursor(&bad, &mut msg),
        Err(EncodeError::Cursor(_))
    ));
}

/// Rectangles outside the screen are errors, whatever the encoding.
#[test]
fn out_of_bounds_rectangles_are_errors() {
    let fb = Framebuffer::new(100, 100);
    let mut e = Encoder::new(PixelFormat::true_colour(
        32,
        24,
        false,
        [255; 3],
        [16, 8, 0],
    ))
    .expect("format");
    for enc in ENCODINGS {
        for r in [
            Rect::new(90, 0, 11, 1),
            Rect::new(u16::MAX, u16::MAX, u16::MAX, 1),
        ] {
            let mut out = Vec::new();
            assert!(matches!(
                e.encode_as(enc, &fb, r, &mut out),
                Err(EncodeError::OutOfBounds(_))
            ));
        }
        // Empty rectangles are fine (a header and nothing, or nothing).
        let mut out = Vec::new();
        e.encode_as(enc, &fb, Rect::new(5, 5, 0, 3), &mut out)
            .expect("empty");
    }
}

/// The colour-map refusal carries a reason a viewer can be shown; a refused
/// SetPixelFormat leaves the old format in force.
#[test]
fn colour_map_is_refused_with_a_reason() {
    let good = PixelFormat::true_colour(32, 24, false, [255; 3], [16, 8, 0]);
    let cm = PixelFormat {
        true_colour: false,
        ..PixelFormat::true_colour(8, 8, false, [0; 3], [0; 3])
    };
    let err = Encoder::new(cm).expect_err("refused");
    assert_eq!(err, FormatError::ColourMap);
    assert!(err.to_string().contains("colour-map"), "{err}");
    let mut e = Encoder::new(good).expect("good");
    assert_eq!(e.set_pixel_format(cm), Err(FormatError::ColourMap));
    assert_eq!(*e.format(), good);
    e.set_pixel_format(PixelFormat::true_colour(
        16,
        16,
        true,
        [31, 63, 31],
        [11, 5, 0],
    ))
    .expect("565");
    assert_eq!(e.format().bits_per_pixel, 16);
}

/// An independent statement of which formats are servable.
fn servable(f: &PixelFormat) -> bool {
    let ok_max = |m: u16| m != 0 && (u32::from(m) + 1).is_power_of_two();
    let bits = |m: u16| 32 - u32::from(m).leading_zeros();
    if !f.true_colour || ![8, 16, 32].contains(&f.bits_per_pixel) {
        return false;
    }
    let ch = [
        (f.red_max, f.red_shift),
        (f.green_max, f.green_shift),
        (f.blue_max, f.blue_shift),
    ];
    let mut used = 0u64;
    for (m, s) in ch {
        if !ok_max(m) || bits(m) + u32::from(s) > u32::from(f.bits_per_pixel) {
            return false;
        }
        let mask = u64::from(m) << s;
        if used & mask != 0 {
            return false;
        }
        used |= mask;
    }
    true
}

fn any_format() -> impl Strategy<Value = PixelFormat> {
    let bpp = prop_oneof![Just(8u8), Just(16), Just(32), any::<u8>()];
    let max = prop_oneof![
        (1u32..=16).prop_map(|n| ((1u32 << n) - 1) as u16),
        any::<u16>()
    ];
    let shift = prop_oneof![0u8..32, any::<u8>()];
    (
        bpp,
        any::<u8>(),
        any::<bool>(),
        prop_oneof![9 => Just(true), 1 => Just(false)],
        (max.clone(), max.clone(), max),
        (shift.clone(), shift.clone(), shift),
    )
        .prop_map(
            |(bpp, depth, be, tc, (rm, gm, bm), (rs, gs, bs))| PixelFormat {
                bits_per_pixel: bpp,
                depth,
                big_endian: be,
                true_colour: tc,
                red_max: rm,
                green_max: gm,
                blue_max: bm,
                red_shift: rs,
                green_shift: gs,
                blue_shift: bs,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Any SetPixelFormat: refused exactly when not servable, never a panic; an accepted
    /// one round-trips through every encoding.
    #[test]
    fn any_pixel_format_is_served_or_refused(f in any_format()) {
        let accepted = Encoder::new(f);
        prop_assert_eq!(accepted.is_ok(), servable(&f), "{:?}: {:?}", f, accepted.as_ref().err());
        prop_assert_eq!(check_format(&f).is_ok(), servable(&f));
        if let Ok(mut e) = accepted {
            let fb = desktop(70, 40);
            for enc in ENCODINGS {
                e.set_encodings(&[enc.id()]);
                let mut v = Viewer::new(f, 70, 40);
                let msg = update(&mut e, enc, &fb, &[fb.bounds()]);
                let used = v.update(&msg).map_err(|err| TestCaseError::fail(format!("{enc:?}: {err}")))?;
                prop_assert_eq!(used, msg.len());
                let mask = v.used_mask();
                for (i, &p) in fb.pixels().iter().enumerate() {
                    let want = v.value_of_rgb((p >> 16) as u8, (p >> 8) as u8, p as u8) & mask;
                    prop_assert_eq!(v.screen[i] & mask, want, "{:?} pixel {}", enc, i);
                }
            }
        }
    }
}

/// A screen of a few colours with random pixels sprinkled (runs, palettes and raw tiles
/// all possible), of any size up to 150 × 90.
fn any_screen() -> impl Strategy<Value = Framebuffer> {
    (
        1u16..150,
        1u16..90,
        prop::collection::vec(any::<u32>(), 1..64),
        any::<u64>(),
    )
        .prop_map(|(w, h, colours, seed)| {
            let mut fb = Framebuffer::new(w, h);
            let mut s = seed | 1;
            let px: Vec<u32> = (0..usize::from(w) * usize::from(h))
                .map(|i| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    // Mostly runs of one colour, sometimes a fresh random pixel.
                    if s % 7 == 0 {
                        (s >> 8) as u32 & 0x00ff_ffff
                    } else {
                        colours[(i / (1 + (s % 5) as usize)) % colours.len()] & 0x00ff_ffff
                    }
                })
                .collect();
            fb.put(fb.bounds(), &px).expect("fits");
            fb
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(200),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Any screen, any rectangle within it, any encoding, a 32- or 16-bit viewer: the
    /// reference decoder gets the screen back exactly.
    #[test]
    fn any_screen_any_rect_round_trips(
        fb in any_screen(),
        (fx, fy, fw, fh) in (0.0f64..1.0, 0.0f64..1.0, 0.0f64..1.0, 0.0f64..1.0),
        enc in prop::sample::select(ENCODINGS.to_vec()),
        sixteen in any::<bool>(),
    ) {
        let (w, h) = (fb.width(), fb.height());
        let x = (f64::from(w) * fx) as u16 % w;
        let y = (f64::from(h) * fy) as u16 % h;
        let r = Rect::new(x, y, 1 + ((f64::from(w - x - 1)) * fw) as u16, 1 + ((f64::from(h - y - 1)) * fh) as u16);
        let f = if sixteen {
            PixelFormat::true_colour(16, 16, true, [31, 63, 31], [11, 5, 0])
        } else {
            PixelFormat::true_colour(32, 24, false, [255; 3], [16, 8, 0])
        };
        let mut e = Encoder::new(f).expect("format");
        e.set_encodings(&[enc.id()]);
        let mut v = Viewer::new(f, w, h);
        let msg = update(&mut e, enc, &fb, &[r]);
        let used = v.update(&msg).map_err(|err| TestCaseError::fail(format!("{enc:?} {r:?}: {err}")))?;
        prop_assert_eq!(used, msg.len());
        let mask = v.used_mask();
        for yy in r.y..r.y + r.h {
            for xx in r.x..r.x + r.w {
                let p = fb.get(xx, yy).expect("in");
                let want = v.value_of_rgb((p >> 16) as u8, (p >> 8) as u8, p as u8) & mask;
                let got = v.screen[usize::from(yy) * usize::from(w) + usize::from(xx)] & mask;
                prop_assert_eq!(got, want, "{:?} {:?} at {},{}", enc, r, xx, yy);
            }
        }
    }
}
