//! Fuzz target: `committee::Request::decode` against the fuzz committee (an op and up to 8
//! certificates).
//!
//! Must never panic; accepted inputs must re-encode to exactly the input bytes, and their
//! votes and signed op must check out (see `agora_fuzz::quota_request`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = agora_fuzz::quota_request(data) {
        panic!("{violation}");
    }
});
