//! The services directory as one node runs it, sans-IO: the [`ServiceBook`] fed by gossip,
//! a rate limit per owner, and the [`Verdict`] gossipsub needs for every message (the
//! [`crate::market::Market`]'s design for offers).
//!
//! Call order: [`Directory::on_gossip`] (or [`Directory::on_decoded`]) for every message
//! of the services topic and for records an agent submits to this node's API (both are
//! rate-limited per owner: an HTTP client is no more trusted than a peer);
//! [`Directory::expire`] now and then; reads at any time through [`Directory::book`].
//!
//! Only live gossip carries records: there is no catch-up sync as for offers. A record
//! lives at most [`super::MAX_SERVICE_TTL`] and owners republish, so a node that joins
//! later learns a service at its next republication.
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

use super::ServiceRecord;
use super::book::{ServiceBook, ServiceBookConfig, ServiceKey, ServiceRejected};
use super::gossip::ServiceGossip;
use crate::gossip::GossipError;
use crate::id::AgoraId;
use crate::market::{Gossiped, Offence, Verdict, screen};
use crate::rate::{RateLimit, RateLimiter};
use crate::signed::{Signed, Verifier};
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
    /// owners as the book holds records.
    pub fn new(config: ServiceBookConfig) -> Self {
        Self {
            book: ServiceBook::new(config),
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
        let msg = match screen(decoded, &mut self.limiter, now) {
            Ok(msg) => msg,
            Err(outcome) => return outcome,
        };
        let kind = Some(msg.kind());
        match msg {
            ServiceGossip::Record(record) => match self.book.insert(record.clone(), now) {
                Ok(inserted) => Outcome::accepted(kind, Some(record), inserted.evicted()),
                Err(e) => Outcome::unchanged(verdict_of(&e), kind),
            },
            ServiceGossip::Withdrawal(w) => match self.book.withdraw(&w, now) {
                Ok(_) => Outcome::accepted(kind, None, Some(w.body().key())),
                Err(e) => Outcome::unchanged(verdict_of(&e), kind),
            },
        }
    }

    /// Drops records expired at `now` (and old tombstones); returns their keys.
    pub fn expire(&mut self, now: Timestamp) -> Vec<ServiceKey> {
        self.book.expire(now)
    }
}
