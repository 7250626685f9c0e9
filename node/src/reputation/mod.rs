//! Reputation in the node: the protocol's per-epoch EigenTrust
//! ([`agora_protocol::ledger::reputation`]) over this node's replica of the evidence log.
//!
//! ```text
//! genesis (start, epoch length, validators = pre-trusted, issuers = SignupFunding roots)
//! every 30 s, when the log's state hash or the current epoch changed:
//!   Ledger::snapshot (one short lock) ─▶ blocking thread ─▶ reputation::compute
//!     ├─ the current epoch, judged up to now ("provisional": its leases are still coming in)
//!     ├─ the latest completed epoch (again on every change: entries arrive late)
//!     └─ completed epochs missing from the history (after a restart), the last 24 kept
//!   ─▶ Reputations (GET /v1/providers/{provider}, sort=reputation, gossip scores)
//! ```
//!
//! Epoch `n` is `[start + n·length, start + (n+1)·length)` of the genesis. A node without a
//! genesis has no pre-trusted peers, so it has no reputation either: [`Reputations`] then
//! says why ([`Reputations::unavailable`]) and never makes scores up. Every replica holding
//! the same entries computes the same completed-epoch scores; the provisional epoch depends
//! on when it was computed (`judged_until`).

use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use agora_protocol::committee::Committee;
use agora_protocol::ledger::Entry;
use agora_protocol::ledger::reputation::{self, Config, Epoch, Reputation, SignupFunding};
use agora_protocol::{AgoraId, Digest, Signed, Timestamp};
use tokio::sync::watch;
use tracing::{Instrument as _, debug, info, info_span, warn};

use crate::ledger::Ledger;

mod view;

pub use view::{EpochScore, ReputationView, ScoreView};

/// How often the node checks whether reputation needs computing again.
pub const PERIOD: Duration = Duration::from_secs(30);

/// Completed epochs kept in memory.
pub const HISTORY: usize = 24;

/// Why reputation could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefreshError {
    /// The node has no reputation (no genesis, or one that cannot rank).
    #[error("reputation is unavailable: {0}")]
    Unavailable(String),
    /// An epoch's number does not fit the protocol's epoch counter.
    #[error("epoch {index} is beyond the last epoch reputation can count")]
    EpochOutOfRange {
        /// The epoch's number.
        index: u64,
    },
    /// The protocol refused the computation.
    #[error(transparent)]
    Compute(#[from] reputation::Error),
}

/// The parameters every replica shares, from the genesis.
#[derive(Debug, Clone)]
struct Setup {
    origin: Timestamp,
    length: Duration,
    config: Config,
    issuers: BTreeSet<AgoraId>,
}

impl Setup {
    fn from_committee(committee: &Committee) -> Result<Self, String> {
        let g = committee.genesis();
        let config = Config {
            pretrusted: g.validators.iter().copied().collect(),
            ..Config::default()
        };
        config
            .validate()
            .map_err(|e| format!("the genesis cannot rank providers: {e}"))?;
        Ok(Self {
            origin: Timestamp::from_unix_secs(g.start_unix_secs),
            length: Duration::from_secs(g.epoch_secs.max(1)),
            config,
            issuers: g.issuers.iter().copied().collect(),
        })
    }

    /// The epoch `now` falls in (`None` before the genesis start).
    fn index_at(&self, now: Timestamp) -> Option<u64> {
        epoch_index(self.origin, self.length, now)
    }

    fn epoch(&self, index: u64) -> Result<Epoch, RefreshError> {
        let n = u32::try_from(index).map_err(|_| RefreshError::EpochOutOfRange { index })?;
        Ok(Epoch::nth(self.origin, self.length, n))
    }

    /// `epoch`'s reputation, judging facts dated before `until` (its end, or now).
    fn compute(
        &self,
        entries: &[Signed<Entry>],
        index: u64,
        until: Timestamp,
    ) -> Result<Scored, RefreshError> {
        let epoch = self.epoch(index)?;
        let window = Epoch {
            start: epoch.start,
            end: until.min(epoch.end),
        };
        let funding = SignupFunding::from_entries(entries, &self.issuers, window.end);
        let reputation = reputation::compute_entries(entries, window, &self.config, &funding)?;
        Ok(Scored {
            index,
            epoch,
            judged_until: window.end,
            provisional: window.end < epoch.end,
            reputation: Arc::new(reputation),
        })
    }
}

