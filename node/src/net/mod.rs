//! The libp2p side of a node: transports, the composed behaviour and its settings.
//!
//! - Transports: QUIC, and TCP with noise and yamux; one ed25519 key for both (the node's
//!   identity, so the Agora id and the PeerId name the same key).
//! - [`Behaviour`]: connection limits, identify, ping, Kademlia (protocol
//!   [`KAD_PROTOCOL`]), gossipsub with strict signing, our own validation and peer scoring,
//!   and request-response for point-to-point messages: offer sync ([`SYNC_PROTOCOL`]),
//!   services sync ([`SERVICE_SYNC_PROTOCOL`]),
//!   leases ([`LEASE_PROTOCOL`]: proposals, operations and status between a gateway and a
//!   provider, never over gossip) and ledger entries ([`LEDGER_PROTOCOL`]: by hash or by
//!   frontier page), quota committee traffic ([`QUOTA_PROTOCOL`]), and raw streams for
//!   streamed lease operations ([`LEASE_STREAM_PROTOCOL`]: exec, logs, files).
//! - [`scoring`]: gossipsub score parameters and the application-specific penalties.
//!
//! The event loop that drives the swarm lives in [`crate::daemon`]; this module only builds.

use core::time::Duration;

use agora_attest::Identity;
use agora_protocol::gossip::{MAX_SYNC_REQUEST_BYTES, MAX_SYNC_RESPONSE_BYTES};
use agora_protocol::service::sync::MAX_SERVICE_SYNC_RESPONSE_BYTES;
use libp2p::{
    StreamProtocol, Swarm, connection_limits, gossipsub, identify, kad, noise, ping,
    request_response, tcp, yamux,
};
use prometheus_client::registry::Registry;

pub mod codec;
pub mod scoring;

pub use codec::FrameCodec;

/// identify's protocol version: peers on another major version are not Agora peers.
pub const PROTOCOL_VERSION: &str = "/agora/1.0.0";

/// Kademlia on its own protocol name, so Agora's DHT never mixes with IPFS's.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/agora/kad/1.0.0");

/// Point-to-point offer sync (catch-up after joining or a partition). Version 2: a request
/// lists what the asker holds, so a page carries only the offers it lacks or holds older.
pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/agora/offer-sync/2");

/// Point-to-point sync of the published services directory (the same paging as offers).
pub const SERVICE_SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/agora/service-sync/1");

/// Point-to-point leases: a gateway's proposals, operations and status queries to a
/// provider (see [`agora_protocol::lease_rpc`]).
pub const LEASE_PROTOCOL: StreamProtocol = StreamProtocol::new("/agora/lease/1");

/// Point-to-point ledger sync: entries by hash or by frontier page (see
/// [`agora_protocol::ledger_rpc`]).
pub const LEDGER_PROTOCOL: StreamProtocol = StreamProtocol::new("/agora/ledger/1");

/// Point-to-point quota committee traffic: vote requests, certificates, account queries
/// (see [`agora_protocol::quota_rpc`]).
pub const QUOTA_PROTOCOL: StreamProtocol = StreamProtocol::new("/agora/quota/1");

/// Streamed lease operations (exec, logs, files): one libp2p stream per operation, framed
/// as [`agora_protocol::frames`], opened by the gateway with the agent's signed operation.
pub const LEASE_STREAM_PROTOCOL: StreamProtocol = StreamProtocol::new("/agora/lease-stream/1");

/// Most lease request-response exchanges in flight on one connection, each way.
pub const MAX_LEASE_STREAMS: usize = 256;

/// Largest gossipsub frame. Our own messages are far smaller (validation refuses anything
/// over [`agora_protocol::gossip::MAX_GOSSIP_BYTES`]); the frame also carries control
/// messages (IHAVE lists), which need the headroom.
pub const MAX_GOSSIP_FRAME_BYTES: usize = 64 * 1024;

/// Network settings (from the node config, with defaults that suit most hosts).
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// A connection with no open streams is closed after this long.
    pub idle_timeout: Duration,
    /// Most established connections in total.
    pub max_connections: u32,
    /// Whether Kademlia answers queries (server) or only asks (client). Bootstrap and
    /// publicly reachable nodes serve.
    pub kad_server: bool,
    /// gossipsub heartbeat: mesh maintenance and lazy gossip (IHAVE) cadence.
    pub heartbeat: Duration,
    /// How long a request-response exchange may take.
    pub request_timeout: Duration,
    /// How long a lease exchange may take (a proposal launches a workload).
    pub lease_timeout: Duration,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(120),
            max_connections: 128,
            kad_server: false,
            heartbeat: Duration::from_millis(700),
            request_timeout: Duration::from_secs(10),
            lease_timeout: Duration::from_secs(30),
        }
    }
}

