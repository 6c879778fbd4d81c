//! The recording file: websockify's record format (`websockify --record`), which noVNC's
//! playback page (`tests/vnc_playback.html`) loads as a script and plays.
//!
//! ```text
//! var VNC_frame_data = [
//! '{0{UkZCIDAwMy4wMDgK',          one websocket message from the server, at 0 ms
//! '}1520}BAEAAAAA/8E=',           one from the client, at 1520 ms
//! 'EOF'];
//! ```
//!
//! Each line is a JavaScript string: `{` (server to client) or `}` (client to server),
//! the milliseconds since the session started, the same sign again, then the message.
//! websockify writes the message as Latin-1 text with Python's `unicode_escape`
//! ("binary"); tcvnc writes base64, which noVNC's page recognises by the first server
//! message starting with `UkZC` (`RFB` in base64): a third of the size of escaped binary
//! for compressed pixels, and nothing to escape. The reader takes both.
//!
//! A recording of a session that ended has, as its last frame, an empty
//! FramebufferUpdate at the time the session ended: the file lasts as long as the
//! session did, its last still screen included (a player that stops at the last frame
//! would otherwise cut it).
//!
//! A file is appended to as the session runs; one cut short (a crash, a full disk) lacks
//! the closing `'EOF'];` and is read up to its last whole line.

use std::io::BufRead;

use base64::Engine as _;

/// The file's first line.
pub const HEADER: &str = "var VNC_frame_data = [\n";
/// The file's last line.
pub const FOOTER: &str = "'EOF'];\n";

/// Who sent a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    /// The server (the console, as viewers saw it).
    Server,
    /// A client (viewer input, when recorded).
    Client,
}

/// One recorded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Who sent it.
    pub from: From,
    /// Milliseconds since the session started.
    pub ms: u64,
    /// The message.
    pub data: Vec<u8>,
}

/// Appends one line for `data` sent by `from` at `ms`.
pub fn line(from: From, ms: u64, data: &[u8], out: &mut Vec<u8>) {
    let sign = match from {
        From::Server => '{',
        From::Client => '}',
    };
    out.push(b'\'');
    out.extend_from_slice(format!("{sign}{ms}{sign}").as_bytes());
    let start = out.len();
    out.resize(
        start + base64::encoded_len(data.len(), true).unwrap_or(0),
        0,
    );
    let n = base64::engine::general_purpose::STANDARD
        .encode_slice(data, &mut out[start..])
        .unwrap_or(0);
    out.truncate(start + n);
    out.extend_from_slice(b"',\n");
}

/// What is wrong with a recording.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// Reading failed.
    #[error("cannot read the recording: {0}")]
    Io(#[from] std::io::Error),
    /// Not a recording.
    #[error("not a recording (websockify's record format): {0}")]
    NotRecording(String),
    /// A line that is not a frame.
    #[error("line {line}{}: {why}", after_seek(*.after))]
    Line {
        /// 1-based (counted from `after` when the reader was moved there).
        line: u64,
        /// The byte offset the reader was moved to ([`Reader::seek`]); 0 when it read
        /// from the start.
        after: u64,
        /// What is wrong.
        why: String,
    },
    /// A keyframe's line is not where the sidecar says.
    #[error("the keyframe at {ms} ms is not at byte {offset}: {why}")]
    Keyframe {
        /// The keyframe's time.
        ms: u64,
        /// Where the sidecar put it.
        offset: u64,
        /// What is there instead.
        why: String,
    },
}

fn after_seek(offset: u64) -> String {
    if offset == 0 {
        String::new()
    } else {
        format!(" after byte {offset}")
    }
}

/// How the messages are written, decided at the first one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Text {
    Base64,
    Binary,
}

/// Reads a recording frame by frame (a file of any size, one line held at a time).
#[derive(Debug)]
pub struct Reader<R> {
    input: R,
    line: u64,
    /// Where [`Reader::seek`] moved it (0: never moved).
    after: u64,
    text: Option<Text>,
    buf: Vec<u8>,
    /// The closing `'EOF'` was read.
    pub finished: bool,
}

impl<R: BufRead> Reader<R> {
    /// A reader of `input`, after checking its first line.
    ///
    /// # Errors
    /// Not a recording.
    pub fn new(mut input: R) -> Result<Reader<R>, FormatError> {
        let mut first = Vec::new();
        input.read_until(b'\n', &mut first)?;
        let text = String::from_utf8_lossy(&first);
        let t = text.trim();
        if !(t.starts_with("var VNC_frame_data") && t.ends_with('[')) {
            let shown: String = t.chars().take(40).collect();
            return Err(FormatError::NotRecording(format!(
                "it starts with {shown:?}, not \"var VNC_frame_data = [\""
            )));
        }
        Ok(Reader {
            input,
            line: 1,
            after: 0,
            text: None,
            buf: Vec::new(),
            finished: false,
        })
    }

    /// The next frame; `None` at the end (with [`Reader::finished`] false when the file
    /// was cut short).
    ///
    /// # Errors
    /// A malformed line, or reading failed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FormatError> {
        loop {
            if self.finished {
                return Ok(None);
            }
            self.buf.clear();
            let n = self.input.read_until(b'\n', &mut self.buf)?;
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            if self.buf.last() != Some(&b'\n') {
                // A last line cut short: what was whole is what there is.
                return Ok(None);
            }
            let l = trim(&self.buf);
            let (line, after) = (self.line, self.after);
            if l.is_empty() {
                continue;
            }
            if l.starts_with(b"'EOF'") {
                self.finished = true;
                return Ok(None);
            }
            return parse(&mut self.text, l)
                .map(Some)
                .map_err(|why| FormatError::Line { line, after, why });
        }
    }
}

