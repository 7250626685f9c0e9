//! The error catalog: every stable error code the agent-facing surface returns, with its
//! HTTP status and what it means.
//!
//! HTTP errors are `{"error":{"code":"…","message":"…"}}` ([`ErrorBody`]); MCP tools return
//! the same object as their structured content with `isError: true`. The code is for
//! programs, the message is for people. A test checks that every code an API handler uses
//! is listed here, so `/openapi.json` and `/llms.txt` never miss one.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One stable error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode {
    /// The code, snake_case (`bad_query`).
    pub code: &'static str,
    /// Its HTTP status; `None` for codes only MCP tools return.
    pub status: Option<u16>,
    /// What it means and what to do about it.
    pub meaning: &'static str,
}

/// A malformed, unknown or out-of-range query parameter (the message names it).
pub const BAD_QUERY: ErrorCode = ErrorCode {
    code: "bad_query",
    status: Some(400),
    meaning: "a query parameter is unknown, malformed or out of range; the message names it",
};
/// A path segment that should be an Agora id is not one.
pub const BAD_PROVIDER: ErrorCode = ErrorCode {
    code: "bad_provider",
    status: Some(400),
    meaning: "the provider in the path is not an Agora id (`agora1…`)",
};
/// The provider has no current offer in this node's book.
pub const NO_OFFER: ErrorCode = ErrorCode {
    code: "no_offer",
    status: Some(404),
    meaning: "this node knows no current (unexpired, not withdrawn) offer from that provider",
};
/// A path segment that should be a digest is not one.
pub const BAD_DIGEST: ErrorCode = ErrorCode {
    code: "bad_digest",
    status: Some(400),
    meaning: "the digest in the path is not 64 hex digits",
};
/// The evidence log here holds no entry with that digest.
pub const NO_ENTRY: ErrorCode = ErrorCode {
    code: "no_entry",
    status: Some(404),
    meaning: "this node's evidence log holds no accepted entry with that digest (yet)",
};
/// The node knows nothing of the provider.
pub const UNKNOWN_PROVIDER: ErrorCode = ErrorCode {
    code: "unknown_provider",
    status: Some(404),
    meaning: "this node holds no current offer from that provider and no reputation score of it",
};
/// A submitted service record or withdrawal does not decode or validate.
pub const MALFORMED_SERVICE: ErrorCode = ErrorCode {
    code: "malformed_service",
    status: Some(400),
    meaning: "send exactly one of `record` and `withdrawal`, base64url of the owner's signed \
              message; a record must carry its lease's provider-signed capability, name a port \
              of the lease and end within the lease (the message says what is wrong)",
};
/// The node holds a newer record or a withdrawal, or the record is out of date.
pub const STALE_SERVICE: ErrorCode = ErrorCode {
    code: "stale_service",
    status: Some(409),
    meaning: "the record is older than (or withdrawn by) one this node holds, expired, or dated \
              in the future: sign it again with a higher `seq` and the current time",
};
/// The owner (or the whole directory) holds as many records as allowed.
pub const SERVICES_FULL: ErrorCode = ErrorCode {
    code: "services_full",
    status: Some(409),
    meaning: "the owner publishes as many services as a node keeps (or the directory is full \
              of records outliving this one): withdraw one first",
};
/// A path segment that should be a grant id is not one.
pub const BAD_GRANT_ID: ErrorCode = ErrorCode {
    code: "bad_grant_id",
    status: Some(400),
    meaning: "not a grant id (32 hex digits, as `agora agent grant` prints it)",
};
/// No such endpoint.
pub const NO_ROUTE: ErrorCode = ErrorCode {
    code: "no_route",
    status: Some(404),
    meaning: "no such endpoint; see /openapi.json",
};
/// MCP: the tool's arguments do not match its input schema.
pub const BAD_ARGUMENTS: ErrorCode = ErrorCode {
    code: "bad_arguments",
    status: None,
    meaning: "the tool's arguments do not match its input schema; the message says how",
};
/// MCP (stdio): the tool needs the agent's signature and `agora mcp` has no key.
pub const KEY_REQUIRED: ErrorCode = ErrorCode {
    code: "key_required",
    status: None,
    meaning: "the tool needs the agent's signature; start `agora mcp` with `--key FILE`",
};
/// MCP (remote `/mcp`): the tool needs the agent's signature, which a node may only act on
/// under a delegation the agent signed.
pub const DELEGATION_REQUIRED: ErrorCode = ErrorCode {
    code: "delegation_required",
    status: None,
    meaning: "at /mcp, the tool acts for an agent only under a delegation the agent signed \
              (scoped, spend-capped, expiring): exchange one at `POST /v1/tokens` and send the \
              token as `Authorization: Bearer`, or use `agora mcp --key FILE` beside the agent",
};
/// MCP (stdio): the node's HTTP API did not answer.
pub const NODE_UNREACHABLE: ErrorCode = ErrorCode {
    code: "node_unreachable",
    status: None,
    meaning: "the node's HTTP API did not answer (down, wrong --node, timeout)",
};
/// MCP: the node answered with something that is not the API's JSON.
pub const BAD_REPLY: ErrorCode = ErrorCode {
    code: "bad_reply",
    status: None,
    meaning: "the node answered with something other than the API's JSON",
};

