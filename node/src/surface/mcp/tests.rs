use std::sync::Mutex;

use serde_json::json;

use super::*;
use crate::surface::types::{GetOfferInput, ListOffersInput};
use crate::surface::{Group, find};

/// Records calls and answers each with the next canned reply.
#[derive(Default)]
struct Fake {
    calls: Mutex<Vec<HttpCall>>,
    reply: Mutex<Option<Result<HttpReply, String>>>,
}

impl Fake {
    fn answering(status: u16, content_type: &str, body: &str) -> Self {
        let fake = Self::default();
        *fake.reply.lock().unwrap() = Some(Ok(HttpReply {
            status,
            content_type: content_type.into(),
            body: body.as_bytes().to_vec(),
        }));
        fake
    }
}

impl Backend for Fake {
    async fn send(
        &self,
        call: HttpCall,
        _origin: Option<std::net::SocketAddr>,
    ) -> Result<HttpReply, String> {
        self.calls.lock().unwrap().push(call);
        self.reply
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_else(|| Err("connection refused".into()))
    }
}

fn args(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

fn code(r: &CallToolResult) -> String {
    assert_eq!(r.is_error, Some(true), "{r:?}");
    r.structured_content.as_ref().unwrap()["error"]["code"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn sign_for_test(
    cx: crate::surface::SignContext<'_>,
) -> futures::future::BoxFuture<'_, Result<HttpCall, ErrorBody>> {
    Box::pin(async move {
        // A sign function may read from the node first (here: anything, to show it can).
        let seen = cx.node.get("/v1/node").await.map(|r| r.status).unwrap_or(0);
        let mut body = cx.args.clone();
        body.insert("agent".into(), cx.author.agent_id().to_string().into());
        body.insert("signer".into(), cx.author.signer().to_string().into());
        body.insert("read_first".into(), seen.into());
        Ok(HttpCall {
            method: crate::surface::Method::Post,
            path: "/v1/test".into(),
            body: Some(serde_json::to_vec(&body).unwrap()),
        })
    })
}

/// An operation `name` that acts for an agent, signed by [`sign_for_test`].
fn agent_op(name: &'static str) -> Operation {
    Operation::post(name, "/v1/test", Group::Leases)
        .summary("Act for the agent")
        .input::<ListOffersInput>()
        .output::<crate::surface::types::Health>()
        .agent_signed(sign_for_test)
}

/// The real registry plus one operation that acts for an agent.
fn ops_with_agent_tool() -> &'static [Operation] {
    let mut ops = operations().to_vec();
    ops.push(agent_op("act"));
    Box::leak(ops.into_boxed_slice())
}

fn delegate() -> Delegate {
    let identity = Arc::new(agora_attest::Identity::generate(&mut rand::rng()));
    Delegate {
        tokens: Arc::new(crate::agent::Tokens::new(identity.agora_id())),
        identity,
    }
}

fn key() -> AgentKey {
    let mut rng = rand::rng();
    AgentKey::new(
        agora_attest::Identity::generate(&mut rng),
        "/nonexistent".into(),
        None,
    )
}

#[test]
fn tools_are_the_registry_operations_with_object_schemas() {
    let server = Server::local(Fake::default(), None);
    let names: Vec<&str> = server.tool_operations().map(|op| op.name).collect();
    assert_eq!(
        names,
        [
            "node_info",
            "list_peers",
            "ledger_state",
            "get_ledger_entry",
            "list_offers",
            "get_offer",
            "get_provider",
            "list_services",
            "get_account",
            "get_quota_account",
            "submit_quota_op",
            "quote",
            "get_lease",
            "get_tunnel",
            "list_approvals",
            "get_approval",
            "approve"
        ]
    );
    // Tools that act for the agent are tools beside it once they can sign there; their
    // arguments are what the agent wants (the signed operation is built for it).
    let keyed = Server::local(Fake::default(), Some(key()));
    let signed: Vec<&str> = keyed
        .tool_operations()
        .filter(|op| op.sign.is_some())
        .map(|op| op.name)
        .collect();
    assert_eq!(
        signed,
        [
            "publish_service",
            "signup",
            "run",
            "list_leases",
            "extend",
            "stop",
            "acknowledge",
            "revoke_grant",
            "exec",
            "logs"
        ]
    );
    let run = keyed.tool(find("run").unwrap());
    assert!(run.input_schema["properties"]["command"].is_object());
    assert!(run.input_schema["properties"].get("request").is_none());
    assert!(keyed.tool_operations().all(|op| op.name != "put_files"));
    let on_node = Server::on_node(Fake::default(), delegate());
    assert!(on_node.tool_operations().any(|op| op.name == "run"));
    assert!(on_node.tool_operations().all(|op| op.name != "signup"));
    let tool = server.tool(find("list_offers").unwrap());
    assert_eq!(tool.name, "list_offers");
    assert_eq!(tool.input_schema["type"], "object");
    assert!(tool.input_schema["properties"]["runtime"].is_object());
    assert!(tool.input_schema["$defs"]["Isolation"].is_object());
    let out = tool.output_schema.as_ref().unwrap();
    assert_eq!(out["type"], "object");
    assert!(out["$defs"]["OfferView"].is_object());
    assert_eq!(
        tool.annotations.as_ref().unwrap().read_only_hint,
        Some(true)
    );
    // No arguments is still an object schema.
    let info = server.tool(find("node_info").unwrap());
    assert_eq!(info.input_schema["type"], "object");
}

#[tokio::test]
async fn a_read_only_tool_calls_the_api_and_returns_its_json() {
    let server = Server::local(
        Fake::answering(
            200,
            "application/json",
            r#"{"count":0,"offers":[],"at":"x"}"#,
        ),
        None,
    );
    let r = server
        .call(
            "list_offers",
            args(json!({"runtime": "sandbox", "limit": 5})),
            None,
            None,
        )
        .await;
    assert_eq!(r.is_error, Some(false));
    assert_eq!(r.structured_content.unwrap()["count"], 0);
    let calls = server.backend.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].path, "/v1/offers?limit=5&runtime=sandbox");
}