impl<R: BufRead + std::io::Seek> Reader<R> {
    /// Moves to the line that starts at byte `offset` (a keyframe's, from the sidecar);
    /// frames are then read from there, written as the ones read before were.
    ///
    /// # Errors
    /// Seeking failed.
    pub fn seek(&mut self, offset: u64) -> Result<(), FormatError> {
        self.input.seek(std::io::SeekFrom::Start(offset))?;
        self.line = 0;
        self.after = offset;
        self.finished = false;
        Ok(())
    }
}

/// One frame's line (quotes and comma included).
fn parse(text_kind: &mut Option<Text>, l: &[u8]) -> Result<Frame, String> {
    {
        let body = l
            .strip_prefix(b"'")
            .and_then(|b| b.strip_suffix(b"',").or_else(|| b.strip_suffix(b"'")))
            .ok_or("not a quoted string")?;
        let (from, sign) = match body.first() {
            Some(b'{') => (From::Server, b'{'),
            Some(b'}') => (From::Client, b'}'),
            _ => return Err("a frame starts with { or }".into()),
        };
        let rest = &body[1..];
        let end = rest
            .iter()
            .position(|&b| b == sign)
            .ok_or("no end to the timestamp")?;
        let ms = std::str::from_utf8(&rest[..end])
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or("the timestamp is not a number")?;
        let payload = &rest[end + 1..];
        let text =
            *text_kind.get_or_insert(if from == From::Server && !payload.starts_with(b"UkZC") {
                Text::Binary
            } else {
                Text::Base64
            });
        let data = match text {
            Text::Base64 => base64::engine::general_purpose::STANDARD
                .decode(payload)
                .map_err(|e| format!("bad base64: {e}"))?,
            Text::Binary => unescape(payload)?,
        };
        Ok(Frame { from, ms, data })
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

/// Python's `unicode_escape` of Latin-1 text, undone (websockify's "binary" frames).
fn unescape(s: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let Some(&e) = s.get(i) else {
            return Err("a lone backslash at the end".into());
        };
        i += 1;
        match e {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'\\' => out.push(b'\\'),
            b'\'' => out.push(b'\''),
            b'"' => out.push(b'"'),
            b'x' => {
                let hex = s.get(i..i + 2).ok_or("a short \\x escape")?;
                let v = std::str::from_utf8(hex)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or("a bad \\x escape")?;
                out.push(v);
                i += 2;
            }
            other => return Err(format!("an unknown escape \\{}", other as char)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(text: &[u8]) -> (Vec<Frame>, bool) {
        let mut r = Reader::new(text).expect("header");
        let mut frames = Vec::new();
        while let Some(f) = r.next_frame().expect("frame") {
            frames.push(f);
        }
        (frames, r.finished)
    }

    #[test]
    fn lines_round_trip() {
        let mut out = HEADER.as_bytes().to_vec();
        line(From::Server, 0, b"RFB 003.008\n", &mut out);
        line(
            From::Client,
            1520,
            &[4, 1, 0, 0, 0, 0, 0xff, 0xc1],
            &mut out,
        );
        line(From::Server, 7, &[], &mut out);
        out.extend_from_slice(FOOTER.as_bytes());
        let text = String::from_utf8(out.clone()).expect("ascii");
        assert!(text.contains("'{0{UkZCIDAwMy4wMDgK',\n"), "{text}");
        let (frames, finished) = read_all(&out);
        assert!(finished);
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0].data, b"RFB 003.008\n");
        assert_eq!(frames[1].from, From::Client);
        assert_eq!(frames[1].ms, 1520);
        assert_eq!(frames[1].data, [4, 1, 0, 0, 0, 0, 0xff, 0xc1]);
        assert!(frames[2].data.is_empty());
    }

    #[test]
    fn a_file_cut_short_reads_to_its_last_whole_line() {
        let mut out = HEADER.as_bytes().to_vec();
        line(From::Server, 0, b"RFB 003.008\n", &mut out);
        line(From::Server, 5, b"more", &mut out);
        out.extend_from_slice(b"'{9{AAA");
        let (frames, finished) = read_all(&out);
        assert!(!finished);
        assert_eq!(frames.len(), 2);
    }

    /// What websockify itself writes (Python's `unicode_escape` of Latin-1).
    #[test]
    fn websockify_binary_frames_are_read() {
        let text = b"var VNC_frame_data = [\n'{0{RFB 003.008\\n',\n'}12}\\x01',\n'{30{\\x00\\x00\\\\\\'\\xff',\n'EOF'];\n";
        let (frames, finished) = read_all(text);
        assert!(finished);
        assert_eq!(frames[0].data, b"RFB 003.008\n");
        assert_eq!(frames[1].data, [1]);
        assert_eq!(frames[2].data, [0, 0, b'\\', b'\'', 0xff]);
    }

    #[test]
    fn bad_input_is_refused_with_where() {
        assert!(matches!(
            Reader::new(&b"<html>\n"[..]),
            Err(FormatError::NotRecording(_))
        ));
        let mut r = Reader::new(&b"var VNC_frame_data = [\n'{x{AA',\n"[..]).expect("header");
        let e = r.next_frame().expect_err("bad timestamp");
        assert!(e.to_string().contains("line 2"), "{e}");
        let mut r = Reader::new(&b"var VNC_frame_data = [\n'{1{\\q',\n"[..]).expect("header");
        assert!(r.next_frame().is_err());
    }
}
