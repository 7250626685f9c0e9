//! [`Aggregator`]: the client side of one op, from request to certificate.
//!
//! ```text
//! new(committee, op, history, now) ──▶ poll_transmit(): a Request to every validator
//! answer bytes ──handle_bytes(now, from, bytes)──▶ votes (duplicates, bad signatures,
//!                                                  non-members, other ops ignored)
//!            Refused(Behind) ──▶ poll_transmit(): the missing certificates, to that validator
//! now ──handle_timeout(now)──▶ poll_transmit(): the request again to the silent validators
//! poll_event(): Certified(Certificate) at 2f + 1 votes, or Failed(Refused | TimedOut)
//! ```
//!
//! Call order: after `new` and after every `handle_*`, drain `poll_transmit` and
//! `poll_event`, and arm a timer for `poll_timeout`. Time is passed in; retries back off
//! exponentially from [`Config::retry_after`] up to [`Config::max_retry_after`]; the op gives
//! up at [`Config::deadline`], or as soon as more than `f` validators refused for good (no
//! quorum can form among the rest).

use core::time::Duration;
use std::collections::{BTreeMap, VecDeque};

use crate::id::AgoraId;
use crate::signed::{Digest, Signature, SignedError, Verifier};
use crate::time::Timestamp;

use super::certificate::{Certificate, VoteSig};
use super::genesis::Committee;
use super::message::{Answer, MAX_PROOFS, Request};
use super::op::{Op, Slot};
use super::refusal::Refusal;

/// Retry and give-up times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// First wait before asking silent validators again.
    pub retry_after: Duration,
    /// Longest wait between retries (the wait doubles up to it).
    pub max_retry_after: Duration,
    /// When to give up, from the start.
    pub deadline: Duration,
}

impl Default for Config {
    /// 250 ms, doubling up to 4 s; give up after 30 s.
    fn default() -> Self {
        Self {
            retry_after: Duration::from_millis(250),
            max_retry_after: Duration::from_secs(4),
            deadline: Duration::from_secs(30),
        }
    }
}

/// A request to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The validator.
    pub to: AgoraId,
    /// What to send it.
    pub request: Request,
}

/// How the op ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Certified.
    Certified(Certificate),
    /// Not certified.
    Failed(Failure),
}

/// Why an op was not certified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// More than `f` validators refused: a quorum cannot form among the others.
    Refused(Vec<(AgoraId, Refusal)>),
    /// The deadline passed first.
    TimedOut {
        /// Votes collected.
        votes: usize,
        /// Votes needed.
        quorum: usize,
        /// Refusals collected.
        refusals: Vec<(AgoraId, Refusal)>,
    },
}

/// Why an answer was not counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ignored {
    /// The op is already certified or failed.
    #[error("the op is finished")]
    Finished,
    /// The answer does not decode or its vote does not verify.
    #[error("invalid answer: {0}")]
    Invalid(#[from] SignedError),
    /// The sender (of a refusal) or signer (of a vote) is not a validator.
    #[error("{0} is not a validator")]
    NotMember(AgoraId),
    /// A vote for another op, slot or committee.
    #[error("a vote by {0} for something else")]
    OtherVote(AgoraId),
    /// A second answer from a validator that already voted.
    #[error("{0} already voted")]
    Duplicate(AgoraId),
}

/// Collects votes for one op into a certificate.
#[derive(Debug)]
pub struct Aggregator {
    committee: Committee,
    op: Op,
    digest: Digest,
    slot: Slot,
    history: Vec<Certificate>,
    proofs: Vec<Certificate>,
    votes: BTreeMap<AgoraId, Signature>,
    refused: BTreeMap<AgoraId, Refusal>,
    caught_up: BTreeMap<AgoraId, u64>,
    outbox: VecDeque<Transmit>,
    events: VecDeque<Event>,
    config: Config,
    deadline: Timestamp,
    next_retry: Timestamp,
    backoff: Duration,
    done: bool,
}

impl Aggregator {
    /// Starts collecting votes for `op` at `now`. `history` holds the certificates of the
    /// op's account the client has (an agent: its chain; a provider: the lock's), used for
    /// the request's proofs (the previous position's, or the lock's) and to catch lagging
    /// validators up.
    pub fn new(
        committee: Committee,
        op: Op,
        history: Vec<Certificate>,
        now: Timestamp,
        config: Config,
    ) -> Self {
        let slot = op.slot();
        let tip = match slot {
            Slot::Seq { account, seq } => seq.checked_sub(1).map(|s| (account, s)),
            Slot::Close { account, lock_seq } => Some((account, lock_seq)),
            Slot::Pool { .. } => None,
        };
        let proofs = history
            .iter()
            .filter(|c| tip.is_some_and(|(account, seq)| c.slot() == Slot::Seq { account, seq }))
            .take(1)
            .cloned()
            .collect();
        let mut aggregator = Self {
            digest: op.digest(),
            committee,
            op,
            slot,
            history,
            proofs,
            votes: BTreeMap::new(),
            refused: BTreeMap::new(),
            caught_up: BTreeMap::new(),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            config,
            deadline: now.saturating_add(config.deadline),
            next_retry: now.saturating_add(config.retry_after),
            backoff: config.retry_after,
            done: false,
        };
        for to in aggregator.committee.validators().to_vec() {
            aggregator.send(to);
        }
        aggregator
    }

    /// The op.
    pub fn op(&self) -> &Op {
        &self.op
    }

