//! A recording read back as a console: its RFB handshake parsed from the server's
//! messages (and the client's, when the file has them: websockify's recordings), then
//! the server's bytes after the ServerInit, each with its time. tcvnc's own recordings
//! hold a whole session as a viewer saw it; websockify's hold whatever its client
//! negotiated, which is read as far as tcvnc can decode it (None or VNC security, the
//! client's pixel format).

use std::collections::VecDeque;
use std::io::BufRead;
use std::path::Path;

use super::format::{FormatError, Frame, From, Reader};
use crate::rfb::messages::{PixelFormat, ServerInit};

/// The most bytes a handshake may take before it is called broken.
const MAX_HANDSHAKE: usize = 1 << 20;

/// A recording being read.
#[derive(Debug)]
pub struct Source<R> {
    reader: Reader<R>,
    /// The session's ServerInit, with the pixel format the updates are in.
    pub init: ServerInit,
    /// Server bytes read past the handshake, with their times.
    ahead: VecDeque<(u64, Vec<u8>)>,
}

/// Opens the recording at `path`.
///
/// # Errors
/// The file cannot be read, or is not a recording tcvnc can play.
pub fn open(path: &Path) -> Result<Source<std::io::BufReader<std::fs::File>>, FormatError> {
    let f = std::fs::File::open(path)?;
    Source::new(std::io::BufReader::with_capacity(1 << 20, f))
}

impl<R: BufRead> Source<R> {
    /// Reads the handshake from `input`.
    ///
    /// # Errors
    /// Not a recording, or one whose session never got to a screen.
    pub fn new(input: R) -> Result<Source<R>, FormatError> {
        let mut reader = Reader::new(input)?;
        let mut server = Vec::new();
        let mut client = Vec::new();
        let mut times = VecDeque::new();
        let bad = |why: String| FormatError::NotRecording(why);
        // Reads frames until `server` holds `n` bytes.
        let mut need = |n: usize,
                        server: &mut Vec<u8>,
                        client: &mut Vec<u8>,
                        times: &mut VecDeque<(u64, usize)>|
         -> Result<(), FormatError> {
            while server.len() < n {
                match reader.next_frame()? {
                    Some(Frame {
                        from: From::Server,
                        ms,
                        data,
                    }) => {
                        times.push_back((ms, server.len()));
                        server.extend_from_slice(&data);
                    }
                    Some(Frame { data, .. }) => {
                        if client.len() < MAX_HANDSHAKE {
                            client.extend_from_slice(&data);
                        }
                    }
                    None => {
                        return Err(bad(
                            "it ends before the session's ServerInit (nothing to show)".into(),
                        ))
                    }
                }
                if server.len() > MAX_HANDSHAKE {
                    return Err(bad("its handshake is longer than 1 MiB".into()));
                }
            }
            Ok(())
        };
        need(12, &mut server, &mut client, &mut times)?;
        let version = &server[..12];
        let minor = match version {
            b"RFB 003.003\n" => 3,
            b"RFB 003.007\n" => 7,
            v if v.starts_with(b"RFB 003.") => 8,
            v => {
                return Err(bad(format!(
                    "it does not start with an RFB version ({:?})",
                    String::from_utf8_lossy(v)
                )))
            }
        };
        let mut at = 12;
        // The client's stream, when recorded from its start (websockify): its version,
        // then its choice of security type.
        let chosen = if minor == 3 {
            need(at + 4, &mut server, &mut client, &mut times)?;
            let t =
                u32::from_be_bytes([server[at], server[at + 1], server[at + 2], server[at + 3]]);
            at += 4;
            if t == 0 {
                return Err(bad("the recorded session was refused by the server".into()));
            }
            t
        } else {
            need(at + 1, &mut server, &mut client, &mut times)?;
            let n = usize::from(server[at]);
            at += 1;
            if n == 0 {
                return Err(bad("the recorded session was refused by the server".into()));
            }
            need(at + n, &mut server, &mut client, &mut times)?;
            let offered = server[at..at + n].to_vec();
            at += n;
            // The client's choice follows the types: read on (a few messages) for it.
            let mut tries = 0;
            while client.starts_with(b"RFB ") && client.len() <= 12 && tries < 8 {
                let more = server.len() + 1;
                if need(more, &mut server, &mut client, &mut times).is_err() {
                    break;
                }
                tries += 1;
            }
            let picked = if client.starts_with(b"RFB ") && client.len() > 12 {
                client[12]
            } else if offered.contains(&1) {
                1
            } else if offered.contains(&2) {
                2
            } else {
                offered[0]
            };
            u32::from(picked)
        };
        match chosen {
            1 if minor == 8 => at += 4,
            1 => {}
            2 => at += 16 + 4,
            other => {
                return Err(bad(format!(
                    "its session used security type {other}, which tcvnc cannot read back (None and VNC only)"
                )))
            }
        }
        need(at, &mut server, &mut client, &mut times)?;
        if (chosen == 2 || minor == 8) && server[at - 4..at] != [0, 0, 0, 0] {
            return Err(bad(
                "the recorded session failed its authentication (nothing to show)".into(),
            ));
        }
        need(at + 24, &mut server, &mut client, &mut times)?;
        let width = u16::from_be_bytes([server[at], server[at + 1]]);
        let height = u16::from_be_bytes([server[at + 2], server[at + 3]]);
        let mut pf = [0u8; 16];
        pf.copy_from_slice(&server[at + 4..at + 20]);
        let name_len = u32::from_be_bytes([
            server[at + 20],
            server[at + 21],
            server[at + 22],
            server[at + 23],
        ]) as usize;
        if name_len > 4096 {
            return Err(bad("its desktop name is longer than 4 KiB".into()));
        }
        need(at + 24 + name_len, &mut server, &mut client, &mut times)?;
        let name = String::from_utf8_lossy(&server[at + 24..at + 24 + name_len]).into_owned();
        at += 24 + name_len;
        let mut format = PixelFormat::from_bytes(&pf);
        if client.starts_with(b"RFB ") {
            if let Some(f) = client_format(&client, minor, chosen) {
                format = f;
            }
        }
        // What the handshake's frames held past the ServerInit, with their times.
        let mut ahead = VecDeque::new();
        let mut marks: Vec<(u64, usize)> = times.into_iter().collect();
        marks.push((u64::MAX, server.len()));
        for w in marks.windows(2) {
            let (ms, start) = w[0];
            let end = w[1].1;
            let from = start.max(at);
            if from < end {
                ahead.push_back((ms, server[from..end].to_vec()));
            }
        }
        Ok(Source {
            reader,
            init: ServerInit {
                width,
                height,
                format,
                name,
            },
            ahead,
        })
    }

