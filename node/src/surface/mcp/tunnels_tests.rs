//! The tunnel tools against a fake node (answering the lease's tunnel) and a fake provider
//! endpoint (real QUIC and TLS with the provider's key; it echoes each stream, prefixed by
//! the port the header asked for).

use std::sync::Mutex;
use std::time::Duration;

use agora_attest::Identity;
use agora_protocol::AgoraId;
use agora_protocol::lease_rpc::LeaseState;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::super::{AgentKey, Delegate, Server};
use super::*;
use crate::http::leases::LeaseView;
use crate::lease::gateway::contact::fixtures::signed_grant;
use crate::tunnel::wire::{self, Answer};

/// Answers every call with the same reply (relay requests with `relay`, if set), recording
/// the paths.
struct Node {
    reply: HttpReply,
    relay: Option<HttpReply>,
    paths: Mutex<Vec<String>>,
}

impl Backend for Node {
    async fn send(&self, call: HttpCall, _: Option<SocketAddr>) -> Result<HttpReply, String> {
        let relay = call.path.ends_with("/relay");
        self.paths
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(call.path);
        Ok(match (&self.relay, relay) {
            (Some(r), true) => r.clone(),
            _ => self.reply.clone(),
        })
    }
}

fn json_reply(status: u16, body: &Value) -> HttpReply {
    HttpReply {
        status,
        content_type: "application/json".into(),
        body: body.to_string().into_bytes(),
    }
}

fn node_answering(status: u16, body: &Value) -> Node {
    Node {
        reply: json_reply(status, body),
        relay: None,
        paths: Mutex::new(Vec::new()),
    }
}

/// A provider endpoint on loopback: accepts any client key, answers every stream's header
/// with `Accepted`, then writes `PORT:` and echoes the stream.
fn provider_endpoint(identity: &Identity) -> (SocketAddr, quinn::Endpoint) {
    let crypto = crate::tunnel::tls::server_crypto(identity).unwrap_or_else(|e| panic!("{e}"));
    let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let endpoint = quinn::Endpoint::server(config, SocketAddr::from(([127, 0, 0, 1], 0)))
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = endpoint.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let accepting = endpoint.clone();
    tokio::spawn(async move {
        while let Some(incoming) = accepting.accept().await {
            let Ok(conn) = incoming.await else { continue };
            tokio::spawn(async move {
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    tokio::spawn(async move {
                        let Ok(header) = wire::read_header(&mut recv).await else {
                            return;
                        };
                        let _ = wire::write_answer(&mut send, &Answer::Accepted).await;
                        let _ = send.write_all(format!("{}:", header.port).as_bytes()).await;
                        let _ = tokio::io::copy(&mut recv, &mut send).await;
                        let _ = send.finish();
                    });
                }
            });
        }
    });
    (addr, endpoint)
}

/// The tunnel view a node answers for a lease of `agent` at `provider` (endpoint `at`).
fn tunnel_json(provider: &Identity, agent: AgoraId, at: SocketAddr) -> Value {
    let now = crate::clock::now();
    let hour = (now, now.saturating_add(Duration::from_secs(3600)));
    let grant = signed_grant(provider, agent, vec![8080], hour, vec![at.to_string()]);
    let view = LeaseView::new(&grant, &LeaseState::Running, None, now);
    let tunnel = TunnelView::of(&view, None).unwrap_or_else(|e| panic!("{e:?}"));
    serde_json::to_value(tunnel).unwrap_or_else(|e| panic!("{e}"))
}

/// Calls tool `name` with `arguments` (a JSON object) as a local client without a token.
async fn call(server: &Server<Node>, name: &str, arguments: Value) -> CallToolResult {
    let args = arguments.as_object().cloned().unwrap_or_default();
    server.call(name, args, None, None).await
}

