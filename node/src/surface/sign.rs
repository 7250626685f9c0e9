//! The MCP tools that act for the agent beside it (`agora mcp --key FILE`): each takes what
//! the agent wants, reads what it needs from the node (a quote, the lease's provider), and
//! builds the HTTP request with the agent's own signature ([`crate::agent::request`], the
//! same code as the `agora agent` CLI). The node relays; the provider verifies.

use std::collections::BTreeMap;

use agora_protocol::lease::{LeaseId, Op, OpKind};
use agora_protocol::offer::Isolation;
use agora_protocol::signup::SignupRecord;
use agora_protocol::{AgoraId, Ed25519, Signed};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::future::BoxFuture;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::errors::{
    BAD_ARGUMENTS, BAD_GRANT, BAD_REPLY, ENDED, ErrorBody, INVALID, KEY_REQUIRED, NO_MATCH,
    NODE_UNREACHABLE, PORT_NOT_ALLOWED,
};
use super::mcp::{AgentKey, HttpCall, NodeRead};
use super::{AfterContext, Method, SignContext};
use crate::agent::request::{FinalReceipt, PlanError, RunPlan, sign_op, sign_read_proof};
use crate::agent::services::{self, Publication, ServiceError};

/// `run` as a tool: what to run; the tool quotes, picks offers and signs the request.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunToolInput {
    /// Program and arguments, e.g. `["sh", "-c", "echo hi"]` (empty: the image's default).
    #[serde(default)]
    pub command: Vec<String>,
    /// Image name as offers list it (default `busybox`).
    #[serde(default)]
    pub image: Option<String>,
    /// Runtime (default `sandbox`).
    #[serde(default)]
    pub runtime: Option<Isolation>,
    /// vCPU in thousandths (default 500).
    #[serde(default)]
    pub vcpu_milli: Option<u32>,
    /// Memory, MiB (default 256).
    #[serde(default)]
    pub memory_mib: Option<u64>,
    /// Writable disk, MiB (default 64).
    #[serde(default)]
    pub disk_mib: Option<u64>,
    /// Lifetime, seconds (default 3600).
    #[serde(default)]
    pub lifetime_secs: Option<u64>,
    /// Most micro-credits per second (default: the dearest offer named).
    #[serde(default)]
    pub max_price_per_sec: Option<u64>,
    /// Only offers in this region.
    #[serde(default)]
    pub region: Option<String>,
    /// How many offers to name, best first (1-8, default 3): the node fails over along them.
    #[serde(default)]
    pub candidates: Option<usize>,
    /// Environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// TCP ports the workload serves.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// Outbound connections (where tier and provider allow).
    #[serde(default)]
    pub egress: bool,
}

/// `signup` as a tool: sign up at the node with the key beside the agent.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupToolInput {
    /// A credential about the agent's key (base64url, as `agora attest issue` writes it):
    /// its tier and spending limit. Without one: the contained tier, after a small proof of
    /// work.
    #[serde(default)]
    #[schemars(length(min = 1, max = 65536))]
    pub credential: Option<String>,
    /// A display name for operators (at most 64 bytes).
    #[serde(default)]
    #[schemars(length(min = 1, max = 64))]
    pub name: Option<String>,
}

/// `list_leases` as a tool: the agent is the one signing (or the token's).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListLeasesToolInput {
    /// Most leases (1 to 500, default 100).
    #[serde(default)]
    #[schemars(range(min = 1, max = 500))]
    pub limit: Option<u32>,
}

/// A tool on one of the agent's leases.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseToolInput {
    /// The lease id: 64 hex digits.
    #[schemars(pattern(r"^[0-9a-fA-F]{64}$"))]
    pub id: String,
}

/// `extend` as a tool.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendToolInput {
    /// The lease id: 64 hex digits.
    #[schemars(pattern(r"^[0-9a-fA-F]{64}$"))]
    pub id: String,
    /// Seconds to add.
    #[schemars(range(min = 1))]
    pub secs: u64,
}

