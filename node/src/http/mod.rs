//! The HTTP API (axum): what any node tells agents and operators.
//!
//! | Route | Answer |
//! |---|---|
//! | `GET /healthz` | `{"status":"ok"}` while the node runs |
//! | `GET /v1/node` | id, peer id, version, roles, region, addresses, counts |
//! | `GET /v1/peers` | connected peers with addresses, RTT, gossipsub and app scores |
//! | `GET /v1/offers` | offers matching query filters, sorted by price, newest or reputation (see [`offers::OfferQuery`]) |
//! | `GET /v1/offers/{provider}` | one provider's current offer |
//! | `GET /v1/providers/{provider}` | a provider's reputation (current and completed epochs), history and offer (see [`providers`]) |
//! | `GET /v1/services` | published services matching query filters (see [`services`]) |
//! | `POST /v1/services` | `{"record"}` or `{"withdrawal"}`: an owner's signed service record, checked, kept and gossiped |
//! | `GET /v1/signup/challenge` | a fresh signup challenge and the proof of work required |
//! | `POST /v1/signup` | `{"record": "<base64url>"}` → the agent's account and signup record |
//! | `GET /v1/accounts/{agent}` | an agent's account at this node |
//! | `GET /v1/accounts/{agent}/quota` | the agent's quota account at the committee (see [`quota`]) |
//! | `POST /v1/accounts/{agent}/quota` | `{"op"}`: the agent's signed credit or free-tier claim, certified |
//! | `POST /v1/tokens` | `{"delegation", "signup"?}` → a bearer token for this node only (see [`tokens`]) |
//! | `GET`/`DELETE /v1/tokens/self` | what the request's bearer token stands for; revoke it |
//! | `POST /v1/leases` | `{"request": "<signed LeaseRequest>"}` → relayed to its candidates (see [`leases`]) |
//! | `POST /v1/leases/quote` | constraints → ranked matching offers (candidates for a request) |
//! | `GET /v1/leases?agent=ID&proof=` | an agent's leases relayed or run here, to the agent only (see [`read_proof`]) |
//! | `GET /v1/leases/{id}` | one lease, refreshed from its provider |
//! | `POST /v1/leases/{id}/extend` | `{"op": "<signed LeaseOp>"}` relayed to the provider |
//! | `DELETE /v1/leases/{id}` | `{"op": "<signed LeaseOp>"}` (stop) relayed to the provider |
//! | `DELETE /v1/leases/{id}/grants/{grant}` | `{"op": "<signed LeaseOp>"}` (revoke a service grant) relayed to the provider |
//! | `GET /v1/leases/{id}/tunnel` | what opening a tunnel to the lease needs (see [`tunnel`]) |
//! | `POST /v1/leases/{id}/exec` | `{"op", "stdin"?}` → the command's output and exit code, NDJSON (see [`streams`]) |
//! | `GET /v1/leases/{id}/logs?op=` | the workload's output, NDJSON; follows when the signed op says so |
//! | `PUT /v1/leases/{id}/files?op=` | a tar stream unpacked in the workload |
//! | `GET /v1/leases/{id}/files?op=` | a file or directory of the workload as a tar stream |
//! | `GET /v1/ledger/state` | the evidence log here: state hash, heads, counts by fact kind (see [`ledger`]) |
//! | `GET /v1/ledger/entries/{digest}` | one accepted entry, signed |
//! | `GET /v1/approvals?owner=ID` | lease requests waiting for their owner (see [`approvals`]) |
//! | `GET /v1/approvals/{id}` | one waiting request and where it is |
//! | `POST /v1/approvals/{id}` | `{"approval": "<signed Approval>"}` → the request relayed again with it |
//! | `GET /metrics` | Prometheus text format |
//! | `GET /openapi.json` | this API as an OpenAPI 3.1 document |
//! | `GET /llms.txt` | a concise guide for language models |
//! | `POST /mcp` | MCP over streamable HTTP (read-only tools; the agent's tools under a token) |
//!
//! Every route is also an operation in [`crate::surface`]'s registry, which the OpenAPI
//! document, `/llms.txt` and the MCP tools are generated from; a test fails when the two
//! disagree.
//!
//! Errors are JSON: `{"error":{"code":"…","message":"…"}}` with a 4xx status; the code is
//! stable for programs, the message is for people. Every error is JSON, including those
//! axum produces itself (see [`json::json_errors`]); JSON bodies are read with
//! [`json::JsonBody`] and size-limited.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;

use crate::clock;
use crate::daemon::Shared;

pub mod accounts;
pub mod approvals;
pub mod json;
pub mod leases;
pub mod ledger;
pub mod offers;
pub mod providers;
mod query;
pub mod quota;
pub mod read_proof;
pub mod relay;
pub mod services;
pub mod signup;
pub mod streams;
pub mod tokens;
pub mod tunnel;

/// An API error: status, stable code, message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after_secs: Option<u64>,
}

impl ApiError {
    /// `status` with `code`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    /// Adds a `Retry-After` header (seconds).
    #[must_use]
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// The Agora id in a path segment, or a 400 `code` (`bad_agent`, `bad_provider`)
    /// quoting what was there.
    ///
    /// # Errors
    /// The 400 when `text` is not an Agora id.
    pub fn path_id(code: &'static str, text: &str) -> Result<agora_protocol::AgoraId, Self> {
        text.parse()
            .map_err(|e| Self::bad_request(code, format!("{text:?} is not an Agora id: {e}")))
    }

    /// 404 with `code`.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": { "code": self.code, "message": self.message } });
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        response
    }
}

