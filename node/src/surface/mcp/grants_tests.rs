//! The owner's service tools beside the agent (`grant_service`, `publish_service`,
//! `revoke_grant`, and `extend` republishing) against a fake node that answers by route and
//! records every call.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use agora_attest::Identity;
use agora_protocol::lease::{LeaseGrant, LeaseOp, Op};
use agora_protocol::lease_rpc::LeaseState;
use agora_protocol::service::{ServiceGrant, ServiceKind, ServiceRecord, ServiceWithdrawal};
use agora_protocol::{Ed25519, Signed, SignedKind};

use super::super::{AgentKey, Delegate, HttpCall, HttpReply, Server};
use super::*;
use crate::http::leases::LeaseView;
use crate::lease::gateway::contact::fixtures::signed_grant;
use crate::surface::Method;

/// Answers `GET /v1/leases/{id}` with the lease of `grant` (the newest set), `POST
/// /extend` with `{"lease": view}` of the extended grant, `GET /v1/services` with `listed`,
/// `GET /v1/accounts/{agent}/quota` with `quota` (or `no_committee`), and the rest (`POST
/// /v1/services`, `DELETE …/grants/…`) with `{"ok": true}`; records every call.
struct Node {
    grant: Mutex<Signed<LeaseGrant>>,
    extended: Option<Signed<LeaseGrant>>,
    listed: Vec<Signed<ServiceRecord>>,
    quota: Option<crate::agent::quota::QuotaAccount>,
    calls: Mutex<Vec<HttpCall>>,
}

fn json_reply(status: u16, body: &Value) -> HttpReply {
    HttpReply {
        status,
        content_type: "application/json".into(),
        body: body.to_string().into_bytes(),
    }
}

fn view(grant: &Signed<LeaseGrant>) -> Value {
    let v = LeaseView::new(grant, &LeaseState::Running, None, crate::clock::now());
    serde_json::to_value(v).unwrap_or(Value::Null)
}

impl Backend for Node {
    async fn send(&self, call: HttpCall, _: Option<SocketAddr>) -> Result<HttpReply, String> {
        let answer = match (call.method, call.path.as_str()) {
            (Method::Get, p) if p.starts_with("/v1/leases/") => json_reply(
                200,
                &view(&self.grant.lock().unwrap_or_else(PoisonError::into_inner)),
            ),
            (Method::Post, p) if p.ends_with("/extend") => {
                let g = self
                    .extended
                    .clone()
                    .unwrap_or_else(|| panic!("no extension"));
                *self.grant.lock().unwrap_or_else(PoisonError::into_inner) = g.clone();
                json_reply(200, &json!({ "lease": view(&g) }))
            }
            (Method::Get, p) if p.starts_with("/v1/accounts/") && p.ends_with("/quota") => {
                match &self.quota {
                    Some(account) => json_reply(200, &json!(account)),
                    None => json_reply(
                        404,
                        &json!({ "error": { "code": "no_committee", "message": "none" } }),
                    ),
                }
            }
            (Method::Get, p) if p.starts_with("/v1/services") => {
                let services: Vec<Value> = self
                    .listed
                    .iter()
                    .map(|r| json!({ "signed": URL_SAFE_NO_PAD.encode(r.as_bytes()) }))
                    .collect();
                json_reply(
                    200,
                    &json!({ "count": services.len(), "services": services }),
                )
            }
            (Method::Post, "/v1/services") => json_reply(
                200,
                &json!({ "published": true, "service": { "port": 8080, "seq": 1 } }),
            ),
            _ => json_reply(200, &json!({ "ok": true })),
        };
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(call);
        Ok(answer)
    }
}

struct Fixture {
    provider: Identity,
    agent: Identity,
}

impl Fixture {
    fn new() -> Self {
        Self {
            provider: Identity::generate(&mut rand::rng()),
            agent: Identity::generate(&mut rand::rng()),
        }
    }

    /// The provider's grant of the agent's lease on 8080 and 9000, for `secs` from now.
    fn grant(&self, secs: u64) -> Signed<LeaseGrant> {
        let now = crate::clock::now();
        signed_grant(
            &self.provider,
            self.agent.agora_id(),
            vec![8080, 9000],
            (now, now.saturating_add(Duration::from_secs(secs))),
            vec!["127.0.0.1:7001".into()],
        )
    }

    fn node(&self, grant: Signed<LeaseGrant>) -> Node {
        Node {
            grant: Mutex::new(grant),
            extended: None,
            listed: Vec::new(),
            quota: None,
            calls: Mutex::new(Vec::new()),
        }
    }

    fn beside(&self, node: Node) -> Server<Node> {
        let key = AgentKey::new(self.agent.clone(), "/nonexistent".into(), None);
        Server::local(node, Some(key))
    }
}

