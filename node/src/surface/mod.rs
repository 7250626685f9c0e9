//! The agent-facing surface, defined once.
//!
//! Every operation an agent (or operator) can perform on a node is one [`Operation`] in
//! [`operations`]: its snake_case name, summary and description, HTTP method and path, input
//! and output types (JSON Schemas via `schemars`), the [`errors`] it may return, whether it
//! needs the agent's signature ([`Auth`]) and whether it streams. Three forms derive from that
//! one list:
//!
//! - [`openapi`]: the OpenAPI 3.1 document served at `GET /openapi.json`;
//! - [`llms`]: `GET /llms.txt`, a concise guide for language models;
//! - [`mcp`]: MCP tools, over stdio beside the agent (`agora mcp --node URL [--key FILE]`) and
//!   over streamable HTTP at `/mcp` on the node itself (read-only tools).
//!
//! The HTTP handlers stay in [`crate::http`] (one file per resource); the registry names
//! their input and output types, so the documents describe exactly what they parse and
//! return. Adding an operation is one entry in `operations.rs`:
//!
//! ```ignore
//! Operation::post("extend", "/v1/leases/{id}/extend", Group::Leases)
//!     .summary("Extend a lease")
//!     .input::<ExtendInput>()
//!     .output::<LeaseView>()
//!     .errors(&[errors::MALFORMED_OP, errors::UNKNOWN_LEASE])
//!     .agent_signed(lease::mcp::sign_extend),
//! ```

use std::borrow::Cow;
use std::sync::OnceLock;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;

pub mod errors;
pub mod http;
pub mod llms;
pub mod mcp;
pub mod openapi;
mod operations;
pub mod sign;
pub mod types;

pub use errors::{ErrorBody, ErrorCode};

/// An HTTP method an operation uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET: reads, never changes anything.
    Get,
    /// POST: creates or acts.
    Post,
    /// PUT: replaces (e.g. uploads a file).
    Put,
    /// DELETE: ends or removes.
    Delete,
}

impl Method {
    /// Upper-case name (`GET`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
        }
    }

    /// Lower-case name, as OpenAPI path items key operations.
    pub const fn as_lower(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Post => "post",
            Self::Put => "put",
            Self::Delete => "delete",
        }
    }

    /// Whether arguments other than path parameters travel in the query string (GET), else
    /// in a JSON body (POST, PUT and DELETE, whose body carries e.g. a signed operation).
    pub const fn args_in_query(self) -> bool {
        matches!(self, Self::Get)
    }
}

/// Which part of the API an operation belongs to (OpenAPI tags, `/llms.txt` sections).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    /// The node itself: status, peers, health, metrics.
    Node,
    /// Offers: what providers sell.
    Market,
    /// The agent's account: signup.
    Agent,
    /// Leases: run, exec, logs, extend, stop.
    Leases,
    /// The surface describing itself: OpenAPI, llms.txt, MCP.
    Meta,
}

impl Group {
    /// Every group, in document order.
    pub const ALL: [Self; 5] = [
        Self::Node,
        Self::Market,
        Self::Agent,
        Self::Leases,
        Self::Meta,
    ];

    /// Tag name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Node => "node",
            Self::Market => "market",
            Self::Agent => "agent",
            Self::Leases => "leases",
            Self::Meta => "meta",
        }
    }

    /// One line about the group.
    pub const fn about(self) -> &'static str {
        match self {
            Self::Node => "The node: identity, peers, health and metrics.",
            Self::Market => {
                "Offers: what providers sell, at what price; and the services agents publish \
                 from their leases, as this node sees them."
            }
            Self::Agent => "The agent's account: signup and tier.",
            Self::Leases => "Leases: run a workload, exec, logs, extend, stop.",
            Self::Meta => "The surface describing itself: OpenAPI, llms.txt and the MCP endpoint.",
        }
    }
}

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Anyone: read-only or public.
    None,
    /// Only with the agent's own signature over the request (made locally with its key).
    Agent,
}

/// A JSON Schema of a Rust type: inline (the type's own schema) or a reference to it.
#[derive(Clone, Copy)]
pub struct TypeSchema {
    /// The type's name as documents show it.
    pub name: fn() -> Cow<'static, str>,
    /// The type's own schema (nested named types as references).
    pub inline: fn(&mut SchemaGenerator) -> Schema,
    /// A reference to the type's schema (a definition), or inline for unnamed types.
    pub reference: fn(&mut SchemaGenerator) -> Schema,
}

impl TypeSchema {
    /// The schema of `T`.
    pub fn of<T: JsonSchema>() -> Self {
        Self {
            name: T::schema_name,
            inline: T::json_schema,
            reference: SchemaGenerator::subschema_for::<T>,
        }
    }
}

