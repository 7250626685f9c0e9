//! The signup service without HTTP: every check in order, with a memory store.

use agora_attest::Identity;
use agora_protocol::signup::ProofOfWork;

use super::*;
use crate::store::MemStore;

const T0: Timestamp = Timestamp::from_unix_secs(1_800_000_000);

fn node() -> Identity {
    Identity::from_secret_bytes(&[200; 32])
}

fn service(extra: &str) -> SignupService {
    service_of(node().agora_id(), extra)
}

fn service_of(id: AgoraId, extra: &str) -> SignupService {
    let text = format!(
        "[signup]\npow_bits = 4\nchallenge_ttl = \"60s\"\nmax_outstanding = 8\nper_address = \"100/min\"\nper_prefix = \"1000/min\"\n{extra}"
    );
    let config = NodeConfig::parse(std::path::Path::new("node.toml"), &text).unwrap();
    SignupService::new(id, Arc::new(MemStore::new()), &config).unwrap()
}

fn local() -> IpAddr {
    "127.0.0.1".parse().unwrap()
}

fn signed_record(agent: &Identity, c: Challenge, pow_bits: u8) -> String {
    let pow = ProofOfWork::solve(&agent.agora_id(), &c, pow_bits);
    let record = SignupRecord {
        agent: agent.agora_id(),
        challenge: c,
        credential: None,
        pow,
        name: Some("unit".into()),
    };
    URL_SAFE_NO_PAD.encode(Signed::sign(record, agent).unwrap().as_bytes())
}

fn fresh(s: &SignupService, now: Timestamp) -> Challenge {
    s.challenge(local(), now, &mut rand::rng())
        .unwrap()
        .challenge()
        .unwrap()
}

#[test]
fn signup_once_then_replay_is_refused() {
    let s = service("");
    let agent = Identity::from_secret_bytes(&[1; 32]);
    let issued = s.challenge(local(), T0, &mut rand::rng()).unwrap();
    assert_eq!(issued.pow_bits, 4);
    assert_eq!(issued.verifier, node().agora_id());
    let record = signed_record(&agent, issued.challenge().unwrap(), 4);
    let account = s.signup(local(), &record, T0).unwrap();
    assert_eq!(account.agent, agent.agora_id());
    assert_eq!(account.tier.name, "contained");
    assert_eq!(account.name.as_deref(), Some("unit"));
    assert_eq!(account.signup_node, node().agora_id());
    assert_eq!(account.signup_record, record);
    assert_eq!(s.account(&agent.agora_id()).unwrap(), Some(account));
    let err = s.signup(local(), &record, T0).unwrap_err();
    assert_eq!(err.code(), "challenge_replayed", "{err}");
}

#[test]
fn signing_up_again_replaces_the_account() {
    let s = service("");
    let agent = Identity::from_secret_bytes(&[2; 32]);
    s.signup(local(), &signed_record(&agent, fresh(&s, T0), 4), T0)
        .unwrap();
    let later = T0.saturating_add(Duration::from_secs(5));
    s.signup(local(), &signed_record(&agent, fresh(&s, later), 4), later)
        .unwrap();
    assert_eq!(
        s.account(&agent.agora_id()).unwrap().unwrap().signed_up_at,
        later
    );
}

#[test]
fn foreign_unknown_and_expired_challenges_are_refused() {
    let s = service("");
    let agent = Identity::from_secret_bytes(&[3; 32]);
    // Another node (same config, different id) issued this one.
    let other = service_of(Identity::from_secret_bytes(&[201; 32]).agora_id(), "");
    let foreign = other
        .challenge(local(), T0, &mut rand::rng())
        .unwrap()
        .challenge()
        .unwrap();
    let err = s
        .signup(local(), &signed_record(&agent, foreign, 4), T0)
        .unwrap_err();
    assert_eq!(err.code(), "challenge_wrong_node", "{err}");
    let made_up = Challenge {
        verifier: node().agora_id(),
        nonce: [9; 32],
        issued_at: T0,
    };
    let err = s
        .signup(local(), &signed_record(&agent, made_up, 4), T0)
        .unwrap_err();
    assert_eq!(err.code(), "challenge_unknown", "{err}");
    let c = fresh(&s, T0);
    let late = T0.saturating_add(Duration::from_secs(60));
    let err = s
        .signup(local(), &signed_record(&agent, c, 4), late)
        .unwrap_err();
    assert_eq!(err.code(), "challenge_expired", "{err}");
    // Long after, a replay of a consumed challenge reads as expired: refused either way.
    let c = fresh(&s, T0);
    s.signup(local(), &signed_record(&agent, c, 4), T0).unwrap();
    let err = s
        .signup(
            local(),
            &signed_record(&agent, c, 4),
            T0.saturating_add(Duration::from_secs(600)),
        )
        .unwrap_err();
    assert_eq!(err.code(), "challenge_expired", "{err}");
}

