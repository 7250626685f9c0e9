//! `agora agent extend` and `agora agent stop`: sign the operation, send it through any
//! node, check the provider's signatures on what comes back. An extension then republishes
//! the lease's published services with the re-signed capability.

// Indexing a serde_json::Value yields Null for a missing key; it never panics.
#![allow(clippy::indexing_slicing)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use agora_protocol::AgoraId;
use agora_protocol::lease::Op;
use anyhow::Context as _;
use clap::Args;
use serde_json::{Value, json};

use super::lease::{
    CALL_TIMEOUT, b64, find_lease, load_agent, print_lease, report_failure, sign_op, verify_grant,
    verify_receipt,
};
use crate::cli::http_client::{DEFAULT_NODE, NodeClient};
use crate::cli::{GlobalArgs, print_json};

#[derive(Debug, Args)]
pub(crate) struct ExtendArgs {
    /// The lease id (or a unique prefix of one of yours).
    lease: String,
    /// How much longer: seconds, or a duration such as `10m`.
    #[arg(value_parser = parse_secs)]
    secs: u64,
    /// Any node's HTTP API.
    #[arg(long, env = "AGORA_NODE", default_value = DEFAULT_NODE)]
    node: String,
    /// The agent's key file.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct StopArgs {
    /// The lease id (or a unique prefix of one of yours).
    lease: String,
    /// Any node's HTTP API.
    #[arg(long, env = "AGORA_NODE", default_value = DEFAULT_NODE)]
    node: String,
    /// The agent's key file.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
}

/// Seconds, or a duration such as `10m`; at least one second.
pub(crate) fn parse_secs(s: &str) -> Result<u64, String> {
    let secs = match s.parse::<u64>() {
        Ok(n) => n,
        Err(_) => humantime::parse_duration(s)
            .map_err(|e| format!("{s:?} is neither seconds nor a duration: {e}"))?
            .as_secs(),
    };
    if secs == 0 {
        return Err("must be at least one second".into());
    }
    Ok(secs)
}

pub(crate) fn extend(args: &ExtendArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    operate(
        &args.node,
        args.key.as_ref(),
        &args.lease,
        Op::Extend { secs: args.secs },
        global,
    )
}

pub(crate) fn stop(args: &StopArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    operate(&args.node, args.key.as_ref(), &args.lease, Op::Stop, global)
}

fn operate(
    node: &str,
    key: Option<&PathBuf>,
    lease: &str,
    op: Op,
    global: &GlobalArgs,
) -> anyhow::Result<ExitCode> {
    let agent = load_agent(key.map(PathBuf::as_path))?;
    let me = agent.identity.agora_id();
    let client = NodeClient::new(node)?;
    let (id, view) = find_lease(&client, &agent.identity, lease)?;
    let provider: AgoraId = view["provider"]
        .as_str()
        .and_then(|p| p.parse().ok())
        .context("the node does not say which provider holds the lease")?;
    let is_extend = matches!(op, Op::Extend { .. });
    let (method, path) = match op {
        Op::Stop => (reqwest::Method::DELETE, format!("/v1/leases/{id}")),
        _ => (reqwest::Method::POST, format!("/v1/leases/{id}/extend")),
    };
    let signed = sign_op(&agent, provider, id, op)?;
    let (status, body) = client.request_json(
        method,
        &path,
        Some(&json!({ "op": b64(&signed) })),
        CALL_TIMEOUT.min(Duration::from_secs(60)),
    )?;
    if status != 200 {
        return report_failure(status, &body, global.json, "refused");
    }
    let view: &Value = &body["lease"];
    let grant = verify_grant(view, &id, &me)?;
    let receipt = verify_receipt(view, &grant)?;
    // An extension re-signs the capability: the lease's published services follow, so
    // tunnels of agents holding a grant outlive the old expiry.
    let republished = if is_extend {
        super::service::republish_after_extension(&client, &agent, &grant)
    } else {
        Vec::new()
    };
    if global.json {
        let mut out = body.clone();
        out["verified"] = json!(true);
        if is_extend {
            out["republished"] = Value::Array(republished);
        }
        print_json(&out)?;
    } else {
        for s in &republished {
            println!(
                "republished {} (port {}) until {}",
                s["name"].as_str().unwrap_or("-"),
                s["port"],
                s["expires_at"].as_str().unwrap_or("-")
            );
        }
        print_lease(view);
        println!(
            "verified  the grant{} signed by the provider",
            if receipt.is_some() {
                " and the receipt are"
            } else {
                " is"
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_take_seconds_or_durations() {
        assert_eq!(parse_secs("90"), Ok(90));
        assert_eq!(parse_secs("10m"), Ok(600));
        assert!(parse_secs("0").is_err() && parse_secs("soon").is_err());
    }
}