/// `exec` as a tool.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecToolInput {
    /// The lease id: 64 hex digits.
    #[schemars(pattern(r"^[0-9a-fA-F]{64}$"))]
    pub id: String,
    /// Program and arguments, e.g. `["sh", "-c", "ls /tmp"]`.
    pub command: Vec<String>,
    /// Standard input for the command, as text.
    #[serde(default)]
    pub stdin: Option<String>,
}

/// `publish_service` as a tool: what to publish (or withdraw); the tool reads the lease's
/// provider-signed grant and signs the record with the agent's own key.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishServiceToolInput {
    /// The lease id: 64 hex digits (one of the agent's running leases).
    #[schemars(pattern(r"^[0-9a-fA-F]{64}$"))]
    pub lease: String,
    /// The workload port to publish (one of the lease's ports).
    #[schemars(range(min = 1))]
    pub port: u16,
    /// The service's name: lowercase letters, digits, `-`, `_`, `.` (not needed to withdraw).
    #[serde(default)]
    #[schemars(length(min = 1, max = 64), pattern(r"^[a-z0-9._-]+$"))]
    pub name: Option<String>,
    /// What it speaks: `mcp`, `http` or `tcp` (not needed to withdraw).
    #[serde(default)]
    pub kind: Option<agora_protocol::service::ServiceKind>,
    /// What it does (at most 280 bytes).
    #[serde(default)]
    #[schemars(length(max = 280))]
    pub description: Option<String>,
    /// How long it stays listed, seconds (default and most a day; never past the lease).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub ttl_secs: Option<u64>,
    /// Withdraw the port's record instead of publishing it.
    #[serde(default)]
    pub withdraw: bool,
}

/// `revoke_grant` as a tool.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeGrantToolInput {
    /// The lease id: 64 hex digits.
    #[schemars(pattern(r"^[0-9a-fA-F]{64}$"))]
    pub id: String,
    /// The grant's id: 32 hex digits (`grant_service` answered it).
    #[schemars(pattern(r"^[0-9a-fA-F]{32}$"))]
    pub grant: String,
}

fn args<T: for<'de> Deserialize<'de>>(args: &Map<String, Value>) -> Result<T, ErrorBody> {
    serde_json::from_value(Value::Object(args.clone()))
        .map_err(|e| ErrorBody::new(BAD_ARGUMENTS.code, e.to_string()))
}

fn b64<T>(m: &Signed<T>) -> String {
    URL_SAFE_NO_PAD.encode(m.as_bytes())
}

fn json_body(v: &Value) -> Option<Vec<u8>> {
    Some(v.to_string().into_bytes())
}

fn plan_error(e: &PlanError) -> ErrorBody {
    match e {
        PlanError::NoOffer => ErrorBody::new(NO_MATCH.code, e.to_string()),
        _ => ErrorBody::new(BAD_ARGUMENTS.code, e.to_string()),
    }
}

/// The agent's signup record saved beside its key (`FILE.signup`, by `agora agent signup`).
///
/// # Errors
/// `key_required` when there is none or it does not verify.
pub fn saved_signup(key: &AgentKey) -> Result<Signed<SignupRecord>, ErrorBody> {
    let text = key.signup().ok_or_else(|| {
        ErrorBody::new(
            KEY_REQUIRED.code,
            format!(
                "no signup record beside {}: run `agora agent signup --key {}` first",
                key.path.display(),
                key.path.display()
            ),
        )
    })?;
    URL_SAFE_NO_PAD
        .decode(text.trim())
        .ok()
        .and_then(|b| Signed::decode(&b, &Ed25519).ok())
        .ok_or_else(|| {
            ErrorBody::new(
                KEY_REQUIRED.code,
                "the saved signup record does not verify: sign up again",
            )
        })
}

/// The kind of operation a tool performs, as delegations scope them.
pub fn op_kind(tool: &str) -> Option<OpKind> {
    Some(match tool {
        "run" => OpKind::Lease,
        "exec" => OpKind::Exec,
        "logs" => OpKind::Logs,
        "put_files" | "get_files" => OpKind::Files,
        "extend" => OpKind::Extend,
        "stop" | "acknowledge" => OpKind::Stop,
        "list_leases" => OpKind::Status,
        "revoke_grant" => OpKind::Grant,
        _ => return None,
    })
}