/// `not_a_tool_yet`.
pub const NOT_A_TOOL_YET: ErrorCode = ErrorCode {
    code: "not_a_tool_yet",
    status: None,
    meaning: "the operation acts for the agent but is not an MCP tool yet; use the `agora agent` CLI",
};
/// `malformed_body`.
pub const MALFORMED_BODY: ErrorCode = ErrorCode {
    code: "malformed_body",
    status: Some(400),
    meaning: "the body is not the JSON the operation takes (the message says why)",
};
/// `bad_request`.
pub const BAD_REQUEST: ErrorCode = ErrorCode {
    code: "bad_request",
    status: Some(400),
    meaning: "the request is malformed (e.g. a path segment that does not decode)",
};
/// `body_too_large`.
pub const BODY_TOO_LARGE: ErrorCode = ErrorCode {
    code: "body_too_large",
    status: Some(413),
    meaning: "the body is larger than the operation accepts",
};
/// `unsupported_media_type`.
pub const UNSUPPORTED_MEDIA_TYPE: ErrorCode = ErrorCode {
    code: "unsupported_media_type",
    status: Some(415),
    meaning: "the body is not `application/json`",
};
/// `method_not_allowed`.
pub const METHOD_NOT_ALLOWED: ErrorCode = ErrorCode {
    code: "method_not_allowed",
    status: Some(405),
    meaning: "the path exists but not with this method",
};
/// `unavailable`.
pub const UNAVAILABLE: ErrorCode = ErrorCode {
    code: "unavailable",
    status: Some(503),
    meaning: "the service is not running on this node, or the provider cannot serve now",
};
/// `store`.
pub const STORE: ErrorCode = ErrorCode {
    code: "store",
    status: Some(500),
    meaning: "the node's store failed",
};
/// `store_error`.
pub const STORE_ERROR: ErrorCode = ErrorCode {
    code: "store_error",
    status: Some(500),
    meaning: "the node's store failed",
};
/// `internal`.
pub const INTERNAL: ErrorCode = ErrorCode {
    code: "internal",
    status: Some(500),
    meaning: "the node failed; retry later",
};
/// `rate_limited`.
pub const RATE_LIMITED: ErrorCode = ErrorCode {
    code: "rate_limited",
    status: Some(429),
    meaning: "too many requests from this address or prefix; `Retry-After` says when",
};
/// `challenges_exhausted`.
pub const CHALLENGES_EXHAUSTED: ErrorCode = ErrorCode {
    code: "challenges_exhausted",
    status: Some(503),
    meaning: "too many signup challenges outstanding; retry shortly",
};
/// `invalid_record`.
pub const INVALID_RECORD: ErrorCode = ErrorCode {
    code: "invalid_record",
    status: Some(400),
    meaning: "the signup record does not decode, or its signature does not verify",
};
/// `challenge_wrong_node`.
pub const CHALLENGE_WRONG_NODE: ErrorCode = ErrorCode {
    code: "challenge_wrong_node",
    status: Some(400),
    meaning: "the signup record answers another node's challenge",
};
/// `challenge_unknown`.
pub const CHALLENGE_UNKNOWN: ErrorCode = ErrorCode {
    code: "challenge_unknown",
    status: Some(400),
    meaning: "this node never issued that challenge",
};
/// `challenge_expired`.
pub const CHALLENGE_EXPIRED: ErrorCode = ErrorCode {
    code: "challenge_expired",
    status: Some(400),
    meaning: "the challenge was answered after its time-to-live",
};
/// `challenge_replayed`.
pub const CHALLENGE_REPLAYED: ErrorCode = ErrorCode {
    code: "challenge_replayed",
    status: Some(409),
    meaning: "the challenge was already used (one attempt per challenge)",
};
/// `pow_required`.
pub const POW_REQUIRED: ErrorCode = ErrorCode {
    code: "pow_required",
    status: Some(403),
    meaning: "an unattested signup without enough proof of work",
};
/// `pow_invalid`.
pub const POW_INVALID: ErrorCode = ErrorCode {
    code: "pow_invalid",
    status: Some(403),
    meaning: "the proof of work does not check out",
};
/// `untrusted`.
pub const UNTRUSTED: ErrorCode = ErrorCode {
    code: "untrusted",
    status: Some(403),
    meaning: "the attestation or signup record does not verify here (unknown issuer, expired, revoked, ...)",
};
/// `unknown_account`.
pub const UNKNOWN_ACCOUNT: ErrorCode = ErrorCode {
    code: "unknown_account",
    status: Some(404),
    meaning: "the agent has not signed up at this node",
};
/// `bad_agent`.
pub const BAD_AGENT: ErrorCode = ErrorCode {
    code: "bad_agent",
    status: Some(400),
    meaning: "the agent in the path is not an Agora id",
};
/// `malformed_request`.
pub const MALFORMED_REQUEST: ErrorCode = ErrorCode {
    code: "malformed_request",
    status: Some(400),
    meaning: "the lease request is not base64url or not a well-formed message",
};
/// `malformed_approval`.
pub const MALFORMED_APPROVAL: ErrorCode = ErrorCode {
    code: "malformed_approval",
    status: Some(400),
    meaning: "the approval is not base64url or not a well-formed message",
};
/// `malformed_op`.
pub const MALFORMED_OP: ErrorCode = ErrorCode {
    code: "malformed_op",
    status: Some(400),
    meaning: "the lease operation is not base64url or not a well-formed message",
};
/// `bad_signature`.
pub const BAD_SIGNATURE: ErrorCode = ErrorCode {
    code: "bad_signature",
    status: Some(400),
    meaning: "a signature does not verify, or is not by the message's author",
};
/// `invalid`.
pub const INVALID: ErrorCode = ErrorCode {
    code: "invalid",
    status: Some(400),
    meaning: "the provider found the request invalid",
};
/// `bad_lease_id`.
pub const BAD_LEASE_ID: ErrorCode = ErrorCode {
    code: "bad_lease_id",
    status: Some(400),
    meaning: "not a lease id (64 hex digits)",
};
/// `malformed_grant`.
pub const MALFORMED_GRANT: ErrorCode = ErrorCode {
    code: "malformed_grant",
    status: Some(400),
    meaning: "the grant is not a base64url signed LeaseGrant",
};
/// `not_an_endpoint`.
pub const NOT_AN_ENDPOINT: ErrorCode = ErrorCode {
    code: "not_an_endpoint",
    status: Some(400),
    meaning: "the address is not one of the grant's tunnel endpoints",
};
/// `no_tunnel_endpoint`.
pub const NO_TUNNEL_ENDPOINT: ErrorCode = ErrorCode {
    code: "no_tunnel_endpoint",
    status: Some(409),
    meaning: "the provider signed no tunnel endpoint packets can be sent to (in the lease's \
              grant, or for a grantee in its current offer)",
};
/// `grant_expired`.
pub const GRANT_EXPIRED: ErrorCode = ErrorCode {
    code: "grant_expired",
    status: Some(409),
    meaning: "the owner's service grant is not valid now (not yet, or expired): ask the owner \
              for a new one",
};
/// `relay_busy`.
pub const RELAY_BUSY: ErrorCode = ErrorCode {
    code: "relay_busy",
    status: Some(503),
    meaning: "this node relays as many tunnel sessions as it allows (for all or for this agent); retry later",
};
/// `port_not_allowed`.
pub const PORT_NOT_ALLOWED: ErrorCode = ErrorCode {
    code: "port_not_allowed",
    status: Some(400),
    meaning: "the port is not among those the lease's capability opens (its `ports`)",
};
/// MCP (beside the agent): the lease's grant does not hold up.
pub const BAD_GRANT: ErrorCode = ErrorCode {
    code: "bad_grant",
    status: None,
    meaning: "the lease's grant as the node gave it does not verify, is not this agent's, or \
              is not signed by its provider: no tunnel is opened on its word",
};
/// MCP (beside the agent): a local tunnel could not be opened.
pub const TUNNEL_FAILED: ErrorCode = ErrorCode {
    code: "tunnel_failed",
    status: None,
    meaning: "the local tunnel could not be opened: the local address cannot be bound or the \
              provider's tunnel endpoint does not answer (the message says which)",
};
/// MCP (beside the agent): as many tunnels are open as one session allows.
pub const TOO_MANY_TUNNELS: ErrorCode = ErrorCode {
    code: "too_many_tunnels",
    status: None,
    meaning: "this MCP session has as many tunnels open as it allows; close one first",
};
/// MCP (beside the agent): no tunnel of this session listens there.
pub const UNKNOWN_TUNNEL: ErrorCode = ErrorCode {
    code: "unknown_tunnel",
    status: None,
    meaning: "no tunnel of this MCP session listens on that local address (see `list_tunnels`)",
};
/// `lease_mismatch`.
pub const LEASE_MISMATCH: ErrorCode = ErrorCode {
    code: "lease_mismatch",
    status: Some(400),
    meaning: "the signed operation is for another lease",
};
/// `wrong_op`.
pub const WRONG_OP: ErrorCode = ErrorCode {
    code: "wrong_op",
    status: Some(400),
    meaning: "the signed operation is of another kind",
};
/// `no_match`.
pub const NO_MATCH: ErrorCode = ErrorCode {
    code: "no_match",
    status: Some(409),
    meaning: "no candidate offer granted the lease; `attempts` says why, offer by offer",
};
/// `unauthorized`.
pub const UNAUTHORIZED: ErrorCode = ErrorCode {
    code: "unauthorized",
    status: Some(403),
    meaning: "not the agent's (or its delegate's) signature, or the delegation (or token) \
              does not allow the operation now",
};
/// `stale`.
pub const STALE: ErrorCode = ErrorCode {
    code: "stale",
    status: Some(409),
    meaning: "the signed request, operation or read proof is too old or from the future \
              (a read proof: more than five minutes from the node's clock)",
};
/// `replay`.
pub const REPLAY: ErrorCode = ErrorCode {
    code: "replay",
    status: Some(409),
    meaning: "the signed request or operation was already used",
};
/// `tier_limit`.
pub const TIER_LIMIT: ErrorCode = ErrorCode {
    code: "tier_limit",
    status: Some(409),
    meaning: "over the agent's tier limits",
};
/// `quota`.
pub const QUOTA: ErrorCode = ErrorCode {
    code: "quota",
    status: Some(409),
    meaning: "over the agent's credit quota",
};
/// `approval_required`.
pub const APPROVAL_REQUIRED: ErrorCode = ErrorCode {
    code: "approval_required",
    status: Some(409),
    meaning: "above the spending limit: the owner's signed approval is required",
};
/// `approval_invalid`.
pub const APPROVAL_INVALID: ErrorCode = ErrorCode {
    code: "approval_invalid",
    status: Some(409),
    meaning: "the approval does not verify or does not match",
};
/// `unknown_approval`.
pub const UNKNOWN_APPROVAL: ErrorCode = ErrorCode {
    code: "unknown_approval",
    status: Some(404),
    meaning: "no lease request waits for approval under that id at this node",
};
/// `not_pending`.
pub const NOT_PENDING: ErrorCode = ErrorCode {
    code: "not_pending",
    status: Some(409),
    meaning: "the request was already approved or refused",
};
/// `approval_timeout`.
pub const APPROVAL_TIMEOUT: ErrorCode = ErrorCode {
    code: "approval_timeout",
    status: Some(409),
    meaning: "the owner did not approve in time",
};
/// `unknown_lease`.
pub const UNKNOWN_LEASE: ErrorCode = ErrorCode {
    code: "unknown_lease",
    status: Some(404),
    meaning: "no such lease known here",
};
/// `ended`.
pub const ENDED: ErrorCode = ErrorCode {
    code: "ended",
    status: Some(409),
    meaning: "the lease has ended",
};
/// `capacity`.
pub const CAPACITY: ErrorCode = ErrorCode {
    code: "capacity",
    status: Some(409),
    meaning: "the provider lacks the capacity (in `attempts`; the gateway tries the next)",
};
/// `offer_mismatch`.
pub const OFFER_MISMATCH: ErrorCode = ErrorCode {
    code: "offer_mismatch",
    status: Some(409),
    meaning: "the request does not match the provider's current offer (in `attempts`)",
};
/// `unsupported`.
pub const UNSUPPORTED: ErrorCode = ErrorCode {
    code: "unsupported",
    status: Some(409),
    meaning: "the provider does not run that runtime or image (in `attempts`)",
};
/// `price`.
pub const PRICE: ErrorCode = ErrorCode {
    code: "price",
    status: Some(409),
    meaning: "the offer costs more than the request allows (in `attempts`)",
};
/// `policy`.
pub const POLICY: ErrorCode = ErrorCode {
    code: "policy",
    status: Some(409),
    meaning: "the provider's policy refuses it (in `attempts`)",
};
/// `lifetime`.
pub const LIFETIME: ErrorCode = ErrorCode {
    code: "lifetime",
    status: Some(409),
    meaning: "longer than the provider's longest lease (in `attempts`)",
};
/// `too_many_leases`.
pub const TOO_MANY_LEASES: ErrorCode = ErrorCode {
    code: "too_many_leases",
    status: Some(409),
    meaning: "the agent runs as many leases as its tier allows (in `attempts`)",
};
/// `unreachable`.
pub const UNREACHABLE: ErrorCode = ErrorCode {
    code: "unreachable",
    status: Some(502),
    meaning: "the provider did not answer",
};
/// `bad_answer`.
pub const BAD_ANSWER: ErrorCode = ErrorCode {
    code: "bad_answer",
    status: Some(502),
    meaning: "the provider's answer was not usable",
};
/// `timeout`.
pub const TIMEOUT: ErrorCode = ErrorCode {
    code: "timeout",
    status: Some(504),
    meaning: "the provider did not answer in time",
};

