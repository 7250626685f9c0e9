//! Per-target checks shared by the fuzz targets and the corpus replay test.
//!
//! Each check feeds arbitrary bytes to one `agora-protocol` decoder. A decoder may reject
//! its input ([`Verdict::Rejected`]) but must never panic; when it accepts, re-encoding the
//! value must give back exactly the input (the encoding is canonical), else the check
//! returns `Err` describing the broken invariant.
//!
//! This file is also compiled into `agora-tests` (`tests/tests/fuzz_corpus.rs`) through a
//! `#[path]` module, so it depends only on `agora-protocol` and `std`, uses no `crate::`
//! paths, and obeys the workspace lints (no unwrap, expect, panic or indexing).

use core::fmt::Debug;

use agora_protocol::gossip::{GossipMessage, SyncRequest, SyncResponse};
use agora_protocol::signed::FORMAT_VERSION;
use agora_protocol::{
    AgoraId, Attestation, ChallengeResponse, Credential, Digest, Ed25519, Offer, OfferWithdrawal,
    Revocation, Signed, SignedKind, codec,
};

/// What a decoder made of one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Decoded, and every round-trip invariant held.
    Accepted,
    /// Refused with an error (the expected outcome for almost all inputs).
    Rejected,
}

/// A check: `Ok` with the verdict, or `Err` naming a violated invariant.
pub type Check = fn(&[u8]) -> Result<Verdict, String>;

/// Every fuzz target by name (also its corpus directory) with its check.
pub const TARGETS: &[(&str, Check)] = &[
    ("signed_attestation", signed_attestation),
    ("signed_revocation", signed_revocation),
    ("signed_challenge_response", signed_challenge_response),
    ("signed_offer", signed_offer),
    ("signed_offer_withdrawal", signed_offer_withdrawal),
    ("credential", credential),
    ("agora_id", agora_id),
    ("base64_text", base64_text),
    ("gossip_message", gossip_message),
    ("sync_request", sync_request),
    ("sync_response", sync_response),
];

/// `Signed::<Attestation>::decode`.
///
/// # Errors
/// A violated round-trip invariant.
pub fn signed_attestation(data: &[u8]) -> Result<Verdict, String> {
    signed::<Attestation>(data)
}

/// `Signed::<Revocation>::decode`.
///
/// # Errors
/// A violated round-trip invariant.
pub fn signed_revocation(data: &[u8]) -> Result<Verdict, String> {
    signed::<Revocation>(data)
}

/// `Signed::<ChallengeResponse>::decode`.
///
/// # Errors
/// A violated round-trip invariant.
pub fn signed_challenge_response(data: &[u8]) -> Result<Verdict, String> {
    signed::<ChallengeResponse>(data)
}

/// `Signed::<Offer>::decode`.
///
/// # Errors
/// A violated round-trip invariant.
pub fn signed_offer(data: &[u8]) -> Result<Verdict, String> {
    signed::<Offer>(data)
}

/// `Signed::<OfferWithdrawal>::decode`.
///
/// # Errors
/// A violated round-trip invariant.
pub fn signed_offer_withdrawal(data: &[u8]) -> Result<Verdict, String> {
    signed::<OfferWithdrawal>(data)
}

/// Decodes a `Signed<T>` and, when accepted, rebuilds its envelope from the decoded body,
/// signer and signature (re-encoding the body) and compares it with the input.
fn signed<T: SignedKind + PartialEq + Debug>(data: &[u8]) -> Result<Verdict, String> {
    let Ok(msg) = Signed::<T>::decode(data, &Ed25519) else {
        return Ok(Verdict::Rejected);
    };
    if msg.as_bytes() != data {
        return Err(format!("{}: as_bytes() differs from the input", T::DOMAIN));
    }
    let wire = rebuild_envelope(&msg)?;
    if wire != data {
        return Err(format!(
            "{}: re-encoded envelope differs from the input ({} vs {} bytes)",
            T::DOMAIN,
            wire.len(),
            data.len()
        ));
    }
    if msg.digest() != Digest::of(data) {
        return Err(format!(
            "{}: digest is not the SHA-256 of the input",
            T::DOMAIN
        ));
    }
    let again = Signed::<T>::decode(msg.as_bytes(), &Ed25519)
        .map_err(|e| format!("{}: re-decoding accepted bytes failed: {e}", T::DOMAIN))?;
    if again.body() != msg.body() || again.signer() != msg.signer() {
        return Err(format!("{}: re-decoding gave another value", T::DOMAIN));
    }
    Ok(Verdict::Accepted)
}

