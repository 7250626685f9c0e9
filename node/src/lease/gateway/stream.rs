//! The gateway's side of streamed operations: open a stream to the provider the agent's
//! signed operation names, send the operation, and hand the caller the accepted stream.
//!
//! A provider this gateway has no connection to is found the way requests find it (a
//! status query looks it up and dials), then the stream is opened again once. A provider
//! that gives no usable answer is noted in the lease's record, as for a failed refresh
//! ([`super::contact`]).
//!
//! A stream the provider ends before it answers is opened again, a few times, after short
//! and growing pauses: libp2p-stream drops an inbound stream while the one before it still
//! waits for the provider's acceptor, so two operations on one provider at the same instant
//! (an agent following its logs while it runs a command) could otherwise fail at random.
//! The agent's signed nonce makes this safe: an attempt the provider did read makes the
//! next one a `replay`, and the gateway then reports what happened to the first.

use std::future::Future;
use std::time::Duration;

use agora_protocol::frames::StreamFrame;
use agora_protocol::lease::{LeaseOp, Refusal, RefusalCode};
use agora_protocol::{AgoraId, Signed};
use tokio::io::{ReadHalf, WriteHalf};
use tokio_util::compat::FuturesAsyncReadCompatExt as _;
use tracing::debug;

use super::{CallError, Gateway};
use crate::lease::framed::{FrameReader, FrameWriter, FramedError};
use crate::lease::streams;
use crate::net::LEASE_STREAM_PROTOCOL;
use crate::runtime::ByteStream;

/// Bytes buffered each way between this node's gateway and its own provider.
const LOCAL_PIPE_BYTES: usize = 256 * 1024;

type Boxed = Box<dyn ByteStream>;

/// A streamed operation the provider accepted: read its frames, send the agent's.
pub struct OpStream {
    /// Frames from the provider (output, data, then the final frame).
    pub reader: FrameReader<ReadHalf<Boxed>>,
    /// Frames to the provider (stdin, data, end).
    pub writer: FrameWriter<WriteHalf<Boxed>>,
}

impl std::fmt::Debug for OpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpStream").finish_non_exhaustive()
    }
}

impl From<FramedError> for CallError {
    fn from(e: FramedError) -> Self {
        match e {
            FramedError::Io(e) => Self::Unreachable(format!("the stream broke: {e}")),
            other => Self::BadAnswer(other.to_string()),
        }
    }
}

/// Most attempts at opening one operation's stream.
const OPEN_ATTEMPTS: u32 = 4;
/// Pause before the first retry; it doubles with each retry, plus up to as much at random.
const RETRY_PAUSE: Duration = Duration::from_millis(25);

/// How one attempt at opening an operation's stream ended.
#[derive(Debug)]
enum Attempt<T> {
    /// The provider answered: accepted (`T`) or refused.
    Answered(Result<T, Refusal>),
    /// The stream ended before any answer. The provider may have dropped it unread:
    /// libp2p-stream drops an inbound stream when the one before it is still waiting for
    /// the provider's acceptor (a burst of operations), so trying again is worth it.
    Dropped(CallError),
    /// Anything else (no connection, a timeout, nonsense): final.
    Failed(CallError),
}

/// Runs `attempt` until the provider answers, up to [`OPEN_ATTEMPTS`] times while the
/// stream is dropped before any answer, pausing a little longer before each retry.
///
/// Retrying never runs an operation twice: each carries the agent's signed nonce, and a
/// provider that did read an earlier attempt refuses the next as a `replay`. Such a refusal
/// is answered with the first attempt's error instead, which is what happened to it.
async fn with_retries<T, F, Fut>(mut attempt: F) -> Result<Result<T, Refusal>, CallError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Attempt<T>>,
{
    let mut dropped: Option<CallError> = None;
    let mut pause = RETRY_PAUSE;
    for n in 1..=OPEN_ATTEMPTS {
        match attempt().await {
            Attempt::Answered(Err(r)) if r.code == RefusalCode::Replay => {
                return match dropped {
                    Some(first) => Err(first),
                    None => Ok(Err(r)),
                };
            }
            Attempt::Answered(answer) => return Ok(answer),
            Attempt::Failed(e) => return Err(e),
            Attempt::Dropped(e) => {
                debug!(attempt = n, error = %e, "operation stream dropped before an answer");
                dropped.get_or_insert(e);
                if n < OPEN_ATTEMPTS {
                    let jitter = pause.mul_f64(rand::random::<f64>());
                    tokio::time::sleep(pause.saturating_add(jitter)).await;
                    pause = pause.saturating_mul(2);
                }
            }
        }
    }
    Err(dropped.unwrap_or_else(|| {
        CallError::Unreachable("the provider dropped every attempt to open the stream".into())
    }))
}

