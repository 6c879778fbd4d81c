//! The recording's file, written on a thread of its own so that a slow or full disk never
//! holds up the console: lines are queued (bounded in bytes), written as they come, and
//! made durable (`fdatasync`) at least every second while there is anything new, so a
//! crash loses at most the last second. A write error, or a disk that falls more than
//! [`MAX_QUEUED`] behind, stops the recording (a log line naming the cause and the fix,
//! `tcvnc_console_recordings_stopped_total{cause}`); the session goes on.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use parking_lot::Mutex;

use super::format::{self, From};
use crate::metrics::Metrics;

/// The most bytes queued for the disk before the recording is stopped.
pub const MAX_QUEUED: usize = 64 << 20;
/// How often what was written is made durable.
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// What the writer thread is told.
enum Msg {
    Line(Vec<u8>),
    /// Close the file properly (the session ended).
    Finish,
}

/// Why a recording stopped early.
#[derive(Debug, Clone)]
pub struct Stopped {
    /// The metric's label.
    pub cause: &'static str,
    /// The log's words.
    pub why: String,
}

/// State shared by the sink and its thread.
#[derive(Debug)]
struct Shared {
    queued: AtomicUsize,
    written: AtomicU64,
    /// Where the next line queued starts in the file; held while a line is queued, so
    /// lines are queued in the order of their offsets.
    next_offset: Mutex<u64>,
    stopped: Mutex<Option<Stopped>>,
}

/// The sending side of a recording: cheap to clone, safe to use from any task.
#[derive(Debug, Clone)]
pub struct Sink {
    tx: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
    start: Instant,
    instance: Arc<str>,
    path: Arc<Path>,
    metrics: Arc<Metrics>,
}

