//! The running node: identity, store, market, network loop, provider advertiser and HTTP
//! API, started together and stopped in order.
//!
//! [`RunningNode::start`] brings everything up and returns once the HTTP API listens;
//! [`RunningNode::shutdown`] withdraws this provider's offer (signed), lets the network
//! flush it, stops the API and flushes the store. The `agora node start` command wires
//! signals to these (SIGINT/SIGTERM stop, SIGHUP reloads the provider section).

use core::time::Duration;
use std::net::SocketAddr;
use std::sync::Arc;

use agora_attest::Identity;
use agora_protocol::gossip::GossipMessage;
use agora_protocol::offer_book::OfferBookConfig;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{Instrument as _, debug, info, info_span, warn};

use crate::config::{NodeConfig, ProviderConfig, Role};
use crate::market::Market;
use crate::metrics::NodeMetrics;
use crate::net::{self, NetConfig};
use crate::store::{Column, RocksStore, Store};
use crate::{clock, http};

pub mod leases;
pub mod ledger;
pub mod network;
pub mod peers;
pub mod provider;
pub mod shared;
pub mod sync;
pub mod tunnel;
pub mod workloads;

pub use network::{NetCommand, split_peer};
pub use shared::{NetStatus, PeerStatus, Shared};

/// [`Column::Identity`] key recording which identity owns this data dir.
pub const OWNER_KEY: &[u8] = b"agora_id";

/// Why the node could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The key file could not be read or created.
    #[error("identity key {path}: {source}")]
    Key {
        /// The key file.
        path: std::path::PathBuf,
        /// What failed.
        #[source]
        source: agora_attest::KeyFileError,
    },
    /// The data dir belongs to another identity.
    #[error(
        "data dir {path} belongs to {owner}, but the key file holds {key}; use the matching key or another data dir"
    )]
    WrongOwner {
        /// The data dir.
        path: std::path::PathBuf,
        /// Identity recorded in the store.
        owner: String,
        /// Identity of the key file.
        key: String,
    },
    /// A workload runtime or the supervisor could not be set up.
    #[error("workload runtime: {0}")]
    Runtime(String),
    /// The store could not be opened or used.
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// The network could not be set up.
    #[error(transparent)]
    Net(#[from] net::NetError),
    /// Listening or subscribing failed.
    #[error("network: {0}")]
    Listen(String),
    /// The data dir could not be created.
    #[error("data dir {path}: {source}")]
    DataDir {
        /// The dir.
        path: std::path::PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP API could not bind its address.
    #[error("HTTP API on {addr}: {source}")]
    Http {
        /// The address.
        addr: SocketAddr,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// A provider offer could not be made.
    #[error(transparent)]
    Advertise(#[from] provider::AdvertiseError),
    /// The lease service could not restore its state.
    #[error("leases: {0}")]
    Leases(String),
    /// Agent signup could not be set up (trust roots, revocation lists, tiers).
    #[error("agent signup: {0}")]
    Signup(String),
    /// The ledger could not be read from the store.
    #[error("ledger: {0}")]
    Ledger(String),
    /// The quota committee could not be set up (genesis, stored votes).
    #[error("quota committee: {0}")]
    Quota(String),
}

impl From<crate::store::OpenError> for DaemonError {
    fn from(e: crate::store::OpenError) -> Self {
        Self::Store(e.into())
    }
}

impl From<crate::store::StoreError> for DaemonError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Store(e.into())
    }
}

/// A started node.
pub struct RunningNode {
    shared: Arc<Shared>,
    store: Arc<RocksStore>,
    http_addr: SocketAddr,
    net_tx: mpsc::Sender<NetCommand>,
    provider_tx: Option<mpsc::Sender<ProviderMsg>>,
    stop_http: watch::Sender<bool>,
    stop_reaper: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    net_task: JoinHandle<()>,
    /// The provider's workloads, when it is one (closed at shutdown).
    supervisor: Option<Arc<crate::runtime::supervisor::Supervisor>>,
}

impl std::fmt::Debug for RunningNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningNode")
            .field("id", &self.shared.id)
            .field("http", &self.http_addr)
            .finish_non_exhaustive()
    }
}

enum ProviderMsg {
    Reload(Box<ProviderConfig>),
    Stop(oneshot::Sender<()>),
}