/// `bad_quote`.
pub const BAD_QUOTE: ErrorCode = ErrorCode {
    code: "bad_quote",
    status: Some(400),
    meaning: "the quote asks for the impossible (limit not 1 to 100, no image, zero vCPU or memory)",
};

/// `malformed_delegation`.
pub const MALFORMED_DELEGATION: ErrorCode = ErrorCode {
    code: "malformed_delegation",
    status: Some(400),
    meaning: "the delegation is not base64url of a signed delegation, or its signature does not verify",
};
/// `delegation_wrong_node`.
pub const DELEGATION_WRONG_NODE: ErrorCode = ErrorCode {
    code: "delegation_wrong_node",
    status: Some(400),
    meaning: "the delegation names another key as delegate: sign one to this node's id (`GET /v1/node`)",
};
/// `delegation_expired`.
pub const DELEGATION_EXPIRED: ErrorCode = ErrorCode {
    code: "delegation_expired",
    status: Some(400),
    meaning: "the delegation is not valid now (issued in the future, or expired)",
};
/// `delegation_reused`.
pub const DELEGATION_REUSED: ErrorCode = ErrorCode {
    code: "delegation_reused",
    status: Some(409),
    meaning: "the delegation was already exchanged for a token; each buys one: sign a new one",
};
/// `signup_required`.
pub const SIGNUP_REQUIRED: ErrorCode = ErrorCode {
    code: "signup_required",
    status: Some(400),
    meaning: "no signup record: send `signup` (the record from signing up elsewhere) or sign up at this node first",
};
/// `signup_mismatch`.
pub const SIGNUP_MISMATCH: ErrorCode = ErrorCode {
    code: "signup_mismatch",
    status: Some(400),
    meaning: "the signup record is another agent's than the delegation's",
};
/// `tokens_exhausted`.
pub const TOKENS_EXHAUSTED: ErrorCode = ErrorCode {
    code: "tokens_exhausted",
    status: Some(503),
    meaning: "too many live tokens, on this node or for this agent: revoke one or wait",
};
/// `bad_token`.
pub const BAD_TOKEN: ErrorCode = ErrorCode {
    code: "bad_token",
    status: Some(401),
    meaning: "no `Authorization: Bearer agt_…` token, or an unknown, revoked or expired one (tokens work only at the node that issued them)",
};
/// `proof_required`.
pub const PROOF_REQUIRED: ErrorCode = ErrorCode {
    code: "proof_required",
    status: Some(401),
    meaning: "listing an agent's leases needs proof that you are the agent: `proof`, a read \
              proof it signed for this node, or `Authorization: Bearer` with its token of this \
              node (`agora agent ps` and the `list_leases` tool sign one)",
};
/// `malformed_proof`.
pub const MALFORMED_PROOF: ErrorCode = ErrorCode {
    code: "malformed_proof",
    status: Some(400),
    meaning: "`proof` is not base64url of a signed read proof",
};
/// `bad_proof`.
pub const BAD_PROOF: ErrorCode = ErrorCode {
    code: "bad_proof",
    status: Some(401),
    meaning: "the read proof's signature does not verify or is not the agent's (or its \
              delegate's), or the proof is another agent's",
};
/// `proof_wrong_node`.
pub const PROOF_WRONG_NODE: ErrorCode = ErrorCode {
    code: "proof_wrong_node",
    status: Some(401),
    meaning: "the read proof was signed for another node: sign one naming this node \
              (`GET /v1/node`'s `id`)",
};
/// `token_scope`.
pub const TOKEN_SCOPE: ErrorCode = ErrorCode {
    code: "token_scope",
    status: None,
    meaning: "the token's delegation does not allow this operation now; sign a delegation that does",
};

