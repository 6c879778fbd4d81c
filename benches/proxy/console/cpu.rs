//! CPU per full-screen update, in this process with tcvnc's library: what the console
//! engine spends decoding one update from the console, and encoding it for one viewer
//! on its own or once for every viewer (shared mode, then a copy per viewer: a cache
//! hit), for ZRLE and Tight, over the fan-out case's scrolled desktop.

use anyhow::{anyhow, bail, Result};
use tokio::time::Instant;

use tcvnc::console::decode::UpdateDecoder;
use tcvnc::console::encode::{update_header, Encoder, Encoding, ENC_TIGHT, ENC_ZRLE};
use tcvnc::console::fb::Framebuffer;

use super::source::RGB888;
use crate::report::Results;

/// The case's name.
pub fn case(screens: &[Framebuffer]) -> String {
    let (w, h) = screens.first().map_or((0, 0), |s| (s.width(), s.height()));
    format!("console CPU per full-screen update {w}×{h}")
}

/// Viewers the shared encode is spread over in the "per viewer at 50" column.
const SHARED_VIEWERS: f64 = 50.0;

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// One full-screen update of `fb` through `enc`: the update header and its rectangles.
fn encode(enc: &mut Encoder, e: Encoding, fb: &Framebuffer, out: &mut Vec<u8>) -> Result<()> {
    out.clear();
    update_header(0, out);
    let n = enc.encode_as(e, fb, fb.bounds(), out)?;
    out[2..4].copy_from_slice(&n.to_be_bytes());
    Ok(())
}

/// Times `frames` updates per encoding (after one unmeasured) and pushes each.
pub fn measure(screens: &[Framebuffer], frames: usize, res: &mut Results) -> Result<()> {
    let case = case(screens);
    let first = screens.first().ok_or_else(|| anyhow!("no screens"))?;
    for (name, e, id) in [
        ("ZRLE", Encoding::Zrle, ENC_ZRLE),
        ("Tight", Encoding::Tight, ENC_TIGHT),
    ] {
        let new_encoder = || -> Result<Encoder> {
            let mut enc = Encoder::new(RGB888).map_err(|e| anyhow!("{e}"))?;
            enc.set_encodings(&[id]);
            Ok(enc)
        };
        // A viewer of its own, and the engine's decoder of what the console sends.
        let mut own = new_encoder()?;
        let mut shared = new_encoder()?;
        match e {
            Encoding::Zrle => shared.enable_shared_zrle(),
            _ => shared.enable_shared_tight(),
        }
        let mut decoder = UpdateDecoder::new(&RGB888).map_err(|e| anyhow!("{e}"))?;
        let mut fb = Framebuffer::new(first.width(), first.height());
        let (mut out, mut once, mut copy) = (Vec::new(), Vec::new(), Vec::new());
        for k in 0..=frames {
            let screen = &screens[k % screens.len()];
            let t = Instant::now();
            encode(&mut own, e, screen, &mut out)?;
            let enc_ms = ms(t);
            let t = Instant::now();
            let mut rest = &out[..];
            while !rest.is_empty() {
                let fed = decoder.feed(rest, &mut fb).map_err(|e| anyhow!("{e}"))?;
                if fed.consumed == 0 {
                    bail!("{name}: the decoder stopped inside an update");
                }
                rest = &rest[fed.consumed..];
            }
            let dec_ms = ms(t);
            if fb != *screen {
                bail!("{name}: the decoded screen differs from the encoded one");
            }
            let t = Instant::now();
            encode(&mut shared, e, screen, &mut once)?;
            let shared_ms = ms(t);
            let t = Instant::now();
            copy.clear();
            copy.extend_from_slice(&once);
            let copy_ms = ms(t);
            if k == 0 {
                continue; // warm-up
            }
            res.push(&case, name, "decode ms", dec_ms);
            res.push(&case, name, "encode ms per viewer", enc_ms);
            res.push(&case, name, "shared encode ms (once)", shared_ms);
            res.push(&case, name, "cache hit ms (copy)", copy_ms);
            res.push(
                &case,
                name,
                "shared ms per viewer at 50",
                shared_ms / SHARED_VIEWERS + copy_ms,
            );
            res.push(&case, name, "KiB per update", out.len() as f64 / 1024.0);
        }
    }
    Ok(())
}
