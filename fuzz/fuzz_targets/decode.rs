//! The packet decoder on any datagram: never a panic, and a decoded packet
//! re-encoded through the response builder decodes to the same attributes
//! (`mailotp::invariants::decode_roundtrip`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mailotp::invariants::decode_roundtrip(data);
});
