//! Streamed lease operations through any node: `POST /v1/leases/{id}/exec`,
//! `GET /v1/leases/{id}/logs`, `PUT` and `GET /v1/leases/{id}/files`.
//!
//! Each takes the agent's signed `LeaseOp` (in the body for exec, else in the `op` query
//! parameter), relays it to the provider over a libp2p stream
//! ([`Gateway::open_stream`](crate::lease::Gateway::open_stream)) and streams the answer
//! back. A refusal before anything ran is an ordinary JSON error; once output flows the
//! status is 200 and the end of the stream says how it ended.
//!
//! Exec and logs answer NDJSON (`application/x-ndjson`), one event per line:
//!
//! ```text
//! {"type":"stdout","text":"hello\n"}        (or "base64" when the bytes are not UTF-8)
//! {"type":"stderr","text":"…"}
//! {"type":"exit","code":0}                   exec's last line
//! {"type":"end"}                             logs' last line
//! {"type":"error","code":"…","message":"…"}  the operation failed midway (last line)
//! ```
//!
//! An `error` line's code is the provider's refusal code, `bad_answer` for frames that make
//! no sense, or `unreachable` when the stream broke or closed early: a provider that
//! vanished midway (killed, cut off) ends the stream so once its connection is known lost
//! (at once for a closed socket, within libp2p's ping timeout for a silent peer).
//! `GET /v1/leases/{id}` then says whether it still answers (`provider_contact`).
//!
//! Files travel as tar streams (`application/x-tar`), both ways, capped by the agent's tier.

use std::sync::Arc;

use agora_protocol::Signed;
use agora_protocol::frames::StreamFrame;
use agora_protocol::lease::{LeaseOp, Op, Refusal};
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures::StreamExt as _;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;

use super::ApiError;
use super::json::JsonBody;
use super::leases::{call_error, checked_op, gateway, refusal_status};
use crate::daemon::Shared;
use crate::lease::OpStream;
use crate::lease::framed::{FrameReader, FramedError};
use tokio::io::AsyncRead;

/// Largest exec request body: the signed operation and up to 1 MiB of input (base64 adds a
/// third). Larger input belongs in a file upload.
pub const MAX_EXEC_BODY_BYTES: usize = 1536 * 1024;

/// Chunks of a streamed answer buffered between the provider and a slow HTTP client.
const BODY_QUEUE: usize = 16;

/// Where a streamed answer's NDJSON chunks go.
pub type BodyTx = mpsc::Sender<Result<Bytes, std::io::Error>>;

/// Opens the operation at its provider: the accepted stream, or the refusal as an error.
async fn open(shared: &Shared, op: &Signed<LeaseOp>) -> Result<OpStream, ApiError> {
    match gateway(shared)?.open_stream(op).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(r)) => Err(refused(&r)),
        Err(e) => Err(call_error(&e)),
    }
}

fn refused(r: &Refusal) -> ApiError {
    ApiError::new(refusal_status(r.code), r.code.as_str(), r.detail.clone())
}

