//! Keys, facts and hand-built entries for the ledger's tests.

use ed25519_dalek::SigningKey;

use crate::codec;
use crate::id::AgoraId;
use crate::signed::{Digest, FORMAT_VERSION, Signed, Signer, signing_input};
use crate::time::Timestamp;

use super::{Config, Entry, EvidenceLog, Fact, MAX_ENTRY_PAYLOAD_BYTES, Rating};

pub(super) fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

pub(super) fn id(n: u8) -> AgoraId {
    key(n).id()
}

/// Seconds after 2027-01-15 (1_800_000_000 s).
pub(super) fn t(secs: u64) -> Timestamp {
    Timestamp::from_unix_secs(1_800_000_000 + secs)
}

/// The agent and provider keys facts are signed with (nodes are 1..=9).
pub(super) const AGENT: u8 = 40;
pub(super) const PROVIDER: u8 = 41;

/// A rating by [`AGENT`] of [`PROVIDER`], distinct per `n`.
pub(super) fn rating(n: u64) -> Fact {
    let rating = Rating {
        rater: id(AGENT),
        provider: id(PROVIDER),
        lease: Digest::of(&n.to_be_bytes()),
        score: u8::try_from(n % 101).unwrap(),
        rated_at: t(n),
    };
    Fact::Rating(Signed::sign(rating, &key(AGENT)).unwrap())
}

pub(super) fn log() -> EvidenceLog {
    EvidenceLog::new(Config::default()).unwrap()
}

/// An entry by node `author`, signed through `Signed::sign` (so it must validate).
pub(super) fn entry(
    author: u8,
    seq: u64,
    prev: Option<&Signed<Entry>>,
    parents: &[&Signed<Entry>],
    at: Timestamp,
    fact: Fact,
) -> Signed<Entry> {
    let mut parents: Vec<Digest> = parents.iter().map(|p| p.digest()).collect();
    parents.sort();
    let body = Entry {
        author: id(author),
        seq,
        prev: prev.map(Signed::digest),
        parents,
        at,
        fact,
    };
    Signed::sign(body, &key(author)).unwrap()
}

/// `author`'s first entry at `at`.
pub(super) fn genesis(author: u8, at: Timestamp) -> Signed<Entry> {
    entry(author, 0, None, &[], at, rating(u64::from(author)))
}

/// The wire bytes of `body` signed by `signer` without validating it first: how a broken
/// or malicious node could sign.
pub(super) fn sign_raw(signer: &SigningKey, body: &Entry) -> Vec<u8> {
    sign_payload(
        signer,
        &codec::encode(body, MAX_ENTRY_PAYLOAD_BYTES).unwrap(),
    )
}

/// An entry envelope around any `payload`, signed by `signer`.
pub(super) fn sign_payload(signer: &SigningKey, payload: &[u8]) -> Vec<u8> {
    let signer_id = signer.id();
    let signature = signer.sign(&signing_input::<Entry>(&signer_id, payload));
    let mut wire = vec![FORMAT_VERSION];
    wire.extend_from_slice(signer_id.as_bytes());
    codec::put_varint_u32(&mut wire, u32::try_from(payload.len()).unwrap());
    wire.extend_from_slice(payload);
    wire.extend_from_slice(&signature.0);
    wire
}
