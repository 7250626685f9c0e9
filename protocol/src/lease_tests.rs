use super::*;
use crate::challenge::Challenge;
use crate::signed::Ed25519;
use crate::signup::ProofOfWork;
use ed25519_dalek::SigningKey;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn id(seed: u8) -> AgoraId {
    key(seed).verifying_key().into()
}

const AGENT: u8 = 1;
const PROVIDER: u8 = 2;
const GATEWAY: u8 = 3;

fn t(secs: u64) -> Timestamp {
    Timestamp::from_unix_secs(1_800_000_000 + secs)
}

fn signup(agent: u8) -> Signed<SignupRecord> {
    let record = SignupRecord {
        agent: id(agent),
        challenge: Challenge {
            verifier: id(GATEWAY),
            nonce: [5; 32],
            issued_at: t(0),
        },
        credential: None,
        pow: ProofOfWork::NONE,
        name: None,
    };
    Signed::sign(record, &key(agent)).unwrap()
}

fn request(agent: u8) -> LeaseRequest {
    LeaseRequest {
        agent: id(agent),
        candidates: vec![Candidate {
            provider: id(PROVIDER),
            offer: Digest::of(b"offer"),
        }],
        isolation: Isolation::Sandbox,
        spec: WorkloadSpec::example(Digest::of(b"busybox"), &["echo", "hi"]),
        max_price_per_sec: 20,
        nonce: [1; NONCE_LEN],
        issued_at: t(10),
        signup: signup(agent),
        delegation: None,
    }
}

fn delegation(ops: Vec<OpKind>) -> Signed<Delegation> {
    Signed::sign(
        Delegation {
            agent: id(AGENT),
            delegate: id(GATEWAY),
            ops,
            spend_cap_credits: 5,
            issued_at: t(0),
            expires_at: t(3600),
        },
        &key(AGENT),
    )
    .unwrap()
}

#[test]
fn a_request_round_trips_and_its_digest_is_the_lease_id() {
    let signed = Signed::sign(request(AGENT), &key(AGENT)).unwrap();
    let back = Signed::<LeaseRequest>::decode(signed.as_bytes(), &Ed25519).unwrap();
    assert_eq!(back.body(), signed.body());
    assert_eq!(back.digest(), signed.digest());
    assert_eq!(back.body().max_cost_micro(), 20 * 3600);
    // Another nonce is another lease.
    let mut other = request(AGENT);
    other.nonce = [2; NONCE_LEN];
    assert_ne!(
        Signed::sign(other, &key(AGENT)).unwrap().digest(),
        signed.digest()
    );
}

#[test]
fn a_gateway_cannot_sign_for_an_agent() {
    assert!(Signed::sign(request(AGENT), &key(GATEWAY)).is_err());
    // Nor re-sign the agent's bytes as itself: swap the signer and the signature breaks.
    let signed = Signed::sign(request(AGENT), &key(AGENT)).unwrap();
    let mut wire = signed.as_bytes().to_vec();
    wire[1..33].copy_from_slice(id(GATEWAY).as_bytes());
    assert!(Signed::<LeaseRequest>::decode(&wire, &Ed25519).is_err());
}

#[test]
fn candidates_are_bounded_and_distinct() {
    let mut r = request(AGENT);
    assert!(r.candidate_for(&id(PROVIDER)).is_some());
    assert!(r.candidate_for(&id(9)).is_none());
    r.candidates.push(r.candidates[0]);
    assert!(Signed::sign(r.clone(), &key(AGENT)).is_err());
    r.candidates.clear();
    assert!(Signed::sign(r, &key(AGENT)).is_err());
}

#[test]
fn a_request_must_carry_its_own_agents_signup() {
    let mut r = request(AGENT);
    r.signup = signup(4);
    assert!(Signed::sign(r, &key(AGENT)).is_err());
}

#[test]
fn a_delegate_signs_only_under_the_agents_delegation() {
    let mut r = request(AGENT);
    r.delegation = Some(delegation(vec![OpKind::Lease, OpKind::Exec]));
    // The delegate signs; the agent no longer can.
    let signed = Signed::sign(r.clone(), &key(GATEWAY)).unwrap();
    assert!(Signed::<LeaseRequest>::decode(signed.as_bytes(), &Ed25519).is_ok());
    assert!(Signed::sign(r.clone(), &key(AGENT)).is_err());
    // A delegation granted by someone else does not cover this agent.
    let foreign = Signed::sign(
        Delegation {
            agent: id(4),
            delegate: id(GATEWAY),
            ops: vec![OpKind::Lease],
            spend_cap_credits: 1,
            issued_at: t(0),
            expires_at: t(10),
        },
        &key(4),
    )
    .unwrap();
    r.delegation = Some(foreign);
    assert!(Signed::sign(r, &key(GATEWAY)).is_err());

    let d = delegation(vec![OpKind::Exec]);
    assert!(d.body().allows(OpKind::Exec, t(1)));
    assert!(!d.body().allows(OpKind::Stop, t(1)));
    assert!(!d.body().allows(OpKind::Exec, t(3600)));
}

