//! Seed generator: writes validly signed messages (fixed keys `[n; 32]`) into each target's
//! corpus directory, so the fuzzer starts past the signature check it could never forge.
//!
//! `cargo run --example seeds [CORPUS_DIR [TARGET...]]` (default: this crate's `corpus/`,
//! every target). Every seed is checked with the target's own check first and must be
//! accepted; only the named targets' seeds are written. Files are named
//! `seed-<what>`; re-running overwrites them, and `cargo fuzz cmin` later renames the
//! survivors to their SHA-1.

use std::collections::BTreeMap;
use std::error::Error;
use std::path::{Path, PathBuf};

use agora_fuzz::{TARGETS, Verdict};
use agora_protocol::frames::{self, MAX_CHUNK_BYTES, StreamFrame};
use agora_protocol::gossip::{GossipMessage, SyncRequest, SyncResponse};
use agora_protocol::lease::{
    Approval, Candidate, Capability, Delegation, LeaseAnswer, LeaseGrant, LeaseOp, LeaseProposal,
    LeaseRefusal, LeaseRequest, NONCE_LEN, Op, OpKind, Refusal, RefusalCode, UsageReceipt,
};
use agora_protocol::ledger::{Entry, Equivocation, Fact, MAX_PARENTS, Rating, ReceiptAck, Usage};
use agora_protocol::offer::{
    Capacity, Gpu, ImageRef, Isolation, NetworkPolicy, Prices, RuntimeOffer,
};
use agora_protocol::read_proof::ReadProof;
use agora_protocol::service::sync::{ServiceSyncRequest, ServiceSyncResponse};
use agora_protocol::service::{
    GRANT_ID_LEN, GrantId, ServiceGossip, ServiceGrant, ServiceKey, ServiceKind, ServiceRecord,
    ServiceWithdrawal,
};
use agora_protocol::signup::{MAX_POW_BITS, ProofOfWork, SignupRecord};
use agora_protocol::sync::Held;
use agora_protocol::tunnel::Header;
use agora_protocol::workload::{
    ImageSource, MAX_PORTS, NetworkRequest, PortSpec, TerminationReason, Transport, WorkloadSpec,
};
use agora_protocol::{
    AgoraId, Attestation, Challenge, ChallengeResponse, Claims, Credential, Digest, Offer,
    OfferWithdrawal, Revocation, Signed, Signer, Timestamp, codec,
};
use ed25519_dalek::SigningKey;

type Res<T> = Result<T, Box<dyn Error>>;

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn id(n: u8) -> AgoraId {
    key(n).id()
}

fn claims(variant: u8) -> Claims {
    match variant {
        // Minimal: every optional field empty.
        0 => Claims {
            organisation: None,
            tier: "a".into(),
            spending_limit_credits: 0,
            owner: None,
            may_delegate: false,
            model: None,
            labels: BTreeMap::new(),
        },
        // Typical.
        1 => Claims {
            organisation: Some("Acme".into()),
            tier: "standard".into(),
            spending_limit_credits: 1000,
            owner: Some(id(9)),
            may_delegate: true,
            model: Some("gpt-x".into()),
            labels: BTreeMap::from([("team".into(), "infra".into())]),
        },
        // Every bound at its limit.
        _ => Claims {
            organisation: Some("O".repeat(128)),
            tier: "t".repeat(32),
            spending_limit_credits: u64::MAX,
            owner: Some(id(10)),
            may_delegate: true,
            model: Some("é".repeat(64)),
            labels: (0..32)
                .map(|i| (format!("k{i:02}-{}", "x".repeat(20)), "v".repeat(40)))
                .collect(),
        },
    }
}

fn attestation(issuer: u8, subject: u8, variant: u8) -> Attestation {
    let (issued, nb, exp) = match variant {
        0 => (0, 0, 1),
        1 => (1_700_000_000_000, 1_700_000_000_000, 1_800_000_000_000),
        _ => (u64::MAX - 1, 5, u64::MAX),
    };
    Attestation {
        issuer: id(issuer),
        subject: id(subject),
        claims: claims(variant),
        issued_at: Timestamp::from_unix_millis(issued),
        not_before: Timestamp::from_unix_millis(nb),
        expires_at: Timestamp::from_unix_millis(exp),
        nonce: [issuer ^ subject ^ variant; 16],
    }
}

fn signed_att(issuer: u8, subject: u8, variant: u8) -> Res<Signed<Attestation>> {
    Ok(Signed::sign(
        attestation(issuer, subject, variant),
        &key(issuer),
    )?)
}

fn revocation(issuer: u8, subject: u8, reason: &str, at: u64) -> Res<Signed<Revocation>> {
    let att = signed_att(issuer, subject, 1)?;
    Ok(Signed::sign(
        Revocation {
            issuer: id(issuer),
            subject: id(subject),
            attestation: att.digest(),
            revoked_at: Timestamp::from_unix_millis(at),
            reason: reason.into(),
        },
        &key(issuer),
    )?)
}

fn response(verifier: u8, subject: u8, at: u64) -> Res<Signed<ChallengeResponse>> {
    Ok(Signed::sign(
        ChallengeResponse {
            challenge: Challenge {
                verifier: id(verifier),
                nonce: [verifier.wrapping_mul(31) ^ subject; 32],
                issued_at: Timestamp::from_unix_millis(at),
            },
            subject: id(subject),
        },
        &key(subject),
    )?)
}

/// A typical offer by key `n`: the protocol's shared sample, [`Offer::example`].
fn offer(n: u8, seq: u64, issued_s: u64) -> Offer {
    Offer::example(id(n), seq, Timestamp::from_unix_secs(issued_s))
}

/// The smallest valid offer: one runtime, nothing else, a 1 ms lifetime.
fn offer_min(n: u8) -> Offer {
    Offer {
        provider: id(n),
        seq: 0,
        issued_at: Timestamp::from_unix_millis(0),
        expires_at: Timestamp::from_unix_millis(1),
        runtimes: vec![RuntimeOffer {
            isolation: Isolation::Microvm,
            images: vec![],
        }],
        capacity: Capacity::default(),
        prices: Prices::default(),
        max_lease_secs: 0,
        network: NetworkPolicy::default(),
        tiers: vec![],
        region: "r".into(),
        labels: BTreeMap::new(),
        tunnel_endpoints: vec![],
    }
}

/// Every count at its bound (3 runtimes × 16 images, 4 GPUs, 64 blocked ports, 8 tiers,
/// 16 labels, 4 endpoints), integers at their maxima and a 15-minute lifetime; strings are
/// kept short enough for the payload to fit its limit.
fn offer_max(n: u8) -> Offer {
    let images = |tag: &str| -> Vec<ImageRef> {
        (0..16)
            .map(|i| {
                let name = format!("{tag}{i:02}");
                ImageRef {
                    digest: Digest::of(name.as_bytes()),
                    name,
                }
            })
            .collect()
    };
    Offer {
        provider: id(n),
        seq: u64::MAX,
        issued_at: Timestamp::from_unix_secs(1_700_000_000),
        expires_at: Timestamp::from_unix_secs(1_700_000_000 + 15 * 60),
        runtimes: vec![
            RuntimeOffer {
                isolation: Isolation::Sandbox,
                images: images("s"),
            },
            RuntimeOffer {
                isolation: Isolation::Docker,
                images: images("d"),
            },
            RuntimeOffer {
                isolation: Isolation::Microvm,
                images: images("m"),
            },
        ],
        capacity: Capacity {
            vcpu_milli: u32::MAX,
            memory_mib: u64::MAX,
            disk_mib: u64::MAX,
            gpus: (0..4)
                .map(|i| Gpu {
                    model: format!("gpu-{i}"),
                    count: u32::MAX,
                })
                .collect(),
        },
        prices: Prices {
            vcpu: u64::MAX,
            memory_gib: u64::MAX,
            disk_gib: u64::MAX,
            gpu: u64::MAX,
        },
        max_lease_secs: u64::MAX,
        network: NetworkPolicy {
            egress: false,
            blocked_ports: (0..64).map(|i| u16::MAX - i).collect(),
        },
        tiers: (0..8).map(|i| format!("t{i}")).collect(),
        region: "r".repeat(32),
        labels: (0..16)
            .map(|i| (format!("k{i:02}"), "v".repeat(72)))
            .collect(),
        tunnel_endpoints: vec![
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535".into(),
            "255.255.255.255:65535".into(),
            "[::1]:1".into(),
            "10.0.0.1:7001".into(),
        ],
    }
}