impl std::fmt::Debug for TypeSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TypeSchema").field(&(self.name)()).finish()
    }
}

/// What an operation answers with.
#[derive(Debug, Clone, Copy)]
pub enum Output {
    /// A JSON value of a type.
    Json(TypeSchema),
    /// Text (e.g. Prometheus metrics, `/llms.txt`) with this content type.
    Text(&'static str),
    /// A stream of this content type (e.g. NDJSON frames for exec and logs), described by
    /// the schema of one item when it has one.
    Stream {
        /// The content type.
        content_type: &'static str,
        /// One item.
        item: Option<TypeSchema>,
    },
    /// Nothing (204 No Content).
    Empty,
}

/// An operation's arguments: their schema and a check that a JSON object is one.
#[derive(Debug, Clone, Copy)]
pub struct Input {
    /// The arguments as one JSON object: path parameters by name, the rest in the query (GET,
    /// DELETE) or the JSON body (POST, PUT).
    pub schema: TypeSchema,
    /// Deserializes a JSON object into the input type, reporting why it is not one.
    pub check: fn(serde_json::Value) -> Result<(), String>,
}

/// Builds the HTTP call for an operation that needs the agent's signature, signing locally
/// with the agent's key (used by `agora mcp --key FILE`). It may read from the node first (a
/// signup challenge, a quote) through [`SignContext::node`].
pub type SignFn =
    for<'a> fn(SignContext<'a>) -> futures::future::BoxFuture<'a, Result<mcp::HttpCall, ErrorBody>>;

/// What a tool does for the agent (beside it with `agora mcp --key FILE`, or at `/mcp` as
/// its delegate) once the node answered its call successfully, e.g. `extend` republishing
/// the lease's services with the re-signed capability (beside the agent only), `stop`
/// acknowledging the final receipt. Answers a field to add to the tool's result (`None`:
/// nothing to add).
pub type AfterFn =
    for<'a> fn(
        AfterContext<'a>,
    ) -> futures::future::BoxFuture<'a, Option<(&'static str, serde_json::Value)>>;

/// What an [`AfterFn`] works with.
pub struct AfterContext<'a> {
    /// Who signs: the agent with its key (beside it), or this node as its delegate.
    pub author: crate::agent::request::Author<'a>,
    /// The agent's key file beside it; `None` on a node.
    pub key: Option<&'a mcp::AgentKey>,
    /// The node's JSON answer to the call.
    pub answer: &'a serde_json::Value,
    /// The node.
    pub node: &'a dyn mcp::NodeRead,
}

/// What a [`SignFn`] works with.
pub struct SignContext<'a> {
    /// Who signs: the agent with its key (beside it), or this node as the delegate of an
    /// agent that handed it a token (`/mcp`).
    pub author: crate::agent::request::Author<'a>,
    /// The agent's key file beside it (`agora mcp --key`); `None` on a node.
    pub key: Option<&'a mcp::AgentKey>,
    /// The agent's signup record for lease requests, or why there is none.
    pub signup: Result<agora_protocol::Signed<agora_protocol::signup::SignupRecord>, ErrorBody>,
    /// The tool's arguments, already checked against the input type.
    pub args: &'a serde_json::Map<String, serde_json::Value>,
    /// The node, for reads the request depends on.
    pub node: &'a dyn mcp::NodeRead,
}

/// One agent-facing operation.
#[derive(Debug, Clone)]
pub struct Operation {
    /// snake_case name: the MCP tool name and the OpenAPI `operationId`.
    pub name: &'static str,
    /// HTTP method.
    pub method: Method,
    /// Path, with `{name}` parameters (axum syntax, same as OpenAPI).
    pub path: &'static str,
    /// Group.
    pub group: Group,
    /// One line: what it does.
    pub summary: &'static str,
    /// More: how to use it, what comes back.
    pub description: &'static str,
    /// Arguments (none: no path parameters, no query, no body).
    pub input: Option<Input>,
    /// The successful answer.
    pub output: Output,
    /// Error codes it may return (besides transport trouble).
    pub errors: &'static [ErrorCode],
    /// More codes, beside a shared list in `errors`.
    pub more_errors: &'static [ErrorCode],
    /// Who may call it.
    pub auth: Auth,
    /// For [`Auth::Agent`]: how `agora mcp --key` builds the signed request (`None`: not
    /// yet an MCP tool beside the agent; the `agora agent` CLI signs it).
    pub sign: Option<SignFn>,
    /// Whether it only reads (GET, or a POST that changes nothing, such as a quote).
    pub safe: bool,
    /// The status of a successful answer (200, or 201 for what creates).
    pub ok_status: u16,
    /// Whether MCP serves it as a tool.
    pub tool: bool,
    /// When the request body is raw bytes of this content type (a file upload): the
    /// arguments then go in the query.
    pub raw_body: Option<&'static str>,
    /// For an agent-signed operation: the MCP tool's arguments, when they differ from the
    /// HTTP input (the tool takes what the agent wants; its [`SignFn`] builds the signed
    /// request from them).
    pub tool_input: Option<Input>,
    /// What the MCP tool does for the agent after a successful answer.
    pub after: Option<AfterFn>,
}

