//! `agora tunnel LEASE -L [BIND:]LOCAL:REMOTE …`: forwards local TCP ports to a lease's
//! workload ports over the provider's QUIC tunnel endpoint ([`agora_node::tunnel::client`]),
//! directly or, when the provider does not answer (or `--relay always`), through `--node`'s
//! relay (`POST /v1/leases/{id}/relay`; TLS stays end to end).
//!
//! With `--grant`, another agent's published service through the owner's grant (see
//! [`super::tunnel_grant`]), relayed the same way when its provider cannot be reached.

// Indexing a serde_json::Value yields Null for a missing key; it never panics.
#![allow(clippy::indexing_slicing)]

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use agora_attest::keyfile;
use agora_node::tunnel::Dialer;
use agora_node::tunnel::forward::{self, Spec};
use agora_protocol::Signed;
use agora_protocol::lease::{LeaseGrant, LeaseId};
use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::{Value, json};

use super::GlobalArgs;
use super::http_client::{DEFAULT_NODE, NodeClient};

/// Arguments of `agora tunnel`.
#[derive(Debug, Args)]
pub struct TunnelArgs {
    /// The lease id (64 hex digits); optional with `--grant`, which names it.
    #[arg(required_unless_present = "grant")]
    lease: Option<String>,
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
    /// Whether `--node` relays the tunnel's packets: `auto` when the provider cannot be
    /// reached directly, `always`, or `never`. TLS stays end to end either way.
    #[arg(long, value_enum, default_value_t = RelayMode::Auto)]
    relay: RelayMode,
    /// As a grantee: the owner's signed service grant for your key (a file, or the base64url
    /// `agora agent grant` printed). The lease's capability and tunnel endpoints then come
    /// from the owner's published service record (`GET /v1/services` at `--node`), kept
    /// current as the owner extends the lease; `--relay` works as for your own leases.
    #[arg(long, value_name = "FILE|B64")]
    grant: Option<String>,
}

/// When to ask the node to relay the tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum RelayMode {
    /// When no endpoint of the provider answers.
    Auto,
    /// From the start.
    Always,
    /// Never: fail when the provider cannot be reached.
    Never,
}

/// Asks `node` to relay `grant`'s tunnel for `identity` (the agent); answers where to
/// send the packets.
fn request_relay(
    node: &NodeClient,
    identity: &agora_attest::Identity,
    grant: &Signed<LeaseGrant>,
) -> anyhow::Result<SocketAddr> {
    let body = forward::relay_body(identity, grant, agora_node::clock::now())
        .context("signing the relay operation")?;
    post_relay(node, &grant.body().lease, &body)
}

/// Posts a signed relay request `body` for `lease` to `node`: where to send the packets.
pub(super) fn post_relay(
    node: &NodeClient,
    lease: &LeaseId,
    body: &Value,
) -> anyhow::Result<SocketAddr> {
    let answer = node
        .post_json(&format!("/v1/leases/{lease}/relay"), body)
        .context("asking the node to relay the tunnel")?;
    forward::relay_addr(&answer).context("the node's relay answer has no relay address")
}

/// How long before its token expires `agora tunnel` starts asking for a newer one.
const TOKEN_RENEW_BEFORE: std::time::Duration = std::time::Duration::from_secs(60);
/// How often it asks from then on.
const TOKEN_POLL: std::time::Duration = std::time::Duration::from_secs(10);

/// What a look for a newer token found.
pub(super) enum Renewal {
    /// A token that expires later than the one in use.
    Token(Signed<agora_protocol::lease::Capability>),
    /// The lease (or the grant) is over: stop looking.
    Over,
    /// Nothing newer yet (or the node did not answer).
    Nothing,
}

/// Keeps `dialer`'s token current, on a thread of its own (the node client blocks): from
/// [`TOKEN_RENEW_BEFORE`] the token's expiry (`expires_at`) on, asks `fetch` every
/// [`TOKEN_POLL`] and hands a token that expires later to the dialer. The provider refuses
/// streams whose token has expired, so only this way does a tunnel outlive its lease's
/// first expiry. `fetch` reads the lease's re-signed grant (the agent's own tunnel) or the
/// owner's republished service record (a grantee's); it ends when `fetch` says so.
pub(super) fn keep_token_fresh(
    node: NodeClient,
    mut expires_at: agora_protocol::Timestamp,
    dialer: Arc<Dialer>,
    fetch: impl Fn(&NodeClient) -> Renewal + Send + 'static,
) {
    std::thread::spawn(move || {
        loop {
            let renew_at = expires_at.saturating_sub(TOKEN_RENEW_BEFORE);
            let wait = renew_at.saturating_duration_since(agora_node::clock::now());
            std::thread::sleep(wait.max(TOKEN_POLL));
            match fetch(&node) {
                Renewal::Token(token) if token.body().expires_at > expires_at => {
                    expires_at = token.body().expires_at;
                    tracing::info!(%expires_at, "tunnel token renewed");
                    dialer.set_token(token.as_bytes().to_vec());
                }
                Renewal::Over => return,
                Renewal::Token(_) | Renewal::Nothing => {}
            }
        }
    });
}

