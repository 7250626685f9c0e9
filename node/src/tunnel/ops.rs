//! Lease operations straight over a tunnel connection: `agora agent exec|logs --direct`
//! skips the gateway for the lowest round trip.
//!
//! A connection negotiated with ALPN [`OPS_ALPN`] (instead of [`super::ALPN`]) carries one
//! streamed lease operation per bidirectional stream, in exactly the frames a gateway sends
//! over libp2p: the agent's signed `LeaseOp`, then input and output frames. The provider
//! hands each stream to the same handler ([`crate::lease::streams::handle`]), so the agent's
//! signature, the nonce, the lease's liveness and the tier's limits are checked as always;
//! the TLS client key only says who dialed. At most [`MAX_OPS`] run at once per endpoint.

use std::sync::Arc;
use std::time::Duration;

use agora_protocol::Signed;
use agora_protocol::lease::{LeaseOp, Refusal};
use quinn::VarInt;
use tokio::sync::Semaphore;
use tracing::{Instrument as _, debug};

use crate::lease::gateway::{CallError, OpStream, open_on};
use crate::lease::{Provider, streams};

/// The ALPN of connections that carry lease operations.
pub const OPS_ALPN: &[u8] = b"agora-ops/1";

/// Most operations running at once over one endpoint's direct connections.
pub const MAX_OPS: usize = streams::MAX_STREAMS;

/// Serves the operation streams of `conn` with `provider` until it closes; `permits`
/// bounds how many run at once (a stream over the bound is reset).
pub async fn serve(conn: quinn::Connection, provider: Arc<Provider>, permits: Arc<Semaphore>) {
    loop {
        let (mut send, recv) = match conn.accept_bi().await {
            Ok(s) => s,
            Err(e) => {
                debug!(error = %e, "direct operations connection closed");
                return;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            debug!("too many direct operations; stream reset");
            let _ = send.reset(VarInt::from_u32(1));
            continue;
        };
        let provider = provider.clone();
        tokio::spawn(
            async move {
                streams::handle(tokio::io::join(recv, send), &provider).await;
                drop(permit);
            }
            .in_current_span(),
        );
    }
}

/// Opens the streamed operation `op` on `conn` (an [`OPS_ALPN`] connection to the
/// provider `op` names): the provider's acceptance (with the stream) or refusal.
///
/// # Errors
/// [`CallError`] when no stream opens, or the provider gives no usable answer in `timeout`.
pub async fn open(
    conn: &quinn::Connection,
    op: &Signed<LeaseOp>,
    timeout: Duration,
) -> Result<Result<OpStream, Refusal>, CallError> {
    let (send, recv) = conn
        .open_bi()
        .await
        .map_err(|e| CallError::Unreachable(format!("no stream on the tunnel connection: {e}")))?;
    open_on(Box::new(tokio::io::join(recv, send)), op, timeout).await
}
