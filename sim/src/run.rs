//! One run of a scenario: set up the world, drive the engine to the end, summarise.
//!
//! ```no_run
//! use agora_sim::run::{RunOptions, run};
//! let scenario = agora_sim::Scenario::load("sim/scenarios/small.toml".as_ref())?;
//! let result = run(scenario, &RunOptions::default(), |_now, _end| {})?;
//! println!("trace_hash: {}", result.summary.trace_hash);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fs::File;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};

use crate::engine::{DEFAULT_MAX_EVENTS, Engine, EngineError};
use crate::metrics::Summary;
use crate::metrics::output::{self, OutputError};
use crate::metrics::summary::RunFacts;
use crate::scenario::Scenario;
use crate::time::{SimDuration, SimTime};
use crate::trace::TraceError;
use crate::world::{Event, World};

/// How to run a scenario.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Overrides the scenario's seed.
    pub seed: Option<u64>,
    /// Writes the trace (one line per event) to this file.
    pub trace: Option<PathBuf>,
    /// Keeps every delivery in the metrics (memory grows with nodes × offers).
    pub record_deliveries: bool,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The trace file could not be created.
    #[error("cannot create trace file {}", path.display())]
    TraceFile {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The trace could not be written.
    #[error(transparent)]
    Trace(#[from] TraceError),
    /// The engine stopped with an error.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The results could not be written.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// An invariant failed: the run stopped at the event that broke it.
    #[error("invariant violated at {at}: {what}; rerun with AGORA_SIM_SEED={seed}")]
    Invariant {
        /// The run's seed.
        seed: u64,
        /// When.
        at: SimTime,
        /// What was violated, by which event.
        what: String,
    },
}

/// A finished run: the summary and the world as it ended.
#[derive(Debug)]
pub struct RunResult {
    /// The `metrics.json` figures, trace hash included.
    pub summary: Summary,
    /// The final state and full metrics.
    pub world: World,
}

impl RunResult {
    /// Writes `metrics.json` and the CSV files into `dir`.
    ///
    /// # Errors
    /// [`OutputError`] naming the file that could not be written.
    pub fn write_outputs(&self, dir: &Path) -> Result<(), OutputError> {
        let net = self.world.net();
        output::write_all(
            dir,
            self.world.metrics(),
            &self.summary,
            &self.world.region_names(),
            |n| net.region_of(n),
            self.world.params().d_lo,
        )?;
        if let Some(market) = &self.summary.market {
            crate::market::stats::write_csv(dir, market).map_err(|source| OutputError::Write {
                path: dir.join("market_epochs.csv"),
                source,
            })?;
        }
        Ok(())
    }
}

/// Runs `scenario` to its end; `progress(now, end)` is called as simulated time advances
/// (about 200 times per run).
///
/// # Errors
/// [`RunError`] when the trace cannot be written or the engine hits its event limit.
pub fn run(
    scenario: Scenario,
    options: &RunOptions,
    mut progress: impl FnMut(SimTime, SimTime),
) -> Result<RunResult, RunError> {
    let seed = options.seed.unwrap_or(scenario.seed);
    let end = SimTime::ZERO.saturating_add(scenario.duration.0);
    let secs = scenario.duration.as_micros() / 1_000_000 + 1;
    // A runaway bound that grows with the scenario: about 2,000 events per node-second.
    let max_events = DEFAULT_MAX_EVENTS.max(
        u64::from(scenario.node_slots())
            .saturating_mul(secs)
            .saturating_mul(2_000),
    );
    let mut engine: Engine<Event> = Engine::new(seed).with_max_events(max_events);
    if let Some(path) = &options.trace {
        let file = File::create(path).map_err(|source| RunError::TraceFile {
            path: path.clone(),
            source,
        })?;
        engine = engine.with_trace_sink(Box::new(BufWriter::new(file)))?;
    }
    let mut world = World::new(scenario, options.record_deliveries);
    world.start(&mut engine);
    let step = SimDuration::from_micros((end.as_micros() / 200).max(1_000));
    let mut now = SimTime::ZERO;
    while now < end {
        now = now.saturating_add(step).min(end);
        engine.run_until(now, |ctx, node, event| world.handle(ctx, node, event))?;
        if let Some(v) = world.violation() {
            engine.flush_trace()?;
            return Err(RunError::Invariant {
                seed,
                at: v.at,
                what: v.what.clone(),
            });
        }
        progress(now, end);
    }
    engine.flush_trace()?;
    world.finish();
    let s = world.scenario();
    let facts = RunFacts {
        scenario: s.name.clone(),
        seed,
        nodes: s.nodes.count,
        node_slots: s.node_slots(),
        end,
        settle: s.metrics.settle.0,
        events: engine.events_processed(),
        trace_hash: engine.trace_hash(),
        d_lo: world.params().d_lo,
        verifier: world.verifier().stats(),
    };
    let mut summary = world.metrics().summary(facts);
    summary.market = world
        .market()
        .map(|m| m.summary(world.scenario().nodes.count));
    Ok(RunResult { summary, world })
}
