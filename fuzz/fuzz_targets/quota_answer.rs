//! Fuzz target: `quota_rpc::Response::decode` against the fuzz committee (a validator's
//! answer: a vote or a refusal, `Stored`, an account view with its head certificate, a
//! refused request's reason).
//!
//! Must never panic; accepted inputs must re-encode to exactly the input bytes, and their
//! vote, head certificate and bounds must check out (see `agora_fuzz::quota_answer`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = agora_fuzz::quota_answer(data) {
        panic!("{violation}");
    }
});
