//! Fuzz target: `Credential::from_base64` and `Signed::<Revocation>::from_base64` on UTF-8 text.
//!
//! Must never panic; accepted inputs must re-encode to exactly the input bytes
//! (see `agora_fuzz::base64_text`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = agora_fuzz::base64_text(data) {
        panic!("{violation}");
    }
});
