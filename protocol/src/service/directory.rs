//! The services directory as one node runs it, sans-IO: the [`ServiceBook`] fed by gossip,
//! a rate limit per owner, and the [`Verdict`] gossipsub needs for every message (the
//! [`crate::market::Market`]'s design for offers).
//!
//! Call order: [`Directory::on_gossip`] (or [`Directory::on_decoded`]) for every message
//! of the services topic and for records an agent submits to this node's API (both are
//! rate-limited per owner: an HTTP client is no more trusted than a peer);
//! [`Directory::on_synced`] / [`Directory::on_synced_withdrawal`] for what a sync page
//! brought (verified by the caller; not rate-limited: the asker chose to ask);
//! [`Directory::expire`] now and then; reads at any time through [`Directory::book`],
//! [`Directory::digest`] and [`Directory::page`] (a peer's sync request, see
//! [`super::sync`]).
//!
//! Records arrive by live gossip and by sync on connect and every so often, as offers do:
//! a node that joins later lists services published before it came.
//!
//! ```
//! use agora_protocol::market::Verdict;
//! use agora_protocol::service::{Directory, SERVICES_TOPIC};
//! use agora_protocol::{Ed25519, Timestamp};
//!
//! let mut dir = Directory::default();
//! let now = Timestamp::from_unix_secs(1_000);
//! // Garbage is rejected (gossipsub penalises its sender).
//! let outcome = dir.on_gossip(SERVICES_TOPIC, &[3, 1, 2], now, &Ed25519);
//! assert!(matches!(outcome.verdict, Verdict::Reject(_)));
//! assert!(dir.book().is_empty());
//! ```

use core::time::Duration;

use super::book::{ServiceBook, ServiceBookConfig, ServiceKey, ServiceRejected};
use super::gossip::ServiceGossip;
use super::sync::{ServiceSync, ServiceSyncRequest, directory_digest};
use super::{ServiceRecord, ServiceWithdrawal};
use crate::gossip::GossipError;
use crate::id::AgoraId;
use crate::market::{Gossiped, Offence, Verdict, screen};
use crate::rate::{RateLimit, RateLimiter};
use crate::signed::{Digest, Signed, Verifier};
use crate::sync::{self, Page, Remembered};
use crate::time::Timestamp;

/// Limits on what one owner may publish: a burst of 8, then one every 5 s.
pub const OWNER_RATE: RateLimit = RateLimit {
    burst: 8,
    interval: Duration::from_secs(5),
};

/// What one input did: the verdict (kinds `"service"`, `"service_withdrawal"`), the record
/// the book now holds for its key, and a key whose record it no longer holds (withdrawn, or
/// evicted for the stored one).
pub type Outcome = crate::market::Outcome<Signed<ServiceRecord>, ServiceKey>;

impl Gossiped for ServiceGossip {
    fn signer(&self) -> AgoraId {
        self.owner()
    }
    fn kind(&self) -> &'static str {
        ServiceGossip::kind(self)
    }
}

fn verdict_of(e: &ServiceRejected) -> Verdict {
    match e {
        ServiceRejected::Duplicate { .. } => Verdict::Known,
        ServiceRejected::Stale { .. } => Verdict::Ignore("stale", Some(Offence::Stale)),
        ServiceRejected::Expired { .. } => Verdict::Ignore("expired", None),
        ServiceRejected::FromFuture { .. } => Verdict::Ignore("from_future", None),
        ServiceRejected::OwnerFull { .. } => Verdict::Ignore("owner_full", None),
        ServiceRejected::Full { .. } => Verdict::Ignore("book_full", None),
    }
}

/// One node's directory of published services.
#[derive(Debug, Clone)]
pub struct Directory {
    book: ServiceBook,
    /// Signed withdrawals still within the book's tombstone time, to pass on in sync pages.
    withdrawals: Remembered<ServiceKey, ServiceWithdrawal>,
    limiter: RateLimiter<AgoraId>,
}

