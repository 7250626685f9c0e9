//! `grant_service`, served beside the registry's operations (it is no HTTP route: a grant
//! goes from the owner to the grantee, not to a node).
//!
//! Beside the agent (`agora mcp --key FILE`) it reads the lease's provider-signed grant
//! from the node (`GET /v1/leases/{id}`, checked here: the provider's signature, this
//! lease, this agent) and signs a [`ServiceGrant`](agora_protocol::service::ServiceGrant)
//! for another agent's key with the agent's own key, as `agora agent grant` does
//! ([`crate::agent::services::grant`]). The answer is the grant (base64url), to hand to the
//! grantee by any channel, and its id, which `revoke_grant` names. On a node (`/mcp`) it is
//! not served: a grant is the owner's word, and no delegate signs one.

use agora_protocol::AgoraId;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rmcp::model::{CallToolResult, Tool, ToolAnnotations};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{AgentKey, Backend, Place, failure, root};
use crate::agent::services;
use crate::surface::errors::{BAD_ARGUMENTS, ErrorBody, KEY_REQUIRED};
use crate::surface::sign::{owned_lease, service_error};

/// Signs a grant for another agent's key.
pub const GRANT: &str = "grant_service";

/// `grant_service` arguments.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantServiceInput {
    /// The lease id: 64 hex digits (one of the agent's running leases).
    #[schemars(pattern(r"^[0-9a-fA-F]{64}$"))]
    pub lease: String,
    /// The agent let in: its Agora id (`agora1…`), the key its tunnel presents.
    pub to: AgoraId,
    /// The workload ports it may reach (each one of the lease's ports).
    #[schemars(length(min = 1, max = 16))]
    pub ports: Vec<u16>,
    /// How long the grant works, seconds (default a day; the lease's end ends it anyway).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub ttl_secs: Option<u64>,
}

/// The tool served at `place`: only beside the agent, with its key.
pub(super) fn tools(place: &Place) -> Vec<Tool> {
    match place {
        Place::Local(Some(_)) => vec![
            Tool::new(
                GRANT,
                "Let another agent's key reach ports of one of your leases (a service you \
                 published with `publish_service`): signs a grant with your own key, naming \
                 the grantee (`to`), the ports and an expiry. Answers `grant` (base64url): \
                 hand it to the grantee, who runs `agora tunnel --grant GRANT -L \
                 127.0.0.1:0:PORT` (the provider checks it on every stream), and `id`, which \
                 `revoke_grant` names to shut the grantee out again. Nothing is sent to a \
                 node.",
                root(GrantServiceInput::json_schema),
            )
            .with_title("Grant another agent access to a published service")
            .with_annotations(
                ToolAnnotations::with_title("Grant another agent access to a published service")
                    .read_only(false)
                    .destructive(false)
                    .idempotent(false)
                    .open_world(true),
            ),
        ],
        Place::Local(None) | Place::Node(_) => Vec::new(),
    }
}

/// Runs `grant_service` if `name` is it (`None` otherwise), reading the lease from `backend`.
pub(super) async fn call<B: Backend>(
    place: &Place,
    backend: &B,
    name: &str,
    args: &Map<String, Value>,
) -> Option<CallToolResult> {
    if name != GRANT {
        return None;
    }
    let answer = match place {
        Place::Local(Some(key)) => match serde_json::from_value(Value::Object(args.clone())) {
            Ok(input) => grant(backend, key, &input).await,
            Err(e) => Err(ErrorBody::new(
                BAD_ARGUMENTS.code,
                format!("`{name}` arguments: {e}"),
            )),
        },
        Place::Local(None) => Err(ErrorBody::new(
            KEY_REQUIRED.code,
            format!("`{name}` signs with the agent's own key: start `agora mcp` with --key FILE"),
        )),
        Place::Node(_) => Err(ErrorBody::new(
            BAD_ARGUMENTS.code,
            format!(
                "no tool `{name}` here: a grant is signed with the owner's own key, never a \
                 delegate's; run `agora mcp --key FILE` beside the agent"
            ),
        )),
    };
    Some(match answer {
        Ok(value) => CallToolResult::structured(value),
        Err(body) => failure(&body),
    })
}

/// Beside the agent: checks the lease and signs the grant.
async fn grant<B: Backend>(
    backend: &B,
    key: &AgentKey,
    input: &GrantServiceInput,
) -> Result<Value, ErrorBody> {
    let lease = owned_lease(backend, &input.lease, key.identity.agora_id()).await?;
    let signed = services::grant(
        &key.identity,
        lease.body(),
        input.to,
        &input.ports,
        input.ttl_secs.map(std::time::Duration::from_secs),
        crate::clock::now(),
    )
    .map_err(|e| service_error(&e))?;
    let g = signed.body();
    tracing::info!(lease = %g.lease, grant = %g.id, grantee = %g.grantee, "service grant signed");
    let text = URL_SAFE_NO_PAD.encode(signed.as_bytes());
    let port = g.ports.first().copied().unwrap_or_default();
    Ok(json!({
        "grant": text,
        "id": g.id.to_string(),
        "lease": g.lease.to_string(),
        "grantee": g.grantee.to_string(),
        "ports": g.ports,
        "expires_at": g.expires_at.to_string(),
        "command": format!("agora tunnel --grant {text} -L 127.0.0.1:0:{port}"),
        "note": "Hand `grant` to the grantee (any channel): with its own key it runs `command`. \
                 `revoke_grant` with this lease and `id` shuts it out again.",
    }))
}

#[cfg(test)]
#[path = "grants_tests.rs"]
mod tests;
