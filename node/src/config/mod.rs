//! The node's configuration file (TOML) and its validation.
//!
//! Every field has a default except what only the operator can know; unknown fields are
//! errors. A bad file yields one [`ConfigError`] naming the file, the line where toml can
//! tell it, and the field. Command-line flags override fields after parsing (see the
//! `agora node start` command).
//!
//! ```toml
//! data_dir = "/var/lib/agora"
//! key_file = "/var/lib/agora/identity.key"          # default: <data_dir>/identity.key
//! listen = ["/ip4/0.0.0.0/udp/7000/quic-v1", "/ip4/0.0.0.0/tcp/7000"]
//! bootstrap = ["/ip4/192.0.2.1/tcp/7000/p2p/12D3KooW…"]
//! http = "127.0.0.1:8080"
//! roles = ["provider", "gateway"]
//! region = "eu-west"
//! labels = { arch = "x86_64" }
//!
//! [network]
//! kad_server = true          # default true; false for nodes peers cannot dial (NAT)
//! target_peers = 8
//! max_connections = 128
//! idle_timeout = "2m"
//! follow_regions = ["*"]     # "*": every region peers announce (up to 64); or a list
//! max_offers = 10000
//!
//! [runtime]                 # see config::RuntimeSection
//! idle_timeout = "30m"
//!
//! [provider]
//! runtimes = ["sandbox", "docker"]
//! vcpu = 2.5
//! memory_mib = 4096
//! disk_mib = 20480
//! max_lease = "72h"
//! offer_ttl = "5m"
//! egress = true
//! blocked_ports = [25]
//! tiers = []
//! tunnel_port = 7001
//! prices = { vcpu = 100, memory_gib = 10, disk_gib = 1, gpu = 0 }   # µcredits/s
//!
//! [trust]                   # issuers whose attestations agents may present (see TrustConfig)
//! revocation_files = ["revoked.txt"]     # relative to this file
//! root = [{ id = "agora1…", name = "Acme agents", tiers = ["standard"] }]
//!
//! [signup]                  # see config::SignupSection
//! pow_bits = 16
//! per_address = "10/min"
//!
//! [tiers.contained]         # see config::TierConfig
//! max_memory_mib = 512
//!
//! [leases]                  # see config::LeaseSection
//! receipt_interval = "60s"
//!
//! [approvals]               # see config::ApprovalSection
//! timeout = "10m"
//! ```

use core::time::Duration;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use agora_protocol::bounds;
use agora_protocol::offer::{Isolation, MAX_OFFER_TTL, Prices};
use libp2p::Multiaddr;
use serde::Deserialize;

mod duration;
mod leases;
mod relay;
mod runtime;
mod signup;

pub use leases::{ApprovalSection, LeaseSection};
pub use relay::RelaySection;
pub use runtime::{ImageConfig, RuntimeSection};
pub use signup::{
    AnyPorts, EgressPorts, SMTP_PORTS, SignupSection, TierConfig, builtin_tiers, parse_rate,
};

/// A node's role in the network (any mix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sells capacity: runs workloads and advertises offers.
    Provider,
    /// Serves agents over HTTP and MCP and relays to providers.
    Gateway,
    /// Signs quota certificates (only when listed in the genesis file).
    Validator,
}