fn check_as<T: DeserializeOwned>(value: serde_json::Value) -> Result<(), String> {
    serde_json::from_value::<T>(value)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

impl Operation {
    fn new(method: Method, name: &'static str, path: &'static str, group: Group) -> Self {
        Self {
            name,
            method,
            path,
            group,
            summary: "",
            description: "",
            input: None,
            output: Output::Text("text/plain; charset=utf-8"),
            errors: &[],
            more_errors: &[],
            auth: Auth::None,
            sign: None,
            safe: method == Method::Get,
            ok_status: 200,
            tool: true,
            raw_body: None,
            tool_input: None,
            after: None,
        }
    }

    /// A GET operation.
    pub fn get(name: &'static str, path: &'static str, group: Group) -> Self {
        Self::new(Method::Get, name, path, group)
    }

    /// A POST operation.
    pub fn post(name: &'static str, path: &'static str, group: Group) -> Self {
        Self::new(Method::Post, name, path, group)
    }

    /// A PUT operation.
    pub fn put(name: &'static str, path: &'static str, group: Group) -> Self {
        Self::new(Method::Put, name, path, group)
    }

    /// A DELETE operation.
    pub fn delete(name: &'static str, path: &'static str, group: Group) -> Self {
        Self::new(Method::Delete, name, path, group)
    }

    /// Sets the one-line summary.
    pub fn summary(mut self, summary: &'static str) -> Self {
        self.summary = summary;
        self
    }

    /// Sets the longer description.
    pub fn describe(mut self, description: &'static str) -> Self {
        self.description = description;
        self
    }

    /// Its arguments are a `T` (a JSON object).
    pub fn input<T: JsonSchema + DeserializeOwned>(mut self) -> Self {
        self.input = Some(Input {
            schema: TypeSchema::of::<T>(),
            check: check_as::<T>,
        });
        self
    }

    /// It answers with a JSON `T`.
    pub fn output<T: JsonSchema>(mut self) -> Self {
        self.output = Output::Json(TypeSchema::of::<T>());
        self
    }

    /// It answers with text of `content_type`.
    pub fn text(mut self, content_type: &'static str) -> Self {
        self.output = Output::Text(content_type);
        self
    }

    /// It answers with a stream of `content_type`, items of type `T`.
    pub fn stream<T: JsonSchema>(mut self, content_type: &'static str) -> Self {
        self.output = Output::Stream {
            content_type,
            item: Some(TypeSchema::of::<T>()),
        };
        self
    }

    /// It answers with a byte stream of `content_type` (e.g. a tar archive).
    pub fn bytes(mut self, content_type: &'static str) -> Self {
        self.output = Output::Stream {
            content_type,
            item: None,
        };
        self
    }

    /// The error codes it may return.
    pub fn errors(mut self, errors: &'static [ErrorCode]) -> Self {
        self.errors = errors;
        self
    }

    /// More error codes beside those of [`Self::errors`] (a shared list plus its own).
    pub fn more_errors(mut self, errors: &'static [ErrorCode]) -> Self {
        self.more_errors = errors;
        self
    }

    /// It needs the agent's signature; `sign` builds the signed request from the tool's
    /// arguments with the agent's key.
    pub fn agent_signed(mut self, sign: SignFn) -> Self {
        self.auth = Auth::Agent;
        self.sign = Some(sign);
        self
    }

    /// It needs the agent's signature; as an MCP tool beside the agent it takes a `T` and
    /// `sign` builds the signed HTTP request from it with the agent's key.
    pub fn agent_signed_as<T: JsonSchema + DeserializeOwned>(mut self, sign: SignFn) -> Self {
        self.auth = Auth::Agent;
        self.sign = Some(sign);
        self.tool_input = Some(Input {
            schema: TypeSchema::of::<T>(),
            check: check_as::<T>,
        });
        self
    }

    /// The MCP tool runs `after` for the agent (beside it, or as its delegate) once the node
    /// answered it successfully and adds the field it answers to the result.
    pub fn after_success(mut self, after: AfterFn) -> Self {
        self.after = Some(after);
        self
    }

    /// The MCP tool's arguments: [`Operation::tool_input`], else the HTTP input.
    pub fn tool_args(&self) -> Option<Input> {
        self.tool_input.or(self.input)
    }

    /// It needs the agent's signature, made by the `agora agent` CLI; beside the agent it is
    /// not an MCP tool until it gets a [`SignFn`] (see [`Operation::agent_signed`]).
    pub fn agent_signed_by_cli(mut self) -> Self {
        self.auth = Auth::Agent;
        self.sign = None;
        self
    }

    /// Its request body is raw bytes of `content_type`; its arguments go in the query.
    pub fn raw_body(mut self, content_type: &'static str) -> Self {
        self.raw_body = Some(content_type);
        self
    }

    /// Whether its arguments (other than path parameters) go in the query string.
    pub fn args_in_query(&self) -> bool {
        self.method.args_in_query() || self.raw_body.is_some()
    }

    /// It answers `201 Created` on success.
    pub fn creates(mut self) -> Self {
        self.ok_status = 201;
        self
    }

    /// It changes nothing although it is not a GET (e.g. a quote).
    pub fn reads_only(mut self) -> Self {
        self.safe = true;
        self
    }

    /// It answers 204 with no body.
    pub fn no_content(mut self) -> Self {
        self.output = Output::Empty;
        self.ok_status = 204;
        self
    }

    /// It is not an MCP tool (health checks, metrics, the documents themselves).
    pub fn not_a_tool(mut self) -> Self {
        self.tool = false;
        self
    }

    /// Whether it only reads.
    pub fn read_only(&self) -> bool {
        self.safe
    }

    /// Whether it takes a JSON body (POST, PUT, DELETE with arguments).
    pub fn has_body(&self) -> bool {
        self.input.is_some() && !self.args_in_query() && self.group != Group::Meta
    }

    /// Every error code it may return: its own, and for a JSON body those of reading one
    /// (`malformed_body`, `body_too_large`, `unsupported_media_type`).
    pub fn all_errors(&self) -> Vec<ErrorCode> {
        let mut all = self.errors.to_vec();
        for e in self.more_errors {
            if !all.contains(e) {
                all.push(*e);
            }
        }
        if self.has_body() {
            for e in [
                errors::MALFORMED_BODY,
                errors::BODY_TOO_LARGE,
                errors::UNSUPPORTED_MEDIA_TYPE,
            ] {
                if !all.contains(&e) {
                    all.push(e);
                }
            }
        }
        all
    }

    /// Whether it streams its answer.
    pub fn streams(&self) -> bool {
        matches!(self.output, Output::Stream { .. })
    }

    /// The names of its path parameters, in order.
    pub fn path_params(&self) -> impl Iterator<Item = &'static str> {
        self.path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
    }
}

