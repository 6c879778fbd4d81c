//! The bytes of one step (a header, a tile, a row) gathered across feeds, so the decoder
//! resumes at any split of its input. Holds at most what the step asked for.

/// What a step's parser answers when shown the bytes gathered so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parsed<T> {
    /// At least this many bytes are needed (more than are held).
    Need(usize),
    /// The step is complete.
    Done(T),
}

/// `Done(n)` when `b` holds `n` bytes, else `Need(n)`.
pub(crate) fn exactly(b: &[u8], n: usize) -> Parsed<usize> {
    if b.len() >= n {
        Parsed::Done(n)
    } else {
        Parsed::Need(n)
    }
}

/// The big-endian `u16` at the start of `b` (which must hold it).
pub(crate) fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// The big-endian `u32` at the start of `b` (which must hold it).
pub(crate) fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The gathered bytes.
#[derive(Debug, Default)]
pub(crate) struct Acc {
    buf: Vec<u8>,
}

impl Acc {
    /// Moves bytes from the front of `input` until `n` are held; true once they are.
    pub(crate) fn fill(&mut self, input: &mut &[u8], n: usize) -> bool {
        if self.buf.len() < n {
            let take = (n - self.buf.len()).min(input.len());
            self.buf.extend_from_slice(&input[..take]);
            *input = &input[take..];
        }
        self.buf.len() >= n
    }

    /// What is held.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Whether nothing is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Forgets what is held (the step is done), keeping a modest allocation.
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        if self.buf.capacity() > 64 * 1024 {
            self.buf.shrink_to(64 * 1024);
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

    #[test]
    fn fills_across_feeds() {
        let mut acc = Acc::default();
        let mut input: &[u8] = &[1, 2];
        assert!(!acc.fill(&mut input, 3));
        assert!(input.is_empty());
        let mut input: &[u8] = &[3, 4];
        assert!(acc.fill(&mut input, 3));
        assert_eq!((acc.bytes(), input), (&[1, 2, 3][..], &[4][..]));
        assert!(acc.fill(&mut input, 2), "already held");
        assert_eq!(input, &[4]);
    }
}
