//! `GET /v1/ledger/state`: where this node's replica of the evidence log stands (state hash,
//! heads, counts by kind of fact, entries waiting for parents, equivocators). Two nodes
//! with the same `state_hash` hold the same entries. `GET /v1/ledger/entries/{digest}`: one
//! accepted entry, with its author's signature for the caller to check.
//!
//! | Code | Status | Meaning |
//! |---|---|---|
//! | `unavailable` | 503 | the node runs without a ledger |
//! | `bad_digest` | 400 | the path's digest is not 64 hex digits |
//! | `no_entry` | 404 | no accepted entry has that digest here |

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

use super::ApiError;
use crate::daemon::Shared;
use crate::ledger::LedgerState;

/// `GET /v1/ledger/state`.
pub async fn state(State(shared): State<Arc<Shared>>) -> Result<Json<LedgerState>, ApiError> {
    Ok(Json(ledger_of(&shared)?.state()))
}

/// One accepted entry of the evidence log, as `GET /v1/ledger/entries/{digest}` shows it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct LedgerEntryView {
    /// Its digest (hex): the SHA-256 of `entry`'s bytes.
    pub digest: String,
    /// The node that appended and signed it (`agora1…`).
    pub author: String,
    /// Its place in the author's chain (0 for the first).
    pub seq: u64,
    /// The author's previous entry (hex), absent for `seq` 0.
    pub prev: Option<String>,
    /// Other authors' entries it follows (hex, ascending).
    pub parents: Vec<String>,
    /// When the author appended it (Unix milliseconds, the author's clock).
    pub at_unix_millis: u64,
    /// The kind of fact it records (`signup`, `lease`, `usage`, `rating`, `revocation`,
    /// `equivocation`).
    pub fact: String,
    /// The signed entry (base64url, no padding): verify it rather than this node's word.
    pub entry: String,
}

/// `GET /v1/ledger/entries/{digest}`.
pub async fn entry(
    State(shared): State<Arc<Shared>>,
    Path(digest): Path<String>,
) -> Result<Json<LedgerEntryView>, ApiError> {
    let wanted: agora_protocol::Digest = digest.parse().map_err(|_| {
        ApiError::bad_request(
            "bad_digest",
            format!("{digest:?} is not a digest (64 hex digits)"),
        )
    })?;
    let view = ledger_of(&shared)?.with_log(|log| {
        log.get(&wanted).map(|signed| {
            let e = signed.body();
            LedgerEntryView {
                digest: wanted.to_string(),
                author: e.author.to_string(),
                seq: e.seq,
                prev: e.prev.map(|d| d.to_string()),
                parents: e.parents.iter().map(ToString::to_string).collect(),
                at_unix_millis: e.at.as_unix_millis(),
                fact: e.fact.kind().to_owned(),
                entry: URL_SAFE_NO_PAD.encode(signed.as_bytes()),
            }
        })
    });
    view.map(Json)
        .ok_or_else(|| ApiError::not_found("no_entry", format!("no accepted entry {wanted} here")))
}

fn ledger_of(shared: &Shared) -> Result<&Arc<crate::ledger::Ledger>, ApiError> {
    shared.ledger().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "this node runs without a ledger",
        )
    })
}
