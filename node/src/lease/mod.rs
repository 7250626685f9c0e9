//! Leases, negotiated point to point and controlled through any peer.
//!
//! ```text
//!  agent ──signed LeaseRequest──▶ any node (gateway) ──/agora/lease/1──▶ provider
//!    ▲          (HTTP)             lease::Gateway        (libp2p)       lease::Provider
//!    │                             tries candidates                     judge, Admission,
//!    └── signed grant / refusals ◀─ in order, fails over ◀── signed ─── QuotaBook, Supervisor
//! ```
//!
//! - [`provider`]: [`Provider`], a provider's lease service: judges the agent's signup
//!   record, runs the sans-IO admission and quota machines, launches the workload, signs
//!   grants, receipts and refusals, extends and stops leases, and restores them after a
//!   restart.
//! - [`gateway`]: [`Gateway`], what any node does for agents: relays a signed request to the
//!   providers it names with failover, relays operations, remembers what it relayed and
//!   whether the provider still answers (`provider_lost`: [`gateway::contact`]).
//! - [`streams`]: the provider's side of streamed operations (exec, logs, files) on
//!   `/agora/lease-stream/1`; [`framed`] carries their frames over any byte stream.
//! - [`approvals`]: requests waiting at the gateway for their owner's signed approval.
//! - [`meter`]: usage sampling and receipts.
//! - [`record`]: what is stored in the `leases` and `locks` columns.
//! - [`serve`]: answers the lease requests the network hands in.

use std::sync::Arc;

use agora_protocol::lease::{Refusal, RefusalCode};
use agora_protocol::lease_rpc as rpc;
use tokio::sync::{Semaphore, mpsc};
use tracing::debug;

use crate::daemon::network::InboundLease;

pub mod approvals;
pub mod framed;
pub mod gateway;
pub mod meter;
pub mod provider;
pub mod record;
pub mod streams;

pub use gateway::{Gateway, OpStream, Proposed};
pub use provider::{Authorized, Provider};

/// Most inbound lease requests handled at once.
pub const MAX_CONCURRENT: usize = 64;

/// Answers inbound lease requests with `provider` until the network loop goes away. Each
/// request is decoded (signatures verified) and handled in its own task, at most
/// [`MAX_CONCURRENT`] at once.
pub async fn serve(mut inbound: mpsc::Receiver<InboundLease>, provider: Arc<Provider>) {
    let permits = Arc::new(Semaphore::new(MAX_CONCURRENT));
    while let Some(msg) = inbound.recv().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let provider = provider.clone();
        tokio::spawn(async move {
            let answer = match rpc::Request::decode(&msg.request) {
                Ok(req) => provider.handle(&req, crate::clock::now()).await,
                Err(e) => {
                    debug!(peer = %msg.peer, error = %e, "malformed lease request");
                    rpc::Response::Refused(Refusal::new(
                        RefusalCode::Invalid,
                        format!("malformed lease request: {e}"),
                    ))
                }
            };
            if let Ok(bytes) = answer.encode() {
                let _ = msg.reply.send(bytes);
            }
            drop(permit);
        });
    }
}
