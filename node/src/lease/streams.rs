//! The provider's side of streamed lease operations: exec, logs and files.
//!
//! ```text
//! gateway ──open(signed LeaseOp)──▶ provider: verify signature, names this provider,
//!                                   Provider::authorize (agent, lease running, fresh nonce)
//!         ◀── Refused(reason) ────  or start the operation on the workload's runtime, then
//!         ◀── Accepted ───────────
//!         ──▶ Stdin / StdinClosed   exec: input; PutFiles: Data … End (a tar stream)
//!         ◀── Stdout / Stderr / Data … Exit(code) | End | Failed(reason)
//! ```
//!
//! The provider acts only on what the agent signed: the gateway merely carries the bytes.
//! Every wait is bounded (the opening frame by [`OPEN_TIMEOUT`]), every frame by
//! [`agora_protocol::frames`], file transfers by the agent's tier (`max_file_bytes`), and at
//! most [`MAX_STREAMS`] operations run at once.

use core::time::Duration;
use std::sync::Arc;

use agora_protocol::frames::{MAX_CHUNK_BYTES, StreamFrame};
use agora_protocol::lease::{LeaseOp, Op, Refusal, RefusalCode};
use agora_protocol::{Ed25519, Signed, SignedError};
use futures::StreamExt as _;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::Semaphore;
use tracing::{Instrument as _, debug, info_span};

use super::Provider;
use super::framed::{FrameReader, FrameWriter, FramedError};
use crate::clock;
use crate::runtime::{ExecEvent, ExecRequest, OutputStream, Runtime, WorkloadId};

/// How long the gateway has to send the opening frame.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Most streamed operations running at once on this provider.
pub const MAX_STREAMS: usize = 128;

/// How often, at most, a stream's traffic is counted as the workload's activity.
const TOUCH_EVERY: Duration = Duration::from_secs(5);

/// Serves inbound operation streams (from libp2p, or in-process pipes from this node's own
/// gateway) with `provider` until `incoming` ends.
pub async fn serve<S>(mut incoming: impl futures::Stream<Item = S> + Unpin, provider: Arc<Provider>)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let permits = Arc::new(Semaphore::new(MAX_STREAMS));
    while let Some(stream) = incoming.next().await {
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let provider = provider.clone();
                tokio::spawn(async move {
                    handle(stream, &provider).await;
                    drop(permit);
                });
            }
            Err(_) => {
                tokio::spawn(async move {
                    let (_, w) = tokio::io::split(stream);
                    let mut w = FrameWriter::new(w);
                    let _ = w
                        .send(&StreamFrame::Refused(Refusal::new(
                            RefusalCode::Unavailable,
                            "too many streamed operations at once; retry",
                        )))
                        .await;
                    let _ = w.close().await;
                });
            }
        }
    }
}

/// Runs one operation stream to its end.
pub async fn handle<S>(stream: S, provider: &Provider)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (r, w) = tokio::io::split(stream);
    let mut reader = FrameReader::new(r);
    let mut writer = FrameWriter::new(w);
    let op = match tokio::time::timeout(OPEN_TIMEOUT, reader.open()).await {
        Ok(Ok(Some(bytes))) => match Signed::<LeaseOp>::decode(&bytes, &Ed25519) {
            Ok(op) => op,
            Err(e) => {
                let detail = match e {
                    SignedError::Verify(v) => format!("the operation's signature: {v}"),
                    SignedError::Decode(d) => format!("malformed operation: {d}"),
                };
                refuse(&mut writer, Refusal::new(RefusalCode::Invalid, detail)).await;
                return;
            }
        },
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            debug!(error = %e, "bad opening frame");
            refuse(
                &mut writer,
                Refusal::new(RefusalCode::Invalid, e.to_string()),
            )
            .await;
            return;
        }
        Err(_) => {
            refuse(
                &mut writer,
                Refusal::new(RefusalCode::Invalid, "no operation within the open timeout"),
            )
            .await;
            return;
        }
    };
    let body = op.body();
    let span = info_span!("op", lease = %body.lease, kind = ?body.op.kind());
    async {
        let result = run(&op, provider, &mut reader, &mut writer).await;
        match result {
            Ok(()) => {}
            Err(Outcome::Refused(r)) => {
                debug!(code = %r.code, detail = %r.detail, "streamed operation refused");
                refuse(&mut writer, r).await;
            }
            Err(Outcome::Failed(r)) => {
                debug!(code = %r.code, detail = %r.detail, "streamed operation failed");
                let _ = writer.send(&StreamFrame::Failed(r)).await;
                let _ = writer.close().await;
            }
            Err(Outcome::Gone(e)) => debug!(error = %e, "the gateway's stream broke"),
        }
    }
    .instrument(span)
    .await;
}

