//! State the node's tasks share: the market, a snapshot of the network, metrics.
//!
//! Locks are `std` mutexes held for short, non-async sections only (a query, an insert, a
//! snapshot swap); nothing awaits while holding one.

use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use agora_protocol::{AgoraId, Timestamp};
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::config::NodeConfig;
use crate::market::Market;
use crate::metrics::NodeMetrics;

/// One connected peer, as the HTTP API shows it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct PeerStatus {
    /// libp2p peer id.
    pub peer_id: String,
    /// The same key as an Agora id, when it is an ed25519 key.
    pub agora_id: Option<String>,
    /// Addresses of its open connections.
    pub addresses: Vec<String>,
    /// Its identify agent string (e.g. `agora/0.1.0`).
    pub agent_version: Option<String>,
    /// Last ping round trip, milliseconds.
    pub rtt_ms: Option<u64>,
    /// gossipsub's score of it (includes our application score).
    pub score: Option<f64>,
    /// Our application-specific score: penalties for stale, flooding or invalid input
    /// (negative), plus the provider's reputation (between -10 and 10; 0 for newcomers and
    /// on nodes without a genesis).
    pub app_score: f64,
    /// Offers topics it subscribes to.
    pub topics: Vec<String>,
}

/// The network as last seen by the event loop (refreshed every second and on changes).
#[derive(Debug, Clone, Default, Serialize)]
pub struct NetStatus {
    /// Addresses we listen on.
    pub listen_addrs: Vec<String>,
    /// Connected peers.
    pub peers: Vec<PeerStatus>,
    /// Topics we subscribe to.
    pub topics: Vec<String>,
}

/// Everything shared by the node's tasks.
pub struct Shared {
    /// This node's id.
    pub id: AgoraId,
    /// The same key as a libp2p peer id.
    pub peer_id: libp2p::PeerId,
    /// The effective configuration.
    pub config: NodeConfig,
    /// When the node started.
    pub started_at: Timestamp,
    /// Metrics (the registry is complete once the node is built).
    pub registry: Registry,
    /// Agora's own counters.
    pub metrics: NodeMetrics,
    /// Tokens this node handed to agents (each under a delegation to this node).
    pub tokens: Arc<crate::agent::Tokens>,
    identity: Arc<agora_attest::Identity>,
    market: Mutex<Market>,
    status: RwLock<Arc<NetStatus>>,
    runtimes: std::sync::OnceLock<RuntimeReport>,
    supervisor: std::sync::OnceLock<Arc<crate::runtime::supervisor::Supervisor>>,
    signup: std::sync::OnceLock<Arc<crate::agent::SignupService>>,
    gateway: std::sync::OnceLock<Arc<crate::lease::Gateway>>,
    services: Mutex<crate::services::Services>,
    net: std::sync::OnceLock<tokio::sync::mpsc::Sender<super::NetCommand>>,
    relay: std::sync::OnceLock<crate::tunnel::relay::Relay>,
    ledger: std::sync::OnceLock<Arc<crate::ledger::Ledger>>,
    quota: std::sync::OnceLock<Arc<crate::committee::Quota>>,
    reputation: std::sync::OnceLock<Arc<crate::reputation::Reputations>>,
}