fn withdrawal(n: u8, seq: u64, at: u64) -> Res<Signed<OfferWithdrawal>> {
    Ok(Signed::sign(
        OfferWithdrawal {
            provider: id(n),
            seq,
            issued_at: Timestamp::from_unix_millis(at),
        },
        &key(n),
    )?)
}

/// A chain root=1 → 2 → 3 → … of `links` links (key n issues to key n+1).
fn chain(links: u8, variant: u8) -> Res<Credential> {
    let mut cred = Credential::single(signed_att(1, 2, variant)?);
    for n in 2..=links {
        cred = cred.delegate(signed_att(n, n + 1, variant)?)?;
    }
    Ok(cred)
}

// Lease seeds: agent 1, provider 2, delegate 3, signup node 4, owner 9 (keys `[n; 32]`).
const AGENT: u8 = 1;
const PROVIDER: u8 = 2;
const DELEGATE: u8 = 3;
const SIGNUP_NODE: u8 = 4;
const OWNER: u8 = 9;
const GRANTEE: u8 = 11;

/// Seconds after 2027-01-15 (1_800_000_000 s), a typical "now".
fn t(secs: u64) -> Timestamp {
    Timestamp::from_unix_secs(1_800_000_000 + secs)
}

/// `agent`'s signup record at the signup node's challenge, signed by the agent.
fn signup(
    agent: u8,
    credential: Option<Credential>,
    pow: ProofOfWork,
    name: Option<String>,
) -> Res<Signed<SignupRecord>> {
    let record = SignupRecord {
        agent: id(agent),
        challenge: Challenge {
            verifier: id(SIGNUP_NODE),
            nonce: [agent ^ 0x5a; 32],
            issued_at: t(0),
        },
        credential,
        pow,
        name,
    };
    Ok(Signed::sign(record, &key(agent))?)
}

/// The smallest signup: no credential, no proof of work, no name, challenge at time 0.
fn signup_min(agent: u8) -> Res<Signed<SignupRecord>> {
    let record = SignupRecord {
        agent: id(agent),
        challenge: Challenge {
            verifier: id(SIGNUP_NODE),
            nonce: [0; 32],
            issued_at: Timestamp::from_unix_millis(0),
        },
        credential: None,
        pow: ProofOfWork::NONE,
        name: None,
    };
    Ok(Signed::sign(record, &key(agent))?)
}

/// A delegation by `agent` to `delegate` for `ops`, valid for an hour.
fn delegation(agent: u8, delegate: u8, ops: Vec<OpKind>) -> Res<Signed<Delegation>> {
    Ok(Signed::sign(
        Delegation {
            agent: id(agent),
            delegate: id(delegate),
            ops,
            spend_cap_credits: 5,
            issued_at: t(0),
            expires_at: t(3600),
        },
        &key(agent),
    )?)
}

const ALL_OPS: [OpKind; 8] = [
    OpKind::Lease,
    OpKind::Exec,
    OpKind::Logs,
    OpKind::Files,
    OpKind::Extend,
    OpKind::Stop,
    OpKind::Status,
    OpKind::Tunnel,
];

/// A typical request by `agent` for the provider's [`Offer::example`], running
/// [`WorkloadSpec::example`].
fn lease_request(
    agent: u8,
    signup: Signed<SignupRecord>,
    delegation: Option<Signed<Delegation>>,
) -> Res<LeaseRequest> {
    let offer = Signed::sign(offer(PROVIDER, 1, 1_800_000_000), &key(PROVIDER))?;
    Ok(LeaseRequest {
        agent: id(agent),
        candidates: vec![Candidate {
            provider: id(PROVIDER),
            offer: offer.digest(),
        }],
        isolation: agora_protocol::Isolation::Sandbox,
        spec: WorkloadSpec::example(Digest::of(b"busybox"), &["echo", "hi"]),
        max_price_per_sec: 20,
        nonce: [agent; NONCE_LEN],
        issued_at: t(10),
        signup,
        delegation,
    })
}

/// Signs `req` as its author: the delegate when it carries a delegation, else the agent.
fn sign_request(req: LeaseRequest, agent: u8) -> Res<Signed<LeaseRequest>> {
    let signer = if req.delegation.is_some() {
        DELEGATE
    } else {
        agent
    };
    Ok(Signed::sign(req, &key(signer))?)
}

/// Every bound at its limit or close: eight candidates, a tarball image with environment,
/// working directory, 16 ports and egress, a delegation, extreme numbers, and a signup with
/// an 8-link credential of maximal claims.
fn lease_request_max() -> Res<Signed<LeaseRequest>> {
    let holder = 9; // chain(8, _) ends at key 9
    let cred = chain(8, 2)?;
    let signup = signup(
        holder,
        Some(cred),
        ProofOfWork {
            bits: MAX_POW_BITS,
            nonce: u64::MAX,
        },
        Some("é".repeat(32)),
    )?;
    let mut spec = WorkloadSpec::example(Digest::of(b"rootfs"), &["/bin/app", "--serve"]);
    spec.image = ImageSource::Tarball {
        digest: Digest::of(b"rootfs.tar"),
        size_bytes: u64::MAX,
    };
    spec.env = (0..16)
        .map(|i| (format!("VAR_{i:02}"), "v".repeat(64)))
        .collect();
    spec.workdir = Some("/srv/app".into());
    spec.resources.vcpu_milli = u32::MAX;
    spec.resources.memory_mib = u64::MAX;
    spec.resources.disk_mib = u64::MAX;
    spec.resources.pids = u32::MAX;
    spec.lifetime_secs = u64::MAX;
    spec.ports = (0..MAX_PORTS)
        .map(|i| PortSpec {
            port: u16::MAX - u16::try_from(i).unwrap_or(0),
            transport: if i % 2 == 0 {
                Transport::Tcp
            } else {
                Transport::Udp
            },
        })
        .collect();
    spec.network = NetworkRequest {
        enabled: true,
        egress: true,
    };
    let req = LeaseRequest {
        agent: id(holder),
        candidates: (20..28)
            .map(|n| Candidate {
                provider: id(n),
                offer: Digest::of(&[n]),
            })
            .collect(),
        isolation: agora_protocol::Isolation::Microvm,
        spec,
        max_price_per_sec: u64::MAX,
        nonce: [0xff; NONCE_LEN],
        issued_at: Timestamp::from_unix_millis(u64::MAX),
        signup,
        delegation: Some(delegation(holder, DELEGATE, ALL_OPS.to_vec())?),
    };
    sign_request(req, holder)
}

