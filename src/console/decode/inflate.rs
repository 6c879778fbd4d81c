//! The console's persistent zlib streams (one for Zlib, one for ZRLE, four for Tight),
//! inflated chunk by chunk as the compressed bytes arrive, into an output buffer that
//! never grows past what the rectangle can need.

use flate2::{Decompress, FlushDecompress, Status};

use super::error::DecodeError;

/// The largest compressed length accepted for one rectangle.
pub const MAX_COMPRESSED: u32 = 64 * 1024 * 1024;

/// An estimate of what one live inflater holds (miniz_oxide's state and 32 KiB window).
pub(crate) const INFLATER_BYTES: usize = 48 * 1024;

/// Output buffers above this are released after their rectangle.
const RETAIN: usize = 4 * 1024 * 1024;

/// What a cut (a full flush right after a sync flush, so on a byte boundary) writes
/// first: an empty stored block, its header bits and padding (`0x00`), then LEN 0 and
/// NLEN `0xffff`.
pub(crate) const CUT: [u8; 5] = [0, 0, 0, 0xff, 0xff];

/// One zlib stream of the connection, created on first use.
#[derive(Default)]
pub(crate) struct Stream {
    z: Option<Decompress>,
    /// Decoding joined the connection after it started (a recording's keyframe): the
    /// stream's first bytes seen here may continue a stream begun before, at a full
    /// flush (raw deflate, no zlib header).
    joined: bool,
    /// Joined as raw deflate: how many bytes of [`CUT`] have been checked (the input may
    /// come in pieces of any size).
    cut_checked: Option<usize>,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.z.is_some() {
            "Stream(live)"
        } else {
            "Stream(unused)"
        })
    }
}

impl Stream {
    /// Starts the stream afresh (Tight's reset bits): a new zlib stream, header first.
    pub(crate) fn reset(&mut self) {
        self.joined = false;
        self.cut_checked = None;
        if let Some(z) = &mut self.z {
            z.reset(true);
        }
    }

    /// Decoding starts here, not at the connection's start (see [`Stream::joined`]): an
    /// unused stream's first bytes are read as a zlib stream when they open with a zlib
    /// header (a stream that starts here), else as raw deflate, which must open with
    /// [`CUT`] (a stream that started before and was fully flushed here, so nothing after
    /// refers back past this point): anything else is an error, not a wrong screen. A
    /// zlib header has compression method 8 in its low four bits; [`CUT`] starts `0x00`.
    pub(crate) fn join(&mut self) {
        if self.z.is_none() {
            self.joined = true;
        }
    }

    /// Bytes held (an estimate).
    pub(crate) fn held(&self) -> usize {
        if self.z.is_some() {
            INFLATER_BYTES
        } else {
            0
        }
    }

    /// Inflates `input` (all of it) into `out`.
    ///
    /// # Errors
    /// A corrupt stream, a stream that ended early, or more output than `out` allows.
    pub(crate) fn inflate(
        &mut self,
        encoding: &'static str,
        mut input: &[u8],
        out: &mut Output,
    ) -> Result<(), DecodeError> {
        let zerr = |detail: String| DecodeError::Zlib { encoding, detail };
        let Some(&first) = input.first() else {
            return Ok(());
        };
        if self.z.is_none() && self.joined && first & 0x0f != 8 {
            // Raw deflate from here: only where the stream was cut.
            self.z = Some(Decompress::new(false));
            self.cut_checked = Some(0);
        }
        if let Some(k) = self.cut_checked.filter(|&k| k < CUT.len()) {
            let n = (CUT.len() - k).min(input.len());
            if input[..n] != CUT[k..k + n] {
                return Err(zerr(
                    "decoding joined this stream where it was not cut by a full flush (a keyframe that does not start one), so what follows refers to bytes never read"
                        .into(),
                ));
            }
            self.cut_checked = Some(k + n);
        }
        let z = self.z.get_or_insert_with(|| Decompress::new(true));
        loop {
            let limit = out.buf.len().min(out.bound);
            if out.filled >= limit {
                if out.filled >= out.bound {
                    // Full: anything more the stream yields is too much.
                    let mut probe = [0u8; 1];
                    let (in0, out0) = (z.total_in(), z.total_out());
                    z.decompress(input, &mut probe, FlushDecompress::None)
                        .map_err(|e| zerr(e.to_string()))?;
                    if z.total_out() > out0 {
                        return Err(DecodeError::TooLong {
                            what: out.what,
                            len: out.bound as u64 + 1,
                            cap: out.bound as u64,
                        });
                    }
                    let used = (z.total_in() - in0) as usize;
                    input = &input[used.min(input.len())..];
                    if used == 0 {
                        return if input.is_empty() {
                            Ok(())
                        } else {
                            Err(zerr("stalled with input left".into()))
                        };
                    }
                    continue;
                }
                let grow = out.buf.len().max(64 * 1024).min(out.bound - out.buf.len());
                out.buf.resize(out.buf.len() + grow, 0);
            }
            let limit = out.buf.len().min(out.bound);
            let (in0, out0) = (z.total_in(), z.total_out());
            let status = z
                .decompress(
                    input,
                    &mut out.buf[out.filled..limit],
                    FlushDecompress::None,
                )
                .map_err(|e| zerr(e.to_string()))?;
            let used = (z.total_in() - in0) as usize;
            let made = (z.total_out() - out0) as usize;
            input = &input[used.min(input.len())..];
            out.filled += made;
            if status == Status::StreamEnd && !input.is_empty() {
                return Err(zerr("data past the end of the stream".into()));
            }
            if used == 0 && made == 0 {
                return if input.is_empty() {
                    Ok(())
                } else {
                    Err(zerr("stalled with input left".into()))
                };
            }
        }
    }
}

