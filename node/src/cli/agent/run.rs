//! `agora agent run`: quote, sign one lease request listing the best offers, post it to any
//! node, and check the provider's signature on the grant.

// Indexing a serde_json::Value yields Null for a missing key; it never panics.
#![allow(clippy::indexing_slicing)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use agora_node::agent::request::{PlanError, RunPlan};
use agora_protocol::lease::MAX_CANDIDATES;
use agora_protocol::offer::Isolation;
use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::{Value, json};

use super::lease::{
    CALL_TIMEOUT, b64, load_agent, print_lease, report_failure, spinner, verify_grant,
};
use crate::cli::http_client::{DEFAULT_NODE, NodeClient};
use crate::cli::{EXIT_REJECTED, GlobalArgs, print_json};

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Any node's HTTP API (it relays to the provider).
    #[arg(long, env = "AGORA_NODE", default_value = DEFAULT_NODE)]
    node: String,
    /// Above the spending limit, do not wait for the owner's approval: print the waiting
    /// request and exit 4.
    #[arg(long)]
    no_wait: bool,
    /// The agent's key file (its signup record is FILE.signup).
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Image name (as offers list it).
    #[arg(long, default_value = "busybox")]
    image: String,
    /// Runtime: sandbox, docker.
    #[arg(long, default_value = "sandbox")]
    runtime: Isolation,
    /// vCPU: `500m`, `0.5` or `1`.
    #[arg(long, default_value = "500m", value_parser = parse_cpu)]
    cpu: u32,
    /// Memory: `256Mi`, `1Gi` or MiB.
    #[arg(long, default_value = "256Mi", value_parser = parse_mib)]
    memory: u64,
    /// Writable disk (/tmp): `64Mi`, `1Gi` or MiB.
    #[arg(long, default_value = "64Mi", value_parser = parse_mib)]
    disk: u64,
    /// Most processes.
    #[arg(long, default_value_t = 128)]
    pids: u32,
    /// Lifetime, e.g. `10m`, `1h`.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    lifetime: Duration,
    /// Most micro-credits per second (default: the dearest offer listed).
    #[arg(long)]
    max_price: Option<u64>,
    /// Only offers in this region.
    #[arg(long)]
    region: Option<String>,
    /// How many offers to list, best first (the gateway fails over along them).
    #[arg(long, default_value_t = 3)]
    candidates: usize,
    /// Environment variable KEY=VALUE (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// A TCP port the workload serves (repeatable).
    #[arg(long = "port")]
    ports: Vec<u16>,
    /// Let the workload open outbound connections (where tier and provider allow).
    #[arg(long)]
    egress: bool,
    /// The command and its arguments (after `--`); empty: the image's default.
    #[arg(last = true)]
    command: Vec<String>,
}

fn parse_cpu(s: &str) -> Result<u32, String> {
    let milli = if let Some(m) = s.strip_suffix('m') {
        m.parse::<u32>().map_err(|e| format!("{s:?}: {e}"))?
    } else {
        let cpus: f64 = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
        if !(cpus.is_finite() && cpus > 0.0 && cpus <= 4096.0) {
            return Err(format!("{s:?} is not between 0 and 4096 vCPUs"));
        }
        (cpus * 1000.0).round() as u32
    };
    if milli == 0 {
        return Err("must be positive".into());
    }
    Ok(milli)
}

fn parse_mib(s: &str) -> Result<u64, String> {
    let (num, mult) = if let Some(n) = s.strip_suffix("Gi") {
        (n, 1024)
    } else if let Some(n) = s.strip_suffix("Mi") {
        (n, 1)
    } else {
        (s, 1)
    };
    let v: u64 = num.parse().map_err(|e| format!("{s:?}: {e}"))?;
    v.checked_mul(mult)
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("{s:?} is not a positive size"))
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