fn lease_op(op: Op, delegation: Option<Signed<Delegation>>) -> Res<Signed<LeaseOp>> {
    let signer = if delegation.is_some() {
        DELEGATE
    } else {
        AGENT
    };
    Ok(Signed::sign(
        LeaseOp {
            agent: id(AGENT),
            provider: id(PROVIDER),
            lease: Digest::of(b"lease"),
            op,
            nonce: [3; NONCE_LEN],
            issued_at: t(20),
            delegation,
        },
        &key(signer),
    )?)
}

fn exec(command: &[&str], stdin: bool, tty: bool) -> Op {
    Op::Exec {
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        stdin,
        tty,
    }
}

fn capability(lease: Digest, ports: Vec<u16>, expires: Timestamp) -> Res<Signed<Capability>> {
    Ok(Signed::sign(
        Capability {
            lease,
            agent: id(AGENT),
            provider: id(PROVIDER),
            ports,
            expires_at: expires,
        },
        &key(PROVIDER),
    )?)
}

fn grant(lease: Digest) -> Res<Signed<LeaseGrant>> {
    Ok(Signed::sign(
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
            token: capability(lease, vec![8080], t(3600))?,
        },
        &key(PROVIDER),
    )?)
}

fn refusal(
    request: Digest,
    code: RefusalCode,
    detail: &str,
    at: Timestamp,
) -> Res<Signed<LeaseRefusal>> {
    Ok(Signed::sign(
        LeaseRefusal {
            request,
            agent: id(AGENT),
            provider: id(PROVIDER),
            refusal: Refusal::new(code, detail),
            at,
        },
        &key(PROVIDER),
    )?)
}

fn receipt(seq: u32, ended: Option<TerminationReason>) -> UsageReceipt {
    UsageReceipt {
        lease: Digest::of(b"lease"),
        agent: id(AGENT),
        provider: id(PROVIDER),
        seq,
        from: t(0),
        to: t(60),
        cpu_ms: 1200,
        memory_mib_secs: 600,
        egress_bytes: 4096,
        tunnel_in_bytes: 512,
        tunnel_out_bytes: 2048,
        price_per_sec: 10,
        total_micro: 600,
        ended,
    }
}

/// A `stream_frames` input: `splits` as the piece lengths (each byte plus one; none: one
/// byte at a time), then the opening frame and `frames`.
fn stream(splits: &[u8], open: &[u8], frames_: &[StreamFrame]) -> Res<Vec<u8>> {
    let mut out = vec![u8::try_from(splits.len())?];
    out.extend_from_slice(splits);
    frames::encode_open(open, &mut out)?;
    for f in frames_ {
        frames::encode(f, &mut out)?;
    }
    Ok(out)
}

