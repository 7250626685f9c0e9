//! Ingest: every signature of an entry verified, alone or a page at a time, with the same
//! verdicts either way.

use super::test_support::{AGENT, PROVIDER, entry, genesis, id, key, log, rating, sign_payload, t};
use super::*;
use crate::codec::{self, DecodeError};
use crate::cofactored::Cofactored;
use crate::lease::UsageReceipt;
use crate::signed::{Digest, Ed25519, Signed, SignedError, Verifier, VerifyError};
use crate::workload::TerminationReason;

fn receipt(seq: u32) -> Signed<UsageReceipt> {
    let receipt = UsageReceipt {
        lease: Digest::of(b"lease"),
        agent: id(AGENT),
        provider: id(PROVIDER),
        seq,
        from: t(0),
        to: t(60),
        cpu_ms: 1200,
        memory_mib_secs: 600,
        egress_bytes: 4096,
        tunnel_in_bytes: 0,
        tunnel_out_bytes: 0,
        price_per_sec: 10,
        total_micro: 600,
        ended: Some(TerminationReason::Exited { code: 0 }),
    };
    Signed::sign(receipt, &key(PROVIDER)).unwrap()
}

fn usage(seq: u32) -> Fact {
    usage_acked(seq, true)
}

fn usage_acked(seq: u32, acked: bool) -> Fact {
    let receipt = receipt(seq);
    if !acked {
        return Fact::Usage(Usage { receipt, ack: None });
    }
    let ack = ReceiptAck {
        agent: id(AGENT),
        receipt: receipt.digest(),
        acked_at: t(61),
        delegation: None,
    };
    let ack = Some(Signed::sign(ack, &key(AGENT)).unwrap());
    Fact::Usage(Usage { receipt, ack })
}

/// An entry by node 2 whose author signed a payload in which the nested receipt's signature
/// is broken: the envelope verifies, the receipt does not. (Without an acknowledgement: one
/// would no longer name the changed receipt, and that mismatch is found while decoding,
/// before any nested signature is checked.)
fn bad_nested(first: &Signed<Entry>) -> Vec<u8> {
    let good = entry(2, 1, Some(first), &[], t(3), usage_acked(7, false));
    let mut payload = codec::encode(good.body(), MAX_ENTRY_PAYLOAD_BYTES).unwrap();
    let Fact::Usage(u) = &good.body().fact else {
        unreachable!()
    };
    let wire = u.receipt.as_bytes();
    let at = payload.windows(wire.len()).position(|w| w == wire).unwrap();
    payload[at + wire.len() - 1] ^= 1;
    sign_payload(&key(2), &payload)
}

/// A page with good entries and one of every kind of bad one.
fn page() -> (Vec<Vec<u8>>, Vec<bool>) {
    let first = genesis(2, t(0));
    let good = entry(2, 1, Some(&first), &[], t(1), usage(1));
    let other = genesis(3, t(1));
    let mut bad_author = good.as_bytes().to_vec();
    let last = bad_author.len() - 1;
    bad_author[last] ^= 1;
    let wrong_signer = {
        let mut body = genesis(4, t(2)).body().clone();
        body.author = id(5);
        super::test_support::sign_raw(&key(4), &body)
    };
    let truncated = other.as_bytes()[..40].to_vec();
    let wires = vec![
        first.as_bytes().to_vec(),
        bad_author,
        good.as_bytes().to_vec(),
        bad_nested(&first),
        wrong_signer,
        other.as_bytes().to_vec(),
        truncated,
        entry(3, 1, Some(&other), &[&first], t(4), rating(3))
            .as_bytes()
            .to_vec(),
    ];
    let good = vec![true, false, true, false, false, true, false, true];
    (wires, good)
}

fn same_verdicts(v: &impl Verifier) {
    let (wires, good) = page();
    let refs: Vec<&[u8]> = wires.iter().map(Vec::as_slice).collect();
    let batch = decode_batch(&refs, v);
    assert_eq!(batch.len(), wires.len());
    for ((wire, together), good) in wires.iter().zip(&batch).zip(good) {
        let alone = decode(wire, v);
        assert_eq!(together, &alone);
        assert_eq!(alone.is_ok(), good, "{alone:?}");
        if let Ok(e) = &alone {
            assert_eq!(e.as_bytes(), wire.as_slice());
            assert_eq!(Signed::<Entry>::decode(wire, &Ed25519).as_ref(), Ok(e));
        }
    }
}

#[test]
fn a_page_gives_each_entry_the_verdict_it_gets_alone() {
    same_verdicts(&Ed25519);
    same_verdicts(&Cofactored);
}

#[test]
fn a_bad_nested_signature_is_named() {
    let first = genesis(2, t(0));
    let wire = bad_nested(&first);
    for result in [decode(&wire, &Ed25519), decode(&wire, &Cofactored)] {
        assert_eq!(
            result,
            Err(SignedError::Verify(VerifyError::BadSignature {
                signer: id(PROVIDER)
            }))
        );
    }
    // Decoding through serde alone reports it as a malformed nested message.
    assert!(matches!(
        Signed::<Entry>::decode(&wire, &Ed25519),
        Err(SignedError::Decode(DecodeError::Malformed(_)))
    ));
}

#[test]
fn insert_batch_is_insert_bytes_in_turn() {
    let (wires, _) = page();
    let mut wires: Vec<Vec<u8>> = wires.into_iter().rev().collect();
    // A duplicate within the page, and one of an entry the log will hold.
    wires.push(wires[0].clone());
    let refs: Vec<&[u8]> = wires.iter().map(Vec::as_slice).collect();
    let mut batched = log();
    let mut single = log();
    let together = batched.insert_batch(t(10), &refs, &Cofactored);
    let alone: Vec<Outcome> = refs
        .iter()
        .map(|w| single.insert_bytes(t(10), w, &Ed25519))
        .collect();
    assert_eq!(together, alone);
    assert_eq!(batched.state_hash(), single.state_hash());
    assert_eq!(batched.len(), 4);
    assert_eq!(batched.pending_len(), 0);
    // Everything again: all duplicates, nothing verified.
    assert!(
        batched
            .insert_batch(t(11), &refs[..2], &Cofactored)
            .iter()
            .all(|o| *o == Outcome::Duplicate || matches!(o, Outcome::Rejected(_)))
    );
    assert!(batched.insert_batch(t(11), &[], &Cofactored).is_empty());
}
