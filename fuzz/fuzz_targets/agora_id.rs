//! Fuzz target: `AgoraId` parsing (`str::parse`) of UTF-8 input.
//!
//! Must never panic; accepted inputs must re-encode to exactly the input bytes
//! (see `agora_fuzz::agora_id`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = agora_fuzz::agora_id(data) {
        panic!("{violation}");
    }
});
