//! Peers' entries in: decoding with every signature verified, one entry or a page at a time.
//!
//! An entry carries several signatures: its author's, and those of the facts it nests (a
//! receipt and the agent's acknowledgement, a grant and its capability, a signup record and
//! its credential's links, the two entries of an equivocation proof). [`decode_batch`]
//! checks them in two rounds, each one [`Verifier::verify_batch`] call over the whole page:
//!
//! 1. every envelope (bounds, version, signer, length) and the authors' signatures, so bytes
//!    nobody signed never reach the payload decoder;
//! 2. the payloads of the entries that passed, decoded once with their nested signatures
//!    recorded instead of verified one by one, then all those signatures.
//!
//! An entry is good when all of its signatures are. With
//! [`Cofactored`](crate::cofactored::Cofactored) each round is one multiscalar
//! multiplication, and a failed round falls back to one check per signature, so a bad
//! entry costs its page no more than verifying one by one would. The verdicts never depend on
//! the batching: the verifier's batch gives what it gives alone (see
//! [`Verifier::verify_batch`]), and replicas must use the same verifier (the log's rule).

use crate::id::AgoraId;
use crate::signed::{
    Digest, Signature, SignatureCheck, Signed, SignedError, Verifier, VerifyError, envelope,
    signing_input,
};
use crate::time::Timestamp;

use super::entry::Entry;
use super::error::Rejected;
use super::log::{EvidenceLog, Outcome};

/// Decodes one peer's entry, verifying its signature and every nested one with `verifier`.
///
/// # Errors
/// [`SignedError::Decode`] for bytes that break the format, a bound or canonical form;
/// [`SignedError::Verify`] for the first signature (the author's, then nested ones in
/// decoding order) that does not verify.
pub fn decode(wire: &[u8], verifier: &impl Verifier) -> Result<Signed<Entry>, SignedError> {
    decode_batch(&[wire], verifier)
        .pop()
        .unwrap_or(Err(SignedError::Decode(
            crate::codec::DecodeError::Truncated,
        )))
}

/// An envelope that passed its checks, waiting for its signature's verdict.
struct Opened<'w> {
    wire: &'w [u8],
    signer: AgoraId,
    signature: Signature,
    payload: &'w [u8],
}

/// Decodes a page of peers' entries, verifying every signature with `verifier` in two
/// batched rounds (see the [module docs](self)): one result per wire, in order, each the
/// same as [`decode`] gives for that wire alone.
pub fn decode_batch(
    wires: &[&[u8]],
    verifier: &impl Verifier,
) -> Vec<Result<Signed<Entry>, SignedError>> {
    // Round 1: envelopes and the authors' signatures.
    let opened: Vec<Result<Opened<'_>, SignedError>> = wires
        .iter()
        .map(|wire| {
            envelope::<Entry>(wire).map(|(signer, signature, payload)| Opened {
                wire,
                signer,
                signature,
                payload,
            })
        })
        .collect();
    let authors: Vec<Vec<SignatureCheck>> = opened
        .iter()
        .map(|o| match o {
            Ok(o) => vec![SignatureCheck {
                signer: o.signer,
                message: signing_input::<Entry>(&o.signer, o.payload),
                signature: o.signature,
            }],
            Err(_) => Vec::new(),
        })
        .collect();
    let verdicts = verify_groups(authors, verifier);
    // Round 2: payloads decoded with nested signatures recorded, then those signatures.
    let (decoded, nested): (Vec<_>, Vec<_>) = opened
        .into_iter()
        .zip(verdicts)
        .map(|(opened, verdict)| {
            match opened.and_then(|o| {
                verdict?;
                Signed::<Entry>::decode_recording_nested(o.wire, o.signer, o.signature, o.payload)
            }) {
                Ok((entry, checks)) => (Ok(entry), checks),
                Err(e) => (Err(e), Vec::new()),
            }
        })
        .unzip();
    let verdicts = verify_groups(nested, verifier);
    decoded
        .into_iter()
        .zip(verdicts)
        .map(|(decoded, verdict)| {
            let entry = decoded?;
            verdict?;
            Ok(entry)
        })
        .collect()
}

/// Verifies every group's checks in one batch: per group, `Ok` or its first failure.
fn verify_groups(
    groups: Vec<Vec<SignatureCheck>>,
    verifier: &impl Verifier,
) -> Vec<Result<(), SignedError>> {
    let sizes: Vec<usize> = groups.iter().map(Vec::len).collect();
    let all: Vec<SignatureCheck> = groups.into_iter().flatten().collect();
    let mut verdicts = verifier.verify_batch(&all).into_iter();
    let mut checks = all.iter();
    sizes
        .into_iter()
        .map(|size| {
            let mut first = Ok(());
            for check in checks.by_ref().take(size) {
                // A verifier that answers fewer checks than asked vouches for none of the rest.
                let verdict = verdicts.next().unwrap_or(Err(VerifyError::BadSignature {
                    signer: check.signer,
                }));
                if let (Ok(()), Err(e)) = (&first, verdict) {
                    first = Err(SignedError::Verify(e));
                }
            }
            first
        })
        .collect()
}

impl EvidenceLog {
    /// Decodes, verifies (with `verifier`, in batches: see [`decode_batch`]) and inserts a
    /// page of peers' entries received at `now`, in order: one outcome per wire, the same
    /// as calling [`insert_bytes`](Self::insert_bytes) on each in turn. Known bytes
    /// (accepted, waiting, or earlier in the page) are recognised by digest before any
    /// signature check.
    pub fn insert_batch(
        &mut self,
        now: Timestamp,
        wires: &[&[u8]],
        verifier: &impl Verifier,
    ) -> Vec<Outcome> {
        let digests: Vec<Digest> = wires.iter().map(|w| Digest::of(w)).collect();
        let mut seen = std::collections::BTreeSet::new();
        let fresh: Vec<bool> = digests
            .iter()
            .map(|d| !self.is_known(d) && seen.insert(*d))
            .collect();
        let to_decode: Vec<&[u8]> = wires
            .iter()
            .zip(&fresh)
            .filter(|(_, f)| **f)
            .map(|(w, _)| *w)
            .collect();
        let mut decoded = decode_batch(&to_decode, verifier).into_iter();
        digests
            .into_iter()
            .zip(fresh)
            .map(|(digest, fresh)| {
                if !fresh {
                    return Outcome::Duplicate;
                }
                match decoded.next() {
                    Some(Ok(entry)) => self.insert_new(now, digest, entry),
                    Some(Err(e)) => {
                        self.drop_waiting_on(digest);
                        Outcome::Rejected(Rejected::Invalid(e))
                    }
                    // decode_batch answers every wire; nothing to insert otherwise.
                    None => Outcome::Duplicate,
                }
            })
            .collect()
    }
}
