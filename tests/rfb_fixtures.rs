//! The console decoder against bytes captured from real servers (QEMU, x11vnc, TigerVNC's
//! Xvnc; `tests/data/rfb/README.md`, `scripts/rfb-capture`): every encoding of a server
//! must decode to the same pixels as that server's Raw capture of the same screen, whole
//! and fed in random pieces. `e2e_decode.rs` runs the same checks on fresh captures.

mod rfb_check;

/// Each committed capture matches its server's Raw capture pixel for pixel (and the
/// pseudo-encodings capture tells the size, keys, LEDs and cursor).
#[test]
fn every_encoding_matches_the_servers_raw_capture() {
    rfb_check::every_encoding_matches_raw(&rfb_check::committed(), &["qemu", "x11vnc", "xvnc"]);
}

/// Each committed capture decodes the same fed in uneven pieces.
#[test]
fn fixtures_decode_the_same_in_pieces() {
    rfb_check::same_in_pieces(&rfb_check::committed());
}
