//! The gossipsub v1.1 model: per-topic meshes, flood publish, IHAVE/IWANT lazy gossip,
//! duplicate suppression and a simplified peer score.
//!
//! rust-libp2p's gossipsub is not deterministic (it reads the clock and OS randomness), so
//! the simulator models it. The pieces, each in its own module, are driven per node by
//! [`crate::world`]:
//!
//! - [`mesh`]: the heartbeat's mesh maintenance (graft below `D_lo`, prune above `D_hi`
//!   keeping the `D_score` best) and the choice of IHAVE targets;
//! - [`mcache`]: the message cache's history windows (IWANT answers, IHAVE ids);
//! - [`seen`]: the time-bounded seen cache that suppresses duplicates;
//! - [`score`]: the simplified peer score.
//!
//! Where the model simplifies, compared with the spec and rust-libp2p:
//!
//! - Subscriptions are known to peers at once (no SUBSCRIBE exchange); every publisher is
//!   subscribed to its topic, so fanout state never arises and is not modelled.
//! - No outbound-connection quota (`D_out`), no opportunistic grafting, no peer exchange
//!   on PRUNE, no IDONTWANT; a GRAFT is refused when the mesh already holds `D_hi`.
//! - IHAVE/IWANT: no per-heartbeat caps on IHAVE messages per peer, no IWANT promise
//!   tracking (P7) and no retransmission cap; an id already requested this heartbeat is
//!   not requested again (as rust-libp2p does).
//! - Score: see [`score`]; the node's topic weights, with mesh-delivery penalties (P3,
//!   P3b) and IP colocation (P6) off as in the node; decay happens per heartbeat.
//! - Validation takes a fixed `validation_delay` (default zero) per message, with no CPU
//!   queueing; gossipsub's own message signatures (strict signing) are not modelled: the
//!   offers inside are signed and verified for real.
//! - Frames on one connection may overtake each other when latency jitter exceeds their
//!   spacing (no per-connection ordering).
//! - Each distinct message is decoded and verified once per run, by its first receiver,
//!   through the real `GossipMessage::decode_on_topic` and the memoising verifier; later
//!   receivers get a clone of that outcome (decoding is a pure function of the bytes and
//!   topic, so each book is fed exactly what its own decode would give). Sync pages are
//!   decoded per receipt, through the memo.

pub mod mcache;
pub mod mesh;
pub mod score;
pub mod seen;

use std::rc::Rc;

use agora_protocol::AgoraId;
use agora_protocol::gossip::SyncRequest;

use crate::scenario;
use crate::time::SimDuration;

/// Index of a published message in the run's message table: the same bytes are the same
/// message (gossipsub's content-addressed ids), stored once and shared by every frame.
pub type MsgIdx = u32;

/// Index of a topic (one per region).
pub type TopicIdx = u16;

/// gossipsub parameters, with times as simulated durations.
#[derive(Debug, Clone)]
pub struct Params {
    /// Target mesh degree.
    pub d: usize,
    /// Graft below this.
    pub d_lo: usize,
    /// Prune above this.
    pub d_hi: usize,
    /// Best-scoring peers kept when pruning.
    pub d_score: usize,
    /// Minimum IHAVE targets per topic and heartbeat.
    pub d_lazy: usize,
    /// Fraction of eligible peers sent IHAVE, if more than `d_lazy`.
    pub gossip_factor: f64,
    /// Heartbeat interval.
    pub heartbeat: SimDuration,
    /// Windows kept in the message cache.
    pub history_length: usize,
    /// Windows advertised in IHAVE.
    pub history_gossip: usize,
    /// Seen-cache lifetime.
    pub seen_ttl: SimDuration,
    /// Backoff after PRUNE.
    pub prune_backoff: SimDuration,
    /// Most ids per IHAVE.
    pub max_ihave_length: usize,
    /// Publish to every subscribed peer rather than the mesh.
    pub flood_publish: bool,
    /// Anti-entropy sync period.
    pub sync_interval: SimDuration,
    /// Validation time before a message is forwarded and shows in the book.
    pub validation_delay: SimDuration,
}

impl From<&scenario::Gossip> for Params {
    fn from(g: &scenario::Gossip) -> Self {
        Params {
            d: g.d as usize,
            d_lo: g.d_lo as usize,
            d_hi: g.d_hi as usize,
            d_score: g.d_score as usize,
            d_lazy: g.d_lazy as usize,
            gossip_factor: g.gossip_factor,
            heartbeat: g.heartbeat.0,
            history_length: g.history_length as usize,
            history_gossip: g.history_gossip as usize,
            seen_ttl: g.seen_ttl.0,
            prune_backoff: g.prune_backoff.0,
            max_ihave_length: g.max_ihave_length as usize,
            flood_publish: g.flood_publish,
            sync_interval: g.sync_interval.0,
            validation_delay: g.validation_delay.0,
        }
    }
}

