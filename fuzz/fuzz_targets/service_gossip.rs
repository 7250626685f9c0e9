//! Fuzz target: `ServiceGossip::decode` with strict ed25519 verification (nested capability).
//!
//! Must never panic; accepted inputs must re-encode to exactly the input bytes
//! (see `agora_fuzz::service_gossip`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = agora_fuzz::service_gossip(data) {
        panic!("{violation}");
    }
});
