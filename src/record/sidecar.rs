//! The JSON beside each recording (`<recording>.json`, 0600): instance, region, start
//! and end, viewers with role and address, URLs spent, resumes, whether input was
//! recorded and why a recording stopped early. Written when the recording starts, when
//! viewers come and go, and at its end (write-then-rename: never half a file). Also
//! here: the listing behind `GET /api/recordings` and the retention sweep.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// One viewer's visit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Viewer {
    /// Its session id (the log's `id`).
    pub session: u64,
    /// `control` or `view`, as it joined.
    pub role: String,
    /// Its address.
    pub peer: String,
    /// `tcp` or `ws`.
    pub via: String,
    /// When it joined (RFC 3339).
    pub joined: String,
    /// When it left (RFC 3339), if it has.
    pub left: Option<String>,
}

/// The sidecar.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Sidecar {
    /// The recording's file name (in the same directory).
    pub file: String,
    /// What the file holds.
    pub format: String,
    /// The instance.
    pub instance: String,
    /// Its region.
    pub region: String,
    /// When the recording started (RFC 3339, milliseconds).
    pub start: String,
    /// When it ended; `null` while it runs (or when tcvnc died first).
    pub end: Option<String>,
    /// The screen's size at the start.
    pub width: u16,
    /// The screen's size at the start.
    pub height: u16,
    /// Viewers, in the order they joined.
    pub viewers: Vec<Viewer>,
    /// Console URLs spent by the session (the first connection's included).
    pub urls_spent: u64,
    /// Times the console was had back after a drop.
    pub resumes: u64,
    /// Viewer input is in the file.
    pub input_recorded: bool,
    /// Bytes written.
    pub bytes: u64,
    /// Why the recording stopped before the session ended, if it did.
    pub stopped: Option<String>,
    /// Why the session ended.
    pub ended: Option<String>,
    /// The recording's keyframes, oldest first: where `tcvnc play --from` starts
    /// decoding. Absent from sidecars written before keyframes (and from
    /// `GET /api/recordings`, which lists recordings, not their insides).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keyframes: Vec<Keyframe>,
}

impl Sidecar {
    /// The sidecar of a recording at `recording` (its file name is kept) of `instance` in
    /// `region`, `width`×`height`, started at `start`: nothing spent, seen or written yet.
    pub fn new(
        recording: &Path,
        instance: &str,
        region: &str,
        start: SystemTime,
        width: u16,
        height: u16,
    ) -> Sidecar {
        Sidecar {
            file: recording
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            format: FORMAT_NAME.into(),
            instance: instance.into(),
            region: region.into(),
            start: time(start),
            end: None,
            width,
            height,
            viewers: Vec::new(),
            urls_spent: 0,
            resumes: 0,
            input_recorded: false,
            bytes: 0,
            stopped: None,
            ended: None,
            keyframes: Vec::new(),
        }
    }
}

/// A keyframe: a frame of the recording whose update paints the whole screen (with its
/// name and cursor) in Tight whose zlib stream is fully flushed before its first
/// compressed chunk from there on (in the keyframe, or later when the keyframe has
/// none), so nothing from there refers back past it and decoding can start there with
/// nothing read before but the handshake's pixel format (a decoder that joins
/// mid-stream).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Keyframe {
    /// The frame's time (ms since the recording started).
    pub ms: u64,
    /// The byte offset of the frame's line in the file.
    pub offset: u64,
    /// The screen's size before the frame (the frame paints all of it).
    pub width: u16,
    /// The screen's size before the frame.
    pub height: u16,
}

/// The format's name in the sidecar.
pub const FORMAT_NAME: &str = "websockify-record-base64";

/// The sidecar's path for a recording.
pub fn path_for(recording: &Path) -> PathBuf {
    recording.with_extension("json")
}

/// An RFC 3339 time with milliseconds.
pub fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Writes `s` beside its recording in `dir`, atomically, 0600.
///
/// # Errors
/// I/O.
pub fn write(dir: &Path, s: &Sidecar) -> std::io::Result<()> {
    let path = path_for(&dir.join(&s.file));
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(s).map_err(std::io::Error::other)?;
    {
        use std::io::Write;
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o600);
        }
        let mut f = o.open(&tmp)?;
        f.write_all(&text)?;
        f.sync_data()?;
    }
    std::fs::rename(&tmp, &path)
}