/// Every operation of the node's API, in document order.
pub fn operations() -> &'static [Operation] {
    static OPS: OnceLock<Vec<Operation>> = OnceLock::new();
    OPS.get_or_init(operations::all)
}

/// The operation named `name`.
pub fn find(name: &str) -> Option<&'static Operation> {
    operations().iter().find(|op| op.name == name)
}

/// The schema generator every document uses: JSON Schema 2020-12 (OpenAPI 3.1's dialect),
/// definitions under `definitions_path`.
pub fn generator(definitions_path: &'static str) -> SchemaGenerator {
    schemars::generate::SchemaSettings::draft2020_12()
        .with(|s| {
            s.definitions_path = definitions_path.into();
            s.meta_schema = None;
        })
        .into_generator()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_snake_case_and_routes_unique() {
        let ops = operations();
        for (i, op) in ops.iter().enumerate() {
            assert!(
                !op.name.is_empty()
                    && op
                        .name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{}",
                op.name
            );
            assert!(op.path.starts_with('/'), "{}", op.path);
            assert!(!op.summary.is_empty(), "{} has no summary", op.name);
            assert!(
                ops.iter().skip(i + 1).all(|o| o.name != op.name),
                "{} twice",
                op.name
            );
            assert!(
                ops.iter()
                    .skip(i + 1)
                    .all(|o| (o.method, o.path) != (op.method, op.path)),
                "{} {} twice",
                op.method.as_str(),
                op.path
            );
            assert!(op.auth == Auth::Agent || op.sign.is_none(), "{}", op.name);
        }
    }

    #[test]
    fn path_parameters_are_input_properties() {
        for op in operations() {
            let params: Vec<_> = op.path_params().collect();
            if params.is_empty() {
                continue;
            }
            let input = op.input.unwrap_or_else(|| panic!("{}: no input", op.name));
            let mut g = generator("/$defs");
            let schema = (input.schema.inline)(&mut g);
            for p in params {
                assert!(
                    schema
                        .get("properties")
                        .and_then(|props| props.get(p))
                        .is_some(),
                    "{}: path parameter {p} is not an input property",
                    op.name
                );
                let required = schema
                    .get("required")
                    .and_then(|r| r.as_array())
                    .is_some_and(|r| r.iter().any(|v| v == p));
                assert!(required, "{}: path parameter {p} is not required", op.name);
            }
        }
    }
}
