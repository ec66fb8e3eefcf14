//! record: authenticates what the pool keeps in Redis, and the pool key's
//! fingerprint there.
//!
//! Redis is not trusted (it is often shared with other applications): every
//! record an instance reads back carries a MAC under a key derived from the
//! pool key, over the record's Redis key name and its immutable fields, and
//! is checked in Rust right after the read, before it can change an answer.
//! A record that fails is ignored: [`bad_record`] counts each such read in
//! `mailotp_redis_bad_records_total` and logs the record (the key name, never
//! a value) the first time, so a forged record read on every request does
//! not flood the log. The MAC is
//! over the key name, so a record copied to another State, user or link does
//! not verify there; it is over (field, value) pairs in a fixed order, each
//! length-prefixed, so no two different records encode alike. What is *not*
//! covered (mutable counters) is said where the record is defined.
//!
//! Nothing here logs a key, a MAC or a field value.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, OnceLock};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::metrics::REDIS_BAD_RECORDS;

type HmacSha256 = Hmac<Sha256>;

/// Length of a record MAC: HMAC-SHA256 cut to 128 bits (RFC 2104 §5), as
/// forging one means guessing it blind, one request per guess.
pub(crate) const MAC_LEN: usize = 16;

/// The MAC of one record.
pub(crate) type RecordMac = [u8; MAC_LEN];

/// Bad records logged already, by key name; forgotten all at once past this.
const LOGGED_REMEMBERED: usize = 4096;

/// Where the pool key's fingerprint lives, without expiry.
pub(crate) const FINGERPRINT_KEY: &str = "mailotp:keyfp";

/// Computes and checks record MACs with a key derived from the pool key.
#[derive(Clone)]
pub(crate) struct RecordKey {
    key: Zeroizing<[u8; 32]>,
}

impl RecordKey {
    /// A record key from the pool's derived key.
    pub(crate) fn from_key(key: Zeroizing<[u8; 32]>) -> RecordKey {
        RecordKey { key }
    }

    /// The MAC of the record at Redis key `name` with `fields`, in order.
    pub(crate) fn mac(&self, name: &str, fields: &[(&str, &[u8])]) -> RecordMac {
        let mut mac = HmacSha256::new_from_slice(&self.key[..]).expect("HMAC takes a key of any length");
        mac.update(b"mailotp record v1");
        put(&mut mac, name.as_bytes());
        for (field, value) in fields {
            put(&mut mac, field.as_bytes());
            put(&mut mac, value);
        }
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&mac.finalize().into_bytes()[..MAC_LEN]);
        out
    }

    /// Whether `mac` is the MAC of that record, in constant time.
    pub(crate) fn verify(&self, name: &str, fields: &[(&str, &[u8])], mac: &[u8]) -> bool {
        mac.len() == MAC_LEN && bool::from(self.mac(name, fields).ct_eq(mac))
    }
}

impl std::fmt::Debug for RecordKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordKey(***)")
    }
}

/// Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
fn put(mac: &mut HmacSha256, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    mac.update(&len.to_be_bytes());
    mac.update(bytes);
}

/// A record read from Redis failed its check: logged by key name (with why)
/// and counted; the caller ignores it.
pub(crate) fn bad_record(key: &str, why: &'static str) {
    count_bad_record();
    if first_time(key) {
        tracing::warn!(
            record = %key,
            why,
            "ignoring a redis record that fails its pool-key check (not written by this pool, or altered)"
        );
    } else {
        tracing::debug!(record = %key, why, "ignoring a redis record that fails its pool-key check, again");
    }
}

/// Whether `key` is logged as bad for the first time (within memory).
fn first_time(key: &str) -> bool {
    static LOGGED: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let mut logged = LOGGED.get_or_init(Mutex::default).lock().expect("logged lock poisoned");
    if logged.len() >= LOGGED_REMEMBERED {
        logged.clear();
    }
    logged.insert(key.to_owned())
}

/// Counts a record that failed its check (for callers that log their own line).
pub(crate) fn count_bad_record() {
    REDIS_BAD_RECORDS.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> RecordKey {
        RecordKey::from_key(Zeroizing::new([byte; 32]))
    }

    #[test]
    fn a_mac_covers_the_key_name_every_field_and_their_order() {
        let k = key(1);
        let fields: [(&str, &[u8]); 2] = [("u", b"alice"), ("d", b"0123")];
        let mac = k.mac("mailotp:c:aa", &fields);
        assert!(k.verify("mailotp:c:aa", &fields, &mac));
        assert!(key(1).verify("mailotp:c:aa", &fields, &mac), "same pool key, same MAC");
        assert!(!key(2).verify("mailotp:c:aa", &fields, &mac), "another pool key");
        assert!(!k.verify("mailotp:c:ab", &fields, &mac), "another key name");
        assert!(!k.verify("mailotp:c:aa", &[("u", b"bob"), ("d", b"0123")], &mac));
        assert!(!k.verify("mailotp:c:aa", &[("u", b"alice"), ("d", b"0124")], &mac));
        assert!(!k.verify("mailotp:c:aa", &[("d", b"0123"), ("u", b"alice")], &mac));
        assert!(!k.verify("mailotp:c:aa", &[("u", b"alice")], &mac), "a field left out");
        assert!(!k.verify("mailotp:c:aa", &[("u", b"alic"), ("e", b"0123")], &mac));
        assert!(!k.verify("mailotp:c:aa", &fields, &mac[..8]), "a short MAC");
        let mut flipped = mac;
        flipped[0] ^= 1;
        assert!(!k.verify("mailotp:c:aa", &fields, &flipped));
    }

    #[test]
    fn adding_a_field_changes_the_mac() {
        let k = key(3);
        let two = k.mac("n", &[("u", b"alice"), ("d", b"x")]);
        let three = k.mac("n", &[("u", b"alice"), ("d", b"x"), ("o", b"198.51.100.7")]);
        assert_ne!(two, three);
    }
}
