//! Published services: `GET /v1/services`, `POST /v1/services` and
//! `DELETE /v1/leases/{id}/grants/{grant}`.
//!
//! Every record comes with `signed` (the owner's signed record, base64url) and `capability`
//! (the provider's signed capability inside it), so an agent need not trust this node. An
//! agent submits its signed record (or withdrawal) here; the node checks it exactly as it
//! checks gossip (signature, the capability's provider signature, owner = the lease's
//! agent, port in the lease, TTL within the lease, owner rate limit), keeps it and
//! publishes it on the services topic.
//!
//! | Outcome of `POST /v1/services` | Status | `error.code` |
//! |---|---|---|
//! | new or newer: kept and published | 200 (`published: true`) | |
//! | exactly what the node holds | 200 (`published: false`) | |
//! | not base64url, does not decode or verify | 400 | `malformed_service`, `bad_signature` |
//! | older than held or withdrawn, expired, from the future | 409 | `stale_service` |
//! | the owner (or the node) holds as many as allowed | 409 | `services_full` |
//! | the owner sends too fast | 429 | `rate_limited` |

use std::sync::Arc;

use agora_protocol::lease::Op;
use agora_protocol::service::{
    GrantId, ServiceFilter, ServiceGossip, ServiceKind, ServiceRecord, ServiceWithdrawal,
};
use agora_protocol::{AgoraId, Digest, Signed};
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ApiError;
use super::json::JsonBody;
use super::leases::{OpBody, checked_op, decode_signed, relay};
use super::query::{self, bad};
use crate::clock;
use crate::daemon::{NetCommand, Shared};
use crate::market::Verdict;

/// Most records one query returns.
pub const MAX_LIMIT: usize = 1000;
/// Records returned when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;

/// `GET /v1/services` arguments: every filter is optional and they combine with AND (the
/// contract [`ServiceQuery::parse`] implements).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListServicesInput {
    /// Only services of this kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ServiceKind>,
    /// Only services with exactly this name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), pattern(r"^[a-z0-9._-]+$"))]
    pub name: Option<String>,
    /// Only services published by this agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<AgoraId>,
    /// Only services running on this provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<AgoraId>,
    /// Only services of this lease (64 hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[0-9a-fA-F]{64}$"))]
    pub lease: Option<String>,
    /// Most services returned (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub limit: Option<u32>,
}

/// A parsed `/v1/services` query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceQuery {
    /// The typed filter.
    pub filter: ServiceFilter,
    /// Most results.
    pub limit: usize,
}

impl ServiceQuery {
    /// Parses query pairs; unknown or malformed parameters are errors naming the parameter.
    ///
    /// # Errors
    /// [`ApiError`] 400 `bad_query`.
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, ApiError> {
        let mut q = Self {
            filter: ServiceFilter::default(),
            limit: DEFAULT_LIMIT,
        };
        for (name, value) in pairs {
            let value = value.trim();
            match name.as_str() {
                "kind" => q.filter.kind = Some(value.parse().map_err(|e| bad(name, e))?),
                "name" => {
                    agora_protocol::bounds::token("name", value, 64)
                        .map_err(|e| bad(name, e.to_string()))?;
                    q.filter.name = Some(value.to_owned());
                }
                "owner" | "provider" => {
                    let id: AgoraId = value
                        .parse()
                        .map_err(|e| bad(name, format!("{value:?} is not an Agora id: {e}")))?;
                    if name == "owner" {
                        q.filter.owner = Some(id);
                    } else {
                        q.filter.provider = Some(id);
                    }
                }
                "lease" => {
                    q.filter.lease = Some(value.parse::<Digest>().map_err(|_| {
                        bad(name, format!("{value:?} is not a lease id (64 hex digits)"))
                    })?);
                }
                "limit" => q.limit = query::limit(name, value, MAX_LIMIT)?,
                other => {
                    return Err(bad(
                        other,
                        "unknown (kind, name, owner, provider, lease, limit)",
                    ));
                }
            }
        }
        Ok(q)
    }
}