    /// The next server bytes after the handshake and their time (ms since the start);
    /// `None` at the end.
    ///
    /// # Errors
    /// A malformed line, or reading failed.
    pub fn next_data(&mut self) -> Result<Option<(u64, Vec<u8>)>, FormatError> {
        if let Some(d) = self.ahead.pop_front() {
            return Ok(Some(d));
        }
        loop {
            match self.reader.next_frame()? {
                Some(Frame {
                    from: From::Server,
                    ms,
                    data,
                }) => return Ok(Some((ms, data))),
                Some(_) => {}
                None => return Ok(None),
            }
        }
    }

    /// The file ended with its closing line (not cut short).
    pub fn finished(&self) -> bool {
        self.reader.finished
    }
}

impl<R: BufRead + std::io::Seek> Source<R> {
    /// Continues at keyframe `k` (from the recording's sidecar): the next data is its
    /// frame, which must be the server's at `k.ms` where the sidecar says.
    ///
    /// # Errors
    /// [`FormatError::Keyframe`] when the frame there is another (the reader is then
    /// somewhere in the file: open it again to read from the start).
    pub fn seek_keyframe(&mut self, k: &super::sidecar::Keyframe) -> Result<(), FormatError> {
        self.ahead.clear();
        self.reader.seek(k.offset)?;
        let wrong = |why: String| FormatError::Keyframe {
            ms: k.ms,
            offset: k.offset,
            why,
        };
        match self.reader.next_frame() {
            Ok(Some(Frame {
                from: From::Server,
                ms,
                data,
            })) if ms == k.ms => {
                self.ahead.push_back((ms, data));
                Ok(())
            }
            Ok(Some(f)) => Err(wrong(format!(
                "a {} frame at {} ms",
                if f.from == From::Server {
                    "server"
                } else {
                    "client"
                },
                f.ms
            ))),
            Ok(None) => Err(wrong("the file ends before it".into())),
            Err(e) => Err(wrong(e.to_string())),
        }
    }
}

