//! Query strings of the list endpoints (`GET /v1/offers`, `GET /v1/services`): read with a
//! bound, split into pairs, and the errors every parser names its parameter in (400
//! `bad_query`). What each parameter means stays with its resource.

use super::ApiError;

/// Longest query string read.
const MAX_QUERY_BYTES: usize = 4096;

/// The `(name, value)` pairs of a raw query string (none for `None`).
///
/// # Errors
/// [`ApiError`] 400 `bad_query` over 4 KiB or when it does not decode.
pub fn pairs(raw: Option<String>) -> Result<Vec<(String, String)>, ApiError> {
    let raw = raw.unwrap_or_default();
    if raw.len() > MAX_QUERY_BYTES {
        return Err(ApiError::bad_request(
            "bad_query",
            "query string over 4 KiB",
        ));
    }
    serde_urlencoded::from_str(&raw)
        .map_err(|e| ApiError::bad_request("bad_query", format!("malformed query: {e}")))
}

/// 400 `bad_query` naming parameter `name` and saying `why`.
pub fn bad(name: &str, why: impl core::fmt::Display) -> ApiError {
    ApiError::bad_request("bad_query", format!("query parameter `{name}`: {why}"))
}

/// A `limit` parameter's `value`: a whole number from 1 to `max`.
///
/// # Errors
/// [`bad`] naming `name` otherwise.
pub fn limit(name: &str, value: &str, max: usize) -> Result<usize, ApiError> {
    value
        .parse::<usize>()
        .ok()
        .filter(|l| (1..=max).contains(l))
        .ok_or_else(|| bad(name, format!("{value:?} is not 1 to {max}")))
}