/// The router over the node's shared state.
pub fn router(shared: Arc<Shared>) -> Router {
    let delegate = crate::surface::mcp::Delegate {
        identity: shared.identity().clone(),
        tokens: shared.tokens.clone(),
    };
    let api = Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/node", get(node_info))
        .route("/v1/peers", get(peers))
        .route("/v1/offers", get(offers::list))
        .route("/v1/offers/{provider}", get(offers::one))
        .route("/v1/providers/{provider}", get(providers::one))
        .route("/v1/services", get(services::list).post(services::publish))
        .route("/v1/signup/challenge", get(signup::challenge))
        .route(
            "/v1/signup",
            post(signup::signup)
                .layer(axum::extract::DefaultBodyLimit::max(signup::MAX_BODY_BYTES)),
        )
        .route("/v1/accounts/{agent}", get(accounts::one))
        .route(
            "/v1/accounts/{agent}/quota",
            get(quota::account)
                .post(quota::submit)
                .layer(axum::extract::DefaultBodyLimit::max(quota::MAX_BODY_BYTES)),
        )
        .route(
            "/v1/tokens",
            post(tokens::issue).layer(axum::extract::DefaultBodyLimit::max(
                signup::MAX_BODY_BYTES + 1024,
            )),
        )
        .route("/v1/tokens/self", get(tokens::show).delete(tokens::revoke))
        .route(
            "/v1/leases",
            get(leases::list)
                .post(leases::create)
                .layer(axum::extract::DefaultBodyLimit::max(leases::MAX_BODY_BYTES)),
        )
        .route("/v1/leases/quote", post(leases::quote))
        .route("/v1/leases/{id}", get(leases::one).delete(leases::stop))
        .route("/v1/leases/{id}/extend", post(leases::extend))
        .route("/v1/leases/{id}/ack", post(leases::acknowledge))
        .route(
            "/v1/leases/{id}/grants/{grant}",
            axum::routing::delete(services::revoke_grant),
        )
        .route("/v1/leases/{id}/tunnel", get(tunnel::show))
        .route(
            "/v1/leases/{id}/exec",
            post(streams::exec).layer(axum::extract::DefaultBodyLimit::max(
                streams::MAX_EXEC_BODY_BYTES,
            )),
        )
        .route("/v1/leases/{id}/logs", get(streams::logs))
        .route("/v1/leases/{id}/relay", post(relay::open))
        .route(
            "/v1/leases/{id}/files",
            get(streams::get_files).put(streams::put_files),
        )
        .route("/v1/ledger/state", get(ledger::state))
        .route("/v1/ledger/entries/{digest}", get(ledger::entry))
        .route("/v1/approvals", get(approvals::list))
        .route(
            "/v1/approvals/{id}",
            get(approvals::one).post(approvals::approve).layer(
                axum::extract::DefaultBodyLimit::max(approvals::MAX_BODY_BYTES),
            ),
        )
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(crate::surface::http::openapi))
        .route("/llms.txt", get(crate::surface::http::llms))
        .fallback(|| async { ApiError::not_found("no_route", "no such endpoint") })
        .layer(axum::middleware::map_response(json::json_errors))
        .with_state(shared);
    // MCP tools call the API in process; `/mcp` itself is not among what they can call.
    api.clone()
        .route_service("/mcp", crate::surface::mcp::service(api, delegate))
}

async fn healthz() -> Json<crate::surface::types::Health> {
    Json(crate::surface::types::Health {
        status: "ok".to_owned(),
    })
}

/// `GET /v1/node`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct NodeInfo {
    /// Agora id.
    pub id: String,
    /// libp2p peer id (same key).
    pub peer_id: String,
    /// agora version.
    pub version: &'static str,
    /// Roles played.
    pub roles: Vec<String>,
    /// Region.
    pub region: String,
    /// Listen addresses, each with `/p2p/<peer id>`, ready to use as a bootstrap address.
    pub listen_addrs: Vec<String>,
    /// Connected peers.
    pub peers: usize,
    /// Offers in the book.
    pub offers: usize,
    /// Offer topics followed.
    pub topics: Vec<String>,
    /// Start time (RFC 3339).
    pub started_at: String,
    /// A provider's runtimes (what it can run and what it cannot, with reasons).
    pub runtimes: Option<crate::daemon::shared::RuntimeReport>,
    /// A provider's workloads that have not ended.
    pub running_workloads: Option<usize>,
}

async fn node_info(State(shared): State<Arc<Shared>>) -> Json<NodeInfo> {
    let status = shared.status();
    let offers = shared.market().len();
    Json(NodeInfo {
        id: shared.id.to_string(),
        peer_id: shared.peer_id.to_string(),
        version: env!("CARGO_PKG_VERSION"),
        roles: shared
            .config
            .roles
            .iter()
            .map(|r| format!("{r:?}").to_lowercase())
            .collect(),
        region: shared.config.region.clone(),
        listen_addrs: status
            .listen_addrs
            .iter()
            .map(|a| format!("{a}/p2p/{}", shared.peer_id))
            .collect(),
        peers: status.peers.len(),
        offers,
        topics: status.topics.clone(),
        started_at: shared.started_at.to_string(),
        runtimes: shared.runtimes().cloned(),
        running_workloads: shared
            .supervisor()
            .map(|s| s.records().iter().filter(|r| r.ended.is_none()).count()),
    })
}

/// `GET /v1/peers`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct PeerList {
    /// Connected peers.
    pub peers: Vec<crate::daemon::shared::PeerStatus>,
    /// When (RFC 3339).
    pub at: String,
}

async fn peers(State(shared): State<Arc<Shared>>) -> Json<PeerList> {
    let status = shared.status();
    Json(PeerList {
        peers: status.peers.clone(),
        at: clock::now().to_string(),
    })
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    match crate::metrics::encode(&shared.registry) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
