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

use agora_protocol::cofactored::Cofactored;
use agora_protocol::committee::{
    Action, Answer, Certificate, Committee, FreeTier, Genesis, LockRules, MAX_PROOFS, Op, Request,
};
use agora_protocol::frames::{
    self, Decoder, FrameError, MAX_CHUNK_BYTES, MAX_FRAME_BYTES, MAX_OPEN_BYTES, OpenFrame,
    StreamFrame,
};
use agora_protocol::gossip::{GossipMessage, SyncRequest, SyncResponse};
use agora_protocol::lease::{
    Approval, Capability, Delegation, LeaseAnswer, LeaseGrant, LeaseOp, LeaseProposal,
    LeaseRefusal, LeaseRequest, UsageReceipt,
};
use agora_protocol::ledger::{self, Entry, Equivocation, Fact, MAX_PARENTS};
use agora_protocol::quota_rpc::{MAX_REASON_BYTES, MAX_VIEW_LOCKS, Response as QuotaResponse};
use agora_protocol::read_proof::ReadProof;
use agora_protocol::service::sync::{ServiceSyncRequest, ServiceSyncResponse};
use agora_protocol::service::{ServiceGossip, ServiceGrant};
use agora_protocol::signed::FORMAT_VERSION;
use agora_protocol::signup::SignupRecord;
use agora_protocol::tunnel::Header;
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
    ("signed_signup_record", signed_signup_record),
    ("signed_lease_request", signed_lease_request),
    ("signed_lease_op", signed_lease_op),
    ("signed_usage_receipt", signed_usage_receipt),
    ("signed_delegation", signed_delegation),
    ("lease_proposal", lease_proposal),
    ("lease_answer", lease_answer),
    ("stream_frames", stream_frames),
    ("tunnel_header", tunnel_header),
    ("service_gossip", service_gossip),
    ("signed_service_grant", signed_service_grant),
    ("signed_ledger_entry", signed_ledger_entry),
    ("signed_read_proof", signed_read_proof),
    ("service_sync_request", service_sync_request),
    ("service_sync_response", service_sync_response),
    ("quota_certificate", quota_certificate),
    ("quota_request", quota_request),
    ("quota_answer", quota_answer),
];

/// The bound [`lease_proposal`] decodes a [`LeaseProposal`] under: its two signed parts and
/// its lock certificate at their largest, plus postcard's length prefixes and the option
/// tags (rounded up). The protocol defines no constant for it (yet); a transport would use
/// the same sum.
pub const LEASE_PROPOSAL_MAX_BYTES: usize = Signed::<LeaseRequest>::MAX_WIRE_BYTES
    + Signed::<Approval>::MAX_WIRE_BYTES
    + agora_protocol::committee::MAX_CERTIFICATE_BYTES
    + 16;

/// The bound [`lease_answer`] decodes a [`LeaseAnswer`] under: the larger signed variant,
/// plus the variant index and the length prefix (rounded up).
pub const LEASE_ANSWER_MAX_BYTES: usize =
    if Signed::<LeaseGrant>::MAX_WIRE_BYTES > Signed::<LeaseRefusal>::MAX_WIRE_BYTES {
        Signed::<LeaseGrant>::MAX_WIRE_BYTES + 8
    } else {
        Signed::<LeaseRefusal>::MAX_WIRE_BYTES + 8
    };

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
    Ok(verdict(&signed_msg::<T>(data)?))
}

fn verdict<T>(accepted: &Option<T>) -> Verdict {
    if accepted.is_some() {
        Verdict::Accepted
    } else {
        Verdict::Rejected
    }
}

