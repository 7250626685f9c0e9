//! Published services: an agent advertises a port of its lease (an MCP server, a web app, a
//! TCP service) for other agents to find, and lets chosen agents in.
//!
//! ```text
//! owner (the lease's agent) ──Signed<ServiceRecord> (+ the provider's Capability)──▶ gossip
//!     agora/v1/services ──▶ every node's ServiceBook ──▶ GET /v1/services, list_services
//! owner ──Signed<ServiceGrant> (lease, grantee key, ports, expiry, id)──▶ grantee (any channel)
//! grantee ──tunnel stream: header = capability + grant──▶ provider: checks both (+ revocations)
//! owner ──Signed<LeaseOp> RevokeGrant(id)──▶ gateway ──▶ provider: refuses the grant from now
//!     on and cuts its live streams
//! ```
//!
//! - [`ServiceRecord`], signed by the lease's agent (the owner), carries the provider-signed
//!   [`Capability`] of the lease: any node checks, without the ledger, that the signer is the
//!   lease's agent, that the provider and port are the lease's, and that the record does not
//!   outlive the capability. Highest `seq` wins per (owner, lease, port); a
//!   [`ServiceWithdrawal`] retracts it.
//! - [`ServiceGrant`], signed by the owner, names a grantee key, a subset of the lease's ports,
//!   an expiry and a random [`GrantId`]; the provider checks it on every stream
//!   ([`ServiceGrant::permits`]) and remembers revoked ids.
//! - [`book::ServiceBook`]: the sans-IO, bounded view of published services.
//! - [`gossip::ServiceGossip`]: the gossip message kinds (3 and 4) on [`gossip::SERVICES_TOPIC`].
//! - [`directory::Directory`]: book, owner rate limits and gossipsub verdicts, as a node runs
//!   it, and the pages a peer's catch-up asks for ([`sync`]).

use core::time::Duration;

use serde::{Deserialize, Serialize};

use crate::bounds;
use crate::codec::DecodeError;
use crate::id::AgoraId;
use crate::lease::{Capability, LeaseId, MAX_ENDPOINTS};
use crate::signed::{Signed, SignedKind};
use crate::time::Timestamp;

pub mod book;
pub mod directory;
pub mod gossip;
pub mod sync;

pub use book::{ServiceBook, ServiceBookConfig, ServiceFilter, ServiceKey, ServiceRejected};
pub use directory::Directory;
pub use gossip::{SERVICES_TOPIC, ServiceGossip};

/// Longest a record may live; owners republish (with a higher `seq`) to keep it listed.
pub const MAX_SERVICE_TTL: Duration = Duration::from_secs(24 * 3600);
/// Longest service name.
pub const MAX_NAME_BYTES: usize = 64;
/// Longest description.
pub const MAX_DESCRIPTION_BYTES: usize = 280;
/// Length of a grant id.
pub const GRANT_ID_LEN: usize = 16;

/// What a published port speaks.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
    /// A Model Context Protocol server (streamable HTTP).
    Mcp,
    /// An HTTP service.
    Http,
    /// Any other TCP service.
    Tcp,
}

impl ServiceKind {
    /// Every kind.
    pub const ALL: [Self; 3] = [Self::Mcp, Self::Http, Self::Tcp];

    /// The lowercase name (`mcp`, `http`, `tcp`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Mcp => "mcp",
            Self::Http => "http",
            Self::Tcp => "tcp",
        }
    }
}

impl core::fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::str::FromStr for ServiceKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not a service kind (mcp, http, tcp)"))
    }
}

/// An agent's signed advertisement of one port of its lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRecord {
    /// The lease's agent (the signer).
    pub owner: AgoraId,
    /// The lease.
    pub lease: LeaseId,
    /// Its provider.
    pub provider: AgoraId,
    /// The workload port served.
    pub port: u16,
    /// A short name: lowercase letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// What it speaks.
    pub kind: ServiceKind,
    /// What it does, for people and models (at most [`MAX_DESCRIPTION_BYTES`]).
    pub description: String,
    /// The provider's QUIC tunnel endpoints (`host:port`), from the lease's grant.
    pub tunnel_endpoints: Vec<String>,
    /// The provider-signed capability of the lease: proves owner, lease, provider and port.
    pub capability: Signed<Capability>,
    /// Higher replaces lower for the same (owner, lease, port).
    pub seq: u64,
    /// When the owner signed it.
    pub issued_at: Timestamp,
    /// When it drops out of every book: at most [`MAX_SERVICE_TTL`] after `issued_at`, and
    /// not after the capability.
    pub expires_at: Timestamp,
}