/// The paths the fake node was asked for.
fn asked(server: &Server<Node>) -> Vec<String> {
    server
        .backend
        .paths
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
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

fn names(tools: &[Tool]) -> Vec<String> {
    tools.iter().map(|t| t.name.to_string()).collect()
}

#[tokio::test]
async fn beside_the_agent_open_tunnel_forwards_a_local_port_until_closed() {
    let provider = Identity::generate(&mut rand::rng());
    let agent = Identity::generate(&mut rand::rng());
    let (at, _endpoint) = provider_endpoint(&provider);
    let view = tunnel_json(&provider, agent.agora_id(), at);
    let lease = view["lease"].as_str().unwrap_or_default().to_owned();
    let server = Server::local(
        node_answering(200, &view),
        Some(AgentKey::new(agent, "/nonexistent".into(), None)),
    );
    assert_eq!(
        names(&tools(&server.place)),
        ["open_tunnel", "close_tunnel", "list_tunnels"]
    );

    let opened = ok(call(
        &server,
        "open_tunnel",
        json!({ "lease": lease, "port": 8080 }),
    )
    .await);
    let local = opened["local"].as_str().unwrap_or_default().to_owned();
    assert!(local.starts_with("127.0.0.1:"), "{opened}");
    assert_eq!(opened["provider"], provider.agora_id().to_string());
    assert_eq!(opened["open"], 1);
    assert_eq!(
        asked(&server),
        [format!("/v1/leases/{lease}/tunnel?port=8080")]
    );

    // Two connections at once, each its own stream to the workload port.
    let mut echoes = Vec::new();
    for text in ["hello", "world"] {
        let local = local.clone();
        echoes.push(tokio::spawn(async move {
            let mut tcp = tokio::net::TcpStream::connect(&local).await?;
            tcp.write_all(text.as_bytes()).await?;
            tcp.shutdown().await?;
            let mut back = String::new();
            tcp.read_to_string(&mut back).await?;
            std::io::Result::Ok(back)
        }));
    }
    for (echo, text) in echoes.into_iter().zip(["hello", "world"]) {
        let back = tokio::time::timeout(Duration::from_secs(10), echo)
            .await
            .unwrap_or_else(|_| panic!("no echo in time"))
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, format!("8080:{text}"));
    }

    let listed = ok(call(&server, "list_tunnels", json!({})).await);
    assert_eq!(listed["count"], 1);
    assert_eq!(listed["tunnels"][0]["local"], local.as_str());
    assert_eq!(listed["tunnels"][0]["port"], 8080);

    let closed = ok(call(&server, "close_tunnel", json!({ "local": local })).await);
    assert_eq!(closed["closed"]["local"], local.as_str());
    let listed = ok(call(&server, "list_tunnels", json!({})).await);
    assert_eq!(listed["count"], 0);
    assert_eq!(
        code(&call(&server, "close_tunnel", json!({ "local": local })).await),
        "unknown_tunnel"
    );
    // The listener is gone (its accept task is cancelled at its next poll).
    let mut refused = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(&local).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "{local} still accepts after close_tunnel");
}

#[tokio::test]
async fn open_tunnel_falls_back_to_the_nodes_relay_when_the_provider_does_not_answer() {
    let provider = Identity::generate(&mut rand::rng());
    let agent = Identity::generate(&mut rand::rng());
    let (at, _endpoint) = provider_endpoint(&provider);
    // The grant names an endpoint where nothing answers; the node's relay reaches `at`.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .unwrap_or_else(|e| panic!("{e}"));
    let view = tunnel_json(&provider, agent.agora_id(), silent);
    let lease = view["lease"].as_str().unwrap_or_default().to_owned();
    let mut node = node_answering(200, &view);
    node.relay = Some(json_reply(201, &json!({ "relay": at.to_string() })));
    let server = Server::local(
        node,
        Some(AgentKey::new(agent, "/nonexistent".into(), None)),
    );
    let opened = ok(call(
        &server,
        "open_tunnel",
        json!({ "lease": lease, "port": 8080 }),
    )
    .await);
    assert_eq!(opened["relay"], at.to_string(), "{opened}");
    assert_eq!(
        asked(&server),
        [
            format!("/v1/leases/{lease}/tunnel?port=8080"),
            format!("/v1/leases/{lease}/relay")
        ]
    );
    let local = opened["local"].as_str().unwrap_or_default().to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&local)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tcp.write_all(b"via relay")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tcp.shutdown().await.unwrap_or_else(|e| panic!("{e}"));
    let mut back = String::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_string(&mut back))
        .await
        .unwrap_or_else(|_| panic!("no echo in time"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, "8080:via relay");
}

