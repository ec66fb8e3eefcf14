//! otp: the one-time password (RFC 4226 HOTP) and the keyed digest the
//! challenge store keeps instead of the code.
//!
//! Each challenge gets a fresh random HOTP key, so codes are unpredictable and
//! never repeat a sequence. The store never sees a code in clear: it keeps
//! `HMAC-SHA1(key, transaction ‖ code)` (a key of the process, or one derived
//! from the pool key in Redis), so a dump of the store or of Redis hands out
//! no codes. Nothing here logs.

use std::fmt;

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha1::Sha1;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::ids::Transaction;

type HmacSha1 = Hmac<Sha1>;

/// RFC 4226 §5.3: HOTP(K, C) = Truncate(HMAC-SHA1(K, C)) mod 10^digits.
pub fn hotp(key: &[u8], counter: u64, digits: u32) -> u32 {
    let mut mac = HmacSha1::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(&counter.to_be_bytes());
    let hs = mac.finalize().into_bytes();
    let offset = usize::from(hs[19] & 0x0f);
    let binary = u32::from_be_bytes([hs[offset], hs[offset + 1], hs[offset + 2], hs[offset + 3]]) & 0x7fff_ffff;
    binary % 10u32.pow(digits)
}

/// A one-time password as the user types it. Its Debug hides the digits.
#[derive(Clone, PartialEq, Eq)]
pub struct Otp(Zeroizing<String>);

impl Otp {
    /// A fresh code: HOTP with counter 0 over a new random 160-bit key.
    pub fn generate(digits: u32) -> Otp {
        let mut key = Zeroizing::new([0u8; 20]);
        rand::thread_rng().fill_bytes(&mut key[..]);
        Otp::from_value(hotp(&key[..], 0, digits), digits)
    }

    /// The code for a fixed value, zero-padded to `digits`.
    pub fn from_value(value: u32, digits: u32) -> Otp {
        Otp(Zeroizing::new(format!("{value:0width$}", width = digits as usize)))
    }

    /// A code given in configuration (`fixed_otp_for_testing`).
    pub fn fixed(code: &str) -> Otp {
        Otp(Zeroizing::new(code.to_owned()))
    }

    /// The digits, for the e-mail body only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Otp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Otp([redacted])")
    }
}

/// Length of a [`CodeDigest`]: HMAC-SHA1 cut to 128 bits (RFC 2104 §5
/// allows down to half its output). What it protects is a 6-8 digit code, so
/// 128 bits leave nothing to guess, and an open challenge stays small.
pub const DIGEST_LEN: usize = 16;

/// What the challenge store keeps of a code.
pub type CodeDigest = [u8; DIGEST_LEN];

/// Seals codes into digests and checks typed codes against them, with a key
/// that lives only in this process.
#[derive(Clone)]
pub struct CodeSealer {
    key: Zeroizing<[u8; 32]>,
}

impl CodeSealer {
    /// A sealer with a random key.
    pub fn random() -> CodeSealer {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::thread_rng().fill_bytes(&mut key[..]);
        CodeSealer { key }
    }

    /// A sealer with a given key: instances of a pool derive the same one
    /// from their shared key, so any of them can check any challenge.
    pub fn from_key(key: Zeroizing<[u8; 32]>) -> CodeSealer {
        CodeSealer { key }
    }

    /// The digest of `code` for one transaction.
    pub fn seal(&self, tx: &Transaction, code: &[u8]) -> CodeDigest {
        let mut mac = HmacSha1::new_from_slice(&self.key[..]).expect("HMAC takes a key of any length");
        mac.update(tx.as_bytes());
        mac.update(code);
        truncate(&mac.finalize().into_bytes())
    }

    /// The digest of a confirmation link's token (a separate domain from
    /// codes, so one can never stand for the other).
    pub fn seal_link(&self, token: &[u8]) -> CodeDigest {
        let mut mac = HmacSha1::new_from_slice(&self.key[..]).expect("HMAC takes a key of any length");
        mac.update(b"link:");
        mac.update(token);
        truncate(&mac.finalize().into_bytes())
    }

    /// The digest a store keeps of a deny ("this wasn't me") token: the
    /// same key as links, another domain, so neither passes for the other.
    pub fn seal_deny(&self, token: &[u8]) -> CodeDigest {
        let mut mac = HmacSha1::new_from_slice(&self.key[..]).expect("HMAC takes a key of any length");
        mac.update(b"deny:");
        mac.update(token);
        truncate(&mac.finalize().into_bytes())
    }

    /// Whether `code` is the one sealed in `digest`, in constant time.
    pub fn matches(&self, tx: &Transaction, code: &[u8], digest: &CodeDigest) -> bool {
        bool::from(self.seal(tx, code).ct_eq(digest))
    }
}

fn truncate(mac: &[u8]) -> CodeDigest {
    let mut digest = [0; DIGEST_LEN];
    digest.copy_from_slice(&mac[..DIGEST_LEN]);
    digest
}

impl fmt::Debug for CodeSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodeSealer([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4226 Appendix D: secret "12345678901234567890", counters 0..9.
    #[test]
    fn rfc4226_appendix_d() {
        let key = b"12345678901234567890";
        let expected = [
            755224, 287082, 359152, 969429, 338314, 254676, 287922, 162583, 399871, 520489,
        ];
        for (counter, want) in expected.into_iter().enumerate() {
            assert_eq!(hotp(key, counter as u64, 6), want, "counter {counter}");
        }
    }

    #[test]
    fn codes_have_the_configured_length() {
        for digits in 6..=8 {
            for _ in 0..50 {
                let otp = Otp::generate(digits);
                assert_eq!(otp.expose().len(), digits as usize);
                assert!(otp.expose().bytes().all(|b| b.is_ascii_digit()));
            }
        }
        assert_eq!(Otp::from_value(42, 6).expose(), "000042");
    }

    #[test]
    fn debug_hides_the_code() {
        let otp = Otp::from_value(123456, 6);
        assert_eq!(format!("{otp:?}"), "Otp([redacted])");
        let sealer = CodeSealer::from_key(Zeroizing::new([7u8; 32]));
        assert_eq!(format!("{sealer:?}"), "CodeSealer([redacted])");
    }

    #[test]
    fn sealed_codes_match_only_themselves() {
        let sealer = CodeSealer::random();
        let tx = Transaction::random();
        let digest = sealer.seal(&tx, b"123456");
        assert!(sealer.matches(&tx, b"123456", &digest));
        assert!(!sealer.matches(&tx, b"123457", &digest));
        assert!(!sealer.matches(&Transaction::random(), b"123456", &digest));
        assert!(!CodeSealer::random().matches(&tx, b"123456", &digest));
    }

    #[test]
    fn sealers_from_the_same_key_agree() {
        let tx = Transaction::random();
        let one = CodeSealer::from_key(Zeroizing::new([9u8; 32]));
        let other = CodeSealer::from_key(Zeroizing::new([9u8; 32]));
        assert!(other.matches(&tx, b"123456", &one.seal(&tx, b"123456")));
        let stranger = CodeSealer::from_key(Zeroizing::new([8u8; 32]));
        assert!(!stranger.matches(&tx, b"123456", &one.seal(&tx, b"123456")));
    }
}
