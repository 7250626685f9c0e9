//! The owner's side of approvals: `agora approve ID --owner-key FILE` signs an approval of
//! a lease request waiting at a node, `agora approvals list|watch --owner-key FILE` shows
//! the requests waiting for that owner.

// Indexing a serde_json::Value yields Null for a missing key; it never panics.
#![allow(clippy::indexing_slicing)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use agora_protocol::lease::{Approval, LeaseId, LeaseRequest};
use agora_protocol::{AgoraId, Digest, Ed25519, Signed};
use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::http_client::{DEFAULT_NODE, NodeClient};
use super::{GlobalArgs, print_json};

/// How often `watch` asks the node.
const WATCH_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Args)]
pub(crate) struct ApproveArgs {
    /// The waiting request's id (or a unique prefix among those waiting for you).
    id: String,
    /// The owner's key file (the id the agent's attestation names as owner).
    #[arg(long, value_name = "FILE")]
    owner_key: PathBuf,
    /// The node the request waits at.
    #[arg(long, env = "AGORA_NODE", default_value = DEFAULT_NODE)]
    node: String,
    /// The most the lease may cost, micro-credits (default: what the request can cost at
    /// most, its price cap times its lifetime).
    #[arg(long, value_name = "MICRO")]
    max_cost: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ApprovalsCommand {
    /// List the requests waiting for you at a node.
    List(WatchArgs),
    /// Print each new request waiting for you as it arrives, until interrupted.
    Watch(WatchArgs),
}

#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    /// The owner's key file (or give `--owner ID`).
    #[arg(long, value_name = "FILE", conflicts_with = "owner")]
    owner_key: Option<PathBuf>,
    /// The owner's id.
    #[arg(long)]
    owner: Option<AgoraId>,
    /// The node to ask.
    #[arg(long, env = "AGORA_NODE", default_value = DEFAULT_NODE)]
    node: String,
    /// Also show answered and expired requests (`list` only).
    #[arg(long)]
    all: bool,
}

fn owner_of(args: &WatchArgs) -> anyhow::Result<AgoraId> {
    match (&args.owner, &args.owner_key) {
        (Some(id), _) => Ok(*id),
        (None, Some(key)) => Ok(agora_attest::keyfile::load(key)
            .with_context(|| format!("cannot load the owner key {}", key.display()))?
            .agora_id()),
        (None, None) => bail!("give --owner-key FILE or --owner ID"),
    }
}

fn waiting(client: &NodeClient, owner: &AgoraId, all: bool) -> anyhow::Result<Vec<Value>> {
    let mut query = vec![("owner".to_owned(), owner.to_string())];
    if !all {
        query.push(("state".into(), "pending".into()));
    }
    let list = client.get_json("/v1/approvals", &query)?;
    Ok(list["approvals"].as_array().cloned().unwrap_or_default())
}

fn print_one(a: &Value) {
    println!(
        "{}  {:<8}  agent {}  up to {} µcr  {} {} `{}`  expires {}",
        a["id"].as_str().unwrap_or("?"),
        a["state"].as_str().unwrap_or("?"),
        a["agent"].as_str().unwrap_or("?"),
        a["max_cost_micro"],
        a["runtime"].as_str().unwrap_or("?"),
        a["image"].as_str().unwrap_or("?"),
        a["command"]
            .as_array()
            .map(|c| c
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" "))
            .unwrap_or_default(),
        a["expires_at"].as_str().unwrap_or("?")
    );
}