/// The number of the epoch of `length` from `origin` that `now` falls in (`None` before
/// `origin`).
pub fn epoch_index(origin: Timestamp, length: Duration, now: Timestamp) -> Option<u64> {
    if now < origin {
        return None;
    }
    let elapsed = now.saturating_duration_since(origin).as_millis();
    let length = length.as_millis().max(1);
    u64::try_from(elapsed / length).ok()
}

/// One computed epoch.
#[derive(Debug, Clone)]
struct Scored {
    index: u64,
    epoch: Epoch,
    judged_until: Timestamp,
    provisional: bool,
    reputation: Arc<Reputation>,
}

#[derive(Debug, Default)]
struct State {
    /// The state hash and current epoch of the last refresh.
    last: Option<(Digest, Option<u64>)>,
    computed_at: Option<Timestamp>,
    /// The current epoch, judged up to `computed_at`.
    current: Option<Scored>,
    /// Completed epochs by number, at most [`HISTORY`] (the newest).
    completed: BTreeMap<u64, Scored>,
}

/// What one refresh did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refreshed {
    /// The current epoch, if the genesis has started.
    pub current: Option<u64>,
    /// Completed epochs computed in this refresh.
    pub completed: usize,
    /// Providers ranked in the current epoch so far.
    pub providers: usize,
}

/// The node's reputation scores: the current epoch (provisional) and the last [`HISTORY`]
/// completed epochs, or why there are none.
#[derive(Debug)]
pub struct Reputations {
    setup: Result<Setup, String>,
    state: Mutex<State>,
}

impl Reputations {
    /// Reputation under `committee`'s genesis; without one, unavailable (with the reason).
    pub fn new(committee: Option<&Committee>) -> Self {
        let setup = match committee {
            Some(c) => Setup::from_committee(c),
            None => Err(
                "this node has no genesis (no quota committee configured): reputation \
                 needs the committee's validators as its pre-trusted peers"
                    .to_owned(),
            ),
        };
        Self {
            setup,
            state: Mutex::new(State::default()),
        }
    }

