//! A small blocking client for a node's HTTP API (the CLI's view of a node).

// Indexing a serde_json::Value yields Null for a missing key; it never panics.
#![allow(clippy::indexing_slicing)]

use core::time::Duration;

use anyhow::{Context as _, bail};

/// The node asked when neither `--node` nor `AGORA_NODE` says otherwise.
pub const DEFAULT_NODE: &str = "http://127.0.0.1:8080";

/// How long one call may take unless the caller says otherwise.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Talks to one node.
pub struct NodeClient {
    base: String,
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
    /// For streamed answers (exec, logs, files): no overall timeout, since output may come
    /// for as long as the lease runs; connecting still times out.
    streaming: reqwest::Client,
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
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .context("building the HTTP client")?;
        let streaming = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            base,
            runtime,
            http,
            streaming,
        })
    }

    /// POSTs `body` as JSON to `path` and returns the JSON answer; an API error becomes an
    /// [`ApiFailure`] (downcast it from the `anyhow::Error` for its code).
    pub fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let (status, body) =
            self.request_json(reqwest::Method::POST, path, Some(body), REQUEST_TIMEOUT)?;
        if !(200..300).contains(&status) {
            return Err(ApiFailure {
                status,
                code: body["error"]["code"].as_str().unwrap_or("error").to_owned(),
                message: body["error"]["message"]
                    .as_str()
                    .unwrap_or("request failed")
                    .to_owned(),
            }
            .into());
        }
        Ok(body)
    }

    /// Sends `body` (if any) as JSON with `method` to `path` and returns the status and the
    /// JSON answer, errors included (for callers that show an error's details).
    pub fn request_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
        timeout: Duration,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let url = format!("{}{path}", self.base);
        self.runtime.block_on(async {
            let mut req = self.http.request(method, &url).timeout(timeout);
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = req
                .send()
                .await
                .with_context(|| format!("cannot reach the node at {}", self.base))?;
            let status = resp.status().as_u16();
            let body: serde_json::Value = resp
                .json()
                .await
                .with_context(|| format!("{url}: the answer is not JSON"))?;
            Ok((status, body))
        })
    }

    /// Sends the request `build` makes (from the streaming client and the full URL of
    /// `path`) and hands the answer to `handle` as it streams in.
    pub fn stream<T>(
        &self,
        path: &str,
        build: impl FnOnce(&reqwest::Client, &str) -> reqwest::RequestBuilder,
        handle: impl AsyncFnOnce(reqwest::Response) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        self.runtime.block_on(async {
            let resp = build(&self.streaming, &url)
                .send()
                .await
                .with_context(|| format!("cannot reach the node at {}", self.base))?;
            handle(resp).await
        })
    }

    /// Runs `f` on this client's runtime (for work beside the node, e.g. a direct QUIC
    /// connection to a provider).
    pub fn block_on<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.runtime.block_on(f)
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

/// An error answer from a node's API.
#[derive(Debug)]
pub struct ApiFailure {
    /// HTTP status.
    pub status: u16,
    /// The stable code.
    pub code: String,
    /// The message.
    pub message: String,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} (HTTP {})", self.code, self.message, self.status)
    }
}

impl std::error::Error for ApiFailure {}
