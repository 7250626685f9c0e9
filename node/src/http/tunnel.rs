//! `GET /v1/leases/{id}/tunnel`: what an agent needs to open a tunnel to its lease's
//! workload ports ([`crate::tunnel`]): the provider to pin, its QUIC endpoints and ALPN, the
//! capability, the ports it opens, the expiry, and the `agora tunnel` command that does it.
//!
//! It reshapes the lease `GET /v1/leases/{id}` shows (refreshed from the provider), with the
//! provider's signed grant beside it to verify: an agent need not trust this node for the
//! key it pins. Nothing here is secret: the capability works only over a TLS connection
//! proving the agent's own key.
//!
//! | Outcome | Status | `error.code` |
//! |---|---|---|
//! | the tunnel's details | 200 | |
//! | not a lease id; bad `port` | 400 | `bad_lease_id`, `bad_query` |
//! | `port` not opened by the capability | 400 | `port_not_allowed` |
//! | no such lease here | 404 | `unknown_lease` |
//! | the lease ended or expired | 409 | `ended` |

use std::sync::Arc;

use agora_protocol::AgoraId;
use agora_protocol::lease::LeaseId;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ApiError;
use super::leases::{LeaseView, parse_lease, view};
use crate::daemon::Shared;

/// `GET /v1/leases/{id}/tunnel` arguments.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TunnelInput {
    /// The lease id: 64 hex digits.
    #[schemars(pattern(r"^[0-9a-fA-F]{64}$"))]
    pub id: String,
    /// The workload port `command` forwards (default: every port the capability opens).
    #[serde(default)]
    pub port: Option<u16>,
}

/// The query string (parsed by hand so a bad port is a `bad_query`, as elsewhere).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelQuery {
    /// See [`TunnelInput::port`].
    pub port: Option<String>,
}

/// What opening a tunnel to a lease needs.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TunnelView {
    /// The lease.
    pub lease: LeaseId,
    /// The agent: the only key the provider accepts as the TLS client.
    pub agent: AgoraId,
    /// The provider: the ed25519 key its TLS certificate must prove (pin it; no web PKI).
    pub provider: AgoraId,
    /// Its QUIC tunnel endpoints, UDP `ip:port` (empty when it listens on an unspecified
    /// address: then pass one with `agora tunnel --endpoint`, or use the relay).
    pub endpoints: Vec<String>,
    /// The TLS ALPN protocol.
    pub alpn: String,
    /// The provider-signed capability (base64url), sent at the head of every stream.
    pub capability: String,
    /// The workload ports the capability opens (TCP).
    pub ports: Vec<u16>,
    /// When the capability and the lease expire (RFC 3339), unless extended.
    pub expires_at: String,
    /// Seconds left.
    pub remaining_secs: u64,
    /// The provider's signed grant (base64url): verify the provider key, endpoints and
    /// capability here instead of trusting this node.
    pub grant: String,
    /// The command that opens the tunnel beside the agent, printing the local addresses
    /// (`127.0.0.1:0` picks a free local port).
    pub command: String,
}

impl TunnelView {
    /// The tunnel of a lease `view` that still runs, with `command` forwarding `port` (every
    /// port when `None`).
    ///
    /// # Errors
    /// `ended` (409) for an ended or expired lease; `port_not_allowed` (400) for a port the
    /// capability does not open.
    pub fn of(view: &LeaseView, port: Option<u16>) -> Result<Self, ApiError> {
        if view.state == "ended" || view.remaining_secs == 0 {
            let why = view.ended.as_ref().map_or("expired", |e| e.reason);
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "ended",
                format!("lease {} has ended ({why}): no tunnel to it", view.lease),
            ));
        }
        let forwarded = match port {
            Some(p) if !view.ports.contains(&p) => {
                return Err(ApiError::bad_request(
                    "port_not_allowed",
                    format!("port {p} is not among the lease's ports {:?}", view.ports),
                ));
            }
            Some(p) => vec![p],
            None => view.ports.clone(),
        };
        Ok(Self {
            lease: view.lease,
            agent: view.agent,
            provider: view.provider,
            endpoints: view.tunnel_endpoints.clone(),
            alpn: String::from_utf8_lossy(crate::tunnel::ALPN).into_owned(),
            capability: view.capability.clone(),
            ports: view.ports.clone(),
            expires_at: view.expires_at.clone(),
            remaining_secs: view.remaining_secs,
            grant: view.grant.clone(),
            command: command(&view.lease, &forwarded),
        })
    }
}

