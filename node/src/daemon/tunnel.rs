//! Starts the provider's QUIC tunnel endpoint ([`crate::tunnel::Server`]) on the node's
//! listen host and the configured UDP `tunnel_port`, and names the endpoint offers advertise.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use agora_attest::Identity;
use libp2p::multiaddr::Protocol;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{Instrument as _, info_span, warn};

use crate::config::{NodeConfig, ProviderConfig};
use crate::lease::Provider;
use crate::tunnel::{self, Meter};

/// The host of the node's first IP listen address (`0.0.0.0` if none names one).
pub fn listen_host(config: &NodeConfig) -> IpAddr {
    config
        .listen
        .iter()
        .find_map(|a| {
            a.iter().find_map(|p| match p {
                Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
                Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
                _ => None,
            })
        })
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// A started endpoint: its task, the endpoints to advertise and the byte counters.
pub struct Started {
    /// The serving task (ends when `stop` turns true).
    pub task: JoinHandle<()>,
    /// `ip:port` strings for offers and grants (empty when bound on an unspecified host:
    /// agents then pass the address themselves).
    pub endpoints: Vec<String>,
    /// Per-lease tunnel traffic.
    pub meter: Meter,
}

/// Binds and starts the endpoint; `None` (logged) when it cannot be bound.
pub fn start(
    config: &NodeConfig,
    provider_config: &ProviderConfig,
    identity: &Identity,
    provider: Arc<Provider>,
    stop: watch::Receiver<bool>,
) -> Option<Started> {
    let bind = SocketAddr::new(listen_host(config), provider_config.tunnel_port);
    // The provider's own counters: its receipts count what the endpoint pipes.
    let meter = provider.tunnel_meter();
    let server = match tunnel::Server::bind(
        identity,
        provider,
        meter.clone(),
        tunnel::server::Config::new(bind),
    ) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "no tunnel endpoint: agents cannot reach workload ports");
            return None;
        }
    };
    let endpoints = match server.local_addr() {
        Ok(a) if !a.ip().is_unspecified() => vec![a.to_string()],
        _ => Vec::new(),
    };
    let task = tokio::spawn(server.run(stop).instrument(info_span!("tunnels")));
    Some(Started {
        task,
        endpoints,
        meter,
    })
}
