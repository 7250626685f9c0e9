//! The agent-facing surface on a real node: the generated OpenAPI document and `/llms.txt`,
//! `agora mcp` over stdio and `/mcp` over streamable HTTP, checked by independent
//! implementations: the official Python MCP SDK, `openapi-spec-validator` and a bounded
//! `schemathesis` run (installed into a venv by `scripts/lib.sh` or on first use; see
//! `agora_tests::python`).

// Test code: failing loudly is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use agora_tests::node::{NodeProc, http_get, http_get_text, http_json, http_raw, wait_for};
use agora_tests::python::{python_venv, scripts_dir};
use agora_tests::{agora_bin, stderr, stdout};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

/// A provider and gateway on the sandbox runtime, waiting until its own offer is in its book.
fn provider(dir: &Path) -> NodeProc {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        "roles = [\"provider\", \"gateway\"]\nregion = \"eu\"\n\n[provider]\nvcpu = 2\n\
         memory_mib = 2048\ndisk_mib = 4096\nprices = { vcpu = 100, memory_gib = 10 }\n",
    )
    .unwrap();
    let node = NodeProc::start(dir, &["--config".into(), config.display().to_string()]);
    let id = node.id.clone();
    if wait_for(WAIT, || {
        (node.get(&format!("/v1/offers/{id}")).0 == 200).then_some(())
    })
    .is_none()
    {
        panic!(
            "the provider's own offer never reached its book; log:\n{}",
            node.log()
        );
    }
    node
}

/// Runs `cmd` to completion within `limit` (killed and reported otherwise).
fn output_within(cmd: &mut Command, limit: Duration) -> std::process::Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if rx.recv_timeout(limit).is_err() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    });
    let out = child.wait_with_output().unwrap();
    let _ = tx.send(());
    out
}

fn base(node: &NodeProc) -> String {
    format!("http://{}", node.http)
}

#[test]
fn documents_are_served_and_every_documented_route_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let node = provider(&tmp.path().join("p"));

    let (status, doc) = node.get("/openapi.json");
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/healthz",
        "/v1/node",
        "/v1/peers",
        "/v1/offers",
        "/v1/offers/{provider}",
        "/metrics",
        "/openapi.json",
        "/llms.txt",
        "/mcp",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from /openapi.json"
        );
    }
    assert!(doc.pointer("/components/schemas/Error").is_some());

    // Every documented GET answers with a documented status and content type (path
    // parameters filled with this node's id).
    for (path, item) in paths {
        let Some(get) = item.get("get") else { continue };
        let url = path.replace("{provider}", &node.id);
        let (status, body) = http_get_text(node.http, &url);
        assert_ne!(status, 404, "GET {url}: {body}");
        let documented = &get["responses"][status.to_string()];
        assert!(
            documented.is_object(),
            "GET {url}: status {status} is not documented"
        );
        if documented["content"]["application/json"].is_object() {
            serde_json::from_str::<Value>(&body)
                .unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {body}"));
        }
    }
    // Unknown routes answer with the documented error shape.
    let (status, err) = node.get("/v1/nope");
    assert_eq!(status, 404);
    assert_eq!(err["error"]["code"], "no_route");

    let (status, llms) = http_get_text(node.http, "/llms.txt");
    assert_eq!(status, 200);
    assert!(llms.starts_with("# Agora"), "{llms}");
    for needle in [
        "list_offers",
        "get_offer",
        "agora mcp --node",
        "POST /mcp",
        "`bad_query`",
    ] {
        assert!(llms.contains(needle), "/llms.txt lacks {needle}:\n{llms}");
    }
}

/// `agora mcp` over stdio, spoken to by hand: stdout carries only JSON-RPC (with debug logs
/// on), and a tool call returns the node's offers.
#[test]
fn mcp_stdio_carries_only_json_rpc() {
    let tmp = tempfile::tempdir().unwrap();
    let node = provider(&tmp.path().join("p"));
    let mut child = Command::new(agora_bin())
        .args(["--log", "debug", "mcp", "--node", &base(&node)])
        .env("HOME", tmp.path())
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let out = child.stdout.take().unwrap();
    // Drain stderr as it comes: debug logs (a tools list is one long line) would otherwise
    // fill the pipe and block the server.
    let mut err_pipe = child.stderr.take().unwrap();
    let logs = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut err_pipe, &mut text);
        text
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let requests = [
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"agora-tests","version":"0"}}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"list_offers","arguments":{"limit":5}}}"#,
    ];
    for r in requests {
        writeln!(stdin, "{r}").unwrap();
    }
    stdin.flush().unwrap();
    let mut answers = std::collections::BTreeMap::new();
    while answers.len() < 3 {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("an answer from agora mcp");
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
        assert_eq!(v["jsonrpc"], "2.0", "{line}");
        if let Some(id) = v["id"].as_u64() {
            answers.insert(id, v);
        }
    }
    assert_eq!(answers[&1]["result"]["serverInfo"]["name"], "agora");
    let tools: Vec<&str> = answers[&2]["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for t in ["list_offers", "get_offer", "node_info", "list_peers"] {
        assert!(tools.contains(&t), "{t} not in {tools:?}");
    }
    let call = &answers[&3]["result"];
    assert_eq!(call["isError"], false, "{call}");
    assert_eq!(call["structuredContent"]["offers"][0]["provider"], node.id);

    // Closing stdin ends the session; logs went to stderr.
    drop(stdin);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "agora mcp did not exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let logs = logs.join().unwrap();
    assert!(status.success(), "{status}: {logs}");
    assert!(
        rx.try_iter()
            .all(|l| serde_json::from_str::<Value>(&l).is_ok())
    );
    assert!(logs.contains("MCP server on stdio"), "{logs}");
}

