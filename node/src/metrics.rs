//! The node's Prometheus metrics: Agora's own counters beside libp2p's.
//!
//! One [`prometheus_client::registry::Registry`] holds everything; `GET /metrics` encodes it.
//! Counters are cheap atomics, shared between the network task and the HTTP server.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of a gossip message outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GossipLabels {
    /// `offer`, `withdrawal` or `unknown` (did not decode).
    pub kind: String,
    /// `accepted`, or why the message was dropped (`bad_signature`, `stale`, …).
    pub result: String,
}

/// Labels of a publish attempt.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PublishLabels {
    /// `published`, `retried` (queued for a retry) or `gave_up`.
    pub result: String,
}

/// Labels of a lease outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LeaseLabels {
    /// `provider` (requests answered) or `gateway` (requests relayed).
    pub role: String,
    /// `granted`, `no_match`, or the refusal code.
    pub result: String,
}

/// Agora's own metrics.
#[derive(Debug, Clone, Default)]
pub struct NodeMetrics {
    /// Gossip messages received, by kind and outcome.
    pub gossip_messages: Family<GossipLabels, Counter>,
    /// Own messages published, by outcome.
    pub publishes: Family<PublishLabels, Counter>,
    /// Offers received over point-to-point sync, by outcome.
    pub sync_offers: Family<GossipLabels, Counter>,
    /// Service records and withdrawals received over point-to-point sync, by outcome.
    pub sync_services: Family<GossipLabels, Counter>,
    /// Offers in the book now.
    pub offers: Gauge,
    /// Connected peers now.
    pub peers: Gauge,
    /// Warm sandboxes ready now, all images together (see `runtime::sandbox::pool`).
    pub warm_sandboxes: Gauge,
    /// Lease requests answered (provider) and relayed (gateway), by result.
    pub leases: Family<LeaseLabels, Counter>,
    /// Ledger entries: `kind` is `appended` (own, `result` the fact kind) or `synced`
    /// (peers', `result` the outcome: `accepted`, `duplicate`, `pending`, `refused`,
    /// `invalid`).
    pub ledger_entries: Family<GossipLabels, Counter>,
}

impl NodeMetrics {
    /// Creates the metrics and registers them under `agora_`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("agora");
        r.register(
            "gossip_messages",
            "Gossip messages received, by kind and result",
            m.gossip_messages.clone(),
        );
        r.register(
            "publishes",
            "Own gossip publications, by result",
            m.publishes.clone(),
        );
        r.register(
            "sync_offers",
            "Offers received through point-to-point sync, by result",
            m.sync_offers.clone(),
        );
        r.register(
            "sync_services",
            "Service records and withdrawals received through point-to-point sync, by kind and result",
            m.sync_services.clone(),
        );
        r.register("offers", "Offers in the offer book", m.offers.clone());
        r.register("peers", "Connected peers", m.peers.clone());
        r.register(
            "warm_sandboxes",
            "Sandboxes started ahead and ready for a launch, all images together",
            m.warm_sandboxes.clone(),
        );
        r.register(
            "leases",
            "Lease requests answered (provider) or relayed (gateway), by result",
            m.leases.clone(),
        );
        r.register(
            "ledger_entries",
            "Ledger entries appended by this node (by fact kind) or synced from peers (by outcome)",
            m.ledger_entries.clone(),
        );
        m
    }

    /// Counts one gossip message.
    pub fn gossip(&self, kind: &str, result: &str) {
        self.gossip_messages
            .get_or_create(&GossipLabels {
                kind: kind.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    /// Counts one offer received over sync.
    pub fn synced(&self, result: &str) {
        self.sync_offers
            .get_or_create(&GossipLabels {
                kind: "offer".to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    /// Counts one service record (`kind` `service`) or withdrawal (`service_withdrawal`)
    /// received over sync.
    pub fn synced_service(&self, kind: &str, result: &str) {
        self.sync_services
            .get_or_create(&GossipLabels {
                kind: kind.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    /// Counts one lease outcome for `role` (`provider` or `gateway`).
    pub fn lease(&self, role: &str, result: &str) {
        self.leases
            .get_or_create(&LeaseLabels {
                role: role.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    /// Counts one ledger entry: `source` `appended` or `synced`, with its fact kind or
    /// outcome.
    pub fn ledger(&self, source: &str, result: &str) {
        self.ledger_entries
            .get_or_create(&GossipLabels {
                kind: source.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    /// Counts one publish outcome.
    pub fn publish(&self, result: &str) {
        self.publishes
            .get_or_create(&PublishLabels {
                result: result.to_owned(),
            })
            .inc();
    }
}

/// Encodes a registry in the Prometheus text format.
///
/// # Errors
/// Only if formatting fails, which writing to a `String` does not.
pub fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_appear_in_the_text_format() {
        let mut registry = Registry::default();
        let m = NodeMetrics::register(&mut registry);
        m.gossip("offer", "bad_signature");
        m.gossip("offer", "bad_signature");
        m.offers.set(3);
        let text = encode(&registry).unwrap();
        assert!(
            text.contains(r#"agora_gossip_messages_total{kind="offer",result="bad_signature"} 2"#),
            "{text}"
        );
        assert!(text.contains("agora_offers 3"), "{text}");
    }
}
