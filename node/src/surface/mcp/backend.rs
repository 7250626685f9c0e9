//! Where MCP tool calls go: a node's HTTP API, over the network (`agora mcp --node URL`) or
//! in process (the node's own `/mcp`, which calls its router without a socket).

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::body::Body;
use serde_json::{Map, Value};
use tower::ServiceExt as _;

use crate::surface::errors::{BAD_ARGUMENTS, ErrorBody};
use crate::surface::{Method, Operation};

/// Largest answer a tool returns (a streamed answer is cut there).
pub const MAX_REPLY_BYTES: usize = 1024 * 1024;

/// One HTTP request to a node's API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCall {
    /// Method.
    pub method: Method,
    /// Path and query string (`/v1/offers?runtime=sandbox`).
    pub path: String,
    /// A JSON body.
    pub body: Option<Vec<u8>>,
}

/// A node's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpReply {
    /// Status code.
    pub status: u16,
    /// `Content-Type`, if any.
    pub content_type: String,
    /// The body, at most [`MAX_REPLY_BYTES`].
    pub body: Vec<u8>,
}

/// Sends [`HttpCall`]s to a node.
pub trait Backend: Send + Sync + 'static {
    /// Sends `call` on behalf of the MCP client at `origin` (when known); an `Err` is a
    /// transport failure, described for people.
    fn send(
        &self,
        call: HttpCall,
        origin: Option<SocketAddr>,
    ) -> impl Future<Output = Result<HttpReply, String>> + Send;
}

/// Reads from a node (for a [`SignFn`](crate::surface::SignFn) that needs, say, a fresh
/// challenge before it can sign).
pub trait NodeRead: Send + Sync {
    /// `GET path` (with its query string).
    fn get<'a>(
        &'a self,
        path: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<HttpReply, String>>;

    /// `POST path` with a JSON body that changes nothing at the node (a quote).
    fn post<'a>(
        &'a self,
        path: &'a str,
        body: Vec<u8>,
    ) -> futures::future::BoxFuture<'a, Result<HttpReply, String>>;
}

impl<B: Backend> NodeRead for B {
    fn get<'a>(
        &'a self,
        path: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<HttpReply, String>> {
        Box::pin(self.send(
            HttpCall {
                method: Method::Get,
                path: path.to_owned(),
                body: None,
            },
            None,
        ))
    }

    fn post<'a>(
        &'a self,
        path: &'a str,
        body: Vec<u8>,
    ) -> futures::future::BoxFuture<'a, Result<HttpReply, String>> {
        Box::pin(self.send(
            HttpCall {
                method: Method::Post,
                path: path.to_owned(),
                body: Some(body),
            },
            None,
        ))
    }
}

/// The HTTP call for `op` with the tool `args`: path parameters by name, the rest in the
/// query (GET, DELETE) or as the JSON body (POST, PUT). Nulls are left out.
///
/// # Errors
/// `bad_arguments` when a path parameter is missing or not a string or number.
pub fn http_call(op: &Operation, args: &Map<String, Value>) -> Result<HttpCall, ErrorBody> {
    let params: Vec<&str> = op.path_params().collect();
    let mut path = String::new();
    for seg in op.path.split('/').skip(1) {
        path.push('/');
        match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => {
                let value = match args.get(name) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    _ => {
                        return Err(ErrorBody::new(
                            BAD_ARGUMENTS.code,
                            format!("`{name}` is required (a string)"),
                        ));
                    }
                };
                path.push_str(&percent_encode(&value));
            }
            None => path.push_str(seg),
        }
    }
    let rest: Map<String, Value> = args
        .iter()
        .filter(|(k, v)| !params.contains(&k.as_str()) && !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if op.args_in_query() {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (k, v) in &rest {
            match v {
                Value::Array(items) => {
                    pairs.extend(items.iter().map(|i| (k.clone(), scalar(i))));
                }
                other => pairs.push((k.clone(), scalar(other))),
            }
        }
        if !pairs.is_empty() {
            let query = serde_urlencoded::to_string(&pairs)
                .map_err(|e| ErrorBody::new(BAD_ARGUMENTS.code, e.to_string()))?;
            path.push('?');
            path.push_str(&query);
        }
        return Ok(HttpCall {
            method: op.method,
            path,
            body: None,
        });
    }
    let body = op
        .input
        .map(|_| serde_json::to_vec(&Value::Object(rest)))
        .transpose()
        .map_err(|e| ErrorBody::new(BAD_ARGUMENTS.code, e.to_string()))?;
    Ok(HttpCall {
        method: op.method,
        path,
        body,
    })
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Percent-encodes one path segment (everything but RFC 3986 unreserved characters).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A node's API over the network.
#[derive(Debug, Clone)]
pub struct RemoteNode {
    base: String,
    http: reqwest::Client,
}

impl RemoteNode {
    /// The node at `base` (`http://127.0.0.1:8080`).
    ///
    /// # Errors
    /// When `base` is not an `http(s)://` URL or the client cannot be built.
    pub fn new(base: &str) -> Result<Self, String> {
        let base = base.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(format!("{base:?} is not an http:// or https:// URL"));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        Ok(Self { base, http })
    }

    /// The node's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }
}

impl Backend for RemoteNode {
    async fn send(&self, call: HttpCall, _origin: Option<SocketAddr>) -> Result<HttpReply, String> {
        let method = match call.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Delete => reqwest::Method::DELETE,
        };
        let url = format!("{}{}", self.base, call.path);
        let mut req = self.http.request(method, &url);
        if let Some(body) = call.body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let mut resp = req
            .send()
            .await
            .map_err(|e| format!("cannot reach the node at {}: {e}", self.base))?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("reading the answer from {}: {e}", self.base))?
        {
            let room = MAX_REPLY_BYTES.saturating_sub(body.len());
            body.extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or_default());
            if body.len() >= MAX_REPLY_BYTES {
                break;
            }
        }
        Ok(HttpReply {
            status,
            content_type,
            body,
        })
    }
}

