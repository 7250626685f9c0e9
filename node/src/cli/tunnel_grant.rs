//! `agora tunnel [LEASE] --grant FILE|B64 -L …`: a grantee's tunnel to another agent's
//! published service.
//!
//! ```text
//! the owner's Signed<ServiceGrant> (for this key) ─▶ GET /v1/services?lease=…
//!   ─▶ the owner's signed record of that lease (its provider-signed capability, endpoints)
//!   ─▶ Dialer (pins the capability's provider; header = capability + grant) ─▶ listeners
//! ```
//!
//! Nothing the node says is taken on its word: the grant and the record are verified here,
//! and the provider key pinned is the one that signed the capability.
//!
//! - A provider that does not answer (or `--relay always`) is reached through the node's
//!   relay: the grantee signs its own `relay` operation and sends the grant, the record's
//!   capability and the port (`POST /v1/leases/{id}/relay`); TLS stays end to end.
//! - The capability expires with the lease as first granted; when the owner extends the
//!   lease it republishes the record with the re-signed capability, and from a minute before
//!   the capability in use expires this tunnel looks for it in the directory and uses it
//!   from then on (as `agora tunnel` does with its own lease's grant).

// Indexing a serde_json::Value yields Null for a missing key; it never panics.
#![allow(clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use agora_attest::Identity;
use agora_node::tunnel::Dialer;
use agora_node::tunnel::forward::{self, Spec};
use agora_protocol::lease::LeaseId;
use agora_protocol::service::{ServiceGrant, ServiceRecord};
use agora_protocol::{AgoraId, Ed25519, Signed};
use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::GlobalArgs;
use super::http_client::NodeClient;
use super::tunnel::{RelayMode, Renewal, keep_token_fresh, post_relay, serve_forwards};

/// Reads a grant given as a file holding base64url, or as base64url itself.
pub(super) fn read_grant(arg: &str) -> anyhow::Result<Signed<ServiceGrant>> {
    let text = if Path::new(arg).is_file() {
        std::fs::read_to_string(arg).with_context(|| format!("reading the grant file {arg}"))?
    } else {
        arg.to_owned()
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(text.trim().as_bytes())
        .context("the grant is neither a readable file nor base64url")?;
    Signed::decode(&bytes, &Ed25519).context("the grant does not verify")
}

/// The published record of `grant`'s lease among `services` (a `GET /v1/services` answer):
/// signed by the grant's owner, for its lease and provider, verified here.
fn record_for(grant: &ServiceGrant, services: &Value) -> anyhow::Result<Signed<ServiceRecord>> {
    let mut last = None;
    for s in services["services"].as_array().into_iter().flatten() {
        let Some(text) = s["signed"].as_str() else {
            continue;
        };
        let record = URL_SAFE_NO_PAD
            .decode(text.as_bytes())
            .ok()
            .and_then(|b| Signed::<ServiceRecord>::decode(&b, &Ed25519).ok());
        match record {
            Some(r)
                if r.body().owner == grant.owner
                    && r.body().lease == grant.lease
                    && r.body().provider == grant.provider =>
            {
                // The newest capability wins (an extension re-signs it).
                let newer = last.as_ref().is_none_or(|l: &Signed<ServiceRecord>| {
                    r.body().capability.body().expires_at > l.body().capability.body().expires_at
                });
                if newer {
                    last = Some(r);
                }
            }
            _ => {}
        }
    }
    last.with_context(|| {
        format!(
            "the node knows no service the grant's owner {} published for lease {}",
            grant.owner, grant.lease
        )
    })
}

/// What `agora tunnel` hands over for a grantee.
pub(super) struct Granted<'a> {
    /// The lease named on the command line, if any.
    pub lease: Option<&'a str>,
    /// `--grant`.
    pub grant: &'a str,
    /// The parsed `-L`s.
    pub forwards: &'a [Spec],
    /// `--node`.
    pub node: &'a str,
    /// `--endpoint`s.
    pub endpoints: &'a [SocketAddr],
    /// `--relay`.
    pub relay: RelayMode,
}

