//! Input and output types of the surface's operations that have no home in a handler.
//!
//! Where a handler parses its input by hand (for error messages that name the bad
//! parameter), the type here is the *contract* it parses: the documents and MCP tools are
//! generated from it, and tests check that every value it allows the handler accepts.

use agora_protocol::offer::Isolation;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// No arguments.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoInput {}

/// `GET /healthz`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Health {
    /// `ok` while the node runs.
    pub status: String,
}

/// The order of offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OfferSortKey {
    /// Cheapest first (price of the requested resources, or one vCPU and 1 GiB).
    Price,
    /// Most recently issued first.
    Newest,
    /// Highest reputation first (trust in the latest completed epoch, then in the current
    /// one), then cheapest; providers without a score, or every provider on a node without a
    /// genesis, follow by price.
    Reputation,
}

/// `GET /v1/offers` arguments: every filter is optional and they combine with AND.
///
/// This is the contract `http::offers::OfferQuery::parse` implements.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListOffersInput {
    /// Only providers offering this runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<Isolation>,
    /// Only providers that can start this image (its name, e.g. `busybox`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), pattern(r"^\S(.*\S)?$"))]
    pub image: Option<String>,
    /// At least this many free vCPUs (fractions allowed, e.g. 0.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 4096))]
    pub min_cpu: Option<f64>,
    /// At least this much free memory, MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_memory_mib: Option<u64>,
    /// At most this price, micro-credits per second, for `min_cpu` and `min_memory_mib` (or
    /// one vCPU and 1 GiB when they are not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_price: Option<u64>,
    /// Only this region (e.g. `eu-west`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32), pattern(r"^\S(.*\S)?$"))]
    pub region: Option<String>,
    /// Only providers accepting this tier (e.g. `contained`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32), pattern(r"^\S(.*\S)?$"))]
    pub tier: Option<String>,
    /// Only providers with these labels, each `key=value` (at most 16).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 16),
        inner(pattern(r"^[A-Za-z0-9_.:/-]{1,64}=[A-Za-z0-9_.:/-]{1,128}$"))
    )]
    pub label: Vec<String>,
    /// Order: `price` (default), `newest` or `reputation` (highest first, then price).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort: Option<OfferSortKey>,
    /// Most offers returned (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub limit: Option<u32>,
}

/// `GET /v1/offers/{provider}` arguments.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetOfferInput {
    /// The provider's Agora id (`agora1…`).
    pub provider: agora_protocol::AgoraId,
}

/// `GET /v1/ledger/entries/{digest}` arguments.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetLedgerEntryInput {
    /// The entry's digest (64 hex digits), as `ledger_state` heads, `own` and signup
    /// answers (`ledger_entry`) name entries.
    pub digest: String,
}

/// `GET /v1/providers/{provider}` arguments.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetProviderInput {
    /// The provider's Agora id (`agora1…`).
    pub provider: agora_protocol::AgoraId,
}

/// What an MCP client sends to `/mcp`: a JSON-RPC 2.0 message (see the MCP specification).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct JsonRpcMessage {
    /// Always `2.0`.
    pub jsonrpc: String,
    /// The method (`initialize`, `tools/list`, `tools/call`, …), absent in responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Request id, absent in notifications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<serde_json::Value>,
    /// Parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<serde_json::Value>,
}

/// The OpenAPI document (a JSON object; see the OpenAPI 3.1 specification).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct OpenApiDocument {
    /// The OpenAPI version, `3.1.0`.
    pub openapi: String,
}

/// Any JSON object (answers whose schema is not yet typed: see the operation's description).
pub type AnyObject = serde_json::Map<String, serde_json::Value>;

/// `POST /v1/signup` body (the contract `http::signup::SignupBody` implements).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupInput {
    /// base64url of the agent's `Signed<SignupRecord>` wire bytes (answering a fresh
    /// challenge from `GET /v1/signup/challenge`).
    #[schemars(length(min = 1, max = 8192))]
    pub record: String,
}

/// `POST /v1/tokens` body (the contract `http::tokens::TokenBody` implements).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenInput {
    /// base64url of the agent's `Signed<Delegation>` naming this node (`GET /v1/node`'s
    /// `id`) as delegate: the operations it may do, a spend cap, an expiry.
    #[schemars(length(min = 1, max = 1024))]
    pub delegation: String,
    /// base64url of the agent's `Signed<SignupRecord>`; optional when it signed up here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 8192))]
    pub signup: Option<String>,
}