impl ServiceRecord {
    /// The record's place in a book.
    pub fn key(&self) -> ServiceKey {
        ServiceKey {
            owner: self.owner,
            lease: self.lease,
            port: self.port,
        }
    }
}

impl SignedKind for ServiceRecord {
    const DOMAIN: &'static str = "agora/service-record/v1";
    const MAX_PAYLOAD_BYTES: usize = 2048;

    fn validate(&self) -> Result<(), DecodeError> {
        let cap = self.capability.body();
        if cap.agent != self.owner || cap.lease != self.lease || cap.provider != self.provider {
            return Err(invalid(
                "capability",
                "is not the owner's capability for this lease and provider".into(),
            ));
        }
        if !cap.ports.contains(&self.port) {
            return Err(invalid(
                "port",
                format!(
                    "{} is not among the lease's ports {:?}",
                    self.port, cap.ports
                ),
            ));
        }
        bounds::token("name", &self.name, MAX_NAME_BYTES)?;
        bounds::max_len("description", &self.description, MAX_DESCRIPTION_BYTES)?;
        if self.description.chars().any(char::is_control) {
            return Err(invalid("description", "contains control characters".into()));
        }
        check_endpoints(&self.tunnel_endpoints)?;
        if self.expires_at <= self.issued_at {
            return Err(invalid("expires_at", "is not after issued_at".into()));
        }
        if self.expires_at > self.issued_at.saturating_add(MAX_SERVICE_TTL) {
            return Err(invalid(
                "expires_at",
                format!("more than {} s after issued_at", MAX_SERVICE_TTL.as_secs()),
            ));
        }
        if self.expires_at > cap.expires_at {
            return Err(invalid(
                "expires_at",
                format!("is after the capability's expiry {}", cap.expires_at),
            ));
        }
        Ok(())
    }

    fn author(&self) -> Option<AgoraId> {
        Some(self.owner)
    }
}

fn check_endpoints(endpoints: &[String]) -> Result<(), DecodeError> {
    if endpoints.len() > MAX_ENDPOINTS {
        return Err(invalid(
            "tunnel_endpoints",
            format!("{} entries, at most {MAX_ENDPOINTS}", endpoints.len()),
        ));
    }
    for e in endpoints {
        bounds::max_len("tunnel_endpoints", e, 128)?;
    }
    Ok(())
}

/// An owner's signed retraction of its record for (lease, port), up to `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceWithdrawal {
    /// The owner (the signer).
    pub owner: AgoraId,
    /// The lease.
    pub lease: LeaseId,
    /// The port.
    pub port: u16,
    /// Records up to this `seq` are withdrawn.
    pub seq: u64,
    /// When it was signed.
    pub issued_at: Timestamp,
}

impl ServiceWithdrawal {
    /// The place in a book it retracts.
    pub fn key(&self) -> ServiceKey {
        ServiceKey {
            owner: self.owner,
            lease: self.lease,
            port: self.port,
        }
    }
}

impl SignedKind for ServiceWithdrawal {
    const DOMAIN: &'static str = "agora/service-withdrawal/v1";
    const MAX_PAYLOAD_BYTES: usize = 128;

    fn author(&self) -> Option<AgoraId> {
        Some(self.owner)
    }
}

/// A grant's random id: what a revocation names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GrantId(pub [u8; GRANT_ID_LEN]);

impl core::fmt::Display for GrantId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Text that is not 32 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a grant id is 32 hex digits")]
pub struct GrantIdParseError;

