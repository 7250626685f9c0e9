//! The OpenAPI 3.1 document, generated from the registry (`GET /openapi.json`).
//!
//! Schemas are JSON Schema 2020-12 (OpenAPI 3.1's dialect) from `schemars`; named types
//! become `#/components/schemas/…`, among them `Error`, the body of every error. Path
//! parameters and, for GET and DELETE, query parameters come from the properties of an
//! operation's input type; for POST and PUT the remaining properties are the JSON body.
//! Extensions: `x-agora-auth` (`none` or `agent`: the agent signs the request itself),
//! `x-agora-streams`, `x-mcp-tool` (the MCP tool's name, when there is one).

use std::collections::BTreeMap;

use schemars::SchemaGenerator;
use serde_json::{Map, Value, json};

use super::errors::ErrorBody;
use super::{Auth, Group, Operation, Output, operations};

/// What the document says Agora is.
const DESCRIPTION: &str = "Agora is a peer-to-peer compute marketplace: providers sell \
capacity, AI agents rent workloads through any node. Every node serves this API. Errors are \
`{\"error\":{\"code\",\"message\"}}` with a stable code (see `/llms.txt` for the catalog). \
Operations marked `x-agora-auth: agent` carry the agent's own signature; the same operations \
are MCP tools (`x-mcp-tool`) over stdio (`agora mcp --node URL [--key FILE]`) and at `/mcp`.";

/// The whole document.
pub fn document() -> Value {
    let mut g = super::generator("/components/schemas");
    let error_ref = Value::from(g.subschema_for::<ErrorBody>());
    let mut paths: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    for op in operations() {
        let item = operation(op, &mut g, &error_ref);
        paths
            .entry(op.path)
            .or_default()
            .insert(op.method.as_lower().to_owned(), item);
    }
    let schemas = g.take_definitions(true);
    let tags: Vec<Value> = Group::ALL
        .iter()
        .filter(|grp| operations().iter().any(|op| op.group == **grp))
        .map(|grp| json!({ "name": grp.as_str(), "description": grp.about() }))
        .collect();
    json!({
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "Agora node API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": DESCRIPTION,
            "license": { "name": "Apache-2.0", "identifier": "Apache-2.0" },
        },
        "tags": tags,
        "paths": paths,
        "components": { "schemas": schemas },
    })
}

fn operation(op: &Operation, g: &mut SchemaGenerator, error_ref: &Value) -> Value {
    let mut out = Map::new();
    out.insert("operationId".into(), op.name.into());
    out.insert("summary".into(), op.summary.into());
    let mut description = op.description.to_owned();
    if op.auth == Auth::Agent {
        description.push_str(
            " Needs the agent's signature: the request is signed with the agent's key (the \
             `agora` CLI and `agora mcp --key` do this locally).",
        );
    }
    if !description.is_empty() {
        out.insert("description".into(), description.into());
    }
    out.insert("tags".into(), json!([op.group.as_str()]));

    let (params, body) = arguments(op, g);
    if !params.is_empty() {
        out.insert("parameters".into(), params.into());
    }
    if let Some(body) = body {
        out.insert(
            "requestBody".into(),
            json!({ "required": true, "content": { "application/json": { "schema": body } } }),
        );
    } else if let Some(content_type) = op.raw_body {
        out.insert(
            "requestBody".into(),
            json!({
                "required": true,
                "content": { content_type: { "schema": { "type": "string", "format": "binary" } } },
            }),
        );
    }
    out.insert("responses".into(), responses(op, g, error_ref));
    out.insert(
        "x-agora-auth".into(),
        match op.auth {
            Auth::None => "none",
            Auth::Agent => "agent",
        }
        .into(),
    );
    out.insert("x-agora-streams".into(), op.streams().into());
    if op.tool {
        out.insert("x-mcp-tool".into(), op.name.into());
    }
    Value::Object(out)
}