/// Every operation that takes a body, as `/openapi.json` lists it, answers a malformed one
/// (not JSON, the wrong JSON, the wrong content type) with a documented 4xx status and a
/// JSON error carrying a code, and the node keeps serving.
#[test]
fn malformed_bodies_on_every_endpoint_get_documented_json_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let node = provider(&tmp.path().join("p"));
    let (_, doc) = node.get("/openapi.json");
    let zeros = "0".repeat(64);
    let json_ct = ("Content-Type", "application/json");
    let text_ct = ("Content-Type", "text/plain");
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        if path == "/mcp" {
            continue; // JSON-RPC: its errors are JSON-RPC's, checked by the MCP client test.
        }
        let url = path
            .replace("{id}", &zeros)
            .replace("{provider}", &node.id)
            .replace("{agent}", &node.id);
        for (method, op) in item.as_object().unwrap() {
            let Some(content) = op["requestBody"]["content"].as_object() else {
                continue;
            };
            if !content.contains_key("application/json") {
                continue; // Raw bodies (file uploads) are checked by journey_leases.
            }
            let method = method.to_uppercase();
            let bodies: [(&str, (&str, &str), &[u8]); 4] = [
                ("not JSON", json_ct, b"{not json"),
                ("an array", json_ct, b"[1, 2]"),
                (
                    "unknown fields",
                    json_ct,
                    br#"{"surely_not_a_field": true}"#,
                ),
                ("text/plain", text_ct, b"{}"),
            ];
            for (what, header, body) in bodies {
                let (status, text) = http_raw(node.http, &method, &url, &[header], Some(body));
                let at = format!("{method} {url} with {what}: {status} {text}");
                assert!((400..500).contains(&status), "{at}");
                let err: Value =
                    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {at}"));
                let code = err["error"]["code"].as_str().unwrap_or_default();
                assert!(!code.is_empty(), "{at}");
                assert!(
                    op["responses"][status.to_string()].is_object(),
                    "{at}: status not documented"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 9 * 4, "only {checked} malformed requests sent");
    assert_eq!(node.get("/healthz").0, 200);
}

/// The official Python MCP SDK completes sessions with `agora mcp` (stdio) and with the
/// node's `/mcp` (streamable HTTP), in the handshake era and the current protocol; in the
/// current one it runs a workload both ways: signed beside the agent, and by the node under
/// the agent's token (`agora agent token`), whose absence `/mcp` answers with
/// `delegation_required`.
#[test]
fn independent_mcp_client_over_stdio_and_http() {
    let Some(venv) = python_venv("independent_mcp_client_over_stdio_and_http") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let node = provider(&tmp.path().join("p"));
    let python = venv.join("bin").join("python");
    let script = scripts_dir().join("mcp_session.py");
    let agora = agora_bin().display().to_string();
    let mcp_url = format!("{}/mcp", base(&node));
    // An agent that signed up: `agora mcp --key` signs its tools beside it.
    let key = tmp.path().join("agent.key");
    let agent = |command: &str| {
        let out = Command::new(agora_bin())
            .args(["--json", "agent", command, "--node", &base(&node), "--key"])
            .arg(&key)
            .env("HOME", tmp.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{command}: {}", stderr(&out));
        serde_json::from_str::<Value>(&stdout(&out)).unwrap()
    };
    agent("signup");
    let mut tokens = Vec::new();
    for mode in ["legacy", "auto"] {
        for transport in ["stdio", "http"] {
            let mut cmd = Command::new(&python);
            cmd.arg(&script).arg(transport);
            if transport == "stdio" {
                cmd.args([&agora, &base(&node)]);
            } else {
                cmd.arg(&mcp_url);
            }
            cmd.arg(mode);
            // In the current protocol the agent acts: beside it with its key (stdio), or
            // through the node's `/mcp` under a token for a delegation it signed (http).
            let with_key = mode == "auto";
            if with_key && transport == "stdio" {
                // A key `agora mcp` creates, signed up through its `signup` tool.
                cmd.arg(tmp.path().join("mcp-agent.key"));
            } else if with_key {
                let token = agent("token");
                assert_eq!(token["node"], node.id);
                tokens.push(token["token"].as_str().unwrap().to_owned());
                cmd.arg(&tokens[0]);
            }
            cmd.env("HOME", tmp.path()).env_remove("RUST_LOG");
            let out = output_within(&mut cmd, Duration::from_secs(90));
            assert!(
                out.status.success(),
                "MCP session ({transport}, {mode}) failed: {}\n{}",
                stdout(&out),
                stderr(&out)
            );
            let seen: Value = serde_json::from_str(stdout(&out).lines().last().unwrap())
                .unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
            let what = format!("{transport}/{mode}: {seen}");
            assert_eq!(seen["server_name"], "agora", "{what}");
            let tools: Vec<&str> = seen["tools"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_str)
                .collect();
            for t in ["get_offer", "list_offers", "list_peers", "node_info"] {
                assert!(tools.contains(&t), "{what}");
            }
            assert_eq!(seen["list_offers_has_output_schema"], true, "{what}");
            assert!(seen["offers"].as_u64().unwrap() >= 1, "{what}");
            assert_eq!(seen["got_offer"], node.id, "{what}");
            assert_eq!(seen["bad_runtime_code"], "bad_arguments", "{what}");
            assert_eq!(seen["node_id"], node.id, "{what}");
            if mode == "auto" {
                // The current protocol revision, without the initialize handshake.
                assert_eq!(seen["protocol_version"], "2026-07-28", "{what}");
            }
            if with_key {
                // The agent's journey through tools signed beside it.
                assert_eq!(seen["run_provider"], node.id, "{what}");
                assert_eq!(seen["listed"], true, "{what}");
                assert_eq!(seen["exec"]["exit_code"], 5, "{what}");
                assert_eq!(seen["exec"]["stdout"], "42\n", "{what}");
                assert_eq!(seen["logs"]["stdout"], "hello from mcp\n", "{what}");
                assert_eq!(seen["logs"]["ended"], true, "{what}");
                assert_eq!(seen["stopped"], "ended", "{what}");
            } else {
                assert!(seen.get("run_provider").is_none(), "{what}");
            }
            if with_key && transport == "stdio" {
                assert!(
                    seen["signed_up"].as_str().unwrap().starts_with("agora1"),
                    "{what}"
                );
            }
            if transport == "http" && !with_key {
                assert_eq!(seen["run_without_token"], "delegation_required", "{what}");
                assert_eq!(seen["list_without_token"], "delegation_required", "{what}");
            }
        }
    }
    // The token says what it stands for, works at this node only, and ends when revoked.
    let bearer = format!("Bearer {}", tokens[0]);
    let auth = [("Authorization", bearer.as_str())];
    let (status, view) = http_json(node.http, "GET", "/v1/tokens/self", &auth, None);
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["node"], node.id);
    assert!(view.get("token").is_none(), "{view}");
    let (status, _) = http_json(node.http, "DELETE", "/v1/tokens/self", &auth, None);
    assert_eq!(status, 204);
    let (status, err) = http_json(node.http, "GET", "/v1/tokens/self", &auth, None);
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (401, Some("bad_token"))
    );
}

