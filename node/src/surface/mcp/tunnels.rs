//! The tunnel tools, served beside the registry's operations (they are not HTTP routes):
//! `open_tunnel`, `close_tunnel` and `list_tunnels`.
//!
//! - Beside the agent (`agora mcp --key FILE`), `open_tunnel` reads the lease's tunnel from
//!   the node (`GET /v1/leases/{id}/tunnel`), checks the provider-signed grant itself (the
//!   key it pins comes from there, never from the node's word), dials the provider and
//!   listens on a local TCP port whose every connection is forwarded to the workload port:
//!   [`crate::tunnel::forward`], the code `agora tunnel` runs. Tunnels stay open for the MCP
//!   session (at most [`MAX_TUNNELS`]), until `close_tunnel`; `list_tunnels` lists them.
//! - On a node (`/mcp`) there is no local port to give a remote agent: `open_tunnel` answers
//!   the tunnel's details and the `agora tunnel` command to run beside the agent; the other
//!   two are not served.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use agora_protocol::lease::LeaseId;
use rmcp::model::{CallToolResult, Tool, ToolAnnotations};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{AgentKey, Backend, HttpCall, HttpReply, Place, failure, root};
use crate::http::tunnel::{TunnelView, command};
use crate::surface::Method;
use crate::surface::errors::{
    BAD_ARGUMENTS, BAD_GRANT, BAD_REPLY, ErrorBody, KEY_REQUIRED, NODE_UNREACHABLE,
    PORT_NOT_ALLOWED, TOO_MANY_TUNNELS, TUNNEL_FAILED, UNKNOWN_TUNNEL,
};
use crate::surface::types::NoInput;
use crate::tunnel::Dialer;
use crate::tunnel::forward::{self, GrantError, Listener};

/// Opens a tunnel (beside the agent) or says how (on a node).
pub const OPEN: &str = "open_tunnel";
/// Closes one of the session's tunnels.
pub const CLOSE: &str = "close_tunnel";
/// Lists the session's tunnels.
pub const LIST: &str = "list_tunnels";

/// Most tunnels one MCP session keeps open.
pub const MAX_TUNNELS: usize = 32;

/// `open_tunnel` arguments.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenTunnelInput {
    /// The lease id: 64 hex digits.
    #[schemars(pattern(r"^[0-9a-fA-F]{64}$"))]
    pub lease: String,
    /// The workload port to reach (one of the lease's `ports`).
    #[schemars(range(min = 1))]
    pub port: u16,
    /// Where to listen locally: `IP`, `IP:PORT` or `PORT` (default `127.0.0.1` on a free
    /// port).
    #[serde(default)]
    pub bind: Option<String>,
}

/// `close_tunnel` arguments.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseTunnelInput {
    /// The tunnel's local address, as `open_tunnel` answered it (`127.0.0.1:PORT`).
    pub local: String,
}

/// One open tunnel, as the tools show it.
#[derive(Debug, Clone, Serialize)]
struct Shown {
    /// Connect here.
    local: String,
    lease: LeaseId,
    /// The workload port it reaches.
    port: u16,
    /// The provider whose key the tunnel pins.
    provider: String,
    /// When the lease (and so the tunnel) expires, unless extended (RFC 3339).
    expires_at: String,
}

struct Open {
    shown: Shown,
    listener: Listener,
    dialer: Arc<Dialer>,
}

/// The tunnels one MCP session opened beside the agent.
#[derive(Default)]
pub struct Tunnels(Mutex<Vec<Open>>);

impl std::fmt::Debug for Tunnels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnels")
            .field("open", &self.with(|t| t.len()))
            .finish()
    }
}