/// Path and query parameters, and the JSON body schema.
fn arguments(op: &Operation, g: &mut SchemaGenerator) -> (Vec<Value>, Option<Value>) {
    let Some(input) = op.input else {
        return (Vec::new(), None);
    };
    let schema = Value::from((input.schema.inline)(g));
    let props = schema
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let path_params: Vec<&str> = op.path_params().collect();
    let mut params = Vec::new();
    let mut body_props = Map::new();
    let mut body_required = Vec::new();
    for (name, prop) in &props {
        let in_path = path_params.contains(&name.as_str());
        if in_path || op.args_in_query() {
            let (description, schema) = without_description(non_null(prop.clone()));
            let mut p = Map::new();
            p.insert("name".into(), name.clone().into());
            p.insert("in".into(), if in_path { "path" } else { "query" }.into());
            p.insert(
                "required".into(),
                (in_path || required.contains(&name.as_str())).into(),
            );
            if let Some(d) = description {
                p.insert("description".into(), d);
            }
            p.insert("schema".into(), schema);
            params.push(Value::Object(p));
        } else {
            body_props.insert(name.clone(), prop.clone());
            if required.contains(&name.as_str()) {
                body_required.push(Value::from(name.clone()));
            }
        }
    }
    let body = if op.args_in_query() || (body_props.is_empty() && !props.is_empty()) {
        None
    } else if path_params.is_empty() {
        Some(Value::from((input.schema.reference)(g)))
    } else {
        Some(json!({
            "type": "object",
            "properties": body_props,
            "required": body_required,
            "additionalProperties": false,
        }))
    };
    (params, body)
}

fn responses(op: &Operation, g: &mut SchemaGenerator, error_ref: &Value) -> Value {
    let mut out = Map::new();
    let ok = match op.output {
        Output::Json(t) => json!({
            "description": op.summary,
            "content": { "application/json": { "schema": Value::from((t.reference)(g)) } },
        }),
        Output::Text(ct) => json!({
            "description": op.summary,
            "content": { ct: { "schema": { "type": "string" } } },
        }),
        Output::Empty => json!({ "description": op.summary }),
        Output::Stream { content_type, item } => {
            let schema =
                item.map_or_else(|| json!({ "type": "string" }), |t| (t.reference)(g).into());
            json!({
                "description": format!("{} (streamed: one item after another)", op.summary),
                "content": { content_type: { "schema": schema } },
            })
        }
    };
    out.insert(op.ok_status.to_string(), ok);
    let mut by_status: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    for e in op.all_errors() {
        if let Some(status) = e.status {
            by_status
                .entry(status)
                .or_default()
                .push(format!("`{}`: {}", e.code, e.meaning));
        }
    }
    for (status, lines) in by_status {
        out.insert(
            status.to_string(),
            json!({
                "description": lines.join("; "),
                "content": { "application/json": { "schema": error_ref } },
            }),
        );
    }
    Value::Object(out)
}

/// A schema without its `null` alternative: query and path parameters are absent rather
/// than null.
fn non_null(schema: Value) -> Value {
    let Value::Object(mut map) = schema else {
        return schema;
    };
    if map.get("default").is_some_and(Value::is_null) {
        map.remove("default");
    }
    if let Some(Value::Array(types)) = map.get("type") {
        let kept: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
        let ty = match kept.as_slice() {
            [one] => one.clone(),
            _ => Value::Array(kept),
        };
        map.insert("type".into(), ty);
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(alts)) = map.get(key) {
            let kept: Vec<Value> = alts
                .iter()
                .filter(|a| a.get("type").is_none_or(|t| t != "null"))
                .cloned()
                .collect();
            if let [one] = kept.as_slice() {
                let one = one.clone();
                map.remove(key);
                if let Value::Object(inner) = one {
                    for (k, v) in inner {
                        map.entry(k).or_insert(v);
                    }
                }
            } else {
                map.insert(key.into(), Value::Array(kept));
            }
        }
    }
    Value::Object(map)
}