impl core::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "provider" => Ok(Self::Provider),
            "gateway" => Ok(Self::Gateway),
            "validator" => Ok(Self::Validator),
            other => Err(format!(
                "{other:?} is not a role (provider, gateway, validator)"
            )),
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Where the store and (by default) the key live.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// The identity key file (created on first start); default `<data_dir>/identity.key`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// libp2p listen addresses (QUIC and TCP).
    #[serde(default = "default_listen")]
    pub listen: Vec<Multiaddr>,
    /// Peers to dial on start (multiaddrs ending in `/p2p/<peer id>`).
    #[serde(default)]
    pub bootstrap: Vec<Multiaddr>,
    /// The HTTP API address.
    #[serde(default = "default_http")]
    pub http: SocketAddr,
    /// The roles this node plays.
    #[serde(default = "default_roles")]
    pub roles: Vec<Role>,
    /// The quota committee's genesis file (validators, issuers, free-tier allowance; see
    /// [`agora_protocol::committee::Genesis`]), relative to this file. With it the node
    /// takes part in the committee (as a validator when the genesis lists its id), gateways
    /// certify agents' locks and providers admit only against lock certificates; without
    /// it providers keep their own quota book. Needed for the validator role.
    #[serde(default)]
    pub genesis: Option<PathBuf>,
    /// Region, e.g. `eu-west`.
    #[serde(default = "default_region")]
    pub region: String,
    /// Free-form labels advertised with offers.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Peer-to-peer settings.
    #[serde(default)]
    pub network: NetworkSection,
    /// What a provider advertises (required with the provider role).
    #[serde(default)]
    pub provider: Option<ProviderConfig>,
    /// Workload runtime settings.
    #[serde(default)]
    pub runtime: RuntimeSection,
    /// Issuers whose attestations agents may present at signup and in lease requests.
    #[serde(default)]
    pub trust: agora_attest::TrustConfig,
    /// Agent signup: proof of work, challenges, rate limits.
    #[serde(default)]
    pub signup: SignupSection,
    /// Tier limits by name (`[tiers.contained]`, `[tiers.standard]`, and any others).
    #[serde(default)]
    pub tiers: BTreeMap<String, TierConfig>,
    /// Lease metering (providers) and relaying (gateways).
    #[serde(default)]
    pub leases: LeaseSection,
    /// Requests waiting at a gateway for their owner's approval.
    #[serde(default)]
    pub approvals: ApprovalSection,
    /// Relaying tunnel packets for agents that cannot reach a provider.
    #[serde(default)]
    pub relay: RelaySection,
}

/// Peer-to-peer settings (`[network]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    /// Whether Kademlia answers other peers' queries (server mode). Default: yes, so peers
    /// discover each other beyond the bootstrap nodes; set `false` on a node others cannot
    /// dial (behind NAT), which then only asks.
    #[serde(default)]
    pub kad_server: Option<bool>,
    /// Connections the node keeps up by dialling known peers.
    #[serde(default = "default_target_peers")]
    pub target_peers: u32,
    /// Most established connections.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Idle connections close after this long.
    #[serde(default = "default_idle_timeout", with = "duration")]
    pub idle_timeout: Duration,
    /// Regions whose offers this node follows besides its own; `"*"` follows every region
    /// its peers announce, up to the topic cap.
    #[serde(default = "default_follow_regions")]
    pub follow_regions: Vec<String>,
    /// Most offers (providers) held in the offer book.
    #[serde(default = "default_max_offers")]
    pub max_offers: usize,
}

impl Default for NetworkSection {
    fn default() -> Self {
        Self {
            kad_server: None,
            target_peers: default_target_peers(),
            max_connections: default_max_connections(),
            idle_timeout: default_idle_timeout(),
            follow_regions: default_follow_regions(),
            max_offers: default_max_offers(),
        }
    }
}

impl NetworkSection {
    /// Whether the node follows every region its peers announce.
    pub fn follows_all_regions(&self) -> bool {
        self.follow_regions.iter().any(|r| r == "*")
    }
}

/// What a provider sells and at what price.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Runtimes to offer.
    #[serde(default = "default_runtimes")]
    pub runtimes: Vec<Isolation>,
    /// vCPUs to sell (fractions allowed).
    pub vcpu: f64,
    /// Memory to sell, MiB.
    pub memory_mib: u64,
    /// Disk to sell, MiB.
    pub disk_mib: u64,
    /// Longest lease accepted.
    #[serde(default = "default_max_lease", with = "duration")]
    pub max_lease: Duration,
    /// How long each offer lives before it is re-advertised.
    #[serde(default = "default_offer_ttl", with = "duration")]
    pub offer_ttl: Duration,
    /// Whether workloads may open outbound connections.
    #[serde(default)]
    pub egress: bool,
    /// Destination ports always blocked.
    #[serde(default = "default_blocked_ports")]
    pub blocked_ports: Vec<u16>,
    /// Tiers accepted (empty: any).
    #[serde(default)]
    pub tiers: Vec<String>,
    /// UDP port of the QUIC tunnel endpoint.
    #[serde(default = "default_tunnel_port")]
    pub tunnel_port: u16,
    /// Prices in micro-credits per second per unit.
    pub prices: PriceConfig,
}

/// Prices in micro-credits per second (1 credit = 1,000,000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    /// Per vCPU.
    pub vcpu: u64,
    /// Per GiB of memory.
    pub memory_gib: u64,
    /// Per GiB of disk.
    #[serde(default)]
    pub disk_gib: u64,
    /// Per GPU.
    #[serde(default)]
    pub gpu: u64,
}