fn streamed(
    content_type: &'static str,
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> Response {
    let mut rx = rx;
    let body = Body::from_stream(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    let mut response = (StatusCode::OK, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Turns output bytes into NDJSON lines, keeping a character split across chunks whole.
#[derive(Debug, Default)]
struct Utf8Lines {
    carry: Vec<u8>,
}

impl Utf8Lines {
    fn line(&mut self, kind: &str, data: &[u8]) -> Option<Bytes> {
        let mut bytes = std::mem::take(&mut self.carry);
        bytes.extend_from_slice(data);
        let value = match std::str::from_utf8(&bytes) {
            Ok(text) => json!({ "type": kind, "text": text }),
            // Only an incomplete character at the end: send the rest, keep it for later.
            Err(e) if e.error_len().is_none() && bytes.len() - e.valid_up_to() < 4 => {
                let (text, rest) = bytes.split_at(e.valid_up_to());
                self.carry = rest.to_vec();
                if text.is_empty() {
                    return None;
                }
                json!({ "type": kind, "text": String::from_utf8_lossy(text) })
            }
            Err(_) => json!({ "type": kind, "base64": STANDARD.encode(&bytes) }),
        };
        Some(ndjson(&value))
    }
}

fn ndjson(value: &serde_json::Value) -> Bytes {
    let mut line = value.to_string();
    line.push('\n');
    Bytes::from(line)
}

fn error_line(code: &str, message: &str) -> Bytes {
    ndjson(&json!({ "type": "error", "code": code, "message": message }))
}

/// Turns an operation's frames into NDJSON events (`stdout`/`stderr` lines, then `exit`,
/// `end` or `error`), as the node streams them to agents.
pub async fn pump_events<R: AsyncRead + Unpin>(mut reader: FrameReader<R>, tx: BodyTx) {
    let mut stdout = Utf8Lines::default();
    let mut stderr = Utf8Lines::default();
    loop {
        let line = match reader.next().await {
            Ok(Some(StreamFrame::Stdout(d))) => stdout.line("stdout", &d),
            Ok(Some(StreamFrame::Stderr(d))) => stderr.line("stderr", &d),
            Ok(Some(StreamFrame::Exit(code))) => {
                let _ = tx
                    .send(Ok(ndjson(&json!({ "type": "exit", "code": code }))))
                    .await;
                return;
            }
            Ok(Some(StreamFrame::End)) => {
                let _ = tx.send(Ok(ndjson(&json!({ "type": "end" })))).await;
                return;
            }
            Ok(Some(StreamFrame::Failed(r) | StreamFrame::Refused(r))) => {
                let _ = tx.send(Ok(error_line(r.code.as_str(), &r.detail))).await;
                return;
            }
            Ok(Some(_)) => Some(error_line(
                "bad_answer",
                "the provider sent a frame that has no place here",
            )),
            Ok(None) => {
                let _ = tx
                    .send(Ok(error_line(
                        "unreachable",
                        "the provider closed the stream before the end",
                    )))
                    .await;
                return;
            }
            Err(e) => {
                let _ = tx
                    .send(Ok(error_line(stream_error_code(&e), &e.to_string())))
                    .await;
                return;
            }
        };
        if let Some(line) = line
            && tx.send(Ok(line)).await.is_err()
        {
            // The client went away: dropping the stream tells the provider.
            return;
        }
    }
}

fn stream_error_code(e: &FramedError) -> &'static str {
    match e {
        FramedError::Io(_) => "unreachable",
        _ => "bad_answer",
    }
}

/// Body of `POST /v1/leases/{id}/exec`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecBody {
    /// The agent's signed `LeaseOp` (an `exec`), base64url.
    pub op: String,
    /// Standard input as text (the operation must say `stdin: true`).
    #[serde(default)]
    pub stdin: Option<String>,
    /// Standard input as base64 (instead of `stdin`).
    #[serde(default)]
    pub stdin_base64: Option<String>,
}

/// `POST /v1/leases/{id}/exec`: runs a command in the lease's workload; NDJSON output
/// ending with its exit code.
pub async fn exec(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ExecBody>,
) -> Result<Response, ApiError> {
    let op = checked_op(&id, &body.op, |o| matches!(o, Op::Exec { .. }), "exec")?;
    let input =
        match (body.stdin, body.stdin_base64) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request(
                    "malformed_body",
                    "give `stdin` or `stdin_base64`, not both",
                ));
            }
            (Some(text), None) => Some(text.into_bytes()),
            (None, Some(b64)) => Some(STANDARD.decode(b64.trim()).map_err(|e| {
                ApiError::bad_request("malformed_body", format!("stdin_base64: {e}"))
            })?),
            (None, None) => None,
        };
    if input.is_some() && !matches!(op.body().op, Op::Exec { stdin: true, .. }) {
        return Err(ApiError::bad_request(
            "wrong_op",
            "input was given but the signed exec says `stdin: false`",
        ));
    }
    let OpStream { reader, mut writer } = open(&shared, &op).await?;
    let (tx, rx) = mpsc::channel(BODY_QUEUE);
    // Input and output flow side by side: a command that echoes its input (`cat`) blocks
    // on output nobody reads if all the input had to go first.
    tokio::spawn(async move {
        let sent = async {
            if let Some(data) = input {
                writer.send_chunks(&data, StreamFrame::Stdin).await?;
            }
            writer.send(&StreamFrame::StdinClosed).await
        };
        if let Err(e) = sent.await {
            // The provider's side says more when it ends the stream; this only tells why
            // the input stopped.
            tracing::debug!(error = %e, "exec input cut short");
        }
    });
    tokio::spawn(pump_events(reader, tx));
    Ok(streamed("application/x-ndjson", rx))
}