async fn refuse<W: AsyncWrite + Unpin>(writer: &mut FrameWriter<W>, r: Refusal) {
    let _ = writer.send(&StreamFrame::Refused(r)).await;
    let _ = writer.close().await;
}

/// How an operation ended other than cleanly.
enum Outcome {
    /// Refused before it started (nothing was done).
    Refused(Refusal),
    /// Failed after it was accepted.
    Failed(Refusal),
    /// The stream to the gateway broke.
    Gone(FramedError),
}

impl From<FramedError> for Outcome {
    fn from(e: FramedError) -> Self {
        Self::Gone(e)
    }
}

fn refused(code: RefusalCode, detail: impl Into<String>) -> Outcome {
    Outcome::Refused(Refusal::new(code, detail))
}

fn runtime_refusal(e: &crate::runtime::RuntimeError) -> Refusal {
    let code = if e.is_client_error() {
        RefusalCode::Invalid
    } else {
        RefusalCode::Unavailable
    };
    Refusal::new(code, e.to_string())
}

async fn run<R, W>(
    op: &Signed<LeaseOp>,
    provider: &Provider,
    reader: &mut FrameReader<R>,
    writer: &mut FrameWriter<W>,
) -> Result<(), Outcome>
where
    R: AsyncRead + Send + Unpin,
    W: AsyncWrite + Send + Unpin,
{
    let body = op.body();
    if body.provider != provider.id() {
        return Err(refused(
            RefusalCode::Invalid,
            "the operation names another provider",
        ));
    }
    if !matches!(
        body.op,
        Op::Exec { .. } | Op::Logs { .. } | Op::PutFiles { .. } | Op::GetFiles { .. }
    ) {
        return Err(refused(
            RefusalCode::Unsupported,
            "only exec, logs and files are streamed; the others are requests",
        ));
    }
    let auth = provider
        .authorize(op, clock::now())
        .map_err(Outcome::Refused)?;
    let runtime = provider
        .runtime_of(&auth.workload)
        .map_err(Outcome::Refused)?;
    let activity = Activity::new(provider, &auth.workload);
    let cap = auth.lease.tier.max_file_bytes;
    match &body.op {
        Op::Exec {
            command,
            stdin,
            tty,
        } => {
            exec(
                runtime.as_ref(),
                &auth.workload,
                command,
                *stdin,
                *tty,
                &activity,
                reader,
                writer,
            )
            .await
        }
        Op::Logs { follow } => {
            logs(runtime.as_ref(), &auth.workload, *follow, &activity, writer).await
        }
        Op::PutFiles { path } => {
            put_files(
                runtime.clone(),
                &auth.workload,
                path,
                cap,
                &activity,
                reader,
                writer,
            )
            .await
        }
        Op::GetFiles { path } => {
            get_files(
                runtime.as_ref(),
                &auth.workload,
                path,
                cap,
                &activity,
                writer,
            )
            .await
        }
        Op::Extend { .. }
        | Op::Stop
        | Op::Status
        | Op::Relay
        | Op::RevokeGrant { .. }
        | Op::Acknowledge { .. } => Ok(()),
    }
}

/// Counts a stream's traffic as the workload's activity, at most every [`TOUCH_EVERY`].
struct Activity<'a> {
    provider: &'a Provider,
    workload: &'a WorkloadId,
    last: std::sync::Mutex<Option<std::time::Instant>>,
}

impl<'a> Activity<'a> {
    fn new(provider: &'a Provider, workload: &'a WorkloadId) -> Self {
        let a = Self {
            provider,
            workload,
            last: std::sync::Mutex::new(None),
        };
        a.seen();
        a
    }

