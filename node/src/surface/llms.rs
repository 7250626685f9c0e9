//! `GET /llms.txt`: a concise guide for language models, generated from the registry behind
//! a short hand-written preamble.
//!
//! The journey (sign up, find offers, run, exec, logs, stop) lists only the steps this node
//! serves, so the guide never promises an operation that is not there.

use std::fmt::Write as _;

use serde_json::Value;

use super::errors::CATALOG;
use super::{Auth, Group, Operation, find, operations};

const PREAMBLE: &str = "\
# Agora

> Agora is a peer-to-peer compute marketplace. Providers sell spare capacity (sandboxes, \
containers, microVMs); AI agents rent it for workloads, through any node they can reach. \
Every node serves the same HTTP API, the same MCP tools, and this guide.

- Identity: an agent is an ed25519 key (`agora id new`); its id is `agora1…`. Operations that \
act for an agent (signup, run, exec, logs, extend, stop) carry the agent's own signature, made \
locally with its key, so no node can act in its name. Listing an agent's leases needs its signed \
read proof for the node (or its token there); one lease by id, offers and services need no key.
- Money: prices are integers in micro-credits (1 credit = 1,000,000 µcr) per second. Above \
your spending limit, `run` and `extend` answer 202 with `approval` when your attestation names \
an owner: it waits for the owner's signed approval (`get_approval` shows its `state`).
- Trust: every offer carries `signed`, the provider's signed offer (base64url); verify it \
rather than trusting the node that relayed it.
- Errors: `{\"error\":{\"code\":\"…\",\"message\":\"…\"}}`; branch on `code`, show `message`.
- Ledger: every node keeps a replica of a signed evidence log (signups, lease grants, final \
usage receipts, revocations), synced between nodes; `ledger_state` (`GET /v1/ledger/state`) \
shows its state hash, equal on nodes that hold the same entries, and counts by kind of fact.
- Services: agents publish ports of their leases (MCP servers, web apps, TCP services) as \
signed records (`agora agent publish LEASE --port P --name N --kind mcp`); `list_services` \
finds them. Using one needs its owner's signed grant for your key (`agora agent grant LEASE \
--to YOUR_ID --port P`, revocable with `agora agent revoke`); then `agora tunnel --grant FILE \
-L 127.0.0.1:0:P` forwards a local port to it, TLS end to end with your key.
";

/// The journey, in order: (operation name, what the step is for).
const JOURNEY: &[(&str, &str)] = &[
    (
        "signup",
        "Sign up once: your key, optional attestations, a signed challenge",
    ),
    (
        "list_offers",
        "Find an offer: filter by runtime, image, CPU, memory, price, region",
    ),
    (
        "run",
        "Run a workload on offers you chose (`quote` lists candidates for constraints)",
    ),
    ("exec", "Run a command inside it"),
    ("logs", "Read its output"),
    (
        "get_tunnel",
        "Reach its ports through a tunnel (beside you, the MCP tool `open_tunnel` opens it)",
    ),
    ("stop", "Stop it and get the usage receipt"),
];

/// The whole text.
pub fn text() -> String {
    let mut out = String::from(PREAMBLE);
    out.push_str("\n## Journey\n\n");
    for (i, (name, what)) in JOURNEY.iter().enumerate() {
        let n = i + 1;
        match find(name) {
            Some(op) => {
                let _ = writeln!(
                    out,
                    "{n}. {what}: `{}` ({} {}).",
                    op.name,
                    op.method.as_str(),
                    op.path
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "{n}. {what}: `{name}` (not served by this node version)."
                );
            }
        }
    }

    let signing: Vec<String> = operations()
        .iter()
        .filter(|op| op.tool && op.sign.is_some())
        .map(|op| format!("`{}`", op.name))
        .collect();
    let by_cli: Vec<String> = operations()
        .iter()
        .filter(|op| op.tool && op.auth == Auth::Agent && op.sign.is_none())
        .map(|op| format!("`{}`", op.name))
        .collect();
    let _ = write!(
        out,
        "\n## MCP\n\n- Beside the agent, over stdio: `agora mcp --node http://NODE:PORT [--key \
         FILE]`. Read-only tools need no key. With `--key` (created when missing), the tools \
         that act for the agent sign locally; a new agent calls `signup` first (its record is \
         saved as `FILE.signup`): {}.{}\n",
        if signing.is_empty() {
            "none yet".to_owned()
        } else {
            signing.join(", ")
        },
        if by_cli.is_empty() {
            String::new()
        } else {
            format!(
                " Not yet MCP tools beside the agent (use the `agora agent` CLI): {}.",
                by_cli.join(", ")
            )
        }
    );
    out.push_str(
        "\
- On any node, streamable HTTP (stateless): `POST /mcp`. It serves the read-only tools to \
anyone. The tools that act for an agent work there under a token of that node: the agent \
signs a delegation naming the node (`GET /v1/node`'s `id`) as delegate, with the operations \
it allows, a spend cap and an expiry, and exchanges it at `POST /v1/tokens` (or runs `agora \
agent token --node URL --key FILE`); send the token as `Authorization: Bearer agt_…`. The \
node then signs as the delegate and providers check the chain. Without a token they answer \
`delegation_required`.\n\
- Tunnels, three tools that are not HTTP routes. Beside the agent (with `--key`): \
`open_tunnel {lease, port, bind?}` checks the provider-signed grant, dials the provider's QUIC \
endpoint and opens a local TCP listener (default `127.0.0.1`, a free port) forwarding every \
connection to that workload port; it answers `local`, the address to connect to, open for the \
MCP session; `close_tunnel {local}` and `list_tunnels`. On a node's `/mcp`, `open_tunnel` \
cannot give you a local port: it answers the connection details of `get_tunnel` and \
`command`, the `agora tunnel` command to run beside you.\n\
- Tool names are the operation names below; tool arguments are the operation's parameters as \
one JSON object; results are the JSON the HTTP API returns.\n\
\n## HTTP\n\n\
- OpenAPI 3.1: `GET /openapi.json` (generated from the same definitions as this guide).\n",
    );

    for group in Group::ALL {
        let ops: Vec<&Operation> = operations().iter().filter(|op| op.group == group).collect();
        if ops.is_empty() {
            continue;
        }
        let _ = write!(out, "\n## {}\n\n{}\n\n", title(group), group.about());
        for op in ops {
            operation(&mut out, op);
        }
    }

    out.push_str("\n## Error codes\n\n");
    for e in CATALOG {
        let status = e
            .status
            .map_or_else(|| "MCP".to_owned(), |s| format!("HTTP {s}"));
        let _ = writeln!(out, "- `{}` ({status}): {}", e.code, e.meaning);
    }
    out
}

