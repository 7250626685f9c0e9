//! Fuzz target: `Credential::from_bytes` (a delegation chain of signed attestations).
//!
//! Must never panic; accepted inputs must re-encode to exactly the input bytes
//! (see `agora_fuzz::credential`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = agora_fuzz::credential(data) {
        panic!("{violation}");
    }
});
