//! Encoded rectangles shared between the viewers of one engine: when several viewers ask
//! for the same rectangle of the same screen in the same format and encoding (they were
//! told the same damage), it is encoded once and copied to the others. Entries belong to
//! one screen generation (the screen changes → the next generation starts empty), and the
//! cache holds at most [`MAX_BYTES`], so a viewer that falls behind (its damage coalesced
//! into rectangles no one else asks for) cannot grow it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::console::encode::ShareKey;
use crate::console::fb::Rect;

/// The most bytes kept for one generation.
pub(crate) const MAX_BYTES: usize = 64 << 20;

/// One encoded rectangle (possibly several on the wire: Tight splits large ones).
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) bytes: Vec<u8>,
    pub(crate) rects: u16,
}

#[derive(Debug, Default)]
struct Inner {
    generation: u64,
    map: HashMap<(ShareKey, Rect), Arc<Entry>>,
    bytes: usize,
}

/// The cache, with hit and miss counts.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    inner: Mutex<Inner>,
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
}

impl Inner {
    /// Moves to `generation` if it is newer (dropping the old entries); whether the
    /// cache is at `generation` now.
    fn at(&mut self, generation: u64) -> bool {
        if generation > self.generation {
            self.generation = generation;
            self.map.clear();
            self.bytes = 0;
        }
        generation == self.generation
    }
}

impl Cache {
    /// The bytes of `r` in `key` for screen `generation`, if some viewer encoded them.
    pub(crate) fn get(&self, generation: u64, key: &ShareKey, r: Rect) -> Option<Arc<Entry>> {
        let mut inner = self.inner.lock();
        let hit = if inner.at(generation) {
            inner.map.get(&(*key, r)).cloned()
        } else {
            None
        };
        let counter = if hit.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        hit
    }

    /// Keeps what a viewer encoded, within [`MAX_BYTES`].
    pub(crate) fn put(&self, generation: u64, key: ShareKey, r: Rect, entry: Entry) {
        let mut inner = self.inner.lock();
        if inner.at(generation) && inner.bytes + entry.bytes.len() <= MAX_BYTES {
            inner.bytes += entry.bytes.len();
            inner.map.insert((key, r), Arc::new(entry));
        }
    }

    /// Bytes held now.
    pub(crate) fn held(&self) -> usize {
        self.inner.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::encode::{Encoder, Encoding};
    use crate::rfb::messages::PixelFormat;

    fn key() -> ShareKey {
        Encoder::new(PixelFormat::RGB888)
            .expect("format")
            .share_key(Encoding::Raw)
            .expect("raw is shared")
    }

    #[test]
    fn entries_live_for_one_generation() {
        let c = Cache::default();
        let r = Rect::new(0, 0, 10, 10);
        c.put(
            1,
            key(),
            r,
            Entry {
                bytes: vec![1, 2, 3],
                rects: 1,
            },
        );
        assert_eq!(
            c.get(1, &key(), r).map(|e| e.bytes.clone()),
            Some(vec![1, 2, 3])
        );
        assert!(c.get(1, &key(), Rect::new(0, 0, 10, 11)).is_none());
        // An older generation's bytes are never given for a newer screen, nor kept.
        assert!(c.get(2, &key(), r).is_none());
        c.put(
            1,
            key(),
            r,
            Entry {
                bytes: vec![9],
                rects: 1,
            },
        );
        assert!(c.get(2, &key(), r).is_none());
        assert_eq!(c.held(), 0);
        assert_eq!(c.hits.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn bounded() {
        let c = Cache::default();
        c.put(
            1,
            key(),
            Rect::new(0, 0, 1, 1),
            Entry {
                bytes: vec![0; MAX_BYTES],
                rects: 1,
            },
        );
        c.put(
            1,
            key(),
            Rect::new(0, 0, 2, 2),
            Entry {
                bytes: vec![0; 1],
                rects: 1,
            },
        );
        assert_eq!(c.held(), MAX_BYTES);
        assert!(c.get(1, &key(), Rect::new(0, 0, 2, 2)).is_none());
    }
}
