use super::*;
use crate::signed::{Ed25519, SignedError};
use ed25519_dalek::SigningKey;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn id(seed: u8) -> AgoraId {
    key(seed).verifying_key().into()
}

const AGENT: u8 = 1;
const NODE: u8 = 2;
const DELEGATE: u8 = 3;
const STRANGER: u8 = 4;

fn t(secs: u64) -> Timestamp {
    Timestamp::from_unix_secs(1_800_000_000 + secs)
}

fn delegation(agent: u8, ops: Vec<OpKind>) -> Signed<Delegation> {
    Signed::sign(
        Delegation {
            agent: id(agent),
            delegate: id(DELEGATE),
            ops,
            spend_cap_credits: 0,
            issued_at: t(0),
            expires_at: t(3600),
        },
        &key(agent),
    )
    .unwrap()
}

fn proof(delegation: Option<Signed<Delegation>>) -> ReadProof {
    ReadProof::new(id(AGENT), id(NODE), t(1000), delegation)
}

fn round_trip(p: ReadProof, signer: u8) -> Signed<ReadProof> {
    let signed = Signed::sign(p, &key(signer)).unwrap();
    Signed::<ReadProof>::decode(signed.as_bytes(), &Ed25519).unwrap()
}

#[test]
fn the_agents_own_proof_reads_its_records_at_its_node() {
    let p = round_trip(proof(None), AGENT);
    assert_eq!(p.signer(), id(AGENT));
    assert_eq!(p.body().check(&id(NODE), &id(AGENT), t(1000)), Ok(()));
}

#[test]
fn only_the_agent_or_its_delegate_can_sign_one() {
    // A stranger cannot sign a proof naming the agent …
    assert!(Signed::sign(proof(None), &key(STRANGER)).is_err());
    // … nor pass the agent's off as its own: swapping the signer breaks the signature.
    let signed = Signed::sign(proof(None), &key(AGENT)).unwrap();
    let mut wire = signed.as_bytes().to_vec();
    wire[1..33].copy_from_slice(id(STRANGER).as_bytes());
    assert!(matches!(
        Signed::<ReadProof>::decode(&wire, &Ed25519),
        Err(SignedError::Verify(_))
    ));
    // A stranger's own proof proves who the stranger is, not the agent.
    let own = round_trip(
        ReadProof::new(id(STRANGER), id(NODE), t(1000), None),
        STRANGER,
    );
    assert_eq!(
        own.body().check(&id(NODE), &id(AGENT), t(1000)),
        Err(ReadProofError::WrongAgent {
            proof: id(STRANGER),
            asked: id(AGENT)
        })
    );
}

#[test]
fn a_proof_for_another_node_is_refused() {
    let p = round_trip(proof(None), AGENT);
    assert_eq!(
        p.body().check(&id(9), &id(AGENT), t(1000)),
        Err(ReadProofError::WrongNode {
            proof: id(NODE),
            node: id(9)
        })
    );
}

#[test]
fn a_proof_is_fresh_for_five_minutes_either_way() {
    let p = proof(None);
    let window = READ_PROOF_WINDOW.as_secs();
    for now in [t(1000 - window), t(1000), t(1000 + window)] {
        assert_eq!(p.check(&id(NODE), &id(AGENT), now), Ok(()), "{now}");
    }
    for now in [
        t(1000 - window - 1),
        t(1000 + window + 1),
        t(0),
        Timestamp::MAX,
    ] {
        assert!(
            matches!(
                p.check(&id(NODE), &id(AGENT), now),
                Err(ReadProofError::Stale { .. })
            ),
            "{now}"
        );
    }
}

#[test]
fn a_delegate_reads_only_under_a_live_status_delegation() {
    let d = delegation(AGENT, vec![OpKind::Exec, OpKind::Status]);
    // The delegate signs; the agent no longer can (the proof names the delegate as author).
    let p = round_trip(proof(Some(d.clone())), DELEGATE);
    assert_eq!(p.signer(), id(DELEGATE));
    assert_eq!(p.body().check(&id(NODE), &id(AGENT), t(1000)), Ok(()));
    assert!(Signed::sign(proof(Some(d)), &key(AGENT)).is_err());

    // Without `status`.
    let narrow = round_trip(proof(Some(delegation(AGENT, vec![OpKind::Exec]))), DELEGATE);
    assert!(matches!(
        narrow.body().check(&id(NODE), &id(AGENT), t(1000)),
        Err(ReadProofError::Scope { .. })
    ));

    // Expired: the delegation ends at t(3600), the proof is fresh after it.
    let mut late = proof(Some(delegation(AGENT, vec![OpKind::Status])));
    late.issued_at = t(3700);
    let late = round_trip(late, DELEGATE);
    assert!(matches!(
        late.body().check(&id(NODE), &id(AGENT), t(3700)),
        Err(ReadProofError::Scope { .. })
    ));

    // A delegation another agent granted covers nothing of this one's.
    let foreign = proof(Some(delegation(STRANGER, vec![OpKind::Status])));
    assert!(Signed::sign(foreign, &key(DELEGATE)).is_err());
}

#[test]
fn a_proof_is_its_own_kind() {
    // A delegation's bytes are not a proof, whatever they sign.
    let d = delegation(AGENT, vec![OpKind::Status]);
    assert!(Signed::<ReadProof>::decode(d.as_bytes(), &Ed25519).is_err());
    // And the largest proof fits its bound.
    let d = Signed::sign(
        Delegation {
            agent: id(AGENT),
            delegate: id(DELEGATE),
            ops: vec![OpKind::Status; 8],
            spend_cap_credits: u64::MAX,
            issued_at: Timestamp::MAX.saturating_sub(core::time::Duration::from_millis(1)),
            expires_at: Timestamp::MAX,
        },
        &key(AGENT),
    )
    .unwrap();
    let big = ReadProof::new(id(AGENT), id(NODE), Timestamp::MAX, Some(d));
    let signed = Signed::sign(big, &key(DELEGATE)).unwrap();
    assert!(signed.as_bytes().len() <= Signed::<ReadProof>::MAX_WIRE_BYTES);
    assert!(Signed::<ReadProof>::decode(signed.as_bytes(), &Ed25519).is_ok());
}