pub use behaviour::{Behaviour, BehaviourEvent};

mod behaviour {
    // The derive generates `BehaviourEvent`, one variant per field, documented by the fields.
    #![allow(missing_docs)]

    use super::FrameCodec;
    use libp2p::swarm::NetworkBehaviour;
    use libp2p::{connection_limits, gossipsub, identify, kad, ping, request_response};

    /// Everything the swarm does, composed.
    #[derive(NetworkBehaviour)]
    pub struct Behaviour {
        /// Caps on pending and established connections.
        pub limits: connection_limits::Behaviour,
        /// Exchanges listen addresses, protocols and versions.
        pub identify: identify::Behaviour,
        /// Liveness and round-trip times; a failing peer's connection is closed.
        pub ping: ping::Behaviour,
        /// Peer discovery.
        pub kad: kad::Behaviour<kad::store::MemoryStore>,
        /// Offers, withdrawals (later ledger heads) by topic.
        pub gossipsub: gossipsub::Behaviour,
        /// Point-to-point offer sync.
        pub sync: request_response::Behaviour<FrameCodec>,
        /// Point-to-point services sync ([`super::SERVICE_SYNC_PROTOCOL`]).
        pub service_sync: request_response::Behaviour<FrameCodec>,
        /// Point-to-point leases (gateway ⇄ provider).
        pub lease: request_response::Behaviour<FrameCodec>,
        /// Point-to-point ledger sync ([`super::LEDGER_PROTOCOL`]).
        pub ledger: request_response::Behaviour<FrameCodec>,
        /// Point-to-point quota committee traffic ([`super::QUOTA_PROTOCOL`]).
        pub quota: request_response::Behaviour<FrameCodec>,
        /// Raw streams for streamed lease operations ([`super::LEASE_STREAM_PROTOCOL`]).
        pub stream: libp2p_stream::Behaviour,
    }
}

/// Why the swarm could not be built.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A transport failed to initialise.
    #[error("transport setup: {0}")]
    Transport(String),
    /// A behaviour's configuration was refused.
    #[error("network behaviour setup: {0}")]
    Behaviour(String),
}

/// Content addressing: a message's id is the hash of its bytes, so the same offer relayed by
/// different peers (or re-published) is one message.
fn message_id(message: &gossipsub::Message) -> gossipsub::MessageId {
    let digest = agora_protocol::Digest::of(&message.data);
    gossipsub::MessageId::from(digest.0.get(..20).unwrap_or(&digest.0).to_vec())
}

fn gossipsub_behaviour(
    key: &libp2p::identity::Keypair,
    config: &NetConfig,
    registry: &mut Registry,
) -> Result<gossipsub::Behaviour, NetError> {
    let gossip_config = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .max_transmit_size(MAX_GOSSIP_FRAME_BYTES)
        .message_id_fn(message_id)
        .heartbeat_interval(config.heartbeat)
        .duplicate_cache_time(Duration::from_secs(120))
        // Flood own messages to every subscribed peer, not only the mesh: offers are rare and
        // first-hop latency is what agents notice.
        .flood_publish(true)
        .build()
        .map_err(|e| NetError::Behaviour(format!("gossipsub: {e}")))?;
    let mut behaviour = gossipsub::Behaviour::new(
        gossipsub::MessageAuthenticity::Signed(key.clone()),
        gossip_config,
    )
    .map_err(|e| NetError::Behaviour(format!("gossipsub: {e}")))?
    .with_metrics(
        registry.sub_registry_with_prefix("gossipsub"),
        gossipsub::MetricsConfig::default(),
    );
    behaviour
        .with_peer_score(scoring::peer_score_params(), scoring::thresholds())
        .map_err(|e| NetError::Behaviour(format!("gossipsub scoring: {e}")))?;
    Ok(behaviour)
}

