//! Fuzz target: `Signed::<ReadProof>::decode` with strict ed25519 verification (nested
//! delegation).
//!
//! Must never panic; accepted inputs must re-encode to exactly the input bytes
//! (see `agora_fuzz::signed_read_proof`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = agora_fuzz::signed_read_proof(data) {
        panic!("{violation}");
    }
});
