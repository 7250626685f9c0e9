//! `GET /v1/providers/{provider}`: what this node knows about a provider: its reputation
//! (the current, provisional epoch and the latest completed one), its history over the
//! completed epochs kept, and its current offer.
//!
//! | Code | Status | Meaning |
//! |---|---|---|
//! | `bad_provider` | 400 | the path is not an Agora id |
//! | `unknown_provider` | 404 | no offer and no score: this node knows nothing of it |
//!
//! A node without a genesis answers with `reputation.available = false` and the reason,
//! beside the offer, never with made-up scores.

use std::sync::Arc;

use agora_protocol::AgoraId;
use agora_protocol::offer_book::OfferFilter;
use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;

use super::ApiError;
use super::offers::OfferView;
use crate::clock;
use crate::daemon::Shared;
use crate::reputation::{EpochScore, ReputationView};

/// `GET /v1/providers/{provider}`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ProviderView {
    /// The provider's Agora id.
    pub provider: AgoraId,
    /// Its reputation now (or why this node has none).
    pub reputation: ReputationView,
    /// Its score in each completed epoch this node keeps (at most 24), newest first.
    pub history: Vec<EpochScore>,
    /// Its current offer, if this node's book holds one.
    pub offer: Option<OfferView>,
}

/// `GET /v1/providers/{provider}`.
pub async fn one(
    State(shared): State<Arc<Shared>>,
    Path(provider): Path<String>,
) -> Result<Json<ProviderView>, ApiError> {
    let id = ApiError::path_id("bad_provider", &provider)?;
    let offer = shared
        .market()
        .get(&id, clock::now())
        .map(|o| OfferView::new(&o, &OfferFilter::default()));
    let (reputation, history, scored) = match shared.reputation() {
        Some(r) => (r.view(&id), r.history(&id), r.knows(&id)),
        None => (
            crate::reputation::Reputations::new(None).view(&id),
            Vec::new(),
            false,
        ),
    };
    if offer.is_none() && !scored {
        return Err(ApiError::not_found(
            "unknown_provider",
            format!("this node holds no offer from {id} and no reputation score of it"),
        ));
    }
    Ok(Json(ProviderView {
        provider: id,
        reputation,
        history,
        offer,
    }))
}
