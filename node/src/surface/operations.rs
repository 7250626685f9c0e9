//! The registry's contents: every route of the node's API, once.
//!
//! To add an operation: write its handler in `crate::http` (one file per resource), route it
//! in `http::router`, and add one entry here naming its input and output types, its error
//! codes (add new ones to [`super::errors`]) and, if it acts for an agent, the function that
//! signs its request locally (`agent_signed`). `/openapi.json`, `/llms.txt` and the MCP tools
//! follow; the surface tests fail until router and registry agree.

use super::errors::*;
use super::types::{
    AccountInput, AnyObject, ApprovalInput, ApproveInput, ExecInput, ExtendInput, FilesInput,
    FilesPut, GetLedgerEntryInput, GetOfferInput, GetProviderInput, Health, JsonRpcMessage,
    LeaseInput, LeaseOpInput, ListApprovalsInput, ListLeasesInput, ListOffersInput, LogsInput,
    NoInput, OpenApiDocument, QuotaOpInput, QuoteInput, RelayInput, RunInput, SignupInput,
    StreamEvent, TokenInput,
};
use super::{Group, Operation, sign};
use crate::http::offers::{OfferList, OfferView};
use crate::http::providers::ProviderView;
use crate::http::services::{
    ListServicesInput, PublishServiceInput, Published, RevokeGrantInput, ServiceList,
};
use crate::http::tokens::TokenView;
use crate::http::tunnel::{TunnelInput, TunnelView};
use crate::http::{NodeInfo, PeerList};

/// Prometheus' text exposition (what `/metrics` answers).
/// What an agent-signed operation relayed to a lease's provider (extend, stop) may answer.
const LEASE_OP_ERRORS: &[ErrorCode] = &[
    MALFORMED_BODY,
    MALFORMED_OP,
    BAD_SIGNATURE,
    BAD_LEASE_ID,
    LEASE_MISMATCH,
    WRONG_OP,
    UNKNOWN_LEASE,
    ENDED,
    UNAUTHORIZED,
    STALE,
    REPLAY,
    UNREACHABLE,
    TIMEOUT,
];

