//! Fuzz target: `Signed::<ledger::Entry>::decode` with strict ed25519 verification, and the
//! log's batched ingest (`ledger::decode`, `ledger::decode_batch`) agreeing with it.
//!
//! Must never panic; accepted inputs must re-encode to exactly the input bytes, and their
//! nested facts must check out (see `agora_fuzz::signed_ledger_entry`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = agora_fuzz::signed_ledger_entry(data) {
        panic!("{violation}");
    }
});
