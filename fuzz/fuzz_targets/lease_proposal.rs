//! Fuzz target: `codec::decode::<LeaseProposal>` (a signed lease request and an optional signed approval).
//!
//! Must never panic; accepted inputs must re-encode to exactly the input bytes
//! (see `agora_fuzz::lease_proposal`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = agora_fuzz::lease_proposal(data) {
        panic!("{violation}");
    }
});