/// `agora tunnel LEASE -L 127.0.0.1:0:PORT …`.
pub fn command(lease: &LeaseId, ports: &[u16]) -> String {
    let mut c = format!("agora tunnel {lease}");
    for p in ports {
        c.push_str(&format!(" -L 127.0.0.1:0:{p}"));
    }
    c
}

/// `GET /v1/leases/{id}/tunnel[?port=P]`.
pub async fn show(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(q): Query<TunnelQuery>,
) -> Result<Json<TunnelView>, ApiError> {
    let id = parse_lease(&id)?;
    let port = q
        .port
        .map(|p| {
            p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                ApiError::bad_request(
                    "bad_query",
                    format!("query parameter `port`: {p:?} is not a port (1 to 65535)"),
                )
            })
        })
        .transpose()?;
    let lease = view(&shared, &id).await?;
    TunnelView::of(&lease, port).map(Json)
}

#[cfg(test)]
mod tests {
    use agora_attest::Identity;
    use agora_protocol::Signed;
    use agora_protocol::lease::LeaseGrant;
    use agora_protocol::lease_rpc::LeaseState;
    use agora_protocol::workload::TerminationReason;

    use super::*;
    use crate::lease::gateway::contact::fixtures::{at, provider, signed_grant};

    fn grant() -> Signed<LeaseGrant> {
        let agent = Identity::from_secret_bytes(&[8; 32]).agora_id();
        let endpoints = vec!["192.0.2.1:7001".into()];
        signed_grant(
            &provider(),
            agent,
            vec![80, 5432],
            (at(0), at(3600)),
            endpoints,
        )
    }

    #[test]
    fn a_running_lease_has_a_tunnel_and_an_ended_one_has_none() {
        let grant = grant();
        let g = grant.body();
        let now = g.starts_at;
        let running = LeaseView::new(&grant, &LeaseState::Running, None, now);
        let t = TunnelView::of(&running, None).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!((t.provider, t.agent), (g.provider, g.agent));
        assert_eq!(t.endpoints, ["192.0.2.1:7001"]);
        assert_eq!(t.ports, [80, 5432]);
        assert_eq!(t.alpn, "agora-tunnel/1");
        assert_eq!(t.remaining_secs, 3600);
        assert_eq!(
            t.command,
            format!(
                "agora tunnel {} -L 127.0.0.1:0:80 -L 127.0.0.1:0:5432",
                g.lease
            )
        );
        let one = TunnelView::of(&running, Some(5432)).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            one.command,
            format!("agora tunnel {} -L 127.0.0.1:0:5432", g.lease)
        );
        let other = TunnelView::of(&running, Some(22)).err().map(|e| e.code());
        assert_eq!(other, Some("port_not_allowed"));

        let ended = LeaseState::Ended {
            reason: TerminationReason::StoppedByAgent,
            at: now,
        };
        let view = LeaseView::new(&grant, &ended, None, now);
        assert_eq!(
            TunnelView::of(&view, None).err().map(|e| e.code()),
            Some("ended")
        );
        let expired = LeaseView::new(&grant, &LeaseState::Running, None, g.expires_at);
        assert_eq!(
            TunnelView::of(&expired, None).err().map(|e| e.code()),
            Some("ended")
        );
    }
}