fn title(group: Group) -> &'static str {
    match group {
        Group::Node => "Node",
        Group::Market => "Market",
        Group::Agent => "Agent",
        Group::Leases => "Leases",
        Group::Meta => "Meta",
    }
}

fn operation(out: &mut String, op: &Operation) {
    let tool = if op.tool {
        format!("tool `{}`", op.name)
    } else {
        "HTTP only".to_owned()
    };
    let key = match (op.auth, op.sign) {
        (Auth::Agent, Some(_)) => ", signed by the agent",
        (Auth::Agent, None) => ", signed by the agent: `agora agent` CLI",
        (Auth::None, _) => "",
    };
    let _ = writeln!(
        out,
        "### `{}`: {} {} ({tool}{key})\n\n{}.",
        op.name,
        op.method.as_str(),
        op.path,
        op.summary
    );
    if !op.description.is_empty() {
        let _ = writeln!(out, "{}", op.description);
    }
    if let Some(input) = op.input {
        let mut g = super::generator("/$defs");
        let schema = Value::from((input.schema.inline)(&mut g));
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(props) = schema.get("properties").and_then(Value::as_object)
            && !props.is_empty()
            && op.tool
        {
            out.push_str("\nArguments:\n");
            for (name, prop) in props {
                let req = if required.contains(&name.as_str()) {
                    ", required"
                } else {
                    ""
                };
                let doc = prop
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .replace('\n', " ");
                let _ = writeln!(out, "- `{name}` ({}{req}): {doc}", kind(prop, &g));
            }
        }
    }
    let errors = op.all_errors();
    if !errors.is_empty() {
        let codes: Vec<String> = errors.iter().map(|e| format!("`{}`", e.code)).collect();
        let _ = writeln!(out, "\nErrors: {}.", codes.join(", "));
    }
    out.push('\n');
}

/// A short name for a property's type (`string`, `integer`, `sandbox|docker|microvm`, …).
fn kind(prop: &Value, g: &schemars::SchemaGenerator) -> String {
    if let Some(r) = prop.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r);
        return g
            .definitions()
            .get(name)
            .map_or_else(|| name.to_owned(), |def| kind(def, g));
    }
    if let Some(values) = prop.get("enum").and_then(Value::as_array) {
        let names: Vec<&str> = values.iter().filter_map(Value::as_str).collect();
        return names.join("|");
    }
    if let Some(alts) = prop
        .get("anyOf")
        .or_else(|| prop.get("oneOf"))
        .and_then(Value::as_array)
    {
        let alts: Vec<&Value> = alts
            .iter()
            .filter(|a| a.get("type").is_none_or(|t| t != "null"))
            .collect();
        // An enum with documented variants: one constant per alternative.
        let consts: Vec<&str> = alts
            .iter()
            .filter_map(|a| a.get("const").and_then(Value::as_str))
            .collect();
        if !consts.is_empty() && consts.len() == alts.len() {
            return consts.join("|");
        }
        let kinds: Vec<String> = alts.iter().map(|a| kind(a, g)).collect();
        return kinds.join(" or ");
    }
    match prop.get("type") {
        Some(Value::String(t)) if t == "array" => {
            let item = prop
                .get("items")
                .map_or_else(|| "any".to_owned(), |i| kind(i, g));
            format!("list of {item}")
        }
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => {
            let names: Vec<&str> = ts
                .iter()
                .filter_map(Value::as_str)
                .filter(|t| *t != "null")
                .collect();
            names.join(" or ")
        }
        _ => "any".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guide_names_every_tool_and_error_code() {
        let t = text();
        assert!(t.starts_with("# Agora\n"));
        for op in operations() {
            assert!(t.contains(&format!("`{}`", op.name)), "{} missing", op.name);
        }
        for e in CATALOG {
            assert!(t.contains(&format!("`{}`", e.code)), "{} missing", e.code);
        }
        assert!(t.contains("agora mcp --node"));
        assert!(t.contains("POST /mcp"));
        for tool in ["`open_tunnel", "`close_tunnel", "`list_tunnels`"] {
            assert!(t.contains(tool), "{tool} missing");
        }
        // The list_offers arguments, with their types.
        assert!(t.contains("- `runtime` (sandbox|docker|microvm)"), "{t}");
        assert!(t.contains("- `label` (list of string)"), "{t}");
        assert!(t.contains("- `sort` (price|newest|reputation)"), "{t}");
    }
}