/// A lease id argument and the provider that holds it, as the node knows it.
async fn lease_and_provider(
    cx: &SignContext<'_>,
    id: &str,
) -> Result<(LeaseId, AgoraId), ErrorBody> {
    let lease: LeaseId = id.parse().map_err(|_| {
        ErrorBody::new(
            BAD_ARGUMENTS.code,
            format!("{id:?} is not a lease id (64 hex digits)"),
        )
    })?;
    let reply = cx
        .node
        .get(&format!("/v1/leases/{lease}"))
        .await
        .map_err(|e| ErrorBody::new(NODE_UNREACHABLE.code, e))?;
    let view: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    if reply.status != 200 {
        if let Ok(body) = serde_json::from_value::<ErrorBody>(view.clone()) {
            return Err(body);
        }
        return Err(ErrorBody::new(
            NODE_UNREACHABLE.code,
            format!("HTTP {} asking for the lease", reply.status),
        ));
    }
    let provider = view
        .get("provider")
        .and_then(Value::as_str)
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| {
            ErrorBody::new(
                NODE_UNREACHABLE.code,
                "the node does not say which provider holds the lease",
            )
        })?;
    Ok((lease, provider))
}

fn op_call(
    cx: &SignContext<'_>,
    lease: LeaseId,
    provider: AgoraId,
    op: Op,
) -> Result<String, ErrorBody> {
    sign_op(cx.author, provider, lease, op, crate::clock::now())
        .map(|s| b64(&s))
        .map_err(|e| plan_error(&e))
}

/// The error body in a node's JSON answer, or one saying what was asked.
fn answer_error(reply: &super::mcp::HttpReply, asking: &str) -> ErrorBody {
    serde_json::from_slice::<ErrorBody>(&reply.body).unwrap_or_else(|_| {
        ErrorBody::new(
            NODE_UNREACHABLE.code,
            format!("HTTP {} {asking}", reply.status),
        )
    })
}

/// `signup`: the node's challenge, the proof of work (unless a credential is given), the
/// signed record posted; the record is saved beside the key (`FILE.signup`) for the tools
/// that follow, and the result is the agent's account as the node now serves it.
pub fn signup(cx: SignContext<'_>) -> BoxFuture<'_, Result<HttpCall, ErrorBody>> {
    Box::pin(async move {
        let a: SignupToolInput = args(cx.args)?;
        let key = cx.key.ok_or_else(|| {
            ErrorBody::new(
                KEY_REQUIRED.code,
                "signing up needs the agent's own key: run `agora mcp --key FILE` beside it",
            )
        })?;
        let credential = a
            .credential
            .as_deref()
            .map(|text| {
                agora_protocol::Credential::from_base64(text.trim())
                    .map_err(|e| ErrorBody::new(BAD_ARGUMENTS.code, format!("credential: {e}")))
            })
            .transpose()?;
        if let Some(c) = &credential
            && c.holder() != key.identity.agora_id()
        {
            return Err(ErrorBody::new(
                BAD_ARGUMENTS.code,
                format!(
                    "the credential is about {}, not this agent ({})",
                    c.holder(),
                    key.identity.agora_id()
                ),
            ));
        }
        let reply = cx
            .node
            .get("/v1/signup/challenge")
            .await
            .map_err(|e| ErrorBody::new(NODE_UNREACHABLE.code, e))?;
        if reply.status != 200 {
            return Err(answer_error(&reply, "asking for a signup challenge"));
        }
        let issued: crate::agent::IssuedChallenge =
            serde_json::from_slice(&reply.body).map_err(|e| {
                ErrorBody::new(NODE_UNREACHABLE.code, format!("the node's challenge: {e}"))
            })?;
        // The proof of work is CPU-bound: off the async threads.
        let identity = key.identity.clone();
        let record = tokio::task::spawn_blocking(move || {
            crate::agent::request::signup_record(&identity, &issued, credential, a.name)
        })
        .await
        .map_err(|e| ErrorBody::new(BAD_ARGUMENTS.code, format!("signing: {e}")))?
        .map_err(|e| plan_error(&e))?;
        let body = json!({ "record": b64(&record) }).to_string().into_bytes();
        let reply = cx
            .node
            .post("/v1/signup", body)
            .await
            .map_err(|e| ErrorBody::new(NODE_UNREACHABLE.code, e))?;
        if reply.status != 200 {
            return Err(answer_error(&reply, "signing up"));
        }
        let answer: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        let saved = answer
            .get("signup_record")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ErrorBody::new(
                    NODE_UNREACHABLE.code,
                    "the node's answer has no signup_record",
                )
            })?;
        key.save_signup(saved)
            .map_err(|e| ErrorBody::new(KEY_REQUIRED.code, e))?;
        Ok(HttpCall {
            method: Method::Get,
            path: format!("/v1/accounts/{}", key.identity.agora_id()),
            body: None,
        })
    })
}

