//! Fuzz target: `gossip_message` (see `agora_fuzz::gossip_message`): never panics; accepted inputs re-encode
//! to exactly the input bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = agora_fuzz::gossip_message(data) {
        panic!("{violation}");
    }
});
