//! `tcvnc screenshot INSTANCE [-o FILE]`: the console's screen as a PNG, from a running
//! daemon (`--via`) or one-shot. A file is written whole or not at all (a temporary file
//! beside it, renamed once the PNG is complete); `-o -` writes to stdout.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

use super::via::{check_instance_arg, one_shot, Action, Via};
use super::CmdError;
use crate::cli::ViaArgs;
use crate::cloud::credentials::Env;

/// The PNG signature.
const SIGNATURE: &[u8; 8] = b"\x89PNG\r\n\x1a\n";
/// The largest PNG accepted: an 8192 × 8192 screen of noise is about 202 MB.
const MAX_PNG: u64 = 256 << 20;

/// Where the PNG goes.
enum Output {
    Stdout,
    File(PathBuf),
}

impl Output {
    /// `-o FILE`, `-o -`, else `INSTANCE.png`.
    fn from_flag(flag: Option<PathBuf>, instance: &str) -> Result<Output, CmdError> {
        match flag {
            Some(p) if p.as_os_str() == "-" => {
                if std::io::stdout().is_terminal() {
                    return Err(CmdError::Usage(
                        "-o -: stdout is a terminal; redirect it (> shot.png) or pass -o FILE"
                            .into(),
                    ));
                }
                Ok(Output::Stdout)
            }
            Some(p) => Ok(Output::File(p)),
            None => Ok(Output::File(PathBuf::from(format!("{instance}.png")))),
        }
    }
}

/// Saves the screen of `instance`.
///
/// # Errors
/// Usage (64), the daemon unreachable or refusing (69), the token refused (77), the
/// file not writable (1).
pub(super) async fn run(
    instance: &str,
    output: Option<PathBuf>,
    via: ViaArgs,
) -> Result<(), CmdError> {
    check_instance_arg(instance)?;
    let out = Output::from_flag(output, instance)?;
    match Via::from_args(via, &Env::from_process())? {
        Via::Daemon(d) => {
            let mut resp = d.send(instance, &Action::Screenshot).await?;
            let mut sink = Sink::open(&out).await?;
            let result = async {
                while let Some(chunk) = resp.chunk().await.map_err(|e| {
                    CmdError::Refused(format!("the daemon's answer for {instance} broke off: {e}"))
                })? {
                    sink.write(&chunk).await?;
                }
                Ok(())
            }
            .await;
            sink.finish(result).await
        }
        Via::OneShot(o) => {
            let png = one_shot(instance, &o, &Action::Screenshot).await?;
            let mut sink = Sink::open(&out).await?;
            let result = sink.write(&png).await;
            sink.finish(result).await
        }
    }
}

/// The PNG on its way out: checked (signature, size) before anything reaches stdout or
/// the file's final name.
struct Sink {
    out: SinkOut,
    /// The first bytes, until the signature and IHDR's size are seen.
    head: Vec<u8>,
    written: u64,
}

/// The signature (8 bytes) and the IHDR chunk's length, type, width and height.
const HEAD: usize = 24;

enum SinkOut {
    Stdout(tokio::io::Stdout),
    File {
        file: tokio::fs::File,
        /// The temporary file, renamed to `target` when complete, removed otherwise.
        part: PathBuf,
        target: PathBuf,
    },
}

impl SinkOut {
    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            SinkOut::Stdout(s) => s.write_all(bytes).await,
            SinkOut::File { file, .. } => file.write_all(bytes).await,
        }
    }

    fn error(&self, e: &std::io::Error) -> CmdError {
        match self {
            SinkOut::Stdout(_) => CmdError::Other(format!("cannot write to stdout: {e}")),
            SinkOut::File { part, .. } => {
                CmdError::Other(format!("cannot write {}: {e}", part.display()))
            }
        }
    }
}

