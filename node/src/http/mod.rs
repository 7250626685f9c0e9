//! The HTTP API (axum): what any node tells agents and operators.
//!
//! | Route | Answer |
//! |---|---|
//! | `GET /healthz` | `{"status":"ok"}` while the node runs |
//! | `GET /v1/node` | id, peer id, version, roles, region, addresses, counts |
//! | `GET /v1/peers` | connected peers with addresses, RTT, gossipsub and app scores |
//! | `GET /v1/offers` | offers matching query filters (see [`offers::OfferQuery`]) |
//! | `GET /v1/offers/{provider}` | one provider's current offer |
//! | `GET /metrics` | Prometheus text format |
//!
//! Errors are JSON: `{"error":{"code":"…","message":"…"}}` with a 4xx status; the code is
//! stable for programs, the message is for people.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use crate::clock;
use crate::daemon::Shared;

pub mod offers;

/// An API error: status, stable code, message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
        }
    }

    /// 404 with `code`.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}

/// The router over the node's shared state.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/node", get(node_info))
        .route("/v1/peers", get(peers))
        .route("/v1/offers", get(offers::list))
        .route("/v1/offers/{provider}", get(offers::one))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::not_found("no_route", "no such endpoint") })
        .with_state(shared)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// `GET /v1/node`.
#[derive(Debug, Serialize)]
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

async fn peers(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    let status = shared.status();
    Json(serde_json::json!({ "peers": status.peers, "at": clock::now().to_string() }))
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