impl RunningNode {
    /// Starts a node from a validated configuration.
    ///
    /// # Errors
    /// [`DaemonError`] naming what could not be set up.
    pub async fn start(config: NodeConfig) -> Result<Self, DaemonError> {
        create_private_dir(&config.data_dir)?;
        let key_path = config.key_path();
        let (identity, created) =
            agora_attest::keyfile::load_or_create(&key_path, &mut rand::rng()).map_err(
                |source| DaemonError::Key {
                    path: key_path.clone(),
                    source,
                },
            )?;
        if created {
            info!(key = %key_path.display(), id = %identity.agora_id(), "created a new identity");
        }
        let identity = Arc::new(identity);
        let store = Arc::new(RocksStore::open(&config.data_dir)?);
        claim_data_dir(store.as_ref(), &identity, &config)?;
        let store_dyn: Arc<dyn Store> = store.clone();

        let now = clock::now();
        let mut registry = Registry::default();
        let metrics = NodeMetrics::register(&mut registry);
        let market = Market::open(
            store_dyn.clone(),
            OfferBookConfig {
                max_offers: config.network.max_offers,
                ..OfferBookConfig::default()
            },
            metrics.clone(),
            now,
        )?;
        let net_config = NetConfig {
            idle_timeout: config.network.idle_timeout,
            max_connections: config.network.max_connections,
            kad_server: config.network.kad_server.unwrap_or(true),
            ..NetConfig::default()
        };
        let mut swarm = net::build_swarm(&identity, &net_config, &mut registry)?;
        let streams = swarm.behaviour_mut().stream.new_control();
        let libp2p_metrics = libp2p::metrics::Metrics::new(&mut registry);
        let shared = Arc::new(Shared::new(
            identity.clone(),
            config.clone(),
            now,
            registry,
            metrics,
            market,
        ));
        info!(id = %shared.id, peer_id = %shared.peer_id, data_dir = %config.data_dir.display(), "node starting");
        shared.set_signup(Arc::new(
            crate::agent::SignupService::new(identity.agora_id(), store_dyn.clone(), &config)
                .map_err(DaemonError::Signup)?,
        ));
        let evidence = ledger::open(&identity, store_dyn.clone(), shared.metrics.clone())?;
        shared.set_ledger(evidence.clone());

        let (net_tx, net_rx) = mpsc::channel(network::COMMAND_QUEUE);
        shared.set_net(net_tx.clone());
        if let Some(committee) = config.committee().map_err(DaemonError::Quota)? {
            let quota = crate::committee::Quota::open(
                identity.clone(),
                committee,
                store_dyn.clone(),
                net_tx.clone(),
            )
            .map_err(|e| DaemonError::Quota(e.to_string()))?;
            if config.has_role(Role::Validator) && !quota.is_validator() {
                return Err(DaemonError::Quota(format!(
                    "the validator role is set, but the genesis does not list {}",
                    identity.agora_id()
                )));
            }
            shared.set_quota(Arc::new(quota));
        }
        shared.set_reputation(Arc::new(crate::reputation::Reputations::new(
            shared.quota().map(|q| q.committee()),
        )));
        let mut regions = vec![config.region.clone()];
        regions.extend(
            config
                .network
                .follow_regions
                .iter()
                .filter(|r| *r != "*")
                .cloned(),
        );
        let loop_config = network::LoopConfig {
            bootstrap: config.bootstrap.iter().filter_map(split_peer).collect(),
            target_peers: config.network.target_peers,
            follow_all: config.network.follows_all_regions(),
            regions,
            sync_interval: Duration::from_secs(30),
        };
        let net_loop = network::NetworkLoop::new(
            swarm,
            shared.clone(),
            store_dyn.clone(),
            net_rx,
            loop_config,
            libp2p_metrics,
        )
        .map_err(DaemonError::Listen)?;
        let is_provider = config.provider.is_some() && config.has_role(Role::Provider);
        let (lease_in_tx, lease_in_rx) = mpsc::channel(crate::lease::MAX_CONCURRENT);
        let net_loop = if is_provider {
            net_loop.with_lease_inbound(lease_in_tx)
        } else {
            net_loop
        };
        let net_task = tokio::spawn(net_loop.run().instrument(info_span!("net")));
        let gateway = Arc::new(
            crate::lease::Gateway::new(
                identity.agora_id(),
                store_dyn.clone(),
                net_tx.clone(),
                config.leases.provider_timeout,
                shared.metrics.clone(),
            )
            .with_approvals(config.approvals.timeout, config.approvals.webhook.clone())
            .with_provider_lost_after(config.leases.provider_lost_after),
        );
        gateway.set_streams(streams.clone());
        shared.set_gateway(gateway.clone());

        let mut tasks = Vec::new();
        let (stop_reaper, _) = watch::channel(false);
        if let Some(quota) = shared.quota() {
            tasks.push(tokio::spawn(
                quota
                    .clone()
                    .run_unlocks(stop_reaper.subscribe())
                    .instrument(info_span!("quota")),
            ));
        }
        if let Some(reputation) = shared.reputation() {
            tasks.push(tokio::spawn(
                crate::reputation::run(
                    reputation.clone(),
                    evidence.clone(),
                    stop_reaper.subscribe(),
                )
                .instrument(info_span!("reputation")),
            ));
        }
        // Revocations once the first sync had a moment (those peers logged are skipped).
        let mut stop = stop_reaper.subscribe();
        let (revoked, revoked_config) = (evidence.clone(), config.clone());
        tasks.push(tokio::spawn(async move {
            let waited = tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(10)) => true,
                _ = stop.wait_for(|s| *s) => false,
            };
            if waited {
                ledger::record_revocations(revoked, revoked_config).await;
            }
        }));
        tasks.push(tokio::spawn(
            prune_relayed(
                gateway.clone(),
                config.leases.retention,
                stop_reaper.subscribe(),
            )
            .instrument(info_span!("gateway-prune")),
        ));
        if config.relay.enabled {
            shared.set_relay(crate::tunnel::relay::Relay::new(
                crate::tunnel::relay::Limits {
                    sessions: config.relay.sessions,
                    per_agent: config.relay.per_agent,
                    idle: config.relay.idle,
                },
                stop_reaper.subscribe(),
            ));
        }
        let mut supervisor = None;
        let provider_tx = match (&config.provider, config.has_role(Role::Provider)) {
            (Some(p), true) => {
                let runtimes = workloads::open(
                    &config,
                    p,
                    &identity.agora_id(),
                    store_dyn.clone(),
                    shared.metrics.warm_sandboxes.clone(),
                )
                .await?;
                if runtimes.available.is_empty() {
                    warn!("no configured runtime can run on this host: advertising nothing");
                }
                shared.set_runtimes(
                    shared::RuntimeReport {
                        available: runtimes
                            .available
                            .iter()
                            .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                            .collect(),
                        unavailable: runtimes
                            .unavailable
                            .iter()
                            .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                            .collect(),
                    },
                    runtimes.supervisor.clone(),
                );
                supervisor = Some(runtimes.supervisor.clone());
                tasks.push(tokio::spawn(
                    runtimes
                        .supervisor
                        .clone()
                        .run(workloads::REAPER_PERIOD, stop_reaper.subscribe())
                        .instrument(info_span!("reaper")),
                ));
                let leases = leases::open(
                    &identity,
                    &shared,
                    &config,
                    p,
                    store_dyn.clone(),
                    runtimes.supervisor.clone(),
                )?;
                gateway.set_local(leases.clone());
                tasks.push(tokio::spawn(
                    ledger::reconcile(leases.clone(), evidence.clone(), stop_reaper.subscribe())
                        .instrument(info_span!("ledger")),
                ));
                let tunnels = tunnel::start(
                    &config,
                    p,
                    &identity,
                    leases.clone(),
                    stop_reaper.subscribe(),
                );
                match streams.clone().accept(net::LEASE_STREAM_PROTOCOL) {
                    Ok(incoming) => {
                        use futures::StreamExt as _;
                        use tokio_util::compat::FuturesAsyncReadCompatExt as _;
                        tasks.push(tokio::spawn(
                            crate::lease::streams::serve(
                                incoming.map(|(_, s)| s.compat()),
                                leases.clone(),
                            )
                            .instrument(info_span!("lease-streams")),
                        ));
                    }
                    Err(e) => warn!(error = %e, "cannot serve streamed lease operations"),
                }
                tasks.push(tokio::spawn(
                    crate::lease::serve(lease_in_rx, leases.clone())
                        .instrument(info_span!("leases")),
                ));
                tasks.push(tokio::spawn(
                    leases
                        .run(Duration::from_secs(1), stop_reaper.subscribe())
                        .instrument(info_span!("leases")),
                ));
                let mut adv = provider::Advertiser::new(
                    identity.clone(),
                    config.clone(),
                    p.clone(),
                    store_dyn.clone(),
                    runtimes.available,
                )?;
                if let Some(t) = tunnels {
                    adv.set_tunnel_endpoints(t.endpoints);
                    tasks.push(t.task);
                }
                let (tx, rx) = mpsc::channel(8);
                tasks.push(tokio::spawn(
                    run_provider(adv, shared.clone(), net_tx.clone(), rx)
                        .instrument(info_span!("provider")),
                ));
                Some(tx)
            }
            _ => None,
        };

        let listener = tokio::net::TcpListener::bind(config.http)
            .await
            .map_err(|source| DaemonError::Http {
                addr: config.http,
                source,
            })?;
        let http_addr = listener.local_addr().map_err(|source| DaemonError::Http {
            addr: config.http,
            source,
        })?;
        let (stop_http, mut stop_rx) = watch::channel(false);
        let app = http::router(shared.clone());
        tasks.push(tokio::spawn(
            async move {
                let stop = async move {
                    let _ = stop_rx.wait_for(|s| *s).await;
                };
                // Connect info gives handlers the peer address (signup rate limits).
                let app = app.into_make_service_with_connect_info::<SocketAddr>();
                // Streamed answers (exec, logs) send a small chunk after the headers: with
                // Nagle's algorithm on, it waits for the client's delayed ACK (40 ms here).
                let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                    if let Err(e) = tcp.set_nodelay(true) {
                        debug!(error = %e, "cannot set TCP_NODELAY");
                    }
                });
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(stop)
                    .await
                {
                    warn!(error = %e, "HTTP server failed");
                }
            }
            .instrument(info_span!("http")),
        ));
        info!(http = %http_addr, "HTTP API listening");
        Ok(Self {
            shared,
            store,
            http_addr,
            net_tx,
            provider_tx,
            stop_http,
            stop_reaper,
            tasks,
            net_task,
            supervisor,
        })
    }

    /// The HTTP API's bound address (useful with port 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The shared state (id, market, network snapshot).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Applies a reloaded configuration. Only the provider section and the signup settings
    /// (`[trust]` with its revocation lists, `[signup] pow_bits`, `[tiers]`) take effect
    /// while running; other changes are reported and need a restart.
    pub async fn reload(&self, config: NodeConfig) {
        if let Some(evidence) = self.shared.ledger() {
            tokio::spawn(ledger::record_revocations(evidence.clone(), config.clone()));
        }
        if let Some(signup) = self.shared.signup() {
            match signup.reload(&config) {
                Ok(()) => info!("trust roots, revocation lists, proof of work and tiers reloaded"),
                Err(e) => warn!(error = %e, "signup settings refused; keeping the running ones"),
            }
        }
        let running = &self.shared.config;
        if config.listen != running.listen
            || config.http != running.http
            || config.bootstrap != running.bootstrap
            || config.network != running.network
            || config.region != running.region
            || config.labels != running.labels
            || config.roles != running.roles
        {
            warn!("configuration changes outside [provider] take effect after a restart");
        }
        match (&self.provider_tx, config.provider) {
            (Some(tx), Some(p)) => {
                if tx.send(ProviderMsg::Reload(Box::new(p))).await.is_err() {
                    warn!("provider task is gone; reload ignored");
                }
            }
            (None, Some(_)) => warn!("the provider role starts after a restart"),
            (_, None) => warn!("[provider] removed: restart to stop selling"),
        }
    }

    /// Stops the node: withdraws this provider's offer, lets the network send it, stops the
    /// HTTP API, and flushes the store.
    ///
    /// # Errors
    /// [`DaemonError::Store`] if the final flush fails.
    pub async fn shutdown(self) -> Result<(), DaemonError> {
        info!("shutting down");
        if let Some(tx) = &self.provider_tx {
            let (done, wait) = oneshot::channel();
            if tx.send(ProviderMsg::Stop(done)).await.is_ok() {
                let _ = tokio::time::timeout(Duration::from_secs(5), wait).await;
            }
        }
        let (done, wait) = oneshot::channel();
        if self.net_tx.send(NetCommand::Shutdown(done)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(10), wait).await;
        }
        let _ = self.stop_http.send(true);
        // Workloads keep running: the next start adopts them (see runtime::supervisor).
        let _ = self.stop_reaper.send(true);
        if let Some(supervisor) = &self.supervisor {
            supervisor.close().await;
        }
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.net_task).await;
        self.store.flush().map_err(crate::store::Error::from)?;
        info!("stopped");
        Ok(())
    }
}

