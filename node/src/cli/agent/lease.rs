//! What `agora agent run|ps|extend|stop` share: the agent's key and signup record, signed
//! operations, the provider's signatures checked, leases printed.

// Indexing a serde_json::Value yields Null for a missing key; it never panics.
#![allow(clippy::indexing_slicing)]

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agora_attest::{Identity, keyfile};
use agora_protocol::lease::{LeaseGrant, LeaseId, LeaseOp, Op, UsageReceipt};
use agora_protocol::signup::SignupRecord;
use agora_protocol::{AgoraId, Digest, Ed25519, Signed, SignedKind};
use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use super::signup::record_path;
use crate::cli::default_key_path;
use crate::cli::http_client::NodeClient;

/// How long a lease call may take end to end (the gateway fails over within it).
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// The agent: its key and signup record.
pub(crate) struct Agent {
    pub identity: Identity,
    pub signup: Signed<SignupRecord>,
}

/// Loads the key (`--key`, `$AGORA_KEY` or `~/.agora/identity.key`) and its `.signup` record.
pub(crate) fn load_agent(key: Option<&Path>) -> anyhow::Result<Agent> {
    let path: PathBuf = match key {
        Some(k) => k.to_owned(),
        None => default_key_path()?,
    };
    let identity = keyfile::load(&path).with_context(|| format!("agent key {}", path.display()))?;
    let record_file = record_path(&path);
    let text = std::fs::read_to_string(&record_file).with_context(|| {
        format!(
            "no signup record at {} (run `agora agent signup --key {}` first)",
            record_file.display(),
            path.display()
        )
    })?;
    let signup: Signed<SignupRecord> = decode_signed(text.trim(), "signup record")
        .with_context(|| format!("signup record {}", record_file.display()))?;
    if signup.body().agent != identity.agora_id() {
        bail!(
            "the signup record {} is {}'s, not this key's ({})",
            record_file.display(),
            signup.body().agent,
            identity.agora_id()
        );
    }
    Ok(Agent { identity, signup })
}

/// Decodes and verifies a base64url signed message.
pub(crate) fn decode_signed<T: SignedKind>(text: &str, what: &str) -> anyhow::Result<Signed<T>> {
    let bytes = URL_SAFE_NO_PAD
        .decode(text.as_bytes())
        .with_context(|| format!("the {what} is not base64url"))?;
    Signed::decode(&bytes, &Ed25519).with_context(|| format!("the {what} does not verify"))
}

/// Base64url of a signed message.
pub(crate) fn b64<T>(m: &Signed<T>) -> String {
    URL_SAFE_NO_PAD.encode(m.as_bytes())
}

/// Signs an operation on `lease` (held by `provider`), as the MCP tools do
/// ([`agora_node::agent::request::sign_op`]).
pub(crate) fn sign_op(
    agent: &Agent,
    provider: AgoraId,
    lease: LeaseId,
    op: Op,
) -> anyhow::Result<Signed<LeaseOp>> {
    agora_node::agent::request::sign_op(&agent.identity, provider, lease, op, crate::cli::now()?)
        .context("cannot sign the operation")
}

/// Checks a lease view's signed grant: the provider's signature, for this lease and agent.
pub(crate) fn verify_grant(
    view: &Value,
    lease: &LeaseId,
    agent: &AgoraId,
) -> anyhow::Result<Signed<LeaseGrant>> {
    let grant: Signed<LeaseGrant> = decode_signed(
        view["grant"]
            .as_str()
            .context("the answer has no signed grant")?,
        "grant",
    )?;
    let g = grant.body();
    if g.lease != *lease || g.agent != *agent || grant.signer() != g.provider {
        bail!("the grant is not for this lease and agent, or not signed by its provider");
    }
    Ok(grant)
}

/// Checks a lease view's signed receipt, if any: signed by the lease's provider.
pub(crate) fn verify_receipt(
    view: &Value,
    grant: &Signed<LeaseGrant>,
) -> anyhow::Result<Option<Signed<UsageReceipt>>> {
    let Some(text) = view["receipt"]["signed"].as_str() else {
        return Ok(None);
    };
    let r: Signed<UsageReceipt> = decode_signed(text, "usage receipt")?;
    if r.body().lease != grant.body().lease || r.signer() != grant.body().provider {
        bail!("the usage receipt is not this lease's provider's");
    }
    Ok(Some(r))
}