impl Tunnels {
    fn with<R>(&self, f: impl FnOnce(&mut Vec<Open>) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn shown(&self) -> Vec<Shown> {
        self.with(|t| t.iter().map(|o| o.shown.clone()).collect())
    }
}

/// The tunnel tools served at `place`.
pub(super) fn tools(place: &Place) -> Vec<Tool> {
    let open_world = |read_only: bool| {
        ToolAnnotations::with_title("Open a tunnel to a lease's workload port")
            .read_only(read_only)
            .destructive(false)
            .idempotent(read_only)
            .open_world(true)
    };
    match place {
        Place::Local(None) => Vec::new(),
        Place::Local(Some(_)) => vec![
            Tool::new(
                OPEN,
                "Open a tunnel to a lease's workload port: a local TCP listener (default \
                 127.0.0.1 on a free port) whose every connection reaches `port` inside the \
                 workload over the provider's QUIC tunnel, TLS end to end with the agent's own \
                 key and the provider's key pinned from its signed grant (checked here, not \
                 taken on the node's word). Answers `local`, the address to connect to (for a \
                 web server: http://LOCAL/). A provider that does not answer within 3 s is \
                 reached through the node's relay (`relay` in the answer; still end to end). \
                 It stays open for this MCP session, until `close_tunnel` or the lease ends; \
                 the same code as `agora tunnel LEASE -L 127.0.0.1:0:PORT`.",
                root(OpenTunnelInput::json_schema),
            )
            .with_title("Open a tunnel to a lease's workload port")
            .with_annotations(open_world(false)),
            Tool::new(
                CLOSE,
                "Close a tunnel this session opened: its local listener stops and its \
                 connections end.",
                root(CloseTunnelInput::json_schema),
            )
            .with_title("Close a tunnel")
            .with_annotations(
                ToolAnnotations::with_title("Close a tunnel")
                    .read_only(false)
                    .destructive(true)
                    .idempotent(false)
                    .open_world(false),
            ),
            Tool::new(
                LIST,
                "The tunnels this session has open: local address, lease, workload port, \
                 provider, expiry.",
                root(NoInput::json_schema),
            )
            .with_title("List open tunnels")
            .with_annotations(
                ToolAnnotations::with_title("List open tunnels")
                    .read_only(true)
                    .open_world(false),
            ),
        ],
        Place::Node(_) => vec![
            Tool::new(
                OPEN,
                "What opening a tunnel to a lease's workload port needs. This endpoint runs on \
                 a node, not beside you, so it cannot give you a local port: it answers the \
                 connection details (`provider`, the key to pin; `endpoints`; `alpn`; the \
                 provider-signed `capability` and `grant`; `ports`; `expires_at`) and \
                 `command`, the `agora tunnel LEASE -L BIND:0:PORT` to run beside you with \
                 your key (it prints the local address to connect to). `agora mcp --key FILE` \
                 run beside you opens the listener itself with this same tool. Needs no token: \
                 the capability works only for the agent's own key.",
                root(OpenTunnelInput::json_schema),
            )
            .with_title("How to open a tunnel to a lease's workload port")
            .with_annotations(open_world(true)),
        ],
    }
}

/// Runs tunnel tool `name` if it is one (`None` otherwise): beside the agent with its key,
/// or on a node, calling `backend` for the client at `origin`.
pub(super) async fn call<B: Backend>(
    place: &Place,
    tunnels: &Tunnels,
    backend: &B,
    name: &str,
    args: &Map<String, Value>,
    origin: Option<SocketAddr>,
) -> Option<CallToolResult> {
    if ![OPEN, CLOSE, LIST].contains(&name) {
        return None;
    }
    let answer = match (place, name) {
        (Place::Local(Some(key)), OPEN) => match parse::<OpenTunnelInput>(name, args) {
            Ok(input) => open(backend, key, tunnels, &input, origin).await,
            Err(e) => Err(e),
        },
        (Place::Local(Some(_)), CLOSE) => match parse::<CloseTunnelInput>(name, args) {
            Ok(input) => close(tunnels, &input).await,
            Err(e) => Err(e),
        },
        (Place::Local(Some(_)), _) => match parse::<NoInput>(name, args) {
            Ok(_) => {
                let shown = tunnels.shown();
                Ok(json!({ "count": shown.len(), "tunnels": shown }))
            }
            Err(e) => Err(e),
        },
        (Place::Local(None), _) => Err(ErrorBody::new(
            KEY_REQUIRED.code,
            format!("`{name}` opens tunnels as the agent: start `agora mcp` with --key FILE"),
        )),
        (Place::Node(_), OPEN) => match parse::<OpenTunnelInput>(name, args) {
            Ok(input) => explain(backend, &input, origin).await,
            Err(e) => Err(e),
        },
        (Place::Node(_), _) => Err(ErrorBody::new(
            BAD_ARGUMENTS.code,
            format!("no tool `{name}` here: a node's /mcp opens no tunnels (see `open_tunnel`)"),
        )),
    };
    Some(match answer {
        Ok(value) => CallToolResult::structured(value),
        Err(body) => failure(&body),
    })
}

fn parse<T: serde::de::DeserializeOwned>(
    name: &str,
    args: &Map<String, Value>,
) -> Result<T, ErrorBody> {
    serde_json::from_value(Value::Object(args.clone()))
        .map_err(|e| ErrorBody::new(BAD_ARGUMENTS.code, format!("`{name}` arguments: {e}")))
}

/// The local address `bind` names: `IP`, `IP:PORT` or `PORT` (default 127.0.0.1:0).
fn local_addr(bind: Option<&str>) -> Result<SocketAddr, ErrorBody> {
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let Some(b) = bind.map(str::trim).filter(|b| !b.is_empty()) else {
        return Ok(SocketAddr::new(localhost, 0));
    };
    if let Ok(a) = b.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = b.trim_start_matches('[').trim_end_matches(']').parse() {
        return Ok(SocketAddr::new(ip, 0));
    }
    b.parse::<u16>()
        .map(|port| SocketAddr::new(localhost, port))
        .map_err(|_| {
            ErrorBody::new(
                BAD_ARGUMENTS.code,
                format!("`bind` {b:?} is not an IP address, IP:PORT or a port"),
            )
        })
}

/// `GET /v1/leases/{id}/tunnel?port=P` at the node: the view, or the node's error.
async fn tunnel_view<B: Backend>(
    backend: &B,
    input: &OpenTunnelInput,
    origin: Option<SocketAddr>,
) -> Result<(LeaseId, Value), ErrorBody> {
    let lease: LeaseId = input.lease.parse().map_err(|_| {
        ErrorBody::new(
            BAD_ARGUMENTS.code,
            format!("{:?} is not a lease id (64 hex digits)", input.lease),
        )
    })?;
    let call = HttpCall {
        method: Method::Get,
        path: format!("/v1/leases/{lease}/tunnel?port={}", input.port),
        body: None,
    };
    let reply = backend
        .send(call, origin)
        .await
        .map_err(|why| ErrorBody::new(NODE_UNREACHABLE.code, why))?;
    json_of(&reply).map(|v| (lease, v))
}

/// A node's JSON answer, or its error as the tool's.
fn json_of(reply: &HttpReply) -> Result<Value, ErrorBody> {
    let value: Value = serde_json::from_slice(&reply.body).map_err(|e| {
        ErrorBody::new(
            BAD_REPLY.code,
            format!("HTTP {}: the answer is not JSON: {e}", reply.status),
        )
    })?;
    if (200..300).contains(&reply.status) {
        return Ok(value);
    }
    Err(
        serde_json::from_value::<ErrorBody>(value.clone()).unwrap_or_else(|_| {
            ErrorBody::new(BAD_REPLY.code, format!("HTTP {}: {value}", reply.status))
        }),
    )
}

/// On a node: the tunnel's details and the command that opens it beside the agent.
async fn explain<B: Backend>(
    backend: &B,
    input: &OpenTunnelInput,
    origin: Option<SocketAddr>,
) -> Result<Value, ErrorBody> {
    let bind = local_addr(input.bind.as_deref())?;
    let (lease, mut view) = tunnel_view(backend, input, origin).await?;
    if let Some(map) = view.as_object_mut() {
        let forward = match bind.ip() {
            IpAddr::V4(ip) => format!("{ip}:{}:{}", bind.port(), input.port),
            IpAddr::V6(ip) => format!("[{ip}]:{}:{}", bind.port(), input.port),
        };
        let default = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        let cmd = if bind == default {
            command(&lease, &[input.port])
        } else {
            format!("agora tunnel {lease} -L {forward}")
        };
        map.insert("command".into(), cmd.into());
        map.insert(
            "note".into(),
            "This MCP endpoint runs on a node, not beside you: it cannot open a local port \
             for you. Run `command` beside you with your key (--key FILE or $AGORA_KEY), or \
             run `agora mcp --key FILE` beside you, whose open_tunnel opens the listener."
                .into(),
        );
    }
    Ok(view)
}

fn grant_error(e: &GrantError) -> ErrorBody {
    match e {
        GrantError::Port { .. } => ErrorBody::new(PORT_NOT_ALLOWED.code, e.to_string()),
        _ => ErrorBody::new(BAD_GRANT.code, e.to_string()),
    }
}

/// Beside the agent: checks the grant, dials the provider and listens locally.
async fn open<B: Backend>(
    backend: &B,
    key: &AgentKey,
    tunnels: &Tunnels,
    input: &OpenTunnelInput,
    origin: Option<SocketAddr>,
) -> Result<Value, ErrorBody> {
    let bind = local_addr(input.bind.as_deref())?;
    let full = || {
        ErrorBody::new(
            TOO_MANY_TUNNELS.code,
            format!("{MAX_TUNNELS} tunnels are open in this session; close one first"),
        )
    };
    if tunnels.with(|t| t.len()) >= MAX_TUNNELS {
        return Err(full());
    }
    let (lease, value) = tunnel_view(backend, input, origin).await?;
    let view: TunnelView = serde_json::from_value(value)
        .map_err(|e| ErrorBody::new(BAD_REPLY.code, format!("the tunnel answer: {e}")))?;
    let agent = key.identity.agora_id();
    let grant = forward::verify_grant(&view.grant, &lease, &agent).map_err(|e| grant_error(&e))?;
    let g = grant.body();
    forward::check_port(g, input.port).map_err(|e| grant_error(&e))?;
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        ErrorBody::new(TUNNEL_FAILED.code, format!("{what}: {e}"))
    };
    let direct =
        Dialer::for_grant(&key.identity, g, None).map_err(|e| failed("cannot set up", &e))?;
    // Dial now, so an unreachable provider is this call's answer, not a later silence; one
    // that does not answer soon is reached through the node's relay (TLS stays end to end).
    let (dialer, relay) = match forward::dial_within(&direct, forward::RELAY_AFTER).await {
        Ok(()) => (direct, None),
        Err(e) => {
            tracing::debug!(error = %e, "provider not reached directly; asking for a relay");
            let relay = relayed(backend, key, &grant, origin)
                .await
                .map_err(|why| failed("the provider's tunnel endpoint", &format!("{e}; {why}")))?;
            let dialer = Dialer::for_grant(&key.identity, g, Some(vec![relay]))
                .map_err(|e| failed("cannot set up", &e))?;
            dialer
                .connection()
                .await
                .map_err(|e| failed("the relayed tunnel", &e))?;
            (dialer, Some(relay))
        }
    };
    let dialer = Arc::new(dialer);
    let listener = Listener::bind(dialer.clone(), bind, input.port)
        .await
        .map_err(|e| failed(&format!("cannot listen on {bind}"), &e))?;
    let shown = Shown {
        local: listener.local().to_string(),
        lease,
        port: input.port,
        provider: g.provider.to_string(),
        expires_at: g.expires_at.to_string(),
    };
    let count = tunnels.with(|t| {
        if t.len() >= MAX_TUNNELS {
            return None;
        }
        t.push(Open {
            shown: shown.clone(),
            listener,
            dialer: dialer.clone(),
        });
        Some(t.len())
    });
    let Some(count) = count else {
        dialer.close().await;
        return Err(full());
    };
    tracing::info!(lease = %lease, port = input.port, local = %shown.local, "tunnel opened");
    let mut answer = serde_json::to_value(&shown).unwrap_or(Value::Null);
    if let Some(map) = answer.as_object_mut() {
        map.insert("open".into(), count.into());
        if let Some(r) = relay {
            map.insert("relay".into(), r.to_string().into());
        }
    }
    Ok(answer)
}

