//! Fuzz target: `tunnel::Header::decode` (a tunnel stream header's body).
//!
//! Must never panic; accepted inputs must re-encode to exactly the input bytes
//! (see `agora_fuzz::tunnel_header`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = agora_fuzz::tunnel_header(data) {
        panic!("{violation}");
    }
});
