//! The quota committee: accounts certified per sequence number (the FastPay pattern).
//!
//! ```text
//! agent ──Signed<ChainOp> (Lock)──▶ Aggregator ──Request──▶ each Validator (n = 3f + 1)
//!   Validator: check chain, balance, signatures ──▶ Persist ──store──▶ release ──▶ Vote
//! Aggregator ◀──Answer (Vote | Refused)── ... 2f + 1 votes ──▶ Certificate
//! agent ──lock Certificate──▶ provider: provider::quota_answer ──▶ QuotaAnswer ──▶ admission
//! provider ──Signed<Settle> + receipt──▶ Aggregator ──▶ closing Certificate (spent, rest back)
//! anyone, after expiry + grace ──Unlock──▶ Aggregator ──▶ closing Certificate (all back)
//! every node: Accounts::apply(certificate) ──▶ balance, locks, spent
//! ```
//!
//! - [`Genesis`] / [`Committee`]: the validators (`n = 3f + 1`), trusted issuers, epochs, the
//!   free-tier allowance and its per-epoch cap, lock rules; its digest is in every vote.
//! - [`Op`]s, each in one [`Slot`] (see [`op`]): the agent's own hash-chained [`ChainOp`]s
//!   (credit from an attestation, lock for a lease, top-up of a lease's lock to extend it),
//!   free-tier claims from a per-epoch pool
//!   ([`FreeTierClaim`]), and the closing of each lock ([`Settle`] by its provider with the
//!   usage receipt, or [`Unlock`] by anyone once it lapsed and the settle grace passed),
//!   and locks above the balance under the agent's owner's approval ([`ApprovedLock`]).
//! - [`Vote`]: a validator signs (committee, slot, op digest), at most one op per slot.
//! - [`Certificate`]: an op with exactly `2f + 1` distinct members' votes. With at most `f`
//!   faulty validators, two certificates in one slot would need a correct validator to vote
//!   twice, so each slot has at most one certified op: no lock is double-spent, no lock is
//!   closed twice, and no more than the cap of free-tier grants is certified per epoch.
//! - [`Validator`]: checks and votes, persisting before answering ([`Persist`]); rebuilt
//!   from its stored [`VoteRecord`]s after a restart.
//! - [`Aggregator`]: the client collecting votes, with retries, catch-up of lagging
//!   validators and a deadline.
//! - [`Accounts`]: certified ops applied in order: balance, locks, spent.
//! - [`provider`]: the provider's check of a lock certificate, giving admission its
//!   [`QuotaAnswer`](crate::quota::QuotaAnswer).
//!
//! Only the agent can write its own chain, so nobody else can take a sequence number from
//! it; ops others may start (settling, unlocking, free-tier claims that contend for pool
//! slots) have slots of their own. If the agent equivocates (two ops for one `seq`), it may
//! stall its own chain, as in FastPay; its open locks can still be settled and unlocked.
//!
//! Everything is sans-IO: time comes in as `now`, signing keys as [`Signer`](crate::Signer)s,
//! signature checks through [`Verifier`](crate::Verifier)s.
//!
//! ```
//! use agora_protocol::committee::{
//!     Action, Aggregator, AggregatorConfig, ChainOp, Event, FreeTier, Genesis, LockRules, Op,
//!     Outcome, Validator,
//! };
//! use agora_protocol::{Digest, Signed, Signer, Timestamp};
//! use ed25519_dalek::SigningKey;
//!
//! let keys: Vec<SigningKey> = (1..=4).map(|n| SigningKey::from_bytes(&[n; 32])).collect();
//! let committee = agora_protocol::committee::Committee::new(Genesis {
//!     f: 1,
//!     validators: keys.iter().map(|k| k.id()).collect(),
//!     issuers: Vec::new(),
//!     start_unix_secs: 1_800_000_000,
//!     epoch_secs: 86_400,
//!     free_tier: FreeTier { allowance_micro: 10_000_000, cap_per_epoch: 100 },
//!     locks: LockRules::default(),
//! })?;
//! let mut validators = keys
//!     .into_iter()
//!     .map(|k| Validator::new(committee.clone(), k))
//!     .collect::<Result<Vec<_>, _>>()?;
//!
//! // An agent claims the free tier of epoch 0, pool slot 7.
//! let agent = SigningKey::from_bytes(&[9; 32]);
//! let now = Timestamp::from_unix_secs(1_800_000_100);
//! let claim = agora_protocol::committee::FreeTierClaim { account: agent.id(), epoch: 0, index: 7 };
//! let op = Op::FreeTier(Signed::sign(claim, &agent)?);
//! let mut client = Aggregator::new(committee.clone(), op, Vec::new(), now, AggregatorConfig::default());
//! while let Some(t) = client.poll_transmit() {
//!     let validator = validators.iter_mut().find(|v| v.id() == t.to).unwrap();
//!     if let Outcome::Persist(p) = validator.handle_request(now, &t.request) {
//!         let _stored = p.to_bytes()?; // the driver writes this durably first
//!         let vote = validator.release(p);
//!         let _ = client.handle_answer(now, t.to, agora_protocol::committee::Answer::Vote(vote));
//!     }
//! }
//! let Some(Event::Certified(certificate)) = client.poll_event() else { panic!() };
//! let mut accounts = agora_protocol::committee::Accounts::new(committee);
//! accounts.apply(&certificate)?;
//! assert_eq!(accounts.get(&agent.id()).unwrap().available_micro(), 10_000_000);
//! # let _ = (Action::Lock, ChainOp::MAX_PAYLOAD, Digest::of(b""));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod account;
pub mod aggregator;
pub mod certificate;
pub mod credit;
pub mod genesis;
pub mod message;
pub mod op;
pub mod provider;
pub mod refusal;
pub mod rules;
pub mod validator;
pub mod vote;

pub use account::{Account, Accounts, Applied, ApplyError, Lock};
pub use aggregator::{Aggregator, Config as AggregatorConfig, Event, Failure, Ignored, Transmit};
pub use certificate::{
    Certificate, CertificateError, MAX_CERTIFICATE_BYTES, UncheckedCertificate, VoteSig,
};
pub use credit::CreditProblem;
pub use genesis::{
    Committee, FreeTier, Genesis, GenesisError, LockRules, MAX_ISSUERS, MAX_VALIDATORS,
};
pub use message::{Answer, MAX_PROOFS, Request, RequestError};
pub use op::{
    Action, ApprovedLock, ChainOp, CreditKey, FreeTierClaim, LockTerms, MAX_OP_BYTES, Op, Release,
    Settle, Slot, TopUpTerms, Unlock,
};
pub use provider::{Cover, LockCheckError, check_lock, check_top_up, quota_answer};
pub use refusal::{
    ApprovalProblem, DelegationProblem, ReceiptField, Refusal, ReleaseProblem, TopUpProblem,
};
pub use validator::{Outcome, Persist, RestoreError, Validator, decode_records};
pub use vote::{RecordError, Vote, VoteRecord};

#[cfg(test)]
mod test_support;

#[cfg(test)]
mod genesis_tests;

#[cfg(test)]
mod validator_tests;

#[cfg(test)]
mod refusal_tests;

#[cfg(test)]
mod aggregator_tests;

#[cfg(test)]
mod account_tests;

#[cfg(test)]
mod provider_tests;

#[cfg(test)]
mod prop_tests;

#[cfg(test)]
mod top_up_tests;

#[cfg(test)]
mod release_tests;

#[cfg(test)]
mod delegation_tests;

#[cfg(test)]
mod approval_tests;