fn lease_seeds(w: &mut Writer) -> Res<()> {
    // Signup records.
    let min = signup_min(AGENT)?;
    w.put("signed_signup_record", "min", min.as_bytes())?;
    let pow = ProofOfWork::solve(
        &id(AGENT),
        &Challenge {
            verifier: id(SIGNUP_NODE),
            nonce: [AGENT ^ 0x5a; 32],
            issued_at: t(0),
        },
        8,
    );
    let named = signup(AGENT, None, pow, Some("agent-1".into()))?;
    w.put("signed_signup_record", "pow8-named", named.as_bytes())?;
    let cred1 = signup(2, Some(chain(1, 1)?), ProofOfWork::NONE, None)?;
    w.put("signed_signup_record", "credential-len1", cred1.as_bytes())?;
    let cred3 = signup(4, Some(chain(3, 0)?), ProofOfWork::NONE, Some("a".into()))?;
    w.put("signed_signup_record", "credential-len3", cred3.as_bytes())?;
    let max = signup(
        9,
        Some(chain(8, 2)?),
        ProofOfWork {
            bits: MAX_POW_BITS,
            nonce: u64::MAX,
        },
        Some("é".repeat(32)),
    )?;
    eprintln!("signed_signup_record/max: {} bytes", max.as_bytes().len());
    w.put("signed_signup_record", "max", max.as_bytes())?;

    // Delegations.
    let d_exec = delegation(AGENT, DELEGATE, vec![OpKind::Exec])?;
    w.put("signed_delegation", "exec", d_exec.as_bytes())?;
    let d_all = delegation(AGENT, DELEGATE, ALL_OPS.to_vec())?;
    w.put("signed_delegation", "all-ops", d_all.as_bytes())?;
    for (name, issued, expires, cap) in
        [("min", 0, 1, 0), ("max", u64::MAX - 1, u64::MAX, u64::MAX)]
    {
        let d = Signed::sign(
            Delegation {
                agent: id(5),
                delegate: id(6),
                ops: vec![OpKind::Tunnel],
                spend_cap_credits: cap,
                issued_at: Timestamp::from_unix_millis(issued),
                expires_at: Timestamp::from_unix_millis(expires),
            },
            &key(5),
        )?;
        w.put("signed_delegation", name, d.as_bytes())?;
    }

    // Lease requests, and proposals carrying them.
    let typical = sign_request(lease_request(AGENT, signup_min(AGENT)?, None)?, AGENT)?;
    w.put("signed_lease_request", "typical", typical.as_bytes())?;
    let delegated = sign_request(
        lease_request(
            AGENT,
            named.clone(),
            Some(delegation(
                AGENT,
                DELEGATE,
                vec![OpKind::Lease, OpKind::Exec],
            )?),
        )?,
        AGENT,
    )?;
    w.put("signed_lease_request", "delegated", delegated.as_bytes())?;
    let credentialed = sign_request(lease_request(2, cred1.clone(), None)?, 2)?;
    w.put(
        "signed_lease_request",
        "credential",
        credentialed.as_bytes(),
    )?;
    let mut small = lease_request(AGENT, min.clone(), None)?;
    small.spec = WorkloadSpec::example(Digest::of(b""), &[]);
    small.max_price_per_sec = 0;
    small.nonce = [0; NONCE_LEN];
    small.issued_at = Timestamp::from_unix_millis(0);
    let small = sign_request(small, AGENT)?;
    w.put("signed_lease_request", "min", small.as_bytes())?;
    let big = lease_request_max()?;
    eprintln!("signed_lease_request/max: {} bytes", big.as_bytes().len());
    w.put("signed_lease_request", "max", big.as_bytes())?;

    let approval = |req: &Signed<LeaseRequest>, max_cost: u64| -> Res<Signed<Approval>> {
        Ok(Signed::sign(
            Approval {
                owner: id(OWNER),
                request: req.digest(),
                agent: req.body().agent,
                max_cost_micro: max_cost,
                approved_at: t(11),
            },
            &key(OWNER),
        )?)
    };
    for (name, request, approval) in [
        ("plain", typical.clone(), None),
        (
            "approved",
            typical.clone(),
            Some(approval(&typical, 72_000)?),
        ),
        ("delegated", delegated.clone(), None),
        (
            "credential-approved",
            credentialed.clone(),
            Some(approval(&credentialed, u64::MAX)?),
        ),
        ("max", big.clone(), Some(approval(&big, u64::MAX)?)),
    ] {
        let p = LeaseProposal {
            request,
            approval,
            lock: None,
        };
        let bytes = codec::encode(&p, agora_fuzz::LEASE_PROPOSAL_MAX_BYTES)?;
        w.put("lease_proposal", name, &bytes)?;
    }

    // Lease answers.
    let lease = typical.digest();
    let max_grant = Signed::sign(
        LeaseGrant {
            owner: None,
            lease,
            agent: id(AGENT),
            provider: id(PROVIDER),
            price_per_sec: u64::MAX,
            reserved_micro: u64::MAX,
            starts_at: t(0),
            expires_at: Timestamp::from_unix_millis(u64::MAX),
            tunnel_endpoints: (0..8)
                .map(|i| format!("{i}{}:7000", "h".repeat(122)))
                .collect(),
            token: capability(
                lease,
                (0..16).map(|i| u16::MAX - i).collect(),
                Timestamp::from_unix_millis(u64::MAX),
            )?,
        },
        &key(PROVIDER),
    )?;
    let min_grant = Signed::sign(
        LeaseGrant {
            owner: None,
            lease,
            agent: id(AGENT),
            provider: id(PROVIDER),
            price_per_sec: 0,
            reserved_micro: 0,
            starts_at: Timestamp::from_unix_millis(0),
            expires_at: Timestamp::from_unix_millis(0),
            tunnel_endpoints: vec![],
            token: capability(lease, vec![], Timestamp::from_unix_millis(0))?,
        },
        &key(PROVIDER),
    )?;
    for (name, answer) in [
        ("granted", LeaseAnswer::Granted(grant(lease)?)),
        ("granted-max", LeaseAnswer::Granted(max_grant)),
        ("granted-min", LeaseAnswer::Granted(min_grant)),
        (
            "refused-approval",
            LeaseAnswer::Refused(refusal(
                lease,
                RefusalCode::ApprovalRequired,
                &"é".repeat(256),
                t(1),
            )?),
        ),
        (
            "refused-capacity",
            LeaseAnswer::Refused(refusal(
                lease,
                RefusalCode::Capacity,
                "",
                Timestamp::from_unix_millis(0),
            )?),
        ),
        (
            "refused-rate",
            LeaseAnswer::Refused(refusal(lease, RefusalCode::RateLimited, "slow down", t(2))?),
        ),
    ] {
        let bytes = codec::encode(&answer, agora_fuzz::LEASE_ANSWER_MAX_BYTES)?;
        w.put("lease_answer", name, &bytes)?;
    }

    // Lease operations: every variant, and two by a delegate.
    let long_arg = "a".repeat(64);
    let max_command: Vec<&str> = (0..64).map(|_| long_arg.as_str()).collect();
    let ops = [
        ("exec", exec(&["sh", "-c", "ls"], false, false), None),
        ("exec-stdin-tty", exec(&["sh"], true, true), None),
        ("exec-max", exec(&max_command, true, false), None),
        ("logs", Op::Logs { follow: false }, None),
        ("logs-follow", Op::Logs { follow: true }, None),
        (
            "put-files",
            Op::PutFiles {
                path: "/tmp".into(),
            },
            None,
        ),
        (
            "get-files-max",
            Op::GetFiles {
                path: format!("/{}", "x".repeat(1023)),
            },
            None,
        ),
        ("extend", Op::Extend { secs: 3600 }, None),
        ("extend-max", Op::Extend { secs: u64::MAX }, None),
        ("stop", Op::Stop, None),
        ("status", Op::Status, None),
        (
            "acknowledge",
            Op::Acknowledge {
                ack: Signed::sign(
                    ReceiptAck {
                        agent: id(AGENT),
                        receipt: Digest::of(b"final receipt"),
                        acked_at: t(61),
                        delegation: None,
                    },
                    &key(AGENT),
                )?,
            },
            None,
        ),
        (
            "exec-delegated",
            exec(&["id"], false, false),
            Some(d_exec.clone()),
        ),
        ("stop-delegated", Op::Stop, Some(d_all.clone())),
    ];
    let mut signed_ops = BTreeMap::new();
    for (name, op, d) in ops {
        let signed = lease_op(op, d)?;
        w.put("signed_lease_op", name, signed.as_bytes())?;
        signed_ops.insert(name, signed);
    }

    // Usage receipts: every termination reason, and none yet.
    let reasons = [
        ("running", None),
        ("exited", Some(TerminationReason::Exited { code: 0 })),
        (
            "exited-neg",
            Some(TerminationReason::Exited { code: i32::MIN }),
        ),
        ("oom", Some(TerminationReason::OomKilled)),
        ("lifetime", Some(TerminationReason::LifetimeExpired)),
        ("idle", Some(TerminationReason::IdleTimeout)),
        ("stopped", Some(TerminationReason::StoppedByAgent)),
        ("shutdown", Some(TerminationReason::ProviderShutdown)),
        (
            "policy-max",
            Some(TerminationReason::PolicyViolation {
                detail: "p".repeat(512),
            }),
        ),
        (
            "runtime-error",
            Some(TerminationReason::RuntimeError {
                detail: "image missing".into(),
            }),
        ),
    ];
    for (i, (name, ended)) in reasons.into_iter().enumerate() {
        let r = receipt(u32::try_from(i)?, ended);
        w.put(
            "signed_usage_receipt",
            name,
            Signed::sign(r, &key(PROVIDER))?.as_bytes(),
        )?;
    }
    let mut extreme = receipt(u32::MAX, None);
    extreme.from = Timestamp::from_unix_millis(u64::MAX);
    extreme.to = Timestamp::from_unix_millis(u64::MAX);
    extreme.cpu_ms = u64::MAX;
    extreme.memory_mib_secs = u64::MAX;
    extreme.egress_bytes = u64::MAX;
    extreme.tunnel_in_bytes = u64::MAX;
    extreme.tunnel_out_bytes = u64::MAX;
    extreme.price_per_sec = u64::MAX;
    extreme.total_micro = u64::MAX;
    w.put(
        "signed_usage_receipt",
        "max",
        Signed::sign(extreme, &key(PROVIDER))?.as_bytes(),
    )?;

    // Operation streams: an opening signed operation, then frames, fed in various pieces.
    let op_bytes = |name: &str| -> Res<Vec<u8>> {
        Ok(signed_ops
            .get(name)
            .ok_or_else(|| format!("no op {name}"))?
            .as_bytes()
            .to_vec())
    };
    let exec_frames = [
        StreamFrame::Accepted,
        StreamFrame::Stdin(b"ls\n".to_vec()),
        StreamFrame::StdinClosed,
        StreamFrame::Stdout(b"bin\netc\n".to_vec()),
        StreamFrame::Stderr(vec![]),
        StreamFrame::Exit(0),
    ];
    let exec_op = op_bytes("exec-stdin-tty")?;
    w.put(
        "stream_frames",
        "exec-bytewise",
        &stream(&[], &exec_op, &exec_frames)?,
    )?;
    w.put(
        "stream_frames",
        "exec-pieces",
        &stream(&[0, 4, 255], &exec_op, &exec_frames)?,
    )?;
    w.put(
        "stream_frames",
        "refused",
        &stream(
            &[3],
            &op_bytes("stop")?,
            &[StreamFrame::Refused(Refusal::new(
                RefusalCode::Replay,
                "seen",
            ))],
        )?,
    )?;
    w.put(
        "stream_frames",
        "files-max-chunk",
        &stream(
            &[99, 7],
            &op_bytes("put-files")?,
            &[
                StreamFrame::Accepted,
                StreamFrame::Data(b"tar".to_vec()),
                StreamFrame::Data(vec![0x5a; MAX_CHUNK_BYTES]),
                StreamFrame::End,
            ],
        )?,
    )?;
    w.put(
        "stream_frames",
        "logs-failed",
        &stream(
            &[],
            &op_bytes("logs-follow")?,
            &[
                StreamFrame::Accepted,
                StreamFrame::Stdout(b"hello\n".to_vec()),
                StreamFrame::Failed(Refusal::new(RefusalCode::Ended, "gone")),
            ],
        )?,
    )?;
    w.put(
        "stream_frames",
        "open-only",
        &stream(&[1, 2, 3, 4, 5, 6, 7, 8], &op_bytes("exec-delegated")?, &[])?,
    )?;
    w.put(
        "stream_frames",
        "open-max",
        &stream(
            &[255, 31],
            &op_bytes("exec-max")?,
            &[StreamFrame::Accepted, StreamFrame::Exit(i32::MIN)],
        )?,
    )?;
    w.put(
        "stream_frames",
        "open-raw",
        &stream(&[0], b"not a signed op", &[StreamFrame::Exit(-1)])?,
    )?;
    w.put(
        "stream_frames",
        "open-empty",
        &stream(&[], b"", &[StreamFrame::End])?,
    )?;
    Ok(())
}