impl From<PriceConfig> for Prices {
    fn from(p: PriceConfig) -> Self {
        Self {
            vcpu: p.vcpu,
            memory_gib: p.memory_gib,
            disk_gib: p.disk_gib,
            gpu: p.gpu,
        }
    }
}

fn default_data_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".agora").join("node"))
        .unwrap_or_else(|| PathBuf::from("agora-data"))
}
#[allow(clippy::expect_used)]
fn default_listen() -> Vec<Multiaddr> {
    // Invariant: constant, well-formed addresses.
    ["/ip4/0.0.0.0/udp/7000/quic-v1", "/ip4/0.0.0.0/tcp/7000"]
        .iter()
        .map(|a| a.parse().expect("constant multiaddr"))
        .collect()
}
fn default_http() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_roles() -> Vec<Role> {
    vec![Role::Gateway]
}
fn default_region() -> String {
    "default".into()
}
fn default_target_peers() -> u32 {
    8
}
fn default_max_connections() -> u32 {
    128
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(120)
}
fn default_follow_regions() -> Vec<String> {
    vec!["*".into()]
}
fn default_max_offers() -> usize {
    10_000
}
fn default_runtimes() -> Vec<Isolation> {
    vec![Isolation::Sandbox]
}
fn default_max_lease() -> Duration {
    Duration::from_secs(72 * 3600)
}
fn default_offer_ttl() -> Duration {
    Duration::from_secs(5 * 60)
}
fn default_blocked_ports() -> Vec<u16> {
    vec![25, 465, 587]
}
fn default_tunnel_port() -> u16 {
    7001
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML for this schema (toml names the line and field).
    #[error("config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What toml reported.
        message: String,
    },
    /// A field's value is not acceptable.
    #[error("config {path}: field `{field}`: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The field, dotted.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            data_dir: default_data_dir(),
            key_file: None,
            listen: default_listen(),
            bootstrap: Vec::new(),
            http: default_http(),
            roles: default_roles(),
            genesis: None,
            region: default_region(),
            labels: BTreeMap::new(),
            network: NetworkSection::default(),
            provider: None,
            runtime: RuntimeSection::default(),
            trust: agora_attest::TrustConfig::default(),
            signup: SignupSection::default(),
            tiers: BTreeMap::new(),
            leases: LeaseSection::default(),
            approvals: ApprovalSection::default(),
            relay: RelaySection::default(),
        }
    }
}

impl NodeConfig {
    /// Largest config file read.
    const MAX_BYTES: u64 = 1024 * 1024;