/// One published service as the API shows it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ServiceView {
    /// The agent that published it (the lease's agent).
    pub owner: AgoraId,
    /// The lease (64 hex digits).
    pub lease: String,
    /// The provider running it.
    pub provider: AgoraId,
    /// The workload port.
    pub port: u16,
    /// Its name.
    pub name: String,
    /// What it speaks: `mcp`, `http` or `tcp`.
    pub kind: ServiceKind,
    /// What it does.
    pub description: String,
    /// The provider's QUIC tunnel endpoints (`host:port`).
    pub tunnel_endpoints: Vec<String>,
    /// Sequence number (higher replaces lower).
    pub seq: u64,
    /// Issued (RFC 3339).
    pub issued_at: String,
    /// Drops out of every book (RFC 3339).
    pub expires_at: String,
    /// The provider's signed capability of the lease, base64url: what a grantee presents
    /// beside the owner's grant (`agora tunnel --grant`).
    pub capability: String,
    /// The owner's signed record, base64url: verify it yourself.
    pub signed: String,
}

impl ServiceView {
    /// The view of `record`.
    pub fn new(record: &Signed<ServiceRecord>) -> Self {
        let b = record.body();
        Self {
            owner: b.owner,
            lease: b.lease.to_string(),
            provider: b.provider,
            port: b.port,
            name: b.name.clone(),
            kind: b.kind,
            description: b.description.clone(),
            tunnel_endpoints: b.tunnel_endpoints.clone(),
            seq: b.seq,
            issued_at: b.issued_at.to_string(),
            expires_at: b.expires_at.to_string(),
            capability: URL_SAFE_NO_PAD.encode(b.capability.as_bytes()),
            signed: URL_SAFE_NO_PAD.encode(record.as_bytes()),
        }
    }
}

/// `GET /v1/services`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ServiceList {
    /// How many services follow.
    pub count: usize,
    /// The matching services, by name.
    pub services: Vec<ServiceView>,
    /// When the directory was read (RFC 3339).
    pub at: String,
}

/// `GET /v1/services`.
pub async fn list(
    State(shared): State<Arc<Shared>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<ServiceList>, ApiError> {
    let q = ServiceQuery::parse(&query::pairs(raw)?)?;
    let now = clock::now();
    let hits = shared.services().query(&q.filter, q.limit, now);
    let services: Vec<ServiceView> = hits.iter().map(ServiceView::new).collect();
    Ok(Json(ServiceList {
        count: services.len(),
        services,
        at: now.to_string(),
    }))
}

/// `POST /v1/services` body: exactly one of a signed record or a signed withdrawal.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishServiceInput {
    /// base64url of the owner's `Signed<ServiceRecord>` (`agora agent publish` builds it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    /// base64url of the owner's `Signed<ServiceWithdrawal>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawal: Option<String>,
}

/// `POST /v1/services` answer.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Published {
    /// Whether it was new here and goes out on gossip (`false`: the node held it already).
    pub published: bool,
    /// `service` or `service_withdrawal`.
    pub kind: String,
    /// The record as listed (for a record).
    pub service: Option<ServiceView>,
}

