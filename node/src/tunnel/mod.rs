//! QUIC tunnels: an agent reaches its own workload's ports directly, authenticated end to
//! end with raw ed25519 keys.
//!
//! ```text
//! agent: agora tunnel -L 127.0.0.1:9000:8080 ─ TCP accept ─▶ client::Dialer (QUIC, ALPN
//!   agora-tunnel/1, client cert = agent key, server key pinned to the grant's provider)
//!   ─ one bidi stream per TCP connection: wire::Header (token + port, and for another
//!     agent the owner's signed service grant) ─▶
//! provider: server::Server on UDP tunnel_port ─▶ access::check ─▶ runtime.connect(port)
//!   ─▶ pipe (both ways, half-close, bytes counted in meter::Meter per lease)
//! ```
//!
//! - [`tls`]: self-signed certificates over the node's (or agent's) identity key and the
//!   verifiers that check the handshake signature and pin keys.
//! - [`wire`]: the stream header and the provider's answer (stable refusal codes).
//! - [`access`]: the checks (token signed by this provider, for the client's key, lease
//!   live, port allowed), pure.
//! - [`pipe`]: copying both ways with backpressure and half-close.
//! - [`meter`]: per-lease byte counters (for usage receipts).
//! - [`server`]: the provider's endpoint; [`client`]: the agent's dialer and forwards.
//! - [`forward`]: what `agora tunnel` and the MCP tool `open_tunnel` share: `-L` specs, the
//!   grant checked before dialing, local listeners.
//! - [`reset`]: the endpoint's stateless-reset key, stable across restarts, so agents learn
//!   at once that a restarted provider lost their connection.
//! - [`relay`]: a gateway's UDP relay for agents that cannot route to the provider (TLS
//!   stays end to end; the relay forwards ciphertext).

use std::net::SocketAddr;

pub mod access;
pub mod client;
pub mod forward;
pub mod meter;
pub mod ops;
pub mod pipe;
pub mod relay;
pub mod reset;
pub mod server;
pub mod tls;
pub mod wire;

pub use client::{Dialer, OpenError};
pub use meter::{Meter, Traffic};
pub use server::Server;
pub use wire::Code;

/// The ALPN protocol of tunnel connections.
pub const ALPN: &[u8] = b"agora-tunnel/1";

/// The largest UDP payload a tunnel endpoint accepts: the largest IPv6 permits. What it
/// sends is bounded by [`MTU_SEARCH_CEILING`] and the path.
///
/// quinn stops at 1,452 bytes (Ethernet) by default, so a tunnel on loopback, a jumbo-frame
/// LAN or a VPN with a large MTU pays per-packet costs (crypto, system calls, wake-ups) for
/// 1.4 KiB datagrams where TCP moves 64 KiB segments. Probing higher is safe on any path:
/// probes are sent with "don't fragment", a lost probe only ends the search, and the path's
/// real limit is what gets used.
pub const MAX_UDP_PAYLOAD: u16 = 65_527;

/// The ceiling of a tunnel's path MTU discovery: the largest datagram of which quinn's
/// batches of up to 10 segments (`MAX_TRANSMIT_SEGMENTS`, one `sendmsg` with UDP GSO) stay
/// within the 65,535-byte IP packet the kernel builds them in, headers included.
///
/// Above it every batch of full-size packets fails with `EMSGSIZE`, which quinn-udp drops
/// silently (it expects that error only from MTU probes): the packets are lost, the loss
/// looks like an MTU black hole, and the connection falls back to 1,200-byte packets
/// (measured with the old ceiling of 65,527 and with 9,000: the whole 1 GiB at 1,200).
pub const MTU_SEARCH_CEILING: u16 = 6_500;

/// The transport settings both ends of a tunnel share: path MTU discovery up to
/// [`MTU_SEARCH_CEILING`].
fn transport_config() -> quinn::TransportConfig {
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(MTU_SEARCH_CEILING);
    let mut transport = quinn::TransportConfig::default();
    transport.mtu_discovery_config(Some(mtu));
    transport
}

/// The kernel buffer a tunnel endpoint asks for on its UDP socket, each way (Linux caps it
/// at `net.core.rmem_max` / `wmem_max`).
///
/// A bulk transfer can send faster than the far end drains its socket, and the default
/// ~208 KiB receive buffer then drops bursts of datagrams on loopback and fast LANs. (The
/// losses first blamed on it, 4,870 of 926,347 packets over 1 GiB, were never separated
/// from GSO batches refused with `EMSGSIZE`, see [`MTU_SEARCH_CEILING`]; with both fixed a
/// 1 GiB transfer loses none.)
pub const SOCKET_BUFFER_BYTES: usize = 8 << 20;

/// A UDP socket bound to `addr` with [`SOCKET_BUFFER_BYTES`] asked for each way (what the
/// kernel grants is logged; less is not an error).
fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    if addr.is_ipv6() {
        // As `std::net::UdpSocket::bind`: the platform default for dual stack.
        let _ = socket.set_only_v6(false);
    }
    let asked = SOCKET_BUFFER_BYTES;
    let recv = socket
        .set_recv_buffer_size(asked)
        .and_then(|()| socket.recv_buffer_size());
    let send = socket
        .set_send_buffer_size(asked)
        .and_then(|()| socket.send_buffer_size());
    tracing::debug!(%addr, asked, recv = ?recv.ok(), send = ?send.ok(), "tunnel socket buffers");
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Logs a closing connection's path figures: whether a transfer ran at a large MTU or
/// fell back (loss bursts look like an MTU black hole to quinn). `reason` is why it closed,
/// when the other end or the transport closed it.
fn log_closed(conn: &quinn::Connection, reason: Option<&quinn::ConnectionError>) {
    let path = conn.stats().path;
    tracing::debug!(
        error = reason.map(tracing::field::display),
        mtu = path.current_mtu,
        sent = path.sent_packets,
        lost = path.lost_packets,
        black_holes = path.black_holes_detected,
        rtt_us = path.rtt.as_micros(),
        "tunnel connection closed"
    );
}

/// Lets an endpoint receive datagrams up to [`MAX_UDP_PAYLOAD`] (the limit it announces to
/// its peers, who otherwise never send more than 1,472 bytes).
fn accept_large_datagrams(config: &mut quinn::EndpointConfig) {
    if let Err(e) = config.max_udp_payload_size(MAX_UDP_PAYLOAD) {
        // Unreachable for the constant above (within 1,200..=65,527); kept as a log line
        // rather than a panic.
        tracing::warn!(error = %e, "tunnel endpoint keeps the default UDP payload limit");
    }
}

/// A tunnel endpoint or dialer could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// TLS could not be configured.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The UDP socket could not be bound.
    #[error("cannot bind the tunnel endpoint on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A limit or address is invalid.
    #[error("invalid tunnel configuration: {0}")]
    Config(String),
}

// quinn sends up to 10 full-size packets in one GSO `sendmsg`; the kernel builds it as one IP
// packet, so the batch must fit IPv4's 65,535 bytes with its 28 bytes of IP and UDP headers.
const QUINN_MAX_TRANSMIT_SEGMENTS: usize = 10;
const _: () = assert!(QUINN_MAX_TRANSMIT_SEGMENTS * (MTU_SEARCH_CEILING as usize) + 28 <= 65_535);
const _: () = assert!(MTU_SEARCH_CEILING <= MAX_UDP_PAYLOAD);