#[tokio::test]
async fn open_tunnel_checks_the_grant_and_port_itself() {
    let provider = Identity::generate(&mut rand::rng());
    let agent = Identity::generate(&mut rand::rng());
    let at = SocketAddr::from(([127, 0, 0, 1], 9));
    let view = tunnel_json(&provider, agent.agora_id(), at);
    let lease = view["lease"].as_str().unwrap_or_default().to_owned();
    let key = |identity| Some(AgentKey::new(identity, "/nonexistent".into(), None));

    // A port the capability does not open: refused here, whatever the node says.
    let server = Server::local(node_answering(200, &view), key(agent));
    let r = call(
        &server,
        "open_tunnel",
        json!({ "lease": lease, "port": 22 }),
    )
    .await;
    assert_eq!(code(&r), "port_not_allowed");
    // Someone else's lease: the grant is not this agent's.
    let stranger = Identity::generate(&mut rand::rng());
    let server = Server::local(node_answering(200, &view), key(stranger));
    let r = call(
        &server,
        "open_tunnel",
        json!({ "lease": lease, "port": 8080 }),
    )
    .await;
    assert_eq!(code(&r), "bad_grant");
    // The node's errors are the tool's; bad arguments never reach it.
    let gone = json!({ "error": { "code": "ended", "message": "lease ended" } });
    let server = Server::local(
        node_answering(409, &gone),
        key(Identity::generate(&mut rand::rng())),
    );
    let r = call(
        &server,
        "open_tunnel",
        json!({ "lease": lease, "port": 8080 }),
    )
    .await;
    assert_eq!(code(&r), "ended");
    let r = call(
        &server,
        "open_tunnel",
        json!({ "lease": lease, "port": 8080, "bind": "not-an-ip" }),
    )
    .await;
    assert_eq!(code(&r), "bad_arguments");
    assert_eq!(asked(&server).len(), 1);
    // No key: nothing listed, and calling says why.
    let keyless = Server::local(node_answering(200, &view), None);
    assert!(tools(&keyless.place).is_empty());
    let r = call(
        &keyless,
        "open_tunnel",
        json!({ "lease": lease, "port": 8080 }),
    )
    .await;
    assert_eq!(code(&r), "key_required");
}

#[tokio::test]
async fn on_a_node_open_tunnel_answers_how_to_open_it_beside_the_agent() {
    let provider = Identity::generate(&mut rand::rng());
    let agent = Identity::generate(&mut rand::rng()).agora_id();
    let at = SocketAddr::from(([192, 0, 2, 1], 7001));
    let view = tunnel_json(&provider, agent, at);
    let lease = view["lease"].as_str().unwrap_or_default().to_owned();
    let node_key = Arc::new(Identity::generate(&mut rand::rng()));
    let server = Server::on_node(
        node_answering(200, &view),
        Delegate {
            tokens: Arc::new(crate::agent::Tokens::new(node_key.agora_id())),
            identity: node_key,
        },
    );
    let tools = tools(&server.place);
    assert_eq!(names(&tools), ["open_tunnel"]);
    let description = tools
        .first()
        .and_then(|t| t.description.clone())
        .unwrap_or_default();
    assert!(
        description.contains("cannot give you a local port"),
        "{description}"
    );

    // No token needed: the capability works only for the agent's own key.
    let r = ok(call(
        &server,
        "open_tunnel",
        json!({ "lease": lease, "port": 8080 }),
    )
    .await);
    assert_eq!(
        r["command"],
        format!("agora tunnel {lease} -L 127.0.0.1:0:8080")
    );
    assert_eq!(r["provider"], provider.agora_id().to_string());
    assert_eq!(r["endpoints"][0], "192.0.2.1:7001");
    assert_eq!(r["alpn"], "agora-tunnel/1");
    assert!(r["capability"].is_string() && r["grant"].is_string());
    assert!(
        r["note"]
            .as_str()
            .unwrap_or_default()
            .contains("beside you")
    );
    let r = ok(call(
        &server,
        "open_tunnel",
        json!({ "lease": lease, "port": 8080, "bind": "[::1]:9000" }),
    )
    .await);
    assert_eq!(
        r["command"],
        format!("agora tunnel {lease} -L [::1]:9000:8080")
    );
    // The session tools are not served on a node.
    let r = call(&server, "list_tunnels", json!({})).await;
    assert_eq!(code(&r), "bad_arguments");
}