async fn call(server: &Server<Node>, name: &str, arguments: Value) -> CallToolResult {
    let args = arguments.as_object().cloned().unwrap_or_default();
    server.call(name, args, None, None).await
}

fn ok(r: CallToolResult) -> Value {
    assert_eq!(r.is_error, Some(false), "{r:?}");
    r.structured_content.unwrap_or(Value::Null)
}

fn code(r: &CallToolResult) -> String {
    assert_eq!(r.is_error, Some(true), "{r:?}");
    r.structured_content
        .as_ref()
        .and_then(|v| v["error"]["code"].as_str())
        .unwrap_or_default()
        .to_owned()
}

fn calls(server: &Server<Node>) -> Vec<HttpCall> {
    server
        .backend
        .calls
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// The signed message `field` of the JSON body of `call`.
fn signed_in<T: SignedKind>(call: &HttpCall, field: &str) -> Signed<T> {
    let body: Value =
        serde_json::from_slice(call.body.as_deref().unwrap_or_default()).unwrap_or(Value::Null);
    let text = body[field].as_str().unwrap_or_default();
    let bytes = URL_SAFE_NO_PAD.decode(text).unwrap_or_default();
    Signed::decode(&bytes, &Ed25519).unwrap_or_else(|e| panic!("{field}: {e}"))
}

fn tool_names(server: &Server<Node>) -> Vec<String> {
    server
        .tool_operations()
        .map(|op| op.name.to_owned())
        .chain(tools(&server.place).into_iter().map(|t| t.name.to_string()))
        .collect()
}

#[tokio::test]
async fn grant_service_signs_a_grant_for_another_key_beside_the_agent_only() {
    let f = Fixture::new();
    let grant = f.grant(3600);
    let lease = grant.body().lease.to_string();
    let server = f.beside(f.node(grant.clone()));
    assert!(tool_names(&server).iter().any(|n| n == "grant_service"));
    let grantee = Identity::generate(&mut rand::rng()).agora_id();

    let answer = ok(call(
        &server,
        "grant_service",
        json!({ "lease": lease, "to": grantee.to_string(), "ports": [8080], "ttl_secs": 600 }),
    )
    .await);
    let bytes = URL_SAFE_NO_PAD
        .decode(answer["grant"].as_str().unwrap_or_default())
        .unwrap_or_default();
    let signed: Signed<ServiceGrant> =
        Signed::decode(&bytes, &Ed25519).unwrap_or_else(|e| panic!("{e}"));
    let g = signed.body();
    assert_eq!(signed.signer(), f.agent.agora_id());
    assert_eq!(
        (g.grantee, g.lease, g.provider),
        (grantee, grant.body().lease, f.provider.agora_id())
    );
    assert_eq!(g.ports, [8080]);
    assert_eq!(answer["id"], g.id.to_string());
    assert_eq!(
        g.expires_at,
        g.issued_at.saturating_add(Duration::from_secs(600))
    );
    // What the provider checks at the tunnel holds.
    assert!(
        g.permits(
            grant.body().token.body(),
            grantee,
            8080,
            crate::clock::now()
        )
        .is_ok()
    );
    assert!(
        answer["command"]
            .as_str()
            .unwrap_or_default()
            .contains("--grant")
    );
    // Only the lease was read; nothing was sent to the node.
    let seen = calls(&server);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, format!("/v1/leases/{lease}"));

    // A port outside the lease, the owner itself, bad arguments.
    let r = call(
        &server,
        "grant_service",
        json!({ "lease": lease, "to": grantee.to_string(), "ports": [22] }),
    )
    .await;
    assert_eq!(code(&r), "port_not_allowed");
    let r = call(
        &server,
        "grant_service",
        json!({ "lease": lease, "to": f.agent.agora_id().to_string(), "ports": [8080] }),
    )
    .await;
    assert_eq!(code(&r), "bad_arguments");
    let r = call(&server, "grant_service", json!({ "lease": lease })).await;
    assert_eq!(code(&r), "bad_arguments");

    // Someone else's lease: the grant is not this agent's.
    let stranger = Fixture {
        provider: f.provider.clone(),
        agent: Identity::generate(&mut rand::rng()),
    };
    let theirs = stranger.beside(f.node(grant.clone()));
    let r = call(
        &theirs,
        "grant_service",
        json!({ "lease": lease, "to": grantee.to_string(), "ports": [8080] }),
    )
    .await;
    assert_eq!(code(&r), "bad_grant");

    // Without a key, and on a node: not listed, and calling says why.
    let keyless = Server::local(f.node(grant.clone()), None);
    assert!(!tool_names(&keyless).iter().any(|n| n == "grant_service"));
    let r = call(&keyless, "grant_service", json!({})).await;
    assert_eq!(code(&r), "key_required");
    let node_key = Arc::new(Identity::generate(&mut rand::rng()));
    let on_node = Server::on_node(
        f.node(grant),
        Delegate {
            tokens: Arc::new(crate::agent::Tokens::new(node_key.agora_id())),
            identity: node_key,
        },
    );
    assert!(!tool_names(&on_node).iter().any(|n| n == "grant_service"));
    assert!(!tool_names(&on_node).iter().any(|n| n == "publish_service"));
    assert!(tool_names(&on_node).iter().any(|n| n == "revoke_grant"));
    let r = call(&on_node, "grant_service", json!({})).await;
    assert_eq!(code(&r), "bad_arguments");
}

