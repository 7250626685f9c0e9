//! `agora agent token`: sign a delegation to one node and exchange it for that node's bearer
//! token, under which the node's `/mcp` endpoint acts for the agent (within the delegation).

// Indexing a serde_json::Value yields Null for a missing key; it never panics.
#![allow(clippy::indexing_slicing)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use agora_protocol::lease::{Delegation, OpKind};
use agora_protocol::{AgoraId, Signed};
use anyhow::Context as _;
use clap::Args;
use serde_json::json;

use super::lease::{b64, load_agent, report_failure};
use crate::cli::http_client::{DEFAULT_NODE, NodeClient};
use crate::cli::{GlobalArgs, print_json};

/// What `--ops` allows unless told: everything an agent does with leases, and no more.
const DEFAULT_OPS: &str = "lease,exec,logs,files,extend,stop,status";

#[derive(Debug, Args)]
pub(crate) struct TokenArgs {
    /// The node to hand the token to (its `/mcp` will act for you).
    #[arg(long, env = "AGORA_NODE", default_value = DEFAULT_NODE)]
    node: String,
    /// The agent's key file.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// What the node may do for you, comma-separated: lease, exec, logs, files, extend,
    /// stop, status, tunnel.
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_OPS, value_parser = parse_op)]
    ops: Vec<OpKind>,
    /// Most credits it may commit for you: under a quota committee, in total over
    /// everything it locked and that was charged (validators check it); without one, per
    /// provider.
    #[arg(long, default_value_t = 10)]
    spend_cap: u64,
    /// How long the delegation (and so the token, at most a day) lasts.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    ttl: Duration,
}

fn parse_op(s: &str) -> Result<OpKind, String> {
    serde_json::from_value(json!(s.trim())).map_err(|_| {
        format!(
            "{s:?} is not an operation (lease, exec, logs, files, extend, stop, status, tunnel)"
        )
    })
}

pub(crate) fn run(args: &TokenArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let agent = load_agent(args.key.as_deref())?;
    let client = NodeClient::new(&args.node)?;
    let info = client.get_json("/v1/node", &[])?;
    let node: AgoraId = info["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .context("the node does not say its id")?;
    let now = crate::cli::now()?;
    let mut ops = args.ops.clone();
    ops.sort();
    ops.dedup();
    let delegation = Signed::sign(
        Delegation {
            agent: agent.identity.agora_id(),
            delegate: node,
            ops,
            spend_cap_credits: args.spend_cap,
            issued_at: now.saturating_sub(Duration::from_secs(5)),
            expires_at: now.saturating_add(args.ttl),
        },
        &agent.identity,
    )
    .context("cannot sign the delegation")?;
    let (status, body) = client.request_json(
        reqwest::Method::POST,
        "/v1/tokens",
        Some(&json!({ "delegation": b64(&delegation), "signup": b64(&agent.signup) })),
        Duration::from_secs(30),
    )?;
    if status != 201 {
        return report_failure(status, &body, global.json, "refused");
    }
    if global.json {
        print_json(&body)?;
    } else {
        println!("{}", body["token"].as_str().unwrap_or_default());
        eprintln!(
            "a token for {} at {} only, until {}: send it as `Authorization: Bearer` to {}/mcp",
            body["agent"].as_str().unwrap_or("-"),
            body["node"].as_str().unwrap_or("-"),
            body["expires_at"].as_str().unwrap_or("-"),
            args.node.trim_end_matches('/'),
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_parse_by_name() {
        assert_eq!(parse_op("exec"), Ok(OpKind::Exec));
        assert_eq!(parse_op(" stop "), Ok(OpKind::Stop));
        assert!(parse_op("launch").unwrap_err().contains("lease, exec"));
    }
}