/// `GET /v1/accounts/{agent}` arguments.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountInput {
    /// The agent's Agora id.
    pub agent: agora_protocol::AgoraId,
}

/// `POST /v1/leases/quote` body: what the agent wants (the contract
/// `http::leases::QuoteRequest` implements; nothing is reserved).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuoteInput {
    /// Runtime (default `sandbox`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<Isolation>,
    /// Image name (default `busybox`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub image: Option<String>,
    /// Only offers pinning the image to this digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<agora_protocol::signed::Digest>,
    /// vCPU in thousandths (default 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub vcpu_milli: Option<u32>,
    /// Memory, MiB (default 256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub memory_mib: Option<u64>,
    /// Writable disk, MiB (default 64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_mib: Option<u64>,
    /// Lifetime, seconds (default 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_secs: Option<u64>,
    /// Most micro-credits per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_price_per_sec: Option<u64>,
    /// Only this region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32))]
    pub region: Option<String>,
    /// Only providers serving this tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32))]
    pub tier: Option<String>,
    /// Most offers returned (1 to 100, default 8: what one lease request may list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub limit: Option<u32>,
}

/// `POST /v1/leases` body (the contract `http::leases::CreateLease` implements).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunInput {
    /// The agent's signed `LeaseRequest`, base64url (`agora agent run` builds it).
    pub request: String,
    /// The owner's signed `Approval`, base64url, when above the spending limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
    /// The agent's signed lock for this lease at one candidate (a `ChainOp`), base64url:
    /// needed where the network has a quota committee (`GET /v1/accounts/{agent}/quota`
    /// gives its `seq` and `prev`); the request goes to that candidate first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<String>,
    /// Further locks, one per further candidate in the order to fail over to them, each at
    /// the chain position after the one before and naming it as `prev` (base64url each).
    /// The node certifies one only when it fails over to its candidate; a provider's signed
    /// refusal releases that provider's lock at once, an unanswering provider's lock lapses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 7))]
    pub fallback_locks: Vec<String>,
}

/// `POST /v1/accounts/{agent}/quota` body.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaOpInput {
    /// The agent's Agora id.
    pub agent: agora_protocol::AgoraId,
    /// base64url of the agent-signed op: a `ChainOp` crediting an attestation, or a
    /// `FreeTierClaim`.
    pub op: String,
}

/// `GET /v1/leases` arguments.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListLeasesInput {
    /// Whose leases: the agent's Agora id.
    pub agent: agora_protocol::AgoraId,
    /// Most leases (1 to 500, default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 500))]
    pub limit: Option<u32>,
    /// The agent's signed `ReadProof` for this node, base64url: proof that the caller is the
    /// agent (or its delegate, under a delegation allowing `status`), issued within five
    /// minutes of the node's clock. Instead, `Authorization: Bearer` with the agent's token
    /// of this node. `agora agent ps` signs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<String>,
}

/// `GET /v1/leases/{id}` arguments.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseInput {
    /// The lease id: 64 hex digits (the SHA-256 of the signed lease request).
    #[schemars(pattern(r"^[0-9a-fA-F]{64}$"))]
    pub id: String,
}

/// `POST /v1/leases/{id}/extend` and `DELETE /v1/leases/{id}` arguments (the contract
/// `http::leases::OpBody` implements, plus the id in the path).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseOpInput {
    /// The lease id: 64 hex digits.
    #[schemars(pattern(r"^[0-9a-fA-F]{64}$"))]
    pub id: String,
    /// The agent's signed `LeaseOp` for this lease, base64url (`agora agent extend|stop`
    /// builds it).
    pub op: String,
}

/// `POST /v1/leases/{id}/extend` arguments (the contract `http::leases::ExtendBody`
/// implements, plus the id in the path).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendInput {
    /// The lease id: 64 hex digits.
    #[schemars(pattern(r"^[0-9a-fA-F]{64}$"))]
    pub id: String,
    /// The agent's signed `Extend` operation for this lease, base64url (`agora agent
    /// extend` builds it).
    pub op: String,
    /// Under a quota committee (`GET /v1/accounts/{agent}/quota` answers): the agent's
    /// signed top-up lock paying for the extension, base64url (a `ChainOp` with a `TopUp`
    /// at the account's next position: price × seconds, until the new end + 10 min, over
    /// what the lease's open locks hold). This node has it certified and the provider
    /// checks it covers the extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_up: Option<String>,
}