/// `no_committee`.
pub const NO_COMMITTEE: ErrorCode = ErrorCode {
    code: "no_committee",
    status: Some(404),
    meaning: "this node has no quota committee (no genesis configured): the network runs \
              without committee-certified quota",
};
/// `committee_unreachable`.
pub const COMMITTEE_UNREACHABLE: ErrorCode = ErrorCode {
    code: "committee_unreachable",
    status: Some(503),
    meaning: "too few quota validators answered in time; retry",
};
/// `malformed_lock`.
pub const MALFORMED_LOCK: ErrorCode = ErrorCode {
    code: "malformed_lock",
    status: Some(400),
    meaning: "the lock is not base64url or not a well-formed signed chain op",
};
/// `bad_lock`.
pub const BAD_LOCK: ErrorCode = ErrorCode {
    code: "bad_lock",
    status: Some(400),
    meaning: "the lock is not a lock of the request's agent for this lease at one of its \
              candidates",
};
/// `malformed_top_up`.
pub const MALFORMED_TOP_UP: ErrorCode = ErrorCode {
    code: "malformed_top_up",
    status: Some(400),
    meaning: "the top-up is not base64url or not a well-formed signed chain op",
};
/// `bad_top_up`.
pub const BAD_TOP_UP: ErrorCode = ErrorCode {
    code: "bad_top_up",
    status: Some(400),
    meaning: "the top-up is not a top-up of the operation's agent for this lease at its \
              provider",
};

