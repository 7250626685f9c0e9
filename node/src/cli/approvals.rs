//! The owner's side of approvals: `agora approve ID --owner-key FILE` signs an approval of
//! a lease request (or an extension of a running lease) waiting at a node, `agora approvals list|watch --owner-key FILE` shows
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
    /// most: a lease's price cap times its lifetime, an extension's added seconds at the
    /// lease's price).
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
    // What is asked: a lease (runtime, image, command) or an extension of one.
    let what = if a["kind"] == "extension" {
        format!(
            "extend {} by {} s",
            a["lease"].as_str().unwrap_or("?"),
            a["extend_secs"]
        )
    } else {
        format!(
            "{} {} `{}`",
            a["runtime"].as_str().unwrap_or("?"),
            a["image"].as_str().unwrap_or("?"),
            a["command"]
                .as_array()
                .map(|c| c
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" "))
                .unwrap_or_default()
        )
    };
    println!(
        "{}  {:<8}  agent {}  up to {} µcr  {what}  expires {}",
        a["id"].as_str().unwrap_or("?"),
        a["state"].as_str().unwrap_or("?"),
        a["agent"].as_str().unwrap_or("?"),
        a["max_cost_micro"],
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
    let subject = if view["kind"] == "extension" {
        Subject::extension(&view, &request_bytes, id)?
    } else {
        Subject::lease(&request_bytes, id)?
    };
    let max_cost = args.max_cost.unwrap_or(subject.cost_micro);
    let approval = Signed::sign(
        Approval {
            owner: owner.agora_id(),
            request: id,
            agent: subject.agent,
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
    if status != 201 && status != 200 {
        return crate::cli::agent::report_failure(status, &body, global.json, "refused");
    }
    if global.json {
        print_json(&body)?;
    } else if let Some(secs) = subject.extend_secs {
        println!(
            "approved  extension {id} of lease {} by {secs} s (up to {max_cost} µcr): new end {}",
            body["lease"]["lease"].as_str().unwrap_or("?"),
            body["lease"]["expires_at"].as_str().unwrap_or("?")
        );
    } else {
        println!(
            "approved  request {id} of agent {} (up to {max_cost} µcr): lease granted by {}",
            subject.agent,
            body["lease"]["provider"].as_str().unwrap_or("?")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// What an owner approves, read from the agent's own signatures.
struct Subject {
    agent: AgoraId,
    /// The most it can cost: the default of `--max-cost`.
    cost_micro: u64,
    /// Of an extension, the seconds it adds.
    extend_secs: Option<u64>,
}

impl Subject {
    /// A lease request (`bytes`) whose id must be `id`.
    fn lease(bytes: &[u8], id: LeaseId) -> anyhow::Result<Self> {
        let request = Signed::<LeaseRequest>::decode(bytes, &Ed25519)
            .context("the node's copy of the request does not verify")?;
        if request.digest() != id {
            bail!("the node showed another request than {id}");
        }
        let req = request.body();
        Ok(Self {
            agent: req.agent,
            cost_micro: req.max_price_per_sec.saturating_mul(req.spec.lifetime_secs),
            extend_secs: None,
        })
    }

    /// An extension (`bytes`: the agent's signed `Extend`) named `id`: the operation's
    /// digest, or under a quota committee its top-up's chain digest (the top-up from the
    /// view), whose amount is
    /// then what it costs. Without a committee the cost is the node's figure (the lease's
    /// price times the seconds): the provider charges at most its own price for them.
    fn extension(view: &Value, bytes: &[u8], id: LeaseId) -> anyhow::Result<Self> {
        use agora_protocol::committee::{Action, ChainOp};
        use agora_protocol::lease::{LeaseOp, Op};
        let op = Signed::<LeaseOp>::decode(bytes, &Ed25519)
            .context("the node's copy of the extension does not verify")?;
        let body = op.body();
        let Op::Extend { secs } = body.op else {
            bail!("the node's copy of the extension is another operation");
        };
        let cost_micro = match view["top_up"].as_str() {
            None => {
                if op.digest() != id {
                    bail!("the node showed another extension than {id}");
                }
                view["max_cost_micro"]
                    .as_u64()
                    .context("the node shows no cost for the extension")?
            }
            Some(text) => {
                let bytes = URL_SAFE_NO_PAD
                    .decode(text)
                    .context("the node's copy of the top-up is not base64url")?;
                let top_up = Signed::<ChainOp>::decode(&bytes, &Ed25519)
                    .context("the node's copy of the top-up does not verify")?;
                let t = top_up.body();
                match &t.action {
                    Action::TopUp(terms)
                        if agora_protocol::committee::Op::Chain(top_up.clone()).digest() == id
                            && t.account == body.agent
                            && terms.lock.lease == body.lease =>
                    {
                        terms.lock.amount_micro
                    }
                    _ => bail!("the node showed another top-up than {id} for this extension"),
                }
            }
        };
        Ok(Self {
            agent: body.agent,
            cost_micro,
            extend_secs: Some(secs),
        })
    }
}
