//! A small blocking client for a node's HTTP API (the CLI's view of a node).

// Indexing a serde_json::Value yields Null for a missing key; it never panics.
#![allow(clippy::indexing_slicing)]

use core::time::Duration;

use anyhow::{Context as _, bail};

/// The node asked when neither `--node` nor `AGORA_NODE` says otherwise.
pub const DEFAULT_NODE: &str = "http://127.0.0.1:8080";

/// Talks to one node.
pub struct NodeClient {
    base: String,
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
}

impl NodeClient {
    /// A client for the node at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str) -> anyhow::Result<Self> {
        let base = base.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!("--node {base:?} is not an http:// URL");
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            base,
            runtime,
            http,
        })
    }

    /// GETs `path` with `query` and returns the JSON body; an API error becomes its message.
    pub fn get_json(
        &self,
        path: &str,
        query: &[(String, String)],
    ) -> anyhow::Result<serde_json::Value> {
        let url = format!("{}{path}", self.base);
        self.runtime.block_on(async {
            let resp = self
                .http
                .get(&url)
                .query(query)
                .send()
                .await
                .with_context(|| format!("cannot reach the node at {}", self.base))?;
            let status = resp.status();
            let body: serde_json::Value = resp
                .json()
                .await
                .with_context(|| format!("{url}: the answer is not JSON"))?;
            if !status.is_success() {
                let msg = body["error"]["message"]
                    .as_str()
                    .unwrap_or("request failed");
                bail!("{msg} (HTTP {status})");
            }
            Ok(body)
        })
    }
}
