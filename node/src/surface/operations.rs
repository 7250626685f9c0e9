//! The registry's contents: every route of the node's API, once.
//!
//! To add an operation: write its handler in `crate::http` (one file per resource), route it
//! in `http::router`, and add one entry here naming its input and output types, its error
//! codes (add new ones to [`super::errors`]) and, if it acts for an agent, the function that
//! signs its request locally (`agent_signed`). `/openapi.json`, `/llms.txt` and the MCP tools
//! follow; the surface tests fail until router and registry agree.

use super::errors::*;
use super::types::{
    AccountInput, AnyObject, GetOfferInput, Health, JsonRpcMessage, LeaseInput, LeaseOpInput,
    ListLeasesInput, ListOffersInput, NoInput, OpenApiDocument, QuoteInput, RunInput, SignupInput,
};
use super::{Group, Operation};
use crate::http::offers::{OfferList, OfferView};
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
                 resources, or one vCPU and 1 GiB) or newest first. Prices are micro-credits per \
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
            .agent_signed_by_cli(),
        Operation::get("get_account", "/v1/accounts/{agent}", Group::Agent)
            .summary("Get an agent's account at this node")
            .describe("The agent's tier, limits and signup record, if it signed up here.")
            .input::<AccountInput>()
            .output::<AnyObject>()
            .errors(&[BAD_AGENT, UNKNOWN_ACCOUNT, UNAVAILABLE]),
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
                 attempt's reason. `agora agent run` builds and signs the request.",
            )
            .input::<RunInput>()
            .output::<AnyObject>()
            .creates()
            .errors(&[
                MALFORMED_BODY,
                MALFORMED_REQUEST,
                MALFORMED_APPROVAL,
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
            .agent_signed_by_cli(),
        Operation::get("list_leases", "/v1/leases", Group::Leases)
            .summary("List an agent's leases known to this node")
            .describe(
                "The leases this node relayed for the agent and those it runs for it as a \
                 provider (then with `quota`: what the agent spent and has locked here).",
            )
            .input::<ListLeasesInput>()
            .output::<AnyObject>()
            .errors(&[BAD_QUERY, STORE]),
        Operation::get("get_lease", "/v1/leases/{id}", Group::Leases)
            .summary("Get a lease: state, grant and latest signed receipt")
            .describe("Refreshed from the provider when it answers (`fresh`).")
            .input::<LeaseInput>()
            .output::<AnyObject>()
            .errors(&[BAD_LEASE_ID, UNKNOWN_LEASE, STORE]),
        Operation::post("extend", "/v1/leases/{id}/extend", Group::Leases)
            .summary("Extend a lease: an agent-signed operation")
            .describe(
                "Answers the lease with its re-signed grant. `agora agent extend` signs the \
                 operation.",
            )
            .input::<LeaseOpInput>()
            .output::<AnyObject>()
            .errors(LEASE_OP_ERRORS)
            .agent_signed_by_cli(),
        Operation::delete("stop", "/v1/leases/{id}", Group::Leases)
            .summary("Stop a lease: an agent-signed operation; answers the final signed receipt")
            .describe("`agora agent stop` signs the operation.")
            .input::<LeaseOpInput>()
            .output::<AnyObject>()
            .errors(LEASE_OP_ERRORS)
            .agent_signed_by_cli(),
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
                 message, get the answer as JSON. Serves the read-only tools; tools that act for \
                 an agent answer `delegation_required` here (use `agora mcp --key FILE` beside \
                 the agent instead).",
            )
            .input::<JsonRpcMessage>()
            .output::<JsonRpcMessage>()
            .not_a_tool(),
    ]
}