/// The agent's leases at the node (`GET /v1/leases`, at most `limit`), with a read proof
/// signed by `agent` for that node: the node lists them to the agent only.
pub(crate) fn list_leases(
    client: &NodeClient,
    agent: &Identity,
    limit: Option<usize>,
) -> anyhow::Result<Value> {
    let info = client.get_json("/v1/node", &[])?;
    let node: AgoraId = info["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .context("the node does not say its id")?;
    let proof = agora_node::agent::request::sign_read_proof(agent, node, crate::cli::now()?)
        .context("cannot sign the read proof")?;
    let mut query = vec![
        ("agent".to_owned(), agent.agora_id().to_string()),
        ("proof".to_owned(), b64(&proof)),
    ];
    if let Some(limit) = limit {
        query.push(("limit".to_owned(), limit.to_string()));
    }
    client.get_json("/v1/leases", &query)
}

/// Resolves a lease id or a unique prefix of one among the leases of `agent` (its key) at the
/// node, and returns its current view.
pub(crate) fn find_lease(
    client: &NodeClient,
    agent: &Identity,
    id: &str,
) -> anyhow::Result<(LeaseId, Value)> {
    let full = if id.len() == 64 {
        id.parse::<Digest>()
            .map_err(|_| anyhow::anyhow!("{id:?} is not a lease id"))?
    } else {
        let list = list_leases(client, agent, None)?;
        let hits: Vec<Digest> = list["leases"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["lease"].as_str())
            .filter(|l| l.starts_with(id))
            .filter_map(|l| l.parse().ok())
            .collect();
        match hits.as_slice() {
            [one] => *one,
            [] => bail!("no lease of yours starts with {id:?} at this node"),
            _ => bail!(
                "{id:?} names {} of your leases; give more digits",
                hits.len()
            ),
        }
    };
    let view = client.get_json(&format!("/v1/leases/{full}"), &[])?;
    Ok((full, view))
}

/// A spinner on stderr while waiting (only on a terminal, never with `--json`).
/// Reports a node's error answer (`status`, `body`) the way every agent command does: the
/// body itself with `--json`, else its code and message and, for a lease request, each
/// provider's answer; returns the exit code (3 for a refusal, 1 otherwise).
pub(crate) fn report_failure(
    status: u16,
    body: &Value,
    json: bool,
    fallback: &str,
) -> anyhow::Result<std::process::ExitCode> {
    if json {
        crate::cli::print_json(body)?;
    } else {
        eprintln!(
            "error: {}: {}",
            body["error"]["code"].as_str().unwrap_or("error"),
            body["error"]["message"].as_str().unwrap_or(fallback)
        );
        for a in body["attempts"].as_array().into_iter().flatten() {
            eprintln!(
                "  {} {}: {}",
                a["provider"].as_str().unwrap_or("-"),
                a["code"].as_str().or(a["outcome"].as_str()).unwrap_or("-"),
                a["detail"].as_str().unwrap_or("")
            );
        }
    }
    Ok(std::process::ExitCode::from(
        if (400..500).contains(&status) {
            crate::cli::EXIT_REJECTED
        } else {
            crate::cli::EXIT_ERROR
        },
    ))
}

pub(crate) fn spinner(json: bool, message: &str) -> Option<indicatif::ProgressBar> {
    (!json && std::io::stderr().is_terminal()).then(|| {
        let s = indicatif::ProgressBar::new_spinner();
        s.set_message(message.to_owned());
        s.enable_steady_tick(Duration::from_millis(100));
        s
    })
}

/// Credits from micro-credits, for people.
pub(crate) fn credits(micro: u64) -> String {
    format!("{:.6}", micro as f64 / 1e6)
        .trim_end_matches('0')
        .trim_end_matches('.')
        .to_owned()
}

/// Prints a lease view for people.
pub(crate) fn print_lease(view: &Value) {
    let s = |k: &str| view[k].as_str().unwrap_or("-").to_owned();
    println!("lease     {}", s("lease"));
    println!("provider  {}", s("provider"));
    let state = match view["ended"]["reason"].as_str() {
        Some(reason) => format!(
            "ended ({reason}) at {}",
            view["ended"]["at"].as_str().unwrap_or("-")
        ),
        None => format!(
            "running, {} s left",
            view["remaining_secs"].as_u64().unwrap_or(0)
        ),
    };
    println!("state     {state}");
    if let Some(code) = view["ended"]["detail"]["exited"]["code"].as_i64() {
        println!("exit code {code}");
    }
    println!(
        "price     {} µcr/s (reserved {} credits)",
        view["price_per_sec"].as_u64().unwrap_or(0),
        credits(view["reserved_micro"].as_u64().unwrap_or(0))
    );
    println!("started   {}", s("starts_at"));
    println!("expires   {}", s("expires_at"));
    if let Some(cmd) = view["command"].as_array() {
        let cmd: Vec<&str> = cmd.iter().filter_map(Value::as_str).collect();
        println!(
            "runs      {} on {} ({})",
            cmd.join(" "),
            view["image"].as_str().unwrap_or("-"),
            view["runtime"].as_str().unwrap_or("-")
        );
    }
    let r = &view["receipt"];
    if r.is_object() {
        println!(
            "receipt   #{} to {}: {} credits, {} ms CPU, {} MiB·s memory{}",
            r["seq"].as_u64().unwrap_or(0),
            r["to"].as_str().unwrap_or("-"),
            credits(r["total_micro"].as_u64().unwrap_or(0)),
            r["cpu_ms"].as_u64().unwrap_or(0),
            r["memory_mib_secs"].as_u64().unwrap_or(0),
            if r["ended"].is_string() {
                " (final)"
            } else {
                ""
            }
        );
        println!(
            "traffic   {} B sent; tunnels {} B in, {} B out",
            r["egress_bytes"].as_u64().unwrap_or(0),
            r["tunnel_in_bytes"].as_u64().unwrap_or(0),
            r["tunnel_out_bytes"].as_u64().unwrap_or(0)
        );
    }
}
