//! `agora-sim`: the deterministic discrete-event simulator of the Agora network.
//!
//! The crate drives the very same sans-IO `agora-protocol` machines as the node (each
//! simulated node runs an [`agora_protocol::market::Market`]: the offer book, provider rate
//! limits, gossip verdicts and sync pages; signed offers, gossip decoding) over a simulated
//! network:
//!
//! - [`time`]: the virtual clock ([`SimTime`], [`SimDuration`]);
//! - [`engine`]: the single-threaded event queue and run loop ([`Engine`], [`Ctx`]);
//! - [`trace`]: the running SHA-256 over every processed event ([`Traced`],
//!   [`TraceRecorder`], [`verify_trace`]), which makes "same seed, same run" checkable;
//! - [`scenario`]: TOML scenario files ([`Scenario`]);
//! - [`rng`]: draws from the run's one seeded RNG;
//! - [`fast_hash`]: a deterministic hasher for lookup tables;
//! - [`net_model`]: latency, bandwidth, loss and partitions between regions;
//! - [`gossip`]: the gossipsub v1.1 model (mesh, IHAVE/IWANT, seen cache, peer score);
//! - [`verifier`]: the memoising signature verifier ([`verifier::MemoVerifier`]);
//! - [`workload`]: providers with real keys signing real offers;
//! - [`world`]: the simulated network that ties them together ([`world::World`]);
//! - [`market`]: agents, providers, the quota committee, the evidence log and EigenTrust
//!   on top of it (scenarios with a `[market]` section), and the invariants checked;
//! - [`metrics`]: what a run measures and the files it writes;
//! - [`run`]: one run of a scenario ([`run::run`]);
//! - [`plot`], [`compare`]: charts of a run, and two runs side by side.
//!
//! ```
//! use agora_sim::run::{RunOptions, run};
//! let scenario = agora_sim::Scenario::from_toml(
//!     "duration = \"10s\"\n[nodes]\ncount = 10\n[workload]\nproviders = 1\nreadvertise = \"2s\"\n",
//!     "doc.toml",
//! )?;
//! let result = run(scenario, &RunOptions::default(), |_, _| {})?;
//! assert_eq!(result.summary.propagation.coverage_min, 1.0);
//! assert_eq!(result.summary.trace_hash.len(), 64);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

pub mod compare;
pub mod engine;
pub mod fast_hash;
pub mod gossip;
pub mod market;
pub mod metrics;
pub mod net_model;
pub mod plot;
pub mod rng;
pub mod run;
pub mod scenario;
pub mod sweep;
pub mod time;
pub mod trace;
pub mod verifier;
pub mod workload;
pub mod world;

pub use engine::{
    Ctx, DEFAULT_MAX_EVENTS, Engine, EngineError, NodeId, RunOutcome, ScheduleError, StopReason,
};
pub use rand_chacha::ChaCha20Rng;
pub use scenario::{Scenario, ScenarioError};
pub use time::{SimDuration, SimTime};
pub use trace::{TraceError, TraceRecorder, Traced, verify_trace};