/// A frame one node sends another: a gossipsub RPC part or an offer-sync exchange.
#[derive(Debug, Clone)]
pub enum Frame {
    /// A full message. `hops` counts relays from the origin (simulator bookkeeping, not
    /// on the wire).
    Publish {
        /// The message.
        msg: MsgIdx,
        /// Relays so far (1 when sent by the origin).
        hops: u16,
    },
    /// "I have these message ids on this topic."
    IHave {
        /// The topic.
        topic: TopicIdx,
        /// The ids, shared by every target of one heartbeat.
        ids: Rc<[MsgIdx]>,
    },
    /// "Send me these messages."
    IWant {
        /// The ids wanted.
        ids: Rc<[MsgIdx]>,
    },
    /// "Add me to your mesh for this topic."
    Graft {
        /// The topic.
        topic: TopicIdx,
    },
    /// "I removed you from my mesh for this topic."
    Prune {
        /// The topic.
        topic: TopicIdx,
    },
    /// An offer-sync request (`/agora/offer-sync/2`).
    SyncRequest(Box<SyncRequest>),
    /// An offer-sync page (boxed: it is rare and large, and every queued event is as
    /// large as the largest frame).
    SyncResponse(Box<SyncPage>),
}

/// An offer-sync page: the offers (and, on a first page, withdrawals) as their messages'
/// signed bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncPage {
    /// The messages whose offers the page carries.
    pub offers: Vec<MsgIdx>,
    /// The messages whose withdrawals the page carries (first pages only).
    pub withdrawals: Vec<MsgIdx>,
    /// The cursor for the next page.
    pub next: Option<AgoraId>,
}

/// Bytes of protobuf framing around one RPC part (length prefix, field tags).
const RPC_OVERHEAD: usize = 8;
/// A gossipsub message's envelope besides data and topic: from (38), seqno (10),
/// signature (66), key (36) with their tags.
const PUBLISH_ENVELOPE: usize = 150;
/// gossipsub message ids are 20 bytes (the node's content-addressed id).
const MESSAGE_ID_BYTES: usize = 20 + 2;
/// request-response framing of a sync exchange (length prefix, stream overhead).
const SYNC_OVERHEAD: usize = 16;

/// The kinds of frame, for per-kind counters.
pub const FRAME_KINDS: [&str; 7] = [
    "publish",
    "ihave",
    "iwant",
    "graft",
    "prune",
    "sync_request",
    "sync_response",
];

impl Frame {
    /// The frame's index in [`FRAME_KINDS`].
    pub fn kind_index(&self) -> usize {
        match self {
            Frame::Publish { .. } => 0,
            Frame::IHave { .. } => 1,
            Frame::IWant { .. } => 2,
            Frame::Graft { .. } => 3,
            Frame::Prune { .. } => 4,
            Frame::SyncRequest(_) => 5,
            Frame::SyncResponse(_) => 6,
        }
    }

    /// The frame's size on the wire, given message sizes and the topic name length.
    pub fn wire_bytes(
        &self,
        message_bytes: impl Fn(MsgIdx) -> usize,
        topic_bytes: impl Fn(TopicIdx) -> usize,
        message_topic: impl Fn(MsgIdx) -> TopicIdx,
    ) -> usize {
        match self {
            Frame::Publish { msg, .. } => {
                RPC_OVERHEAD
                    + PUBLISH_ENVELOPE
                    + topic_bytes(message_topic(*msg))
                    + message_bytes(*msg)
            }
            Frame::IHave { topic, ids } => {
                RPC_OVERHEAD + topic_bytes(*topic) + ids.len() * MESSAGE_ID_BYTES
            }
            Frame::IWant { ids } => RPC_OVERHEAD + ids.len() * MESSAGE_ID_BYTES,
            Frame::Graft { topic } => RPC_OVERHEAD + topic_bytes(*topic),
            // A PRUNE carries its backoff.
            Frame::Prune { topic } => RPC_OVERHEAD + topic_bytes(*topic) + 10,
            Frame::SyncRequest(req) => SYNC_OVERHEAD + req.encoded_len(),
            Frame::SyncResponse(page) => {
                // Each offer and withdrawal is a length-prefixed byte string (the kind
                // byte is not sent).
                SYNC_OVERHEAD
                    + 36
                    + page
                        .offers
                        .iter()
                        .chain(&page.withdrawals)
                        .map(|m| message_bytes(*m).saturating_sub(1) + 3)
                        .sum::<usize>()
            }
        }
    }
}
