//! MCP tools derived from the registry, served with `rmcp` (the official Rust SDK).
//!
//! One [`Server`] serves both transports:
//!
//! - **stdio, beside the agent** (`agora mcp --node URL [--key FILE]`): tools call the node's
//!   HTTP API ([`RemoteNode`]). Read-only tools need no key. With a key, the tools that act for
//!   the agent are listed too and build their requests with the operation's
//!   [`SignFn`](super::SignFn), signing locally.
//! - **streamable HTTP at `/mcp` on the node** ([`service`]): stateless, JSON answers; tools
//!   call the node's router in process ([`InProcess`]). Tools that act for an agent do so
//!   only for a client holding one of this node's tokens (`Authorization: Bearer`), which
//!   stands for a delegation the agent signed to this node: the node signs as the delegate
//!   with its own key and attaches the delegation, and providers check the chain and scope.
//!   Without a token they answer `delegation_required`.
//!
//! Tool results are the API's JSON as structured content (and as text); API errors become
//! tool errors (`isError: true`) carrying the same `{"error":{"code","message"}}`.
//!
//! Besides the registry's operations, [`tunnels`] serves `open_tunnel` (beside the agent it
//! opens a local listener forwarding to a workload port; on a node it answers how),
//! `close_tunnel` and `list_tunnels`, and [`grants`] serves `grant_service` (beside the
//! agent: signs a grant for another agent's key): tools that are not HTTP routes.
//!
//! Beside the agent, an operation may also act once the node answered
//! ([`super::AfterFn`]): `extend` then republishes the lease's services with the re-signed
//! capability.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, Implementation, JsonObject,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
    ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Map, Value};

use super::errors::{
    BAD_ARGUMENTS, BAD_REPLY, DELEGATION_REQUIRED, ErrorBody, KEY_REQUIRED, NODE_UNREACHABLE,
    NOT_A_TOOL_YET, TOKEN_SCOPE,
};
use super::{Auth, Operation, Output, operations};

mod backend;
pub mod grants;
pub mod tunnels;

pub use backend::{
    Backend, HttpCall, HttpReply, InProcess, MAX_REPLY_BYTES, NodeRead, RemoteNode, http_call,
};

/// The agent's key for tools that act for it (`agora mcp --key FILE`).
pub struct AgentKey {
    /// The agent's identity.
    pub identity: agora_attest::Identity,
    /// The key file.
    pub path: PathBuf,
    /// The signup record saved beside the key (`FILE.signup`), if the agent signed up; the
    /// `signup` tool replaces it.
    signup: std::sync::RwLock<Option<String>>,
}

