//! `GET /v1/accounts/{agent}`: the account an agent made by signing up at this node
//! (404 `unknown_account` when it has not).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};

use super::ApiError;
use super::signup::service;
use crate::agent::Account;
use crate::daemon::Shared;

/// `GET /v1/accounts/{agent}`.
pub async fn one(
    State(shared): State<Arc<Shared>>,
    Path(agent): Path<String>,
) -> Result<Json<Account>, ApiError> {
    let id = ApiError::path_id("bad_agent", &agent)?;
    service(&shared)?.account(&id)?.map(Json).ok_or_else(|| {
        ApiError::not_found(
            "unknown_account",
            format!("{id} has not signed up at this node"),
        )
    })
}
