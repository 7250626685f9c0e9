//! `GET /v1/ledger/state`: where this node's replica of the evidence log stands (state hash,
//! heads, counts by kind of fact, entries waiting for parents, equivocators). Two nodes
//! with the same `state_hash` hold the same entries.
//!
//! | Code | Status | Meaning |
//! |---|---|---|
//! | `unavailable` | 503 | the node runs without a ledger |

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::ApiError;
use crate::daemon::Shared;
use crate::ledger::LedgerState;

/// `GET /v1/ledger/state`.
pub async fn state(State(shared): State<Arc<Shared>>) -> Result<Json<LedgerState>, ApiError> {
    let ledger = shared.ledger().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "this node runs without a ledger",
        )
    })?;
    Ok(Json(ledger.state()))
}
