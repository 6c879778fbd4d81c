//! One persistent zlib stream of a viewer (ZRLE's, or one of Tight's): data goes in as it
//! is produced and each rectangle ends with a sync flush, so the viewer's inflater,
//! which lives as long as the connection, decodes every rectangle in turn. It owns no
//! buffer of its own: compressed bytes are appended to the caller's.

use flate2::{Compress, Compression, FlushCompress};

/// The zlib stream failed (it should not; the stream is then unusable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("zlib stream: {0}")]
pub struct DeflateError(String);

impl DeflateError {
    /// An error with this text.
    pub(crate) fn new(text: &str) -> DeflateError {
        DeflateError(text.to_owned())
    }
}

/// A persistent zlib (deflate with zlib header) stream.
pub(crate) struct Deflater {
    z: Compress,
    level: u8,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Deflater(level {}, {} B in)",
            self.level,
            self.z.total_in()
        )
    }
}

impl Deflater {
    /// A fresh stream at zlib `level` (0–9; larger is clamped to 9).
    pub(crate) fn new(level: u8) -> Deflater {
        let level = level.min(9);
        Deflater {
            z: Compress::new(Compression::new(u32::from(level)), true),
            level,
        }
    }

    /// A raw deflate stream (no zlib header) at `level`: reset before each rectangle, its
    /// bytes refer to nothing before them, so they continue any viewer's zlib stream that
    /// stands at a flush point (shared ZRLE).
    pub(crate) fn new_raw(level: u8) -> Deflater {
        let level = level.min(9);
        Deflater {
            z: Compress::new(Compression::new(u32::from(level)), false),
            level,
        }
    }

    /// The zlib level.
    pub(crate) fn level(&self) -> u8 {
        self.level
    }

    /// Starts the stream afresh (a new zlib header, an empty dictionary).
    pub(crate) fn reset(&mut self) {
        self.z.reset();
    }

    /// Compresses `input` into `out` without flushing (the bytes may stay in the stream
    /// until [`Deflater::flush`]).
    ///
    /// # Errors
    /// [`DeflateError`].
    pub(crate) fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), DeflateError> {
        self.run(input, out, FlushCompress::None)
    }

    /// Compresses `input` and sync-flushes: everything given so far is in `out`.
    ///
    /// # Errors
    /// [`DeflateError`].
    pub(crate) fn flush(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), DeflateError> {
        self.run(input, out, FlushCompress::Sync)
    }

    /// Fully flushes the stream with no input: the dictionary is emptied, so what follows
    /// refers to nothing before it, while the stream goes on (no new header: a decoder
    /// that has followed it from its start goes on too, and one that starts here reads
    /// raw deflate). After a sync flush the stream stands on a byte boundary, so the
    /// bytes (an empty stored block) start with `0x00`.
    ///
    /// # Errors
    /// [`DeflateError`].
    pub(crate) fn cut(&mut self, out: &mut Vec<u8>) -> Result<(), DeflateError> {
        self.run(&[], out, FlushCompress::Full)
    }

    /// Compresses into a region of `out` sized to the input: flate2's `compress_vec`
    /// would zero-fill all of `out`'s spare capacity on every call (its miniz_oxide
    /// backend initialises the buffer), which for a reused multi-megabyte buffer costs
    /// more than the compression.
    fn run(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        flush: FlushCompress,
    ) -> Result<(), DeflateError> {
        let mut done = 0usize;
        loop {
            let rest = input.len() - done;
            // Deflate's worst case is a little over its input: one round usually suffices.
            let room = rest + rest / 16 + 64;
            let len = out.len();
            out.resize(len + room, 0);
            let (before_in, before_out) = (self.z.total_in(), self.z.total_out());
            let status = self.z.compress(&input[done..], &mut out[len..], flush);
            let took = usize::try_from(self.z.total_in() - before_in);
            let wrote = usize::try_from(self.z.total_out() - before_out);
            let (took, wrote) = match (status, took, wrote) {
                (Ok(_), Ok(t), Ok(w)) if w <= room => (t, w),
                (Err(e), ..) => {
                    out.truncate(len);
                    return Err(DeflateError(e.to_string()));
                }
                _ => {
                    out.truncate(len);
                    return Err(DeflateError("byte counts out of range".into()));
                }
            };
            out.truncate(len + wrote);
            done += took;
            // With room left after a flush the flush is complete (zlib's rule).
            if done >= input.len() && (wrote < room || matches!(flush, FlushCompress::None)) {
                return Ok(());
            }
            if took == 0 && wrote == 0 {
                return Err(DeflateError("the stream made no progress".into()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress};

    /// A stream split over several flushes inflates in step, each part on its own.
    #[test]
    fn each_flush_is_decodable_by_a_persistent_inflater() {
        let mut d = Deflater::new(6);
        let mut inf = Decompress::new(true);
        for round in 0..5u32 {
            let data: Vec<u8> = (0..70_000u32)
                .map(|i| (i.wrapping_mul(round + 7) >> 3) as u8)
                .collect();
            let mut out = Vec::new();
            d.push(&data[..1000], &mut out).expect("push");
            d.flush(&data[1000..], &mut out).expect("flush");
            let mut back = Vec::with_capacity(data.len() + 10);
            inf.decompress_vec(&out, &mut back, FlushDecompress::Sync)
                .expect("inflate");
            assert_eq!(back, data, "round {round}");
        }
        let mut out = Vec::new();
        d.flush(&[], &mut out).expect("empty flush");
    }

    /// A cut after a flush is an empty stored block on a byte boundary (what a decoder
    /// joining there checks for); the data after it inflates with a raw inflater that
    /// starts at the cut, and the one that followed from the start reads on.
    #[test]
    fn a_cut_is_an_empty_stored_block_and_can_be_joined() {
        let text: Vec<u8> = b"the quick brown fox jumps over the lazy dog. ".repeat(200);
        for level in [1, 6, 9] {
            let mut d = Deflater::new(level);
            let mut all = Decompress::new(true);
            let mut out = Vec::new();
            d.flush(&text, &mut out).expect("flush");
            let mut back = Vec::with_capacity(text.len());
            all.decompress_vec(&out, &mut back, FlushDecompress::Sync)
                .expect("inflate");
            out.clear();
            d.cut(&mut out).expect("cut");
            assert_eq!(out, [0, 0, 0, 0xff, 0xff], "level {level}");
            d.flush(&text, &mut out).expect("flush");
            let mut joined = Decompress::new(false);
            let mut back = Vec::with_capacity(text.len());
            joined
                .decompress_vec(&out, &mut back, FlushDecompress::Sync)
                .expect("inflate joined");
            assert_eq!(back, text, "level {level}: joined at the cut");
            let mut back = Vec::with_capacity(text.len());
            all.decompress_vec(&out, &mut back, FlushDecompress::Sync)
                .expect("inflate on");
            assert_eq!(back, text, "level {level}: read on");
        }
    }
}