#[test]
fn a_delegation_is_bounded() {
    let mut d = delegation(vec![OpKind::Exec]).body().clone();
    d.ops.clear();
    assert!(Signed::sign(d.clone(), &key(AGENT)).is_err());
    d.ops = vec![OpKind::Exec];
    d.expires_at = d.issued_at;
    assert!(Signed::sign(d.clone(), &key(AGENT)).is_err());
    d.expires_at = t(5);
    d.delegate = d.agent;
    assert!(Signed::sign(d, &key(AGENT)).is_err());
}

fn grant(token_lease: Digest) -> LeaseGrant {
    let lease = Digest::of(b"lease");
    let token = Signed::sign(
        Capability {
            lease: token_lease,
            agent: id(AGENT),
            provider: id(PROVIDER),
            ports: vec![8080],
            expires_at: t(3600),
        },
        &key(PROVIDER),
    )
    .unwrap();
    LeaseGrant {
        owner: None,
        lease,
        agent: id(AGENT),
        provider: id(PROVIDER),
        price_per_sec: 10,
        reserved_micro: 36_000,
        starts_at: t(0),
        expires_at: t(3600),
        tunnel_endpoints: vec!["127.0.0.1:7000".into()],
        token,
    }
}

#[test]
fn a_grant_carries_its_own_leases_token() {
    let ok = Signed::sign(grant(Digest::of(b"lease")), &key(PROVIDER)).unwrap();
    let back = Signed::<LeaseGrant>::decode(ok.as_bytes(), &Ed25519).unwrap();
    assert_eq!(back.body().token.body().ports, vec![8080]);
    assert!(Signed::sign(grant(Digest::of(b"other")), &key(PROVIDER)).is_err());
    assert!(Signed::sign(grant(Digest::of(b"lease")), &key(AGENT)).is_err());
}

#[test]
fn refusals_have_stable_codes_and_bounded_details() {
    let r = Refusal::new(RefusalCode::ApprovalRequired, "é".repeat(400));
    assert!(r.detail.len() <= 512);
    assert_eq!(r.code.as_str(), "approval_required");
    let json = serde_json::to_string(&r.code).unwrap();
    assert_eq!(json, "\"approval_required\"");
    let refusal = LeaseRefusal {
        request: Digest::of(b"r"),
        agent: id(AGENT),
        provider: id(PROVIDER),
        refusal: r,
        at: t(1),
    };
    let signed = Signed::sign(refusal, &key(PROVIDER)).unwrap();
    let answer = LeaseAnswer::Refused(signed);
    let bytes = crate::codec::encode(&answer, 4096).unwrap();
    let back: LeaseAnswer = crate::codec::decode(&bytes, 4096).unwrap();
    assert_eq!(back, answer);
}

fn op(op: Op) -> LeaseOp {
    LeaseOp {
        agent: id(AGENT),
        provider: id(PROVIDER),
        lease: Digest::of(b"lease"),
        op,
        nonce: [3; NONCE_LEN],
        issued_at: t(20),
        delegation: None,
    }
}

#[test]
fn operations_are_validated() {
    let exec = op(Op::Exec {
        command: vec!["sh".into(), "-c".into(), "ls".into()],
        stdin: false,
        tty: false,
    });
    let signed = Signed::sign(exec, &key(AGENT)).unwrap();
    assert_eq!(signed.body().op.kind(), OpKind::Exec);
    for bad in [
        Op::Exec {
            command: vec![],
            stdin: false,
            tty: false,
        },
        Op::Exec {
            command: vec!["a\0b".into()],
            stdin: false,
            tty: false,
        },
        Op::GetFiles {
            path: "relative".into(),
        },
        Op::PutFiles {
            path: "/x".repeat(600),
        },
    ] {
        assert!(
            Signed::sign(op(bad.clone()), &key(AGENT)).is_err(),
            "{bad:?}"
        );
    }
    assert!(Signed::sign(op(Op::Stop), &key(GATEWAY)).is_err());
}

