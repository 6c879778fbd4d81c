//! Colour analysis of a tile (a run of wire values): its distinct colours up to a limit,
//! each pixel's palette index, the runs of equal pixels and how often each colour occurs.
//! The encoders choose their subencodings from it. One table per viewer, reused: a
//! generation stamp clears it in O(1) per tile.

/// Hash slots (a power of two, four times the largest palette: short probes).
const SLOTS: usize = 1024;

/// The most colours any caller asks to track (Tight's palette).
pub(crate) const MAX_COLOURS: usize = 256;

#[derive(Clone, Copy, Default)]
struct Slot {
    key: u32,
    generation: u32,
    index: u8,
}

/// What [`Palette::analyse`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Analysis {
    /// Distinct colours, when not more than the limit.
    pub(crate) colours: Option<usize>,
    /// Runs of equal pixels (row-major, across rows).
    pub(crate) runs: usize,
    /// Runs of length one.
    pub(crate) singles: usize,
}

/// A reusable colour table.
pub(crate) struct Palette {
    slots: Box<[Slot; SLOTS]>,
    generation: u32,
    colours: Vec<u32>,
    counts: Vec<u32>,
}

impl std::fmt::Debug for Palette {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Palette({} colours)", self.colours.len())
    }
}

impl Default for Palette {
    fn default() -> Palette {
        Palette {
            slots: Box::new([Slot::default(); SLOTS]),
            generation: 0,
            colours: Vec::with_capacity(MAX_COLOURS),
            counts: Vec::with_capacity(MAX_COLOURS),
        }
    }
}

impl Palette {
    /// The colours of the last analysis, in order of first appearance (index order).
    pub(crate) fn colours(&self) -> &[u32] {
        &self.colours
    }

    /// How many pixels had each colour (valid when the analysis did not overflow).
    pub(crate) fn counts(&self) -> &[u32] {
        &self.counts
    }

    fn reset(&mut self) {
        if self.generation == u32::MAX {
            self.slots.fill(Slot::default());
            self.generation = 0;
        }
        self.generation += 1;
        self.colours.clear();
        self.counts.clear();
    }

    /// The index of `v`, added if new; `None` when that would exceed `max` colours.
    #[inline]
    fn insert(&mut self, v: u32, max: usize) -> Option<u8> {
        let mut h = (v.wrapping_mul(0x9e37_79b1) >> 22) as usize & (SLOTS - 1);
        loop {
            let slot = &mut self.slots[h];
            if slot.generation != self.generation {
                let index = self.colours.len();
                if index >= max {
                    return None;
                }
                let index = u8::try_from(index).ok()?;
                *slot = Slot {
                    key: v,
                    generation: self.generation,
                    index,
                };
                self.colours.push(v);
                self.counts.push(0);
                return Some(index);
            }
            if slot.key == v {
                return Some(slot.index);
            }
            h = (h + 1) & (SLOTS - 1);
        }
    }

    /// Analyses `vals`, tracking at most `max` colours (at most [`MAX_COLOURS`]). While
    /// the colours fit, `idx` receives each pixel's palette index; past the limit only
    /// runs are counted (and `idx` is meaningless).
    pub(crate) fn analyse(&mut self, vals: &[u32], max: usize, idx: &mut Vec<u8>) -> Analysis {
        let max = max.min(MAX_COLOURS);
        self.reset();
        idx.clear();
        let Some(&first) = vals.first() else {
            return Analysis {
                colours: Some(0),
                ..Analysis::default()
            };
        };
        idx.resize(vals.len(), 0);
        let mut prev = first;
        let Some(mut cur) = self.insert(first, max) else {
            let (runs, singles) = count_runs(vals);
            return Analysis {
                colours: None,
                runs,
                singles,
            };
        };
        let (mut runs, mut singles, mut run_len) = (1usize, 0usize, 0u32);
        // The colour before the current run: text alternates between two colours, which
        // then need no hash lookup.
        let (mut alt, mut alt_index) = (first, cur);
        let mut overflow_at = None;
        for (i, (slot, &v)) in idx.iter_mut().zip(vals).enumerate() {
            if v != prev {
                self.counts[usize::from(cur)] += run_len;
                runs += 1;
                singles += usize::from(run_len == 1);
                run_len = 0;
                let (was, was_index) = (prev, cur);
                prev = v;
                if v == alt {
                    cur = alt_index;
                } else {
                    match self.insert(v, max) {
                        Some(k) => cur = k,
                        None => {
                            overflow_at = Some(i);
                            break;
                        }
                    }
                }
                (alt, alt_index) = (was, was_index);
            }
            run_len += 1;
            *slot = cur;
        }
        if let Some(i) = overflow_at {
            // Pixel i began a run already counted; go on counting runs only.
            let mut run_len = 1u32;
            for &v in &vals[i + 1..] {
                if v != prev {
                    runs += 1;
                    singles += usize::from(run_len == 1);
                    run_len = 0;
                    prev = v;
                }
                run_len += 1;
            }
            singles += usize::from(run_len == 1);
            return Analysis {
                colours: None,
                runs,
                singles,
            };
        }
        self.counts[usize::from(cur)] += run_len;
        singles += usize::from(run_len == 1);
        Analysis {
            colours: Some(self.colours.len()),
            runs,
            singles,
        }
    }
}

/// Runs and single-pixel runs of `vals`.
fn count_runs(vals: &[u32]) -> (usize, usize) {
    let Some(&first) = vals.first() else {
        return (0, 0);
    };
    let (mut prev, mut runs, mut singles, mut len) = (first, 1usize, 0usize, 0u32);
    for &v in vals {
        if v != prev {
            runs += 1;
            singles += usize::from(len == 1);
            len = 0;
            prev = v;
        }
        len += 1;
    }
    singles += usize::from(len == 1);
    (runs, singles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_colours_runs_and_indices() {
        let mut p = Palette::default();
        let mut idx = Vec::new();
        let a = p.analyse(&[5, 5, 7, 5, 9, 9, 9], 10, &mut idx);
        assert_eq!(
            a,
            Analysis {
                colours: Some(3),
                runs: 4,
                singles: 2
            }
        );
        assert_eq!(idx, [0, 0, 1, 0, 2, 2, 2]);
        assert_eq!(p.colours(), [5, 7, 9]);
        assert_eq!(p.counts(), [3, 1, 3]);
        let a = p.analyse(&[1, 2, 3, 3, 4], 2, &mut idx);
        assert_eq!(
            a,
            Analysis {
                colours: None,
                runs: 4,
                singles: 3
            }
        );
        let a = p.analyse(&[], 2, &mut idx);
        assert_eq!(a.colours, Some(0));
        let a = p.analyse(&[3], 0, &mut idx);
        assert_eq!(a.colours, None);
        // 256 distinct colours fit, the 257th does not.
        let many: Vec<u32> = (0..257u32).map(|i| i * 0x0001_0101).collect();
        assert_eq!(p.analyse(&many[..256], 256, &mut idx).colours, Some(256));
        assert_eq!(idx[255], 255);
        assert_eq!(p.analyse(&many, 256, &mut idx).colours, None);
    }
}
