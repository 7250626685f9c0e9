#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use agora_protocol::committee::{FreeTier, Genesis, LockRules};

use super::*;

const START: u64 = 1_000_000;
const EPOCH: u64 = 100;

fn committee() -> Committee {
    let validator = agora_attest::Identity::generate(&mut rand::rng()).agora_id();
    Committee::new(Genesis {
        f: 0,
        validators: vec![validator],
        issuers: Vec::new(),
        start_unix_secs: START,
        epoch_secs: EPOCH,
        free_tier: FreeTier {
            allowance_micro: 1,
            cap_per_epoch: 1,
        },
        locks: LockRules::default(),
    })
    .unwrap()
}

fn at(secs: u64) -> Timestamp {
    Timestamp::from_unix_secs(START + secs)
}

fn hash(n: u8) -> Digest {
    Digest([n; 32])
}

#[test]
fn epochs_count_from_the_genesis_start() {
    let origin = Timestamp::from_unix_secs(START);
    let length = Duration::from_secs(EPOCH);
    assert_eq!(
        epoch_index(origin, length, Timestamp::from_unix_secs(START - 1)),
        None
    );
    assert_eq!(epoch_index(origin, length, origin), Some(0));
    assert_eq!(
        epoch_index(
            origin,
            length,
            Timestamp::from_unix_millis(START * 1000 + 99_999)
        ),
        Some(0)
    );
    assert_eq!(epoch_index(origin, length, at(100)), Some(1));
    assert_eq!(epoch_index(origin, length, at(2_450)), Some(24));
}

#[test]
fn without_a_genesis_reputation_is_unavailable_and_says_why() {
    let r = Reputations::new(None);
    let why = r.unavailable().unwrap();
    assert!(why.contains("genesis"), "{why}");
    assert!(!r.due(hash(1), at(10)));
    assert!(matches!(
        r.refresh(hash(1), &[], at(10)),
        Err(RefreshError::Unavailable(_))
    ));
    let id = agora_attest::Identity::generate(&mut rand::rng()).agora_id();
    let view = r.view(&id);
    assert!(!view.available);
    assert!(view.reason.unwrap().contains("genesis"));
    assert!(view.current.is_none() && view.completed.is_none());
    assert!(r.history(&id).is_empty());
    assert!(!r.knows(&id));
    assert!(r.trust().is_empty());
    assert_eq!(r.gossip_score(&id), 0.0);
}

#[test]
fn the_current_epoch_is_provisional_and_the_last_completed_one_is_final() {
    let r = Reputations::new(Some(&committee()));
    assert!(r.unavailable().is_none());
    let id = agora_attest::Identity::generate(&mut rand::rng()).agora_id();
    let before = r.view(&id);
    assert!(!before.available, "nothing computed yet");
    assert!(before.reason.unwrap().contains("not computed yet"));

    let now = at(350);
    let done = r.refresh(hash(1), &[], now).unwrap();
    assert_eq!(done.current, Some(3));
    assert_eq!(done.completed, 3, "epochs 0, 1 and 2 filled in");
    let view = r.view(&id);
    assert!(view.available && view.reason.is_none());
    let current = view.current.unwrap();
    assert_eq!(current.epoch, 3);
    assert!(current.provisional);
    assert_eq!(current.start, at(300).to_string());
    assert_eq!(current.end, at(400).to_string());
    assert_eq!(current.judged_until, now.to_string());
    assert!(
        current.score.is_none(),
        "no lease, no score: none is made up"
    );
    let completed = view.completed.unwrap();
    assert_eq!(completed.epoch, 2);
    assert!(!completed.provisional);
    assert_eq!(completed.end, at(300).to_string());
    assert_eq!(completed.judged_until, completed.end);
    let history: Vec<u64> = r.history(&id).iter().map(|e| e.epoch).collect();
    assert_eq!(history, [2, 1, 0], "newest first");
    assert!(!r.knows(&id));
}

#[test]
fn before_the_genesis_start_there_is_no_epoch() {
    let r = Reputations::new(Some(&committee()));
    let done = r
        .refresh(hash(1), &[], Timestamp::from_unix_secs(START - 5))
        .unwrap();
    assert_eq!(done.current, None);
    assert_eq!(done.completed, 0);
    let view = r.view(&agora_attest::Identity::generate(&mut rand::rng()).agora_id());
    assert!(view.available);
    assert!(view.current.is_none() && view.completed.is_none());
}

#[test]
fn refreshes_only_when_the_log_or_the_epoch_changed() {
    let r = Reputations::new(Some(&committee()));
    assert!(r.due(hash(1), at(150)));
    r.refresh(hash(1), &[], at(150)).unwrap();
    assert!(!r.due(hash(1), at(160)), "same log, same epoch");
    assert!(r.due(hash(2), at(160)), "the log changed");
    assert!(r.due(hash(1), at(210)), "a new epoch began");
    // A changed log recomputes the latest completed epoch (late entries), not older ones.
    assert_eq!(r.refresh(hash(2), &[], at(170)).unwrap().completed, 1);
    assert_eq!(
        completed_to_compute(Some(5), &(0..5).collect(), false),
        Vec::<u64>::new()
    );
    assert_eq!(completed_to_compute(Some(5), &(0..5).collect(), true), [4]);
    assert_eq!(
        completed_to_compute(Some(5), &(0..3).collect(), false),
        [3, 4]
    );
    assert_eq!(
        completed_to_compute(Some(0), &BTreeSet::new(), true),
        Vec::<u64>::new()
    );
    assert_eq!(
        completed_to_compute(None, &BTreeSet::new(), true),
        Vec::<u64>::new()
    );
}

#[test]
fn history_keeps_the_last_epochs_only() {
    let r = Reputations::new(Some(&committee()));
    let id = agora_attest::Identity::generate(&mut rand::rng()).agora_id();
    let done = r.refresh(hash(1), &[], at(30 * EPOCH + 5)).unwrap();
    assert_eq!(done.completed, HISTORY, "only the kept epochs are computed");
    let history = r.history(&id);
    assert_eq!(history.len(), HISTORY);
    assert_eq!(history[0].epoch, 29);
    assert_eq!(history[HISTORY - 1].epoch, 30 - HISTORY as u64);
    // The next epoch: one more computed, the oldest dropped.
    let done = r.refresh(hash(1), &[], at(31 * EPOCH + 5)).unwrap();
    assert_eq!(done.completed, 1);
    let history = r.history(&id);
    assert_eq!(history.len(), HISTORY);
    assert_eq!(history[0].epoch, 30);
    assert_eq!(history[HISTORY - 1].epoch, 31 - HISTORY as u64);
}