/// Query of `GET /v1/leases/{id}/logs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    /// The agent's signed `LeaseOp` (a `logs`), base64url.
    pub op: String,
    /// Must match the signed operation's `follow` when given.
    #[serde(default)]
    pub follow: Option<bool>,
}

/// `GET /v1/leases/{id}/logs?op=…`: the workload's output so far (and, when the signed
/// operation says `follow`, as it comes until the lease ends), NDJSON.
pub async fn logs(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    let op = checked_op(&id, &q.op, |o| matches!(o, Op::Logs { .. }), "logs")?;
    if let (Some(follow), Op::Logs { follow: signed }) = (q.follow, &op.body().op)
        && follow != *signed
    {
        return Err(ApiError::bad_request(
            "wrong_op",
            format!("`follow={follow}` but the signed operation says follow: {signed}"),
        ));
    }
    let stream = open(&shared, &op).await?;
    let (tx, rx) = mpsc::channel(BODY_QUEUE);
    tokio::spawn(pump_events(stream.reader, tx));
    Ok(streamed("application/x-ndjson", rx))
}

/// Query of `PUT` and `GET /v1/leases/{id}/files`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesQuery {
    /// The agent's signed `LeaseOp` (`put_files` or `get_files`), base64url.
    pub op: String,
    /// Must match the signed operation's path when given.
    #[serde(default)]
    pub path: Option<String>,
}

fn check_path(q: &FilesQuery, signed: &str) -> Result<(), ApiError> {
    match &q.path {
        Some(p) if p != signed => Err(ApiError::bad_request(
            "wrong_op",
            format!("`path={p}` but the signed operation names {signed}"),
        )),
        _ => Ok(()),
    }
}

/// `PUT /v1/leases/{id}/files?op=…`: unpacks the tar stream in the body under the signed
/// operation's directory. Answers `{"lease","path","bytes"}`.
pub async fn put_files(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(q): Query<FilesQuery>,
    body: Body,
) -> Result<Response, ApiError> {
    let op = checked_op(
        &id,
        &q.op,
        |o| matches!(o, Op::PutFiles { .. }),
        "put_files",
    )?;
    let Op::PutFiles { path } = &op.body().op else {
        return Err(ApiError::bad_request(
            "wrong_op",
            "not a put_files operation",
        ));
    };
    check_path(&q, path)?;
    let path = path.clone();
    let mut stream = open(&shared, &op).await?;
    let mut chunks = body.into_data_stream();
    let mut sent: u64 = 0;
    let mut sending = true;
    // Send the body while listening for the provider's answer: it refuses an archive over
    // the tier's limit (or a failed unpack) without waiting for the rest.
    loop {
        tokio::select! {
            chunk = chunks.next(), if sending => match chunk {
                Some(Ok(bytes)) => {
                    sent = sent.saturating_add(bytes.len() as u64);
                    if let Err(e) = stream.writer.send_chunks(&bytes, StreamFrame::Data).await {
                        // The provider stopped reading; its answer (next) says why.
                        tracing::debug!(error = %e, "file upload cut short");
                        sending = false;
                    }
                }
                Some(Err(e)) => {
                    return Err(ApiError::bad_request(
                        "malformed_body",
                        format!("the upload broke off: {e}"),
                    ));
                }
                None => {
                    stream.writer.send(&StreamFrame::End).await.map_err(|e| {
                        call_error(&e.into())
                    })?;
                    sending = false;
                }
            },
            answer = stream.reader.next() => {
                return match answer {
                    Ok(Some(StreamFrame::End)) if !sending => Ok(axum::Json(json!({
                        "lease": op.body().lease,
                        "path": path,
                        "bytes": sent,
                    }))
                    .into_response()),
                    Ok(Some(StreamFrame::Failed(r) | StreamFrame::Refused(r))) => Err(refused(&r)),
                    Ok(Some(_)) => Err(ApiError::new(
                        StatusCode::BAD_GATEWAY,
                        "bad_answer",
                        "the provider answered an upload with something else",
                    )),
                    Ok(None) => Err(ApiError::new(
                        StatusCode::BAD_GATEWAY,
                        "unreachable",
                        "the provider closed the stream before the end",
                    )),
                    Err(e) => Err(call_error(&e.into())),
                };
            }
        }
    }
}