/// `POST /v1/services`.
pub async fn publish(
    State(shared): State<Arc<Shared>>,
    JsonBody(body): JsonBody<PublishServiceInput>,
) -> Result<Json<Published>, ApiError> {
    let msg = match (&body.record, &body.withdrawal) {
        (Some(r), None) => ServiceGossip::Record(decode_signed::<ServiceRecord>(
            r,
            "malformed_service",
            "record",
        )?),
        (None, Some(w)) => ServiceGossip::Withdrawal(decode_signed::<ServiceWithdrawal>(
            w,
            "malformed_service",
            "withdrawal",
        )?),
        _ => {
            return Err(ApiError::bad_request(
                "malformed_service",
                "send exactly one of `record` and `withdrawal`",
            ));
        }
    };
    let verdict = shared.services().submit(msg.clone(), clock::now());
    let published = match verdict {
        Verdict::Accept => true,
        Verdict::Known => false,
        Verdict::Ignore("rate_limited", _) => {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "this owner publishes too fast; retry in a few seconds",
            )
            .with_retry_after(5));
        }
        Verdict::Ignore(reason @ ("owner_full" | "book_full"), _) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "services_full",
                format!("not kept ({reason}): withdraw another service first"),
            ));
        }
        Verdict::Ignore(reason, _) | Verdict::Reject(reason) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "stale_service",
                format!(
                    "not kept ({reason}): older than what is held or withdrawn, expired, or \
                     dated in the future"
                ),
            ));
        }
    };
    if published {
        let net = shared.net().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the network is not up yet",
            )
        })?;
        net.try_send(NetCommand::PublishService(Box::new(msg.clone())))
            .map_err(|_| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the network is busy; retry",
                )
                .with_retry_after(1)
            })?;
    }
    Ok(Json(Published {
        published,
        kind: msg.kind().to_owned(),
        service: match &msg {
            ServiceGossip::Record(r) => Some(ServiceView::new(r)),
            ServiceGossip::Withdrawal(_) => None,
        },
    }))
}

/// `DELETE /v1/leases/{id}/grants/{grant}` arguments.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeGrantInput {
    /// The lease id: 64 hex digits.
    #[schemars(pattern(r"^[0-9a-fA-F]{64}$"))]
    pub id: String,
    /// The grant id: 32 hex digits.
    #[schemars(pattern(r"^[0-9a-fA-F]{32}$"))]
    pub grant: String,
    /// The owner's signed `LeaseOp` revoking that grant, base64url (`agora agent revoke`
    /// builds it).
    pub op: String,
}

/// `DELETE /v1/leases/{id}/grants/{grant}` with `{"op": "<signed RevokeGrant>"}`: relayed to
/// the lease's provider, which refuses the grant from then on and cuts its streams.
pub async fn revoke_grant(
    State(shared): State<Arc<Shared>>,
    Path((id, grant)): Path<(String, String)>,
    JsonBody(body): JsonBody<OpBody>,
) -> Result<Response, ApiError> {
    let grant: GrantId = grant.parse().map_err(|_| {
        ApiError::bad_request(
            "bad_grant_id",
            format!("{grant:?} is not a grant id (32 hex digits)"),
        )
    })?;
    let op = checked_op(&id, &body.op, is_revocation, "revoke grant")?;
    if op.body().op != (Op::RevokeGrant { grant }) {
        return Err(ApiError::bad_request(
            "wrong_op",
            format!("the operation does not revoke grant {grant}"),
        ));
    }
    relay(&shared, &id, &body, is_revocation, "revoke grant").await
}

fn is_revocation(op: &Op) -> bool {
    matches!(op, Op::RevokeGrant { .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &str) -> Result<ServiceQuery, String> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q).unwrap();
        ServiceQuery::parse(&pairs).map_err(|e| e.message)
    }

    #[test]
    fn typed_filters_parse() {
        let lease = "ab".repeat(32);
        let q = parse(&format!("kind=mcp&name=weather.v2&lease={lease}&limit=5")).unwrap();
        assert_eq!(q.filter.kind, Some(ServiceKind::Mcp));
        assert_eq!(q.filter.name.as_deref(), Some("weather.v2"));
        assert_eq!(q.filter.lease.map(|l| l.to_string()), Some(lease));
        assert_eq!(q.limit, 5);
        assert_eq!(parse("").unwrap().limit, DEFAULT_LIMIT);
    }

    #[test]
    fn bad_parameters_are_named() {
        for (q, name) in [
            ("kind=ftp", "kind"),
            ("name=Not%20A%20Token", "name"),
            ("owner=bob", "owner"),
            ("provider=agora1xyz", "provider"),
            ("lease=12", "lease"),
            ("limit=0", "limit"),
            ("colour=blue", "colour"),
        ] {
            let err = parse(q).unwrap_err();
            assert!(err.contains(&format!("`{name}`")), "{q}: {err}");
        }
    }
}
