//! `POST /v1/leases/{id}/relay`: a gateway relays the QUIC tunnel packets of an agent that
//! cannot route to its provider (see [`crate::tunnel::relay`]).
//!
//! The request carries the agent's own signed `Relay` operation (fresh, nonce unseen) and,
//! when this node did not relay the lease, the provider-signed grant. The session forwards
//! only to a tunnel endpoint the provider signed into that grant, for the grant's agent,
//! until the lease expires: this node never becomes a way to reach anything else, and since
//! it only moves ciphertext the provider still authenticates the agent and checks the
//! capability on every stream.
//!
//! A grantee (another agent the lease's owner let in with a [`ServiceGrant`]) asks the same
//! way with its own signed `Relay` operation (its own id as the operation's agent), the
//! owner's signed grant, the lease's provider-signed capability (from the published record)
//! and the `port` it reaches, which the grant and the capability must both list. Its session
//! forwards to an endpoint the provider signed: in the lease's grant if this node relayed
//! the lease, else in the provider's current offer in this node's book. It ends when the
//! grant or the capability does; the provider checks the grant again on every stream.
//!
//! | Refusal | Status | `error.code` |
//! |---|---|---|
//! | not the signer's own operation; a grant for another key | 403 | `unauthorized` |
//! | grant or capability for another lease or provider | 400 | `lease_mismatch` |
//! | the grant does not list the port (or the capability does not) | 400 | `port_not_allowed` |
//! | the grant is not valid now | 409 | `grant_expired` |
//! | the lease has ended or its capability expired | 409 | `ended` |
//! | the operation is older than 5 min (or from the future) / seen before | 409 | `stale` / `replay` |
//! | `endpoint` is not one the provider signed | 400 | `not_an_endpoint` |
//! | the provider signed no endpoint to relay to | 409 | `no_tunnel_endpoint` |
//! | sessions for the node or for the agent at their bound | 503 | `relay_busy` |

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use agora_protocol::lease::{Capability, LeaseGrant, LeaseId, LeaseOp, Op};
use agora_protocol::lease_rpc::LeaseState;
use agora_protocol::service::{GrantProblem, ServiceGrant};
use agora_protocol::{AgoraId, Signed, Timestamp};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::ApiError;
use super::json::JsonBody;
use super::leases::{checked_op, decode_signed};
use crate::clock;
use crate::daemon::Shared;
use crate::tunnel::relay::{Admit, RelayError};

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayBody {
    /// The agent's signed `LeaseOp` with `op: relay`, base64url.
    pub op: String,
    /// The provider-signed `LeaseGrant`, base64url: needed when this node does not know the
    /// lease (it was granted through another node).
    #[serde(default)]
    pub grant: Option<String>,
    /// Which of the grant's tunnel endpoints to relay to (default: the first).
    #[serde(default)]
    pub endpoint: Option<SocketAddr>,
    /// A grantee's: the owner's signed `ServiceGrant` for the signer's key, base64url.
    #[serde(default)]
    pub service_grant: Option<String>,
    /// A grantee's: the lease's provider-signed `Capability` (the published record's),
    /// base64url.
    #[serde(default)]
    pub capability: Option<String>,
    /// A grantee's: the workload port it reaches (the grant and the capability list it).
    #[serde(default)]
    pub port: Option<u16>,
}

/// What a relay session may forward to, and until when.
struct Allowed {
    /// Endpoints the provider signed.
    endpoints: Vec<SocketAddr>,
    /// The provider (the key the tunnel's TLS must prove).
    provider: AgoraId,
    /// When the session must end at the latest.
    until: Timestamp,
}

/// The answer: where to send the QUIC packets.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RelayView {
    /// `ip:port` on this node: dial it as if it were the provider (its key stays pinned).
    pub relay: String,
    /// The provider endpoint the packets go to.
    pub target: String,
    /// The provider (the key the tunnel's TLS must prove).
    pub provider: String,
    /// The session ends at the lease's expiry …
    pub expires_at: String,
    /// … or after this many seconds without a packet either way.
    pub idle_timeout_secs: u64,
}