/// What a streamed operation (exec, logs, files) may answer before its stream starts.
const STREAM_OP_ERRORS: &[ErrorCode] = &[
    MALFORMED_BODY,
    MALFORMED_OP,
    BAD_SIGNATURE,
    BAD_LEASE_ID,
    LEASE_MISMATCH,
    WRONG_OP,
    UNKNOWN_LEASE,
    ENDED,
    UNAUTHORIZED,
    STALE,
    REPLAY,
    INVALID,
    TIER_LIMIT,
    UNAVAILABLE,
    UNREACHABLE,
    TIMEOUT,
    BAD_ANSWER,
];

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub(super) fn all() -> Vec<Operation> {
    vec![
        // The node.
        Operation::get("node_info", "/v1/node", Group::Node)
            .summary("Describe this node")
            .describe(
                "The node's Agora id and libp2p peer id, version, roles, region, listen \
                 addresses (usable as bootstrap addresses), peer and offer counts, topics, start \
                 time and, for a provider, which runtimes it can run (and why others are \
                 missing) and how many workloads are running.",
            )
            .input::<NoInput>()
            .output::<NodeInfo>(),
        Operation::get("list_peers", "/v1/peers", Group::Node)
            .summary("List the node's connected peers")
            .describe(
                "Connected libp2p peers with their addresses, ping round trip, gossipsub score \
                 and Agora application score (penalties for stale, flooding or invalid input).",
            )
            .input::<NoInput>()
            .output::<PeerList>(),
        Operation::get("ledger_state", "/v1/ledger/state", Group::Node)
            .summary("Where this node's evidence log stands")
            .describe(
                "The replicated ledger's evidence log as this node holds it: the state hash \
                 (equal on two nodes exactly when they hold the same entries), entry and byte \
                 counts, counts by kind of fact (signup, lease, usage, rating, revocation, \
                 equivocation), the heads, entries waiting for parents, equivocating authors \
                 and this node's own chain. Every entry is a signed fact anyone can verify.",
            )
            .input::<NoInput>()
            .output::<crate::ledger::LedgerState>()
            .errors(&[UNAVAILABLE]),
        Operation::get("get_ledger_entry", "/v1/ledger/entries/{digest}", Group::Node)
            .summary("Get one entry of the evidence log by its digest")
            .describe(
                "One accepted entry of this node's evidence log: its author, sequence number, \
                 previous entry and parents, time, kind of fact, and `entry`, the author's \
                 signed entry (base64url) to verify yourself. A signup's answer names its entry \
                 (`ledger_entry`); `no_entry` until this node accepted it.",
            )
            .input::<GetLedgerEntryInput>()
            .output::<crate::http::ledger::LedgerEntryView>()
            .errors(&[BAD_DIGEST, NO_ENTRY, UNAVAILABLE]),
        Operation::get("health", "/healthz", Group::Node)
            .summary("Check that the node runs")
            .describe("Answers `{\"status\":\"ok\"}` while the node runs.")
            .output::<Health>()
            .not_a_tool(),
        Operation::get("metrics", "/metrics", Group::Node)
            .summary("Prometheus metrics")
            .describe(
                "Counters and gauges in the OpenMetrics text format: gossip verdicts, offers, \
                 peers, workloads.",
            )
            .text(OPENMETRICS)
            .not_a_tool(),
        // The market.
        Operation::get("list_offers", "/v1/offers", Group::Market)
            .summary("Find offers: what providers sell, filtered and sorted")
            .describe(
                "Offers in this node's book that match every filter given: runtime, image, free \
                 vCPU and memory, price, region, tier, labels. Sorted by price (of the requested \
                 resources, or one vCPU and 1 GiB), newest first, or by reputation (highest \
                 trust first, then price; see `get_provider`). Prices are micro-credits per \
                 second. Each offer carries `signed`, the provider's signed offer (base64url), so \
                 you need not trust this node: verify it yourself. Pick one and name its \
                 provider when you run a workload.",
            )
            .input::<ListOffersInput>()
            .output::<OfferList>()
            .errors(&[BAD_QUERY]),
        Operation::get("get_offer", "/v1/offers/{provider}", Group::Market)
            .summary("Get one provider's current offer")
            .describe(
                "The provider's current offer as this node sees it, with `signed` (the \
                 provider's signed offer, base64url) to verify.",
            )
            .input::<GetOfferInput>()
            .output::<OfferView>()
            .errors(&[BAD_PROVIDER, NO_OFFER]),
        Operation::get("get_provider", "/v1/providers/{provider}", Group::Market)
            .summary("Get a provider's reputation, its history and its offer")
            .describe(
                "What this node knows about a provider: its reputation from the evidence log \
                 (per-epoch EigenTrust seeded by the committee's validators), for the current \
                 epoch (provisional: judged up to `computed_at`) and the latest completed one: \
                 trust and share in parts per billion, rank of how many, leases judged, ran, \
                 failed, never ran, paid micro-credits, praise and complaints; its score in \
                 each completed epoch kept (`history`, newest first); and its current offer. \
                 A node without a genesis has no reputation and says why \
                 (`reputation.available` false, `reputation.reason`). A provider with no lease \
                 judged in an epoch has no score there (`score` null): newcomers are neither \
                 good nor bad.",
            )
            .input::<GetProviderInput>()
            .output::<ProviderView>()
            .errors(&[BAD_PROVIDER, UNKNOWN_PROVIDER]),
        // Published services: ports of leases their agents advertise.
        Operation::get("list_services", "/v1/services", Group::Market)
            .summary("Find published services: MCP servers, web apps, TCP services in leases")
            .describe(
                "Services agents published from their leases, as this node's directory holds \
                 them (live gossip; records last at most a day and their owners republish), \
                 filtered by kind (`mcp`, `http`, `tcp`), exact name, owner, provider or \
                 lease, sorted by name. Each carries `signed` (the owner's signed record) and \
                 `capability` (the provider's signed capability inside it, which proves the \
                 owner runs that lease): verify them yourself. To use one, ask its owner for a \
                 grant to your key (`agora agent grant`), then `agora tunnel LEASE --grant \
                 FILE -L 127.0.0.1:0:PORT` forwards a local port to it.",
            )
            .input::<ListServicesInput>()
            .output::<ServiceList>()
            .errors(&[BAD_QUERY]),
        Operation::post("publish_service", "/v1/services", Group::Market)
            .summary("Publish a service: an owner-signed record of one port of its lease")
            .describe(
                "`record`: the lease's agent signs a `ServiceRecord` (lease, provider, port, \
                 name, kind, description, tunnel endpoints, the lease's provider-signed \
                 capability, `seq`, a TTL within the lease); `withdrawal`: it retracts one. \
                 The node checks it as it checks gossip, keeps it and publishes it on \
                 `agora/v1/services` (nodes that join later get it by sync). `agora agent \
                 publish` builds and signs it; as an MCP tool beside the agent it takes the \
                 lease, port, name, kind, description and TTL (or `withdraw`) and signs the \
                 record with the agent's own key (no delegate may), from the lease's \
                 provider-signed grant. Then let others in with `grant_service`.",
            )
            .input::<PublishServiceInput>()
            .output::<Published>()
            .errors(&[
                MALFORMED_SERVICE,
                BAD_SIGNATURE,
                STALE_SERVICE,
                SERVICES_FULL,
                RATE_LIMITED,
                UNAVAILABLE,
            ])
            .agent_signed_as::<sign::PublishServiceToolInput>(sign::publish_service),
        // The agent's account. Answers are described in README ("Agents: signup"); their
        // schemas become typed when the handlers' types derive `JsonSchema`.
        Operation::get("signup_challenge", "/v1/signup/challenge", Group::Agent)
            .summary("Get a fresh signup challenge")
            .describe(
                "A challenge to answer in a signup record (this node's id, a nonce, the time) \
                 and the proof of work an unattested agent must show.",
            )
            .output::<AnyObject>()
            .errors(&[RATE_LIMITED, CHALLENGES_EXHAUSTED, UNAVAILABLE])
            .not_a_tool(),
        Operation::post("signup", "/v1/signup", Group::Agent)
            .summary("Sign up: the agent's signed record answering a challenge")
            .describe(
                "Answers `{account, signup_record}`: the agent's tier and limits, and the \
                 record to keep (beside the key, as `KEYFILE.signup`) for lease requests. \
                 `agora agent signup` does all of it.",
            )
            .input::<SignupInput>()
            .output::<AnyObject>()
            .errors(&[
                RATE_LIMITED,
                MALFORMED_BODY,
                BODY_TOO_LARGE,
                UNSUPPORTED_MEDIA_TYPE,
                INVALID_RECORD,
                CHALLENGE_WRONG_NODE,
                CHALLENGE_UNKNOWN,
                CHALLENGE_EXPIRED,
                CHALLENGE_REPLAYED,
                POW_REQUIRED,
                POW_INVALID,
                UNTRUSTED,
                UNAVAILABLE,
            ])
            .agent_signed_as::<sign::SignupToolInput>(sign::signup),
        Operation::get("get_account", "/v1/accounts/{agent}", Group::Agent)
            .summary("Get an agent's account at this node")
            .describe("The agent's tier, limits and signup record, if it signed up here.")
            .input::<AccountInput>()
            .output::<AnyObject>()
            .errors(&[BAD_AGENT, UNKNOWN_ACCOUNT, UNAVAILABLE]),
        Operation::get(
            "get_quota_account",
            "/v1/accounts/{agent}/quota",
            Group::Agent,
        )
        .summary("Get an agent's quota account at the quota committee")
        .describe(
            "Balance (credited, granted by the free tier, spent, locked, available), open \
             locks, and `next_seq` and `head`: the position and `prev` of the agent's next \
             signed op. Asked of the committee's validators (the highest proven position \
             wins).",
        )
        .input::<AccountInput>()
        .output::<crate::agent::quota::QuotaAccount>()
        .errors(&[BAD_AGENT, NO_COMMITTEE, COMMITTEE_UNREACHABLE]),
        Operation::post(
            "submit_quota_op",
            "/v1/accounts/{agent}/quota",
            Group::Agent,
        )
        .summary("Certify an agent-signed credit or free-tier claim")
        .describe(
            "The agent signs a `ChainOp` crediting its attestation's spending limit, or a \
             `FreeTierClaim` of a pool slot of the current epoch; the node collects the \
             validators' votes and answers the certificate and the account. `agora agent \
             signup` does it.",
        )
        .input::<QuotaOpInput>()
        .output::<AnyObject>()
        .creates()
        .errors(&[
            MALFORMED_BODY,
            MALFORMED_OP,
            BAD_AGENT,
            NO_COMMITTEE,
            QUOTA,
            COMMITTEE_UNREACHABLE,
        ]),
        // Tokens: this node acting for an agent under its delegation.
        Operation::post("create_token", "/v1/tokens", Group::Agent)
            .summary("Exchange a delegation to this node for a bearer token")
            .describe(
                "The agent signs a delegation naming this node (`GET /v1/node`'s `id`) as \
                 delegate: which operations, a spend cap per lease, an expiry. Each delegation \
                 buys one token, which works at this node only, for at most a day, until the \
                 delegation ends or it is revoked. Send it as `Authorization: Bearer agt_…` to \
                 `/mcp`, whose tools then act for the agent (the node signs as delegate; \
                 providers check the chain and scope). `agora agent token` does it all.",
            )
            .input::<TokenInput>()
            .output::<TokenView>()
            .creates()
            .errors(&[
                MALFORMED_BODY,
                BODY_TOO_LARGE,
                UNSUPPORTED_MEDIA_TYPE,
                MALFORMED_DELEGATION,
                INVALID_RECORD,
                DELEGATION_WRONG_NODE,
                DELEGATION_EXPIRED,
                DELEGATION_REUSED,
                SIGNUP_REQUIRED,
                SIGNUP_MISMATCH,
                TOKENS_EXHAUSTED,
                UNAVAILABLE,
                STORE,
            ])
            .agent_signed_by_cli()
            .not_a_tool(),
        Operation::get("get_token", "/v1/tokens/self", Group::Agent)
            .summary("What the request's bearer token stands for")
            .describe("The agent, the operations and spend cap it allowed, when it ends.")
            .input::<NoInput>()
            .output::<TokenView>()
            .errors(&[BAD_TOKEN])
            .not_a_tool(),
        Operation::delete("revoke_token", "/v1/tokens/self", Group::Agent)
            .summary("Revoke the request's bearer token at once")
            .describe("The token stops working at this node at once.")
            .input::<NoInput>()
            .no_content()
            .errors(&[BAD_TOKEN])
            .not_a_tool(),
        // Leases. Answers are described in README ("Agents: leases").
        Operation::post("quote", "/v1/leases/quote", Group::Leases)
            .summary("Quote: the offers that would run a workload, cheapest first")
            .describe(
                "What the agent wants (runtime, image, vCPU, memory, disk, lifetime, price, \
                 region, tier); answers the matching offers with each one's price per second \
                 and most cost, ready to name as candidates in a lease request. Reserves \
                 nothing.",
            )
            .input::<QuoteInput>()
            .output::<AnyObject>()
            .errors(&[MALFORMED_BODY, BAD_QUOTE, UNSUPPORTED_MEDIA_TYPE])
            .reads_only(),
        Operation::post("run", "/v1/leases", Group::Leases)
            .summary("Run a workload: an agent-signed lease request naming candidate offers")
            .describe(
                "The node sends the request to each candidate provider in turn and answers the \
                 provider-signed grant (201) or, when none granted, `no_match` with every \
                 attempt's reason. Under a quota committee each candidate is tried with the \
                 certificate of its own lock (`lock`, then `fallback_locks`), and a refusing \
                 provider's lock is released with its signed refusal. `agora agent run` \
                 builds and signs the request and the locks.",
            )
            .input::<RunInput>()
            .output::<AnyObject>()
            .creates()
            .errors(&[
                MALFORMED_BODY,
                MALFORMED_REQUEST,
                MALFORMED_APPROVAL,
                MALFORMED_LOCK,
                BAD_LOCK,
                NO_COMMITTEE,
                COMMITTEE_UNREACHABLE,
                BAD_SIGNATURE,
                NO_MATCH,
                UNTRUSTED,
                UNAUTHORIZED,
                STALE,
                REPLAY,
                TIER_LIMIT,
                QUOTA,
                APPROVAL_REQUIRED,
                APPROVAL_INVALID,
                UNAVAILABLE,
            ])
            .agent_signed_as::<sign::RunToolInput>(sign::run),
        Operation::get("list_leases", "/v1/leases", Group::Leases)
            .summary("List an agent's leases known to this node: to the agent only")
            .describe(
                "The leases this node relayed for the agent and those it runs for it as a \
                 provider (then with `quota`: what the agent spent and has locked here). They \
                 show images, commands and spending, so the node lists them only with proof \
                 that the caller is the agent: `proof`, a `ReadProof` the agent (or its \
                 delegate, under a delegation allowing `status`) signed for this node within \
                 five minutes, or the agent's bearer token of this node. `agora agent ps` \
                 signs it. `get_lease` needs no proof: a lease id is unguessable, so knowing \
                 it is the capability to read that lease.",
            )
            .input::<ListLeasesInput>()
            .output::<AnyObject>()
            .errors(&[
                BAD_QUERY,
                PROOF_REQUIRED,
                MALFORMED_PROOF,
                BAD_PROOF,
                PROOF_WRONG_NODE,
                STALE,
                UNAUTHORIZED,
                BAD_TOKEN,
                STORE,
                UNAVAILABLE,
            ])
            .agent_signed_as::<sign::ListLeasesToolInput>(sign::list_leases),
        Operation::get("get_lease", "/v1/leases/{id}", Group::Leases)
            .summary("Get a lease: state, grant and latest signed receipt")
            .describe(
                "Anyone with the lease id may read it: the id is the SHA-256 of the agent's \
                 signed request, unguessable, so knowing it is the capability to read it. \
                 Refreshed from the provider when it answers (`fresh`). When it does not, \
                 `provider_contact` says so (`reachable: false`, `unreachable_since`, `error`); \
                 after `[leases] provider_lost_after` (or past the lease's expiry) the lease \
                 shows `state: ended` with `ended.reason: provider_lost` and \
                 `ended.source: gateway` (this node's unsigned verdict; the provider's last \
                 signed receipt stays). A provider that answers again wins.",
            )
            .input::<LeaseInput>()
            .output::<AnyObject>()
            .errors(&[BAD_LEASE_ID, UNKNOWN_LEASE, STORE]),
        Operation::get("get_tunnel", "/v1/leases/{id}/tunnel", Group::Leases)
            .summary("What opening a tunnel to a lease's workload ports needs")
            .describe(
                "The provider's id (the key to pin: its TLS certificate must prove it), its QUIC \
                 tunnel endpoints (UDP) and ALPN, the provider-signed capability (base64url) \
                 and the workload ports it opens, the expiry, the signed grant to verify all of \
                 it against, and `command`: `agora tunnel ID -L 127.0.0.1:0:PORT`, run beside \
                 the agent, opens local TCP listeners forwarding to those ports (a QUIC stream \
                 per connection, TLS end to end with the agent's own key) and prints their \
                 addresses. With `port`, the command forwards that port only. Beside the agent \
                 the MCP tool `open_tunnel` opens the listener itself. An ended or expired \
                 lease answers `ended`.",
            )
            .input::<TunnelInput>()
            .output::<TunnelView>()
            .errors(&[
                BAD_LEASE_ID,
                BAD_QUERY,
                PORT_NOT_ALLOWED,
                UNKNOWN_LEASE,
                ENDED,
                STORE,
                UNAVAILABLE,
            ]),
        Operation::post("extend", "/v1/leases/{id}/extend", Group::Leases)
            .summary("Extend a lease: an agent-signed operation")
            .describe(
                "Answers the lease with its re-signed grant. `agora agent extend` signs the \
                 operation; it, and the MCP tool beside the agent, then republish the agent's \
                 services on the lease with the re-signed capability (`republished`), so \
                 tunnels of agents it granted outlive the old expiry. Under a quota committee \
                 the extension is paid by the agent's top-up lock (`top_up`), which this node \
                 has certified; the provider checks it covers the extension. Over the agent's \
                 spending limit (or its top-up over the balance) with an owner named, it \
                 answers 202 with `approval` (`kind: extension`): the extension waits for the \
                 owner as a lease request does.",
            )
            .input::<ExtendInput>()
            .output::<AnyObject>()
            .errors(LEASE_OP_ERRORS)
            .more_errors(&[
                LIFETIME,
                QUOTA,
                NO_COMMITTEE,
                COMMITTEE_UNREACHABLE,
                MALFORMED_TOP_UP,
                BAD_TOP_UP,
            ])
            .agent_signed_as::<sign::ExtendToolInput>(sign::extend)
            .after_success(sign::republish_services),
        Operation::delete("stop", "/v1/leases/{id}", Group::Leases)
            .summary("Stop a lease: an agent-signed operation; answers the final signed receipt")
            .describe(
                "`agora agent stop` signs the operation. It, and the MCP tool (beside the agent \
                 or at `/mcp` under a token), then countersign the final receipt \
                 (`acknowledge`; the tool's `acknowledged`).",
            )
            .input::<LeaseOpInput>()
            .output::<AnyObject>()
            .errors(LEASE_OP_ERRORS)
            .agent_signed_as::<sign::LeaseToolInput>(sign::stop)
            .after_success(sign::acknowledge_receipt),
        Operation::post("acknowledge", "/v1/leases/{id}/ack", Group::Leases)
            .summary("Acknowledge a lease's final receipt: an agent-signed operation")
            .describe(
                "The agent (or its delegate allowed to `stop`) countersigns the provider's \
                 final receipt of an ended lease the provider still keeps; the provider \
                 records the receipt with the acknowledgement in the evidence log (reputation \
                 counts acknowledged leases) and answers the lease with its \
                 `acknowledgement`. The same acknowledgement again answers the lease; another \
                 one is a `replay`. `agora agent stop` and `agora agent status` send it; as an \
                 MCP tool it takes the lease `id`.",
            )
            .input::<LeaseOpInput>()
            .output::<AnyObject>()
            .errors(LEASE_OP_ERRORS)
            .more_errors(&[INVALID, UNAVAILABLE])
            .agent_signed_as::<sign::LeaseToolInput>(sign::acknowledge),
        Operation::delete("revoke_grant", "/v1/leases/{id}/grants/{grant}", Group::Leases)
            .summary("Revoke a service grant: an agent-signed operation")
            .describe(
                "The lease's provider refuses the grant (`agora agent grant` printed its id) \
                 from now on and cuts the tunnel streams open under it at once; answers the \
                 lease. `agora agent revoke LEASE GRANT_ID` signs the operation; as an MCP tool \
                 it takes the lease `id` and the `grant` id.",
            )
            .input::<RevokeGrantInput>()
            .output::<AnyObject>()
            .errors(&[
                MALFORMED_OP,
                BAD_SIGNATURE,
                BAD_LEASE_ID,
                BAD_GRANT_ID,
                LEASE_MISMATCH,
                WRONG_OP,
                UNKNOWN_LEASE,
                ENDED,
                UNAUTHORIZED,
                STALE,
                REPLAY,
                POLICY,
                UNREACHABLE,
                TIMEOUT,
            ])
            .agent_signed_as::<sign::RevokeGrantToolInput>(sign::revoke_grant),
        Operation::post("relay", "/v1/leases/{id}/relay", Group::Leases)
            .summary("Relay a lease's tunnel through this node: an agent-signed operation")
            .describe(
                "For an agent that cannot reach its provider's tunnel endpoint: this node opens \
                 a UDP port (`relay`) and forwards the agent's QUIC packets, unread, to the \
                 provider endpoint the provider signed into the grant, and the answers back. \
                 Dial `relay` as if it were the provider: TLS stays end to end (the provider's \
                 key stays pinned) and the provider checks the capability on every stream. \
                 The session answers only the first address that sends to it and ends at the \
                 lease's expiry or after `idle_timeout_secs` without packets. Needs the \
                 agent's own signature (not a delegate's). `agora tunnel --relay` uses it; \
                 it falls back to it by itself when the provider is unreachable. A grantee \
                 (an agent the owner let in with a service grant) signs its own `relay` \
                 operation and sends the owner's `service_grant`, the published record's \
                 `capability` and the `port` it reaches: its session goes to an endpoint the \
                 provider signed (the lease's grant, or the provider's offer) until the grant \
                 or the capability ends; `agora tunnel --grant` does it by itself.",
            )
            .input::<RelayInput>()
            .output::<crate::http::relay::RelayView>()
            .creates()
            .errors(&[
                MALFORMED_BODY,
                MALFORMED_OP,
                MALFORMED_GRANT,
                BAD_SIGNATURE,
                BAD_LEASE_ID,
                LEASE_MISMATCH,
                WRONG_OP,
                UNKNOWN_LEASE,
                ENDED,
                UNAUTHORIZED,
                STALE,
                REPLAY,
                NOT_AN_ENDPOINT,
                NO_TUNNEL_ENDPOINT,
                PORT_NOT_ALLOWED,
                GRANT_EXPIRED,
                RELAY_BUSY,
                UNAVAILABLE,
            ])
            .agent_signed_by_cli(),
        Operation::post("exec", "/v1/leases/{id}/exec", Group::Leases)
            .summary("Run a command in a lease's workload: an agent-signed operation")
            .describe(
                "Streams NDJSON: `stdout`/`stderr` lines (`text`, or `base64` for bytes that are \
                 not UTF-8), then `{\"type\":\"exit\",\"code\":N}`, or `error` when it broke \
                 off. Input goes in `stdin` (the signed operation must say `stdin: true`). \
                 `agora agent exec` signs the operation.",
            )
            .input::<ExecInput>()
            .stream::<StreamEvent>("application/x-ndjson")
            .errors(STREAM_OP_ERRORS)
            .agent_signed_as::<sign::ExecToolInput>(sign::exec),
        Operation::get("logs", "/v1/leases/{id}/logs", Group::Leases)
            .summary("Read a lease's workload output: an agent-signed operation")
            .describe(
                "Streams NDJSON: `stdout`/`stderr` lines, then `{\"type\":\"end\"}`. With \
                 `follow` in the signed operation it keeps streaming until the workload ends. \
                 `agora agent logs` signs the operation.",
            )
            .input::<LogsInput>()
            .stream::<StreamEvent>("application/x-ndjson")
            .errors(STREAM_OP_ERRORS)
            .agent_signed_as::<sign::LeaseToolInput>(sign::logs),
        Operation::put("put_files", "/v1/leases/{id}/files", Group::Leases)
            .summary("Upload files into a lease's workload: a tar stream, agent-signed")
            .describe(
                "The body is a tar stream (any content type; `application/x-tar` by custom), unpacked under the directory the signed operation \
                 names (created if missing); capped by the agent's tier (`tier_limit`). \
                 `agora agent files put` signs the operation and packs the files.",
            )
            .input::<FilesInput>()
            .raw_body("application/octet-stream")
            .output::<FilesPut>()
            .errors(STREAM_OP_ERRORS)
            .agent_signed_by_cli(),
        Operation::get("get_files", "/v1/leases/{id}/files", Group::Leases)
            .summary("Download a file or directory of a lease's workload as a tar stream")
            .describe(
                "Answers `application/x-tar`; a transfer that breaks off midway is cut short, \
                 never ended cleanly. Capped by the agent's tier. `agora agent files get` signs \
                 the operation and unpacks the files.",
            )
            .input::<FilesInput>()
            .bytes("application/x-tar")
            .errors(STREAM_OP_ERRORS)
            .agent_signed_by_cli(),
        // Owners' approvals of spending above an agent's limit.
        Operation::get("list_approvals", "/v1/approvals", Group::Leases)
            .summary("List lease requests waiting for their owner's approval")
            .describe(
                "Requests over their agent's spending limit whose attestation names an owner \
                 wait here (the lease request or extension answered 202 with `approval`). Each \
                 shows its `kind` (`lease` or `extension`), the owner, the most it can cost, \
                 what it runs (or which lease it extends and by how much) and `request`, the \
                 agent's signed request (an extension's signed operation, and `top_up` under a \
                 committee). Answered and expired ones stay listed for an hour. `agora approvals \
                 watch --owner-key FILE` follows them.",
            )
            .input::<ListApprovalsInput>()
            .output::<AnyObject>()
            .errors(&[BAD_QUERY, STORE]),
        Operation::get("get_approval", "/v1/approvals/{id}", Group::Leases)
            .summary("Get a waiting lease request and where it is")
            .describe(
                "`state` is `pending`, `approved` (with `lease`), `refused` (with `reason`) or \
                 `expired` (`reason: approval_timeout`): what an agent polls after a 202.",
            )
            .input::<ApprovalInput>()
            .output::<AnyObject>()
            .errors(&[BAD_LEASE_ID, UNKNOWN_APPROVAL, STORE]),
        Operation::post("approve", "/v1/approvals/{id}", Group::Leases)
            .summary("Approve a waiting lease request: the owner's signed approval")
            .describe(
                "The node relays the request again with the approval; answers like a lease \
                 request (201 with the lease), or for an extension like `extend` (200 with the \
                 lease). `agora approve ID --owner-key FILE` signs it.",
            )
            .input::<ApproveInput>()
            .output::<AnyObject>()
            .creates()
            .errors(&[
                MALFORMED_BODY,
                MALFORMED_APPROVAL,
                BAD_SIGNATURE,
                BAD_LEASE_ID,
                UNKNOWN_APPROVAL,
                NOT_PENDING,
                APPROVAL_TIMEOUT,
                APPROVAL_INVALID,
                NO_MATCH,
                UNTRUSTED,
                QUOTA,
                STORE,
            ]),
        // The surface itself.
        Operation::get("openapi", "/openapi.json", Group::Meta)
            .summary("This API as an OpenAPI 3.1 document")
            .describe("Generated from the same registry as the MCP tools and /llms.txt.")
            .output::<OpenApiDocument>()
            .not_a_tool(),
        Operation::get("llms_txt", "/llms.txt", Group::Meta)
            .summary("A concise guide to this API for language models")
            .describe("What Agora is, the agent's journey, every operation and error code.")
            .text("text/plain; charset=utf-8")
            .not_a_tool(),
        Operation::post("mcp", "/mcp", Group::Meta)
            .summary("The MCP endpoint (streamable HTTP)")
            .describe(
                "Model Context Protocol over streamable HTTP, stateless: POST one JSON-RPC \
                 message, get the answer as JSON. Serves the read-only tools; with \
                 `Authorization: Bearer` (a token from `POST /v1/tokens`) the tools that act for \
                 the agent too, within its delegation; without one they answer \
                 `delegation_required`.",
            )
            .input::<JsonRpcMessage>()
            .output::<JsonRpcMessage>()
            .not_a_tool(),
    ]
}