#[tokio::test]
async fn api_errors_become_tool_errors_with_their_code() {
    let server = Server::local(
        Fake::answering(
            404,
            "application/json",
            r#"{"error":{"code":"no_offer","message":"none"}}"#,
        ),
        None,
    );
    let id = agora_attest::Identity::generate(&mut rand::rng()).agora_id();
    let r = server
        .call(
            "get_offer",
            args(json!({ "provider": id.to_string() })),
            None,
            None,
        )
        .await;
    assert_eq!(code(&r), "no_offer");
    // Transport failures and bad arguments have their own codes; bad arguments never reach
    // the node.
    let down = Server::local(Fake::default(), None);
    assert_eq!(
        code(&down.call("node_info", Map::new(), None, None).await),
        "node_unreachable"
    );
    assert_eq!(
        code(
            &down
                .call("list_offers", args(json!({"runtime": "vm"})), None, None)
                .await
        ),
        "bad_arguments"
    );
    assert_eq!(
        code(
            &down
                .call("list_offers", args(json!({"colour": "blue"})), None, None)
                .await
        ),
        "bad_arguments"
    );
    assert_eq!(
        code(&down.call("no_such_tool", Map::new(), None, None).await),
        "bad_arguments"
    );
    assert_eq!(down.backend.calls.lock().unwrap().len(), 1);
    let _ = GetOfferInput { provider: id };
}