#[test]
fn malformed_and_forged_records_are_invalid() {
    let s = service("");
    let agent = Identity::from_secret_bytes(&[4; 32]);
    for bad in ["", "!!!", "AAAA"] {
        let err = s.signup(local(), bad, T0).unwrap_err();
        assert_eq!(err.code(), "invalid_record", "{bad:?}: {err}");
    }
    let good = signed_record(&agent, fresh(&s, T0), 4);
    let mut bytes = decode_base64(&good, 1 << 20).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let err = s
        .signup(local(), &URL_SAFE_NO_PAD.encode(&bytes), T0)
        .unwrap_err();
    assert_eq!(err.code(), "invalid_record");
    assert!(err.to_string().contains("signature"), "{err}");
    // The forgery did not burn the challenge: the real record still works.
    s.signup(local(), &good, T0).unwrap();
}

#[test]
fn proof_of_work_is_checked_after_the_challenge_is_consumed() {
    let s = service("");
    let agent = Identity::from_secret_bytes(&[5; 32]);
    let c = fresh(&s, T0);
    let err = s
        .signup(local(), &signed_record(&agent, c, 0), T0)
        .unwrap_err();
    assert_eq!(err.code(), "pow_required", "{err}");
    // One attempt per challenge.
    let err = s
        .signup(local(), &signed_record(&agent, c, 4), T0)
        .unwrap_err();
    assert_eq!(err.code(), "challenge_replayed", "{err}");
}

#[test]
fn rate_limits_and_the_challenge_bound() {
    let s = service("");
    // max_outstanding = 8.
    for _ in 0..8 {
        fresh(&s, T0);
    }
    let err = s.challenge(local(), T0, &mut rand::rng()).unwrap_err();
    assert_eq!(err.code(), "challenges_exhausted");
    assert!(err.retry_after().is_some());

    let tight = {
        let text = "[signup]\npow_bits = 0\nper_address = \"2/min\"\nper_prefix = \"3/min\"\n";
        let config = NodeConfig::parse(std::path::Path::new("node.toml"), text).unwrap();
        SignupService::new(node().agora_id(), Arc::new(MemStore::new()), &config).unwrap()
    };
    let a: IpAddr = "192.0.2.1".parse().unwrap();
    let b: IpAddr = "192.0.2.2".parse().unwrap();
    // Rate limiting comes first: even garbage costs a token.
    assert_eq!(
        tight.signup(a, "x", T0).unwrap_err().code(),
        "invalid_record"
    );
    assert_eq!(
        tight.signup(a, "x", T0).unwrap_err().code(),
        "invalid_record"
    );
    let err = tight.signup(a, "x", T0).unwrap_err();
    assert_eq!(err.code(), "rate_limited");
    assert!(err.to_string().contains("address"), "{err}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(30)));
    assert_eq!(
        tight.signup(b, "x", T0).unwrap_err().code(),
        "invalid_record"
    );
    let err = tight.signup(b, "x", T0).unwrap_err();
    assert!(err.to_string().contains("prefix"), "{err}");
    // Challenges have their own buckets.
    assert!(tight.challenge(a, T0, &mut rand::rng()).is_ok());
}

#[test]
fn reload_swaps_trust_and_policy() {
    let s = service("");
    assert_eq!(s.policy().pow_bits, 4);
    let config = NodeConfig::parse(
        std::path::Path::new("node.toml"),
        "[signup]\npow_bits = 9\n",
    )
    .unwrap();
    s.reload(&config).unwrap();
    assert_eq!(s.policy().pow_bits, 9);
    assert_eq!(s.trust().roots().count(), 0);
}
