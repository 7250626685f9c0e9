//! `agora-sim`: the deterministic discrete-event simulator of the Agora network.
//!
//! The crate will drive the very same sans-IO `agora-protocol` state machines as the node.
//! So far it holds the engine core only:
//!
//! - [`time`]: the virtual clock ([`SimTime`], [`SimDuration`]);
//! - [`engine`]: the single-threaded event queue and run loop ([`Engine`], [`Ctx`]);
//! - [`trace`]: the running SHA-256 over every processed event ([`Traced`],
//!   [`TraceRecorder`], [`verify_trace`]), which makes "same seed, same run" checkable.
//!
//! Scenarios, the network model and the gossip model are not implemented yet.

#![forbid(unsafe_code)]

pub mod engine;
pub mod time;
pub mod trace;

pub use engine::{
    Ctx, DEFAULT_MAX_EVENTS, Engine, EngineError, NodeId, RunOutcome, ScheduleError, StopReason,
};
pub use rand_chacha::ChaCha20Rng;
pub use time::{SimDuration, SimTime};
pub use trace::{TraceError, TraceRecorder, Traced, verify_trace};
