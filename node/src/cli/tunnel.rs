//! `agora tunnel LEASE -L [BIND:]LOCAL:REMOTE …`: forwards local TCP ports to a lease's
//! workload ports over the provider's QUIC tunnel endpoint ([`agora_node::tunnel::client`]).

// Indexing a serde_json::Value yields Null for a missing key; it never panics.
#![allow(clippy::indexing_slicing)]

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use agora_attest::keyfile;
use agora_node::tunnel::Dialer;
use agora_protocol::lease::{LeaseGrant, LeaseId};
use agora_protocol::{Ed25519, Signed};
use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::Args;
use serde_json::json;

use super::GlobalArgs;
use super::http_client::{DEFAULT_NODE, NodeClient};

/// Arguments of `agora tunnel`.
#[derive(Debug, Args)]
pub struct TunnelArgs {
    /// The lease id (64 hex digits).
    lease: String,
    /// A forward: `[BIND:]LOCAL:REMOTE` (BIND defaults to 127.0.0.1; LOCAL 0 picks a free
    /// port). Repeatable.
    #[arg(short = 'L', long = "local", required = true)]
    forwards: Vec<String>,
    /// The node to ask for the lease (any node that knows it).
    #[arg(long, env = "AGORA_NODE", default_value = DEFAULT_NODE)]
    node: String,
    /// The agent's key file (default: `$AGORA_KEY`, else `~/.agora/identity.key`).
    #[arg(long, env = "AGORA_KEY")]
    key: Option<PathBuf>,
    /// Dial this `ip:port` instead of the endpoints the grant lists (repeatable).
    #[arg(long = "endpoint")]
    endpoints: Vec<SocketAddr>,
}

/// One parsed `-L`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Forward {
    bind: IpAddr,
    local: u16,
    remote: u16,
}

fn parse_forward(spec: &str) -> anyhow::Result<Forward> {
    let mut parts = spec.rsplitn(3, ':');
    let remote = parts.next().unwrap_or_default();
    let local = parts
        .next()
        .with_context(|| format!("-L {spec:?}: expected [BIND:]LOCAL:REMOTE"))?;
    let bind = match parts.next() {
        None => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Some(b) => b
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .with_context(|| format!("-L {spec:?}: {b:?} is not an IP address"))?,
    };
    let local = local
        .parse()
        .with_context(|| format!("-L {spec:?}: {local:?} is not a port"))?;
    let remote: u16 = remote
        .parse()
        .with_context(|| format!("-L {spec:?}: {remote:?} is not a port"))?;
    if remote == 0 {
        bail!("-L {spec:?}: the remote port cannot be 0");
    }
    Ok(Forward {
        bind,
        local,
        remote,
    })
}

/// Runs `agora tunnel` until interrupted.
pub(super) fn run(args: &TunnelArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let forwards = args
        .forwards
        .iter()
        .map(|f| parse_forward(f))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let lease: LeaseId = args
        .lease
        .parse()
        .map_err(|_| anyhow::anyhow!("{:?} is not a lease id (64 hex digits)", args.lease))?;
    let key = match &args.key {
        Some(k) => k.clone(),
        None => super::default_key_path()?,
    };
    let identity = keyfile::load(&key).with_context(|| format!("agent key {}", key.display()))?;
    let agent = identity.agora_id();

    let view = NodeClient::new(&args.node)?.get_json(&format!("/v1/leases/{lease}"), &[])?;
    let grant_text = view["grant"]
        .as_str()
        .context("the node's answer has no signed grant")?;
    let grant: Signed<LeaseGrant> = URL_SAFE_NO_PAD
        .decode(grant_text)
        .ok()
        .and_then(|b| Signed::decode(&b, &Ed25519).ok())
        .context("the lease's grant does not verify")?;
    let g = grant.body();
    if g.lease != lease || g.agent != agent || grant.signer() != g.provider {
        bail!("the grant is not for this lease and key, or not signed by its provider");
    }
    if view["state"] == "ended" {
        bail!("lease {lease} has ended");
    }
    for f in &forwards {
        if !g.token.body().ports.contains(&f.remote) {
            bail!(
                "port {} is not one of the lease's ports {:?}",
                f.remote,
                g.token.body().ports
            );
        }
    }
    let override_addrs = (!args.endpoints.is_empty()).then(|| args.endpoints.clone());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let dialer = Arc::new(
            Dialer::for_grant(&identity, g, override_addrs).context("cannot set up the tunnel")?,
        );
        let mut shown = Vec::new();
        let mut tasks = Vec::new();
        for f in &forwards {
            let addr = SocketAddr::new(f.bind, f.local);
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            let local = listener.local_addr().context("listener address")?;
            shown.push(json!({ "local": local.to_string(), "remote": f.remote }));
            if !global.json {
                println!("{local} -> lease port {}", f.remote);
            }
            tasks.push(tokio::spawn(agora_node::tunnel::client::forward(
                dialer.clone(),
                listener,
                f.remote,
            )));
        }
        if global.json {
            super::print_json(&json!({
                "lease": lease.to_string(),
                "provider": g.provider.to_string(),
                "forwards": shown,
            }))?;
        }
        std::io::stdout().flush().context("stdout")?;
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
        dialer.close().await;
        for t in tasks {
            t.abort();
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn forwards_parse() {
        assert_eq!(
            parse_forward("9000:8080").unwrap(),
            Forward {
                bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
                local: 9000,
                remote: 8080
            }
        );
        assert_eq!(
            parse_forward("0.0.0.0:0:80").unwrap().bind,
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        );
        assert_eq!(
            parse_forward("[::1]:1:2").unwrap().bind,
            "::1".parse::<IpAddr>().unwrap()
        );
        for bad in ["8080", "x:80", "1:0", "1:70000", "nohost:1:2"] {
            assert!(parse_forward(bad).is_err(), "{bad}");
        }
    }
}
