//! `agora agent extend`, `agora agent stop` and `agora agent status`: sign the operation,
//! send it through any node, check the provider's signatures on what comes back. Under a
//! quota committee an extension carries the agent's top-up lock paying for it. An
//! extension then republishes the lease's published services with the re-signed
//! capability; above the agent's spending limit the extension waits for its owner's
//! approval (`agora approve`) and then goes on; a stop (and the status of an ended lease not yet acknowledged) countersigns
//! the provider's final receipt (`Acknowledge`), which the provider records as evidence.

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
    /// Above the spending limit, do not wait for the owner's approval: print the waiting
    /// extension and exit 4.
    #[arg(long)]
    no_wait: bool,
}

/// `agora agent stop` and `agora agent status`: a lease, and whether to countersign its final
/// receipt.
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
    /// Do not countersign the provider's final receipt (of an ended lease).
    #[arg(long)]
    no_ack: bool,
}

/// The arguments of `agora agent status` are those of `stop`.
pub(crate) type StatusArgs = StopArgs;

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
        Then {
            ack: false,
            wait: !args.no_wait,
        },
        global,
    )
}

pub(crate) fn stop(args: &StopArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    operate(
        &args.node,
        args.key.as_ref(),
        &args.lease,
        Op::Stop,
        Then {
            ack: !args.no_ack,
            wait: false,
        },
        global,
    )
}

/// What `operate` does after the provider answers.
struct Then {
    /// Countersign the final receipt (a stop).
    ack: bool,
    /// Wait for the owner's answer when the extension waits for approval (or exit 4).
    wait: bool,
}

/// `agora agent status`: the lease as the node shows it (refreshed from its provider),
/// signatures checked; an ended lease's final receipt is acknowledged if it is not yet.
pub(crate) fn status(args: &StatusArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let agent = load_agent(args.key.as_deref())?;
    let me = agent.identity.agora_id();
    let client = NodeClient::new(&args.node)?;
    let (id, mut view) = find_lease(&client, &agent.identity, &args.lease)?;
    let grant = verify_grant(&view, &id, &me)?;
    verify_receipt(&view, &grant)?;
    let acknowledged = if args.no_ack {
        None
    } else {
        acknowledge(&client, &agent, &view)?
    };
    if let Some(answer) = &acknowledged {
        view = answer.clone();
    }
    if global.json {
        let mut out = json!({ "lease": view, "verified": true });
        out["acknowledged"] = json!(acknowledged.is_some());
        print_json(&out)?;
    } else {
        print_lease(&view);
        if acknowledged.is_some() {
            println!("acknowledged  the final receipt (countersigned for the provider's evidence)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Countersigns the final receipt of the ended lease `view` shows, if the provider holds no
/// acknowledgement yet, through `client`: the lease view the provider answers, or `None`
/// when there is nothing to acknowledge.
fn acknowledge(
    client: &NodeClient,
    agent: &super::lease::Agent,
    view: &Value,
) -> anyhow::Result<Option<Value>> {
    use agora_node::agent::request::FinalReceipt;
    let Some(receipt) = FinalReceipt::of_view(view, agent.identity.agora_id())
        .context("cannot acknowledge the final receipt")?
    else {
        return Ok(None);
    };
    let op = receipt
        .acknowledge(&agent.identity, crate::cli::now()?)
        .context("cannot sign the acknowledgement")?;
    let (status, body) = client.request_json(
        reqwest::Method::POST,
        &format!("/v1/leases/{}/ack", receipt.lease),
        Some(&json!({ "op": b64(&op) })),
        CALL_TIMEOUT.min(Duration::from_secs(60)),
    )?;
    if status != 200 {
        anyhow::bail!(
            "the provider did not take the acknowledgement (HTTP {status}): {}",
            body["error"]["message"].as_str().unwrap_or("no detail")
        );
    }
    Ok(Some(body["lease"].clone()))
}

fn operate(
    node: &str,
    key: Option<&PathBuf>,
    lease: &str,
    op: Op,
    then: Then,
    global: &GlobalArgs,
) -> anyhow::Result<ExitCode> {
    let ack = then.ack;
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
    // Under a quota committee an extension is paid by a top-up lock, signed over the
    // lease's current (provider-signed) grant.
    let top_up = match op {
        Op::Extend { secs } => {
            let current = verify_grant(&view, &id, &me)?;
            super::quota::top_up_for(&client, &agent.identity, &current, secs)?
        }
        _ => None,
    };
    let signed = sign_op(&agent, provider, id, op)?;
    let mut request = json!({ "op": b64(&signed) });
    if let Some(top_up) = top_up {
        request["top_up"] = json!(top_up);
    }
    let (mut status, mut body) = client.request_json(
        method,
        &path,
        Some(&request),
        CALL_TIMEOUT.min(Duration::from_secs(60)),
    )?;
    if status == 202 && is_extend {
        // Above the spending limit: the extension waits at the node for the owner.
        if !then.wait {
            if global.json {
                print_json(&body)?;
            } else {
                super::run::print_waiting(&body["approval"]);
            }
            return Ok(ExitCode::from(super::run::EXIT_PENDING));
        }
        (status, body) = super::run::wait_for_approval(&client, &body["approval"], global.json)?;
        if status == 201 {
            status = 200;
        }
    }
    if status != 200 {
        return report_failure(status, &body, global.json, "refused");
    }
    let mut view: &Value = &body["lease"];
    let grant = verify_grant(view, &id, &me)?;
    let receipt = verify_receipt(view, &grant)?;
    // The final receipt, countersigned: the provider logs it as acknowledged evidence. A
    // failure here does not undo the stop: it is reported, and `agora agent status` retries.
    let acknowledged = if ack {
        match acknowledge(&client, &agent, view) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("warning: {e:#}");
                None
            }
        }
    } else {
        None
    };
    if let Some(a) = &acknowledged {
        view = a;
    }
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
        if let Some(a) = &acknowledged {
            out["lease"] = a.clone();
        }
        if ack {
            out["acknowledged"] = json!(acknowledged.is_some());
        }
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
        if acknowledged.is_some() {
            println!("acknowledged  the final receipt (countersigned for the provider's evidence)");
        }
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