/// `POST /v1/leases/{id}/relay` arguments (the contract `http::relay::RelayBody`
/// implements, plus the id in the path).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RelayInput {
    /// The lease id: 64 hex digits.
    #[schemars(pattern(r"^[0-9a-fA-F]{64}$"))]
    pub id: String,
    /// The agent's own signed `LeaseOp` with `op: relay`, base64url (`agora tunnel
    /// --relay` builds it).
    pub op: String,
    /// The provider-signed `LeaseGrant`, base64url (`grant` in `GET /v1/leases/{id}`):
    /// needed when this node did not relay the lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
    /// Which of the grant's tunnel endpoints (`ip:port`) to relay to (default: the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// A grantee's: the owner's signed `ServiceGrant` for the signer's key, base64url (then
    /// `op` is the grantee's own, naming itself as the agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_grant: Option<String>,
    /// A grantee's: the lease's provider-signed capability (the published record's
    /// `capability`), base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capability: Option<String>,
    /// A grantee's: the workload port it reaches (listed by the grant and the capability).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub port: Option<u16>,
}

/// `POST /v1/leases/{id}/exec` arguments (the contract `http::streams::ExecBody`
/// implements, plus the id in the path).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecInput {
    /// The lease id: 64 hex digits.
    #[schemars(pattern(r"^[0-9a-fA-F]{64}$"))]
    pub id: String,
    /// The agent's signed `LeaseOp` (`exec`: command, stdin, tty), base64url (`agora agent
    /// exec` builds it).
    pub op: String,
    /// Standard input as text (the signed operation must say `stdin: true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// Standard input as base64, instead of `stdin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin_base64: Option<String>,
}

/// `GET /v1/leases/{id}/logs` arguments.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogsInput {
    /// The lease id: 64 hex digits.
    #[schemars(pattern(r"^[0-9a-fA-F]{64}$"))]
    pub id: String,
    /// The agent's signed `LeaseOp` (`logs`), base64url (`agora agent logs` builds it).
    pub op: String,
    /// Must match the signed operation's `follow` when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow: Option<bool>,
}

/// `PUT` and `GET /v1/leases/{id}/files` arguments (the body of a PUT is the tar stream).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilesInput {
    /// The lease id: 64 hex digits.
    #[schemars(pattern(r"^[0-9a-fA-F]{64}$"))]
    pub id: String,
    /// The agent's signed `LeaseOp` (`put_files` or `get_files`, naming the path),
    /// base64url (`agora agent files` builds it).
    pub op: String,
    /// Must match the signed operation's path when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// What kind of line of an exec or logs stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StreamEventType {
    /// Standard output bytes.
    Stdout,
    /// Standard error bytes.
    Stderr,
    /// The command ended (exec's last line).
    Exit,
    /// The output ended (logs' last line).
    End,
    /// The operation failed midway (last line).
    Error,
}

/// One line of an exec or logs answer (NDJSON).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct StreamEvent {
    /// What the line says.
    #[serde(rename = "type")]
    pub kind: StreamEventType,
    /// Output as text (when it is UTF-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Output as base64 (when it is not UTF-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base64: Option<String>,
    /// `exit`: the exit code (128 + n when killed by signal n); `error`: absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<serde_json::Value>,
    /// `error`: what went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `PUT /v1/leases/{id}/files` answer.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct FilesPut {
    /// The lease.
    pub lease: String,
    /// Where the archive was unpacked.
    pub path: String,
    /// Bytes of the archive.
    pub bytes: u64,
}

/// `GET /v1/approvals` arguments: filters that combine with AND.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListApprovalsInput {
    /// Only requests this owner must approve (an Agora id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Only this agent's requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Only requests in this state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ApprovalStateName>,
}

/// Where a waiting request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalStateName {
    /// Waiting for the owner.
    Pending,
    /// Approved, and the lease granted.
    Approved,
    /// Approved, but no provider granted it.
    Refused,
    /// Nobody approved in time (`approval_timeout`).
    Expired,
}

/// `GET /v1/approvals/{id}` arguments.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalInput {
    /// The waiting request's id (its lease id): 64 hex digits.
    #[schemars(pattern(r"^[0-9a-fA-F]{64}$"))]
    pub id: String,
}

/// `POST /v1/approvals/{id}` arguments.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveInput {
    /// The waiting request's id: 64 hex digits.
    #[schemars(pattern(r"^[0-9a-fA-F]{64}$"))]
    pub id: String,
    /// The owner's signed `Approval`, base64url (`agora approve` builds it).
    pub approval: String,
}