/// `POST /v1/leases/{id}/relay`.
pub async fn open(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<RelayBody>,
) -> Result<Response, ApiError> {
    let relay = shared.relay().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "this node does not relay tunnels ([relay] enabled = false)",
        )
    })?;
    let op = checked_op(&id, &body.op, |op| matches!(op, Op::Relay), "relay")?;
    let b = op.body();
    if op.signer() != b.agent {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "unauthorized",
            "a relay needs the agent's own signature",
        ));
    }
    let now = clock::now();
    let allowed = match &body.service_grant {
        None => for_the_agent(&shared, &body, b, now)?,
        Some(text) => for_a_grantee(&shared, &body, text, b, now)?,
    };
    match relay.admit(b.nonce, b.issued_at, now) {
        Admit::Fresh => {}
        Admit::Stale => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "stale",
                "the signed relay operation is too old or from the future",
            ));
        }
        Admit::Replay => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "replay",
                "the signed relay operation was already used",
            ));
        }
        Admit::Busy => return Err(busy("too many relay requests to remember now")),
    }
    let target = target_of(&allowed.endpoints, body.endpoint)?;
    let bind = bind_host(&shared, &headers)?;
    let lifetime = allowed.until.saturating_duration_since(now);
    let session = relay
        .open(b.agent, b.lease, bind, target, lifetime)
        .await
        .map_err(|e| match e {
            RelayError::Full(_) | RelayError::AgentFull(_) => busy(&e.to_string()),
            RelayError::Bind { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                e.to_string(),
            ),
        })?;
    tracing::info!(
        lease = %b.lease,
        agent = %b.agent,
        grantee = body.service_grant.is_some(),
        relay = %session.relay,
        %target,
        "relay session opened"
    );
    let view = RelayView {
        relay: session.relay.to_string(),
        target: target.to_string(),
        provider: allowed.provider.to_string(),
        expires_at: allowed.until.to_string(),
        idle_timeout_secs: shared.config.relay.idle.as_secs(),
    };
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// The lease's own agent: the provider-signed grant (sent, or kept here) names it.
fn for_the_agent(
    shared: &Shared,
    body: &RelayBody,
    b: &LeaseOp,
    now: Timestamp,
) -> Result<Allowed, ApiError> {
    let grant = grant_for(shared, body, b.lease)?;
    let g = grant.body();
    if grant.signer() != g.provider || g.lease != b.lease {
        return Err(ApiError::bad_request(
            "bad_signature",
            "the grant is not signed by its provider or is for another lease",
        ));
    }
    if g.agent != b.agent || g.provider != b.provider {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "unauthorized",
            "the operation's agent or provider is not the grant's",
        ));
    }
    if g.expires_at <= now || known_ended(shared, &b.lease) {
        return Err(ended("the lease has ended"));
    }
    Ok(Allowed {
        endpoints: crate::tunnel::client::grant_endpoints(g),
        provider: g.provider,
        until: g.expires_at,
    })
}

/// A grantee: the owner's grant for the signer's key, with the lease's capability, for a
/// port both list, valid now.
fn for_a_grantee(
    shared: &Shared,
    body: &RelayBody,
    grant_text: &str,
    b: &LeaseOp,
    now: Timestamp,
) -> Result<Allowed, ApiError> {
    let grant: Signed<ServiceGrant> =
        decode_signed(grant_text, "malformed_grant", "service_grant")?;
    let cap_text = body.capability.as_deref().ok_or_else(|| {
        ApiError::bad_request(
            "malformed_body",
            "a grantee sends the lease's `capability` (its published record's) beside the \
             service grant",
        )
    })?;
    let capability: Signed<Capability> = decode_signed(cap_text, "malformed_grant", "capability")?;
    let port = body.port.ok_or_else(|| {
        ApiError::bad_request("malformed_body", "a grantee names the `port` it reaches")
    })?;
    let (g, c) = (grant.body(), capability.body());
    if capability.signer() != c.provider {
        return Err(ApiError::bad_request(
            "bad_signature",
            "the capability is not signed by its provider",
        ));
    }
    if g.lease != b.lease || g.provider != b.provider {
        return Err(ApiError::bad_request(
            "lease_mismatch",
            format!(
                "the service grant is for lease {} at {}, not the operation's",
                g.lease, g.provider
            ),
        ));
    }
    g.permits(c, b.agent, port, now).map_err(|p| match p {
        GrantProblem::OtherLease => ApiError::bad_request(
            "lease_mismatch",
            "the capability is not the grant's lease's (owner, lease, provider)",
        ),
        GrantProblem::NotGrantee { .. } => {
            ApiError::new(StatusCode::FORBIDDEN, "unauthorized", p.to_string())
        }
        GrantProblem::Expired { .. } => {
            ApiError::new(StatusCode::CONFLICT, "grant_expired", p.to_string())
        }
        GrantProblem::Port(_) => ApiError::bad_request("port_not_allowed", p.to_string()),
    })?;
    if c.expires_at <= now || known_ended(shared, &c.lease) {
        return Err(ended("the lease has ended or its capability expired"));
    }
    Ok(Allowed {
        endpoints: provider_endpoints(shared, &c.lease, c.provider, now),
        provider: c.provider,
        until: g.expires_at.min(c.expires_at),
    })
}