/// The newest capability of `grant`'s lease in the owner's records at `node` (an extension
/// republishes them), or that the grant is over.
fn renewal(node: &NodeClient, grant: &ServiceGrant) -> Renewal {
    if agora_node::clock::now() >= grant.expires_at {
        return Renewal::Over;
    }
    let query = [
        ("lease".to_owned(), grant.lease.to_string()),
        ("owner".to_owned(), grant.owner.to_string()),
    ];
    match node.get_json("/v1/services", &query) {
        Ok(services) => record_for(grant, &services).map_or(Renewal::Nothing, |r| {
            Renewal::Token(r.body().capability.clone())
        }),
        Err(_) => Renewal::Nothing,
    }
}

/// Runs a grantee's `agora tunnel` with `identity` until interrupted.
pub(super) fn run(
    args: &Granted<'_>,
    identity: &Identity,
    global: &GlobalArgs,
) -> anyhow::Result<ExitCode> {
    let grant = read_grant(args.grant)?;
    let g = grant.body();
    let me: AgoraId = identity.agora_id();
    if g.grantee != me {
        bail!("the grant is for {}, not for this key ({me})", g.grantee);
    }
    if let Some(lease) = args.lease {
        let lease: LeaseId = lease
            .parse()
            .map_err(|_| anyhow::anyhow!("{lease:?} is not a lease id (64 hex digits)"))?;
        if lease != g.lease {
            bail!("the grant is for lease {}, not {lease}", g.lease);
        }
    }
    let now = agora_node::clock::now();
    if now >= g.expires_at {
        bail!("the grant expired at {}", g.expires_at);
    }
    let node = NodeClient::new(args.node)?;
    let services = node.get_json("/v1/services", &[("lease".into(), g.lease.to_string())])?;
    let record = record_for(g, &services)?;
    let cap = record.body().capability.body();
    for f in args.forwards {
        if !g.ports.contains(&f.remote) || !cap.ports.contains(&f.remote) {
            bail!(
                "port {} is not granted (the grant opens {:?}, the lease {:?})",
                f.remote,
                g.ports,
                cap.ports
            );
        }
    }
    let addrs = if args.endpoints.is_empty() {
        record
            .body()
            .tunnel_endpoints
            .iter()
            .filter_map(|e| e.parse().ok())
            .collect()
    } else {
        args.endpoints.to_vec()
    };
    let capability = record.body().capability.clone();
    // The relay names one port; the provider checks each stream's port against the grant.
    let port = args.forwards.first().map_or(0, |f| f.remote);
    let ask_relay = || {
        let body = forward::grantee_relay_body(
            identity,
            &grant,
            &capability,
            port,
            agora_node::clock::now(),
        )
        .context("signing the relay operation")?;
        post_relay(&node, &g.lease, &body)
    };
    let mut relayed = None;
    let addrs = if args.relay == RelayMode::Always {
        let relay = ask_relay()?;
        relayed = Some(relay);
        vec![relay]
    } else {
        addrs
    };
    let dial = |addrs: Vec<SocketAddr>| {
        Dialer::new(
            identity,
            cap.provider,
            addrs,
            capability.as_bytes().to_vec(),
        )
        .map(|d| d.with_grant(grant.as_bytes().to_vec()))
        .context("cannot set up the tunnel")
    };
    let runtime = super::forwarder_runtime()?;
    let direct = runtime.block_on(async {
        let dialer = dial(addrs)?;
        // Dial now: the grantee learns at once whether the provider answers (or needs a
        // relay).
        let reached = if args.relay == RelayMode::Auto {
            forward::dial_within(&dialer, forward::RELAY_AFTER).await
        } else {
            dialer.connection().await.map(|_| ())
        };
        anyhow::Ok((dialer, reached))
    })?;
    let dialer = match direct {
        (dialer, Ok(())) => dialer,
        (_, Err(e)) if args.relay == RelayMode::Auto => {
            eprintln!(
                "the provider's tunnel endpoint does not answer ({e}); asking {} to relay",
                args.node
            );
            let relay = ask_relay()?;
            relayed = Some(relay);
            runtime.block_on(async { dial(vec![relay]) })?
        }
        (_, Err(e)) => return Err(e).context("cannot reach the provider's tunnel endpoint"),
    };
    let renewals = NodeClient::new(args.node)?;
    runtime.block_on(async {
        let dialer = Arc::new(dialer);
        let owned = g.clone();
        keep_token_fresh(renewals, cap.expires_at, dialer.clone(), move |node| {
            renewal(node, &owned)
        });
        let describe = |local: SocketAddr, f: &Spec| {
            let via = relayed.map_or_else(String::new, |r| format!(", relayed by {r}"));
            format!(
                "{local} -> port {} of {}'s service {} (grant {}{via})",
                f.remote,
                g.owner,
                record.body().name,
                g.id
            )
        };
        let summary = json!({
            "lease": g.lease.to_string(),
            "provider": cap.provider.to_string(),
            "owner": g.owner.to_string(),
            "service": record.body().name,
            "grant": g.id.to_string(),
            "relay": relayed.map(|r| r.to_string()),
        });
        serve_forwards(dialer, args.forwards, global, describe, summary).await
    })?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use agora_protocol::lease::Capability;
    use agora_protocol::service::{GrantId, ServiceKind};
    use agora_protocol::{Digest, Timestamp};

    use super::*;

    fn at(s: u64) -> Timestamp {
        Timestamp::from_unix_secs(s)
    }

    fn record(owner: &Identity, provider: &Identity, lease: Digest, cap_expiry: u64) -> Value {
        let capability = Signed::sign(
            Capability {
                lease,
                agent: owner.agora_id(),
                provider: provider.agora_id(),
                ports: vec![8080],
                expires_at: at(cap_expiry),
            },
            provider,
        )
        .unwrap();
        let r = Signed::sign(
            ServiceRecord {
                owner: owner.agora_id(),
                lease,
                provider: provider.agora_id(),
                port: 8080,
                name: "svc".into(),
                kind: ServiceKind::Http,
                description: String::new(),
                tunnel_endpoints: vec!["127.0.0.1:7001".into()],
                capability,
                seq: cap_expiry,
                issued_at: at(100),
                expires_at: at(200),
            },
            owner,
        )
        .unwrap();
        json!({ "signed": URL_SAFE_NO_PAD.encode(r.as_bytes()) })
    }

    #[test]
    fn the_grant_owners_newest_record_of_the_lease_is_picked() {
        let gen_id = || Identity::generate(&mut rand::rng());
        let (owner, provider, grantee, other) = (gen_id(), gen_id(), gen_id(), gen_id());
        let lease = Digest::of(b"lease");
        let grant = Signed::sign(
            ServiceGrant {
                owner: owner.agora_id(),
                lease,
                provider: provider.agora_id(),
                grantee: grantee.agora_id(),
                ports: vec![8080],
                id: GrantId([1; 16]),
                issued_at: at(100),
                expires_at: at(300),
            },
            &owner,
        )
        .unwrap();
        let services = json!({ "services": [
            record(&other, &provider, lease, 5000),
            record(&owner, &provider, Digest::of(b"another"), 6000),
            { "signed": "not base64" },
            record(&owner, &provider, lease, 3000),
            record(&owner, &provider, lease, 4000),
        ]});
        let picked = record_for(grant.body(), &services).unwrap();
        assert_eq!(picked.body().owner, owner.agora_id());
        assert_eq!(picked.body().capability.body().expires_at, at(4000));
        assert!(record_for(grant.body(), &json!({ "services": [] })).is_err());

        // A grant reads from base64url or from a file holding it.
        let text = URL_SAFE_NO_PAD.encode(grant.as_bytes());
        assert_eq!(read_grant(&text).unwrap(), grant);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("grant");
        std::fs::write(&file, format!("{text}\n")).unwrap();
        assert_eq!(read_grant(file.to_str().unwrap()).unwrap(), grant);
        assert!(read_grant("nonsense!").is_err());
    }
}
