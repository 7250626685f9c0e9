//! The HTTP handlers that serve the generated documents: `GET /openapi.json` and
//! `GET /llms.txt`. Both are generated once, on first request, from the registry.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// `GET /openapi.json`.
pub async fn openapi() -> Response {
    static DOC: OnceLock<String> = OnceLock::new();
    let body = DOC.get_or_init(|| super::openapi::document().to_string());
    ([(header::CONTENT_TYPE, "application/json")], body.as_str()).into_response()
}

/// `GET /llms.txt`.
pub async fn llms() -> Response {
    static TEXT: OnceLock<String> = OnceLock::new();
    let body = TEXT.get_or_init(super::llms::text);
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.as_str(),
    )
        .into_response()
}