/// Builds the swarm for `identity`, registering libp2p's metrics in `registry`.
///
/// # Errors
/// [`NetError`] when a transport or behaviour cannot be set up.
pub fn build_swarm(
    identity: &Identity,
    config: &NetConfig,
    registry: &mut Registry,
) -> Result<Swarm<Behaviour>, NetError> {
    let keypair = identity.libp2p_keypair();
    let peer_id = keypair.public().to_peer_id();
    let gossipsub = gossipsub_behaviour(&keypair, config, registry)?;
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(config.max_connections))
        .with_max_established_per_peer(Some(2))
        .with_max_pending_incoming(Some(64))
        .with_max_pending_outgoing(Some(64));
    let mut kad_config = kad::Config::new(KAD_PROTOCOL);
    kad_config.set_query_timeout(Duration::from_secs(30));
    let mut kad =
        kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_config);
    kad.set_mode(Some(if config.kad_server {
        kad::Mode::Server
    } else {
        kad::Mode::Client
    }));
    let identify = identify::Behaviour::new(
        identify::Config::new(PROTOCOL_VERSION.to_owned(), keypair.public())
            .with_agent_version(format!("agora/{}", env!("CARGO_PKG_VERSION")))
            .with_push_listen_addr_updates(true),
    );
    let ping = ping::Behaviour::new(
        ping::Config::new()
            // libp2p-ping reports a dead connection on the second failure in a row: a cut
            // link is noticed within about 2 × (interval + timeout) = 16 s.
            .with_interval(Duration::from_secs(3))
            .with_timeout(Duration::from_secs(5)),
    );
    let sync = request_response::Behaviour::with_codec(
        FrameCodec {
            max_request: MAX_SYNC_REQUEST_BYTES,
            max_response: MAX_SYNC_RESPONSE_BYTES,
        },
        [(SYNC_PROTOCOL, request_response::ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(config.request_timeout)
            .with_max_concurrent_streams(32),
    );
    let service_sync = request_response::Behaviour::with_codec(
        FrameCodec {
            max_request: MAX_SYNC_REQUEST_BYTES,
            max_response: MAX_SERVICE_SYNC_RESPONSE_BYTES,
        },
        [(
            SERVICE_SYNC_PROTOCOL,
            request_response::ProtocolSupport::Full,
        )],
        request_response::Config::default()
            .with_request_timeout(config.request_timeout)
            .with_max_concurrent_streams(32),
    );
    let lease = request_response::Behaviour::with_codec(
        FrameCodec {
            max_request: agora_protocol::lease_rpc::MAX_REQUEST_BYTES,
            max_response: agora_protocol::lease_rpc::MAX_RESPONSE_BYTES,
        },
        [(LEASE_PROTOCOL, request_response::ProtocolSupport::Full)],
        // A gateway relays many agents' requests over one connection to a provider (100 at
        // once in the journey benchmark); the provider's lease service bounds the work.
        request_response::Config::default()
            .with_request_timeout(config.lease_timeout)
            .with_max_concurrent_streams(MAX_LEASE_STREAMS),
    );
    let ledger = request_response::Behaviour::with_codec(
        FrameCodec {
            max_request: agora_protocol::ledger_rpc::MAX_REQUEST_BYTES,
            max_response: agora_protocol::ledger_rpc::MAX_RESPONSE_BYTES,
        },
        [(LEDGER_PROTOCOL, request_response::ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(config.request_timeout)
            .with_max_concurrent_streams(16),
    );
    let quota = request_response::Behaviour::with_codec(
        FrameCodec {
            max_request: agora_protocol::quota_rpc::MAX_REQUEST_BYTES,
            max_response: agora_protocol::quota_rpc::MAX_RESPONSE_BYTES,
        },
        [(QUOTA_PROTOCOL, request_response::ProtocolSupport::Full)],
        // Every lease request of a network with a committee is certified: one exchange per
        // validator, small and short.
        request_response::Config::default()
            .with_request_timeout(config.request_timeout)
            .with_max_concurrent_streams(MAX_LEASE_STREAMS),
    );
    let behaviour = Behaviour {
        limits: connection_limits::Behaviour::new(limits),
        identify,
        ping,
        kad,
        gossipsub,
        sync,
        service_sync,
        lease,
        ledger,
        quota,
        stream: libp2p_stream::Behaviour::new(),
    };
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| NetError::Transport(format!("tcp: {e}")))?
        .with_quic()
        .with_behaviour(|_| behaviour)
        .map_err(|e| NetError::Behaviour(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(config.idle_timeout))
        .build();
    Ok(swarm)
}