    fn seen(&self) {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_none_or(|t| t.elapsed() >= TOUCH_EVERY) {
            *last = Some(std::time::Instant::now());
            self.provider.touch(self.workload, clock::now());
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn exec<R, W>(
    runtime: &dyn Runtime,
    workload: &WorkloadId,
    command: &[String],
    wants_stdin: bool,
    tty: bool,
    activity: &Activity<'_>,
    reader: &mut FrameReader<R>,
    writer: &mut FrameWriter<W>,
) -> Result<(), Outcome>
where
    R: AsyncRead + Send + Unpin,
    W: AsyncWrite + Send + Unpin,
{
    let request = ExecRequest {
        command: command.to_vec(),
        tty,
        ..ExecRequest::default()
    };
    let session = runtime
        .exec(workload, request)
        .await
        .map_err(|e| Outcome::Refused(runtime_refusal(&e)))?;
    writer.send(&StreamFrame::Accepted).await?;
    let stdin = wants_stdin.then_some(session.stdin);
    let mut events = session.events;
    // Input and output run side by side: a command may block writing output until it is
    // read, while its input waits to be written (`cat` of a large file), so neither side may
    // wait on the other. A clean end of the agent's side closes the command's input.
    let input = async {
        let mut stdin = stdin;
        loop {
            match reader.next().await? {
                Some(StreamFrame::Stdin(data)) => {
                    activity.seen();
                    if let Some(s) = stdin.as_mut()
                        && s.write_all(&data).await.is_err()
                    {
                        // The command closed its input: later input has nowhere to go.
                        stdin = None;
                    }
                }
                Some(StreamFrame::StdinClosed) | None => {
                    if let Some(mut s) = stdin.take() {
                        let _ = s.shutdown().await;
                    }
                    return Ok::<(), Outcome>(());
                }
                Some(other) => {
                    return Err(Outcome::Failed(Refusal::new(
                        RefusalCode::Invalid,
                        format!(
                            "unexpected frame from the agent's side: {}",
                            frame_name(&other)
                        ),
                    )));
                }
            }
        }
    };
    let output = async {
        loop {
            match events.recv().await {
                Some(ExecEvent::Output(chunk)) => {
                    activity.seen();
                    writer
                        .send_chunks(&chunk.data, output_frame(chunk.stream))
                        .await?;
                }
                Some(ExecEvent::Exit(code)) => {
                    writer.send(&StreamFrame::Exit(code)).await?;
                    writer.close().await?;
                    return Ok(());
                }
                None => {
                    return Err(Outcome::Failed(Refusal::new(
                        RefusalCode::Unavailable,
                        "the command's session ended without an exit code",
                    )));
                }
            }
        }
    };
    tokio::pin!(input, output);
    let mut input_done = false;
    loop {
        tokio::select! {
            done = &mut output => return done,
            done = &mut input, if !input_done => {
                input_done = true;
                // A broken agent stream ends the session (dropping it stops the command).
                done?;
            }
        }
    }
}

async fn logs<W>(
    runtime: &dyn Runtime,
    workload: &WorkloadId,
    follow: bool,
    activity: &Activity<'_>,
    writer: &mut FrameWriter<W>,
) -> Result<(), Outcome>
where
    W: AsyncWrite + Send + Unpin,
{
    let mut chunks = runtime
        .logs(workload, follow)
        .await
        .map_err(|e| Outcome::Refused(runtime_refusal(&e)))?;
    writer.send(&StreamFrame::Accepted).await?;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| Outcome::Failed(runtime_refusal(&e)))?;
        if follow {
            activity.seen();
        }
        writer
            .send_chunks(&chunk.data, output_frame(chunk.stream))
            .await?;
    }
    writer.send(&StreamFrame::End).await?;
    writer.close().await?;
    Ok(())
}

fn too_large(cap: u64) -> Refusal {
    Refusal::new(
        RefusalCode::TierLimit,
        format!("the transfer exceeds the tier's limit of {cap} bytes"),
    )
}

async fn put_files<R, W>(
    runtime: Arc<dyn Runtime>,
    workload: &WorkloadId,
    path: &str,
    cap: u64,
    activity: &Activity<'_>,
    reader: &mut FrameReader<R>,
    writer: &mut FrameWriter<W>,
) -> Result<(), Outcome>
where
    R: AsyncRead + Send + Unpin,
    W: AsyncWrite + Send + Unpin,
{
    crate::runtime::files::check_path(path).map_err(|e| Outcome::Refused(runtime_refusal(&e)))?;
    writer.send(&StreamFrame::Accepted).await?;
    // The runtime reads the tar stream from a pipe this loop fills from Data frames, so the
    // archive streams through with backpressure and is never held whole.
    // It runs as its own task so that writing into the pipe never waits on this one.
    let (mut pipe_in, pipe_out) = tokio::io::duplex(2 * MAX_CHUNK_BYTES);
    let mut unpack = {
        let (workload, path) = (workload.clone(), path.to_owned());
        tokio::spawn(async move {
            runtime
                .put_files(&workload, &path, Box::new(pipe_out))
                .await
        })
    };
    let mut received: u64 = 0;
    let mut feeding = true;
    let mut unpacked = false;
    let mut pipe_open = true;
    loop {
        tokio::select! {
            done = &mut unpack, if !unpacked => {
                let done = done.unwrap_or_else(|e| {
                    Err(crate::runtime::RuntimeError::host(
                        "unpack the archive",
                        std::io::Error::other(e.to_string()),
                    ))
                });
                if let Err(e) = done {
                    return Err(Outcome::Failed(runtime_refusal(&e)));
                }
                unpacked = true;
                if !feeding {
                    writer.send(&StreamFrame::End).await?;
                    writer.close().await?;
                    return Ok(());
                }
                // tar stops at the archive's end marker; the agent's padding after it is
                // still read (and counted) until its end frame.
            }
            frame = reader.next(), if feeding => match frame? {
                Some(StreamFrame::Data(data)) => {
                    activity.seen();
                    received = received.saturating_add(data.len() as u64);
                    if received > cap {
                        return Err(Outcome::Failed(too_large(cap)));
                    }
                    if pipe_open && !unpacked && pipe_in.write_all(&data).await.is_err() {
                        // The runtime stopped reading: its answer says why.
                        pipe_open = false;
                    }
                }
                Some(StreamFrame::End) => {
                    let _ = pipe_in.shutdown().await;
                    feeding = false;
                    if unpacked {
                        writer.send(&StreamFrame::End).await?;
                        writer.close().await?;
                        return Ok(());
                    }
                }
                None => {
                    return Err(Outcome::Failed(Refusal::new(
                        RefusalCode::Invalid,
                        "the transfer ended without its end frame",
                    )));
                }
                Some(other) => {
                    return Err(Outcome::Failed(Refusal::new(
                        RefusalCode::Invalid,
                        format!("unexpected frame in a file transfer: {}", frame_name(&other)),
                    )));
                }
            },
        }
    }
}

async fn get_files<W>(
    runtime: &dyn Runtime,
    workload: &WorkloadId,
    path: &str,
    cap: u64,
    activity: &Activity<'_>,
    writer: &mut FrameWriter<W>,
) -> Result<(), Outcome>
where
    W: AsyncWrite + Send + Unpin,
{
    crate::runtime::files::check_path(path).map_err(|e| Outcome::Refused(runtime_refusal(&e)))?;
    let mut tar = runtime
        .get_files(workload, path)
        .await
        .map_err(|e| Outcome::Refused(runtime_refusal(&e)))?;
    let mut buf = vec![0u8; MAX_CHUNK_BYTES];
    let mut sent: u64 = 0;
    let mut accepted = false;
    loop {
        let n = match tar.read(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                let r = Refusal::new(RefusalCode::Invalid, e.to_string());
                // Nothing sent yet: the agent gets a refusal it can act on, not a failure.
                return Err(if accepted {
                    Outcome::Failed(r)
                } else {
                    Outcome::Refused(r)
                });
            }
        };
        if !accepted {
            writer.send(&StreamFrame::Accepted).await?;
            accepted = true;
        }
        if n == 0 {
            writer.send(&StreamFrame::End).await?;
            writer.close().await?;
            return Ok(());
        }
        sent = sent.saturating_add(n as u64);
        if sent > cap {
            return Err(Outcome::Failed(too_large(cap)));
        }
        activity.seen();
        writer
            .send(&StreamFrame::Data(
                buf.get(..n).unwrap_or_default().to_vec(),
            ))
            .await?;
    }
}

/// The data frame that carries output of `stream`.
fn output_frame(stream: OutputStream) -> fn(Vec<u8>) -> StreamFrame {
    match stream {
        OutputStream::Stdout => StreamFrame::Stdout,
        OutputStream::Stderr => StreamFrame::Stderr,
    }
}

fn frame_name(f: &StreamFrame) -> &'static str {
    match f {
        StreamFrame::Accepted => "accepted",
        StreamFrame::Refused(_) => "refused",
        StreamFrame::Stdin(_) => "stdin",
        StreamFrame::StdinClosed => "stdin_closed",
        StreamFrame::Stdout(_) => "stdout",
        StreamFrame::Stderr(_) => "stderr",
        StreamFrame::Data(_) => "data",
        StreamFrame::Exit(_) => "exit",
        StreamFrame::End => "end",
        StreamFrame::Failed(_) => "failed",
    }
}