/// Sends `op` as the first frame on `stream` and waits up to `timeout` for the provider's
/// acceptance or refusal.
async fn exchange(stream: Boxed, op: &Signed<LeaseOp>, timeout: Duration) -> Attempt<OpStream> {
    let (r, w) = tokio::io::split(stream);
    let mut reader = FrameReader::new(r);
    let mut writer = FrameWriter::new(w);
    let exchange = async {
        writer.open(op.as_bytes()).await?;
        reader.next().await
    };
    let first = match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(first)) => first,
        Ok(Err(e @ FramedError::Io(_))) => return Attempt::Dropped(CallError::from(e)),
        Ok(Err(e)) => return Attempt::Failed(CallError::from(e)),
        Err(_) => return Attempt::Failed(CallError::Timeout(timeout)),
    };
    match first {
        Some(StreamFrame::Accepted) => Attempt::Answered(Ok(OpStream { reader, writer })),
        Some(StreamFrame::Refused(r)) => Attempt::Answered(Err(r)),
        Some(_) => Attempt::Failed(CallError::BadAnswer(
            "the provider sent output before accepting".into(),
        )),
        None => Attempt::Dropped(CallError::Unreachable(
            "the provider closed the stream without an answer".into(),
        )),
    }
}

/// Opens the streamed operation `op` on `stream` (a byte stream to a provider's operation
/// handler, e.g. a QUIC stream of a direct tunnel connection): its acceptance or refusal
/// within `timeout`.
///
/// # Errors
/// [`CallError`] when the stream breaks, times out or carries nonsense.
pub async fn open_on(
    stream: Boxed,
    op: &Signed<LeaseOp>,
    timeout: Duration,
) -> Result<Result<OpStream, Refusal>, CallError> {
    match exchange(stream, op, timeout).await {
        Attempt::Answered(answer) => Ok(answer),
        Attempt::Dropped(e) | Attempt::Failed(e) => Err(e),
    }
}

impl Gateway {
    /// Opens the streamed operation `op` at the provider it names and waits (up to the
    /// provider timeout) for its acceptance or refusal. A stream the provider ends before
    /// answering is opened again, a few times (see [`with_retries`]).
    ///
    /// # Errors
    /// [`CallError`] when the provider cannot be reached or answers nonsense.
    pub async fn open_stream(
        &self,
        op: &Signed<LeaseOp>,
    ) -> Result<Result<OpStream, Refusal>, CallError> {
        let provider = op.body().provider;
        let result = with_retries(|| self.open_once(&provider, op)).await;
        if let Err(e) = &result {
            self.unanswered(&provider, &op.body().lease, e);
        }
        result
    }

    /// One attempt of [`Gateway::open_stream`].
    async fn open_once(&self, provider: &AgoraId, op: &Signed<LeaseOp>) -> Attempt<OpStream> {
        match self.connect(provider, op).await {
            Ok(stream) => exchange(stream, op, self.timeout).await,
            Err(e) => Attempt::Failed(e),
        }
    }

    /// A byte stream to `provider`'s operation handler.
    async fn connect(&self, provider: &AgoraId, op: &Signed<LeaseOp>) -> Result<Boxed, CallError> {
        if *provider == self.id {
            let local = self
                .local
                .get()
                .cloned()
                .ok_or_else(|| CallError::Unreachable("this node is not a provider".into()))?;
            let (client, server) = tokio::io::duplex(LOCAL_PIPE_BYTES);
            tokio::spawn(async move { streams::handle(server, &local).await });
            return Ok(Box::new(client));
        }
        let peer = agora_attest::identity::peer_id_of(provider)
            .map_err(|e| CallError::Unreachable(format!("no peer id for {provider}: {e}")))?;
        match self.open_libp2p(peer).await {
            Ok(s) => Ok(s),
            Err(first) => {
                // No connection and no address known to the stream behaviour: a status query
                // looks the provider up and dials it; then try once more.
                debug!(%provider, error = %first, "no stream yet; looking the provider up");
                let _status = self.query(provider, &op.body().lease, self.timeout).await?;
                self.open_libp2p(peer).await
            }
        }
    }

