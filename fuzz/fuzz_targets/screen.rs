//! The server's per-datagram checks and request parsing on any datagram, as
//! sent and correctly signed: never a panic, only well-formed signed requests
//! pass, and their answers keep Proxy-State (`mailotp::invariants::screening`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mailotp::invariants::screening(data);
});
