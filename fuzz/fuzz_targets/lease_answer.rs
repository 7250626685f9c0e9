//! Fuzz target: `codec::decode::<LeaseAnswer>` (a signed grant with its capability, or a signed refusal).
//!
//! Must never panic; accepted inputs must re-encode to exactly the input bytes
//! (see `agora_fuzz::lease_answer`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = agora_fuzz::lease_answer(data) {
        panic!("{violation}");
    }
});