/// The node's own router, called in process (for `/mcp` on the node).
#[derive(Debug, Clone)]
pub struct InProcess {
    router: axum::Router,
}

impl InProcess {
    /// Calls go to `router` (the API without `/mcp`).
    pub fn new(router: axum::Router) -> Self {
        Self { router }
    }
}

impl Backend for InProcess {
    /// Handlers see the MCP client's address as the peer (`ConnectInfo`), so per-address
    /// limits apply to it as to any HTTP client; loopback when it is unknown.
    async fn send(&self, call: HttpCall, origin: Option<SocketAddr>) -> Result<HttpReply, String> {
        let method = match call.method {
            Method::Get => axum::http::Method::GET,
            Method::Post => axum::http::Method::POST,
            Method::Put => axum::http::Method::PUT,
            Method::Delete => axum::http::Method::DELETE,
        };
        let mut req = axum::http::Request::builder()
            .method(method)
            .uri(&call.path);
        if call.body.is_some() {
            req = req.header(axum::http::header::CONTENT_TYPE, "application/json");
        }
        let origin = origin.unwrap_or_else(|| SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
        let req = req
            .extension(axum::extract::ConnectInfo(origin))
            .body(call.body.map_or_else(Body::empty, Body::from))
            .map_err(|e| format!("building the request: {e}"))?;
        let Ok(resp) = self.router.clone().oneshot(req).await;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = axum::body::to_bytes(resp.into_body(), MAX_REPLY_BYTES)
            .await
            .map_err(|e| format!("reading the answer: {e}"))?;
        Ok(HttpReply {
            status,
            content_type,
            body: body.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::surface::find;

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn query_operations_put_arguments_in_the_query() {
        let op = find("list_offers").unwrap();
        let call = http_call(
            op,
            &args(json!({"runtime": "sandbox", "label": ["a=b", "c=d"], "min_cpu": 0.5, "region": null})),
        )
        .unwrap();
        assert_eq!(call.method, Method::Get);
        assert_eq!(
            call.path,
            "/v1/offers?label=a%3Db&label=c%3Dd&min_cpu=0.5&runtime=sandbox"
        );
        assert_eq!(call.body, None);
        let bare = http_call(op, &Map::new()).unwrap();
        assert_eq!(bare.path, "/v1/offers");
    }

    #[test]
    fn path_parameters_are_substituted_and_encoded() {
        let op = find("get_offer").unwrap();
        let call = http_call(op, &args(json!({"provider": "agora1x/../y"}))).unwrap();
        assert_eq!(call.path, "/v1/offers/agora1x%2F..%2Fy");
        let err = http_call(op, &Map::new()).unwrap_err();
        assert_eq!(err.error.code, "bad_arguments");
    }
}