/// An owner's grant for `ports` of `lease` to `GRANTEE`.
fn service_grant(lease: Digest, ports: Vec<u16>) -> Res<Signed<ServiceGrant>> {
    Ok(Signed::sign(
        ServiceGrant {
            owner: id(AGENT),
            lease,
            provider: id(PROVIDER),
            grantee: id(GRANTEE),
            ports,
            id: GrantId([0x5a; GRANT_ID_LEN]),
            issued_at: t(10),
            expires_at: t(3000),
        },
        &key(AGENT),
    )?)
}

/// The agent's record of `port` of `lease` (capability for `ports`).
fn service_record(lease: Digest, ports: Vec<u16>, port: u16, max: bool) -> Res<ServiceRecord> {
    Ok(ServiceRecord {
        owner: id(AGENT),
        lease,
        provider: id(PROVIDER),
        port,
        name: if max {
            "n".repeat(64)
        } else {
            "weather".into()
        },
        kind: if max {
            ServiceKind::Tcp
        } else {
            ServiceKind::Mcp
        },
        description: if max {
            "d".repeat(280)
        } else {
            "forecasts by city".into()
        },
        tunnel_endpoints: if max {
            vec!["e".repeat(128); 8]
        } else {
            vec!["127.0.0.1:7000".into()]
        },
        capability: capability(lease, ports, t(3600))?,
        seq: if max { u64::MAX } else { 1_700_000_000_000 },
        issued_at: t(100),
        expires_at: t(3600),
    })
}

/// Tunnel headers (with and without a grant), service gossip and grants.
fn service_seeds(w: &mut Writer) -> Res<()> {
    let lease = Digest::of(b"lease");
    let all_ports: Vec<u16> = (1..=u16::try_from(MAX_PORTS)?).map(|p| 8000 + p).collect();
    let cap = capability(lease, vec![8080], t(3600))?;
    let cap_max = capability(lease, all_ports.clone(), t(3600))?;
    let g = service_grant(lease, vec![8080])?;
    let g_max = service_grant(lease, all_ports.clone())?;
    w.put("signed_service_grant", "typical", g.as_bytes())?;
    w.put("signed_service_grant", "max-ports", g_max.as_bytes())?;

    let body = |h: Header| -> Res<Vec<u8>> { Ok(h.encode()?.split_off(2)) };
    w.put(
        "tunnel_header",
        "agent",
        &body(Header::new(8080, cap.as_bytes().to_vec()))?,
    )?;
    w.put(
        "tunnel_header",
        "empty-token",
        &body(Header::new(0, Vec::new()))?,
    )?;
    let granted = |token: &Signed<Capability>, grant: &[u8]| Header {
        grant: Some(grant.to_vec()),
        ..Header::new(8080, token.as_bytes().to_vec())
    };
    w.put(
        "tunnel_header",
        "grantee",
        &body(granted(&cap, g.as_bytes()))?,
    )?;
    w.put(
        "tunnel_header",
        "grantee-max",
        &body(granted(&cap_max, g_max.as_bytes()))?,
    )?;
    w.put(
        "tunnel_header",
        "grant-garbage",
        &body(granted(&cap, &[7]))?,
    )?;

    let typical = Signed::sign(service_record(lease, vec![8080], 8080, false)?, &key(AGENT))?;
    let max = Signed::sign(
        service_record(lease, all_ports.clone(), 8016, true)?,
        &key(AGENT),
    )?;
    w.put(
        "service_gossip",
        "record",
        &ServiceGossip::Record(typical).encode(),
    )?;
    w.put(
        "service_gossip",
        "record-max",
        &ServiceGossip::Record(max).encode(),
    )?;
    let withdrawal = Signed::sign(
        ServiceWithdrawal {
            owner: id(AGENT),
            lease,
            port: 8080,
            seq: 7,
            issued_at: t(200),
        },
        &key(AGENT),
    )?;
    w.put(
        "service_gossip",
        "withdrawal",
        &ServiceGossip::Withdrawal(withdrawal.clone()).encode(),
    )?;

    // Services sync: a page with a typical and a maximal record and a withdrawal, an empty
    // one, and requests from the start and after the largest key.
    let typical = Signed::sign(service_record(lease, vec![8080], 8080, false)?, &key(AGENT))?;
    let max = Signed::sign(
        service_record(lease, all_ports.clone(), 8016, true)?,
        &key(AGENT),
    )?;
    let page = ServiceSyncResponse {
        entries: vec![typical.as_bytes().to_vec(), max.as_bytes().to_vec()],
        withdrawals: vec![withdrawal.as_bytes().to_vec()],
        next: Some(max.body().key()),
    };
    w.put("service_sync_response", "page", &page.encode()?)?;
    let empty = ServiceSyncResponse {
        entries: Vec::new(),
        withdrawals: Vec::new(),
        next: None,
    };
    w.put("service_sync_response", "empty", &empty.encode()?)?;
    let first = ServiceSyncRequest::first(Digest::of(b"directory"));
    w.put("service_sync_request", "first", &first.encode()?)?;
    let last = ServiceSyncRequest {
        after: Some(ServiceKey {
            owner: id(AGENT),
            lease: Digest([0xff; 32]),
            port: u16::MAX,
        }),
        limit: u16::MAX,
        digest: Some(Digest([0xff; 32])),
        held: Vec::new(),
        held_all: true,
    };
    w.put("service_sync_request", "after-max", &last.encode()?)?;
    Ok(())
}

