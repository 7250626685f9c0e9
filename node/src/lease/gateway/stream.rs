//! The gateway's side of streamed operations: open a stream to the provider the agent's
//! signed operation names, send the operation, and hand the caller the accepted stream.
//!
//! A provider this gateway has no connection to is found the way requests find it (a
//! status query looks it up and dials), then the stream is opened again once. A provider
//! that gives no usable answer is noted in the lease's record, as for a failed refresh
//! ([`super::contact`]).

use agora_protocol::frames::StreamFrame;
use agora_protocol::lease::{LeaseOp, Refusal};
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

impl Gateway {
    /// Opens the streamed operation `op` at the provider it names and waits (up to the
    /// provider timeout) for its acceptance or refusal.
    ///
    /// # Errors
    /// [`CallError`] when the provider cannot be reached or answers nonsense.
    pub async fn open_stream(
        &self,
        op: &Signed<LeaseOp>,
    ) -> Result<Result<OpStream, Refusal>, CallError> {
        let provider = op.body().provider;
        let stream = self.connect(&provider, op).await?;
        let (r, w) = tokio::io::split(stream);
        let mut reader = FrameReader::new(r);
        let mut writer = FrameWriter::new(w);
        let exchange = async {
            writer.open(op.as_bytes()).await?;
            reader.next().await
        };
        let first = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(first)) => first,
            Ok(Err(e)) => {
                let e = CallError::from(e);
                self.unanswered(&provider, &op.body().lease, &e);
                return Err(e);
            }
            Err(_) => {
                let e = CallError::Timeout(self.timeout);
                self.unanswered(&provider, &op.body().lease, &e);
                return Err(e);
            }
        };
        match first {
            Some(StreamFrame::Accepted) => Ok(Ok(OpStream { reader, writer })),
            Some(StreamFrame::Refused(r)) => Ok(Err(r)),
            Some(_) => Err(CallError::BadAnswer(
                "the provider sent output before accepting".into(),
            )),
            None => Err(CallError::Unreachable(
                "the provider closed the stream without an answer".into(),
            )),
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