/// Every code, in the order documents list them.
pub const CATALOG: &[ErrorCode] = &[
    BAD_QUERY,
    BAD_PROVIDER,
    NO_OFFER,
    BAD_DIGEST,
    NO_ENTRY,
    UNKNOWN_PROVIDER,
    MALFORMED_SERVICE,
    STALE_SERVICE,
    SERVICES_FULL,
    BAD_GRANT_ID,
    NO_ROUTE,
    BAD_ARGUMENTS,
    KEY_REQUIRED,
    DELEGATION_REQUIRED,
    NODE_UNREACHABLE,
    BAD_REPLY,
    NOT_A_TOOL_YET,
    MALFORMED_BODY,
    BAD_REQUEST,
    BODY_TOO_LARGE,
    UNSUPPORTED_MEDIA_TYPE,
    METHOD_NOT_ALLOWED,
    UNAVAILABLE,
    STORE,
    STORE_ERROR,
    INTERNAL,
    RATE_LIMITED,
    CHALLENGES_EXHAUSTED,
    INVALID_RECORD,
    CHALLENGE_WRONG_NODE,
    CHALLENGE_UNKNOWN,
    CHALLENGE_EXPIRED,
    CHALLENGE_REPLAYED,
    POW_REQUIRED,
    POW_INVALID,
    UNTRUSTED,
    UNKNOWN_ACCOUNT,
    BAD_AGENT,
    NO_COMMITTEE,
    COMMITTEE_UNREACHABLE,
    MALFORMED_LOCK,
    BAD_LOCK,
    MALFORMED_TOP_UP,
    BAD_TOP_UP,
    BAD_QUOTE,
    MALFORMED_DELEGATION,
    DELEGATION_WRONG_NODE,
    DELEGATION_EXPIRED,
    DELEGATION_REUSED,
    SIGNUP_REQUIRED,
    SIGNUP_MISMATCH,
    TOKENS_EXHAUSTED,
    BAD_TOKEN,
    TOKEN_SCOPE,
    PROOF_REQUIRED,
    MALFORMED_PROOF,
    BAD_PROOF,
    PROOF_WRONG_NODE,
    MALFORMED_REQUEST,
    MALFORMED_APPROVAL,
    MALFORMED_OP,
    BAD_SIGNATURE,
    INVALID,
    BAD_LEASE_ID,
    LEASE_MISMATCH,
    WRONG_OP,
    MALFORMED_GRANT,
    NOT_AN_ENDPOINT,
    NO_TUNNEL_ENDPOINT,
    GRANT_EXPIRED,
    RELAY_BUSY,
    PORT_NOT_ALLOWED,
    BAD_GRANT,
    TUNNEL_FAILED,
    TOO_MANY_TUNNELS,
    UNKNOWN_TUNNEL,
    NO_MATCH,
    UNAUTHORIZED,
    STALE,
    REPLAY,
    TIER_LIMIT,
    QUOTA,
    APPROVAL_REQUIRED,
    APPROVAL_INVALID,
    APPROVAL_TIMEOUT,
    UNKNOWN_APPROVAL,
    NOT_PENDING,
    UNKNOWN_LEASE,
    ENDED,
    CAPACITY,
    OFFER_MISMATCH,
    UNSUPPORTED,
    PRICE,
    POLICY,
    LIFETIME,
    TOO_MANY_LEASES,
    UNREACHABLE,
    BAD_ANSWER,
    TIMEOUT,
];