/// The newest token of the agent's own `lease` at `node`: its re-signed grant's.
fn own_renewal(node: &NodeClient, lease: &LeaseId, agent: &agora_protocol::AgoraId) -> Renewal {
    let Ok(view) = node.get_json(&format!("/v1/leases/{lease}"), &[]) else {
        return Renewal::Nothing;
    };
    if view["state"] == "ended" {
        return Renewal::Over;
    }
    view["grant"]
        .as_str()
        .and_then(|t| forward::verify_grant(t, lease, agent).ok())
        .map_or(Renewal::Nothing, |g| Renewal::Token(g.body().token.clone()))
}

/// Runs `agora tunnel` until interrupted.
pub(super) fn run(args: &TunnelArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let forwards = args
        .forwards
        .iter()
        .map(|f| f.parse::<Spec>())
        .collect::<Result<Vec<_>, _>>()?;
    let key = match &args.key {
        Some(k) => k.clone(),
        None => super::default_key_path()?,
    };
    let identity = keyfile::load(&key).with_context(|| format!("agent key {}", key.display()))?;
    if let Some(grant) = &args.grant {
        let granted = super::tunnel_grant::Granted {
            lease: args.lease.as_deref(),
            grant,
            forwards: &forwards,
            node: &args.node,
            endpoints: &args.endpoints,
            relay: args.relay,
        };
        return super::tunnel_grant::run(&granted, &identity, global);
    }
    let lease_text = args.lease.as_deref().unwrap_or_default();
    let lease: LeaseId = lease_text
        .parse()
        .map_err(|_| anyhow::anyhow!("{lease_text:?} is not a lease id (64 hex digits)"))?;
    let agent = identity.agora_id();

    let node = NodeClient::new(&args.node)?;
    let view = node.get_json(&format!("/v1/leases/{lease}"), &[])?;
    let grant_text = view["grant"]
        .as_str()
        .context("the node's answer has no signed grant")?;
    let grant = forward::verify_grant(grant_text, &lease, &agent)?;
    let g = grant.body();
    if view["state"] == "ended" {
        bail!("lease {lease} has ended");
    }
    for f in &forwards {
        forward::check_port(g, f.remote)?;
    }
    let mut override_addrs = (!args.endpoints.is_empty()).then(|| args.endpoints.clone());
    let mut relayed = None;
    if args.relay == RelayMode::Always {
        let relay = request_relay(&node, &identity, &grant)?;
        override_addrs = Some(vec![relay]);
        relayed = Some(relay);
    }

    let runtime = super::forwarder_runtime()?;
    let direct = runtime.block_on(async {
        let dialer =
            Dialer::for_grant(&identity, g, override_addrs).context("cannot set up the tunnel")?;
        // Dial now: the agent learns at once whether the provider answers (or needs a relay;
        // then it need not wait the whole dial timeout: a reachable provider's handshake
        // takes a few round trips).
        let reached = if args.relay == RelayMode::Auto {
            forward::dial_within(&dialer, forward::RELAY_AFTER).await
        } else {
            dialer.connection().await.map(|_| ())
        };
        anyhow::Ok((dialer, reached))
    })?;
    let dialer = match direct {
        (dialer, Ok(_)) => dialer,
        (_, Err(e)) if args.relay == RelayMode::Auto => {
            eprintln!(
                "the provider's tunnel endpoint does not answer ({e}); asking {} to relay",
                args.node
            );
            let relay = request_relay(&node, &identity, &grant)?;
            relayed = Some(relay);
            runtime.block_on(async {
                Dialer::for_grant(&identity, g, Some(vec![relay]))
                    .context("cannot set up the relayed tunnel")
            })?
        }
        (_, Err(e)) => return Err(e).context("cannot reach the provider's tunnel endpoint"),
    };
    let renewals = NodeClient::new(&args.node)?;
    runtime.block_on(async {
        let dialer = Arc::new(dialer);
        keep_token_fresh(
            renewals,
            g.token.body().expires_at,
            dialer.clone(),
            move |node| own_renewal(node, &lease, &agent),
        );
        let describe = |local: SocketAddr, f: &Spec| match relayed {
            Some(r) => format!("{local} -> lease port {} (relayed by {r})", f.remote),
            None => format!("{local} -> lease port {}", f.remote),
        };
        let summary = json!({
            "lease": lease.to_string(),
            "provider": g.provider.to_string(),
            "relay": relayed.map(|r| r.to_string()),
        });
        serve_forwards(dialer, &forwards, global, describe, summary).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Binds a local listener per forward onto `dialer` and says where they are (a line each
/// from `describe`, or with `--json` one object: `summary` plus `forwards`); serves until
/// Ctrl-C, then closes the tunnel. `agora tunnel` runs every tunnel (its own lease's, or a
/// grantee's) through here.
pub(super) async fn serve_forwards(
    dialer: Arc<Dialer>,
    forwards: &[Spec],
    global: &GlobalArgs,
    describe: impl Fn(SocketAddr, &Spec) -> String,
    mut summary: Value,
) -> anyhow::Result<()> {
    let mut shown = Vec::new();
    let mut listeners = Vec::new();
    for f in forwards {
        let addr = f.local_addr();
        let listener = forward::Listener::bind(dialer.clone(), addr, f.remote)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local();
        shown.push(json!({ "local": local.to_string(), "remote": f.remote }));
        if !global.json {
            println!("{}", describe(local, f));
        }
        listeners.push(listener);
    }
    if global.json {
        if let Some(fields) = summary.as_object_mut() {
            fields.insert("forwards".into(), Value::Array(shown));
        }
        super::print_json(&summary)?;
    }
    std::io::stdout().flush().context("stdout")?;
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    drop(listeners);
    dialer.close().await;
    Ok(())
}
