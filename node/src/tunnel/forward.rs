//! The agent's local forwards, shared by `agora tunnel` and the MCP tool `open_tunnel`: the
//! `[BIND:]LOCAL:REMOTE` spec, the lease's grant checked before anything is dialed (the
//! provider key to pin comes from it, never from the node's word), and a local TCP listener
//! forwarding each connection over its own stream ([`client::forward`]).
//!
//! ```text
//! lease view ─▶ verify_grant (provider's signature, this lease, this agent) ─▶ check_port
//!   ─▶ Dialer::for_grant (pins grant.provider) ─▶ Listener::bind(addr, remote)
//!        └─ every accepted TCP connection ─▶ client::forward ─▶ one QUIC stream
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use agora_protocol::lease::{LeaseGrant, LeaseId};
use agora_protocol::{AgoraId, Ed25519, Signed};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::client::{self, Dialer};

/// How long an agent waits for the provider's endpoint before asking its node to relay
/// (a reachable provider's handshake takes a few round trips).
pub const RELAY_AFTER: std::time::Duration = std::time::Duration::from_secs(3);

/// The body of `POST /v1/leases/{id}/relay`: the agent's own freshly signed `relay`
/// operation and the provider-signed grant.
///
/// # Errors
/// When signing fails (never for a valid key).
pub fn relay_body(
    identity: &agora_attest::Identity,
    grant: &Signed<LeaseGrant>,
    now: agora_protocol::Timestamp,
) -> Result<serde_json::Value, agora_protocol::EncodeError> {
    let g = grant.body();
    let op = relay_op(identity, g.provider, g.lease, now)?;
    Ok(serde_json::json!({
        "op": URL_SAFE_NO_PAD.encode(op.as_bytes()),
        "grant": URL_SAFE_NO_PAD.encode(grant.as_bytes()),
    }))
}

/// The body of `POST /v1/leases/{id}/relay` for a grantee: its own freshly signed `relay`
/// operation (naming itself as the agent), the owner's signed `grant` for its key, the
/// lease's provider-signed `capability` (the published record's) and the workload `port`
/// it reaches (listed by both).
///
/// # Errors
/// When signing fails (never for a valid key).
pub fn grantee_relay_body(
    identity: &agora_attest::Identity,
    grant: &Signed<agora_protocol::service::ServiceGrant>,
    capability: &Signed<agora_protocol::lease::Capability>,
    port: u16,
    now: agora_protocol::Timestamp,
) -> Result<serde_json::Value, agora_protocol::EncodeError> {
    let g = grant.body();
    let op = relay_op(identity, g.provider, g.lease, now)?;
    Ok(serde_json::json!({
        "op": URL_SAFE_NO_PAD.encode(op.as_bytes()),
        "service_grant": URL_SAFE_NO_PAD.encode(grant.as_bytes()),
        "capability": URL_SAFE_NO_PAD.encode(capability.as_bytes()),
        "port": port,
    }))
}

/// The identity's own freshly signed `relay` operation on `lease` at `provider`: it names
/// the signer as the agent, so the provider checks it against the signer's own rights.
fn relay_op(
    identity: &agora_attest::Identity,
    provider: agora_protocol::AgoraId,
    lease: agora_protocol::lease::LeaseId,
    now: agora_protocol::Timestamp,
) -> Result<Signed<agora_protocol::lease::LeaseOp>, agora_protocol::EncodeError> {
    Signed::sign(
        agora_protocol::lease::LeaseOp {
            agent: identity.agora_id(),
            provider,
            lease,
            op: agora_protocol::lease::Op::Relay,
            nonce: crate::agent::request::nonce(),
            issued_at: now,
            delegation: None,
        },
        identity,
    )
}

/// The relay address in a node's answer to [`relay_body`].
pub fn relay_addr(answer: &serde_json::Value) -> Option<SocketAddr> {
    answer.get("relay")?.as_str()?.parse().ok()
}

/// Dials `dialer` for at most `wait`: whether the provider answers directly.
///
/// # Errors
/// The dial's error, or a timeout as [`client::OpenError::Dial`].
pub async fn dial_within(
    dialer: &Dialer,
    wait: std::time::Duration,
) -> Result<(), client::OpenError> {
    match tokio::time::timeout(wait, dialer.connection()).await {
        Ok(r) => r.map(|_| ()),
        Err(_) => Err(client::OpenError::Dial(format!("no answer in {wait:?}"))),
    }
}

/// One `-L [BIND:]LOCAL:REMOTE`: listen on `bind:local` (0 picks a free port), forward to
/// the workload's port `remote`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// The local address to listen on (default 127.0.0.1).
    pub bind: IpAddr,
    /// The local port (0: any free one).
    pub local: u16,
    /// The workload port.
    pub remote: u16,
}

impl Spec {
    /// Where to listen.
    pub fn local_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.local)
    }
}

/// A forward spec that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("-L {spec:?}: {reason}")]
pub struct SpecError {
    spec: String,
    reason: String,
}

impl FromStr for Spec {
    type Err = SpecError;