impl Sink {
    async fn open(out: &Output) -> Result<Sink, CmdError> {
        let out = match out {
            Output::Stdout => SinkOut::Stdout(tokio::io::stdout()),
            Output::File(target) => {
                let part = part_path(target);
                let file = tokio::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&part)
                    .await
                    .map_err(|e| {
                        CmdError::Other(format!("cannot create {}: {e}", part.display()))
                    })?;
                SinkOut::File {
                    file,
                    part,
                    target: target.clone(),
                }
            }
        };
        Ok(Sink {
            out,
            head: Vec::with_capacity(HEAD),
            written: 0,
        })
    }

    /// Takes the next bytes; nothing is written until the signature and IHDR are seen.
    async fn write(&mut self, mut bytes: &[u8]) -> Result<(), CmdError> {
        self.written += bytes.len() as u64;
        if self.written > MAX_PNG {
            return Err(CmdError::Other(format!(
                "the daemon's PNG is larger than {} MiB, more than any screen can need",
                MAX_PNG >> 20
            )));
        }
        let Sink { out, head, .. } = self;
        if head.len() < HEAD {
            let take = (HEAD - head.len()).min(bytes.len());
            head.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if head.len() < HEAD {
                return Ok(());
            }
            if head[..8] != SIGNATURE[..] || &head[12..16] != b"IHDR" {
                return Err(CmdError::Other(
                    "the daemon's answer is not a PNG (is --via the tcvnc daemon's address?)"
                        .into(),
                ));
            }
            out.write_all(head).await.map_err(|e| out.error(&e))?;
        }
        out.write_all(bytes).await.map_err(|e| out.error(&e))
    }

    /// Completes the output when `result` and the PNG are whole; otherwise removes the
    /// temporary file.
    async fn finish(mut self, result: Result<(), CmdError>) -> Result<(), CmdError> {
        let result = result.and_then(|()| match self.head.get(16..HEAD) {
            Some(ihdr) => Ok(ihdr.to_vec()),
            None => Err(CmdError::Other(
                "the daemon's answer is not a complete PNG".into(),
            )),
        });
        let result = match result {
            Ok(ihdr) => self.complete().await.map(|()| ihdr),
            Err(e) => Err(e),
        };
        match (result, &self.out) {
            (Ok(ihdr), SinkOut::File { target, .. }) => {
                let w = u32::from_be_bytes([ihdr[0], ihdr[1], ihdr[2], ihdr[3]]);
                let h = u32::from_be_bytes([ihdr[4], ihdr[5], ihdr[6], ihdr[7]]);
                eprintln!(
                    "tcvnc: saved {} ({w}x{h}, {} bytes)",
                    target.display(),
                    self.written
                );
                Ok(())
            }
            (Ok(_), SinkOut::Stdout(_)) => Ok(()),
            (Err(e), SinkOut::File { part, .. }) => {
                let _ = tokio::fs::remove_file(part).await;
                Err(e)
            }
            (Err(e), SinkOut::Stdout(_)) => Err(e),
        }
    }

    /// Flushes; renames the temporary file onto the target.
    async fn complete(&mut self) -> Result<(), CmdError> {
        match &mut self.out {
            SinkOut::Stdout(s) => match s.flush().await {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    Err(CmdError::Other(format!("cannot write to stdout: {e}")))
                }
                _ => Ok(()),
            },
            SinkOut::File { file, part, target } => {
                file.sync_all().await.map_err(|e| {
                    CmdError::Other(format!("cannot write {}: {e}", part.display()))
                })?;
                tokio::fs::rename(&*part, &*target).await.map_err(|e| {
                    CmdError::Other(format!(
                        "cannot rename {} to {}: {e}",
                        part.display(),
                        target.display()
                    ))
                })
            }
        }
    }
}

/// `DIR/.NAME.PID.part` beside `target`.
fn part_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map_or_else(|| "screenshot".into(), |n| n.to_string_lossy().into_owned());
    target.with_file_name(format!(".{name}.{}.part", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_temporary_file_is_beside_the_target() {
        let p = part_path(Path::new("/tmp/x/shot.png"));
        assert_eq!(p.parent(), Some(Path::new("/tmp/x")));
        let name = p.file_name().expect("name").to_string_lossy().into_owned();
        assert!(
            name.starts_with(".shot.png.") && name.ends_with(".part"),
            "{name}"
        );
        let bare = part_path(Path::new("shot.png"));
        assert_eq!(bare.parent(), Some(Path::new("")));
    }

    #[tokio::test]
    async fn a_file_is_written_whole_or_not_at_all() {
        let dir = tempfile::tempdir().expect("tmp");
        let target = dir.path().join("a.png");
        let out = Output::File(target.clone());

        let mut bad = Sink::open(&out).await.expect("opens");
        let r = bad.write(b"<html><body>not a png</body></html>").await;
        assert!(matches!(&r, Err(CmdError::Other(m)) if m.contains("not a PNG")));
        assert!(bad.finish(r).await.is_err());
        assert!(!target.exists());
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);

        let mut short = Sink::open(&out).await.expect("opens");
        let r = short.write(SIGNATURE).await;
        assert!(short.finish(r).await.is_err(), "no IHDR");
        assert!(!target.exists());

        let fb = crate::console::fb::Framebuffer::new(3, 2);
        let png = crate::console::png::encode(&fb).expect("encodes");
        let mut ok = Sink::open(&out).await.expect("opens");
        let (a, b) = png.split_at(5);
        let r = async {
            ok.write(a).await?;
            ok.write(b).await
        }
        .await;
        ok.finish(r).await.expect("complete");
        assert_eq!(std::fs::read(&target).expect("written"), png);
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 1);
    }
}
