//! The supervisor PIN that guards the station settings: kept as a salted PBKDF2-HMAC-SHA256
//! hash in the remembered settings (never the PIN itself, never logged), checked when a
//! supervisor unlocks the settings.
//!
//! A PIN has little entropy; the salt stops one table from serving every station and the
//! iterations make each guess cost, but the real guard is that the settings file belongs to the
//! station's account. `Debug` of [`PinHash`] prints no hash.

use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// PBKDF2 iterations for a new PIN.
pub const PIN_ITERATIONS: u32 = 100_000;
/// The shortest PIN accepted.
pub const PIN_DIGITS_MIN: usize = 4;

/// A PIN's salted hash.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinHash {
    /// 16 random bytes, hex.
    salt: String,
    iterations: u32,
    /// PBKDF2-HMAC-SHA256 of the PIN, 32 bytes, hex.
    hash: String,
}

impl std::fmt::Debug for PinHash {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("PinHash").field("iterations", &self.iterations).finish_non_exhaustive()
    }
}

/// Why a PIN was not accepted as a new one.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PinError {
    #[error("supervisor PIN: expected at least {PIN_DIGITS_MIN} digits and nothing else")]
    TooShortOrNotDigits,
    #[error("supervisor PIN: the system's random source failed ({0})")]
    NoRandom(String),
}

impl PinHash {
    /// Hashes a new PIN with a fresh salt.
    pub fn new(pin: &str) -> Result<PinHash, PinError> {
        if pin.len() < PIN_DIGITS_MIN || !pin.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(PinError::TooShortOrNotDigits);
        }
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|error| PinError::NoRandom(error.to_string()))?;
        Ok(PinHash {
            salt: hex::encode(salt),
            iterations: PIN_ITERATIONS,
            hash: hex::encode(pbkdf2_hmac_sha256(pin.as_bytes(), &salt, PIN_ITERATIONS)),
        })
    }

    /// Whether `pin` is the PIN this hash was made from.
    pub fn matches(&self, pin: &str) -> bool {
        let Ok(salt) = hex::decode(&self.salt) else {
            return false;
        };
        let Ok(expected) = hex::decode(&self.hash) else {
            return false;
        };
        let actual = pbkdf2_hmac_sha256(pin.as_bytes(), &salt, self.iterations.max(1));
        // Compared in full, not stopping at the first difference.
        expected.len() == actual.len()
            && expected
                .iter()
                .zip(actual.iter())
                .fold(0u8, |difference, (left, right)| difference | (left ^ right))
                == 0
    }
}

/// PBKDF2 (RFC 8018) with HMAC-SHA256, one 32-byte block.
fn pbkdf2_hmac_sha256(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mac =
        <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(password).expect("HMAC takes a key of any length");
    let mut first = mac.clone();
    first.update(salt);
    first.update(&1u32.to_be_bytes());
    let mut block: [u8; 32] = first.finalize().into_bytes().into();
    let mut result = block;
    for _ in 1..iterations {
        let mut next = mac.clone();
        next.update(&block);
        block = next.finalize().into_bytes().into();
        for (out, byte) in result.iter_mut().zip(block.iter()) {
            *out ^= byte;
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors from Python's `hashlib.pbkdf2_hmac('sha256', password, salt, iterations, 32)`
    /// (the first is RFC 7914 section 11's, truncated to one block).
    #[test]
    fn pbkdf2_matches_pythons_hashlib() {
        let check = |password: &[u8], salt: &[u8], iterations: u32, expected: &str| {
            assert_eq!(hex::encode(pbkdf2_hmac_sha256(password, salt, iterations)), expected);
        };
        check(b"passwd", b"salt", 1, "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc");
        check(
            b"1234",
            b"imprint-salt",
            1000,
            "460be6eb47a70d24bfd82fad1b8f53254328047a324181971186522f6b10ad56",
        );
    }

    #[test]
    fn a_pin_is_kept_salted_and_checked() {
        let first = PinHash::new("4711").unwrap();
        let second = PinHash::new("4711").unwrap();
        assert!(first.matches("4711") && second.matches("4711"));
        assert!(!first.matches("4712") && !first.matches(""));
        assert_ne!(first, second, "each PIN gets its own salt");
        let stored = serde_json::to_string(&first).unwrap();
        assert!(!stored.contains("4711"), "{stored}");
        assert!(!format!("{first:?}").contains(&first.hash));
        assert_eq!(PinHash::new("12a4"), Err(PinError::TooShortOrNotDigits));
        assert_eq!(PinHash::new("123"), Err(PinError::TooShortOrNotDigits));
    }
}
