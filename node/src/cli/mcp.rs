//! `agora mcp`: an MCP server over stdio, beside the agent, whose tools call a node's API.
//!
//! stdout carries only JSON-RPC; logs go to stderr. Read-only tools need no key; with
//! `--key FILE` the tools that act for the agent are listed too and sign locally with it
//! (the signup record is read from `FILE.signup`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use rmcp::ServiceExt as _;

use super::GlobalArgs;
use super::http_client::DEFAULT_NODE;
use agora_node::surface::mcp::{AgentKey, RemoteNode, Server};

#[derive(Debug, Args)]
pub(super) struct McpArgs {
    /// The node's HTTP API.
    #[arg(long, env = "AGORA_NODE", default_value = DEFAULT_NODE)]
    node: String,
    /// The agent's key file (created when missing): enables the tools that act for the
    /// agent, signed locally (`signup` first, for a new key).
    #[arg(long)]
    key: Option<PathBuf>,
}

pub(super) fn run(args: &McpArgs, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let backend = RemoteNode::new(&args.node).map_err(anyhow::Error::msg)?;
    let key = args
        .key
        .as_deref()
        .map(|k| AgentKey::load(k, true))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    if let Some(k) = &key {
        tracing::info!(agent = %k.identity.agora_id(), "agent tools enabled");
    }
    let runtime = super::small_runtime()?;
    runtime.block_on(async {
        tracing::info!(node = backend.base(), "MCP server on stdio");
        let service = Server::local(backend, key)
            .serve(rmcp::transport::stdio())
            .await
            .context("starting the MCP session on stdio")?;
        let reason = service.waiting().await.context("the MCP session failed")?;
        tracing::info!(?reason, "MCP session ended");
        anyhow::Ok(())
    })?;
    // A pending read on stdin cannot be cancelled; do not wait for it.
    runtime.shutdown_background();
    Ok(ExitCode::SUCCESS)
}