/// The wire envelope built from scratch: version, signer, varint length, canonical
/// payload, signature.
fn rebuild_envelope<T: SignedKind>(msg: &Signed<T>) -> Result<Vec<u8>, String> {
    let payload = codec::encode(msg.body(), T::MAX_PAYLOAD_BYTES)
        .map_err(|e| format!("{}: accepted body does not re-encode: {e}", T::DOMAIN))?;
    let len = u32::try_from(payload.len()).map_err(|e| e.to_string())?;
    let mut wire = vec![FORMAT_VERSION];
    wire.extend_from_slice(msg.signer().as_bytes());
    put_varint(&mut wire, len);
    wire.extend_from_slice(&payload);
    wire.extend_from_slice(&msg.signature().0);
    Ok(wire)
}

/// Shortest-form LEB128, as the envelope's length field.
fn put_varint(out: &mut Vec<u8>, mut value: u32) {
    loop {
        let low = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

/// `Credential::from_bytes`; accepted credentials must give back the input from
/// `to_bytes()`, and their links must link up.
///
/// # Errors
/// A violated round-trip invariant.
pub fn credential(data: &[u8]) -> Result<Verdict, String> {
    let Ok(cred) = Credential::from_bytes(data) else {
        return Ok(Verdict::Rejected);
    };
    let bytes = cred
        .to_bytes()
        .map_err(|e| format!("credential: accepted value does not re-encode: {e}"))?;
    if bytes != data {
        return Err(format!(
            "credential: to_bytes() differs from the input ({} vs {} bytes)",
            bytes.len(),
            data.len()
        ));
    }
    credential_invariants(&cred)?;
    Ok(Verdict::Accepted)
}

fn credential_invariants(cred: &Credential) -> Result<(), String> {
    let links: Vec<&Signed<Attestation>> = cred.chain().collect();
    if links.len() != cred.len() || links.is_empty() || links.len() > 8 {
        return Err(format!(
            "credential: {} links, len() {}",
            links.len(),
            cred.len()
        ));
    }
    for pair in links.windows(2) {
        if let [parent, child] = pair
            && parent.body().subject != child.body().issuer
        {
            return Err("credential: accepted a chain whose links do not link up".into());
        }
    }
    if cred.holder() != cred.leaf().body().subject {
        return Err("credential: holder is not the leaf's subject".into());
    }
    Ok(())
}

/// `str::parse::<AgoraId>`; an accepted id must print as the trimmed, lowercased input and
/// parse back to itself.
///
/// # Errors
/// A violated round-trip invariant.
pub fn agora_id(data: &[u8]) -> Result<Verdict, String> {
    let Ok(text) = core::str::from_utf8(data) else {
        return Ok(Verdict::Rejected);
    };
    let Ok(id) = text.parse::<AgoraId>() else {
        return Ok(Verdict::Rejected);
    };
    let printed = id.to_string();
    if printed != text.trim().to_ascii_lowercase() {
        return Err(format!(
            "agora_id: {text:?} parsed but prints as {printed:?}"
        ));
    }
    match printed.parse::<AgoraId>() {
        Ok(back) if back == id => {}
        other => return Err(format!("agora_id: {printed:?} re-parses as {other:?}")),
    }
    if AgoraId::from_bytes(*id.as_bytes()) != Ok(id) {
        return Err(format!("agora_id: {printed:?} bytes are not a key"));
    }
    if !printed.contains(&id.short()) {
        return Err(format!("agora_id: short form is not part of {printed:?}"));
    }
    Ok(Verdict::Accepted)
}

/// `Credential::from_base64` and `Signed::<Revocation>::from_base64` on the same text; an
/// accepted value must print as the input minus surrounding whitespace and `=` padding.
///
/// # Errors
/// A violated round-trip invariant.
pub fn base64_text(data: &[u8]) -> Result<Verdict, String> {
    let Ok(text) = core::str::from_utf8(data) else {
        return Ok(Verdict::Rejected);
    };
    let canonical = text.trim().trim_end_matches('=');
    let mut verdict = Verdict::Rejected;
    if let Ok(cred) = Credential::from_base64(text) {
        let printed = cred
            .to_base64()
            .map_err(|e| format!("base64_text: credential does not re-encode: {e}"))?;
        if printed != canonical {
            return Err(format!(
                "base64_text: credential {text:?} prints as {printed:?}"
            ));
        }
        credential_invariants(&cred)?;
        verdict = Verdict::Accepted;
    }
    if let Ok(rev) = Signed::<Revocation>::from_base64(text) {
        let printed = rev.to_base64();
        if printed != canonical {
            return Err(format!(
                "base64_text: revocation {text:?} prints as {printed:?}"
            ));
        }
        if verdict == Verdict::Accepted {
            return Err(format!(
                "base64_text: {text:?} is both a credential and a revocation"
            ));
        }
        rebuild_envelope(&rev).and_then(|wire| {
            if wire == rev.as_bytes() {
                Ok(())
            } else {
                Err("base64_text: revocation envelope does not re-encode".to_owned())
            }
        })?;
        verdict = Verdict::Accepted;
    }
    Ok(verdict)
}

/// `GossipMessage::decode`: an accepted message re-encodes to exactly the input.
///
/// # Errors
/// A violated round-trip invariant.
pub fn gossip_message(data: &[u8]) -> Result<Verdict, String> {
    let Ok(msg) = GossipMessage::decode(data, &Ed25519) else {
        return Ok(Verdict::Rejected);
    };
    if msg.encode() != data {
        return Err("gossip_message: encode() differs from the input".into());
    }
    Ok(Verdict::Accepted)
}

/// `SyncRequest::decode`: an accepted request re-encodes to exactly the input.
///
/// # Errors
/// A violated round-trip invariant.
pub fn sync_request(data: &[u8]) -> Result<Verdict, String> {
    let Ok(req) = SyncRequest::decode(data) else {
        return Ok(Verdict::Rejected);
    };
    match req.encode() {
        Ok(bytes) if bytes == data => Ok(Verdict::Accepted),
        Ok(_) => Err("sync_request: encode() differs from the input".into()),
        Err(e) => Err(format!("sync_request: accepted value does not encode: {e}")),
    }
}

/// `SyncResponse::decode`: an accepted page re-encodes to exactly the input, and verifying
/// its offers accounts for every one of them.
///
/// # Errors
/// A violated invariant.
pub fn sync_response(data: &[u8]) -> Result<Verdict, String> {
    let Ok(resp) = SyncResponse::decode(data) else {
        return Ok(Verdict::Rejected);
    };
    match resp.encode() {
        Ok(bytes) if bytes == data => {}
        Ok(_) => return Err("sync_response: encode() differs from the input".into()),
        Err(e) => {
            return Err(format!(
                "sync_response: accepted value does not encode: {e}"
            ));
        }
    }
    let (ok, bad) = resp.verified_offers(&Ed25519);
    if ok.len() + bad != resp.offers.len() {
        return Err("sync_response: verified + refused != offers".into());
    }
    Ok(Verdict::Accepted)
}