/// The keyframes in the sidecar of `recording`, oldest first; none when it has no
/// sidecar (a recording copied alone, websockify's) or one without keyframes. Why there
/// are none is said, for the log.
pub fn keyframes(recording: &Path) -> Result<Vec<Keyframe>, String> {
    let path = path_for(recording);
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let side: Sidecar = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{} is not a recording's sidecar: {e}", path.display()))?;
    if side.keyframes.is_empty() {
        return Err(format!("{} lists no keyframes", path.display()));
    }
    Ok(side.keyframes)
}

/// Every sidecar in `dir`, newest start first; unreadable ones are skipped (logged).
pub fn list(dir: &Path) -> std::io::Result<Vec<Sidecar>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let p = entry?.path();
        if p.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        match std::fs::read(&p)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Sidecar>(&b).map_err(|e| e.to_string()))
        {
            Ok(s) => out.push(s),
            Err(e) => tracing::debug!(path = %p.display(), "not a recording's sidecar: {e}"),
        }
    }
    out.sort_by(|a, b| b.start.cmp(&a.start));
    Ok(out)
}

/// Deletes recordings (and their sidecars) last written more than `retention` ago.
/// Only files that are recordings are touched: a `.js` whose first line is the format's
/// header, and the `.json` of the same name. Returns how many recordings went.
pub fn sweep(dir: &Path, retention: Duration, now: SystemTime) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for entry in entries.flatten() {
        let p = entry.path();
        if p.extension().and_then(|e| e.to_str()) != Some("js") {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        let old = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age > retention);
        if !old || !is_recording(&p) {
            continue;
        }
        match std::fs::remove_file(&p) {
            Ok(()) => {
                let _ = std::fs::remove_file(path_for(&p));
                tracing::info!(path = %p.display(), retention_s = retention.as_secs(), "recording deleted ([recording] retention)");
                n += 1;
            }
            Err(e) => {
                tracing::warn!(path = %p.display(), "cannot delete an expired recording: {e}; check the permissions of [recording] dir");
            }
        }
    }
    n
}

fn is_recording(p: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 18];
    std::fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && head == super::format::HEADER.as_bytes()[..18]
}

/// Creates `dir` (0700) when missing and checks that a file can be created in it.
///
/// # Errors
/// What is wrong, with the fix, for the operator.
pub fn prepare_dir(dir: &Path) -> Result<(), String> {
    if !dir.exists() {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            b.mode(0o700);
        }
        b.create(dir).map_err(|e| {
            format!(
                "recording.dir: cannot create {}: {e} (create it, writable by tcvnc's user)",
                dir.display()
            )
        })?;
    }
    let probe = dir.join(format!(".tcvnc-probe-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| {
            format!(
                "recording.dir: cannot write in {}: {e} (make it writable by tcvnc's user)",
                dir.display()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(file: &str) -> Sidecar {
        let mut s = Sidecar::new(
            Path::new(file),
            "ins-a",
            "ap-guangzhou",
            SystemTime::now(),
            640,
            480,
        );
        s.urls_spent = 1;
        s
    }

    #[test]
    fn sidecars_are_written_listed_and_swept() {
        let dir = tempfile::tempdir().expect("dir");
        let rec = dir.path().join("ins-a-1.js");
        std::fs::write(&rec, super::super::format::HEADER).expect("write");
        write(dir.path(), &sample("ins-a-1.js")).expect("sidecar");
        // Not a recording: never deleted, however old.
        let other = dir.path().join("notes.js");
        std::fs::write(&other, "console.log(1)\n").expect("write");
        let listed = list(dir.path()).expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].file, "ins-a-1.js");
        let now = SystemTime::now();
        assert_eq!(
            sweep(dir.path(), Duration::from_secs(3600), now),
            0,
            "young"
        );
        let later = now + Duration::from_secs(7200);
        assert_eq!(sweep(dir.path(), Duration::from_secs(3600), later), 1);
        assert!(!rec.exists());
        assert!(!path_for(&rec).exists());
        assert!(other.exists());
    }

    #[test]
    fn prepare_dir_creates_a_private_directory() {
        let dir = tempfile::tempdir().expect("dir");
        let d = dir.path().join("a/b");
        prepare_dir(&d).expect("prepare");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&d).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
    }
}