impl std::fmt::Debug for AgentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentKey")
            .field("id", &self.identity.agora_id())
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl AgentKey {
    /// The key `identity`, kept at `path`, with its saved signup record, if any.
    pub fn new(identity: agora_attest::Identity, path: PathBuf, signup: Option<String>) -> Self {
        Self {
            identity,
            path,
            signup: std::sync::RwLock::new(signup),
        }
    }

    /// Loads the key file at `path` (creating a new key there when `create` and it is
    /// missing) and, if present, the signup record at `path.signup`.
    ///
    /// # Errors
    /// When the key file cannot be loaded or created, or the signup record exists but cannot
    /// be read.
    pub fn load(path: &Path, create: bool) -> Result<Self, String> {
        let identity = if create {
            agora_attest::keyfile::load_or_create(path, &mut rand::rng()).map(|(id, _)| id)
        } else {
            agora_attest::keyfile::load(path)
        }
        .map_err(|e| format!("loading the key file {}: {e}", path.display()))?;
        let signup_path = crate::agent::record_file::path_for(path);
        let signup = crate::agent::record_file::load(&signup_path)
            .map_err(|e| format!("reading {}: {e}", signup_path.display()))?;
        Ok(Self::new(identity, path.to_owned(), signup))
    }

    /// The saved signup record (base64url), if any.
    pub fn signup(&self) -> Option<String> {
        self.signup
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Saves a new signup record beside the key and uses it from now on.
    ///
    /// # Errors
    /// When it cannot be written.
    pub fn save_signup(&self, record: &str) -> Result<(), String> {
        let path = crate::agent::record_file::path_for(&self.path);
        crate::agent::record_file::save(&path, record)
            .map_err(|e| format!("saving the signup record to {}: {e}", path.display()))?;
        *self
            .signup
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(record.trim().to_owned());
        Ok(())
    }
}

/// The node's side of `/mcp`: its key, to sign as the delegate of agents that exchanged a
/// delegation for one of its tokens, and those tokens.
#[derive(Debug, Clone)]
pub struct Delegate {
    /// The node's key.
    pub identity: Arc<agora_attest::Identity>,
    /// The tokens it issued.
    pub tokens: Arc<crate::agent::Tokens>,
}

/// Where the server runs, which decides what tools that act for an agent do.
#[derive(Debug)]
enum Place {
    /// Beside the agent, perhaps with its key.
    Local(Option<Box<AgentKey>>),
    /// On a node (`/mcp`): acting for an agent only under its token's delegation.
    Node(Delegate),
}

/// An MCP server whose tools are the registry's operations.
#[derive(Debug)]
pub struct Server<B> {
    backend: Arc<B>,
    place: Arc<Place>,
    ops: &'static [Operation],
    /// The tunnels `open_tunnel` opened beside the agent, kept for the session.
    tunnels: Arc<tunnels::Tunnels>,
}

impl<B> Clone for Server<B> {
    fn clone(&self) -> Self {
        Self {
            backend: Arc::clone(&self.backend),
            place: Arc::clone(&self.place),
            ops: self.ops,
            tunnels: Arc::clone(&self.tunnels),
        }
    }
}

impl<B: Backend> Server<B> {
    /// A server beside the agent (stdio), calling `backend`, signing with `key` if given.
    pub fn local(backend: B, key: Option<AgentKey>) -> Self {
        Self {
            backend: Arc::new(backend),
            place: Arc::new(Place::Local(key.map(Box::new))),
            ops: operations(),
            tunnels: Arc::default(),
        }
    }

    /// A server on the node itself (`/mcp`), acting for agents as `delegate`.
    pub fn on_node(backend: B, delegate: Delegate) -> Self {
        Self {
            backend: Arc::new(backend),
            place: Arc::new(Place::Node(delegate)),
            ops: operations(),
            tunnels: Arc::default(),
        }
    }

    /// The same server over other operations (tests).
    #[cfg(test)]
    fn with_operations(mut self, ops: &'static [Operation]) -> Self {
        self.ops = ops;
        self
    }

    /// The operations served as tools here.
    pub fn tool_operations(&self) -> impl Iterator<Item = &'static Operation> + '_ {
        self.ops.iter().filter(move |op| {
            op.tool
                && match (&*self.place, op.auth) {
                    (_, Auth::None) => true,
                    // A node acts for agents only in operations a delegation can scope.
                    (Place::Node(_), Auth::Agent) => {
                        op.sign.is_some() && super::sign::op_kind(op.name).is_some()
                    }
                    (Place::Local(key), Auth::Agent) => key.is_some() && op.sign.is_some(),
                }
        })
    }

    fn has_key(&self) -> bool {
        matches!(&*self.place, Place::Local(Some(_)))
    }

    /// The MCP tool for `op`.
    pub fn tool(&self, op: &Operation) -> Tool {
        let mut description = format!("{}. {}", op.summary, op.description);
        if op.auth == Auth::Agent {
            description.push_str(match &*self.place {
                Place::Local(_) => " Acts for the agent: signed locally with its key.",
                Place::Node(_) => {
                    " Acts for an agent: at this endpoint only under a delegation the agent \
                     signed to this node (scoped to operations, capped in spend, expiring), \
                     exchanged at `POST /v1/tokens` for a token sent as `Authorization: Bearer`; \
                     without one it answers `delegation_required`."
                }
            });
        }
        let mut tool = Tool::new(op.name, description.trim_end().to_owned(), input_schema(op))
            .with_title(op.summary)
            .with_annotations(
                ToolAnnotations::with_title(op.summary)
                    .read_only(op.read_only())
                    .destructive(op.method == super::Method::Delete)
                    .idempotent(op.method != super::Method::Post)
                    .open_world(true),
            );
        if let Some(schema) = output_schema(op) {
            tool = tool.with_raw_output_schema(Arc::new(schema));
        }
        tool
    }

    /// Runs the tool `name` with `args` for the client at `origin` (when known), holding
    /// `token` (a bearer token of this node, at `/mcp`): the tool's result, or a tool error
    /// with a code.
    pub async fn call(
        &self,
        name: &str,
        args: Map<String, Value>,
        origin: Option<SocketAddr>,
        token: Option<&str>,
    ) -> CallToolResult {
        if let Some(r) = tunnels::call(
            &self.place,
            &self.tunnels,
            &*self.backend,
            name,
            &args,
            origin,
        )
        .await
        {
            return r;
        }
        if let Some(r) = grants::call(&self.place, &*self.backend, name, &args).await {
            return r;
        }
        let Some(op) = self.tool_operations().find(|op| op.name == name) else {
            let known = self.ops.iter().find(|op| op.tool && op.name == name);
            return if known.is_some_and(|op| op.sign.is_none()) && self.has_key() {
                failure(&ErrorBody::new(
                    NOT_A_TOOL_YET.code,
                    format!("`{name}` is not an MCP tool yet: use the `agora agent` CLI"),
                ))
            } else if known.is_some() {
                failure(&ErrorBody::new(
                    KEY_REQUIRED.code,
                    format!("`{name}` acts for the agent: start `agora mcp` with --key FILE"),
                ))
            } else {
                failure(&ErrorBody::new(
                    BAD_ARGUMENTS.code,
                    format!("no tool `{name}`"),
                ))
            };
        };
        if let Some(input) = op.tool_args()
            && let Err(why) = (input.check)(Value::Object(args.clone()))
        {
            return failure(&ErrorBody::new(
                BAD_ARGUMENTS.code,
                format!("`{name}` arguments: {why}"),
            ));
        }
        let session = match (op.auth, &*self.place, op.sign) {
            (Auth::Agent, Place::Node(delegate), Some(_)) => {
                match delegated(delegate, name, token) {
                    Ok(session) => Some(session),
                    Err(e) => return failure(&e),
                }
            }
            _ => None,
        };
        let call = match (op.auth, &*self.place, op.sign) {
            (Auth::None, _, _) => http_call(op, &args),
            (Auth::Agent, Place::Node(delegate), Some(sign)) => match &session {
                Some(session) => {
                    sign(super::SignContext {
                        author: crate::agent::request::Author::delegate(
                            &delegate.identity,
                            &session.delegation,
                        ),
                        key: None,
                        signup: Ok((*session.signup).clone()),
                        args: &args,
                        node: &*self.backend,
                    })
                    .await
                }
                None => Err(ErrorBody::new(
                    DELEGATION_REQUIRED.code,
                    format!("`{name}` acts for an agent under a delegation"),
                )),
            },
            (Auth::Agent, Place::Local(Some(key)), Some(sign)) => {
                sign(super::SignContext {
                    author: crate::agent::request::Author::agent(&key.identity),
                    key: Some(key),
                    signup: super::sign::saved_signup(key),
                    args: &args,
                    node: &*self.backend,
                })
                .await
            }
            (Auth::Agent, Place::Local(Some(_)) | Place::Node(_), None) => Err(ErrorBody::new(
                NOT_A_TOOL_YET.code,
                format!("`{name}` is not an MCP tool yet: use the `agora agent` CLI"),
            )),
            (Auth::Agent, Place::Local(None), _) => Err(ErrorBody::new(
                KEY_REQUIRED.code,
                format!("`{name}` acts for the agent: start `agora mcp` with --key FILE"),
            )),
        };
        let call = match call {
            Ok(call) => call,
            Err(body) => return failure(&body),
        };
        tracing::debug!(tool = name, path = %call.path, "tool call");
        let answer = match self.backend.send(call, origin).await {
            Ok(reply) => result(op, reply),
            Err(why) => return failure(&ErrorBody::new(NODE_UNREACHABLE.code, why)),
        };
        let Some(after) = op.after.filter(|_| answer.is_error == Some(false)) else {
            return answer;
        };
        match (&*self.place, &session) {
            (Place::Local(Some(key)), _) => {
                let author = crate::agent::request::Author::agent(&key.identity);
                self.after(after, author, Some(key), answer).await
            }
            (Place::Node(delegate), Some(session)) => {
                let author = crate::agent::request::Author::delegate(
                    &delegate.identity,
                    &session.delegation,
                );
                self.after(after, author, None, answer).await
            }
            _ => answer,
        }
    }

    /// Runs `after` for `author` (the agent beside it, or this node as its delegate) on a
    /// successful `answer`, adding the field it gives.
    async fn after(
        &self,
        after: super::AfterFn,
        author: crate::agent::request::Author<'_>,
        key: Option<&AgentKey>,
        answer: CallToolResult,
    ) -> CallToolResult {
        let Some(Value::Object(mut fields)) = answer.structured_content.clone() else {
            return answer;
        };
        let value = Value::Object(fields.clone());
        let cx = super::AfterContext {
            author,
            key,
            answer: &value,
            node: &*self.backend,
        };
        match after(cx).await {
            Some((field, extra)) => {
                fields.insert(field.to_owned(), extra);
                CallToolResult::structured(Value::Object(fields))
            }
            None => answer,
        }
    }
}

/// The session behind `token` when it allows the tool `name` now.
fn delegated(
    delegate: &Delegate,
    name: &str,
    token: Option<&str>,
) -> Result<crate::agent::Session, ErrorBody> {
    let Some(token) = token else {
        return Err(ErrorBody::new(
            DELEGATION_REQUIRED.code,
            format!(
                "`{name}` acts for an agent; this node does so only under a delegation the \
                 agent signed to it: exchange one at POST /v1/tokens and send the token as \
                 `Authorization: Bearer`, or run `agora mcp --node URL --key FILE` beside the \
                 agent"
            ),
        ));
    };
    let now = crate::clock::now();
    let session = delegate
        .tokens
        .find(token, now)
        .map_err(|e| ErrorBody::new(e.code(), e.to_string()))?;
    match super::sign::op_kind(name) {
        Some(kind) if session.allows(kind, now) => Ok(session),
        kind => Err(ErrorBody::new(
            TOKEN_SCOPE.code,
            format!(
                "the token's delegation does not allow `{name}` ({}) now",
                kind.map_or_else(|| "an unscoped tool".to_owned(), |k| format!("{k:?}"))
            ),
        )),
    }
}

/// The tool's result for a node's reply.
fn result(op: &Operation, reply: HttpReply) -> CallToolResult {
    let ok = (200..300).contains(&reply.status);
    let json = reply.content_type.starts_with("application/json");
    if ok && reply.content_type.starts_with("application/x-ndjson") {
        return CallToolResult::structured(summarise_events(&reply.body));
    }
    if !json {
        let text = String::from_utf8_lossy(&reply.body).into_owned();
        if ok {
            return CallToolResult::success(vec![rmcp::model::ContentBlock::text(text)]);
        }
        return failure(&ErrorBody::new(
            BAD_REPLY.code,
            format!(
                "HTTP {}: {}",
                reply.status,
                text.chars().take(500).collect::<String>()
            ),
        ));
    }
    let value: Value = match serde_json::from_slice(&reply.body) {
        Ok(v) => v,
        Err(e) => {
            return failure(&ErrorBody::new(
                BAD_REPLY.code,
                format!("HTTP {}: the answer is not JSON: {e}", reply.status),
            ));
        }
    };
    if ok {
        match value {
            Value::Object(_) if matches!(op.output, Output::Json(_)) => {
                CallToolResult::structured(value)
            }
            other => {
                CallToolResult::success(vec![rmcp::model::ContentBlock::text(other.to_string())])
            }
        }
    } else if serde_json::from_value::<ErrorBody>(value.clone()).is_ok() {
        CallToolResult::structured_error(value)
    } else {
        failure(&ErrorBody::new(
            BAD_REPLY.code,
            format!("HTTP {}: {value}", reply.status),
        ))
    }
}

/// An exec or logs stream (NDJSON events) as one result: the output of each stream, then
/// how it ended (`exit_code`, `ended`, or `error`). A reply cut at the size bound says so.
fn summarise_events(body: &[u8]) -> Value {
    use base64::Engine as _;
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let mut out = Map::new();
    let mut ended = false;
    for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let Ok(event) = serde_json::from_slice::<Value>(line) else {
            continue;
        };
        let bytes = match (event.get("text"), event.get("base64")) {
            (Some(Value::String(t)), _) => t.as_bytes().to_vec(),
            (_, Some(Value::String(b))) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        match event.get("type").and_then(Value::as_str) {
            Some("stdout") => stdout.extend(bytes),
            Some("stderr") => stderr.extend(bytes),
            Some("exit") => {
                out.insert(
                    "exit_code".into(),
                    event.get("code").cloned().unwrap_or(Value::Null),
                );
                ended = true;
            }
            Some("end") => {
                out.insert("ended".into(), true.into());
                ended = true;
            }
            Some("error") => {
                out.insert(
                    "error".into(),
                    serde_json::json!({ "code": event.get("code"), "message": event.get("message") }),
                );
                ended = true;
            }
            _ => {}
        }
    }
    out.insert(
        "stdout".into(),
        String::from_utf8_lossy(&stdout).into_owned().into(),
    );
    out.insert(
        "stderr".into(),
        String::from_utf8_lossy(&stderr).into_owned().into(),
    );
    if !ended {
        out.insert("truncated".into(), true.into());
    }
    Value::Object(out)
}

fn failure(body: &ErrorBody) -> CallToolResult {
    CallToolResult::structured_error(serde_json::to_value(body).unwrap_or(Value::Null))
}

/// A root JSON Schema (definitions under `$defs`) for the tool's arguments: always an
/// object.
pub fn input_schema(op: &Operation) -> JsonObject {
    let Some(input) = op.tool_args() else {
        let mut empty = Map::new();
        empty.insert("type".into(), "object".into());
        empty.insert("properties".into(), Value::Object(Map::new()));
        empty.insert("additionalProperties".into(), false.into());
        return empty;
    };
    root(input.schema.inline)
}

/// A root JSON Schema for the tool's structured result, when it is a JSON object.
pub fn output_schema(op: &Operation) -> Option<JsonObject> {
    match op.output {
        Output::Json(t) => {
            let schema = root(t.inline);
            (schema.get("type").and_then(Value::as_str) == Some("object")).then_some(schema)
        }
        _ => None,
    }
}

fn root(inline: fn(&mut schemars::SchemaGenerator) -> schemars::Schema) -> JsonObject {
    let mut g = super::generator("/$defs");
    let schema = Value::from(inline(&mut g));
    let mut map = match schema {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let defs = g.take_definitions(true);
    if !defs.is_empty() {
        map.insert("$defs".into(), Value::Object(defs));
    }
    map
}

impl<B: Backend> ServerHandler for Server<B> {
    fn get_info(&self) -> ServerConfig {
        let instructions = match &*self.place {
            Place::Local(Some(key)) => format!(
                "Agora: a peer-to-peer compute marketplace. Find offers with `list_offers`, then \
                 act as agent {} (requests are signed locally); reach a lease's workload ports \
                 with `open_tunnel`. Prices are micro-credits per second. Errors carry a stable \
                 `code`.",
                key.identity.agora_id()
            ),
            Place::Local(None) => "Agora: a peer-to-peer compute marketplace. Find offers with \
                 `list_offers` (read-only; start `agora mcp` with --key FILE to act as an \
                 agent). Prices are micro-credits per second. Errors carry a stable `code`."
                .to_owned(),
            Place::Node(_) => "Agora: a peer-to-peer compute marketplace. This node's MCP \
                 endpoint serves the read-only tools (`list_offers`, `get_offer`, \
                 `node_info`, …) to anyone; the tools that act for an agent need its token \
                 (`Authorization: Bearer`, from POST /v1/tokens with a delegation the agent \
                 signed to this node). Prices are micro-credits per second. Errors carry a \
                 stable `code`."
                .to_owned(),
        };
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(
                Implementation::new("agora", env!("CARGO_PKG_VERSION")).with_title("Agora"),
            )
            .with_instructions(instructions)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let mut tools: Vec<Tool> = self.tool_operations().map(|op| self.tool(op)).collect();
        tools.extend(tunnels::tools(&self.place));
        tools.extend(grants::tools(&self.place));
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = request.arguments.unwrap_or_default();
        // Over streamable HTTP, rmcp hands us the HTTP request's parts; the node's server
        // records the peer address there, and the client's token is in its headers.
        let parts = context.extensions.get::<axum::http::request::Parts>();
        let origin = parts
            .and_then(|p| p.extensions.get::<axum::extract::ConnectInfo<SocketAddr>>())
            .map(|c| c.0);
        let token = parts
            .and_then(|p| p.headers.get(axum::http::header::AUTHORIZATION))
            .and_then(|v| v.to_str().ok())
            .and_then(crate::agent::tokens::bearer);
        Ok(self.call(&request.name, args, origin, token).await.into())
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tool_operations()
            .find(|op| op.name == name)
            .map(|op| self.tool(op))
            .or_else(|| {
                tunnels::tools(&self.place)
                    .into_iter()
                    .chain(grants::tools(&self.place))
                    .find(|t| t.name == name)
            })
    }
}

/// The streamable HTTP service for `/mcp` on the node: stateless, JSON answers, tools calling
/// `api` (the node's router without `/mcp`) in process.
pub fn service(
    api: axum::Router,
    delegate: Delegate,
) -> rmcp::transport::streamable_http_server::StreamableHttpService<
    Server<InProcess>,
    rmcp::transport::streamable_http_server::session::never::NeverSessionManager,
> {
    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService,
    };
    let server = Server::on_node(InProcess::new(api), delegate);
    // Stateless and JSON: no per-client state on a public node. Any Host is accepted: the
    // endpoint serves what the plain HTTP API serves to anyone, and acting for an agent rests
    // on the agent's signed delegation (behind its token), not on where a request came from.
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .disable_allowed_hosts()
        .with_max_request_body_bytes(64 * 1024);
    StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(Default::default()),
        config,
    )
}

#[cfg(test)]
mod tests;