/// What a provider can run, as `GET /v1/node` shows it.
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct RuntimeReport {
    /// Runtimes this node runs, with the images each offers.
    pub available: std::collections::BTreeMap<String, Vec<agora_protocol::offer::ImageRef>>,
    /// Configured runtimes this host cannot run, and why.
    pub unavailable: std::collections::BTreeMap<String, String>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Bundles the parts.
    pub fn new(
        identity: Arc<agora_attest::Identity>,
        config: NodeConfig,
        started_at: Timestamp,
        registry: Registry,
        metrics: NodeMetrics,
        market: Market,
    ) -> Self {
        let services = crate::services::Services::new(
            agora_protocol::service::ServiceBookConfig::default(),
            metrics.clone(),
        );
        Self {
            id: identity.agora_id(),
            peer_id: identity.peer_id(),
            tokens: Arc::new(crate::agent::Tokens::new(identity.agora_id())),
            identity,
            config,
            started_at,
            registry,
            metrics,
            market: Mutex::new(market),
            status: RwLock::new(Arc::new(NetStatus::default())),
            runtimes: std::sync::OnceLock::new(),
            supervisor: std::sync::OnceLock::new(),
            signup: std::sync::OnceLock::new(),
            gateway: std::sync::OnceLock::new(),
            services: Mutex::new(services),
            net: std::sync::OnceLock::new(),
            relay: std::sync::OnceLock::new(),
            ledger: std::sync::OnceLock::new(),
            quota: std::sync::OnceLock::new(),
            reputation: std::sync::OnceLock::new(),
        }
    }

    /// This node's key: it signs as the delegate of agents that handed it a token.
    pub fn identity(&self) -> &Arc<agora_attest::Identity> {
        &self.identity
    }

    /// Records the provider's runtimes and supervisor (once, at start).
    pub fn set_runtimes(
        &self,
        report: RuntimeReport,
        supervisor: Arc<crate::runtime::supervisor::Supervisor>,
    ) {
        let _ = self.runtimes.set(report);
        let _ = self.supervisor.set(supervisor);
    }

    /// The provider's runtimes, when this node is a provider.
    pub fn runtimes(&self) -> Option<&RuntimeReport> {
        self.runtimes.get()
    }

    /// The workload supervisor, when this node is a provider.
    pub fn supervisor(&self) -> Option<&Arc<crate::runtime::supervisor::Supervisor>> {
        self.supervisor.get()
    }

    /// Records the agent signup service (once, at start).
    pub fn set_signup(&self, signup: Arc<crate::agent::SignupService>) {
        let _ = self.signup.set(signup);
    }

    /// The agent signup service (set at start).
    pub fn signup(&self) -> Option<&Arc<crate::agent::SignupService>> {
        self.signup.get()
    }

    /// Records the lease gateway (once, at start).
    pub fn set_gateway(&self, gateway: Arc<crate::lease::Gateway>) {
        let _ = self.gateway.set(gateway);
    }

    /// Sets the tunnel relay (once, at start, when `[relay] enabled`).
    pub fn set_relay(&self, relay: crate::tunnel::relay::Relay) {
        let _ = self.relay.set(relay);
    }

    /// Records the ledger (once, at start).
    pub fn set_ledger(&self, ledger: Arc<crate::ledger::Ledger>) {
        let _ = self.ledger.set(ledger);
    }

    /// The node's ledger (set at start).
    pub fn ledger(&self) -> Option<&Arc<crate::ledger::Ledger>> {
        self.ledger.get()
    }

    /// Records the quota committee service (once, at start, when a genesis is configured).
    pub fn set_quota(&self, quota: Arc<crate::committee::Quota>) {
        let _ = self.quota.set(quota);
    }

    /// The quota committee service, when the node has a genesis.
    pub fn quota(&self) -> Option<&Arc<crate::committee::Quota>> {
        self.quota.get()
    }

    /// Records the reputation scores (once, at start).
    pub fn set_reputation(&self, reputation: Arc<crate::reputation::Reputations>) {
        let _ = self.reputation.set(reputation);
    }

    /// Providers' reputation (set at start; unavailable, with the reason, without a genesis).
    pub fn reputation(&self) -> Option<&Arc<crate::reputation::Reputations>> {
        self.reputation.get()
    }

    /// The tunnel relay, if this node relays.
    pub fn relay(&self) -> Option<&crate::tunnel::relay::Relay> {
        self.relay.get()
    }

    /// The directory of published services, locked (a poisoned lock is recovered, as for
    /// the market).
    pub fn services(&self) -> MutexGuard<'_, crate::services::Services> {
        self.services
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records the network loop's command channel (once, at start).
    pub fn set_net(&self, net: tokio::sync::mpsc::Sender<super::NetCommand>) {
        let _ = self.net.set(net);
    }

    /// The network loop's command channel (set at start): for publishing what agents
    /// submit.
    pub fn net(&self) -> Option<&tokio::sync::mpsc::Sender<super::NetCommand>> {
        self.net.get()
    }

    /// The lease gateway (set at start); its `local()` is this node's provider service.
    pub fn gateway(&self) -> Option<&Arc<crate::lease::Gateway>> {
        self.gateway.get()
    }

    /// The market, locked. A poisoned lock (a panic elsewhere) is recovered: the book's
    /// invariants hold after every completed call, and a node that stops serving offers
    /// because one request panicked would be worse.
    pub fn market(&self) -> MutexGuard<'_, Market> {
        self.market
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The latest network snapshot.
    pub fn status(&self) -> Arc<NetStatus> {
        self.status
            .read()
            .map(|s| Arc::clone(&s))
            .unwrap_or_else(|p| Arc::clone(&p.into_inner()))
    }

    /// Replaces the network snapshot.
    pub fn set_status(&self, status: NetStatus) {
        let mut guard = self
            .status
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard = Arc::new(status);
    }
}