#[tokio::test]
async fn publish_service_signs_the_record_from_the_leases_grant() {
    let f = Fixture::new();
    let grant = f.grant(3600);
    let lease = grant.body().lease.to_string();
    let server = f.beside(f.node(grant.clone()));
    assert!(tool_names(&server).iter().any(|n| n == "publish_service"));

    let answer = ok(call(
        &server,
        "publish_service",
        json!({
            "lease": lease, "port": 8080, "name": "greeter", "kind": "mcp",
            "description": "greets", "ttl_secs": 1800
        }),
    )
    .await);
    assert_eq!(answer["published"], true);
    let seen = calls(&server);
    assert_eq!(seen.len(), 2, "the lease, then the record");
    assert_eq!(
        (seen[1].method, seen[1].path.as_str()),
        (Method::Post, "/v1/services")
    );
    let record: Signed<ServiceRecord> = signed_in(&seen[1], "record");
    let r = record.body();
    assert_eq!(record.signer(), f.agent.agora_id());
    assert_eq!(
        (r.port, r.name.as_str(), r.kind),
        (8080, "greeter", ServiceKind::Mcp)
    );
    assert_eq!(r.capability, grant.body().token);
    assert_eq!(r.tunnel_endpoints, grant.body().tunnel_endpoints);
    assert_eq!(
        r.expires_at,
        r.issued_at.saturating_add(Duration::from_secs(1800))
    );

    let _ = ok(call(
        &server,
        "publish_service",
        json!({ "lease": lease, "port": 8080, "withdraw": true }),
    )
    .await);
    let seen = calls(&server);
    let w: Signed<ServiceWithdrawal> = signed_in(&seen[3], "withdrawal");
    assert_eq!(w.body().key(), r.key());

    for (args, want) in [
        (
            json!({ "lease": lease, "port": 22, "name": "x", "kind": "tcp" }),
            "port_not_allowed",
        ),
        (json!({ "lease": lease, "port": 8080 }), "bad_arguments"),
        (
            json!({ "lease": "12", "port": 8080, "name": "x", "kind": "tcp" }),
            "bad_arguments",
        ),
    ] {
        assert_eq!(code(&call(&server, "publish_service", args).await), want);
    }
    // The lease's capability ran out: nothing to publish.
    let gone = f.beside(f.node(f.grant(0)));
    let r = call(
        &gone,
        "publish_service",
        json!({ "lease": lease, "port": 8080, "name": "x", "kind": "tcp" }),
    )
    .await;
    assert_eq!(code(&r), "ended");
}

#[tokio::test]
async fn revoke_grant_signs_the_operation_for_the_provider() {
    let f = Fixture::new();
    let grant = f.grant(3600);
    let lease = grant.body().lease.to_string();
    let server = f.beside(f.node(grant.clone()));
    let id = "0123456789abcdef0123456789abcdef";
    let _ = ok(call(&server, "revoke_grant", json!({ "id": lease, "grant": id })).await);
    let seen = calls(&server);
    let last = seen.last().unwrap_or_else(|| panic!("no call"));
    assert_eq!(last.method, Method::Delete);
    assert_eq!(last.path, format!("/v1/leases/{lease}/grants/{id}"));
    let op: Signed<LeaseOp> = signed_in(last, "op");
    assert_eq!(op.signer(), f.agent.agora_id());
    assert_eq!(op.body().provider, f.provider.agora_id());
    assert_eq!(
        op.body().op,
        Op::RevokeGrant {
            grant: id.parse().unwrap_or_else(|e| panic!("{e}"))
        }
    );
    let r = call(
        &server,
        "revoke_grant",
        json!({ "id": lease, "grant": "xyz" }),
    )
    .await;
    assert_eq!(code(&r), "bad_arguments");
}