/// Read proofs: the agent's own, a delegate's, and one with every field at its bound.
fn read_proof_seeds(w: &mut Writer) -> Res<()> {
    let own = Signed::sign(
        ReadProof::new(id(AGENT), id(PROVIDER), t(30), None),
        &key(AGENT),
    )?;
    w.put("signed_read_proof", "agent", own.as_bytes())?;
    let epoch = Signed::sign(
        ReadProof::new(id(AGENT), id(AGENT), Timestamp::EPOCH, None),
        &key(AGENT),
    )?;
    w.put("signed_read_proof", "epoch-self", epoch.as_bytes())?;
    let status = delegation(AGENT, DELEGATE, vec![OpKind::Status])?;
    let delegated = Signed::sign(
        ReadProof::new(id(AGENT), id(PROVIDER), t(40), Some(status)),
        &key(DELEGATE),
    )?;
    w.put("signed_read_proof", "delegated", delegated.as_bytes())?;
    let widest = Signed::sign(
        Delegation {
            agent: id(AGENT),
            delegate: id(DELEGATE),
            ops: ALL_OPS.to_vec(),
            spend_cap_credits: u64::MAX,
            issued_at: Timestamp::from_unix_millis(u64::MAX - 1),
            expires_at: Timestamp::MAX,
        },
        &key(AGENT),
    )?;
    let max = Signed::sign(
        ReadProof::new(id(AGENT), id(PROVIDER), Timestamp::MAX, Some(widest)),
        &key(DELEGATE),
    )?;
    eprintln!("signed_read_proof/max: {} bytes", max.as_bytes().len());
    w.put("signed_read_proof", "max", max.as_bytes())?;
    Ok(())
}

/// A rating by the agent of the provider, distinct per `n`.
fn ledger_rating(n: u8) -> Res<Fact> {
    let rating = Rating {
        rater: id(AGENT),
        provider: id(PROVIDER),
        lease: Digest::of(&[n]),
        score: n % 101,
        rated_at: t(u64::from(n)),
    };
    Ok(Fact::Rating(Signed::sign(rating, &key(AGENT))?))
}

/// An entry by node `node` after its genesis `prev` (or at its largest: seq, time and
/// [`MAX_PARENTS`] parents).
fn ledger_entry(node: u8, prev: Digest, max: bool, fact: Fact) -> Res<Signed<Entry>> {
    let mut parents: Vec<Digest> = (0..MAX_PARENTS)
        .map(|i| Digest::of(&i.to_be_bytes()))
        .collect();
    parents.sort();
    let entry = Entry {
        author: id(node),
        seq: if max { u64::MAX } else { 1 },
        prev: Some(prev),
        parents: if max {
            parents
        } else {
            parents.into_iter().take(1).collect()
        },
        at: if max { Timestamp::MAX } else { t(60) },
        fact,
    };
    Ok(Signed::sign(entry, &key(node))?)
}

/// Evidence-log entries: a genesis, every kind of fact, entries at every bound, and
/// equivocation proofs (of two small entries, and of two of the largest plain entries).
fn ledger_seeds(w: &mut Writer) -> Res<()> {
    const NODE: u8 = 20;
    let genesis = Signed::sign(
        Entry {
            author: id(NODE),
            seq: 0,
            prev: None,
            parents: Vec::new(),
            at: t(0),
            fact: ledger_rating(0)?,
        },
        &key(NODE),
    )?;
    w.put("signed_ledger_entry", "genesis", genesis.as_bytes())?;
    let prev = genesis.digest();

    let receipt = Signed::sign(
        receipt(0, Some(TerminationReason::Exited { code: 0 })),
        &key(PROVIDER),
    )?;
    let ack = Signed::sign(
        ReceiptAck {
            agent: id(AGENT),
            receipt: receipt.digest(),
            acked_at: t(61),
            delegation: None,
        },
        &key(AGENT),
    )?;
    let max_signup = |name: &str| {
        signup(
            9,
            Some(chain(8, 2)?),
            ProofOfWork {
                bits: MAX_POW_BITS,
                nonce: u64::MAX,
            },
            Some(name.to_owned()),
        )
    };
    let twin = Signed::sign(
        Entry {
            at: t(1),
            fact: ledger_rating(1)?,
            ..genesis.body().clone()
        },
        &key(NODE),
    )?;
    let small_proof = Equivocation::new(&genesis, &twin)?;
    let facts = [
        ("rating", ledger_rating(7)?),
        ("signup-min", Fact::Signup(signup_min(AGENT)?)),
        ("lease", Fact::Lease(grant(Digest::of(b"lease"))?)),
        (
            "usage",
            Fact::Usage(Usage {
                receipt: receipt.clone(),
                ack: None,
            }),
        ),
        (
            "usage-acked",
            Fact::Usage(Usage {
                receipt,
                ack: Some(ack),
            }),
        ),
        (
            "revocation",
            Fact::Revocation(revocation(1, 2, "key compromised", 5)?),
        ),
        ("equivocation", Fact::Equivocation(small_proof)),
    ];
    for (name, fact) in facts {
        w.put(
            "signed_ledger_entry",
            name,
            ledger_entry(NODE, prev, false, fact)?.as_bytes(),
        )?;
    }

    // The largest plain entries (a full signup record, every bound at its maximum), and a
    // proof of two of them: the proof bound must hold them.
    let big_a = ledger_entry(NODE, prev, true, Fact::Signup(max_signup("a")?))?;
    let big_b = ledger_entry(NODE, prev, true, Fact::Signup(max_signup("b")?))?;
    eprintln!(
        "signed_ledger_entry/signup-max: {} bytes",
        big_a.as_bytes().len()
    );
    w.put("signed_ledger_entry", "signup-max", big_a.as_bytes())?;
    let big_proof = Equivocation::new(&big_a, &big_b)?;
    let carrier = ledger_entry(21, prev, true, Fact::Equivocation(big_proof))?;
    eprintln!(
        "signed_ledger_entry/equivocation-max: {} bytes",
        carrier.as_bytes().len()
    );
    w.put(
        "signed_ledger_entry",
        "equivocation-max",
        carrier.as_bytes(),
    )?;
    Ok(())
}

