//! End to end for the console decoder: captures afresh from the VNC servers installed
//! (`scripts/rfb-capture`: QEMU always, x11vnc and Xvnc where their packages are) and
//! runs `rfb_fixtures.rs`'s checks on them, so a new server version that the committed
//! fixtures do not show is decoded too. Runs with TCVNC_E2E=1.

mod common;
mod rfb_check;

use std::process::Command;

/// Whether every program is on PATH.
fn installed(programs: &[&str]) -> bool {
    programs.iter().all(|p| {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(p).is_file()))
    })
}

/// Fresh captures of each installed server decode to its Raw capture's pixels, whole and
/// in pieces.
#[test]
fn e2e_decode_fresh_captures() {
    if !common::e2e("e2e_decode_fresh_captures") {
        return;
    }
    let x = ["xsetroot", "xterm", "xwud"];
    let mut servers = vec!["qemu"];
    for (server, programs) in [("x11vnc", &["x11vnc", "Xvfb"][..]), ("xvnc", &["Xvnc"][..])] {
        if installed(programs) && installed(&x) {
            servers.push(server);
        } else {
            eprintln!(
                "SKIPPED {server} in e2e_decode_fresh_captures: install x11vnc, xvfb, \
                 tigervnc-standalone-server, x11-xserver-utils, xterm and x11-apps"
            );
        }
    }
    let out = tempfile::tempdir().expect("tmp");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/rfb-capture");
    let status = Command::new("timeout")
        .arg("300")
        .arg("python3")
        .arg(&script)
        .arg("--out")
        .arg(out.path())
        .arg("--servers")
        .arg(servers.join(","))
        .status()
        .expect("python3 runs scripts/rfb-capture");
    assert!(status.success(), "scripts/rfb-capture: {status}");
    rfb_check::every_encoding_matches_raw(out.path(), &servers);
    rfb_check::same_in_pieces(out.path());
}