/// `GET /v1/leases/{id}/files?op=…`: the signed operation's path (a file or a directory)
/// as a tar stream.
pub async fn get_files(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(q): Query<FilesQuery>,
) -> Result<Response, ApiError> {
    let op = checked_op(
        &id,
        &q.op,
        |o| matches!(o, Op::GetFiles { .. }),
        "get_files",
    )?;
    let Op::GetFiles { path } = &op.body().op else {
        return Err(ApiError::bad_request(
            "wrong_op",
            "not a get_files operation",
        ));
    };
    check_path(&q, path)?;
    let mut stream = open(&shared, &op).await?;
    // The first frame decides the status: a failure before any data is an ordinary error.
    let first = match stream.reader.next().await {
        Ok(Some(StreamFrame::Data(d))) => Bytes::from(d),
        Ok(Some(StreamFrame::End)) => Bytes::new(),
        Ok(Some(StreamFrame::Failed(r) | StreamFrame::Refused(r))) => return Err(refused(&r)),
        Ok(Some(_)) => {
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "bad_answer",
                "the provider answered a download with something else",
            ));
        }
        Ok(None) => {
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "unreachable",
                "the provider closed the stream before the end",
            ));
        }
        Err(e) => return Err(call_error(&e.into())),
    };
    let (tx, rx) = mpsc::channel(BODY_QUEUE);
    tokio::spawn(async move {
        let ended = first.is_empty();
        if tx.send(Ok(first)).await.is_err() || ended {
            return;
        }
        loop {
            let item = match stream.reader.next().await {
                Ok(Some(StreamFrame::Data(d))) => Ok(Bytes::from(d)),
                Ok(Some(StreamFrame::End)) => return,
                Ok(Some(StreamFrame::Failed(r))) => {
                    Err(std::io::Error::other(format!("{}: {}", r.code, r.detail)))
                }
                Ok(Some(_)) => Err(std::io::Error::other("unexpected frame from the provider")),
                Ok(None) => Err(std::io::Error::other(
                    "the provider closed the stream before the end",
                )),
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            // An error aborts the body: the client sees a truncated transfer, never a
            // short archive that looks complete.
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                return;
            }
        }
    });
    Ok(streamed("application/x-tar", rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_split_across_chunks_stays_text() {
        let mut lines = Utf8Lines::default();
        let word = "héllo".as_bytes();
        let a = lines.line("stdout", &word[..2]).unwrap();
        let b = lines.line("stdout", &word[2..]).unwrap();
        let a: serde_json::Value = serde_json::from_slice(&a).unwrap();
        let b: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(a["text"], "h");
        assert_eq!(b["text"], "éllo");
        let c = lines.line("stdout", &[0xff, 0xfe]).unwrap();
        let c: serde_json::Value = serde_json::from_slice(&c).unwrap();
        assert_eq!(c["base64"], STANDARD.encode([0xff, 0xfe]));
    }
}