/// Tunnel endpoints `provider` signed: in the lease's grant if this node relayed `lease`,
/// else in the provider's current offer in this node's book (none if neither).
fn provider_endpoints(
    shared: &Shared,
    lease: &LeaseId,
    provider: AgoraId,
    now: Timestamp,
) -> Vec<SocketAddr> {
    let known = shared
        .gateway()
        .and_then(|g| g.lease(lease).ok().flatten())
        .filter(|l| l.grant.body().provider == provider);
    if let Some(l) = known {
        return crate::tunnel::client::grant_endpoints(l.grant.body());
    }
    shared
        .market()
        .get(&provider, now)
        .map(|o| {
            o.body()
                .tunnel_endpoints
                .iter()
                .filter_map(|e| e.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn ended(message: &str) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "ended", message)
}

fn busy(message: &str) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "relay_busy", message).with_retry_after(5)
}

/// The grant in the body, else the one this node keeps for the lease.
fn grant_for(
    shared: &Shared,
    body: &RelayBody,
    lease: agora_protocol::lease::LeaseId,
) -> Result<Signed<LeaseGrant>, ApiError> {
    if let Some(text) = &body.grant {
        return decode_signed(text, "malformed_grant", "grant");
    }
    let known = shared
        .gateway()
        .and_then(|g| g.lease(&lease).ok().flatten());
    known.map(|l| l.grant).ok_or_else(|| {
        ApiError::not_found(
            "unknown_lease",
            format!("this node does not know lease {lease}: send its grant"),
        )
    })
}

fn known_ended(shared: &Shared, lease: &agora_protocol::lease::LeaseId) -> bool {
    shared
        .gateway()
        .and_then(|g| g.lease(lease).ok().flatten())
        .is_some_and(|l| matches!(l.state, LeaseState::Ended { .. }))
}

/// The endpoint to relay to: `wanted` if the provider signed it, else the first it signed.
fn target_of(listed: &[SocketAddr], wanted: Option<SocketAddr>) -> Result<SocketAddr, ApiError> {
    let target = match wanted {
        Some(w) => listed.iter().copied().find(|a| *a == w).ok_or_else(|| {
            ApiError::bad_request(
                "not_an_endpoint",
                format!("{w} is not one of the grant's tunnel endpoints {listed:?}"),
            )
        })?,
        None => listed.first().copied().ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "no_tunnel_endpoint",
                "the provider signed no tunnel endpoint to relay to",
            )
        })?,
    };
    if target.ip().is_unspecified() || target.ip().is_multicast() || target.port() == 0 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_tunnel_endpoint",
            format!("{target} is not an endpoint packets can be sent to"),
        ));
    }
    Ok(target)
}

/// Where relay sockets bind: `[relay] host`, else the HTTP listen address, else the
/// address the agent reached this node at (the `Host` header's IP; a name or an address
/// this host does not have fails to bind and says so).
fn bind_host(shared: &Shared, headers: &HeaderMap) -> Result<IpAddr, ApiError> {
    if let Some(host) = shared.config.relay.host {
        return Ok(host);
    }
    let http = shared.config.http.ip();
    if !http.is_unspecified() {
        return Ok(http);
    }
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(host_ip)
        .filter(|ip| !ip.is_unspecified())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "cannot tell which address agents reach this node at: set [relay] host",
            )
        })
}

/// The IP of a `Host` header value (`1.2.3.4`, `1.2.3.4:80`, `[::1]:80`), if it is one.
fn host_ip(host: &str) -> Option<IpAddr> {
    if let Ok(a) = host.parse::<SocketAddr>() {
        return Some(a.ip());
    }
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn host_headers_give_their_ip() {
        assert_eq!(host_ip("10.1.2.3:8080"), Some("10.1.2.3".parse().unwrap()));
        assert_eq!(host_ip("10.1.2.3"), Some("10.1.2.3".parse().unwrap()));
        assert_eq!(host_ip("[::1]:80"), Some("::1".parse().unwrap()));
        assert_eq!(host_ip("[::1]"), Some("::1".parse().unwrap()));
        assert_eq!(host_ip("node.example:80"), None);
    }
}
