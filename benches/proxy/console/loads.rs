//! The recording section's console screens, all 1280×800 (a common cloud console size):
//!
//! - [`desktop`]: a still desktop (tests/rfbref's: windows, text, a photo-like area);
//! - [`terminal`]: a text console printing boot-log lines, one a frame at the bottom,
//!   every row moving up a line, as a framebuffer console redraws it (no CopyRect);
//! - [`video`]: a video-like screen, a moving colour field with grain, so every pixel
//!   changes every frame and little of it compresses.
//!
//! Each is a loop of frames that follows on from its last frame to its first.

use anyhow::Result;

use tcvnc::console::banner::{draw_text, CELL_H, CELL_W};
use tcvnc::console::fb::Framebuffer;

/// The screens' size.
pub const SIZE: (u16, u16) = (1280, 800);
/// The terminal's text and background (a Linux console's light grey on black).
const TERM_FG: u32 = 0x00aa_aaaa;
const TERM_BG: u32 = 0;

/// A still desktop.
pub fn desktop() -> Vec<Framebuffer> {
    vec![crate::rfbref::desktop(SIZE.0, SIZE.1)]
}

/// Line `i` of a boot log: a timestamp and one of a few kernel-like messages with
/// numbers that change from line to line, 40 to 140 characters.
pub fn log_line(i: usize) -> String {
    const MESSAGES: [&str; 8] = [
        "usb {a}-{b}: new high-speed USB device number {c} using xhci_hcd",
        "EXT4-fs (vda{a}): mounted filesystem {h} with ordered data mode. Quota mode: none.",
        "virtio_net virtio{a} eth{b}: renamed from eth{c}; link up, 10000 Mbps, full duplex, txqueuelen 1000",
        "systemd[1]: Started Journal Service (pid {h}, {c} units loaded, {b} jobs queued).",
        "audit: type=1400 audit({h}.{c}:{a}): apparmor=\"STATUS\" operation=\"profile_load\" profile=\"unconfined\" name=\"/usr/sbin/cupsd\" pid={c}",
        "pci 0000:00:{a:02x}.{b}: [1af4:1000] type 00 class 0x020000 conventional PCI endpoint",
        "random: crng init done",
        "cloud-init[{c}]: Cloud-init v. 23.{b} running 'modules:config' at {h}. Up {a}.{c} seconds.",
    ];
    let mut s = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut next = || {
        s ^= s >> 29;
        s = s.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        s ^= s >> 32;
        s
    };
    let m = MESSAGES[(next() % MESSAGES.len() as u64) as usize];
    let (a, b, c, h) = (next() % 32, next() % 8, next() % 4096, next() % 1_000_000);
    let text = m
        .replace("{a:02x}", &format!("{a:02x}"))
        .replace("{a}", &a.to_string())
        .replace("{b}", &b.to_string())
        .replace("{c}", &c.to_string())
        .replace("{h}", &format!("{h:06x}"));
    let t = i as f64 * 0.083 + 0.5;
    format!("[{t:12.6}] {text}")
}

/// The terminal: `n` frames (more than the screen's rows), frame `k` showing log lines
/// `k`, `k+1`… (modulo `n`) from the top, so each frame is the one before scrolled up a
/// line with a new line at the bottom, and the last leads to the first.
pub fn terminal(n: usize) -> Result<Vec<Framebuffer>> {
    let rows = usize::from(SIZE.1 / CELL_H);
    anyhow::ensure!(n > rows, "a terminal loop needs more than {rows} lines");
    let lines: Vec<String> = (0..n).map(log_line).collect();
    let mut out = Vec::with_capacity(n);
    let cols = usize::from(SIZE.0 / CELL_W);
    for k in 0..n {
        let mut fb = Framebuffer::new(SIZE.0, SIZE.1);
        fb.fill(fb.bounds(), TERM_BG)?;
        for r in 0..rows {
            let text: String = lines[(k + r) % n].chars().take(cols).collect();
            draw_text(&mut fb, 0, r as u16 * CELL_H, &text, TERM_FG, TERM_BG);
        }
        out.push(fb);
    }
    Ok(out)
}

/// The video-like screen: `n` frames of a colour field that drifts a little each frame,
/// with grain of up to ±8 levels a channel drawn afresh for every pixel of every frame.
pub fn video(n: usize) -> Result<Vec<Framebuffer>> {
    let (w, h) = (usize::from(SIZE.0), usize::from(SIZE.1));
    // A smooth wave per axis and channel, looked up rather than computed per pixel.
    let wave = |len: usize, period: f32, phase: f32| -> Vec<f32> {
        (0..len)
            .map(|i| (i as f32 / period * std::f32::consts::TAU + phase).sin())
            .collect()
    };
    let mut out = Vec::with_capacity(n);
    let mut seed = 0x2545_f491u32;
    let mut px = vec![0u32; w * h];
    for k in 0..n {
        let t = k as f32 / n as f32 * std::f32::consts::TAU;
        let (xr, yr) = (wave(w, 640.0, t), wave(h, 400.0, 2.0 * t));
        let (xg, yg) = (wave(w, 420.0, -t), wave(h, 300.0, t + 1.0));
        let (xb, yb) = (wave(w, 900.0, 2.0 * t + 2.0), wave(h, 500.0, -t));
        for y in 0..h {
            for x in 0..w {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let grain = |shift: u32| (seed >> shift & 15) as f32 - 8.0;
                let level = |v: f32, shift: u32| (128.0 + 60.0 * v + grain(shift)) as u32;
                let r = level(xr[x] + yr[y], 0);
                let g = level(xg[x] * yg[y] + 0.5 * yr[y], 8);
                let b = level(xb[x] - yb[y], 16);
                px[y * w + x] = r.min(255) << 16 | g.min(255) << 8 | b.min(255);
            }
        }
        let mut fb = Framebuffer::new(SIZE.0, SIZE.1);
        fb.put(fb.bounds(), &px)?;
        out.push(fb);
    }
    Ok(out)
}