impl Sink {
    /// Creates `path` (0600, not overwriting anything) with the format's header and starts
    /// its thread; the session's clock starts now. Returns the thread's handle too (joined
    /// after [`Sink::finish`], so the file is closed when the caller says it is).
    ///
    /// # Errors
    /// The file could not be created.
    pub fn create(
        path: &Path,
        instance: &str,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<(Sink, std::thread::JoinHandle<()>)> {
        let file = open_new(path)?;
        let (tx, rx) = mpsc::channel();
        let sink = Sink::new(tx, path, instance, metrics);
        let thread_sink = sink.clone();
        let handle = std::thread::Builder::new()
            .name("tcvnc-record".into())
            .spawn(move || write_loop(file, &rx, &thread_sink))?;
        // The header goes first, through the same queue.
        let _ = sink.raw(format::HEADER.as_bytes().to_vec());
        Ok((sink, handle))
    }

    /// A sink sending to `tx`, its clock starting now.
    fn new(tx: mpsc::Sender<Msg>, path: &Path, instance: &str, metrics: Arc<Metrics>) -> Sink {
        Sink {
            tx,
            shared: Arc::new(Shared {
                queued: AtomicUsize::new(0),
                written: AtomicU64::new(0),
                next_offset: Mutex::new(0),
                stopped: Mutex::new(None),
            }),
            start: Instant::now(),
            instance: instance.into(),
            path: path.into(),
            metrics,
        }
    }

    /// Milliseconds since the session started.
    pub fn ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Where it writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    /// Why it stopped, if it did.
    pub fn stopped(&self) -> Option<Stopped> {
        self.shared.stopped.lock().clone()
    }

    /// Records `data` sent by `from` now; false once the recording has stopped.
    pub fn record(&self, from: From, data: &[u8]) -> bool {
        self.record_at(from, self.ms(), data)
    }

    /// Records `data` sent by `from` at `ms`; false once the recording has stopped.
    pub fn record_at(&self, from: From, ms: u64, data: &[u8]) -> bool {
        self.line(from, ms, data).is_some()
    }

    /// Records a keyframe's server messages now; returns its time and its line's byte
    /// offset in the file (`None` once the recording has stopped).
    pub fn record_keyframe(&self, data: &[u8]) -> Option<(u64, u64)> {
        let ms = self.ms();
        self.line(From::Server, ms, data).map(|at| (ms, at))
    }

    /// Queues the line for `data`; returns its offset.
    fn line(&self, from: From, ms: u64, data: &[u8]) -> Option<u64> {
        if self.stopped().is_some() {
            return None;
        }
        let mut l = Vec::with_capacity(data.len() * 4 / 3 + 32);
        format::line(from, ms, data, &mut l);
        self.raw(l)
    }

    /// Queues `line`; returns where it starts in the file.
    fn raw(&self, line: Vec<u8>) -> Option<u64> {
        let n = line.len();
        let queued = self.shared.queued.fetch_add(n, Ordering::Relaxed) + n;
        if queued > MAX_QUEUED {
            self.stop(Stopped {
                cause: "slow_disk",
                why: format!(
                    "the disk fell more than {} MiB behind the console; the recording {} stops here (the session goes on): give [recording] dir a faster disk",
                    MAX_QUEUED >> 20,
                    self.path.display()
                ),
            });
            return None;
        }
        let mut next = self.shared.next_offset.lock();
        let at = *next;
        self.tx.send(Msg::Line(line)).ok()?;
        *next += n as u64;
        Some(at)
    }

    /// Ends the recording: the thread writes the closing line and closes the file.
    pub fn finish(&self) {
        let _ = self.tx.send(Msg::Finish);
    }

    /// Stops the recording early (the first cause wins), with its log line and metric.
    fn stop(&self, s: Stopped) {
        let mut held = self.shared.stopped.lock();
        if held.is_some() {
            return;
        }
        tracing::warn!(instance = %self.instance, cause = s.cause, "recording stopped: {}", s.why);
        self.metrics.recording_stopped(&self.instance, s.cause);
        *held = Some(s);
    }
}

/// Creates `path` for writing: new (never another's file), 0600.
fn open_new(path: &Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
}

fn write_loop(file: std::fs::File, rx: &mpsc::Receiver<Msg>, sink: &Sink) {
    let mut out = std::io::BufWriter::with_capacity(256 << 10, file);
    let mut dirty = false;
    let mut synced = Instant::now();
    let fail = |e: std::io::Error| {
        sink.stop(Stopped {
            cause: "write_error",
            why: format!(
                "cannot write {}: {e}; the recording stops here (the session goes on): free space on that disk or point [recording] dir elsewhere",
                sink.path.display()
            ),
        });
    };
    loop {
        let msg = match rx.recv_timeout(SYNC_EVERY) {
            Ok(m) => Some(m),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => Some(Msg::Finish),
        };
        match msg {
            Some(Msg::Line(l)) => {
                sink.shared.queued.fetch_sub(l.len(), Ordering::Relaxed);
                if sink.stopped().is_some() {
                    continue;
                }
                if let Err(e) = out.write_all(&l) {
                    fail(e);
                    continue;
                }
                sink.shared
                    .written
                    .fetch_add(l.len() as u64, Ordering::Relaxed);
                sink.metrics.recorded(&sink.instance, l.len() as u64);
                dirty = true;
            }
            Some(Msg::Finish) => {
                if sink.stopped().is_none() {
                    let end = out
                        .write_all(format::FOOTER.as_bytes())
                        .and_then(|()| out.flush())
                        .and_then(|()| out.get_ref().sync_data());
                    match end {
                        Ok(()) => {
                            let n = format::FOOTER.len() as u64;
                            sink.shared.written.fetch_add(n, Ordering::Relaxed);
                            sink.metrics.recorded(&sink.instance, n);
                        }
                        Err(e) => fail(e),
                    }
                }
                return;
            }
            None => {}
        }
        if dirty && synced.elapsed() >= SYNC_EVERY && sink.stopped().is_none() {
            if let Err(e) = out.flush().and_then(|()| out.get_ref().sync_data()) {
                fail(e);
            }
            dirty = false;
            synced = Instant::now();
        }
    }
}

/// A file name not taken yet in `dir` for `instance`'s recording starting at `at`:
/// `<instance>-<UTC time>.js` (`-2`, `-3`… when two start in the same second).
pub fn free_name(dir: &Path, instance: &str, at: std::time::SystemTime) -> PathBuf {
    let stamp = humantime::format_rfc3339_seconds(at)
        .to_string()
        .replace(['-', ':'], "");
    let base = format!("{instance}-{stamp}");
    let mut n = 1;
    loop {
        let name = if n == 1 {
            format!("{base}.js")
        } else {
            format!("{base}-{n}.js")
        };
        let p = dir.join(name);
        if !p.exists() {
            return p;
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recording_is_written_whole_and_private() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("r.js");
        let (sink, thread) =
            Sink::create(&path, "ins-test", Arc::new(Metrics::new())).expect("create");
        assert!(sink.record_at(From::Server, 0, b"RFB 003.008\n"));
        assert!(sink.record_at(From::Client, 3, b"x"));
        let (ms, at) = sink.record_keyframe(b"key").expect("recording");
        assert!(sink.record_at(From::Server, 9, b"after"));
        sink.finish();
        thread.join().expect("thread");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.starts_with(format::HEADER));
        assert!(text.ends_with(format::FOOTER));
        assert_eq!(sink.written() as usize, text.len());
        // The keyframe's offset is where its line starts.
        let mut line = Vec::new();
        format::line(From::Server, ms, b"key", &mut line);
        let at = usize::try_from(at).expect("offset");
        assert_eq!(text.as_bytes().get(at..at + line.len()), Some(&line[..]));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Never another's file.
        assert!(Sink::create(&path, "ins-test", Arc::new(Metrics::new())).is_err());
    }

    #[test]
    fn a_full_disk_stops_the_recording_not_the_caller() {
        let full = Path::new("/dev/full");
        if !full.exists() {
            return;
        }
        // /dev/full exists, so create_new refuses it: write through a sink made by hand.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(full)
            .expect("open /dev/full");
        let (tx, rx) = mpsc::channel();
        let metrics = Arc::new(Metrics::new());
        let sink = Sink::new(tx, full, "ins-full", metrics.clone());
        let t = sink.clone();
        let thread = std::thread::spawn(move || write_loop(file, &rx, &t));
        // More than the buffer holds, so a write reaches the device.
        let big = vec![7u8; 400 << 10];
        assert!(sink.record_at(From::Server, 0, &big));
        sink.finish();
        thread.join().expect("thread");
        let stopped = sink.stopped().expect("stopped");
        assert_eq!(stopped.cause, "write_error");
        assert!(stopped.why.contains("free space"), "{}", stopped.why);
        assert!(
            !sink.record_at(From::Server, 1, b"after"),
            "refused after a stop"
        );
        let text = metrics.encode();
        assert!(
            text.contains("tcvnc_console_recordings_stopped_total{instance=\"ins-full\",cause=\"write_error\"} 1"),
            "{text}"
        );
    }

    /// A disk that takes nothing (the thread never writes) stops the recording once
    /// more than MAX_QUEUED waits; the caller is never blocked.
    #[test]
    fn a_disk_too_slow_stops_the_recording() {
        let (tx, _rx) = mpsc::channel();
        let metrics = Arc::new(Metrics::new());
        let sink = Sink::new(tx, Path::new("/nowhere"), "ins-slow", metrics.clone());
        let chunk = vec![1u8; 1 << 20];
        let mut taken = 0;
        while sink.record_at(From::Server, 0, &chunk) {
            taken += 1;
            assert!(taken < 100, "never stopped");
        }
        // 1 MiB of data is 1.33 MiB of base64: about 48 chunks fit in 64 MiB.
        assert!((40..=50).contains(&taken), "{taken}");
        assert_eq!(sink.stopped().expect("stopped").cause, "slow_disk");
        assert!(metrics.encode().contains("cause=\"slow_disk\"} 1"));
    }

    #[test]
    fn names_do_not_collide() {
        let dir = tempfile::tempdir().expect("dir");
        let at = std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let a = free_name(dir.path(), "ins-a", at);
        assert_eq!(
            a.file_name().and_then(|n| n.to_str()),
            Some("ins-a-20270115T080000Z.js")
        );
        std::fs::write(&a, "x").expect("write");
        let b = free_name(dir.path(), "ins-a", at);
        assert!(b.to_string_lossy().ends_with("Z-2.js"), "{}", b.display());
    }
}
