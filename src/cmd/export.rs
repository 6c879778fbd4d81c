//! `tcvnc export FILE -o OUT`: a recording as a video (ffmpeg, fed raw frames on its
//! standard input) or, without ffmpeg or for any other OUT, as PNG frames at an
//! interval. The screen is decoded as `tcvnc play` would show it; each frame is the
//! screen as it was at that instant.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::CmdError;
use crate::console::decode::UpdateDecoder;
use crate::console::fb::Framebuffer;
use crate::record::source;

const VIDEO: &[&str] = &["mp4", "mkv", "webm", "mov", "avi"];

/// Whether `ffmpeg` runs here.
fn have_ffmpeg() -> bool {
    Command::new("ffmpeg")
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// What becomes of the frames.
enum Out {
    Video {
        child: std::process::Child,
        w: u16,
        h: u16,
        frame: Vec<u8>,
    },
    Pngs {
        dir: PathBuf,
    },
}

/// Exports `file` to `output`.
///
/// # Errors
/// Usage (64) for a recording that cannot be read; 1 when writing fails.
pub(super) async fn run(
    file: &Path,
    output: &Path,
    fps: u32,
    interval: Duration,
) -> Result<(), CmdError> {
    if fps == 0 || fps > 120 {
        return Err(CmdError::Usage(format!("--fps {fps}: give 1 to 120")));
    }
    if interval < Duration::from_millis(10) {
        return Err(CmdError::Usage(
            "--interval: at least 10ms between PNG frames".into(),
        ));
    }
    let (file, output) = (file.to_owned(), output.to_owned());
    tokio::task::spawn_blocking(move || export(&file, &output, fps, interval))
        .await
        .map_err(|e| CmdError::Other(e.to_string()))?
}

fn export(file: &Path, output: &Path, fps: u32, interval: Duration) -> Result<(), CmdError> {
    let mut src =
        source::open(file).map_err(|e| CmdError::Usage(format!("{}: {e}", file.display())))?;
    let init = src.init.clone();
    let mut fb = Framebuffer::new(init.width, init.height);
    let mut decoder = UpdateDecoder::new(&init.format)
        .map_err(|e| CmdError::Usage(format!("{}: its pixel format: {e}", file.display())))?;
    let wants_video = output
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| VIDEO.contains(&e.to_ascii_lowercase().as_str()));
    let (mut out, step) = if wants_video && have_ffmpeg() {
        let child = Command::new("ffmpeg")
            .args([
                "-y",
                "-loglevel",
                "error",
                "-f",
                "rawvideo",
                "-pix_fmt",
                "rgb24",
            ])
            .args(["-s", &format!("{}x{}", init.width, init.height)])
            .args(["-r", &fps.to_string(), "-i", "-"])
            // Most codecs want even sides.
            .args([
                "-vf",
                "pad=ceil(iw/2)*2:ceil(ih/2)*2",
                "-pix_fmt",
                "yuv420p",
            ])
            .arg(output)
            .stdin(Stdio::piped())
            .spawn()
            .map_err(|e| CmdError::Other(format!("cannot start ffmpeg: {e}")))?;
        let frame = vec![0u8; usize::from(init.width) * usize::from(init.height) * 3];
        (
            Out::Video {
                child,
                w: init.width,
                h: init.height,
                frame,
            },
            Duration::from_secs(1) / fps,
        )
    } else {
        let dir = if wants_video {
            let d = output.with_extension("frames");
            eprintln!(
                "tcvnc export: ffmpeg is not installed: writing PNG frames to {} instead (install ffmpeg for a video)",
                d.display()
            );
            d
        } else {
            output.to_owned()
        };
        std::fs::create_dir_all(&dir)
            .map_err(|e| CmdError::Other(format!("cannot create {}: {e}", dir.display())))?;
        (Out::Pngs { dir }, interval)
    };
    let step_ms = step.as_millis().max(1) as u64;
    let mut next_ms = 0u64;
    let mut n = 0u64;
    let mut last_ms = 0u64;
    let bad = |e: String| CmdError::Usage(format!("{}: {e}", file.display()));
    while let Some((ms, data)) = src.next_data().map_err(|e| bad(e.to_string()))? {
        // Frames for every instant before this message: the screen as it was.
        while next_ms < ms {
            n += 1;
            emit(&mut out, &fb, n, next_ms)?;
            next_ms += step_ms;
        }
        feed(&mut decoder, &mut fb, &data).map_err(bad)?;
        last_ms = ms;
    }
    // The last screen, once.
    n += 1;
    emit(&mut out, &fb, n, next_ms.max(last_ms))?;
    match out {
        Out::Video { mut child, .. } => {
            drop(child.stdin.take());
            let status = child
                .wait()
                .map_err(|e| CmdError::Other(format!("ffmpeg: {e}")))?;
            if !status.success() {
                return Err(CmdError::Other(format!(
                    "ffmpeg failed ({status}): see its message above"
                )));
            }
            eprintln!(
                "tcvnc export: {} frames at {fps} fps to {}",
                n,
                output.display()
            );
        }
        Out::Pngs { dir } => eprintln!(
            "tcvnc export: {n} PNG frames, one every {}, in {}",
            humantime::format_duration(step),
            dir.display()
        ),
    }
    Ok(())
}

fn feed(decoder: &mut UpdateDecoder, fb: &mut Framebuffer, data: &[u8]) -> Result<(), String> {
    let mut rest = data;
    while !rest.is_empty() {
        let fed = decoder
            .feed(rest, fb)
            .map_err(|e| format!("tcvnc cannot decode it: {e}"))?;
        rest = &rest[fed.consumed..];
        if fed.consumed == 0 && fed.events.is_empty() {
            break;
        }
    }
    Ok(())
}

fn emit(out: &mut Out, fb: &Framebuffer, n: u64, ms: u64) -> Result<(), CmdError> {
    match out {
        Out::Video { child, w, h, frame } => {
            // The first size throughout: a later size is cropped or padded at the
            // top left.
            frame.fill(0);
            let (fw, fh) = (fb.width().min(*w), fb.height().min(*h));
            for y in 0..fh {
                let row = fb.row(crate::console::fb::Rect::new(0, y, fw, 1), 0);
                let at = usize::from(y) * usize::from(*w) * 3;
                for (x, &p) in row.iter().enumerate() {
                    frame[at + x * 3..at + x * 3 + 3].copy_from_slice(&[
                        (p >> 16) as u8,
                        (p >> 8) as u8,
                        p as u8,
                    ]);
                }
            }
            let stdin = child
                .stdin
                .as_mut()
                .ok_or_else(|| CmdError::Other("ffmpeg's input closed".into()))?;
            stdin
                .write_all(frame)
                .map_err(|e| CmdError::Other(format!("ffmpeg stopped reading: {e}")))
        }
        Out::Pngs { dir } => {
            if fb.bounds().is_empty() {
                return Ok(());
            }
            let png = crate::console::png::encode(fb)
                .map_err(|e| CmdError::Other(format!("PNG: {e}")))?;
            let t = Duration::from_millis(ms);
            let name = format!(
                "frame-{n:06}-{:03}m{:02}.{:03}s.png",
                t.as_secs() / 60,
                t.as_secs() % 60,
                t.subsec_millis()
            );
            let p = dir.join(name);
            std::fs::write(&p, png)
                .map_err(|e| CmdError::Other(format!("cannot write {}: {e}", p.display())))
        }
    }
}
