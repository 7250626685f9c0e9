//! The events of a simulated network and their trace encoding.

use crate::gossip::Frame;
use crate::trace::Traced;

/// The address of events that concern the whole network (partitions, samples).
pub const WORLD: u32 = u32::MAX;

/// Something that happens to a node (or to the [`WORLD`]).
#[derive(Debug, Clone)]
pub enum Event {
    /// A frame arrives.
    Deliver {
        /// The sender.
        from: u32,
        /// Its size on the wire.
        bytes: u32,
        /// The world's topology epoch when it was sent (bumped whenever a connection
        /// closes), which spares the delivery a connection lookup when nothing closed in
        /// between. Derived state, not part of the trace.
        link: u32,
        /// The frame.
        frame: Frame,
    },
    /// The gossipsub heartbeat.
    Heartbeat {
        /// The node's life it belongs to (stale after a crash).
        epoch: u32,
    },
    /// A provider signs and publishes a fresh offer.
    Advertise {
        /// The node's life it belongs to.
        epoch: u32,
    },
    /// Anti-entropy: sync the book with one random peer.
    SyncTick {
        /// The node's life it belongs to.
        epoch: u32,
    },
    /// The node crashes.
    Crash {
        /// For random churn, the life it was drawn for (stale after a restart); `None`
        /// for scripted crashes.
        epoch: Option<u32>,
        /// Whether it restarts by itself after a random downtime.
        restart: bool,
    },
    /// The node stops gracefully: a provider withdraws its offer, and the node goes down
    /// after the scenario's `leave_grace`.
    Leave {
        /// For random churn, the life it was drawn for; `None` for scripted leaves.
        epoch: Option<u32>,
        /// Whether it restarts by itself after a random downtime.
        restart: bool,
    },
    /// The node restarts (or joins for the first time).
    Start,
    /// The node dials `peer` (a redial after a heal).
    Connect {
        /// The peer.
        peer: u32,
    },
    /// A partition starts.
    PartitionStart {
        /// Its index in the scenario.
        index: u16,
    },
    /// Connections across a partition time out.
    PartitionTimeout {
        /// Its index.
        index: u16,
    },
    /// A partition heals.
    PartitionHeal {
        /// Its index.
        index: u16,
    },
    /// The metrics take a sample.
    Sample,
    /// Something in the market (scenarios with a `[market]` section).
    Market(crate::market::Event),
}

impl Traced for Event {
    fn kind(&self) -> &'static str {
        match self {
            Event::Deliver { frame, .. } => match frame {
                Frame::Publish { .. } => "publish",
                Frame::IHave { .. } => "ihave",
                Frame::IWant { .. } => "iwant",
                Frame::Graft { .. } => "graft",
                Frame::Prune { .. } => "prune",
                Frame::SyncRequest(_) => "sync-request",
                Frame::SyncResponse(_) => "sync-response",
            },
            Event::Heartbeat { .. } => "heartbeat",
            Event::Advertise { .. } => "advertise",
            Event::SyncTick { .. } => "sync-tick",
            Event::Crash { .. } => "crash",
            Event::Leave { .. } => "leave",
            Event::Start => "start",
            Event::Connect { .. } => "connect",
            Event::PartitionStart { .. } => "partition",
            Event::PartitionTimeout { .. } => "partition-timeout",
            Event::PartitionHeal { .. } => "heal",
            Event::Sample => "sample",
            Event::Market(event) => event.kind(),
        }
    }

    fn write_payload(&self, out: &mut Vec<u8>) {
        // IHAVE, IWANT and sync pages carry lists of ids: grown once and filled in place,
        // rather than one capacity check per id (a visible share of big runs).
        let ids = |out: &mut Vec<u8>, ids: &[u32]| {
            out.extend_from_slice(&(ids.len() as u32).to_le_bytes());
            let start = out.len();
            out.resize(start + 4 * ids.len(), 0);
            if let Some(room) = out.get_mut(start..) {
                for (bytes, id) in room.chunks_exact_mut(4).zip(ids) {
                    bytes.copy_from_slice(&id.to_le_bytes());
                }
            }
        };
        match self {
            Event::Deliver {
                from, bytes, frame, ..
            } => {
                out.extend_from_slice(&from.to_le_bytes());
                out.extend_from_slice(&bytes.to_le_bytes());
                match frame {
                    Frame::Publish { msg, hops } => {
                        out.extend_from_slice(&msg.to_le_bytes());
                        out.extend_from_slice(&hops.to_le_bytes());
                    }
                    Frame::IHave { topic, ids: list } => {
                        out.extend_from_slice(&topic.to_le_bytes());
                        ids(out, list);
                    }
                    Frame::IWant { ids: list } => ids(out, list),
                    Frame::Graft { topic } | Frame::Prune { topic } => {
                        out.extend_from_slice(&topic.to_le_bytes());
                    }
                    Frame::SyncRequest(req) => {
                        // Every field, in order (cheaper than its wire encoding, which
                        // the frame's size already reflects).
                        match &req.after {
                            Some(after) => {
                                out.push(1);
                                out.extend_from_slice(after.as_bytes());
                            }
                            None => out.push(0),
                        }
                        out.extend_from_slice(&req.limit.to_le_bytes());
                        match &req.digest {
                            Some(digest) => {
                                out.push(1);
                                out.extend_from_slice(&digest.0);
                            }
                            None => out.push(0),
                        }
                        out.extend_from_slice(&(req.held.len() as u32).to_le_bytes());
                        for held in &req.held {
                            out.extend_from_slice(held.key.as_bytes());
                            out.extend_from_slice(&held.seq.to_le_bytes());
                        }
                        out.push(u8::from(req.held_all));
                    }
                    Frame::SyncResponse(page) => {
                        ids(out, &page.offers);
                        ids(out, &page.withdrawals);
                        if let Some(next) = &page.next {
                            out.extend_from_slice(next.as_bytes());
                        }
                    }
                }
            }
            Event::Heartbeat { epoch } | Event::Advertise { epoch } | Event::SyncTick { epoch } => {
                out.extend_from_slice(&epoch.to_le_bytes());
            }
            Event::Crash { epoch, restart } | Event::Leave { epoch, restart } => {
                out.extend_from_slice(&epoch.unwrap_or(u32::MAX).to_le_bytes());
                out.push(u8::from(*restart));
            }
            Event::Connect { peer } => out.extend_from_slice(&peer.to_le_bytes()),
            Event::PartitionStart { index }
            | Event::PartitionTimeout { index }
            | Event::PartitionHeal { index } => out.extend_from_slice(&index.to_le_bytes()),
            Event::Start | Event::Sample => {}
            Event::Market(event) => event.write_payload(out),
        }
    }
}