    /// Reads and validates a config file.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and field.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        use std::io::Read as _;
        let io = |source| ConfigError::Io {
            path: path.to_owned(),
            source,
        };
        let mut text = String::new();
        std::fs::File::open(path)
            .map_err(io)?
            .take(Self::MAX_BYTES)
            .read_to_string(&mut text)
            .map_err(io)?;
        Self::parse(path, &text)
    }

    /// Parses and validates config text; `path` names it in errors.
    ///
    /// # Errors
    /// [`ConfigError`].
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let mut config: Self = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        // Revocation lists are named relative to the config file.
        let base = path.parent().unwrap_or(Path::new(""));
        for file in &mut config.trust.revocation_files {
            *file = base.join(&*file);
        }
        if let Some(genesis) = &mut config.genesis {
            *genesis = base.join(&*genesis);
        }
        config.validate(path)?;
        Ok(config)
    }

    /// The trust store of `[trust]`, with its revocation lists read.
    ///
    /// # Errors
    /// [`agora_attest::TrustConfigError`] naming the field or file.
    pub fn trust_store(&self) -> Result<agora_attest::TrustStore, agora_attest::TrustConfigError> {
        let mut store = agora_attest::TrustStore::from_config(&self.trust, Path::new("[trust]"))?;
        for file in &self.trust.revocation_files {
            for r in agora_attest::trust::load_revocations(file)? {
                store.add_revocation(r);
            }
        }
        Ok(store)
    }

    /// Every tier this node knows: the built-in ones with `[tiers.*]` applied.
    ///
    /// # Errors
    /// The dotted field and what is wrong (also reported by [`NodeConfig::validate`]).
    pub fn tier_limits(
        &self,
    ) -> Result<BTreeMap<String, agora_protocol::signup::TierLimits>, (String, String)> {
        signup::resolve_tiers(&self.tiers)
    }

    /// The quota committee of the `genesis` file, if one is configured.
    ///
    /// # Errors
    /// The file cannot be read (or is over 1 MiB), or is not a valid genesis (the message
    /// names the line and field).
    pub fn committee(&self) -> Result<Option<agora_protocol::committee::Committee>, String> {
        use std::io::Read as _;
        let Some(path) = &self.genesis else {
            return Ok(None);
        };
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(Self::MAX_BYTES).read_to_string(&mut text))
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        agora_protocol::committee::Genesis::from_toml(&text)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The key file: as configured, else `<data_dir>/identity.key`.
    pub fn key_path(&self) -> PathBuf {
        self.key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("identity.key"))
    }

    /// Whether the node plays `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Checks what the types cannot; called by [`NodeConfig::parse`] and again after
    /// command-line overrides.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the field.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |field: &str, reason: String| ConfigError::Invalid {
            path: path.to_owned(),
            field: field.to_owned(),
            reason,
        };
        if self.listen.is_empty() {
            return Err(invalid("listen", "at least one address is needed".into()));
        }
        for addr in &self.bootstrap {
            if !addr
                .iter()
                .any(|p| matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
            {
                return Err(invalid(
                    "bootstrap",
                    format!("{addr} lacks a /p2p/<peer id> suffix"),
                ));
            }
        }
        if self.roles.is_empty() {
            return Err(invalid("roles", "at least one role is needed".into()));
        }
        if self.has_role(Role::Validator) && self.genesis.is_none() {
            return Err(invalid(
                "genesis",
                "the validator role needs a genesis file listing this node".into(),
            ));
        }
        self.committee().map_err(|e| invalid("genesis", e))?;
        bounds::token("region", &self.region, 32).map_err(|e| invalid("region", e.to_string()))?;
        bounds::labels("labels", &self.labels, 16).map_err(|e| invalid("labels", e.to_string()))?;
        self.network.validate(&invalid)?;
        self.runtime.validate(&invalid)?;
        self.leases.validate(&invalid)?;
        self.relay.validate(&invalid)?;
        self.approvals.validate(&invalid)?;
        self.signup.validate(&invalid)?;
        self.tier_limits()
            .map_err(|(field, reason)| invalid(&field, reason))?;
        self.trust_store().map_err(|e| match e {
            agora_attest::TrustConfigError::Invalid { field, reason, .. } => {
                invalid(&format!("trust.{field}"), reason)
            }
            other => invalid("trust.revocation_files", other.to_string()),
        })?;
        match (&self.provider, self.has_role(Role::Provider)) {
            (None, true) => Err(invalid(
                "provider",
                "the provider role needs a [provider] section (resources and prices)".into(),
            )),
            (Some(p), _) => p.validate(&invalid),
            (None, false) => Ok(()),
        }
    }
}

impl NetworkSection {
    fn validate(&self, invalid: &dyn Fn(&str, String) -> ConfigError) -> Result<(), ConfigError> {
        if self.max_connections == 0 {
            return Err(invalid(
                "network.max_connections",
                "must be positive".into(),
            ));
        }
        if self.target_peers > self.max_connections {
            return Err(invalid(
                "network.target_peers",
                format!(
                    "{} exceeds max_connections {}",
                    self.target_peers, self.max_connections
                ),
            ));
        }
        if self.idle_timeout < Duration::from_secs(1) {
            return Err(invalid("network.idle_timeout", "at least 1s".into()));
        }
        if self.follow_regions.len() > agora_protocol::gossip::MAX_REGION_TOPICS {
            return Err(invalid(
                "network.follow_regions",
                format!(
                    "at most {} regions",
                    agora_protocol::gossip::MAX_REGION_TOPICS
                ),
            ));
        }
        for r in self.follow_regions.iter().filter(|r| *r != "*") {
            bounds::token("network.follow_regions", r, 32)
                .map_err(|e| invalid("network.follow_regions", e.to_string()))?;
        }
        if !(1..=1_000_000).contains(&self.max_offers) {
            return Err(invalid(
                "network.max_offers",
                "must be between 1 and 1000000".into(),
            ));
        }
        Ok(())
    }
}