pub(crate) fn run(args: &RunArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    if !(1..=MAX_CANDIDATES).contains(&args.candidates) {
        bail!("--candidates must be 1 to {MAX_CANDIDATES}");
    }
    let agent = load_agent(args.key.as_deref())?;
    let client = NodeClient::new(&args.node)?;
    let plan = RunPlan {
        runtime: args.runtime,
        image: args.image.clone(),
        vcpu_milli: args.cpu,
        memory_mib: args.memory,
        disk_mib: args.disk,
        pids: args.pids,
        lifetime_secs: args.lifetime.as_secs().max(1),
        command: args.command.clone(),
        env: args.env.iter().cloned().collect(),
        ports: args.ports.clone(),
        egress: args.egress,
        max_price_per_sec: args.max_price,
        region: args.region.clone(),
        candidates: args.candidates,
    };
    let quote = client
        .post_json("/v1/leases/quote", &plan.quote_body())
        .context("asking the node for matching offers")?;
    let request = match plan.request(
        &quote,
        &agent.identity,
        agent.signup.clone(),
        crate::cli::now()?,
    ) {
        Ok(r) => r,
        Err(PlanError::NoOffer) => {
            eprintln!("error: {}", PlanError::NoOffer);
            return Ok(ExitCode::from(EXIT_REJECTED));
        }
        Err(e) => return Err(e.into()),
    };
    let locks = super::quota::lock_fields_for(&client, &agent.identity, &request)?;
    let candidates = request.body().candidates.clone();
    let lease = request.digest();
    let progress = spinner(
        global.json,
        &format!(
            "asking {} provider(s) through {}…",
            candidates.len(),
            args.node
        ),
    );
    let mut body = json!({ "request": b64(&request) });
    if let Some(fields) = body.as_object_mut() {
        fields.extend(locks);
    }
    let answer = client.request_json(
        reqwest::Method::POST,
        "/v1/leases",
        Some(&body),
        CALL_TIMEOUT,
    );
    if let Some(p) = progress {
        p.finish_and_clear();
    }
    let (mut status, mut body) = answer?;
    if status == 202 {
        // Over the spending limit: the request waits at the node for the owner's approval.
        if args.no_wait {
            if global.json {
                print_json(&body)?;
            } else {
                print_waiting(&body["approval"]);
            }
            return Ok(ExitCode::from(EXIT_PENDING));
        }
        (status, body) = wait_for_approval(&client, &body["approval"], global.json)?;
    }
    if status != 201 {
        return report_failure(status, &body, global.json, "the lease was refused");
    }
    let view = &body["lease"];
    let grant = verify_grant(view, &lease, &agent.identity.agora_id())?;
    if !candidates
        .iter()
        .any(|c| c.provider == grant.body().provider)
    {
        bail!("the grant is by a provider the request did not name");
    }
    if global.json {
        let mut out = body.clone();
        out["verified"] = json!(true);
        print_json(&out)?;
    } else {
        print_lease(view);
        println!("verified  the grant is signed by the provider");
    }
    Ok(ExitCode::SUCCESS)
}

/// Exit code of `run --no-wait` and `extend --no-wait` when the request waits for its
/// owner's approval.
pub(crate) const EXIT_PENDING: u8 = 4;

pub(crate) fn print_waiting(approval: &Value) {
    println!(
        "waiting   for the owner {} to approve {} {} (up to {} µcr, until {})",
        approval["owner"].as_str().unwrap_or("?"),
        if approval["kind"] == "extension" {
            "extension"
        } else {
            "request"
        },
        approval["id"].as_str().unwrap_or("?"),
        approval["max_cost_micro"],
        approval["expires_at"].as_str().unwrap_or("?")
    );
    println!(
        "          the owner runs: agora approve {} --owner-key OWNER.key --node …",
        approval["id"].as_str().unwrap_or("?")
    );
}

/// Polls a waiting request until the owner answers or it expires; the lease's answer
/// (201 and the lease), or an error answer naming why not.
pub(crate) fn wait_for_approval(
    client: &NodeClient,
    approval: &Value,
    json_out: bool,
) -> anyhow::Result<(u16, Value)> {
    let id = approval["id"]
        .as_str()
        .context("the node's 202 names no waiting request")?
        .to_owned();
    if !json_out {
        print_waiting(approval);
    }
    let progress = spinner(json_out, "waiting for the owner's approval…");
    let result = loop {
        std::thread::sleep(Duration::from_secs(1));
        let (status, now) = client.request_json(
            reqwest::Method::GET,
            &format!("/v1/approvals/{id}"),
            None,
            Duration::from_secs(10),
        )?;
        if status != 200 {
            break (status, now);
        }
        match now["state"].as_str() {
            Some("pending") => continue,
            Some("approved") => {
                let lease = now["lease"].as_str().unwrap_or(&id).to_owned();
                let (status, view) = client.request_json(
                    reqwest::Method::GET,
                    &format!("/v1/leases/{lease}"),
                    None,
                    Duration::from_secs(10),
                )?;
                break if status == 200 {
                    (201, json!({ "lease": view, "approval": now }))
                } else {
                    (status, view)
                };
            }
            _ => {
                let code = now["reason"].as_str().unwrap_or("refused").to_owned();
                let message = now["detail"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("the request was {}", now["state"]));
                break (
                    409,
                    json!({ "error": { "code": code, "message": message }, "approval": now }),
                );
            }
        }
    };
    if let Some(p) = progress {
        p.finish_and_clear();
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_cpus_parse() {
        assert_eq!(parse_cpu("500m"), Ok(500));
        assert_eq!(parse_cpu("1.5"), Ok(1500));
        assert!(parse_cpu("0").is_err() && parse_cpu("lots").is_err());
        assert_eq!(parse_mib("256Mi"), Ok(256));
        assert_eq!(parse_mib("2Gi"), Ok(2048));
        assert_eq!(parse_mib("100"), Ok(100));
        assert!(parse_mib("0").is_err() && parse_mib("1Ti").is_err());
        assert_eq!(parse_env("A=b=c"), Ok(("A".into(), "b=c".into())));
    }
}