/// `/openapi.json` passes openapi-spec-validator, and a bounded schemathesis run against the
/// live node finds no server error and no answer that breaks the document.
#[test]
fn openapi_passes_an_independent_validator_and_schemathesis() {
    let Some(venv) = python_venv("openapi_passes_an_independent_validator_and_schemathesis") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let node = provider(&tmp.path().join("p"));
    let url = base(&node);
    let out = output_within(
        Command::new(venv.join("bin").join("python"))
            .arg(scripts_dir().join("validate_openapi.py"))
            .arg(format!("{url}/openapi.json")),
        Duration::from_secs(90),
    );
    assert!(
        out.status.success(),
        "openapi-spec-validator: {}\n{}",
        stdout(&out),
        stderr(&out)
    );

    let report = tmp.path().join("schemathesis");
    let mut st = Command::new(venv.join("bin").join("schemathesis"));
    st.arg("run")
        .arg(format!("{url}/openapi.json"))
        .args(["--url", &url])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        // /mcp is JSON-RPC, checked by the MCP client test above.
        .args(["--exclude-path", "/mcp"])
        // A fixed budget of cases per operation (no --max-time: it makes fuzzing repeat
        // until the time is spent); a few seconds on loopback.
        .args(["--max-examples", "50", "--seed", "1"])
        .args(["--workers", "1", "--request-timeout", "10"])
        .arg("--report-dir")
        .arg(&report)
        .env("NO_COLOR", "1")
        .current_dir(tmp.path());
    let out = output_within(&mut st, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    // It really tested the API (not zero operations).
    let text = stdout(&out);
    assert!(text.contains("/v1/offers"), "{text}");
    let (status, _) = http_get(node.http, "/healthz");
    assert_eq!(status, 200, "the node survived");
}