    /// The op's digest.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// Votes collected so far.
    pub fn vote_count(&self) -> usize {
        self.votes.len()
    }

    /// Whether the op is certified or failed.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Handles answer bytes from validator `from`, decoding them with `verifier`.
    ///
    /// # Errors
    /// [`Ignored`]: the answer did not count (nothing changed).
    pub fn handle_bytes(
        &mut self,
        now: Timestamp,
        from: AgoraId,
        bytes: &[u8],
        verifier: &impl Verifier,
    ) -> Result<(), Ignored> {
        if self.done {
            return Err(Ignored::Finished);
        }
        let answer = Answer::decode(bytes, verifier)?;
        self.handle_answer(now, from, answer)
    }

    /// Handles a decoded (so verified) answer from validator `from`.
    ///
    /// # Errors
    /// [`Ignored`]: the answer did not count (nothing changed).
    pub fn handle_answer(
        &mut self,
        _now: Timestamp,
        from: AgoraId,
        answer: Answer,
    ) -> Result<(), Ignored> {
        if self.done {
            return Err(Ignored::Finished);
        }
        match answer {
            Answer::Vote(vote) => {
                let signer = vote.signer();
                if !self.committee.is_member(&signer) {
                    return Err(Ignored::NotMember(signer));
                }
                let body = vote.body();
                if body.genesis != self.committee.digest()
                    || body.slot != self.slot
                    || body.op != self.digest
                {
                    return Err(Ignored::OtherVote(signer));
                }
                if self.votes.contains_key(&signer) {
                    return Err(Ignored::Duplicate(signer));
                }
                self.votes.insert(signer, *vote.signature());
                self.refused.remove(&signer);
                self.check_quorum();
            }
            Answer::Refused(refusal) => {
                if !self.committee.is_member(&from) {
                    return Err(Ignored::NotMember(from));
                }
                if self.votes.contains_key(&from) {
                    return Err(Ignored::Duplicate(from));
                }
                if let Refusal::Behind { next_seq, .. } = refusal
                    && self.catch_up(from, next_seq)
                {
                    return Ok(());
                }
                self.refused.insert(from, refusal);
                let n = self.committee.validators().len();
                if self.refused.len() > n - self.committee.quorum() {
                    self.finish(Event::Failed(Failure::Refused(self.refusals())));
                }
            }
        }
        Ok(())
    }

    /// Gives up at the deadline; asks silent validators again when a retry is due.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        if self.done {
            return;
        }
        if now >= self.deadline {
            self.finish(Event::Failed(Failure::TimedOut {
                votes: self.votes.len(),
                quorum: self.committee.quorum(),
                refusals: self.refusals(),
            }));
            return;
        }
        if now < self.next_retry {
            return;
        }
        let silent: Vec<AgoraId> = self
            .committee
            .validators()
            .iter()
            .filter(|v| !self.votes.contains_key(v) && !self.refused.contains_key(v))
            .copied()
            .collect();
        for to in silent {
            self.send(to);
        }
        self.backoff = self
            .backoff
            .saturating_mul(2)
            .min(self.config.max_retry_after);
        self.next_retry = now.saturating_add(self.backoff);
    }

    /// When to call [`Aggregator::handle_timeout`] next (`None` once finished).
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        (!self.done).then(|| self.next_retry.min(self.deadline))
    }

    /// The next request to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.pop_front()
    }

    /// The outcome, once.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn send(&mut self, to: AgoraId) {
        self.outbox.push_back(Transmit {
            to,
            request: Request {
                op: self.op.clone(),
                proofs: self.proofs.clone(),
            },
        });
    }

    /// Sends `to` the account's certificates from `next_seq` on (as many as fit), once per
    /// `next_seq`. False when there is nothing new to send.
    fn catch_up(&mut self, to: AgoraId, next_seq: u64) -> bool {
        if self.caught_up.get(&to) == Some(&next_seq) {
            return false;
        }
        let account = self.op.account();
        let mut proofs: Vec<Certificate> = self
            .history
            .iter()
            .filter(|c| matches!(c.slot(), Slot::Seq { account: a, seq } if a == account && seq >= next_seq))
            .cloned()
            .collect();
        proofs.sort_by_key(|c| match c.slot() {
            Slot::Seq { seq, .. } => seq,
            Slot::Close { .. } | Slot::Pool { .. } => u64::MAX,
        });
        proofs.truncate(MAX_PROOFS);
        if proofs.is_empty() {
            return false;
        }
        self.caught_up.insert(to, next_seq);
        self.outbox.push_back(Transmit {
            to,
            request: Request {
                op: self.op.clone(),
                proofs,
            },
        });
        true
    }

    fn check_quorum(&mut self) {
        let quorum = self.committee.quorum();
        if self.votes.len() < quorum {
            return;
        }
        let votes = self
            .votes
            .iter()
            .take(quorum)
            .map(|(validator, signature)| VoteSig {
                validator: *validator,
                signature: *signature,
            })
            .collect();
        let certificate =
            Certificate::assemble(self.op.clone(), self.digest, self.committee.digest(), votes);
        self.finish(Event::Certified(certificate));
    }

    fn refusals(&self) -> Vec<(AgoraId, Refusal)> {
        self.refused
            .iter()
            .map(|(id, refusal)| (*id, refusal.clone()))
            .collect()
    }

    fn finish(&mut self, event: Event) {
        self.done = true;
        self.outbox.clear();
        self.events.push_back(event);
    }
}