/// The pixel format the client set before asking for anything (websockify recordings):
/// its first messages after ClientInit.
fn client_format(client: &[u8], minor: u8, chosen: u32) -> Option<PixelFormat> {
    let mut at = 12;
    if minor != 3 {
        at += 1;
    }
    if chosen == 2 {
        at += 16;
    }
    at += 1; // ClientInit
    let mut found = None;
    loop {
        match client.get(at)? {
            0 => {
                let pf = client.get(at + 4..at + 20)?;
                let mut b = [0u8; 16];
                b.copy_from_slice(pf);
                found = Some(PixelFormat::from_bytes(&b));
                at += 20;
            }
            2 => {
                let n = client.get(at + 2..at + 4)?;
                at += 4 + 4 * usize::from(u16::from_be_bytes([n[0], n[1]]));
            }
            _ => return found,
        }
        if at >= client.len() {
            return found;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::format::{line, From, FOOTER, HEADER};
    use super::*;

    /// tcvnc's recording handshake for a `width`×`height` screen named `name`, as the
    /// server's frames at 0 ms.
    fn handshake(width: u16, height: u16, name: &str) -> Vec<(From, u64, Vec<u8>)> {
        super::super::preamble(width, height, name)
            .into_iter()
            .map(|d| (From::Server, 0, d))
            .collect()
    }

    fn file(frames: &[(From, u64, Vec<u8>)]) -> Vec<u8> {
        let mut out = HEADER.as_bytes().to_vec();
        for (f, ms, d) in frames {
            line(*f, *ms, d, &mut out);
        }
        out.extend_from_slice(FOOTER.as_bytes());
        out
    }

    #[test]
    fn tcvnc_recordings_are_read_back() {
        let mut frames = handshake(640, 480, "console");
        frames.push((From::Client, 50, vec![4, 1, 0, 0, 0, 0, 0, 0x61]));
        frames.push((From::Server, 100, vec![0, 0, 0, 0]));
        let text = file(&frames);
        let mut s = Source::new(&text[..]).expect("source");
        assert_eq!((s.init.width, s.init.height), (640, 480));
        assert_eq!(s.init.name, "console");
        assert_eq!(s.init.format, super::super::FORMAT);
        assert_eq!(s.next_data().expect("data"), Some((100, vec![0, 0, 0, 0])));
        assert_eq!(s.next_data().expect("end"), None);
        assert!(s.finished());
    }

    /// A websockify recording: everything in whatever frames the wire had, the client
    /// choosing VNC authentication and setting its own pixel format.
    #[test]
    fn websockify_sessions_are_read_with_the_clients_format() {
        let mut server = b"RFB 003.008\n".to_vec();
        server.extend_from_slice(&[2, 1, 2]);
        server.extend_from_slice(&[9; 16]);
        server.extend_from_slice(&[0, 0, 0, 0]);
        server.extend_from_slice(&[0, 8, 0, 4]);
        server.extend_from_slice(&PixelFormat::RGB888.to_bytes());
        server.extend_from_slice(&[0, 0, 0, 1, b'x']);
        server.extend_from_slice(&[0, 0, 0, 0]); // an empty update in the same frame
        let mut client = b"RFB 003.008\n".to_vec();
        client.push(2);
        client.extend_from_slice(&[7; 16]);
        client.push(1);
        client.extend_from_slice(&[0, 0, 0, 0]);
        client.extend_from_slice(&super::super::FORMAT.to_bytes());
        client.extend_from_slice(&[2, 0, 0, 1, 0, 0, 0, 7]);
        let text = file(&[
            (From::Server, 0, server[..12].to_vec()),
            (From::Client, 1, client[..12].to_vec()),
            (From::Server, 2, server[12..15].to_vec()),
            (From::Client, 3, client[12..].to_vec()),
            (From::Server, 4, server[15..].to_vec()),
        ]);
        let mut s = Source::new(&text[..]).expect("source");
        assert_eq!(
            (s.init.width, s.init.height, s.init.name.as_str()),
            (8, 4, "x")
        );
        assert_eq!(s.init.format, super::super::FORMAT, "the client's format");
        assert_eq!(s.next_data().expect("data"), Some((4, vec![0, 0, 0, 0])));
    }

    /// A move to a keyframe lands on its line or says what is there instead; errors in
    /// lines read after it name the offset.
    #[test]
    fn keyframes_are_found_where_the_sidecar_says_or_refused() {
        use super::super::sidecar::Keyframe;
        let mut frames = handshake(8, 4, "k");
        frames.push((From::Server, 100, vec![0, 0, 0, 0]));
        frames.push((From::Client, 150, vec![2]));
        frames.push((From::Server, 200, vec![0, 0, 0, 1]));
        let text = file(&frames);
        let at = |needle: &str| {
            text.windows(needle.len())
                .position(|w| w == needle.as_bytes())
                .expect("line") as u64
        };
        let key = |ms, offset| Keyframe {
            ms,
            offset,
            width: 8,
            height: 4,
        };
        let mut s = Source::new(std::io::Cursor::new(&text)).expect("source");
        s.seek_keyframe(&key(200, at("'{200{")))
            .expect("the keyframe");
        assert_eq!(s.next_data().expect("data"), Some((200, vec![0, 0, 0, 1])));
        assert_eq!(s.next_data().expect("end"), None);
        for (k, why) in [
            (key(100, at("'}150}")), "a client frame at 150 ms"),
            (key(150, at("'{100{")), "a server frame at 100 ms"),
            (key(100, text.len() as u64 + 10), "the file ends before it"),
            (key(100, at("'{100{") + 1), "line 1 after byte"),
        ] {
            let e = s.seek_keyframe(&k).expect_err(why).to_string();
            assert!(e.contains(why), "{e}");
            assert!(
                e.starts_with(&format!("the keyframe at {} ms is not at byte", k.ms)),
                "{e}"
            );
        }
    }

    #[test]
    fn recordings_without_a_screen_are_refused_with_the_reason() {
        let text = file(&[(From::Server, 0, b"RFB 003.008\n".to_vec())]);
        let e = Source::new(&text[..]).expect_err("no init");
        assert!(e.to_string().contains("ServerInit"), "{e}");
        let text = file(&[(From::Server, 0, b"RFB 003.008\n\x00".to_vec())]);
        let e = Source::new(&text[..]).expect_err("refused");
        assert!(e.to_string().contains("refused"), "{e}");
        let text = file(&[(From::Server, 0, b"HTTP/1.1 200".to_vec())]);
        assert!(Source::new(&text[..]).is_err());
    }
}
