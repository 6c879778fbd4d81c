//! The viewers the end-to-end tests drive, as processes: vncdotool (`vncdo`, and
//! `tests/e2e/vncdo_encoding.py` for one encoding at a time), noVNC in headless Chromium
//! through playwright-core (`tests/e2e/*.mjs` under node), and `tests/e2e/imgtool.py`
//! (Pillow) to compare what they captured.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

use super::{venv_bin, STEP};
use crate::common::{e2e_file, python};

/// `vncdo -s SERVER [-p PW] capture OUT`; Err carries its output.
pub async fn vncdo(server: &str, password: Option<&str>, out: &Path) -> Result<(), String> {
    let mut cmd = Command::new(venv_bin("vncdo"));
    cmd.args(["-s", server]);
    if let Some(pw) = password {
        cmd.args(["-p", pw]);
    }
    cmd.arg("capture").arg(out);
    run_capture(cmd).await
}

/// The cursor in a vncdotool capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// vncdotool lists no cursor pseudo-encoding: the server draws it where it draws it.
    AsServed,
    /// vncdotool lists the cursor pseudo-encoding and ignores the shapes: a capture of
    /// the screen alone.
    Left,
}

/// A PNG capture of `server` (`HOST::PORT`) by vncdotool asking for one `encoding`
/// (`raw`, `hextile`, `zrle`) only; Err carries its output.
pub async fn vncdo_encoding(
    server: &str,
    encoding: &str,
    out: &Path,
    cursor: Cursor,
) -> Result<(), String> {
    let mut cmd = Command::new(python());
    cmd.arg(e2e_file("vncdo_encoding.py"))
        .args([server, encoding])
        .arg(out);
    if cursor == Cursor::Left {
        cmd.arg("--nocursor");
    }
    run_capture(cmd).await
}

async fn run_capture(mut cmd: Command) -> Result<(), String> {
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    let o = tokio::time::timeout(STEP, cmd.output())
        .await
        .map_err(|_| "vncdotool timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ))
    }
}

/// `imgtool.py ARGS…`: its JSON answer.
pub async fn imgtool(args: &[&str]) -> Value {
    let o = Command::new(python())
        .arg(e2e_file("imgtool.py"))
        .args(args)
        .output()
        .await
        .expect("python");
    assert!(
        o.status.success(),
        "imgtool: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("json")
}

/// `imgtool compare A B`: `equal`, both sizes, the differing pixels and their box.
pub async fn same_pixels(a: &Path, b: &Path) -> Value {
    imgtool(&[
        "compare",
        &a.display().to_string(),
        &b.display().to_string(),
    ])
    .await
}

/// An image's width, height and RGB bytes (row-major).
pub async fn png_rgb(png: &Path) -> (u32, u32, Vec<u8>) {
    let out = png.with_extension("rgb");
    let v = imgtool(&[
        "rgb",
        &png.display().to_string(),
        &out.display().to_string(),
    ])
    .await;
    let side = |i: usize| {
        v["size"][i]
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .expect("size")
    };
    (side(0), side(1), std::fs::read(&out).expect("rgb"))
}

/// Runs `node tests/e2e/SCRIPT ARGS…` (playwright-core driving Debian's Chromium) within
/// `limit`; it must exit 0. Its stdout, whose last line is the script's JSON answer.
pub async fn node(script: &str, args: &[&str], limit: Duration) -> String {
    let out = tokio::time::timeout(
        limit,
        Command::new("node")
            .arg(e2e_file(script))
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{script} did not finish within {limit:?}"))
    .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// noVNC at `url` in headless Chromium (`browser.mjs`): waits until the canvas is drawn
/// and stable, writes it to `canvas` and the page to `shot`.
pub async fn novnc_canvas(url: &str, canvas: &Path, shot: &Path) -> String {
    node(
        "browser.mjs",
        &[
            url,
            &canvas.display().to_string(),
            &shot.display().to_string(),
        ],
        Duration::from_secs(90),
    )
    .await
}