#[test]
fn receipts_are_ordered_in_time() {
    let mut r = UsageReceipt {
        lease: Digest::of(b"lease"),
        agent: id(AGENT),
        provider: id(PROVIDER),
        seq: 0,
        from: t(0),
        to: t(60),
        cpu_ms: 1200,
        memory_mib_secs: 600,
        egress_bytes: 0,
        tunnel_in_bytes: 0,
        tunnel_out_bytes: 0,
        price_per_sec: 10,
        total_micro: 600,
        ended: Some(TerminationReason::Exited { code: 0 }),
    };
    assert!(Signed::sign(r.clone(), &key(PROVIDER)).is_ok());
    r.to = t(0);
    r.from = t(1);
    assert!(Signed::sign(r, &key(PROVIDER)).is_err());
}

fn receipt_ack(delegation: Option<Signed<Delegation>>, acked_at: Timestamp) -> ReceiptAck {
    ReceiptAck {
        agent: id(AGENT),
        receipt: Digest::of(b"receipt"),
        acked_at,
        delegation,
    }
}

#[test]
fn an_acknowledgement_is_the_agents_or_a_delegates_that_may_stop() {
    // The agent's own, round trip.
    let own = Signed::sign(receipt_ack(None, t(61)), &key(AGENT)).unwrap();
    let back = Signed::<ReceiptAck>::decode(own.as_bytes(), &Ed25519).unwrap();
    assert_eq!(back, own);
    // Nobody else signs for the agent without a delegation.
    assert!(Signed::sign(receipt_ack(None, t(61)), &key(GATEWAY)).is_err());
    // A delegate allowed to stop, within the delegation's time: accepted, signed by it.
    let stop = receipt_ack(Some(delegation(vec![OpKind::Stop])), t(61));
    let signed = Signed::sign(stop.clone(), &key(GATEWAY)).unwrap();
    assert!(Signed::<ReceiptAck>::decode(signed.as_bytes(), &Ed25519).is_ok());
    assert!(
        Signed::sign(stop, &key(AGENT)).is_err(),
        "the agent is not the delegate"
    );
    // Not allowed to stop, or signed outside the delegation's time: refused on decode too.
    for bad in [
        receipt_ack(Some(delegation(vec![OpKind::Status])), t(61)),
        receipt_ack(Some(delegation(vec![OpKind::Stop])), t(3600)),
    ] {
        assert!(Signed::sign(bad, &key(GATEWAY)).is_err());
    }
    // Another agent's delegation.
    let mut foreign = receipt_ack(Some(delegation(vec![OpKind::Stop])), t(61));
    foreign.agent = id(9);
    assert!(Signed::sign(foreign, &key(GATEWAY)).is_err());
    // Bounded: the largest fits its kind's bound.
    let largest = Signed::sign(
        receipt_ack(Some(delegation(OpKindAll::ops())), t(61)),
        &key(GATEWAY),
    )
    .unwrap();
    assert!(largest.as_bytes().len() <= Signed::<ReceiptAck>::MAX_WIRE_BYTES);
}

/// Eight kinds of operation (a delegation's most).
struct OpKindAll;

impl OpKindAll {
    fn ops() -> Vec<OpKind> {
        vec![
            OpKind::Lease,
            OpKind::Exec,
            OpKind::Logs,
            OpKind::Files,
            OpKind::Extend,
            OpKind::Stop,
            OpKind::Status,
            OpKind::Tunnel,
        ]
    }
}

#[test]
fn an_acknowledge_operation_carries_its_own_agents_acknowledgement() {
    let ack = Signed::sign(receipt_ack(None, t(61)), &key(AGENT)).unwrap();
    let signed = Signed::sign(op(Op::Acknowledge { ack: ack.clone() }), &key(AGENT)).unwrap();
    assert_eq!(signed.body().op.kind(), OpKind::Stop);
    let back = Signed::<LeaseOp>::decode(signed.as_bytes(), &Ed25519).unwrap();
    assert_eq!(back, signed);
    // Another agent's acknowledgement inside the agent's operation.
    let mut other = receipt_ack(None, t(61));
    other.agent = id(9);
    let other = Signed::sign(other, &key(9)).unwrap();
    assert!(Signed::sign(op(Op::Acknowledge { ack: other }), &key(AGENT)).is_err());
    // A tampered nested acknowledgement does not decode.
    let mut bytes = signed.as_bytes().to_vec();
    let at = bytes
        .windows(ack.as_bytes().len())
        .position(|w| w == ack.as_bytes())
        .unwrap();
    let last = at + ack.as_bytes().len() - 1;
    bytes[last] ^= 1;
    assert!(Signed::<LeaseOp>::decode(&bytes, &Ed25519).is_err());
}
