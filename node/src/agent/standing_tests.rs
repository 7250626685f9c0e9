//! Judging signup records: contained, attested, and every way a record falls short.

use core::time::Duration;

use agora_attest::issue::{AttestationRequest, issue_credential, revoke};
use agora_attest::{Identity, TrustConfig, TrustRoot};
use agora_protocol::signup::ProofOfWork;
use agora_protocol::{Challenge, Claims, Credential};

use super::*;

const T0: Timestamp = Timestamp::from_unix_secs(1_800_000_000);

fn id(seed: u8) -> Identity {
    Identity::from_secret_bytes(&[seed; 32])
}

fn challenge() -> Challenge {
    Challenge {
        verifier: id(90).agora_id(),
        nonce: [3; 32],
        issued_at: T0,
    }
}

fn policy() -> SignupPolicy {
    SignupPolicy::new(8, crate::config::builtin_tiers())
}

fn trust(root: &Identity) -> TrustStore {
    let config = TrustConfig {
        roots: vec![TrustRoot {
            id: root.agora_id(),
            name: "test issuer".into(),
            tiers: Vec::new(),
            max_spending_limit: None,
        }],
        ..TrustConfig::default()
    };
    TrustStore::from_config(&config, std::path::Path::new("test")).unwrap()
}

fn credential(issuer: &Identity, agent: &Identity, tier: &str, valid: Duration) -> Credential {
    let claims = Claims {
        organisation: None,
        tier: tier.into(),
        spending_limit_credits: 500,
        owner: Some(id(77).agora_id()),
        may_delegate: false,
        model: None,
        labels: Default::default(),
    };
    issue_credential(
        issuer,
        None,
        AttestationRequest {
            subject: agent.agora_id(),
            claims,
            valid_for: valid,
        },
        T0,
        &mut rand::rng(),
    )
    .unwrap()
}

fn record(
    agent: &Identity,
    credential: Option<Credential>,
    pow: ProofOfWork,
) -> Signed<SignupRecord> {
    Signed::sign(
        SignupRecord {
            agent: agent.agora_id(),
            challenge: challenge(),
            credential,
            pow,
            name: Some("tester".into()),
        },
        agent,
    )
    .unwrap()
}

fn solved(agent: &Identity, bits: u8) -> ProofOfWork {
    ProofOfWork::solve(&agent.agora_id(), &challenge(), bits)
}

#[test]
fn unattested_with_proof_of_work_is_contained() {
    let agent = id(1);
    let s = judge(
        &record(&agent, None, solved(&agent, 8)),
        &trust(&id(50)),
        &policy(),
        T0,
    )
    .unwrap();
    assert_eq!(s.agent, agent.agora_id());
    assert_eq!(s.tier, TierLimits::contained());
    assert!(!s.attested && s.owner.is_none() && s.root.is_none());
    assert!(s.credential_digest.is_none() && s.claimed_tier.is_none());
}

#[test]
fn proof_of_work_missing_short_or_forged_is_refused() {
    let agent = id(2);
    let t = trust(&id(50));
    // None at all.
    let err = assess(&record(&agent, None, ProofOfWork::NONE), &t, &policy(), T0).unwrap_err();
    assert_eq!(
        err,
        StandingError::PowRequired {
            required: 8,
            shown: 0
        }
    );
    assert_eq!(err.refusal().code, RefusalCode::Policy);
    // Honest work for a less demanding node.
    let weak = solved(&agent, 4);
    let err = judge(&record(&agent, None, weak), &t, &policy(), T0).unwrap_err();
    assert_eq!(err.code, RefusalCode::Policy);
    assert!(err.detail.contains("8 bits"), "{}", err.detail);
    // Claims the bits, does not have them.
    let good = solved(&agent, 8);
    let forged = (1..)
        .map(|d| ProofOfWork {
            bits: 8,
            nonce: good.nonce.wrapping_add(d),
        })
        .find(|p| !p.meets(&agent.agora_id(), &challenge(), 8))
        .unwrap();
    let err = assess(&record(&agent, None, forged), &t, &policy(), T0).unwrap_err();
    assert!(
        matches!(err, StandingError::PowInvalid { bits: 8, .. }),
        "{err}"
    );
    assert_eq!(err.refusal().code, RefusalCode::Untrusted);
    // A node asking for none accepts none.
    let lax = SignupPolicy::new(0, crate::config::builtin_tiers());
    assert!(judge(&record(&agent, None, ProofOfWork::NONE), &t, &lax, T0).is_ok());
}