fn without_description(schema: Value) -> (Option<Value>, Value) {
    match schema {
        Value::Object(mut map) => {
            let d = map.remove("description");
            (d, Value::Object(map))
        }
        other => (None, other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::surface::Method;

    /// Every `$ref` in `v` that points into the document resolves.
    fn check_refs(doc: &Value, v: &Value, at: &str) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    if k == "$ref" {
                        let target = child.as_str().unwrap_or_default();
                        let pointer = target
                            .strip_prefix('#')
                            .unwrap_or_else(|| panic!("{at}: external reference {target}"));
                        assert!(
                            doc.pointer(pointer).is_some(),
                            "{at}: {target} does not resolve"
                        );
                    } else {
                        check_refs(doc, child, &format!("{at}/{k}"));
                    }
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    check_refs(doc, child, &format!("{at}/{i}"));
                }
            }
            _ => {}
        }
    }

    #[test]
    fn document_is_json_openapi_3_1_with_resolvable_schemas() {
        let doc = document();
        let text = doc.to_string();
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, doc);
        assert_eq!(doc["openapi"], "3.1.0");
        assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
        check_refs(&doc, &doc, "#");
        assert!(doc.pointer("/components/schemas/Error").is_some());
        assert!(doc.pointer("/components/schemas/OfferView").is_some());
    }

    #[test]
    fn every_operation_is_in_the_document_with_its_schemas() {
        let doc = document();
        for op in operations() {
            let item = &doc["paths"][op.path][op.method.as_lower()];
            assert_eq!(
                item["operationId"],
                op.name,
                "{} {}",
                op.method.as_str(),
                op.path
            );
            let ok = &item["responses"][op.ok_status.to_string()];
            assert!(
                ok["content"].is_object() || (op.ok_status == 204 && ok.is_object()),
                "{}: no success content",
                op.name
            );
            for e in op.all_errors() {
                if let Some(s) = e.status {
                    let r = &item["responses"][s.to_string()];
                    assert!(
                        r["description"]
                            .as_str()
                            .unwrap_or_default()
                            .contains(e.code),
                        "{}: {} not documented under {s}",
                        op.name,
                        e.code
                    );
                    assert_eq!(
                        r["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/Error"
                    );
                }
            }
            for p in op.path_params() {
                let params = item["parameters"].as_array().unwrap();
                assert!(
                    params
                        .iter()
                        .any(|x| x["name"] == p && x["in"] == "path" && x["required"] == true),
                    "{}: path parameter {p}",
                    op.name
                );
            }
        }
        // The list_offers filters are query parameters, without null alternatives.
        let params = doc["paths"]["/v1/offers"]["get"]["parameters"]
            .as_array()
            .unwrap();
        let names: Vec<&str> = params.iter().filter_map(|p| p["name"].as_str()).collect();
        for n in [
            "runtime",
            "image",
            "min_cpu",
            "min_memory_mib",
            "max_price",
            "region",
            "tier",
            "label",
            "sort",
            "limit",
        ] {
            assert!(names.contains(&n), "{n} missing from {names:?}");
        }
        assert!(
            !doc["paths"]["/v1/offers"]["get"]
                .to_string()
                .contains("\"null\"")
        );
    }

    /// Every route the router declares (`.route("/path", get(..).post(..))` anywhere under
    /// `src/`) is an operation in the document, and every operation is routed.
    #[test]
    fn router_and_registry_agree() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut routes = Vec::new();
        scan_routes(&src, &mut routes);
        assert!(
            routes
                .iter()
                .any(|(p, m)| p == "/v1/offers" && *m == Some(Method::Get)),
            "route scan found nothing: {routes:?}"
        );
        let doc = document();
        for (path, method) in &routes {
            let item = &doc["paths"][path.as_str()];
            assert!(item.is_object(), "route {path} is not in the registry");
            if let Some(m) = method {
                assert!(
                    item[m.as_lower()].is_object(),
                    "route {} {path} is not in the registry",
                    m.as_str()
                );
            }
        }
        for op in operations() {
            assert!(
                routes
                    .iter()
                    .any(|(p, m)| p == op.path && m.is_none_or(|m| m == op.method)),
                "{} {} is in the registry but not routed",
                op.method.as_str(),
                op.path
            );
        }
    }

    /// `(path, method)` for each `.route(..)` (`None` for `route_service`: any method).
    fn scan_routes(dir: &std::path::Path, out: &mut Vec<(String, Option<Method>)>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                // The surface's own docs and tests quote route calls.
                if !path.ends_with("surface") {
                    scan_routes(&path, out);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (kw, any_method) in [(".route(", false), (".route_service(", true)] {
                for (i, _) in text.match_indices(kw) {
                    let rest = &text[i + kw.len()..];
                    let Some(lit) = rest.trim_start().strip_prefix('"') else {
                        continue;
                    };
                    let route = lit[..lit.find('"').unwrap()].to_owned();
                    if any_method {
                        out.push((route, None));
                        continue;
                    }
                    // The call's arguments: up to the matching close parenthesis.
                    let mut depth = 1usize;
                    let mut end = rest.len();
                    for (j, c) in rest.char_indices() {
                        match c {
                            '(' => depth += 1,
                            ')' => {
                                depth -= 1;
                                if depth == 0 {
                                    end = j;
                                    break;
                                }
                            }
                            _ => {}
                        }
                    }
                    let args = &rest[..end];
                    for (name, m) in [
                        ("get", Method::Get),
                        ("post", Method::Post),
                        ("put", Method::Put),
                        ("delete", Method::Delete),
                    ] {
                        let found = args.match_indices(&format!("{name}(")).any(|(k, _)| {
                            k == 0
                                || !args[..k]
                                    .chars()
                                    .last()
                                    .is_some_and(|c| c.is_alphanumeric() || c == '_')
                        });
                        if found {
                            out.push((route.clone(), Some(m)));
                        }
                    }
                }
            }
        }
    }
}