/// Where a rectangle's inflated bytes go.
#[derive(Debug)]
pub(crate) struct Output {
    buf: Vec<u8>,
    filled: usize,
    bound: usize,
    what: &'static str,
}

impl Default for Output {
    fn default() -> Output {
        Output {
            buf: Vec::new(),
            filled: 0,
            bound: 0,
            what: "inflated data",
        }
    }
}

impl Output {
    /// Empties the buffer for a rectangle that can need at most `bound` bytes (`what`
    /// names them in errors); `hint` (the compressed length) sizes the first allocation.
    pub(crate) fn start(&mut self, what: &'static str, bound: usize, hint: usize) {
        self.filled = 0;
        self.bound = bound;
        self.what = what;
        if self.buf.len() > RETAIN {
            self.buf = Vec::new();
        }
        let want = hint.saturating_mul(4).clamp(64 * 1024, RETAIN).min(bound);
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
    }

    /// The bytes inflated so far.
    pub(crate) fn data(&self) -> &[u8] {
        &self.buf[..self.filled]
    }

    /// Releases a large buffer once its rectangle is decoded.
    pub(crate) fn finish(&mut self) {
        self.filled = 0;
        if self.buf.len() > RETAIN {
            self.buf = Vec::new();
        }
    }

    /// Bytes allocated.
    pub(crate) fn held(&self) -> usize {
        self.buf.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    pub(crate) fn deflate(z: &mut Compress, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + 64);
        z.compress_vec(data, &mut out, FlushCompress::Sync)
            .expect("compress");
        out
    }

    #[test]
    fn inflates_in_pieces_and_persists_across_rectangles() {
        let mut c = Compress::new(Compression::default(), true);
        let one = deflate(&mut c, &[7u8; 100_000]);
        let two = deflate(&mut c, b"hello hello hello");
        let mut s = Stream::default();
        let mut out = Output::default();
        out.start("test", 100_000, one.len());
        for piece in one.chunks(3) {
            s.inflate("test", piece, &mut out).expect("inflate");
        }
        assert_eq!(out.data(), &[7u8; 100_000][..]);
        out.start("test", 17, two.len());
        s.inflate("test", &two, &mut out).expect("inflate");
        assert_eq!(out.data(), b"hello hello hello");
    }

    #[test]
    fn output_past_the_bound_is_an_error() {
        let mut c = Compress::new(Compression::default(), true);
        let data = deflate(&mut c, &[0u8; 1000]);
        let mut s = Stream::default();
        let mut out = Output::default();
        out.start("ZRLE data", 999, data.len());
        let e = s.inflate("ZRLE", &data, &mut out).expect_err("too long");
        assert!(e.to_string().contains("ZRLE data"), "{e}");
        let mut s = Stream::default();
        let e = s
            .inflate("ZRLE", &[1, 2, 3, 4, 5], &mut out)
            .expect_err("corrupt");
        assert!(e.to_string().contains("zlib"), "{e}");
    }
}