impl ProviderConfig {
    /// A provider section selling these resources at these prices, other fields default
    /// (sandbox runtime, 72 h leases, 5 min offers, no egress, SMTP ports blocked).
    pub fn new(vcpu: f64, memory_mib: u64, disk_mib: u64, prices: PriceConfig) -> Self {
        Self {
            runtimes: default_runtimes(),
            vcpu,
            memory_mib,
            disk_mib,
            max_lease: default_max_lease(),
            offer_ttl: default_offer_ttl(),
            egress: false,
            blocked_ports: default_blocked_ports(),
            tiers: Vec::new(),
            tunnel_port: default_tunnel_port(),
            prices,
        }
    }

    /// vCPU in thousandths, as offers carry it.
    pub fn vcpu_milli(&self) -> u32 {
        // validate() bounds vcpu to (0, 4096], so the product fits.
        (self.vcpu * 1000.0).round() as u32
    }

    /// The offer this provider advertises: its configured runtimes, resources and prices,
    /// valid for `offer_ttl` from `now`. `images` are the runtimes' startable images (found
    /// by the runtime layer); `tunnel_endpoints` are the QUIC endpoints agents dial.
    ///
    /// # Errors
    /// [`agora_protocol::EncodeError`] when the result breaks an offer bound (too many
    /// images or labels, an endpoint that is not `ip:port`).
    pub fn offer(
        &self,
        identity: &agora_attest::Identity,
        seq: u64,
        now: agora_protocol::Timestamp,
        node: &NodeConfig,
        images: &BTreeMap<Isolation, Vec<agora_protocol::offer::ImageRef>>,
        tunnel_endpoints: Vec<String>,
    ) -> Result<agora_protocol::Signed<agora_protocol::Offer>, agora_protocol::EncodeError> {
        use agora_protocol::offer::{Capacity, NetworkPolicy, RuntimeOffer};
        let offer = agora_protocol::Offer {
            provider: identity.agora_id(),
            seq,
            issued_at: now,
            expires_at: now.saturating_add(self.offer_ttl),
            runtimes: self
                .runtimes
                .iter()
                .map(|&isolation| RuntimeOffer {
                    isolation,
                    images: images.get(&isolation).cloned().unwrap_or_default(),
                })
                .collect(),
            capacity: Capacity {
                vcpu_milli: self.vcpu_milli(),
                memory_mib: self.memory_mib,
                disk_mib: self.disk_mib,
                gpus: Vec::new(),
            },
            prices: self.prices.into(),
            max_lease_secs: self.max_lease.as_secs(),
            network: NetworkPolicy {
                egress: self.egress,
                blocked_ports: self.blocked_ports.clone(),
            },
            tiers: self.tiers.clone(),
            region: node.region.clone(),
            labels: node.labels.clone(),
            tunnel_endpoints,
        };
        agora_protocol::Signed::sign(offer, identity)
    }

    fn validate(&self, invalid: &dyn Fn(&str, String) -> ConfigError) -> Result<(), ConfigError> {
        if self.runtimes.is_empty() {
            return Err(invalid(
                "provider.runtimes",
                "offer at least one runtime".into(),
            ));
        }
        if !(self.vcpu.is_finite() && self.vcpu > 0.0 && self.vcpu <= 4096.0) {
            return Err(invalid(
                "provider.vcpu",
                format!("{} is not in (0, 4096]", self.vcpu),
            ));
        }
        if self.memory_mib == 0 {
            return Err(invalid("provider.memory_mib", "must be positive".into()));
        }
        if self.max_lease.is_zero() {
            return Err(invalid("provider.max_lease", "must be positive".into()));
        }
        if self.offer_ttl < Duration::from_secs(10) || self.offer_ttl > MAX_OFFER_TTL {
            return Err(invalid(
                "provider.offer_ttl",
                format!(
                    "{} is not between 10s and {}s",
                    humantime::format_duration(self.offer_ttl),
                    MAX_OFFER_TTL.as_secs()
                ),
            ));
        }
        if self.blocked_ports.len() > 64 {
            return Err(invalid("provider.blocked_ports", "at most 64 ports".into()));
        }
        if self.tiers.len() > 8 {
            return Err(invalid("provider.tiers", "at most 8 tiers".into()));
        }
        for tier in &self.tiers {
            bounds::token("provider.tiers", tier, 32)
                .map_err(|e| invalid("provider.tiers", e.to_string()))?;
        }
        if self.tunnel_port == 0 {
            return Err(invalid("provider.tunnel_port", "must not be 0".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