/// Quota committee certificates and requests, votes signed by the fuzz committee's validators
/// (keys 1..=4, three of them per certificate): one certificate per kind of op, a credit
/// carrying an 8-link credential at the largest seq, and requests with no, one and
/// `MAX_PROOFS` certificates.
fn quota_seeds(w: &mut Writer) -> Res<()> {
    use agora_protocol::committee::{
        Action, ChainOp, FreeTierClaim, LockTerms, MAX_PROOFS, Op as QuotaOp, Release, Request,
        Settle, TopUpTerms, UncheckedCertificate, Unlock, Vote, VoteSig,
    };
    let committee = agora_fuzz::quota_committee()?;
    let certify = |op: &QuotaOp| -> Res<agora_protocol::committee::Certificate> {
        let mut votes = Vec::new();
        for n in 1..=3 {
            let vote = Vote {
                genesis: committee.digest(),
                slot: op.slot(),
                op: op.digest(),
            };
            votes.push(VoteSig {
                validator: id(n),
                signature: *Signed::sign(vote, &key(n))?.signature(),
            });
        }
        votes.sort_by_key(|v| v.validator);
        let unchecked = UncheckedCertificate {
            op: op.clone(),
            votes,
        };
        Ok(unchecked.verify(committee, &agora_protocol::Ed25519)?)
    };
    let chain_op = |account: u8, seq: u64, prev: Option<Digest>, action: Action| -> Res<QuotaOp> {
        let body = ChainOp {
            account: id(account),
            seq,
            prev,
            action,
            delegation: None,
        };
        Ok(QuotaOp::Chain(Signed::sign(body, &key(account))?))
    };

    let credit = chain_op(
        AGENT,
        0,
        None,
        Action::Credit(Credential::single(signed_att(5, AGENT, 1)?)),
    )?;
    let credit_cert = certify(&credit)?;
    // An 8-link chain is held by key 9.
    let credit_max = chain_op(
        9,
        u64::MAX,
        Some(Digest::of(b"prev")),
        Action::Credit(chain(8, 2)?),
    )?;
    let lock = chain_op(
        AGENT,
        1,
        Some(credit_cert.digest()),
        Action::Lock(LockTerms {
            lease: Digest::of(b"lease"),
            provider: id(PROVIDER),
            amount_micro: 600,
            expires_at: t(3600),
        }),
    )?;
    let lock_cert = certify(&lock)?;
    let top_up_action = Action::TopUp(TopUpTerms {
        lock: LockTerms {
            lease: Digest::of(b"lease"),
            provider: id(PROVIDER),
            amount_micro: 300,
            expires_at: t(7200),
        },
        base_micro: 600,
    });
    let top_up = chain_op(
        AGENT,
        2,
        Some(lock_cert.digest()),
        top_up_action.clone(),
    )?;
    // The same top-up signed by a delegate (key 9) under the agent's delegation.
    let delegated_top_up = QuotaOp::Chain(Signed::sign(
        ChainOp {
            account: id(AGENT),
            seq: 2,
            prev: Some(lock_cert.digest()),
            action: top_up_action,
            delegation: Some(delegation(AGENT, 9, vec![OpKind::Lease, OpKind::Extend])?),
        },
        &key(9),
    )?);
    let free_tier = QuotaOp::FreeTier(Signed::sign(
        FreeTierClaim {
            account: id(AGENT),
            epoch: 0,
            index: 7,
        },
        &key(AGENT),
    )?);
    let settle = QuotaOp::Settle(Signed::sign(
        Settle {
            account: id(AGENT),
            lock_seq: 1,
            lock: lock_cert.digest(),
            receipt: Signed::sign(
                receipt(3, Some(TerminationReason::Exited { code: 0 })),
                &key(PROVIDER),
            )?,
        },
        &key(PROVIDER),
    )?);
    let unlock = QuotaOp::Unlock(Unlock {
        account: id(AGENT),
        lock_seq: 1,
        lock: lock_cert.digest(),
    });
    // The lock's provider refused the lease: its signed refusal releases the lock.
    let release = QuotaOp::Release(Release {
        account: id(AGENT),
        lock_seq: 1,
        lock: lock_cert.digest(),
        refusal: refusal(
            Digest::of(b"lease"),
            RefusalCode::Capacity,
            "no capacity left",
            t(10),
        )?,
    });
    // The lock above the balance under the agent's owner's approval.
    let approved_lock = match &lock {
        QuotaOp::Chain(op) => QuotaOp::Approved(agora_protocol::committee::ApprovedLock {
            op: op.clone(),
            approval: Signed::sign(
                Approval {
                    owner: id(OWNER),
                    request: Digest::of(b"lease"),
                    agent: id(AGENT),
                    max_cost_micro: 600,
                    approved_at: t(11),
                },
                &key(OWNER),
            )?,
        }),
        _ => return Err("the lock is a chain op".into()),
    };
    let mut certs = vec![credit_cert.clone(), lock_cert.clone()];
    for (name, op) in [
        ("credit", &credit),
        ("lock", &lock),
        ("free-tier", &free_tier),
        ("settle", &settle),
        ("unlock", &unlock),
        ("credit-max", &credit_max),
        ("top-up", &top_up),
        ("release", &release),
        ("delegated-top-up", &delegated_top_up),
        ("approved-lock", &approved_lock),
    ] {
        let cert = match name {
            "credit" => credit_cert.clone(),
            "lock" => lock_cert.clone(),
            _ => certify(op)?,
        };
        let bytes = cert.encode()?;
        eprintln!("quota_certificate/{name}: {} bytes", bytes.len());
        w.put("quota_certificate", name, &bytes)?;
        if !matches!(name, "credit" | "lock") {
            certs.push(cert);
        }
    }
    let requests = [
        ("free-tier", free_tier.clone(), Vec::new()),
        ("lock", lock.clone(), vec![credit_cert.clone()]),
        ("settle", settle, vec![lock_cert.clone()]),
        ("top-up", top_up, vec![lock_cert.clone()]),
        ("release", release, vec![lock_cert.clone()]),
        ("delegated-top-up", delegated_top_up, vec![lock_cert.clone()]),
        ("approved-lock", approved_lock, vec![credit_cert.clone()]),
        (
            "full",
            credit_max,
            certs.iter().cycle().take(MAX_PROOFS).cloned().collect(),
        ),
    ];
    for (name, op, proofs) in requests {
        let bytes = Request { op, proofs }.encode()?;
        eprintln!("quota_request/{name}: {} bytes", bytes.len());
        w.put("quota_request", name, &bytes)?;
    }
    quota_answer_seeds(w, &lock, &lock_cert, &certs)
}

/// Validators' answers on `/agora/quota/1` (`quota_rpc::Response`): a vote for `lock` by
/// validator 1, refusals (behind, insufficient, conflict), `Stored`, account views (empty;
/// with `lock_cert` as head and its lock; every field at its bound: the largest certificate
/// of `certs` as head and `MAX_VIEW_LOCKS` locks), and refused requests' reasons (typical,
/// `MAX_REASON_BYTES` long).
fn quota_answer_seeds(
    w: &mut Writer,
    lock: &agora_protocol::committee::Op,
    lock_cert: &agora_protocol::committee::Certificate,
    certs: &[agora_protocol::committee::Certificate],
) -> Res<()> {
    use agora_protocol::committee::{Answer, Refusal, Slot, Vote};
    use agora_protocol::quota_rpc::{
        AccountView, LockView, MAX_REASON_BYTES, MAX_VIEW_LOCKS, Response,
    };
    let committee = agora_fuzz::quota_committee()?;
    let vote = Signed::sign(
        Vote {
            genesis: committee.digest(),
            slot: lock.slot(),
            op: lock.digest(),
        },
        &key(1),
    )?;
    let lock_view = |seq: u64| LockView {
        seq,
        lease: Digest::of(&seq.to_be_bytes()),
        provider: id(PROVIDER),
        amount_micro: 600,
        expires_at: t(3600),
        op: lock.digest(),
        approved: seq % 2 == 1,
    };
    let largest = certs
        .iter()
        .max_by_key(|c| c.encode().map(|b| b.len()).unwrap_or(0))
        .cloned()
        .ok_or("no certificate")?;
    let answers = [
        ("vote", Response::Answer(Answer::Vote(vote))),
        (
            "behind",
            Response::Answer(Answer::Refused(Refusal::Behind {
                account: id(AGENT),
                next_seq: 1,
            })),
        ),
        (
            "insufficient",
            Response::Answer(Answer::Refused(Refusal::Insufficient {
                available_micro: 400,
                amount_micro: 600,
            })),
        ),
        (
            "conflict",
            Response::Answer(Answer::Refused(Refusal::Conflict {
                slot: Slot::Seq {
                    account: id(AGENT),
                    seq: 1,
                },
                voted: Digest::of(b"other op"),
            })),
        ),
        ("stored", Response::Stored),
        (
            "account-empty",
            Response::Account(AccountView {
                head: None,
                credited_micro: 0,
                granted_micro: 0,
                spent_micro: 0,
                approved_spent_micro: 0,
                locks: Vec::new(),
            }),
        ),
        (
            "account",
            Response::Account(AccountView {
                head: Some(lock_cert.clone()),
                credited_micro: 1_000_000,
                granted_micro: 10_000_000,
                spent_micro: 1200,
                approved_spent_micro: 0,
                locks: vec![lock_view(1)],
            }),
        ),
        (
            "account-max",
            Response::Account(AccountView {
                head: Some(largest),
                credited_micro: u64::MAX,
                granted_micro: u64::MAX,
                spent_micro: u64::MAX,
                approved_spent_micro: u64::MAX,
                locks: (0..MAX_VIEW_LOCKS as u64)
                    .map(|i| lock_view(u64::MAX - i))
                    .collect(),
            }),
        ),
        (
            "refused",
            Response::Refused("this node has no quota committee".into()),
        ),
        (
            "refused-max",
            Response::Refused("é".repeat(MAX_REASON_BYTES / 2)),
        ),
    ];
    for (name, answer) in answers {
        let bytes = answer.encode()?;
        eprintln!("quota_answer/{name}: {} bytes", bytes.len());
        w.put("quota_answer", name, &bytes)?;
    }
    Ok(())
}

