//! Repeated log lines, summarised: the first line of a kind in each interval is written in
//! full, the rest are counted and reported once when the interval ends, so a storm of
//! refusals costs a few lines a minute instead of one per connection, and the first of
//! each kind is never hidden. Keys are kinds and instances (both bounded by the config).

use parking_lot::Mutex;
use std::collections::HashMap;

/// Counts of suppressed lines per `(kind, key)` in the current interval.
#[derive(Debug, Default)]
pub struct Summaries {
    counts: Mutex<HashMap<(&'static str, String), u64>>,
}

impl Summaries {
    /// Whether this line is the first of its kind and key in the current interval (write
    /// it in full); otherwise it is counted for the summary.
    pub fn first(&self, kind: &'static str, key: &str) -> bool {
        let mut c = self.counts.lock();
        match c.get_mut(&(kind, key.to_owned())) {
            Some(n) => {
                *n += 1;
                false
            }
            None => {
                c.insert((kind, key.to_owned()), 0);
                true
            }
        }
    }

    /// Ends the interval: one line per kind and key that had lines suppressed, then a
    /// fresh interval (the next line of each kind is written in full again).
    pub fn flush(&self, interval_s: u64) {
        let counts = std::mem::take(&mut *self.counts.lock());
        let mut rows: Vec<_> = counts.into_iter().filter(|(_, n)| *n > 0).collect();
        rows.sort();
        for ((kind, key), n) in rows {
            tracing::info!(
                outcome = kind,
                instance = %key,
                suppressed = n,
                "{n} more like this in the last {interval_s} s (first one logged in full)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_of_each_kind_then_counted() {
        let s = Summaries::default();
        assert!(s.first("budget", "ins-a"));
        assert!(!s.first("budget", "ins-a"));
        assert!(!s.first("budget", "ins-a"));
        assert!(s.first("budget", "ins-b"), "per key");
        assert!(s.first("busy", "ins-a"), "per kind");
        s.flush(10);
        assert!(
            s.first("budget", "ins-a"),
            "a new interval logs the first again"
        );
    }
}