/// Asks the node to relay the tunnel of `grant` (`POST /v1/leases/{id}/relay`, signed
/// with the agent's key): the relay's address, or why not.
async fn relayed<B: Backend>(
    backend: &B,
    key: &AgentKey,
    grant: &agora_protocol::Signed<agora_protocol::lease::LeaseGrant>,
    origin: Option<SocketAddr>,
) -> Result<SocketAddr, String> {
    let body = forward::relay_body(&key.identity, grant, crate::clock::now())
        .map_err(|e| format!("cannot sign the relay operation: {e}"))?;
    let call = HttpCall {
        method: Method::Post,
        path: format!("/v1/leases/{}/relay", grant.body().lease),
        body: Some(body.to_string().into_bytes()),
    };
    let reply = backend.send(call, origin).await?;
    let answer =
        json_of(&reply).map_err(|e| format!("no relay: {}: {}", e.error.code, e.error.message))?;
    forward::relay_addr(&answer).ok_or_else(|| "the node's relay answer has no address".into())
}

/// Beside the agent: closes the tunnel listening on `input.local`.
async fn close(tunnels: &Tunnels, input: &CloseTunnelInput) -> Result<Value, ErrorBody> {
    let local: SocketAddr = input.local.trim().parse().map_err(|_| {
        ErrorBody::new(
            BAD_ARGUMENTS.code,
            format!("`local` {:?} is not an address (IP:PORT)", input.local),
        )
    })?;
    let open = tunnels
        .with(|t| {
            let i = t.iter().position(|o| o.listener.local() == local)?;
            Some(t.remove(i))
        })
        .ok_or_else(|| {
            ErrorBody::new(
                UNKNOWN_TUNNEL.code,
                format!("no tunnel of this session listens on {local}"),
            )
        })?;
    let Open {
        shown,
        listener,
        dialer,
    } = open;
    drop(listener);
    dialer.close().await;
    tracing::info!(lease = %shown.lease, local = %shown.local, "tunnel closed");
    Ok(json!({ "closed": shown }))
}

#[cfg(test)]
#[path = "tunnels_tests.rs"]
mod tests;