/// [`signed`], returning the accepted message for further checks.
fn signed_msg<T: SignedKind + PartialEq + Debug>(data: &[u8]) -> Result<Option<Signed<T>>, String> {
    let Ok(msg) = Signed::<T>::decode(data, &Ed25519) else {
        return Ok(None);
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
    signed_by_author(&msg)?;
    Ok(Some(msg))
}

/// An accepted message's body is valid and, when it names an author, that author signed.
fn signed_by_author<T: SignedKind>(msg: &Signed<T>) -> Result<(), String> {
    msg.body()
        .validate()
        .map_err(|e| format!("{}: accepted body is invalid: {e}", T::DOMAIN))?;
    match msg.body().author() {
        Some(author) if author != msg.signer() => Err(format!(
            "{}: accepted a message by {} whose author is {author}",
            T::DOMAIN,
            msg.signer()
        )),
        _ => Ok(()),
    }
}

/// A signed message nested in an accepted one: its wire bytes rebuild from its parts, its
/// body is valid and its author signed it.
fn nested<T: SignedKind>(msg: &Signed<T>) -> Result<(), String> {
    let wire = rebuild_envelope(msg)?;
    if wire != msg.as_bytes() {
        return Err(format!(
            "{}: nested envelope does not re-encode to its bytes",
            T::DOMAIN
        ));
    }
    signed_by_author(msg)
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

/// `tunnel::Header::decode` (a stream header's body, after its length prefix): an accepted
/// header re-encodes to its length prefix and exactly the input; a capability or grant
/// inside that verifies keeps the nested invariants.
///
/// # Errors
/// A violated round-trip invariant.
pub fn tunnel_header(data: &[u8]) -> Result<Verdict, String> {
    let Ok(header) = Header::decode(data) else {
        return Ok(Verdict::Rejected);
    };
    let bytes = header
        .encode()
        .map_err(|e| format!("tunnel_header: accepted header does not encode: {e}"))?;
    let (prefix, body) = bytes
        .split_first_chunk::<2>()
        .ok_or("tunnel_header: encoding has no length prefix")?;
    if body != data {
        return Err("tunnel_header: encode() differs from the input".into());
    }
    if Header::body_len_of(*prefix) != Ok(data.len()) {
        return Err("tunnel_header: the length prefix is not the body's length".into());
    }
    if let Ok(token) = Signed::<Capability>::decode(&header.token, &Ed25519) {
        nested(&token)?;
    }
    if let Some(Ok(grant)) = header
        .grant
        .as_deref()
        .map(|g| Signed::<ServiceGrant>::decode(g, &Ed25519))
    {
        nested(&grant)?;
    }
    Ok(Verdict::Accepted)
}

/// `ServiceGossip::decode`: an accepted message re-encodes to exactly the input, is signed
/// by its owner, and a record's nested capability is its provider's, for the owner's lease.
///
/// # Errors
/// A violated invariant.
pub fn service_gossip(data: &[u8]) -> Result<Verdict, String> {
    let Ok(msg) = ServiceGossip::decode(data, &Ed25519) else {
        return Ok(Verdict::Rejected);
    };
    if msg.encode() != data {
        return Err("service_gossip: encode() differs from the input".into());
    }
    match &msg {
        ServiceGossip::Record(r) => {
            let wire = data.get(1..).unwrap_or_default();
            if signed_msg::<agora_protocol::service::ServiceRecord>(wire)?.is_none() {
                return Err("service_gossip: the record does not decode on its own".into());
            }
            let cap = &r.body().capability;
            nested(cap)?;
            if cap.signer() != r.body().provider || cap.body().agent != r.signer() {
                return Err(
                    "service_gossip: accepted a record whose capability is not the \
                            owner's from its provider"
                        .into(),
                );
            }
        }
        ServiceGossip::Withdrawal(w) => {
            if w.signer() != w.body().owner {
                return Err("service_gossip: accepted a withdrawal not by its owner".into());
            }
        }
    }
    Ok(Verdict::Accepted)
}

/// `Signed::<ServiceGrant>::decode`.
///
/// # Errors
/// A violated round-trip invariant.
pub fn signed_service_grant(data: &[u8]) -> Result<Verdict, String> {
    signed::<ServiceGrant>(data)
}

/// `Signed::<Entry>::decode` (an evidence-log entry): signed by its author, chain fields in
/// canonical form, every nested signed fact rebuilding to its own bytes and belonging
/// together, and an equivocation proof that re-checks from its parts. The log's own ingest
/// (`ledger::decode`, `ledger::decode_batch`) must agree with it.
///
/// # Errors
/// A violated invariant.
pub fn signed_ledger_entry(data: &[u8]) -> Result<Verdict, String> {
    let msg = signed_msg::<Entry>(data)?;
    if let Some(msg) = &msg {
        ledger_entry_invariants(msg)?;
    }
    ledger_ingest_agrees(data, msg.as_ref())?;
    Ok(verdict(&msg))
}

/// The log's ingest path (`ledger::decode`: nested signatures recorded while decoding, then
/// verified together) accepts exactly what `Signed::decode` accepts, as the same message,
/// when both verify strictly; the cofactored rule accepts at least that; and a page holding
/// the input twice gives each copy the verdict the input gets alone.
fn ledger_ingest_agrees(data: &[u8], strict: Option<&Signed<Entry>>) -> Result<(), String> {
    let ingested = ledger::decode(data, &Ed25519).ok();
    if ingested.as_ref() != strict {
        let said = |accepted: bool| if accepted { "accepted" } else { "refused" };
        return Err(format!(
            "ledger entry: ledger::decode {} what Signed::decode {}",
            said(ingested.is_some()),
            said(strict.is_some())
        ));
    }
    let alone = ledger::decode(data, &Cofactored);
    if strict.is_some() && alone.is_err() {
        return Err("ledger entry: the cofactored rule refused a strictly valid entry".into());
    }
    if ledger::decode_batch(&[data, data], &Cofactored)
        .iter()
        .any(|r| r != &alone)
    {
        return Err("ledger entry: a page gave another verdict than the entry alone".into());
    }
    Ok(())
}

fn ledger_entry_invariants(msg: &Signed<Entry>) -> Result<(), String> {
    let entry = msg.body();
    if msg.signer() != entry.author {
        return Err("ledger entry: accepted an entry not signed by its author".into());
    }
    if (entry.seq == 0) != entry.prev.is_none() {
        return Err(format!(
            "ledger entry: seq {} with prev {:?}",
            entry.seq, entry.prev
        ));
    }
    if entry.parents.len() > MAX_PARENTS
        || entry.parents.windows(2).any(|w| w.first() >= w.get(1))
        || entry.prev.is_some_and(|p| entry.parents.contains(&p))
    {
        return Err("ledger entry: accepted parents not in canonical form".into());
    }
    match &entry.fact {
        Fact::Signup(record) => {
            nested(record)?;
            signup_invariants(record)
        }
        Fact::Lease(grant) => {
            nested(grant)?;
            nested(&grant.body().token)
        }
        Fact::Usage(usage) => {
            nested(&usage.receipt)?;
            if let Some(ack) = &usage.ack {
                nested(ack)?;
                if ack.body().agent != usage.receipt.body().agent
                    || ack.body().receipt != usage.receipt.digest()
                {
                    return Err("ledger entry: accepted an ack of another receipt".into());
                }
            }
            Ok(())
        }
        Fact::Rating(rating) => nested(rating),
        Fact::Revocation(revocation) => nested(revocation),
        Fact::Equivocation(proof) => equivocation_invariants(proof),
    }
}

/// A decoded proof re-checks from its two parts, which are distinct and ascending.
fn equivocation_invariants(proof: &Equivocation) -> Result<(), String> {
    let (first, second) = proof.entries();
    let again = Equivocation::from_wire(first, second, &Ed25519)
        .map_err(|e| format!("ledger entry: accepted proof does not re-check: {e}"))?;
    if again != *proof || again.author() != proof.author() || again.seq() != proof.seq() {
        return Err("ledger entry: proof re-checks as another proof".into());
    }
    let (a, b) = proof.digests();
    if a >= b || a != Digest::of(first) || b != Digest::of(second) {
        return Err("ledger entry: proof entries are not distinct and ascending".into());
    }
    Ok(())
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
    if ok.len() + bad != resp.entries.len() {
        return Err("sync_response: verified + refused != offers".into());
    }
    Ok(Verdict::Accepted)
}

/// `ServiceSyncRequest::decode`: an accepted request re-encodes to exactly the input.
///
/// # Errors
/// A violated round-trip invariant.
pub fn service_sync_request(data: &[u8]) -> Result<Verdict, String> {
    let Ok(req) = ServiceSyncRequest::decode(data) else {
        return Ok(Verdict::Rejected);
    };
    match req.encode() {
        Ok(bytes) if bytes == data => Ok(Verdict::Accepted),
        Ok(_) => Err("service_sync_request: encode() differs from the input".into()),
        Err(e) => Err(format!(
            "service_sync_request: accepted value does not encode: {e}"
        )),
    }
}

/// `ServiceSyncResponse::decode`: an accepted page re-encodes to exactly the input, and
/// verifying its records and withdrawals accounts for every one of them; a record that
/// verifies carries its provider's capability for its owner.
///
/// # Errors
/// A violated invariant.
pub fn service_sync_response(data: &[u8]) -> Result<Verdict, String> {
    let Ok(resp) = ServiceSyncResponse::decode(data) else {
        return Ok(Verdict::Rejected);
    };
    match resp.encode() {
        Ok(bytes) if bytes == data => {}
        Ok(_) => return Err("service_sync_response: encode() differs from the input".into()),
        Err(e) => {
            return Err(format!(
                "service_sync_response: accepted value does not encode: {e}"
            ));
        }
    }
    let (records, bad) = resp.verified_entries(&Ed25519);
    if records.len() + bad != resp.entries.len() {
        return Err("service_sync_response: verified + refused != records".into());
    }
    for r in &records {
        let cap = &r.body().capability;
        nested(cap)?;
        if cap.signer() != r.body().provider || cap.body().agent != r.signer() {
            return Err(
                "service_sync_response: verified a record whose capability is not the \
                 owner's from its provider"
                    .into(),
            );
        }
    }
    let (withdrawals, bad) = resp.verified_withdrawals(&Ed25519);
    if withdrawals.len() + bad != resp.withdrawals.len() {
        return Err("service_sync_response: verified + refused != withdrawals".into());
    }
    Ok(Verdict::Accepted)
}

/// `Signed::<SignupRecord>::decode`; an accepted record's credential (if any) links up and
/// is held by the signing agent.
///
/// # Errors
/// A violated invariant.
pub fn signed_signup_record(data: &[u8]) -> Result<Verdict, String> {
    let msg = signed_msg::<SignupRecord>(data)?;
    if let Some(msg) = &msg {
        signup_invariants(msg)?;
    }
    Ok(verdict(&msg))
}

fn signup_invariants(msg: &Signed<SignupRecord>) -> Result<(), String> {
    let record = msg.body();
    if msg.signer() != record.agent {
        return Err("signup: accepted a record not signed by its agent".into());
    }
    if let Some(cred) = &record.credential {
        credential_invariants(cred)?;
        if cred.holder() != record.agent {
            return Err("signup: accepted another key's credential".into());
        }
    }
    Ok(())
}

/// `Signed::<LeaseRequest>::decode`; the nested signup record and delegation re-encode to
/// their bytes and belong to the request's agent, and the signer is the agent or its delegate.
///
/// # Errors
/// A violated invariant.
pub fn signed_lease_request(data: &[u8]) -> Result<Verdict, String> {
    let msg = signed_msg::<LeaseRequest>(data)?;
    if let Some(msg) = &msg {
        lease_request_invariants(msg)?;
    }
    Ok(verdict(&msg))
}

fn lease_request_invariants(msg: &Signed<LeaseRequest>) -> Result<(), String> {
    let req = msg.body();
    nested(&req.signup)?;
    signup_invariants(&req.signup)?;
    if req.signup.body().agent != req.agent {
        return Err("lease request: accepted another agent's signup record".into());
    }
    delegation_invariants(req.agent, msg.signer(), req.delegation.as_ref())
}

/// Without a delegation the agent signs; with one, the agent granted it and its delegate signs.
fn delegation_invariants(
    agent: AgoraId,
    signer: AgoraId,
    delegation: Option<&Signed<Delegation>>,
) -> Result<(), String> {
    let expected = match delegation {
        None => agent,
        Some(d) => {
            nested(d)?;
            if d.body().agent != agent {
                return Err("accepted a delegation granted by another agent".into());
            }
            d.body().delegate
        }
    };
    if signer != expected {
        return Err(format!(
            "accepted a message signed by {signer}, not {expected}"
        ));
    }
    Ok(())
}

/// `Signed::<LeaseOp>::decode`; signed by the agent or the delegate its nested delegation names.
///
/// # Errors
/// A violated invariant.
pub fn signed_lease_op(data: &[u8]) -> Result<Verdict, String> {
    let msg = signed_msg::<LeaseOp>(data)?;
    if let Some(msg) = &msg {
        delegation_invariants(
            msg.body().agent,
            msg.signer(),
            msg.body().delegation.as_ref(),
        )?;
    }
    Ok(verdict(&msg))
}

/// `Signed::<ReadProof>::decode`; signed by the agent or the delegate its nested delegation
/// names.
///
/// # Errors
/// A violated invariant.
pub fn signed_read_proof(data: &[u8]) -> Result<Verdict, String> {
    let msg = signed_msg::<ReadProof>(data)?;
    if let Some(msg) = &msg {
        delegation_invariants(
            msg.body().agent,
            msg.signer(),
            msg.body().delegation.as_ref(),
        )?;
    }
    Ok(verdict(&msg))
}

/// `Signed::<UsageReceipt>::decode`.
///
/// # Errors
/// A violated round-trip invariant.
pub fn signed_usage_receipt(data: &[u8]) -> Result<Verdict, String> {
    signed::<UsageReceipt>(data)
}

/// `Signed::<Delegation>::decode`.
///
/// # Errors
/// A violated round-trip invariant.
pub fn signed_delegation(data: &[u8]) -> Result<Verdict, String> {
    signed::<Delegation>(data)
}

/// `codec::decode::<LeaseProposal>` (bounded by [`LEASE_PROPOSAL_MAX_BYTES`]): an accepted
/// proposal re-encodes to exactly the input and every signed part checks out.
///
/// # Errors
/// A violated invariant.
pub fn lease_proposal(data: &[u8]) -> Result<Verdict, String> {
    let Ok(proposal) = codec::decode::<LeaseProposal>(data, LEASE_PROPOSAL_MAX_BYTES) else {
        return Ok(Verdict::Rejected);
    };
    reencodes(
        "lease_proposal",
        codec::encode(&proposal, LEASE_PROPOSAL_MAX_BYTES),
        data,
    )?;
    nested(&proposal.request)?;
    lease_request_invariants(&proposal.request)?;
    if let Some(approval) = &proposal.approval {
        nested(approval)?;
    }
    Ok(Verdict::Accepted)
}

/// `codec::decode::<LeaseAnswer>` (bounded by [`LEASE_ANSWER_MAX_BYTES`]): an accepted
/// answer re-encodes to exactly the input and its signed grant (with its capability token)
/// or refusal checks out.
///
/// # Errors
/// A violated invariant.
pub fn lease_answer(data: &[u8]) -> Result<Verdict, String> {
    let Ok(answer) = codec::decode::<LeaseAnswer>(data, LEASE_ANSWER_MAX_BYTES) else {
        return Ok(Verdict::Rejected);
    };
    reencodes(
        "lease_answer",
        codec::encode(&answer, LEASE_ANSWER_MAX_BYTES),
        data,
    )?;
    match &answer {
        LeaseAnswer::Granted(grant) => {
            nested(grant)?;
            nested(&grant.body().token)?;
        }
        LeaseAnswer::Refused(refusal) => nested(refusal)?,
    }
    Ok(Verdict::Accepted)
}

/// The re-encoding of an accepted value is exactly `data`.
fn reencodes(
    what: &str,
    encoded: Result<Vec<u8>, agora_protocol::EncodeError>,
    data: &[u8],
) -> Result<(), String> {
    match encoded {
        Ok(bytes) if bytes == data => Ok(()),
        Ok(bytes) => Err(format!(
            "{what}: re-encoding differs from the input ({} vs {} bytes)",
            bytes.len(),
            data.len()
        )),
        Err(e) => Err(format!("{what}: accepted value does not encode: {e}")),
    }
}

/// `frames::Decoder` over a whole operation stream, fed in pieces.
///
/// Input: `k = data[0] % 9`, then `k` piece lengths (each byte plus one), then the stream.
/// The stream is pushed in pieces of those lengths, cycling through them (`k = 0`: one byte
/// at a time), and again in one piece as a reference. After each piece the driver takes the
/// opening frame (`next_open`), then stream frames (`next_frame`), until one returns `None`
/// or an error (which ends the stream). Checked against the driver's own reading of the
/// length prefixes:
/// - a frame taken is exactly the next length-prefixed slice of the stream, within its
///   bound, and re-encodes to it (an opening frame that is a `Signed<LeaseOp>` also passes
///   [`signed_lease_op`]);
/// - `None` comes only while the next frame is incomplete, with just that frame's bytes
///   buffered, so less than its bound plus the prefix: no frame above its bound is ever held;
/// - an announced length above the bound is refused as soon as the prefix is in, a malformed
///   or oversized body only once the whole frame is in;
/// - `finish()` succeeds exactly when the stream ended on a frame boundary;
/// - both feedings take the same frames and end with the same error.
///
/// Accepted: the whole stream decoded (an opening frame, then any stream frames).
///
/// # Errors
/// A violated invariant.
pub fn stream_frames(data: &[u8]) -> Result<Verdict, String> {
    let (splits, stream) = split_control(data);
    let whole = drive_frames(stream, || usize::MAX)?;
    let mut cycle = splits.iter().cycle();
    let pieces = drive_frames(stream, || cycle.next().map_or(1, |b| usize::from(*b) + 1))?;
    if pieces != whole {
        return Err(format!(
            "stream_frames: in pieces {splits:?}: {} frames, error {:?}, finished {}; \
             in one piece: {} frames, error {:?}, finished {}",
            pieces.taken.len(),
            pieces.error,
            pieces.finished,
            whole.taken.len(),
            whole.error,
            whole.finished
        ));
    }
    if whole.error.is_none() && whole.finished && !whole.taken.is_empty() {
        Ok(Verdict::Accepted)
    } else {
        Ok(Verdict::Rejected)
    }
}

/// Splits a [`stream_frames`] input into its piece lengths and its stream.
fn split_control(data: &[u8]) -> (&[u8], &[u8]) {
    let Some((&k, rest)) = data.split_first() else {
        return (&[], &[]);
    };
    rest.split_at_checked(usize::from(k % 9))
        .unwrap_or((rest, &[]))
}

/// What the decoder gave for one feeding of a stream.
#[derive(Debug, PartialEq)]
struct FramesRun {
    taken: Vec<Taken>,
    error: Option<FrameError>,
    finished: bool,
}

#[derive(Debug, PartialEq)]
enum Taken {
    Open(OpenFrame),
    Frame(StreamFrame),
}

/// Feeds `stream` in pieces of `piece_len()` bytes, taking frames after each piece.
fn drive_frames(stream: &[u8], mut piece_len: impl FnMut() -> usize) -> Result<FramesRun, String> {
    let mut dec = Decoder::default();
    let mut run = FramesRun {
        taken: Vec::new(),
        error: None,
        finished: false,
    };
    // Bytes pushed so far, and where the frame being received starts.
    let (mut fed, mut pos) = (0usize, 0usize);
    'feed: while fed < stream.len() {
        let len = piece_len().clamp(1, stream.len() - fed);
        let piece = stream.get(fed..fed + len).unwrap_or_default();
        dec.push(piece);
        fed += len;
        loop {
            let opened = !run.taken.is_empty();
            let bound = if opened {
                MAX_FRAME_BYTES
            } else {
                MAX_OPEN_BYTES
            };
            let pending = stream.get(pos..fed).unwrap_or_default();
            let announced = pending
                .first_chunk::<4>()
                .map(|p| usize::try_from(u32::from_be_bytes(*p)).unwrap_or(usize::MAX));
            let whole_frame = announced.and_then(|n| pending.get(..n.saturating_add(4)));
            let step = if opened {
                dec.next_frame().map(|f| f.map(Taken::Frame))
            } else {
                dec.next_open().map(|f| f.map(Taken::Open))
            };
            match step {
                Ok(None) => {
                    if dec.buffered() != pending.len() {
                        return Err(format!(
                            "stream_frames: {} bytes buffered, {} received and not taken",
                            dec.buffered(),
                            pending.len()
                        ));
                    }
                    if let Some(n) = announced
                        && n > bound
                    {
                        return Err(format!(
                            "stream_frames: waits for a frame of {n} bytes, above its bound {bound}"
                        ));
                    }
                    if whole_frame.is_some() {
                        return Err("stream_frames: a whole frame arrived but was not taken".into());
                    }
                    break;
                }
                Ok(Some(taken)) => {
                    let (Some(n), Some(wire)) = (announced, whole_frame) else {
                        return Err("stream_frames: took a frame before all of it arrived".into());
                    };
                    if n > bound {
                        return Err(format!(
                            "stream_frames: took a frame of {n} bytes, above its bound {bound}"
                        ));
                    }
                    let mut out = Vec::new();
                    match &taken {
                        Taken::Open(OpenFrame(body)) => {
                            frames::encode_open(body, &mut out).map_err(|e| {
                                format!("stream_frames: opening frame does not encode: {e}")
                            })?;
                            signed_lease_op(body)?;
                        }
                        Taken::Frame(frame) => {
                            if let StreamFrame::Stdin(d)
                            | StreamFrame::Stdout(d)
                            | StreamFrame::Stderr(d)
                            | StreamFrame::Data(d) = frame
                                && d.len() > MAX_CHUNK_BYTES
                            {
                                return Err(format!(
                                    "stream_frames: took a chunk of {} bytes",
                                    d.len()
                                ));
                            }
                            frames::encode(frame, &mut out).map_err(|e| {
                                format!("stream_frames: frame does not encode: {e}")
                            })?;
                        }
                    }
                    if out != wire {
                        return Err(format!(
                            "stream_frames: frame at offset {pos} re-encodes differently \
                             ({} vs {} bytes)",
                            out.len(),
                            wire.len()
                        ));
                    }
                    pos += wire.len();
                    run.taken.push(taken);
                }
                Err(e) => {
                    let Some(n) = announced else {
                        return Err(format!("stream_frames: {e} before a length prefix"));
                    };
                    let fine = match &e {
                        FrameError::TooLong { len, max } if n > bound => *len == n && *max == bound,
                        FrameError::TooLong { len, max } => {
                            opened
                                && whole_frame.is_some()
                                && *max == MAX_CHUNK_BYTES
                                && *len > MAX_CHUNK_BYTES
                        }
                        FrameError::Malformed(_) => opened && n <= bound && whole_frame.is_some(),
                        FrameError::Truncated { .. } => false,
                    };
                    if !fine {
                        return Err(format!(
                            "stream_frames: unexpected {e:?} at offset {pos} \
                             (announced {n}, bound {bound}, {} bytes in)",
                            pending.len()
                        ));
                    }
                    run.error = Some(e);
                    break 'feed;
                }
            }
        }
    }
    if run.error.is_none() {
        run.finished = dec.finish().is_ok();
        if run.finished != (pos == stream.len()) {
            return Err(format!(
                "stream_frames: finish() is {} with {} of {} bytes taken as frames",
                run.finished,
                pos,
                stream.len()
            ));
        }
    }
    Ok(run)
}

/// The public keys of `SigningKey::from_bytes(&[n; 32])` for n = 1..=4: the validators of
/// [`quota_committee`], which the seeds sign votes with.
const QUOTA_VALIDATORS: [&str; 4] = [
    "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c",
    "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394",
    "ed4928c628d1c2c6eae90338905995612959273a5c63f93636c14614ac8737d1",
    "ca93ac1705187071d67b83c7ff0efe8108e8ec4530575d7726879333dbdabe7c",
];

/// The quota committee certificates are checked against: f = 1, the four
/// [`QUOTA_VALIDATORS`], no issuers, epoch 0 at 1,800,000,000 s, one-day epochs.
///
/// # Errors
/// A key or genesis that does not load (a bug in this file).
pub fn quota_committee() -> Result<&'static Committee, String> {
    static COMMITTEE: std::sync::OnceLock<Result<Committee, String>> = std::sync::OnceLock::new();
    COMMITTEE
        .get_or_init(|| {
            let validators = QUOTA_VALIDATORS
                .iter()
                .map(|hex| {
                    let bytes = hex.parse::<Digest>().map_err(|e| e.to_string())?;
                    AgoraId::from_bytes(bytes.0).map_err(|e| e.to_string())
                })
                .collect::<Result<Vec<_>, String>>()?;
            Committee::new(Genesis {
                f: 1,
                validators,
                issuers: Vec::new(),
                start_unix_secs: 1_800_000_000,
                epoch_secs: 86_400,
                free_tier: FreeTier {
                    allowance_micro: 10_000_000,
                    cap_per_epoch: 1000,
                },
                locks: LockRules::default(),
            })
            .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// `committee::Certificate::decode` against [`quota_committee`]: an accepted certificate
/// re-encodes to exactly the input, holds exactly `2f + 1` members' votes in ascending order,
/// re-verifies from its parts, and its op is signed by whom it must be (see
/// `quota_op_invariants`).
///
/// # Errors
/// A violated invariant.
pub fn quota_certificate(data: &[u8]) -> Result<Verdict, String> {
    let committee = quota_committee()?;
    let Ok(cert) = Certificate::decode(data, committee, &Ed25519) else {
        return Ok(Verdict::Rejected);
    };
    reencodes("quota_certificate", cert.encode(), data)?;
    certificate_invariants(&cert, committee)?;
    Ok(Verdict::Accepted)
}

/// `committee::Request::decode` against [`quota_committee`]: an accepted request re-encodes
/// to exactly the input, carries at most `MAX_PROOFS` certificates, each passing
/// [`quota_certificate`]'s checks, and its op passes `quota_op_invariants`.
///
/// # Errors
/// A violated invariant.
pub fn quota_request(data: &[u8]) -> Result<Verdict, String> {
    let committee = quota_committee()?;
    let Ok(request) = Request::decode(data, committee, &Ed25519) else {
        return Ok(Verdict::Rejected);
    };
    reencodes("quota_request", request.encode(), data)?;
    if request.proofs.len() > MAX_PROOFS {
        return Err(format!(
            "quota_request: accepted {} certificates",
            request.proofs.len()
        ));
    }
    for proof in &request.proofs {
        certificate_invariants(proof, committee)?;
    }
    quota_op_invariants(&request.op)?;
    Ok(Verdict::Accepted)
}

/// `quota_rpc::Response::decode` against [`quota_committee`] (what a validator sends back
/// on `/agora/quota/1`): an accepted answer re-encodes to exactly the input; a vote
/// rebuilds to its own bytes and is signed by its author; an account view lists at most
/// `MAX_VIEW_LOCKS` locks and its head certificate passes [`quota_certificate`]'s checks;
/// a refusal's reason is within `MAX_REASON_BYTES`.
///
/// # Errors
/// A violated invariant.
pub fn quota_answer(data: &[u8]) -> Result<Verdict, String> {
    let committee = quota_committee()?;
    let Ok(response) = QuotaResponse::decode(data, committee, &Ed25519) else {
        return Ok(Verdict::Rejected);
    };
    reencodes("quota_answer", response.encode(), data)?;
    match &response {
        QuotaResponse::Answer(Answer::Vote(vote)) => nested(vote)?,
        QuotaResponse::Answer(Answer::Refused(_)) | QuotaResponse::Stored => {}
        QuotaResponse::Account(view) => {
            if view.locks.len() > MAX_VIEW_LOCKS {
                return Err(format!(
                    "quota_answer: accepted {} locks in an account view",
                    view.locks.len()
                ));
            }
            if let Some(head) = &view.head {
                certificate_invariants(head, committee)?;
            }
        }
        QuotaResponse::Refused(reason) => {
            if reason.len() > MAX_REASON_BYTES {
                return Err(format!(
                    "quota_answer: accepted a {}-byte reason",
                    reason.len()
                ));
            }
        }
    }
    Ok(Verdict::Accepted)
}

fn certificate_invariants(cert: &Certificate, committee: &Committee) -> Result<(), String> {
    let votes = cert.votes();
    if votes.len() != committee.quorum() {
        return Err(format!("quota_certificate: accepted {} votes", votes.len()));
    }
    if votes
        .windows(2)
        .any(|w| w.first().map(|v| v.validator) >= w.get(1).map(|v| v.validator))
    {
        return Err("quota_certificate: accepted votes not strictly ascending".into());
    }
    if votes.iter().any(|v| !committee.is_member(&v.validator)) {
        return Err("quota_certificate: accepted a vote by a non-member".into());
    }
    if cert.digest() != cert.op().digest() || cert.genesis() != committee.digest() {
        return Err("quota_certificate: digest or committee differ from the op's".into());
    }
    let again = cert
        .clone()
        .into_unchecked()
        .verify(committee, &Ed25519)
        .map_err(|e| format!("quota_certificate: accepted certificate does not re-verify: {e}"))?;
    if again != *cert {
        return Err("quota_certificate: re-verifies as another certificate".into());
    }
    quota_op_invariants(cert.op())
}

/// A chain op is its account's or its delegate's, with `prev` exactly when `seq > 0`; a
/// credit's credential is held by the account.
fn chain_op_invariants(chain: &Signed<agora_protocol::committee::ChainOp>) -> Result<(), String> {
    nested(chain)?;
    let body = chain.body();
    // The account signs, or the delegate its own delegation names (a lock or top-up).
    let signer = match &body.delegation {
        Some(delegation) => {
            nested(delegation)?;
            if delegation.body().agent != body.account || matches!(body.action, Action::Credit(_)) {
                return Err(
                    "quota op: accepted a delegated op of another agent, or a delegated credit"
                        .into(),
                );
            }
            delegation.body().delegate
        }
        None => body.account,
    };
    if chain.signer() != signer || (body.seq == 0) != body.prev.is_none() {
        return Err(
            "quota op: accepted a chain op not signed by its account or delegate, or with a bad prev"
                .into(),
        );
    }
    if let Action::Credit(credential) = &body.action {
        if credential.holder() != body.account {
            return Err("quota op: accepted a credit of another holder's credential".into());
        }
        for link in credential.chain() {
            nested(link)?;
        }
    }
    Ok(())
}

/// A chain op or free-tier claim is its account's (a credit's credential held by it, `prev`
/// exactly when `seq > 0`), a settlement is the receipt provider's for the account's lease;
/// every nested signed message rebuilds to its own bytes.
fn quota_op_invariants(op: &Op) -> Result<(), String> {
    match op {
        Op::Chain(chain) => chain_op_invariants(chain),
        Op::Approved(approved) => {
            chain_op_invariants(&approved.op)?;
            nested(&approved.approval)?;
            if approved.approval.signer() != approved.approval.body().owner {
                return Err("quota op: accepted an approval not signed by its owner".into());
            }
            Ok(())
        }
        Op::FreeTier(claim) => {
            nested(claim)?;
            if claim.signer() != claim.body().account {
                return Err("quota op: accepted a claim not signed by its account".into());
            }
            Ok(())
        }
        Op::Settle(settle) => {
            nested(settle)?;
            let receipt = &settle.body().receipt;
            nested(receipt)?;
            if settle.signer() != receipt.body().provider
                || receipt.body().agent != settle.body().account
            {
                return Err(
                    "quota op: accepted a settlement not by the receipt's provider for its agent"
                        .into(),
                );
            }
            Ok(())
        }
        Op::Unlock(_) => Ok(()),
        Op::Release(release) => {
            nested(&release.refusal)?;
            if release.refusal.signer() != release.refusal.body().provider {
                return Err(
                    "quota op: accepted a release whose refusal is not its provider's".into(),
                );
            }
            Ok(())
        }
    }
}