    async fn open_libp2p(&self, peer: libp2p::PeerId) -> Result<Boxed, CallError> {
        let mut control = self
            .streams
            .get()
            .ok_or_else(|| CallError::Unreachable("this node's network is not running".into()))?
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let stream = tokio::time::timeout(
            self.timeout,
            control.open_stream(peer, LEASE_STREAM_PROTOCOL),
        )
        .await
        .map_err(|_| CallError::Timeout(self.timeout))?
        .map_err(|e| CallError::Unreachable(e.to_string()))?;
        Ok(Box::new(stream.compat()))
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;

    /// Runs [`with_retries`] over `script` (one outcome per attempt); the result and how many
    /// attempts it made.
    async fn run(script: Vec<Attempt<u8>>) -> (Result<Result<u8, Refusal>, CallError>, u32) {
        let script = Mutex::new(VecDeque::from(script));
        let made = Cell::new(0u32);
        let result = with_retries(|| {
            made.set(made.get() + 1);
            let next = script
                .lock()
                .unwrap()
                .pop_front()
                .expect("an attempt past the script");
            async move { next }
        })
        .await;
        (result, made.get())
    }

    fn dropped(n: u8) -> Attempt<u8> {
        Attempt::Dropped(CallError::Unreachable(format!("dropped {n}")))
    }

    #[tokio::test]
    async fn a_dropped_stream_is_opened_again_until_answered() {
        let (result, made) = run(vec![dropped(1), dropped(2), Attempt::Answered(Ok(7))]).await;
        assert_eq!(result.unwrap().unwrap(), 7);
        assert_eq!(made, 3);
        let refused = Refusal::new(RefusalCode::Ended, "over");
        let (result, made) = run(vec![dropped(1), Attempt::Answered(Err(refused))]).await;
        assert_eq!(result.unwrap().unwrap_err().code, RefusalCode::Ended);
        assert_eq!(made, 2);
    }

    #[tokio::test]
    async fn retries_are_bounded_and_report_the_first_error() {
        let script = (1..=u8::try_from(OPEN_ATTEMPTS).unwrap())
            .map(dropped)
            .collect();
        let (result, made) = run(script).await;
        assert_eq!(made, OPEN_ATTEMPTS);
        assert_eq!(result.unwrap_err().to_string(), "unreachable: dropped 1");
    }

    #[tokio::test]
    async fn a_replay_after_a_drop_means_the_first_attempt_arrived() {
        let replay = || Refusal::new(RefusalCode::Replay, "nonce seen");
        let (result, made) = run(vec![dropped(1), Attempt::Answered(Err(replay()))]).await;
        assert_eq!(made, 2);
        assert_eq!(result.unwrap_err().to_string(), "unreachable: dropped 1");
        // A replay on the first attempt is the agent's: it stays a refusal.
        let (result, made) = run(vec![Attempt::Answered(Err(replay()))]).await;
        assert_eq!(made, 1);
        assert_eq!(result.unwrap().unwrap_err().code, RefusalCode::Replay);
    }

    #[tokio::test]
    async fn other_failures_are_final() {
        let timeout = Attempt::Failed(CallError::Timeout(Duration::from_secs(3)));
        let (result, made) = run(vec![timeout]).await;
        assert_eq!(made, 1);
        assert!(matches!(result, Err(CallError::Timeout(_))));
        let (result, made) = run(vec![
            dropped(1),
            Attempt::Failed(CallError::BadAnswer("x".into())),
        ])
        .await;
        assert_eq!(made, 2);
        assert_eq!(result.unwrap_err().to_string(), "bad answer: x");
    }
}