impl Default for Directory {
    /// A directory with the default [`ServiceBookConfig`].
    fn default() -> Self {
        Self::new(ServiceBookConfig::default())
    }
}

impl Directory {
    /// An empty directory whose book has `config`'s bounds; the rate limiter tracks as many
    /// owners as the book holds records, and as many withdrawals are remembered.
    pub fn new(config: ServiceBookConfig) -> Self {
        Self {
            book: ServiceBook::new(config),
            withdrawals: Remembered::new(config.max_records, config.tombstone_ttl),
            limiter: RateLimiter::new(OWNER_RATE, config.max_records),
        }
    }

    /// The book (for queries).
    pub fn book(&self) -> &ServiceBook {
        &self.book
    }

    /// Validates and applies services gossip `data` that arrived on `topic` at `now`.
    pub fn on_gossip(
        &mut self,
        topic: &str,
        data: &[u8],
        now: Timestamp,
        verifier: &impl Verifier,
    ) -> Outcome {
        self.on_decoded(ServiceGossip::decode_on_topic(data, topic, verifier), now)
    }

    /// Applies the result of [`ServiceGossip::decode_on_topic`] (or of decoding a record
    /// an agent submitted) at `now`, rate-limiting its owner.
    pub fn on_decoded(
        &mut self,
        decoded: Result<ServiceGossip, GossipError>,
        now: Timestamp,
    ) -> Outcome {
        match screen(decoded, &mut self.limiter, now) {
            Ok(msg) => self.apply(msg, now),
            Err(outcome) => outcome,
        }
    }

    /// Applies a record received over sync (already verified by the caller).
    pub fn on_synced(&mut self, record: Signed<ServiceRecord>, now: Timestamp) -> Outcome {
        self.apply(ServiceGossip::Record(record), now)
    }

    /// Applies a withdrawal received over sync (already verified by the caller).
    pub fn on_synced_withdrawal(
        &mut self,
        withdrawal: Signed<ServiceWithdrawal>,
        now: Timestamp,
    ) -> Outcome {
        self.apply(ServiceGossip::Withdrawal(withdrawal), now)
    }

    fn apply(&mut self, msg: ServiceGossip, now: Timestamp) -> Outcome {
        let kind = Some(msg.kind());
        match msg {
            ServiceGossip::Record(record) => match self.book.insert(record.clone(), now) {
                Ok(inserted) => {
                    self.withdrawals.forget(&record.body().key());
                    Outcome::accepted(kind, Some(record), inserted.evicted())
                }
                Err(e) => Outcome::unchanged(verdict_of(&e), kind),
            },
            ServiceGossip::Withdrawal(w) => match self.book.withdraw(&w, now) {
                Ok(_) => {
                    let key = w.body().key();
                    self.withdrawals.remember(key, w);
                    Outcome::accepted(kind, None, Some(key))
                }
                Err(e) => Outcome::unchanged(verdict_of(&e), kind),
            },
        }
    }

    /// Drops records expired at `now` (and old tombstones and withdrawals); returns their
    /// keys.
    pub fn expire(&mut self, now: Timestamp) -> Vec<ServiceKey> {
        self.withdrawals.expire(now);
        self.book.expire(now)
    }

    /// The digest of the unexpired records held at `now` (see [`directory_digest`]).
    pub fn digest(&self, now: Timestamp) -> Digest {
        directory_digest(self.book.iter().filter(|r| r.body().expires_at > now))
    }

    /// The page answering a peer's sync request at `now`: unexpired records in key order
    /// after `req.after`, at most `req.limit` (1 to [`crate::sync::MAX_SYNC_PAGE`]), and
    /// on the first page the newest remembered withdrawals; an empty page when the asker
    /// starts from the beginning with a directory equal to ours.
    pub fn page(&self, req: &ServiceSyncRequest, now: Timestamp) -> Page<'_, ServiceSync> {
        sync::page(
            req,
            || self.digest(now),
            self.book
                .iter_after(req.after)
                .filter(move |r| r.body().expires_at > now),
            ServiceRecord::key,
            &self.withdrawals,
        )
    }
}
