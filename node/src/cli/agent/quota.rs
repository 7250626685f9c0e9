//! The agent's quota at the committee, from the CLI: the lock beside a lease request, the
//! top-up beside an extension, the credit or free-tier claim after signup. On a node without a genesis
//! (`no_committee`) there is nothing to sign.

// Indexing a serde_json::Value yields Null for a missing key; it never panics.
#![allow(clippy::indexing_slicing)]

use std::time::Duration;

use agora_attest::Identity;
use agora_node::agent::quota::{
    Extension, FREE_TIER_TRIES, QuotaAccount, credit_op, free_tier_claim, lock_fields, lock_ops,
    op_base64, top_up_op,
};
use agora_protocol::lease::{LeaseGrant, LeaseRequest};
use agora_protocol::{Credential, Signed};
use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::cli::http_client::NodeClient;

/// How long one quota call to the node may take (it asks the validators).
const TIMEOUT: Duration = Duration::from_secs(30);

/// The agent's quota account, or `None` when the node has no committee.
pub(super) fn account(
    client: &NodeClient,
    agent: &Identity,
) -> anyhow::Result<Option<QuotaAccount>> {
    let path = format!("/v1/accounts/{}/quota", agent.agora_id());
    let (status, body) = client.request_json(reqwest::Method::GET, &path, None, TIMEOUT)?;
    match status {
        200 => Ok(Some(
            serde_json::from_value(body).context("the node's quota account is malformed")?,
        )),
        404 if body["error"]["code"] == "no_committee" => Ok(None),
        _ => bail!(
            "asking for the quota account: {} (HTTP {status})",
            body["error"]["message"].as_str().unwrap_or("failed")
        ),
    }
}

/// The agent's signed locks for `request`, one per candidate (see
/// [`agora_node::agent::quota::lock_ops`]), as the `lock` and `fallback_locks` fields of
/// its `POST /v1/leases` body; empty without a committee.
pub(super) fn lock_fields_for(
    client: &NodeClient,
    agent: &Identity,
    request: &Signed<LeaseRequest>,
) -> anyhow::Result<serde_json::Map<String, Value>> {
    let Some(view) = account(client, agent)? else {
        return Ok(serde_json::Map::new());
    };
    let locks = lock_ops(agent, &view, request).context("signing the quota locks")?;
    Ok(lock_fields(&locks))
}

/// The agent's signed top-up paying `secs` more of the lease `grant` is for (base64url),
/// or `None` without a committee.
pub(super) fn top_up_for(
    client: &NodeClient,
    agent: &Identity,
    grant: &Signed<LeaseGrant>,
    secs: u64,
) -> anyhow::Result<Option<String>> {
    let Some(view) = account(client, agent)? else {
        return Ok(None);
    };
    let extension = Extension::of(grant.body(), secs);
    let top_up = top_up_op(agent, &view, &extension).context("signing the quota top-up")?;
    Ok(Some(super::lease::b64(&top_up)))
}

fn submit(client: &NodeClient, agent: &Identity, op: String) -> anyhow::Result<(u16, Value)> {
    let path = format!("/v1/accounts/{}/quota", agent.agora_id());
    client.request_json(
        reqwest::Method::POST,
        &path,
        Some(&json!({ "op": op })),
        TIMEOUT,
    )
}

/// After signup: credits the credential's spending limit, or claims this epoch's free-tier
/// grant (trying other pool slots when one is taken). The answer (certificate and account),
/// or `None` without a committee.
pub(super) fn claim(
    client: &NodeClient,
    agent: &Identity,
    credential: Option<Credential>,
) -> anyhow::Result<Option<Value>> {
    let Some(view) = account(client, agent)? else {
        return Ok(None);
    };
    if let Some(credential) = credential {
        let op = op_base64(&credit_op(agent, &view, credential)?)?;
        let (status, body) = submit(client, agent, op)?;
        if status != 201 {
            bail!(
                "crediting the attestation: {} (HTTP {status})",
                body["error"]["message"].as_str().unwrap_or("refused")
            );
        }
        return Ok(Some(body));
    }
    let mut last = String::new();
    for _ in 0..FREE_TIER_TRIES {
        let op = op_base64(&free_tier_claim(agent, &view)?)?;
        let (status, body) = submit(client, agent, op)?;
        if status == 201 {
            return Ok(Some(body));
        }
        last = body["error"]["message"]
            .as_str()
            .unwrap_or("refused")
            .to_owned();
        // A slot someone else took: try another; anything else will not change.
        if !last.contains("already voted") {
            break;
        }
    }
    bail!("claiming the free-tier grant: {last}")
}
