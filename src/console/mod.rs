//! Console mode (under construction): tcvnc as an RFB client of the console and an RFB
//! server to its viewers, with the screen in between (`../shared/DESIGN.md`, "the console
//! engine"). This module holds its codec layer so far: the framebuffer ([`fb`]), the
//! decoders of what a console sends ([`decode`]) and the per-viewer encoders
//! ([`encode`]); and the status banner drawn over the screen ([`banner`]) in a bitmap font
//! generated from X11 misc-fixed ([`font`], by `scripts/gen-font`); the screen as a PNG
//! ([`png`]) and text and key combinations as key events ([`keys`]) for screenshots, `type`
//! and `keys`. Nothing in the daemon uses them yet; targets stay in bridge mode.

pub mod banner;
pub mod decode;
pub mod encode;
pub mod fb;
pub mod font;
pub mod keys;
pub mod png;
