//! The genesis file: parsing, checks, digest, epochs.

use super::genesis::{Committee, Genesis, GenesisError, MAX_VALIDATORS};
use super::test_support::*;

fn toml_text(validators: &[u8], f: u32, extra: &str) -> String {
    let list: Vec<String> = validators
        .iter()
        .map(|n| format!("\"{}\"", id(*n)))
        .collect();
    format!(
        "f = {f}\nvalidators = [{}]\nissuers = [\"{}\"]\nstart_unix_secs = {START}\nepoch_secs = 86400\n{extra}\n[free_tier]\nallowance_micro = 10000000\ncap_per_epoch = 1000\n",
        list.join(", "),
        id(ISSUER)
    )
}

#[test]
fn parses_a_genesis_file() {
    let committee = Genesis::from_toml(&toml_text(&[4, 2, 3, 1], 1, "")).unwrap();
    assert_eq!(committee.quorum(), 3);
    assert_eq!(committee.f(), 1);
    assert!(
        committee.validators().windows(2).all(|w| w[0] < w[1]),
        "sorted"
    );
    assert!(committee.is_member(&id(3)) && !committee.is_member(&id(5)));
    assert!(committee.is_issuer(&id(ISSUER)) && !committee.is_issuer(&id(1)));
    assert_eq!(committee.locks().max_open, 64, "[locks] defaults");
    // The order validators are listed in does not change the committee.
    let same = Genesis::from_toml(&toml_text(&[1, 2, 3, 4], 1, "")).unwrap();
    assert_eq!(committee.digest(), same.digest());
    // Written back, it reads back the same.
    let text = committee.genesis().to_toml().unwrap();
    assert_eq!(Genesis::from_toml(&text).unwrap(), committee);
}

#[test]
fn digest_changes_with_any_field() {
    let a = committee(1);
    let mut g = genesis(1);
    g.free_tier.cap_per_epoch += 1;
    assert_ne!(Committee::new(g).unwrap().digest(), a.digest());
    assert_ne!(committee(2).digest(), a.digest());
}

#[test]
fn bad_files_say_what_is_wrong() {
    let err = Genesis::from_toml(&toml_text(&[1, 2, 3], 1, "")).unwrap_err();
    assert_eq!(
        err,
        GenesisError::NotThreeFPlusOne {
            n: 3,
            f: 1,
            expected: 4
        }
    );
    assert_eq!(
        err.to_string(),
        "3 validators listed, but f = 1 needs exactly 4"
    );
    assert_eq!(
        Genesis::from_toml(&toml_text(&[1, 2, 3, 3], 1, "")).unwrap_err(),
        GenesisError::DuplicateValidator(id(3))
    );
    let unknown = Genesis::from_toml(&toml_text(&[1, 2, 3, 4], 1, "quorum = 3")).unwrap_err();
    assert!(
        matches!(&unknown, GenesisError::Parse(m) if m.contains("quorum") && m.contains("line")),
        "{unknown}"
    );
    let bad_id = toml_text(&[1, 2, 3, 4], 1, "").replace(&id(2).to_string(), "agora1nope");
    let err = Genesis::from_toml(&bad_id).unwrap_err();
    assert!(
        matches!(&err, GenesisError::Parse(m) if m.contains("validators")),
        "{err}"
    );
    let zero = toml_text(&[1, 2, 3, 4], 1, "").replace("epoch_secs = 86400", "epoch_secs = 0");
    assert_eq!(
        Genesis::from_toml(&zero).unwrap_err(),
        GenesisError::Zero {
            field: "epoch_secs"
        }
    );
    let missing = toml_text(&[1, 2, 3, 4], 1, "").replace("[free_tier]", "[free_tierx]");
    assert!(matches!(
        Genesis::from_toml(&missing).unwrap_err(),
        GenesisError::Parse(_)
    ));
    let mut g = genesis(1);
    g.issuers = vec![id(ISSUER), id(ISSUER)];
    assert_eq!(
        Committee::new(g).unwrap_err(),
        GenesisError::DuplicateIssuer(id(ISSUER))
    );
    let mut g = genesis(1);
    g.locks.max_open = 0;
    assert_eq!(
        Committee::new(g).unwrap_err(),
        GenesisError::Zero {
            field: "locks.max_open"
        }
    );
    let mut g = genesis(1);
    g.f = 22;
    g.validators = (1..=67).map(id).collect();
    assert_eq!(
        Committee::new(g).unwrap_err(),
        GenesisError::TooManyValidators { n: 67 }
    );
    const { assert!(MAX_VALIDATORS < 67) };
}

#[test]
fn a_single_validator_is_a_committee() {
    let mut g = genesis(1);
    g.f = 0;
    g.validators = vec![id(1)];
    let c = Committee::new(g).unwrap();
    assert_eq!(c.quorum(), 1);
}

#[test]
fn epochs() {
    let c = committee(1);
    assert_eq!(c.epoch_at(t(0)), Some(0));
    assert_eq!(c.epoch_at(t(EPOCH_SECS - 1)), Some(0));
    assert_eq!(c.epoch_at(t(EPOCH_SECS)), Some(1));
    assert_eq!(
        c.epoch_at(crate::time::Timestamp::from_unix_secs(START - 1)),
        None
    );
    assert_eq!(c.epoch_start(2), t(2 * EPOCH_SECS));
}