/// The catalog entry for `code`.
pub fn lookup(code: &str) -> Option<&'static ErrorCode> {
    CATALOG.iter().find(|c| c.code == code)
}

/// The body of every API error: `{"error":{"code","message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "Error")]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// A stable code and a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorDetail {
    /// Stable machine code, snake_case (see the error catalog in `/llms.txt`).
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
}

impl ErrorBody {
    /// A body with `code` and `message`.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                code: code.to_owned(),
                message: message.into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case_and_explained() {
        for (i, c) in CATALOG.iter().enumerate() {
            assert!(
                c.code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{}",
                c.code
            );
            assert!(!c.meaning.is_empty());
            assert!(
                CATALOG.iter().skip(i + 1).all(|d| d.code != c.code),
                "{} twice",
                c.code
            );
            if let Some(s) = c.status {
                assert!((400..600).contains(&s), "{}: {s}", c.code);
            }
        }
    }

    /// Every code an HTTP handler passes to `ApiError` is in the catalog: the documents are
    /// generated from the catalog, so a code missing here would be undocumented.
    #[test]
    fn every_code_the_handlers_use_is_catalogued() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut used = Vec::new();
        collect_codes(&src, &mut used);
        assert!(
            used.iter().any(|(c, _)| c == "bad_query"),
            "scan found nothing"
        );
        for (code, file) in used {
            assert!(
                lookup(&code).is_some(),
                "error code {code:?} (used in {file}) is not in surface::errors::CATALOG"
            );
        }
    }

    fn collect_codes(dir: &std::path::Path, out: &mut Vec<(String, String)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if !path.ends_with("surface") {
                    collect_codes(&path, out);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            // A constructor call whose first argument is a string literal, on one line or more.
            for (i, _) in text.match_indices("ApiError::") {
                let rest = &text[i + "ApiError::".len()..];
                let Some(open) = rest.find('(') else { continue };
                let ctor = &rest[..open];
                if ctor.is_empty() || !ctor.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                    continue;
                }
                let mut args = rest[open + 1..].trim_start();
                // `ApiError::new(status, "code", …)`: the code is the second argument.
                if ctor == "new" {
                    let Some(comma) = args.find(',') else {
                        continue;
                    };
                    args = args[comma + 1..].trim_start();
                }
                if let Some(lit) = args.strip_prefix('"')
                    && let Some(end) = lit.find('"')
                {
                    out.push((lit[..end].to_owned(), path.display().to_string()));
                }
            }
        }
    }
}
