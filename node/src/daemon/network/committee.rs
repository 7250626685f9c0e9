//! The network loop's quota committee part: outbound calls on
//! [`QUOTA_PROTOCOL`](crate::net::QUOTA_PROTOCOL) for [`Quota`](crate::committee::Quota)'s
//! client, and inbound requests answered by the node's committee service.
//!
//! Each inbound request is answered on a task of its own (a vote waits for a synced store
//! write), at most [`MAX_INBOUND`] at once; beyond that, and on a node without a genesis,
//! the answer is a `Refused` at once. Outbound calls are bounded by [`MAX_CALLS`] and by
//! request-response's timeout.

use std::collections::HashMap;

use agora_protocol::quota_rpc::Response;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use libp2p::PeerId;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use tokio::sync::oneshot;
use tracing::debug;

use super::NetworkLoop;

/// Most inbound quota requests being answered at once.
const MAX_INBOUND: usize = 512;
/// Most outbound quota calls in flight.
const MAX_CALLS: usize = 1024;

/// A quota request to send to `peer`; the encoded answer (or why there is none) goes to
/// `reply`.
#[derive(Debug)]
pub struct QuotaCall {
    /// The validator.
    pub peer: PeerId,
    /// The encoded `quota_rpc::Request`.
    pub request: Vec<u8>,
    /// Where the encoded answer goes.
    pub reply: oneshot::Sender<Result<Vec<u8>, String>>,
}

type Answering = BoxFuture<'static, (ResponseChannel<Vec<u8>>, Vec<u8>)>;

/// The loop's quota state.
#[derive(Default)]
pub(super) struct QuotaNet {
    calls: HashMap<OutboundRequestId, oneshot::Sender<Result<Vec<u8>, String>>>,
    pub(super) answering: FuturesUnordered<Answering>,
}

fn refused(reason: &str) -> Vec<u8> {
    Response::Refused(reason.to_owned())
        .encode()
        .unwrap_or_default()
}

impl NetworkLoop {
    /// Sends a quota call.
    pub(super) fn send_quota(&mut self, call: QuotaCall) {
        if call.reply.is_closed() {
            return;
        }
        if call.peer == *self.swarm.local_peer_id() {
            let _ = call
                .reply
                .send(Err("a node does not send quota requests to itself".into()));
            return;
        }
        if self.quota.calls.len() >= MAX_CALLS {
            let _ = call
                .reply
                .send(Err("too many quota requests in flight".into()));
            return;
        }
        let id = self
            .swarm
            .behaviour_mut()
            .quota
            .send_request(&call.peer, call.request);
        self.quota.calls.insert(id, call.reply);
    }

    /// Sends an answer that is ready.
    pub(super) fn on_quota_answered(&mut self, channel: ResponseChannel<Vec<u8>>, bytes: Vec<u8>) {
        if self
            .swarm
            .behaviour_mut()
            .quota
            .send_response(channel, bytes)
            .is_err()
        {
            debug!("quota answer not sent: the stream closed");
        }
    }

    /// Handles the quota behaviour's events.
    pub(super) fn on_quota(&mut self, ev: request_response::Event<Vec<u8>, Vec<u8>>) {
        match ev {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => self.on_quota_request(peer, request, channel),
            request_response::Event::Message {
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(reply) = self.quota.calls.remove(&request_id) {
                    let _ = reply.send(Ok(response));
                }
            }
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some(reply) = self.quota.calls.remove(&request_id) {
                    debug!(%peer, %error, "quota request failed");
                    let _ = reply.send(Err(error.to_string()));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, %error, "quota answer failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_quota_request(
        &mut self,
        peer: PeerId,
        request: Vec<u8>,
        channel: ResponseChannel<Vec<u8>>,
    ) {
        let Some(service) = self.shared.quota().cloned() else {
            self.on_quota_answered(channel, refused("this node has no quota committee"));
            return;
        };
        if self.quota.answering.len() >= MAX_INBOUND {
            self.on_quota_answered(channel, refused("too many quota requests at once; retry"));
            return;
        }
        debug!(%peer, bytes = request.len(), "quota request");
        let task = tokio::spawn(async move { service.handle(&request).await });
        self.quota.answering.push(Box::pin(async move {
            let bytes = task
                .await
                .unwrap_or_else(|_| refused("the quota request could not be answered"));
            (channel, bytes)
        }));
    }
}
