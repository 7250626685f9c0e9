//! `agora agent publish`, `agora agent grant` and `agora agent revoke`: an agent publishes a
//! port of its lease as a service, lets another agent's key in, and shuts it out again.
//!
//! ```text
//! publish: lease view ─▶ the provider-signed grant (its capability, endpoints) checked
//!   ─▶ Signed<ServiceRecord> ─▶ POST /v1/services ─▶ gossip agora/v1/services
//! grant:   Signed<ServiceGrant> (lease, grantee, ports, expiry, random id) ─▶ stdout/--out,
//!          handed to the grantee any way the agents like (nothing goes to a node)
//! revoke:  Signed<LeaseOp> RevokeGrant ─▶ DELETE /v1/leases/{id}/grants/{grant} ─▶ provider
//! extend:  (`agora agent extend`) the records of the lease re-signed with the new
//!          capability ─▶ POST /v1/services, so grantees' tunnels outlive the old expiry
//! ```
//!
//! What is signed is built by [`agora_node::agent::services`], as the MCP tools do.

// Indexing a serde_json::Value yields Null for a missing key; it never panics.
#![allow(clippy::indexing_slicing)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use agora_node::agent::services::{self, Publication};
use agora_protocol::lease::Op;
use agora_protocol::service::{GrantId, ServiceKind, ServiceRecord};
use agora_protocol::{AgoraId, Signed};
use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::{Value, json};

use super::control::parse_secs;
use super::lease::{
    Agent, CALL_TIMEOUT, b64, decode_signed, find_lease, load_agent, report_failure, sign_op,
    verify_grant,
};
use crate::cli::http_client::{DEFAULT_NODE, NodeClient};
use crate::cli::{GlobalArgs, print_json};

#[derive(Debug, Args)]
pub(crate) struct PublishArgs {
    /// The lease id (or a unique prefix of one of yours).
    lease: String,
    /// The workload port to publish (one of the lease's ports).
    #[arg(long)]
    port: u16,
    /// The service's name: lowercase letters, digits, `-`, `_`, `.`.
    #[arg(long, required_unless_present = "withdraw")]
    name: Option<String>,
    /// What it speaks: mcp, http or tcp.
    #[arg(long, required_unless_present = "withdraw")]
    kind: Option<ServiceKind>,
    /// What it does (at most 280 bytes).
    #[arg(long, default_value = "")]
    description: String,
    /// How long it stays listed: seconds or a duration such as `2h` (default and most: a
    /// day; never past the lease's expiry). Publish again to refresh it.
    #[arg(long, value_parser = parse_secs)]
    ttl: Option<u64>,
    /// Withdraw the port's record instead of publishing it.
    #[arg(long)]
    withdraw: bool,
    /// Any node's HTTP API.
    #[arg(long, env = "AGORA_NODE", default_value = DEFAULT_NODE)]
    node: String,
    /// The agent's key file.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct GrantArgs {
    /// The lease id (or a unique prefix of one of yours).
    lease: String,
    /// The agent let in: its Agora id (`agora1…`), the key its tunnel presents.
    #[arg(long = "to", value_name = "AGENT_ID")]
    to: AgoraId,
    /// A workload port it may reach (repeatable; each one of the lease's ports).
    #[arg(long = "port", required = true)]
    ports: Vec<u16>,
    /// How long the grant works: seconds or a duration such as `30m` (default a day; the
    /// lease's end ends it anyway).
    #[arg(long, value_parser = parse_secs)]
    ttl: Option<u64>,
    /// Write the grant (base64url) to FILE instead of printing it.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Any node's HTTP API.
    #[arg(long, env = "AGORA_NODE", default_value = DEFAULT_NODE)]
    node: String,
    /// The agent's key file.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct RevokeArgs {
    /// The lease id (or a unique prefix of one of yours).
    lease: String,
    /// The grant's id (32 hex digits, as `agora agent grant` printed it).
    grant: GrantId,
    /// Any node's HTTP API.
    #[arg(long, env = "AGORA_NODE", default_value = DEFAULT_NODE)]
    node: String,
    /// The agent's key file.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
}

/// What publishing and granting read from the lease: its id and verified grant.
struct Lease {
    id: agora_protocol::lease::LeaseId,
    grant: Signed<agora_protocol::lease::LeaseGrant>,
}

fn running_lease(client: &NodeClient, agent: &Agent, lease: &str) -> anyhow::Result<Lease> {
    let me = agent.identity.agora_id();
    let (id, view) = find_lease(client, &agent.identity, lease)?;
    let grant = verify_grant(&view, &id, &me)?;
    if view["state"] == "ended" {
        bail!("lease {id} has ended");
    }
    Ok(Lease { id, grant })
}