    fn from_str(spec: &str) -> Result<Self, SpecError> {
        let err = |reason: String| SpecError {
            spec: spec.to_owned(),
            reason,
        };
        let mut parts = spec.rsplitn(3, ':');
        let remote = parts.next().unwrap_or_default();
        let local = parts
            .next()
            .ok_or_else(|| err("expected [BIND:]LOCAL:REMOTE".into()))?;
        let bind = match parts.next() {
            None => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Some(b) => b
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .map_err(|_| err(format!("{b:?} is not an IP address")))?,
        };
        let local = local
            .parse()
            .map_err(|_| err(format!("{local:?} is not a port")))?;
        let remote: u16 = remote
            .parse()
            .map_err(|_| err(format!("{remote:?} is not a port")))?;
        if remote == 0 {
            return Err(err("the remote port cannot be 0".into()));
        }
        Ok(Self {
            bind,
            local,
            remote,
        })
    }
}

/// Why a lease's grant is not one to open a tunnel on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// Not base64url, or not a validly signed grant.
    #[error("the lease's grant does not verify: {0}")]
    Verify(String),
    /// Signed, but for another lease or agent, or not by the provider it names.
    #[error("the grant is not for lease {lease} and agent {agent}, or not signed by its provider")]
    NotOurs {
        /// The lease asked for.
        lease: LeaseId,
        /// The agent opening the tunnel.
        agent: AgoraId,
    },
    /// The capability does not open the port.
    #[error("port {port} is not one of the lease's ports {ports:?}")]
    Port {
        /// The port asked for.
        port: u16,
        /// Those the capability opens.
        ports: Vec<u16>,
    },
}

/// Decodes the base64url signed grant `text` (from a lease view) and checks it is `lease`'s,
/// for `agent`, signed by the provider it names: the key a tunnel then pins.
///
/// # Errors
/// [`GrantError::Verify`] or [`GrantError::NotOurs`].
pub fn verify_grant(
    text: &str,
    lease: &LeaseId,
    agent: &AgoraId,
) -> Result<Signed<LeaseGrant>, GrantError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(text.trim().as_bytes())
        .map_err(|e| GrantError::Verify(format!("not base64url: {e}")))?;
    let grant: Signed<LeaseGrant> =
        Signed::decode(&bytes, &Ed25519).map_err(|e| GrantError::Verify(e.to_string()))?;
    let g = grant.body();
    if g.lease != *lease || g.agent != *agent || grant.signer() != g.provider {
        return Err(GrantError::NotOurs {
            lease: *lease,
            agent: *agent,
        });
    }
    Ok(grant)
}

/// Checks that `grant`'s capability opens `port`.
///
/// # Errors
/// [`GrantError::Port`].
pub fn check_port(grant: &LeaseGrant, port: u16) -> Result<(), GrantError> {
    let ports = &grant.token.body().ports;
    if ports.contains(&port) {
        Ok(())
    } else {
        Err(GrantError::Port {
            port,
            ports: ports.clone(),
        })
    }
}

/// A local TCP listener forwarding every connection to a workload port through a
/// [`Dialer`]. Dropping it stops accepting; connections already forwarded go on until they
/// end or the dialer closes.
#[derive(Debug)]
pub struct Listener {
    local: SocketAddr,
    remote: u16,
    task: JoinHandle<()>,
}

impl Listener {
    /// Listens on `addr` and forwards to workload port `remote` through `dialer`.
    ///
    /// # Errors
    /// When `addr` cannot be bound.
    pub async fn bind(dialer: Arc<Dialer>, addr: SocketAddr, remote: u16) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let task = tokio::spawn(client::forward(dialer, listener, remote));
        Ok(Self {
            local,
            remote,
            task,
        })
    }

    /// The bound local address (its port picked when 0 was asked).
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// The workload port.
    pub fn remote(&self) -> u16 {
        self.remote
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use agora_attest::Identity;
    use agora_protocol::Digest;

    use super::*;
    use crate::lease::gateway::contact::fixtures::{at, signed_grant};

    #[test]
    fn specs_parse() {
        assert_eq!(
            "9000:8080".parse::<Spec>().unwrap(),
            Spec {
                bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
                local: 9000,
                remote: 8080
            }
        );
        assert_eq!(
            "0.0.0.0:0:80".parse::<Spec>().unwrap().bind,
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        );
        assert_eq!(
            "[::1]:1:2".parse::<Spec>().unwrap().bind,
            "::1".parse::<IpAddr>().unwrap()
        );
        for bad in ["8080", "x:80", "1:0", "1:70000", "nohost:1:2"] {
            assert!(bad.parse::<Spec>().is_err(), "{bad}");
        }
    }

    fn grant(provider: &Identity, agent: AgoraId) -> String {
        let g = signed_grant(provider, agent, vec![8080], (at(0), at(600)), vec![]);
        URL_SAFE_NO_PAD.encode(g.as_bytes())
    }

    #[test]
    fn only_the_agents_own_provider_signed_grant_is_taken() {
        let provider = Identity::generate(&mut rand::rng());
        let agent = Identity::generate(&mut rand::rng()).agora_id();
        let lease = Digest::of(b"lease");
        let text = grant(&provider, agent);
        let g = verify_grant(&text, &lease, &agent).unwrap();
        assert!(check_port(g.body(), 8080).is_ok());
        assert!(matches!(
            check_port(g.body(), 22),
            Err(GrantError::Port { port: 22, .. })
        ));
        let other = Identity::generate(&mut rand::rng()).agora_id();
        assert!(matches!(
            verify_grant(&text, &lease, &other),
            Err(GrantError::NotOurs { .. })
        ));
        assert!(matches!(
            verify_grant(&text, &Digest::of(b"other"), &agent),
            Err(GrantError::NotOurs { .. })
        ));
        assert!(matches!(
            verify_grant("!!", &lease, &agent),
            Err(GrantError::Verify(_))
        ));
    }
}
