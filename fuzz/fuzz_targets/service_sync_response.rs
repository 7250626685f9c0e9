//! Fuzz target: `service_sync_response` (see `agora_fuzz::service_sync_response`): never panics; accepted inputs re-encode
//! to exactly the input bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = agora_fuzz::service_sync_response(data) {
        panic!("{violation}");
    }
});