pub(crate) fn publish(args: &PublishArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let agent = load_agent(args.key.as_deref())?;
    let client = NodeClient::new(&args.node)?;
    let lease = running_lease(&client, &agent, &args.lease)?;
    services::check_ports(lease.grant.body(), &[args.port])?;
    let now = crate::cli::now()?;
    let body = if args.withdraw {
        let w = services::withdrawal(&agent.identity, lease.id, args.port, now)?;
        json!({ "withdrawal": b64(&w) })
    } else {
        let what = Publication {
            port: args.port,
            name: args.name.clone().unwrap_or_default(),
            kind: args.kind.unwrap_or(ServiceKind::Tcp),
            description: args.description.clone(),
            ttl: args.ttl.map(Duration::from_secs),
        };
        let record = services::record(&agent.identity, lease.grant.body(), &what, now)?;
        json!({ "record": b64(&record) })
    };
    let (status, answer) = client.request_json(
        reqwest::Method::POST,
        "/v1/services",
        Some(&body),
        CALL_TIMEOUT,
    )?;
    if status != 200 {
        return report_failure(status, &answer, global.json, "not published");
    }
    if global.json {
        print_json(&answer)?;
    } else if args.withdraw {
        println!("withdrew port {} of lease {}", args.port, lease.id);
    } else {
        let s: &Value = &answer["service"];
        println!(
            "published {} ({}) on port {} of lease {} until {}",
            s["name"].as_str().unwrap_or("-"),
            s["kind"].as_str().unwrap_or("-"),
            args.port,
            lease.id,
            s["expires_at"].as_str().unwrap_or("-")
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn grant(args: &GrantArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let agent = load_agent(args.key.as_deref())?;
    let client = NodeClient::new(&args.node)?;
    let lease = running_lease(&client, &agent, &args.lease)?;
    let now = crate::cli::now()?;
    let signed = services::grant(
        &agent.identity,
        lease.grant.body(),
        args.to,
        &args.ports,
        args.ttl.map(Duration::from_secs),
        now,
    )?;
    let g = signed.body();
    let text = b64(&signed);
    if let Some(path) = &args.out {
        std::fs::write(path, format!("{text}\n"))
            .with_context(|| format!("writing the grant to {}", path.display()))?;
    }
    if global.json {
        print_json(&json!({
            "grant": text,
            "id": g.id.to_string(),
            "lease": g.lease.to_string(),
            "grantee": g.grantee.to_string(),
            "ports": g.ports,
            "expires_at": g.expires_at.to_string(),
            "file": args.out.as_ref().map(|p| p.display().to_string()),
        }))?;
    } else {
        match &args.out {
            Some(path) => println!(
                "grant {} for {} written to {}",
                g.id,
                g.grantee,
                path.display()
            ),
            None => println!("{text}"),
        }
        eprintln!(
            "grant {} lets {} reach ports {:?} of lease {} until {}; revoke it with \
             `agora agent revoke {} {}`",
            g.id, g.grantee, g.ports, g.lease, g.expires_at, g.lease, g.id
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn revoke(args: &RevokeArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let agent = load_agent(args.key.as_deref())?;
    let client = NodeClient::new(&args.node)?;
    let (id, view) = find_lease(&client, &agent.identity, &args.lease)?;
    let provider: AgoraId = view["provider"]
        .as_str()
        .and_then(|p| p.parse().ok())
        .context("the node does not say which provider holds the lease")?;
    let op = sign_op(&agent, provider, id, Op::RevokeGrant { grant: args.grant })?;
    let (status, body) = client.request_json(
        reqwest::Method::DELETE,
        &format!("/v1/leases/{id}/grants/{}", args.grant),
        Some(&json!({ "op": b64(&op) })),
        CALL_TIMEOUT,
    )?;
    if status != 200 {
        return report_failure(status, &body, global.json, "refused");
    }
    if global.json {
        print_json(&json!({
            "revoked": args.grant.to_string(),
            "lease": id.to_string(),
            "provider": provider.to_string(),
        }))?;
    } else {
        println!("revoked grant {} on lease {id}", args.grant);
    }
    Ok(ExitCode::SUCCESS)
}

/// After an extension re-signed `grant`: republishes the agent's records of the lease with
/// the new capability (a grantee's tunnel presents the capability of the record it found,
/// and the provider refuses one past its own expiry). Answers what was republished; a
/// failure is reported, not fatal (the extension itself went through).
pub(crate) fn republish_after_extension(
    client: &NodeClient,
    agent: &Agent,
    grant: &Signed<agora_protocol::lease::LeaseGrant>,
) -> Vec<Value> {
    let g = grant.body();
    let listed = match client.get_json(
        "/v1/services",
        &[
            ("lease".into(), g.lease.to_string()),
            ("owner".into(), agent.identity.agora_id().to_string()),
        ],
    ) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("could not list the lease's services to republish them: {e:#}");
            return Vec::new();
        }
    };
    let records: Vec<Signed<ServiceRecord>> = listed["services"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["signed"].as_str())
        .filter_map(|t| decode_signed::<ServiceRecord>(t, "service record").ok())
        .collect();
    let fresh = match crate::cli::now()
        .and_then(|now| Ok(services::refreshed(&agent.identity, g, &records, now)?))
    {
        Ok(f) => f,
        Err(e) => {
            eprintln!("could not re-sign the lease's services: {e:#}");
            return Vec::new();
        }
    };
    let mut done = Vec::new();
    for r in fresh {
        let body = json!({ "record": b64(&r) });
        match client.request_json(
            reqwest::Method::POST,
            "/v1/services",
            Some(&body),
            CALL_TIMEOUT,
        ) {
            Ok((200, answer)) => done.push(answer["service"].clone()),
            Ok((status, answer)) => eprintln!(
                "service {} (port {}) not republished: HTTP {status} {}",
                r.body().name,
                r.body().port,
                answer["error"]
            ),
            Err(e) => eprintln!(
                "service {} (port {}) not republished: {e:#}",
                r.body().name,
                r.body().port
            ),
        }
    }
    done
}