pub(crate) fn run(cmd: &ApprovalsCommand, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    match cmd {
        ApprovalsCommand::List(args) => {
            let owner = owner_of(args)?;
            let client = NodeClient::new(&args.node)?;
            let list = waiting(&client, &owner, args.all)?;
            if global.json {
                print_json(&json!({ "count": list.len(), "approvals": list }))?;
            } else if list.is_empty() {
                println!("no requests wait for {owner} at {}", args.node);
            } else {
                list.iter().for_each(print_one);
            }
            Ok(ExitCode::SUCCESS)
        }
        ApprovalsCommand::Watch(args) => {
            let owner = owner_of(args)?;
            let client = NodeClient::new(&args.node)?;
            if !global.json {
                eprintln!(
                    "watching {} for requests waiting for {owner} (Ctrl-C stops)",
                    args.node
                );
            }
            let mut seen = BTreeSet::new();
            loop {
                match waiting(&client, &owner, false) {
                    Ok(list) => {
                        for a in list {
                            let id = a["id"].as_str().unwrap_or_default().to_owned();
                            if seen.insert(id) {
                                if global.json {
                                    // One JSON object per line, as they arrive.
                                    println!("{a}");
                                } else {
                                    print_one(&a);
                                }
                            }
                        }
                    }
                    Err(e) => eprintln!("warning: {e:#}"),
                }
                std::thread::sleep(WATCH_EVERY);
            }
        }
    }
}

/// Resolves a full id or a unique prefix among the requests waiting for `owner`.
fn resolve(client: &NodeClient, owner: &AgoraId, id: &str) -> anyhow::Result<LeaseId> {
    if id.len() == 64 {
        return id
            .parse::<Digest>()
            .map_err(|_| anyhow::anyhow!("{id:?} is not a request id"));
    }
    let hits: Vec<Digest> = waiting(client, owner, false)?
        .iter()
        .filter_map(|a| a["id"].as_str())
        .filter(|a| a.starts_with(id))
        .filter_map(|a| a.parse().ok())
        .collect();
    match hits.as_slice() {
        [one] => Ok(*one),
        [] => bail!("no request waiting for {owner} starts with {id:?}"),
        _ => bail!(
            "{id:?} names {} waiting requests; give more digits",
            hits.len()
        ),
    }
}

pub(crate) fn approve(args: &ApproveArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let owner = agora_attest::keyfile::load(&args.owner_key)
        .with_context(|| format!("cannot load the owner key {}", args.owner_key.display()))?;
    let client = NodeClient::new(&args.node)?;
    let id = resolve(&client, &owner.agora_id(), &args.id)?;
    let view = client.get_json(&format!("/v1/approvals/{id}"), &[])?;
    // What is approved is the agent's own signed request, checked here, not the node's word.
    let request_bytes = URL_SAFE_NO_PAD
        .decode(view["request"].as_str().unwrap_or_default())
        .context("the node's copy of the request is not base64url")?;
    let request = Signed::<LeaseRequest>::decode(&request_bytes, &Ed25519)
        .context("the node's copy of the request does not verify")?;
    if request.digest() != id {
        bail!("the node showed another request than {id}");
    }
    let req = request.body();
    let max_cost = args
        .max_cost
        .unwrap_or_else(|| req.max_price_per_sec.saturating_mul(req.spec.lifetime_secs));
    let approval = Signed::sign(
        Approval {
            owner: owner.agora_id(),
            request: id,
            agent: req.agent,
            max_cost_micro: max_cost,
            approved_at: super::now()?,
        },
        &owner,
    )
    .context("cannot sign the approval")?;
    let (status, body) = client.request_json(
        reqwest::Method::POST,
        &format!("/v1/approvals/{id}"),
        Some(&json!({ "approval": URL_SAFE_NO_PAD.encode(approval.as_bytes()) })),
        Duration::from_secs(60),
    )?;
    if status != 201 {
        return crate::cli::agent::report_failure(status, &body, global.json, "refused");
    }
    if global.json {
        print_json(&body)?;
    } else {
        println!(
            "approved  request {id} of agent {} (up to {max_cost} µcr): lease granted by {}",
            req.agent,
            body["lease"]["provider"].as_str().unwrap_or("?")
        );
    }
    Ok(ExitCode::SUCCESS)
}
