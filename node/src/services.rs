//! The node's directory of published services: the protocol's sans-IO
//! [`agora_protocol::service::Directory`] (book, owner rate limits, gossipsub verdicts) with
//! the node's metrics.
//!
//! Records arrive by gossip on [`agora_protocol::service::SERVICES_TOPIC`], from agents at
//! `POST /v1/services` (rate-limited per owner like gossip, then published) and from peers'
//! sync pages on `/agora/service-sync/1` (on every new connection and in each
//! anti-entropy round, like offers: see `daemon::sync`), so a node that joins later lists
//! services published before it came. They are not persisted: a node that restarts learns
//! them again from its peers.

use agora_protocol::service::sync::{ServiceSyncRequest, ServiceSyncResponse};
use agora_protocol::service::{
    Directory, ServiceBookConfig, ServiceFilter, ServiceGossip, ServiceRecord, ServiceWithdrawal,
};
use agora_protocol::{Digest, Ed25519, Signed, Timestamp};
use tracing::debug;

use crate::market::Verdict;
use crate::metrics::NodeMetrics;
use crate::net::scoring::Offence;

/// The directory with metrics around it.
pub struct Services {
    inner: Directory,
    metrics: NodeMetrics,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("records", &self.len())
            .finish_non_exhaustive()
    }
}

impl Services {
    /// An empty directory with `config`'s bounds, counting into `metrics`.
    pub fn new(config: ServiceBookConfig, metrics: NodeMetrics) -> Self {
        Self {
            inner: Directory::new(config),
            metrics,
        }
    }

    /// Validates and applies services gossip that arrived on `topic` at `now`.
    pub fn on_gossip(&mut self, topic: &str, data: &[u8], now: Timestamp) -> Verdict {
        let decoded = ServiceGossip::decode_on_topic(data, topic, &Ed25519);
        if let Err(e) = &decoded {
            debug!(error = %e, "services gossip rejected");
        }
        let outcome = self.inner.on_decoded(decoded, now);
        let kind = outcome.kind.unwrap_or("unknown");
        let verdict = outcome.verdict.map_offence(Offence::from);
        self.metrics.gossip(kind, verdict.label());
        verdict
    }

    /// Applies a record or withdrawal an agent submitted (already verified) at `now`, under
    /// the same rate limit as gossip; the caller publishes it when accepted.
    pub fn submit(&mut self, msg: ServiceGossip, now: Timestamp) -> Verdict {
        let kind = msg.kind();
        let outcome = self.inner.on_decoded(Ok(msg), now);
        let verdict = outcome.verdict.map_offence(Offence::from);
        self.metrics
            .gossip(kind, &format!("submitted_{}", verdict.label()));
        verdict
    }

    /// Applies a record received over sync (already verified by the caller).
    pub fn on_synced(&mut self, record: Signed<ServiceRecord>, now: Timestamp) -> Verdict {
        let outcome = self.inner.on_synced(record, now);
        let verdict = outcome.verdict.map_offence(Offence::from);
        self.metrics.synced_service("service", verdict.label());
        verdict
    }

    /// Applies a withdrawal received over sync (already verified by the caller).
    pub fn on_synced_withdrawal(
        &mut self,
        withdrawal: Signed<ServiceWithdrawal>,
        now: Timestamp,
    ) -> Verdict {
        let outcome = self.inner.on_synced_withdrawal(withdrawal, now);
        let verdict = outcome.verdict.map_offence(Offence::from);
        self.metrics
            .synced_service("service_withdrawal", verdict.label());
        verdict
    }

    /// Counts a sync page's outcome that is not a record's (`malformed`, `bad_signature`).
    pub fn count_synced(&self, kind: &str, result: &str) {
        self.metrics.synced_service(kind, result);
    }

    /// The digest of the unexpired records held at `now`.
    pub fn digest(&self, now: Timestamp) -> Digest {
        self.inner.digest(now)
    }

    /// One page of unexpired records after the request's cursor, for a peer's sync
    /// request; an empty page when the asker starts from the beginning with a directory
    /// equal to ours.
    pub fn page(&self, req: &ServiceSyncRequest, now: Timestamp) -> ServiceSyncResponse {
        self.inner.page(req, now).to_response()
    }

    /// Drops records expired at `now`; returns how many.
    pub fn expire(&mut self, now: Timestamp) -> usize {
        self.inner.expire(now).len()
    }

    /// Unexpired records matching `filter` at `now`, by name, at most `limit`.
    pub fn query(
        &self,
        filter: &ServiceFilter,
        limit: usize,
        now: Timestamp,
    ) -> Vec<Signed<ServiceRecord>> {
        self.inner
            .book()
            .query(filter, limit, now)
            .into_iter()
            .cloned()
            .collect()
    }

    /// Records held now (expired ones until the next expiry pass).
    pub fn len(&self) -> usize {
        self.inner.book().len()
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.inner.book().is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use agora_attest::Identity;
    use agora_protocol::lease::Capability;
    use agora_protocol::service::{SERVICES_TOPIC, ServiceKind};
    use agora_protocol::{Digest, Timestamp};

    use super::*;

    fn record(owner: &Identity, provider: &Identity, seq: u64) -> Signed<ServiceRecord> {
        let now = Timestamp::from_unix_secs(1_000);
        let capability = Signed::sign(
            Capability {
                lease: Digest::of(b"lease"),
                agent: owner.agora_id(),
                provider: provider.agora_id(),
                ports: vec![8080],
                expires_at: Timestamp::from_unix_secs(5_000),
            },
            provider,
        )
        .unwrap();
        Signed::sign(
            ServiceRecord {
                owner: owner.agora_id(),
                lease: Digest::of(b"lease"),
                provider: provider.agora_id(),
                port: 8080,
                name: "greeter".into(),
                kind: ServiceKind::Mcp,
                description: String::new(),
                tunnel_endpoints: vec![],
                capability,
                seq,
                issued_at: now,
                expires_at: Timestamp::from_unix_secs(2_000),
            },
            owner,
        )
        .unwrap()
    }

    #[test]
    fn submitted_and_gossiped_records_are_listed() {
        let mut s = Services::new(ServiceBookConfig::default(), NodeMetrics::default());
        let (owner, provider) = (
            Identity::generate(&mut rand::rng()),
            Identity::generate(&mut rand::rng()),
        );
        let now = Timestamp::from_unix_secs(1_000);
        let first = ServiceGossip::Record(record(&owner, &provider, 1));
        assert_eq!(s.submit(first.clone(), now), Verdict::Accept);
        assert_eq!(s.submit(first, now), Verdict::Known);
        let newer = ServiceGossip::Record(record(&owner, &provider, 2)).encode();
        assert_eq!(s.on_gossip(SERVICES_TOPIC, &newer, now), Verdict::Accept);
        assert!(matches!(
            s.on_gossip("agora/v1/offers/eu", &newer, now),
            Verdict::Reject("wrong_topic")
        ));
        let hits = s.query(&ServiceFilter::default(), 10, now);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].body().seq, 2);
        assert_eq!(s.expire(Timestamp::from_unix_secs(2_000)), 1);
        assert!(s.is_empty());
    }
}
