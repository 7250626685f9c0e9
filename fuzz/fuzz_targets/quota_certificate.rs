//! Fuzz target: `committee::Certificate::decode` against the fuzz committee (2f + 1 votes,
//! a nested signed op).
//!
//! Must never panic; accepted inputs must re-encode to exactly the input bytes, and their
//! votes and signed op must check out (see `agora_fuzz::quota_certificate`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = agora_fuzz::quota_certificate(data) {
        panic!("{violation}");
    }
});
