//! VNC Authentication (security type 2): the DES challenge-response with the classic
//! bit-reversed key, and a per-peer throttle that slows down password guessing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use des::cipher::{BlockEncrypt, KeyInit};
use tokio::time::Instant;

/// The 16-byte answer to `challenge` for `password` (truncated or zero-padded to 8 bytes,
/// each key byte bit-reversed, two DES-ECB blocks).
pub fn response(password: &[u8], challenge: &[u8; 16]) -> [u8; 16] {
    let mut key = [0u8; 8];
    for (k, p) in key.iter_mut().zip(password.iter()) {
        *k = p.reverse_bits();
    }
    let cipher = des::Des::new(&key.into());
    let mut out = *challenge;
    for block in out.chunks_exact_mut(8) {
        cipher.encrypt_block(block.into());
    }
    out
}

/// Constant-time comparison of two responses.
pub fn matches(a: &[u8; 16], b: &[u8; 16]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Failures are forgotten after this long without another.
const FORGET_AFTER: Duration = Duration::from_secs(600);
/// The longest a peer is made to wait.
const MAX_DELAY: Duration = Duration::from_secs(32);
/// Peers tracked at most (oldest forgotten first).
const MAX_PEERS: usize = 4096;

/// Per-peer failed-authentication counts: the k-th recent failure from one address is
/// answered only after `2^(k-1)` seconds (at most 32 s).
#[derive(Debug, Default)]
pub struct Throttle {
    peers: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Throttle {
    /// An empty throttle.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a failure from `ip` and returns how long to wait before answering it.
    pub fn failure(&self, ip: IpAddr) -> Duration {
        let now = Instant::now();
        let mut peers = self
            .peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if peers.len() >= MAX_PEERS {
            peers.retain(|_, (_, t)| now.duration_since(*t) < FORGET_AFTER);
            if peers.len() >= MAX_PEERS {
                if let Some(oldest) = peers.iter().min_by_key(|(_, (_, t))| *t).map(|(ip, _)| *ip) {
                    peers.remove(&oldest);
                }
            }
        }
        let entry = peers.entry(ip).or_insert((0, now));
        if now.duration_since(entry.1) >= FORGET_AFTER {
            entry.0 = 0;
        }
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
        Duration::from_secs(1u64 << (entry.0 - 1).min(5)).min(MAX_DELAY)
    }

    /// While `ip`'s last failure is still being paid for (the failing attempt waits
    /// `2^(k-1)` s), other attempts from `ip` are refused: parallel connections do not
    /// buy more guesses. Returns how long is left.
    pub fn blocked_for(&self, ip: IpAddr) -> Option<Duration> {
        let peers = self
            .peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (n, last) = *peers.get(&ip)?;
        if n == 0 {
            return None;
        }
        let until = last + Duration::from_secs(1u64 << (n - 1).min(5)).min(MAX_DELAY);
        let now = Instant::now();
        (now < until).then(|| until - now)
    }

    /// Clears `ip` after a success.
    pub fn success(&self, ip: IpAddr) {
        self.peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&ip);
    }

    /// Recent failures recorded for `ip`.
    pub fn failures(&self, ip: IpAddr) -> u32 {
        let peers = self
            .peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        peers
            .get(&ip)
            .filter(|(_, t)| t.elapsed() < FORGET_AFTER)
            .map_or(0, |(n, _)| *n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Structural properties; interoperability is proven end to end against vncdotool
    /// and QEMU's VNC server.
    #[test]
    fn response_properties() {
        let challenge: [u8; 16] = core::array::from_fn(|i| i as u8);
        let r = response(b"password", &challenge);
        // Same key, same block → same output; different password → different output.
        assert_ne!(r, response(b"passwore", &challenge));
        // Passwords are cut at 8 bytes.
        assert_eq!(r, response(b"password-and-more", &challenge));
        // Both halves are encrypted independently (ECB).
        let mut twice = [0u8; 16];
        twice[..8].copy_from_slice(&challenge[..8]);
        twice[8..].copy_from_slice(&challenge[..8]);
        let rr = response(b"password", &twice);
        assert_eq!(rr[..8], rr[8..]);
        assert!(matches(&r, &r.clone()));
        assert!(!matches(&r, &rr));
    }

    /// The bit reversal matters: plain DES with the raw password does not match.
    #[test]
    fn key_bits_are_reversed() {
        let challenge = [7u8; 16];
        let cipher = des::Des::new(b"password".into());
        let mut plain = challenge;
        for block in plain.chunks_exact_mut(8) {
            cipher.encrypt_block(block.into());
        }
        assert_ne!(plain, response(b"password", &challenge));
    }

    #[tokio::test(start_paused = true)]
    async fn throttle_doubles_and_forgets() {
        let t = Throttle::new();
        let ip: IpAddr = [127, 0, 0, 2].into();
        assert_eq!(t.failure(ip), Duration::from_secs(1));
        assert_eq!(t.failure(ip), Duration::from_secs(2));
        assert_eq!(t.failure(ip), Duration::from_secs(4));
        for _ in 0..10 {
            t.failure(ip);
        }
        assert_eq!(t.failure(ip), MAX_DELAY);
        let other: IpAddr = [127, 0, 0, 3].into();
        assert_eq!(t.failure(other), Duration::from_secs(1), "per peer");
        tokio::time::advance(FORGET_AFTER).await;
        assert_eq!(t.failures(ip), 0);
        assert_eq!(t.failure(ip), Duration::from_secs(1));
        t.success(ip);
        assert_eq!(t.failures(ip), 0);
    }

    /// A peer paying for a failure cannot guess in parallel meanwhile.
    #[tokio::test(start_paused = true)]
    async fn blocked_while_a_failure_is_paid() {
        let t = Throttle::new();
        let ip: IpAddr = [127, 0, 0, 9].into();
        assert_eq!(t.blocked_for(ip), None);
        t.failure(ip);
        t.failure(ip);
        assert_eq!(t.blocked_for(ip), Some(Duration::from_secs(2)));
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(t.blocked_for(ip), Some(Duration::from_millis(500)));
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(t.blocked_for(ip), None);
        assert_eq!(t.blocked_for([127, 0, 0, 10].into()), None, "per peer");
    }
}