/// How often a gateway forgets relayed leases past `[leases] retention`.
const PRUNE_PERIOD: Duration = Duration::from_secs(60);

/// Forgets relayed leases over for longer than `retention`, every [`PRUNE_PERIOD`], until
/// `stop` turns true, so a gateway's store does not grow with every lease it ever relayed.
async fn prune_relayed(
    gateway: Arc<crate::lease::Gateway>,
    retention: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut every = tokio::time::interval(PRUNE_PERIOD);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        match gateway.prune(crate::clock::now(), retention) {
            Ok(0) => {}
            Ok(n) => debug!(pruned = n, "forgot relayed leases past retention"),
            Err(e) => warn!(error = %e, "cannot prune relayed leases"),
        }
    }
}

/// Creates the data dir (owner-only) if it is missing.
fn create_private_dir(path: &std::path::Path) -> Result<(), DaemonError> {
    use std::os::unix::fs::DirBuilderExt as _;
    if path.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| DaemonError::DataDir {
            path: path.to_owned(),
            source,
        })
}

/// Records the identity owning this data dir, or checks it is the key's.
fn claim_data_dir(
    store: &dyn Store,
    identity: &Identity,
    config: &NodeConfig,
) -> Result<(), DaemonError> {
    let id = identity.agora_id();
    match store.get(Column::Identity, OWNER_KEY)? {
        Some(owner) if owner.as_slice() == id.as_bytes() => Ok(()),
        Some(owner) => Err(DaemonError::WrongOwner {
            path: config.data_dir.clone(),
            owner: <[u8; 32]>::try_from(owner.as_slice())
                .ok()
                .and_then(|b| agora_protocol::AgoraId::from_bytes(b).ok())
                .map_or_else(|| "an unreadable identity".to_owned(), |o| o.to_string()),
            key: id.to_string(),
        }),
        None => {
            store.put(Column::Identity, OWNER_KEY, id.as_bytes())?;
            store.flush()?;
            Ok(())
        }
    }
}