#[tokio::test]
async fn extend_republishes_the_agents_services_with_the_new_capability() {
    let f = Fixture::new();
    let old = f.grant(600);
    let lease = old.body().lease.to_string();
    let now = crate::clock::now();
    let what = |port, ttl: Option<u64>| crate::agent::services::Publication {
        port,
        name: format!("svc-{port}"),
        kind: ServiceKind::Http,
        description: String::new(),
        ttl: ttl.map(Duration::from_secs),
    };
    let agent = f.agent.clone();
    let record = |port, ttl| {
        crate::agent::services::record(&agent, old.body(), &what(port, ttl), now)
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let mut node = f.node(old.clone());
    let extended = f.grant(4200);
    node.extended = Some(extended.clone());
    node.listed = vec![record(8080, None), record(9000, None)];
    let server = f.beside(node);

    let answer = ok(call(&server, "extend", json!({ "id": lease, "secs": 3600 })).await);
    assert_eq!(
        answer["republished"].as_array().map(Vec::len),
        Some(2),
        "{answer}"
    );
    let posted: Vec<Signed<ServiceRecord>> = calls(&server)
        .iter()
        .filter(|c| c.method == Method::Post && c.path == "/v1/services")
        .map(|c| signed_in(c, "record"))
        .collect();
    assert_eq!(posted.len(), 2);
    for r in &posted {
        assert_eq!(r.signer(), f.agent.agora_id());
        assert_eq!(r.body().capability, extended.body().token);
        assert_eq!(r.body().expires_at, extended.body().token.body().expires_at);
    }
    // Nothing published: no `republished` field, the extension's answer as it was.
    let quiet = {
        let mut n = f.node(old);
        n.extended = Some(extended);
        f.beside(n)
    };
    let answer = ok(call(&quiet, "extend", json!({ "id": lease, "secs": 3600 })).await);
    assert!(answer.get("republished").is_none(), "{answer}");
    assert!(answer["lease"].is_object());
}

/// Under a quota committee the extension carries the agent's top-up: price × seconds, over
/// what the lease's open locks hold, for its provider, until the new end + the slack.
#[tokio::test]
async fn extend_under_a_committee_signs_a_top_up_over_the_leases_locks() {
    use agora_protocol::committee::{Action, ChainOp};

    let f = Fixture::new();
    let old = f.grant(600);
    let g = old.body().clone();
    let lock = |lease: String, amount_micro| crate::agent::quota::LockEntry {
        seq: 0,
        lease,
        provider: g.provider.to_string(),
        amount_micro,
        expires_at: g.expires_at.to_string(),
        approved: false,
    };
    let mut node = f.node(old.clone());
    node.extended = Some(f.grant(4200));
    node.quota = Some(crate::agent::quota::QuotaAccount {
        agent: f.agent.agora_id().to_string(),
        genesis: "00".repeat(32),
        epoch: Some(0),
        free_tier_cap: 8,
        free_tier_micro: 10_000_000,
        next_seq: 3,
        head: Some(agora_protocol::Digest::of(b"head").to_string()),
        credited_micro: 0,
        granted_micro: 10_000_000,
        spent_micro: 0,
        approved_spent_micro: 0,
        locked_micro: 700,
        available_micro: 9_999_300,
        locks: vec![
            lock(g.lease.to_string(), 500),
            lock(g.lease.to_string(), 100),
            lock(agora_protocol::Digest::of(b"other").to_string(), 100),
        ],
    });
    let server = f.beside(node);
    ok(call(
        &server,
        "extend",
        json!({ "id": g.lease.to_string(), "secs": 60 }),
    )
    .await);
    let extend = calls(&server)
        .into_iter()
        .find(|c| c.path.ends_with("/extend"))
        .expect("the extension was posted");
    let top_up: Signed<ChainOp> = signed_in(&extend, "top_up");
    assert_eq!(top_up.signer(), f.agent.agora_id());
    let body = top_up.body();
    assert_eq!(
        (body.seq, body.prev),
        (3, Some(agora_protocol::Digest::of(b"head")))
    );
    let Action::TopUp(terms) = &body.action else {
        panic!("not a top-up: {body:?}")
    };
    assert_eq!(
        terms.base_micro, 600,
        "both locks of the lease, not the other's"
    );
    assert_eq!(terms.lock.lease, g.lease);
    assert_eq!(terms.lock.provider, g.provider);
    assert_eq!(terms.lock.amount_micro, g.price_per_sec * 60);
    assert_eq!(
        terms.lock.expires_at,
        g.expires_at
            .saturating_add(Duration::from_secs(60))
            .saturating_add(crate::agent::quota::LOCK_SLACK)
    );
    let op: Signed<LeaseOp> = signed_in(&extend, "op");
    assert_eq!(op.body().op, Op::Extend { secs: 60 });
}