#[tokio::test]
async fn agent_tools_need_a_key_beside_the_agent_and_a_delegation_on_a_node() {
    let ops = ops_with_agent_tool();
    // Without a key the tool is not listed, and calling it says why.
    let keyless = Server::local(Fake::default(), None).with_operations(ops);
    assert!(keyless.tool_operations().all(|op| op.name != "act"));
    assert_eq!(
        code(&keyless.call("act", Map::new(), None, None).await),
        "key_required"
    );
    // With a key it is listed and signs locally.
    let k = key();
    let id = k.identity.agora_id().to_string();
    let keyed = Server::local(
        Fake::answering(200, "application/json", r#"{"status":"ok"}"#),
        Some(k),
    )
    .with_operations(ops);
    assert!(keyed.tool_operations().any(|op| op.name == "act"));
    let r = keyed
        .call("act", args(json!({"limit": 1})), None, None)
        .await;
    assert_eq!(r.is_error, Some(false), "{r:?}");
    let calls = keyed.backend.calls.lock().unwrap().clone();
    let body: Value = serde_json::from_slice(calls[1].body.as_deref().unwrap()).unwrap();
    assert_eq!(body["agent"], id);
    assert_eq!(body["read_first"], 200);
    assert_eq!(calls.len(), 2, "one read, then the signed call");
    assert_eq!(calls[0].path, "/v1/node");
    // On a node, a tool a delegation can scope is listed, and without a token it answers
    // delegation_required; one no delegation names (here `act`) is not listed at all.
    let node_ops: &'static [Operation] =
        Box::leak(vec![agent_op("stop"), agent_op("act")].into_boxed_slice());
    let node = Server::on_node(Fake::default(), delegate()).with_operations(node_ops);
    let names: Vec<&str> = node.tool_operations().map(|op| op.name).collect();
    assert_eq!(names, ["stop"]);
    assert!(
        node.tool(&node_ops[0])
            .description
            .unwrap()
            .contains("delegation")
    );
    assert_eq!(
        code(&node.call("stop", Map::new(), None, None).await),
        "delegation_required"
    );
    assert!(node.backend.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn on_a_node_agent_tools_act_only_under_a_token_and_within_its_delegation() {
    use agora_protocol::lease::{Delegation, OpKind};
    let ops: &'static [Operation] = Box::leak(vec![agent_op("exec")].into_boxed_slice());
    let d = delegate();
    let node_id = d.identity.agora_id();
    let node = Server::on_node(
        Fake::answering(200, "application/json", r#"{"status":"ok"}"#),
        d.clone(),
    )
    .with_operations(ops);
    let agent = agora_attest::Identity::generate(&mut rand::rng());
    let now = crate::clock::now();
    let token_for = |ops: Vec<OpKind>| {
        let delegation = agora_protocol::Signed::sign(
            Delegation {
                agent: agent.agora_id(),
                delegate: node_id,
                ops,
                spend_cap_credits: 5,
                issued_at: now.saturating_sub(std::time::Duration::from_secs(1)),
                expires_at: now.saturating_add(std::time::Duration::from_secs(600)),
            },
            &agent,
        )
        .unwrap();
        let signup = crate::agent::tokens::signup_record(&agent, node_id);
        d.tokens
            .issue(delegation, signup, now, &mut rand::rng())
            .unwrap()
            .token
    };
    assert_eq!(
        code(
            &node
                .call("exec", Map::new(), None, Some("agt_unknown"))
                .await
        ),
        "bad_token"
    );
    let logs_only = token_for(vec![OpKind::Logs]);
    assert_eq!(
        code(&node.call("exec", Map::new(), None, Some(&logs_only)).await),
        "token_scope"
    );
    assert!(node.backend.calls.lock().unwrap().is_empty());
    // Under a token that allows it, the node signs as the delegate, for the agent.
    let token = token_for(vec![OpKind::Exec]);
    let r = node
        .call("exec", args(json!({"limit": 1})), None, Some(&token))
        .await;
    assert_eq!(r.is_error, Some(false), "{r:?}");
    let calls = node.backend.calls.lock().unwrap().clone();
    let body: Value = serde_json::from_slice(calls[1].body.as_deref().unwrap()).unwrap();
    assert_eq!(body["agent"], agent.agora_id().to_string());
    assert_eq!(body["signer"], node_id.to_string());
}

/// The read proof in a `list_leases` call's query.
fn listed_proof(call: &HttpCall) -> agora_protocol::Signed<agora_protocol::read_proof::ReadProof> {
    use base64::Engine as _;
    let query = call.path.strip_prefix("/v1/leases?").unwrap();
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap();
    let proof = &pairs.iter().find(|(k, _)| k == "proof").unwrap().1;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(proof)
        .unwrap();
    agora_protocol::Signed::decode(&bytes, &agora_protocol::Ed25519).unwrap()
}

#[tokio::test]
async fn list_leases_signs_a_read_proof_for_the_node_beside_the_agent_and_on_a_node() {
    use agora_protocol::lease::{Delegation, OpKind};
    let node_id = agora_attest::Identity::generate(&mut rand::rng()).agora_id();
    let answer = format!(r#"{{"id":"{node_id}","count":0,"leases":[]}}"#);
    // Beside the agent: its own proof, for the node it talks to.
    let k = key();
    let agent = k.identity.agora_id();
    let keyed = Server::local(Fake::answering(200, "application/json", &answer), Some(k));
    let r = keyed
        .call("list_leases", args(json!({"limit": 7})), None, None)
        .await;
    assert_eq!(r.is_error, Some(false), "{r:?}");
    let calls = keyed.backend.calls.lock().unwrap().clone();
    assert_eq!(calls[0].path, "/v1/node");
    assert!(
        calls[1]
            .path
            .starts_with(&format!("/v1/leases?agent={agent}&proof="))
    );
    assert!(calls[1].path.ends_with("&limit=7"), "{}", calls[1].path);
    let proof = listed_proof(&calls[1]);
    assert_eq!(proof.signer(), agent);
    assert_eq!(proof.body().node, node_id);
    assert!(proof.body().delegation.is_none());
    // The agent is the key's: an `agent` argument is not the tool's.
    assert_eq!(
        code(
            &keyed
                .call("list_leases", args(json!({"agent": node_id})), None, None)
                .await
        ),
        "bad_arguments"
    );

    // On a node, under the agent's token with `status`: the node signs as its delegate.
    let d = delegate();
    let me = d.identity.agora_id();
    let answer = format!(r#"{{"id":"{me}","count":0,"leases":[]}}"#);
    let node = Server::on_node(Fake::answering(200, "application/json", &answer), d.clone());
    let owner = agora_attest::Identity::generate(&mut rand::rng());
    let now = crate::clock::now();
    let token_for = |ops: Vec<OpKind>| {
        let delegation = agora_protocol::Signed::sign(
            Delegation {
                agent: owner.agora_id(),
                delegate: me,
                ops,
                spend_cap_credits: 0,
                issued_at: now.saturating_sub(std::time::Duration::from_secs(1)),
                expires_at: now.saturating_add(std::time::Duration::from_secs(600)),
            },
            &owner,
        )
        .unwrap();
        let signup = crate::agent::tokens::signup_record(&owner, me);
        d.tokens
            .issue(delegation, signup, now, &mut rand::rng())
            .unwrap()
            .token
    };
    assert!(node.tool_operations().any(|op| op.name == "list_leases"));
    let exec_only = token_for(vec![OpKind::Exec]);
    assert_eq!(
        code(
            &node
                .call("list_leases", Map::new(), None, Some(&exec_only))
                .await
        ),
        "token_scope"
    );
    let token = token_for(vec![OpKind::Status]);
    let r = node
        .call("list_leases", Map::new(), None, Some(&token))
        .await;
    assert_eq!(r.is_error, Some(false), "{r:?}");
    let calls = node.backend.calls.lock().unwrap().clone();
    let proof = listed_proof(calls.last().unwrap());
    assert_eq!(proof.body().agent, owner.agora_id());
    assert_eq!(proof.body().node, me);
    assert_eq!(proof.signer(), me, "the node signs as the delegate");
    assert!(proof.body().check(&me, &owner.agora_id(), now).is_ok());
}

#[test]
fn agent_key_loads_with_its_signup_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.key");
    let identity = agora_attest::Identity::generate(&mut rand::rng());
    agora_attest::keyfile::save(&path, &identity).unwrap();
    let k = AgentKey::load(&path, false).unwrap();
    assert_eq!(k.identity.agora_id(), identity.agora_id());
    assert_eq!(k.signup(), None);
    std::fs::write(dir.path().join("agent.key.signup"), "AQ-record\n").unwrap();
    assert_eq!(
        AgentKey::load(&path, false).unwrap().signup().as_deref(),
        Some("AQ-record\n")
    );
    // A new record is saved beside the key and used at once.
    k.save_signup("BB-record").unwrap();
    assert_eq!(k.signup().as_deref(), Some("BB-record"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("agent.key.signup")).unwrap(),
        "BB-record\n"
    );
    // The key never shows in Debug output; a missing file is a clear error, unless asked
    // to create one.
    assert!(!format!("{k:?}").contains("secret"));
    let err = AgentKey::load(&dir.path().join("none.key"), false).unwrap_err();
    assert!(err.contains("none.key"), "{err}");
    let fresh = AgentKey::load(&dir.path().join("new.key"), true).unwrap();
    assert_eq!(fresh.signup(), None);
    assert!(dir.path().join("new.key").exists());
}