async fn run_provider(
    mut adv: provider::Advertiser,
    shared: Arc<Shared>,
    net: mpsc::Sender<NetCommand>,
    mut rx: mpsc::Receiver<ProviderMsg>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            msg = rx.recv() => match msg {
                Some(ProviderMsg::Reload(cfg)) => {
                    if adv.reconfigure(*cfg) {
                        info!("provider configuration changed; re-advertising");
                    }
                }
                Some(ProviderMsg::Stop(done)) => {
                    match adv.withdrawal(clock::now()) {
                        Ok(Some(w)) => {
                            info!(seq = w.body().seq, "withdrawing offer");
                            let msg = GossipMessage::Withdrawal(w);
                            shared.market().apply_own(&msg, clock::now());
                            let _ = net.send(NetCommand::Publish(Box::new(msg))).await;
                        }
                        Ok(None) => {}
                        Err(e) => warn!(error = %e, "cannot sign withdrawal"),
                    }
                    let _ = done.send(());
                    return;
                }
                None => return,
            },
        }
        match adv.due(clock::now()) {
            Ok(Some(offer)) => {
                info!(seq = offer.body().seq, expires_at = %offer.body().expires_at, "advertising offer");
                if let Some(leases) = shared.gateway().and_then(|g| g.local()) {
                    leases.offer_published(&offer);
                }
                let msg = GossipMessage::Offer(offer);
                shared.market().apply_own(&msg, clock::now());
                if net.send(NetCommand::Publish(Box::new(msg))).await.is_err() {
                    return;
                }
            }
            Ok(None) => {}
            Err(e) => warn!(error = %e, "cannot advertise"),
        }
    }
}
