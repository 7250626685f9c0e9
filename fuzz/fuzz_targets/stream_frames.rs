//! Fuzz target: `frames::Decoder` fed a whole operation stream in arbitrary pieces.
//!
//! Must never panic nor hold a frame above its bound; every frame taken re-encodes to exactly
//! its bytes of the stream, whatever the pieces (see `agora_fuzz::stream_frames`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = agora_fuzz::stream_frames(data) {
        panic!("{violation}");
    }
});