    /// Why this node has no reputation, if it has none.
    pub fn unavailable(&self) -> Option<&str> {
        self.setup.as_ref().err().map(String::as_str)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every write replaces whole values: a poisoned lock still holds a consistent state.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a refresh at `now` would compute anything: the log's state hash or the
    /// current epoch changed since the last one (always false when unavailable).
    pub fn due(&self, state_hash: Digest, now: Timestamp) -> bool {
        let Ok(setup) = &self.setup else {
            return false;
        };
        self.state().last != Some((state_hash, setup.index_at(now)))
    }

    /// Computes, over `entries` (the log whose state hash is `state_hash`), the current epoch
    /// up to `now`, the latest completed epoch, and completed epochs the history lacks.
    /// Blocking work: call it off the async worker threads.
    ///
    /// # Errors
    /// [`RefreshError`] when unavailable, or when an epoch cannot be computed (nothing is
    /// kept from this refresh then).
    pub fn refresh(
        &self,
        state_hash: Digest,
        entries: &[Signed<Entry>],
        now: Timestamp,
    ) -> Result<Refreshed, RefreshError> {
        let setup = self
            .setup
            .as_ref()
            .map_err(|why| RefreshError::Unavailable(why.clone()))?;
        let current = setup.index_at(now);
        let (held, hash_changed): (BTreeSet<u64>, bool) = {
            let state = self.state();
            (
                state.completed.keys().copied().collect(),
                state.last.map(|(h, _)| h) != Some(state_hash),
            )
        };
        let wanted = completed_to_compute(current, &held, hash_changed);
        let mut completed = Vec::with_capacity(wanted.len());
        for index in wanted {
            let end = setup.epoch(index)?.end;
            completed.push(setup.compute(entries, index, end)?);
        }
        let provisional = match current {
            Some(index) if setup.epoch(index)?.start < now => {
                Some(setup.compute(entries, index, now)?)
            }
            _ => None,
        };
        let done = Refreshed {
            current,
            completed: completed.len(),
            providers: provisional
                .as_ref()
                .map_or(0, |s| s.reputation.providers.len()),
        };
        let mut state = self.state();
        for s in completed {
            state.completed.insert(s.index, s);
        }
        let oldest = oldest_kept(current);
        state.completed.retain(|index, _| *index >= oldest);
        state.current = provisional;
        state.computed_at = Some(now);
        state.last = Some((state_hash, current));
        Ok(done)
    }

    /// `provider`'s standing: the current (provisional) and latest completed epochs.
    pub fn view(&self, provider: &AgoraId) -> ReputationView {
        if let Err(why) = &self.setup {
            return ReputationView::unavailable(why.clone());
        }
        let state = self.state();
        let Some(computed_at) = state.computed_at else {
            return ReputationView::unavailable(
                "not computed yet: the node computes reputation shortly after it starts".to_owned(),
            );
        };
        let last = state.last.map(|(h, _)| h);
        ReputationView {
            available: true,
            reason: None,
            computed_at: Some(computed_at.to_string()),
            state_hash: last.map(|h| h.to_string()),
            current: state.current.as_ref().map(|s| s.view(provider)),
            completed: state
                .completed
                .last_key_value()
                .map(|(_, s)| s.view(provider)),
        }
    }

    /// `provider`'s score in each completed epoch held, newest first.
    pub fn history(&self, provider: &AgoraId) -> Vec<EpochScore> {
        self.state()
            .completed
            .values()
            .rev()
            .map(|s| s.view(provider))
            .collect()
    }

    /// Whether any held epoch scored `provider`.
    pub fn knows(&self, provider: &AgoraId) -> bool {
        let state = self.state();
        state
            .current
            .iter()
            .chain(state.completed.values())
            .any(|s| s.reputation.providers.contains_key(provider))
    }

    /// Trust (parts per billion) by provider, for ordering offers: the latest completed
    /// epoch's, then the current epoch's (0 for providers without a score).
    pub fn trust(&self) -> BTreeMap<AgoraId, (u64, u64)> {
        let state = self.state();
        let mut trust: BTreeMap<AgoraId, (u64, u64)> = BTreeMap::new();
        if let Some((_, s)) = state.completed.last_key_value() {
            for (id, p) in &s.reputation.providers {
                trust.entry(*id).or_default().0 = p.trust_ppb;
            }
        }
        if let Some(s) = &state.current {
            for (id, p) in &s.reputation.providers {
                trust.entry(*id).or_default().1 = p.trust_ppb;
            }
        }
        trust
    }

    /// The gossipsub application score of `peer` from reputation, in `[-1, 1]`: the latest
    /// completed epoch's ([`Reputation::gossip_score`]), the current epoch's while none has
    /// completed, 0 without either.
    pub fn gossip_score(&self, peer: &AgoraId) -> f64 {
        let state = self.state();
        state
            .completed
            .last_key_value()
            .map(|(_, s)| s)
            .or(state.current.as_ref())
            .map_or(0.0, |s| s.reputation.gossip_score(peer))
    }
}

/// The oldest completed epoch kept when `current` is the current one.
fn oldest_kept(current: Option<u64>) -> u64 {
    current.map_or(0, |c| c.saturating_sub(HISTORY as u64))
}

/// Which completed epochs a refresh computes: those of the last [`HISTORY`] not held yet,
/// and the latest again when the log changed (late entries).
fn completed_to_compute(current: Option<u64>, held: &BTreeSet<u64>, changed: bool) -> Vec<u64> {
    let Some(current) = current else {
        return Vec::new();
    };
    (oldest_kept(Some(current))..current)
        .filter(|i| !held.contains(i) || (changed && i.saturating_add(1) == current))
        .collect()
}

/// Every [`PERIOD`] (first at once) until `stop`: refreshes `reputations` from `ledger`
/// when it is due, on a blocking thread.
pub async fn run(
    reputations: Arc<Reputations>,
    ledger: Arc<Ledger>,
    mut stop: watch::Receiver<bool>,
) {
    if let Some(why) = reputations.unavailable() {
        info!(reason = why, "reputation unavailable");
        return;
    }
    let mut every = tokio::time::interval(PERIOD);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = crate::clock::now();
        let state_hash = ledger.state_hash();
        if !reputations.due(state_hash, now) {
            continue;
        }
        let span = info_span!("reputation_refresh", %state_hash);
        let (reps, log) = (Arc::clone(&reputations), Arc::clone(&ledger));
        let inner = span.clone();
        let started = std::time::Instant::now();
        let done = tokio::task::spawn_blocking(move || {
            let _entered = inner.enter();
            let (state_hash, entries) = log.snapshot();
            reps.refresh(state_hash, &entries, now)
                .map(|r| (r, entries.len()))
        })
        .instrument(span.clone())
        .await;
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        span.in_scope(|| match done {
            Ok(Ok((r, entries))) => debug!(
                entries,
                epoch = r.current,
                completed = r.completed,
                providers = r.providers,
                elapsed_ms,
                "reputation computed"
            ),
            Ok(Err(e)) => warn!(error = %e, "cannot compute reputation"),
            Err(e) => warn!(error = %e, "reputation task failed"),
        });
    }
}

#[cfg(test)]
mod tests;
