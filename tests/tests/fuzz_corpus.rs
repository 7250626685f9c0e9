//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through the same checks the
//! cargo-fuzz targets run: no decoder may panic, and every accepted input must re-encode to
//! exactly its own bytes.
//!
//! The checks are not duplicated: `fuzz/src/lib.rs` is compiled in here as a module (the
//! fuzz crate is outside the workspace, so it cannot be a dependency).

use std::path::{Path, PathBuf};

#[path = "../../fuzz/src/lib.rs"]
mod checks;

use checks::{TARGETS, Verdict};

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus")
}

/// Sorted files of one target's corpus directory.
#[allow(clippy::panic, clippy::expect_used)] // test helper: failing loudly is the point
fn corpus_files(target: &str) -> Vec<PathBuf> {
    let dir = corpus_root().join(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read corpus dir {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("corpus dir entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// Runs every file of `target`'s corpus through its check; returns how many were accepted.
#[allow(clippy::panic, clippy::expect_used)] // test helper: failing loudly is the point
fn replay(target: &str) -> usize {
    let (_, check) = TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap_or_else(|| panic!("unknown fuzz target {target}"));
    let files = corpus_files(target);
    assert!(!files.is_empty(), "fuzz/corpus/{target}/ is empty");
    let mut accepted = 0;
    for path in &files {
        let data = std::fs::read(path).expect("read corpus file");
        match check(&data) {
            Ok(Verdict::Accepted) => accepted += 1,
            Ok(Verdict::Rejected) => {}
            Err(violation) => panic!("{}: {violation}", path.display()),
        }
    }
    accepted
}

/// Each target's corpus must replay cleanly and still reach the accepting path (the
/// corpus keeps validly signed seeds, which no fuzzer could forge).
fn replay_with_accepted(target: &str) {
    let accepted = replay(target);
    assert!(
        accepted > 0,
        "no input in fuzz/corpus/{target}/ is accepted: the valid seeds are missing"
    );
}

#[test]
fn signed_attestation() {
    replay_with_accepted("signed_attestation");
}

#[test]
fn signed_revocation() {
    replay_with_accepted("signed_revocation");
}

#[test]
fn signed_challenge_response() {
    replay_with_accepted("signed_challenge_response");
}

#[test]
fn signed_offer() {
    replay_with_accepted("signed_offer");
}

#[test]
fn signed_offer_withdrawal() {
    replay_with_accepted("signed_offer_withdrawal");
}

#[test]
fn credential() {
    replay_with_accepted("credential");
}

#[test]
fn agora_id() {
    replay_with_accepted("agora_id");
}

#[test]
fn base64_text() {
    replay_with_accepted("base64_text");
}

#[test]
fn every_corpus_dir_is_a_known_target() {
    let root = corpus_root();
    let mut dirs: Vec<String> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", root.display()))
        .map(|entry| entry.expect("corpus entry"))
        .filter(|entry| entry.path().is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let mut known: Vec<String> = TARGETS.iter().map(|(name, _)| (*name).to_owned()).collect();
    known.sort();
    assert_eq!(dirs, known, "fuzz/corpus/ and the fuzz targets disagree");
}

#[test]
fn gossip_message() {
    replay_with_accepted("gossip_message");
}

#[test]
fn sync_request() {
    replay_with_accepted("sync_request");
}

#[test]
fn sync_response() {
    replay_with_accepted("sync_response");
}

#[test]
fn service_sync_request() {
    replay_with_accepted("service_sync_request");
}

#[test]
fn service_sync_response() {
    replay_with_accepted("service_sync_response");
}

#[test]
fn signed_signup_record() {
    replay_with_accepted("signed_signup_record");
}

#[test]
fn signed_lease_request() {
    replay_with_accepted("signed_lease_request");
}

#[test]
fn signed_lease_op() {
    replay_with_accepted("signed_lease_op");
}

#[test]
fn signed_usage_receipt() {
    replay_with_accepted("signed_usage_receipt");
}

#[test]
fn signed_delegation() {
    replay_with_accepted("signed_delegation");
}

#[test]
fn lease_proposal() {
    replay_with_accepted("lease_proposal");
}

#[test]
fn lease_answer() {
    replay_with_accepted("lease_answer");
}

#[test]
fn stream_frames() {
    replay_with_accepted("stream_frames");
}

#[test]
fn tunnel_header() {
    replay_with_accepted("tunnel_header");
}

#[test]
fn service_gossip() {
    replay_with_accepted("service_gossip");
}

#[test]
fn signed_service_grant() {
    replay_with_accepted("signed_service_grant");
}

#[test]
fn signed_read_proof() {
    replay_with_accepted("signed_read_proof");
}

#[test]
fn signed_ledger_entry() {
    replay_with_accepted("signed_ledger_entry");
}

#[test]
fn quota_certificate() {
    replay_with_accepted("quota_certificate");
}

#[test]
fn quota_request() {
    replay_with_accepted("quota_request");
}

#[test]
fn quota_answer() {
    replay_with_accepted("quota_answer");
}