/// `run`: quote, choose the candidates, sign the lease request.
pub fn run(cx: SignContext<'_>) -> BoxFuture<'_, Result<HttpCall, ErrorBody>> {
    Box::pin(async move {
        let a: RunToolInput = args(cx.args)?;
        let defaults = RunPlan::default();
        let plan = RunPlan {
            runtime: a.runtime.unwrap_or(defaults.runtime),
            image: a.image.unwrap_or(defaults.image),
            vcpu_milli: a.vcpu_milli.unwrap_or(defaults.vcpu_milli),
            memory_mib: a.memory_mib.unwrap_or(defaults.memory_mib),
            disk_mib: a.disk_mib.unwrap_or(defaults.disk_mib),
            pids: defaults.pids,
            lifetime_secs: a.lifetime_secs.unwrap_or(defaults.lifetime_secs),
            command: a.command,
            env: a.env,
            ports: a.ports,
            egress: a.egress,
            max_price_per_sec: a.max_price_per_sec,
            region: a.region,
            candidates: a.candidates.unwrap_or(defaults.candidates),
        };
        let record = cx.signup.clone()?;
        let reply = cx
            .node
            .post(
                "/v1/leases/quote",
                plan.quote_body().to_string().into_bytes(),
            )
            .await
            .map_err(|e| ErrorBody::new(NODE_UNREACHABLE.code, e))?;
        let quote: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        if reply.status != 200 {
            return Err(
                serde_json::from_value::<ErrorBody>(quote).unwrap_or_else(|_| {
                    ErrorBody::new(
                        NODE_UNREACHABLE.code,
                        format!("HTTP {} asking for a quote", reply.status),
                    )
                }),
            );
        }
        let request = plan
            .request(&quote, cx.author, record, crate::clock::now())
            .map_err(|e| plan_error(&e))?;
        let mut body = json!({ "request": b64(&request) });
        if let Some(fields) = body.as_object_mut() {
            fields.extend(quota_locks(&cx, &request).await?);
        }
        Ok(HttpCall {
            method: Method::Post,
            path: "/v1/leases".into(),
            body: json_body(&body),
        })
    })
}

/// The agent's signed quota locks for `request`, one per candidate, as the `lock` and
/// `fallback_locks` body fields, where the node has a quota committee: signed by the agent
/// beside it, or by the node as the delegate of the token's agent under its delegation
/// (the committee checks the delegation allows leases and its spend cap).
async fn quota_locks(
    cx: &SignContext<'_>,
    request: &Signed<agora_protocol::lease::LeaseRequest>,
) -> Result<serde_json::Map<String, Value>, ErrorBody> {
    let Some(view) = quota_account(cx).await? else {
        return Ok(serde_json::Map::new());
    };
    let locks = crate::agent::quota::lock_ops(cx.author, &view, request)
        .map_err(|e| ErrorBody::new(BAD_REPLY.code, e.to_string()))?;
    Ok(crate::agent::quota::lock_fields(&locks))
}

/// The author's agent's quota account at the node's committee (`None` without one).
async fn quota_account(
    cx: &SignContext<'_>,
) -> Result<Option<crate::agent::quota::QuotaAccount>, ErrorBody> {
    let reply = cx
        .node
        .get(&format!("/v1/accounts/{}/quota", cx.author.agent_id()))
        .await
        .map_err(|e| ErrorBody::new(NODE_UNREACHABLE.code, e))?;
    if reply.status == 404 {
        return Ok(None);
    }
    if reply.status != 200 {
        return Err(answer_error(&reply, "asking for the quota account"));
    }
    let view = serde_json::from_slice(&reply.body)
        .map_err(|e| ErrorBody::new(BAD_REPLY.code, format!("quota account: {e}")))?;
    Ok(Some(view))
}

/// The agent's top-up paying `secs` more of the lease `grant` is for (base64url), where the
/// node has a quota committee (signed as [`quota_locks`] are).
async fn quota_top_up(
    cx: &SignContext<'_>,
    grant: &Signed<agora_protocol::lease::LeaseGrant>,
    secs: u64,
) -> Result<Option<String>, ErrorBody> {
    let Some(account) = quota_account(cx).await? else {
        return Ok(None);
    };
    let extension = crate::agent::quota::Extension::of(grant.body(), secs);
    let top_up = crate::agent::quota::top_up_op(cx.author, &account, &extension)
        .map_err(|e| ErrorBody::new(BAD_REPLY.code, e.to_string()))?;
    Ok(Some(b64(&top_up)))
}

/// The node's id (`GET /v1/node`): what a read proof names.
async fn node_id(cx: &SignContext<'_>) -> Result<AgoraId, ErrorBody> {
    let reply = cx
        .node
        .get("/v1/node")
        .await
        .map_err(|e| ErrorBody::new(NODE_UNREACHABLE.code, e))?;
    if reply.status != 200 {
        return Err(answer_error(&reply, "asking for the node's id"));
    }
    serde_json::from_slice::<Value>(&reply.body)
        .ok()
        .and_then(|v| v.get("id").and_then(Value::as_str)?.parse().ok())
        .ok_or_else(|| ErrorBody::new(NODE_UNREACHABLE.code, "the node does not say its id"))
}

/// `list_leases`: the agent's leases at the node, with a read proof signed for that node
/// (by the agent beside it, or by the node as the delegate of the token's agent).
pub fn list_leases(cx: SignContext<'_>) -> BoxFuture<'_, Result<HttpCall, ErrorBody>> {
    Box::pin(async move {
        let a: ListLeasesToolInput = args(cx.args)?;
        let node = node_id(&cx).await?;
        let proof =
            sign_read_proof(cx.author, node, crate::clock::now()).map_err(|e| plan_error(&e))?;
        let mut path = format!(
            "/v1/leases?agent={}&proof={}",
            cx.author.agent_id(),
            b64(&proof)
        );
        if let Some(limit) = a.limit {
            path.push_str(&format!("&limit={limit}"));
        }
        Ok(HttpCall {
            method: Method::Get,
            path,
            body: None,
        })
    })
}

/// `exec`: the signed command (and its input).
pub fn exec(cx: SignContext<'_>) -> BoxFuture<'_, Result<HttpCall, ErrorBody>> {
    Box::pin(async move {
        let a: ExecToolInput = args(cx.args)?;
        let (lease, provider) = lease_and_provider(&cx, &a.id).await?;
        let op = op_call(
            &cx,
            lease,
            provider,
            Op::Exec {
                command: a.command,
                stdin: a.stdin.is_some(),
                tty: false,
            },
        )?;
        let body = match a.stdin {
            Some(input) => json!({ "op": op, "stdin": input }),
            None => json!({ "op": op }),
        };
        Ok(HttpCall {
            method: Method::Post,
            path: format!("/v1/leases/{lease}/exec"),
            body: json_body(&body),
        })
    })
}

/// `logs`: the workload's output so far (not followed: a tool call answers once).
pub fn logs(cx: SignContext<'_>) -> BoxFuture<'_, Result<HttpCall, ErrorBody>> {
    Box::pin(async move {
        let a: LeaseToolInput = args(cx.args)?;
        let (lease, provider) = lease_and_provider(&cx, &a.id).await?;
        let op = op_call(&cx, lease, provider, Op::Logs { follow: false })?;
        Ok(HttpCall {
            method: Method::Get,
            path: format!("/v1/leases/{lease}/logs?op={op}"),
            body: None,
        })
    })
}

/// `extend`.
pub fn extend(cx: SignContext<'_>) -> BoxFuture<'_, Result<HttpCall, ErrorBody>> {
    Box::pin(async move {
        let a: ExtendToolInput = args(cx.args)?;
        // The lease's provider-signed grant gives what the top-up pays for.
        let grant = owned_lease(cx.node, &a.id, cx.author.agent_id()).await?;
        let (lease, provider) = (grant.body().lease, grant.body().provider);
        let top_up = quota_top_up(&cx, &grant, a.secs).await?;
        let op = op_call(&cx, lease, provider, Op::Extend { secs: a.secs })?;
        let body = match top_up {
            Some(top_up) => json!({ "op": op, "top_up": top_up }),
            None => json!({ "op": op }),
        };
        Ok(HttpCall {
            method: Method::Post,
            path: format!("/v1/leases/{lease}/extend"),
            body: json_body(&body),
        })
    })
}

/// `stop`.
pub fn stop(cx: SignContext<'_>) -> BoxFuture<'_, Result<HttpCall, ErrorBody>> {
    Box::pin(async move {
        let a: LeaseToolInput = args(cx.args)?;
        let (lease, provider) = lease_and_provider(&cx, &a.id).await?;
        let op = op_call(&cx, lease, provider, Op::Stop)?;
        Ok(HttpCall {
            method: Method::Delete,
            path: format!("/v1/leases/{lease}"),
            body: json_body(&json!({ "op": op })),
        })
    })
}

/// `acknowledge`: countersign the final receipt of one of the agent's ended leases (the
/// node's view of it, the provider's signature checked here).
pub fn acknowledge(cx: SignContext<'_>) -> BoxFuture<'_, Result<HttpCall, ErrorBody>> {
    Box::pin(async move {
        let a: LeaseToolInput = args(cx.args)?;
        let (lease, view) = fetch_lease(cx.node, &a.id).await?;
        let receipt = FinalReceipt::of_view(&view, cx.author.agent_id())
            .map_err(|e| ErrorBody::new(BAD_REPLY.code, e.to_string()))?
            .ok_or_else(|| {
                ErrorBody::new(
                    INVALID.code,
                    format!(
                        "lease {lease} has no final receipt to acknowledge (it runs, or it is \
                         acknowledged already)"
                    ),
                )
            })?;
        let op = receipt
            .acknowledge(cx.author, crate::clock::now())
            .map_err(|e| plan_error(&e))?;
        Ok(HttpCall {
            method: Method::Post,
            path: format!("/v1/leases/{lease}/ack"),
            body: json_body(&json!({ "op": b64(&op) })),
        })
    })
}

/// After `stop`: the final receipt in the answer, countersigned and sent to the provider
/// (`acknowledged`: the lease as the provider then shows it, or why not), so the provider's
/// evidence shows the agent confirmed what the lease cost.
pub fn acknowledge_receipt(cx: AfterContext<'_>) -> BoxFuture<'_, Option<(&'static str, Value)>> {
    Box::pin(async move {
        let view = cx.answer.get("lease")?;
        let outcome = match FinalReceipt::of_view(view, cx.author.agent_id()) {
            Ok(Some(receipt)) => match receipt.acknowledge(cx.author, crate::clock::now()) {
                Ok(op) => {
                    let body = json!({ "op": b64(&op) }).to_string().into_bytes();
                    match cx
                        .node
                        .post(&format!("/v1/leases/{}/ack", receipt.lease), body)
                        .await
                    {
                        Ok(reply) if reply.status == 200 => {
                            serde_json::from_slice::<Value>(&reply.body)
                                .ok()
                                .and_then(|v| v.get("lease").cloned())
                                .unwrap_or(Value::Bool(true))
                        }
                        Ok(reply) => json!({
                            "error": serde_json::to_value(answer_error(&reply, "acknowledging")).unwrap_or(Value::Null),
                        }),
                        Err(e) => {
                            json!({ "error": { "code": NODE_UNREACHABLE.code, "message": e } })
                        }
                    }
                }
                Err(e) => json!({ "error": plan_error(&e) }),
            },
            Ok(None) => return None,
            Err(e) => json!({ "error": { "code": BAD_REPLY.code, "message": e.to_string() } }),
        };
        Some(("acknowledged", outcome))
    })
}

/// A service error as a tool's.
pub(crate) fn service_error(e: &ServiceError) -> ErrorBody {
    let code = match e {
        ServiceError::Port { .. } => PORT_NOT_ALLOWED.code,
        ServiceError::Expired(_) => ENDED.code,
        _ => BAD_ARGUMENTS.code,
    };
    ErrorBody::new(code, e.to_string())
}

/// The lease `id` (64 hex digits) as `node` shows it (`GET /v1/leases/{id}`).
///
/// # Errors
/// `bad_arguments`, the node's own error, `node_unreachable`.
async fn fetch_lease(node: &dyn NodeRead, id: &str) -> Result<(LeaseId, Value), ErrorBody> {
    let lease: LeaseId = id.parse().map_err(|_| {
        ErrorBody::new(
            BAD_ARGUMENTS.code,
            format!("{id:?} is not a lease id (64 hex digits)"),
        )
    })?;
    let reply = node
        .get(&format!("/v1/leases/{lease}"))
        .await
        .map_err(|e| ErrorBody::new(NODE_UNREACHABLE.code, e))?;
    if reply.status != 200 {
        return Err(answer_error(&reply, "asking for the lease"));
    }
    let view: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    Ok((lease, view))
}

/// The agent's own running lease `id` as `node` shows it, with its provider-signed grant
/// checked here (the provider's signature, this lease, this agent): what an owner signs
/// records and grants from.
///
/// # Errors
/// `bad_arguments`, the node's own error, `bad_grant`, `ended`, `node_unreachable`.
pub(crate) async fn owned_lease(
    node: &dyn NodeRead,
    id: &str,
    agent: AgoraId,
) -> Result<agora_protocol::Signed<agora_protocol::lease::LeaseGrant>, ErrorBody> {
    let (lease, view) = fetch_lease(node, id).await?;
    let text = view
        .get("grant")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let grant = crate::tunnel::forward::verify_grant(text, &lease, &agent)
        .map_err(|e| ErrorBody::new(BAD_GRANT.code, e.to_string()))?;
    if view.get("state").and_then(Value::as_str) == Some("ended") {
        return Err(ErrorBody::new(
            ENDED.code,
            format!("lease {lease} has ended"),
        ));
    }
    Ok(grant)
}

/// The agent's own key: a record or grant is the owner's word, signed by no delegate.
fn own_key<'a>(cx: &SignContext<'a>, tool: &str) -> Result<&'a AgentKey, ErrorBody> {
    cx.key.ok_or_else(|| {
        ErrorBody::new(
            KEY_REQUIRED.code,
            format!(
                "`{tool}` signs with the agent's own key (no delegate may): run `agora mcp \
                 --key FILE` beside the agent"
            ),
        )
    })
}

/// `publish_service`: the record of a port of the agent's lease (its capability and
/// endpoints from the provider-signed grant), or its withdrawal, signed with the agent's
/// own key.
pub fn publish_service(cx: SignContext<'_>) -> BoxFuture<'_, Result<HttpCall, ErrorBody>> {
    Box::pin(async move {
        let a: PublishServiceToolInput = args(cx.args)?;
        let key = own_key(&cx, "publish_service")?;
        let grant = owned_lease(cx.node, &a.lease, key.identity.agora_id()).await?;
        let g = grant.body();
        services::check_ports(g, &[a.port]).map_err(|e| service_error(&e))?;
        let now = crate::clock::now();
        let body = if a.withdraw {
            let w = services::withdrawal(&key.identity, g.lease, a.port, now)
                .map_err(|e| service_error(&e))?;
            json!({ "withdrawal": b64(&w) })
        } else {
            let (Some(name), Some(kind)) = (a.name, a.kind) else {
                return Err(ErrorBody::new(
                    BAD_ARGUMENTS.code,
                    "`name` and `kind` are needed to publish (not to withdraw)",
                ));
            };
            let what = Publication {
                port: a.port,
                name,
                kind,
                description: a.description.unwrap_or_default(),
                ttl: a.ttl_secs.map(std::time::Duration::from_secs),
            };
            let record =
                services::record(&key.identity, g, &what, now).map_err(|e| service_error(&e))?;
            json!({ "record": b64(&record) })
        };
        Ok(HttpCall {
            method: Method::Post,
            path: "/v1/services".into(),
            body: json_body(&body),
        })
    })
}

/// `revoke_grant`: the signed `RevokeGrant` operation for the lease's provider.
pub fn revoke_grant(cx: SignContext<'_>) -> BoxFuture<'_, Result<HttpCall, ErrorBody>> {
    Box::pin(async move {
        let a: RevokeGrantToolInput = args(cx.args)?;
        let grant: agora_protocol::service::GrantId = a.grant.parse().map_err(|_| {
            ErrorBody::new(
                BAD_ARGUMENTS.code,
                format!("{:?} is not a grant id (32 hex digits)", a.grant),
            )
        })?;
        let (lease, provider) = lease_and_provider(&cx, &a.id).await?;
        let op = op_call(&cx, lease, provider, Op::RevokeGrant { grant })?;
        Ok(HttpCall {
            method: Method::Delete,
            path: format!("/v1/leases/{lease}/grants/{grant}"),
            body: json_body(&json!({ "op": op })),
        })
    })
}

/// After `extend` beside the agent: the agent's published services on the lease,
/// re-signed with the capability the extension re-signed and posted again
/// (`republished`: each as listed, or why not), so grantees' tunnels outlive the old
/// expiry. Nothing when the lease has none.
pub fn republish_services(cx: AfterContext<'_>) -> BoxFuture<'_, Option<(&'static str, Value)>> {
    Box::pin(async move {
        // Service records are the owner's word: signed with the agent's own key only.
        let key = cx.key?;
        let me = key.identity.agora_id();
        let view = cx.answer.get("lease")?;
        let lease: LeaseId = view.get("lease")?.as_str()?.parse().ok()?;
        let text = view.get("grant")?.as_str()?;
        let grant = crate::tunnel::forward::verify_grant(text, &lease, &me).ok()?;
        let reply = cx
            .node
            .get(&format!("/v1/services?lease={lease}&owner={me}"))
            .await
            .ok()?;
        let listed: Value = serde_json::from_slice(&reply.body).ok()?;
        let records: Vec<agora_protocol::Signed<agora_protocol::service::ServiceRecord>> = listed
            .get("services")?
            .as_array()?
            .iter()
            .filter_map(|s| s.get("signed")?.as_str())
            .filter_map(|t| URL_SAFE_NO_PAD.decode(t.as_bytes()).ok())
            .filter_map(|b| agora_protocol::Signed::decode(&b, &Ed25519).ok())
            .collect();
        let fresh =
            services::refreshed(&key.identity, grant.body(), &records, crate::clock::now()).ok()?;
        if fresh.is_empty() {
            return None;
        }
        let mut done = Vec::new();
        for r in fresh {
            let body = json!({ "record": b64(&r) }).to_string().into_bytes();
            let outcome = match cx.node.post("/v1/services", body).await {
                Ok(reply) if reply.status == 200 => serde_json::from_slice::<Value>(&reply.body)
                    .ok()
                    .and_then(|v| v.get("service").cloned())
                    .unwrap_or(Value::Null),
                Ok(reply) => json!({
                    "port": r.body().port,
                    "error": serde_json::to_value(answer_error(&reply, "republishing")).unwrap_or(Value::Null),
                }),
                Err(e) => {
                    json!({ "port": r.body().port, "error": { "code": NODE_UNREACHABLE.code, "message": e } })
                }
            };
            done.push(outcome);
        }
        Some(("republished", Value::Array(done)))
    })
}
