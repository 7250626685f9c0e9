//! Fuzz target: `sync_request` (see `agora_fuzz::sync_request`): never panics; accepted inputs re-encode
//! to exactly the input bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = agora_fuzz::sync_request(data) {
        panic!("{violation}");
    }
});