#[test]
fn attested_known_tier_takes_its_limits_and_the_claimed_spending_limit() {
    let (issuer, agent) = (id(50), id(3));
    let cred = credential(&issuer, &agent, "standard", Duration::from_secs(3600));
    let leaf = cred.leaf().digest();
    // No proof of work needed.
    let s = judge(
        &record(&agent, Some(cred), ProofOfWork::NONE),
        &trust(&issuer),
        &policy(),
        T0,
    )
    .unwrap();
    assert!(s.attested);
    assert_eq!(s.tier.name, "standard");
    assert_eq!(s.tier.max_vcpu_milli, 4000);
    assert_eq!(s.tier.spending_limit_credits, 500);
    assert_eq!(s.owner, Some(id(77).agora_id()));
    assert_eq!(s.root, Some(issuer.agora_id()));
    assert_eq!(s.root_name.as_deref(), Some("test issuer"));
    assert_eq!(s.credential_digest, Some(leaf));
    assert_eq!(
        s.expires_at,
        Some(T0.saturating_add(Duration::from_secs(3600)))
    );
    assert!(s.claimed_tier.is_none());
}

#[test]
fn attested_unknown_tier_gets_contained_limits_and_a_capped_spending_limit() {
    let (issuer, agent) = (id(50), id(4));
    let cred = credential(&issuer, &agent, "gold", Duration::from_secs(3600));
    let s = judge(
        &record(&agent, Some(cred), ProofOfWork::NONE),
        &trust(&issuer),
        &policy(),
        T0,
    )
    .unwrap();
    assert!(s.attested);
    assert_eq!(s.tier.name, CONTAINED_TIER);
    assert_eq!(
        s.tier.max_memory_mib,
        TierLimits::contained().max_memory_mib
    );
    // min(500 claimed, 10 contained allowance)
    assert_eq!(s.tier.spending_limit_credits, 10);
    assert_eq!(s.claimed_tier.as_deref(), Some("gold"));
    assert_eq!(s.owner, Some(id(77).agora_id()));
}

#[test]
fn expired_revoked_and_unknown_issuers_are_untrusted() {
    let (issuer, agent) = (id(50), id(5));
    let t = trust(&issuer);
    let cred = credential(&issuer, &agent, "standard", Duration::from_secs(3600));
    let rec = record(&agent, Some(cred.clone()), ProofOfWork::NONE);
    // Expired (beyond the default 5 min skew).
    let later = T0.saturating_add(Duration::from_secs(2 * 3600));
    let err = judge(&rec, &t, &policy(), later).unwrap_err();
    assert_eq!(err.code, RefusalCode::Untrusted);
    assert!(err.detail.contains("expired"), "{}", err.detail);
    // Revoked by its issuer.
    let mut revoked = t.clone();
    revoked.add_revocation(revoke(&issuer, cred.root(), "key leaked", T0).unwrap());
    let err = judge(&rec, &revoked, &policy(), T0).unwrap_err();
    assert_eq!(err.code, RefusalCode::Untrusted);
    assert!(
        err.detail.contains("revoked") && err.detail.contains("key leaked"),
        "{}",
        err.detail
    );
    // Issued by someone this node does not trust.
    let stranger = credential(&id(51), &agent, "standard", Duration::from_secs(3600));
    let err = judge(
        &record(&agent, Some(stranger), ProofOfWork::NONE),
        &t,
        &policy(),
        T0,
    )
    .unwrap_err();
    assert_eq!(err.code, RefusalCode::Untrusted);
    assert!(err.detail.contains("unknown issuer"), "{}", err.detail);
}

#[test]
fn policy_always_knows_contained_and_reads_the_config() {
    let p = SignupPolicy::new(3, BTreeMap::new());
    assert_eq!(p.contained(), TierLimits::contained());
    let config = crate::config::NodeConfig::parse(
        std::path::Path::new("node.toml"),
        "[signup]\npow_bits = 5\n[tiers.contained]\nmax_memory_mib = 256\n[tiers.pro]\nmax_vcpu = 8.0\n",
    )
    .unwrap();
    let p = SignupPolicy::from_config(&config).unwrap();
    assert_eq!(p.pow_bits, 5);
    assert_eq!(p.contained().max_memory_mib, 256);
    assert_eq!(p.tier("pro").unwrap().max_vcpu_milli, 8000);
    assert_eq!(p.tier("pro").unwrap().max_memory_mib, 1024);
    assert!(p.tier("standard").is_some());
}