impl core::str::FromStr for GrantId {
    type Err = GrantIdParseError;
    fn from_str(text: &str) -> Result<Self, GrantIdParseError> {
        let mut out = [0u8; GRANT_ID_LEN];
        if text.len() != 2 * GRANT_ID_LEN || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(GrantIdParseError);
        }
        for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
            let hex = core::str::from_utf8(pair).map_err(|_| GrantIdParseError)?;
            *byte = u8::from_str_radix(hex, 16).map_err(|_| GrantIdParseError)?;
        }
        Ok(Self(out))
    }
}

/// The owner's signed permission for another agent's key to open tunnel streams to some of
/// its lease's ports. Presented by the grantee beside the lease's capability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceGrant {
    /// The lease's agent (the signer).
    pub owner: AgoraId,
    /// The lease.
    pub lease: LeaseId,
    /// Its provider.
    pub provider: AgoraId,
    /// The key allowed in (the grantee's TLS key).
    pub grantee: AgoraId,
    /// The ports it may reach (each must also be in the capability).
    pub ports: Vec<u16>,
    /// Random: what a revocation names.
    pub id: GrantId,
    /// When the owner signed it.
    pub issued_at: Timestamp,
    /// When it stops working.
    pub expires_at: Timestamp,
}

/// Why a grant does not let a stream in ([`ServiceGrant::permits`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantProblem {
    /// The grant is for another lease, provider or owner than the capability.
    #[error("the grant is for another lease than the capability")]
    OtherLease,
    /// The grant names another key than the client's.
    #[error("the grant is {grantee}'s, not {client}'s")]
    NotGrantee {
        /// Whom it names.
        grantee: AgoraId,
        /// Who presented it.
        client: AgoraId,
    },
    /// Not yet valid, or expired.
    #[error("the grant is valid from {issued_at} to {expires_at}")]
    Expired {
        /// Its start.
        issued_at: Timestamp,
        /// Its end.
        expires_at: Timestamp,
    },
    /// The port is not in both the grant and the capability.
    #[error("port {0} is not granted")]
    Port(u16),
}

impl ServiceGrant {
    /// Whether this grant lets `client` reach `port` of the lease `capability` names at `now`
    /// (revocation and the lease's liveness are the provider's to check).
    ///
    /// # Errors
    /// The first [`GrantProblem`].
    pub fn permits(
        &self,
        capability: &Capability,
        client: AgoraId,
        port: u16,
        now: Timestamp,
    ) -> Result<(), GrantProblem> {
        if self.owner != capability.agent
            || self.lease != capability.lease
            || self.provider != capability.provider
        {
            return Err(GrantProblem::OtherLease);
        }
        if self.grantee != client {
            return Err(GrantProblem::NotGrantee {
                grantee: self.grantee,
                client,
            });
        }
        if now < self.issued_at || now >= self.expires_at {
            return Err(GrantProblem::Expired {
                issued_at: self.issued_at,
                expires_at: self.expires_at,
            });
        }
        if !self.ports.contains(&port) || !capability.ports.contains(&port) {
            return Err(GrantProblem::Port(port));
        }
        Ok(())
    }
}

impl SignedKind for ServiceGrant {
    const DOMAIN: &'static str = "agora/service-grant/v1";
    const MAX_PAYLOAD_BYTES: usize = 256;

    fn validate(&self) -> Result<(), DecodeError> {
        if self.grantee == self.owner {
            return Err(invalid("grantee", "is the owner itself".into()));
        }
        if self.ports.is_empty() || self.ports.len() > crate::workload::MAX_PORTS {
            return Err(invalid(
                "ports",
                format!(
                    "{} ports, expected 1 to {}",
                    self.ports.len(),
                    crate::workload::MAX_PORTS
                ),
            ));
        }
        for (i, p) in self.ports.iter().enumerate() {
            if *p == 0 || self.ports.iter().take(i).any(|q| q == p) {
                return Err(invalid("ports", format!("port {p} is 0 or listed twice")));
            }
        }
        if self.expires_at <= self.issued_at {
            return Err(invalid("expires_at", "is not after issued_at".into()));
        }
        Ok(())
    }

    fn author(&self) -> Option<AgoraId> {
        Some(self.owner)
    }
}

fn invalid(field: &'static str, reason: String) -> DecodeError {
    DecodeError::InvalidField { field, reason }
}

#[cfg(test)]
pub(crate) mod tests;