struct Writer {
    root: PathBuf,
    /// Targets to write seeds for (empty: all); the others' seeds are still checked.
    only: Vec<String>,
    count: usize,
}

impl Writer {
    fn put(&mut self, target: &str, name: &str, bytes: &[u8]) -> Res<()> {
        let check = TARGETS
            .iter()
            .find(|(t, _)| *t == target)
            .map(|(_, c)| *c)
            .ok_or_else(|| format!("unknown target {target}"))?;
        match check(bytes) {
            Ok(Verdict::Accepted) => {}
            other => return Err(format!("seed {target}/{name} not accepted: {other:?}").into()),
        }
        if !self.only.is_empty() && !self.only.iter().any(|t| t == target) {
            return Ok(());
        }
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("seed-{name}")), bytes)?;
        self.count += 1;
        Ok(())
    }
}

fn main() -> Res<()> {
    let mut args = std::env::args().skip(1);
    let root = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"));
    let only: Vec<String> = args.collect();
    if let Some(unknown) = only.iter().find(|t| !TARGETS.iter().any(|(n, _)| n == t)) {
        return Err(format!("unknown target {unknown}").into());
    }
    let mut w = Writer {
        root,
        only,
        count: 0,
    };

    for v in 0..3 {
        let a = signed_att(1, 2, v)?;
        w.put("signed_attestation", &format!("v{v}"), a.as_bytes())?;
    }
    w.put(
        "signed_attestation",
        "issuer7",
        signed_att(7, 3, 1)?.as_bytes(),
    )?;

    for (i, (reason, at)) in [("", 0), ("key compromised", 1_750_000_000_000)]
        .into_iter()
        .enumerate()
    {
        let r = revocation(1, 2, reason, at)?;
        w.put("signed_revocation", &format!("r{i}"), r.as_bytes())?;
    }
    let long = revocation(4, 5, &"ü".repeat(128), u64::MAX)?;
    w.put("signed_revocation", "max", long.as_bytes())?;

    for (i, (verifier, subject, at)) in [(1, 2, 0), (3, 4, 1_700_000_000_123), (5, 6, u64::MAX)]
        .into_iter()
        .enumerate()
    {
        let r = response(verifier, subject, at)?;
        w.put("signed_challenge_response", &format!("c{i}"), r.as_bytes())?;
    }

    for (name, o, n) in [
        ("typical", offer(1, 1, 1000), 1),
        ("typical-k7", offer(7, 42, 1_700_000_000), 7),
        ("min", offer_min(2), 2),
        ("max", offer_max(3), 3),
    ] {
        let signed = Signed::sign(o, &key(n))?;
        eprintln!("signed_offer/{name}: {} bytes", signed.as_bytes().len());
        w.put("signed_offer", name, signed.as_bytes())?;
        let gossip = GossipMessage::Offer(signed.clone()).encode();
        w.put("gossip_message", &format!("offer-{name}"), &gossip)?;
        let page = SyncResponse {
            entries: vec![signed.as_bytes().to_vec(); 2],
            withdrawals: vec![withdrawal(n, 1, 1000)?.as_bytes().to_vec()],
            next: Some(key(n).id()),
        };
        w.put("sync_response", name, &page.encode()?)?;
    }
    let empty = SyncResponse {
        entries: Vec::new(),
        withdrawals: Vec::new(),
        next: None,
    };
    w.put("sync_response", "empty", &empty.encode()?)?;
    for (name, req) in [
        (
            "first",
            SyncRequest {
                after: None,
                limit: 64,
                digest: None,
                held: Vec::new(),
                held_all: true,
            },
        ),
        (
            "next",
            SyncRequest {
                after: Some(key(3).id()),
                limit: 64,
                digest: Some(Digest::of(b"book")),
                held: Vec::new(),
                held_all: true,
            },
        ),
        (
            "held",
            SyncRequest::holding(None, Some(Digest::of(b"book")), {
                let mut held: Vec<Held<_>> = (1..=4u64)
                    .map(|n| Held {
                        key: key(n as u8).id(),
                        seq: n,
                    })
                    .collect();
                held.sort_by_key(|h| h.key);
                held
            }),
        ),
        (
            "held-more",
            SyncRequest {
                held_all: false,
                ..SyncRequest::holding(
                    None,
                    None,
                    [Held {
                        key: key(5).id(),
                        seq: u64::MAX,
                    }],
                )
            },
        ),
    ] {
        w.put("sync_request", name, &req.encode()?)?;
    }

    for (i, (n, seq, at)) in [
        (1, 0, 0),
        (4, 17, 1_700_000_000_000),
        (5, u64::MAX, u64::MAX),
    ]
    .into_iter()
    .enumerate()
    {
        let wd = withdrawal(n, seq, at)?;
        w.put("signed_offer_withdrawal", &format!("w{i}"), wd.as_bytes())?;
        let gossip = GossipMessage::Withdrawal(wd).encode();
        w.put("gossip_message", &format!("withdrawal-{i}"), &gossip)?;
    }

    for (links, v) in [(1, 0), (1, 1), (2, 1), (3, 0), (8, 1)] {
        let c = chain(links, v)?;
        w.put("credential", &format!("len{links}-v{v}"), &c.to_bytes()?)?;
    }
    w.put("credential", "len2-max", &chain(2, 2)?.to_bytes()?)?;

    for n in [1, 2, 200] {
        let s = id(n).to_string();
        w.put("agora_id", &format!("id{n}"), s.as_bytes())?;
        w.put(
            "agora_id",
            &format!("id{n}-upper"),
            s.to_uppercase().as_bytes(),
        )?;
    }
    w.put("agora_id", "spaced", format!(" \t{}\n", id(3)).as_bytes())?;

    let cred = chain(2, 1)?.to_base64()?;
    w.put("base64_text", "credential", cred.as_bytes())?;
    w.put(
        "base64_text",
        "credential-short",
        chain(1, 0)?.to_base64()?.as_bytes(),
    )?;
    let rev = revocation(1, 2, "superseded", 42)?.to_base64();
    w.put("base64_text", "revocation", rev.as_bytes())?;
    w.put(
        "base64_text",
        "revocation-padded",
        format!("  {rev}==\n").as_bytes(),
    )?;

    lease_seeds(&mut w)?;
    service_seeds(&mut w)?;
    ledger_seeds(&mut w)?;
    read_proof_seeds(&mut w)?;
    quota_seeds(&mut w)?;

    println!("wrote {} seeds under {}", w.count, w.root.display());
    Ok(())
}
