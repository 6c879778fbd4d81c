//! VNC Authentication (security type 2): the DES challenge-response with the classic
//! bit-reversed key. Guessing is slowed by [`crate::guard`].

use des::cipher::{BlockCipherEncrypt, KeyInit};

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
        // `chunks_exact_mut(8)` yields 8-byte blocks only.
        if let Ok(block) = block.try_into() {
            cipher.encrypt_block(block);
        }
    }
    out
}

/// Constant-time comparison of two responses.
pub fn matches(a: &[u8; 16], b: &[u8; 16]) -> bool {
    crate::redact::ct_eq(a, b)
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
        let cipher = des::Des::new(&(*b"password").into());
        let mut plain = challenge;
        for block in plain.chunks_exact_mut(8) {
            cipher.encrypt_block(block.try_into().expect("8 bytes"));
        }
        assert_ne!(plain, response(b"password", &challenge));
    }
}
