//! `agora-sim`: the deterministic simulator of the Agora network.
//!
//! ```text
//! agora-sim run SCENARIO [--seed N] [--out DIR] [--trace FILE]
//! agora-sim check SCENARIO
//! agora-sim plot DIR
//! agora-sim compare A B
//! agora-sim verify-trace FILE [--expect HASH]
//! agora-sim sweep SCENARIO --param KEY=V1,V2 [--param …] [--seeds N] [--jobs J] [--out DIR]
//! ```
//!
//! Exit codes: 0 success, 1 any error (bad scenario, unwritable output, hash mismatch).

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use agora_sim::Scenario;
use agora_sim::run::{RunOptions, RunResult, run};
use anyhow::Context as _;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

/// Deterministic discrete-event simulator of the Agora network.
#[derive(Debug, Parser)]
#[command(name = "agora-sim", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a scenario and print its summary and trace hash.
    Run {
        /// The scenario file (TOML; see sim/scenarios/README.md).
        scenario: PathBuf,
        /// The RNG seed (default: `AGORA_SIM_SEED` if set, as a failed run prints it, else
        /// the scenario's `seed`).
        #[arg(long)]
        seed: Option<u64>,
        /// Write metrics.json and CSV time series into this directory.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Write the trace (one line per event) to this file.
        #[arg(long, value_name = "FILE")]
        trace: Option<PathBuf>,
    },
    /// Draw a run's charts (PNG and SVG) into its output directory.
    Plot {
        /// The directory `run --out` wrote.
        dir: PathBuf,
    },
    /// Set two runs' metrics side by side.
    Compare {
        /// The first run's directory (or metrics.json).
        a: PathBuf,
        /// The second run's directory (or metrics.json).
        b: PathBuf,
    },
    /// Check a scenario file and print what it describes.
    Check {
        /// The scenario file.
        scenario: PathBuf,
    },
    /// Run a scenario over a grid of parameter values and seeds (in parallel) and report
    /// each figure's mean and 95% confidence interval as CSV.
    Sweep {
        /// The scenario file.
        scenario: PathBuf,
        /// A dotted scenario key and its values, e.g. `adversary.fraction=0,0.1,0.2`
        /// (repeat for a grid).
        #[arg(long = "param", value_name = "KEY=V1,V2")]
        params: Vec<String>,
        /// Seeds per point (the scenario's seed and the ones after it).
        #[arg(long, default_value_t = 10)]
        seeds: u64,
        /// Worker threads (default: the machine's cores).
        #[arg(long)]
        jobs: Option<usize>,
        /// Write sweep.csv and sweep_runs.csv into this directory.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Recompute the trace hash of a trace file (one `time node kind fingerprint` line per event).
    VerifyTrace {
        /// The trace file to check.
        file: PathBuf,
        /// Fail unless the recomputed hash equals this one (64 hex digits).
        #[arg(long, value_name = "HASH")]
        expect: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("agora-sim: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn execute(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run {
            scenario,
            seed,
            out,
            trace,
        } => run_command(scenario, seed, out, trace),
        Command::Plot { dir } => {
            let files = agora_sim::plot::plot_dir(&dir)
                .with_context(|| format!("plotting {}", dir.display()))?;
            for file in files {
                println!("{}", file.display());
            }
            Ok(())
        }
        Command::Compare { a, b } => {
            print!("{}", agora_sim::compare::compare(&a, &b)?);
            Ok(())
        }
        Command::Check { scenario } => {
            let s = Scenario::load(&scenario)?;
            println!(
                "{}: {} nodes (+{} joining) in {} regions, {} providers, {} simulated, seed {}",
                s.name,
                s.nodes.count,
                s.churn.joins,
                s.nodes.regions.len(),
                s.workload.providers.get_ref(),
                s.duration,
                s.seed
            );
            Ok(())
        }
        Command::Sweep {
            scenario,
            params,
            seeds,
            jobs,
            out,
        } => sweep_command(&scenario, &params, seeds, jobs, out),
        Command::VerifyTrace { file, expect } => {
            let hash = agora_sim::verify_trace(&file)
                .with_context(|| format!("verifying trace file {}", file.display()))?;
            println!("trace_hash: {hash}");
            if let Some(expected) = expect {
                // Hashes are printed in lowercase; accept the expectation in either case.
                anyhow::ensure!(
                    hash.eq_ignore_ascii_case(expected.trim()),
                    "trace hash mismatch: the file hashes to {hash}, expected {expected}"
                );
            }
            Ok(())
        }
    }
}

fn run_command(
    path: PathBuf,
    seed: Option<u64>,
    out: Option<PathBuf>,
    trace: Option<PathBuf>,
) -> anyhow::Result<()> {
    let scenario = Scenario::load(&path)?;
    let seed = match seed {
        Some(seed) => Some(seed),
        None => seed_from_env()?,
    };
    let total_ms = scenario.duration.as_micros() / 1_000;
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(total_ms);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {msg} simulated ({eta} left)",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let options = RunOptions {
        seed,
        trace: trace.clone(),
        record_deliveries: false,
    };
    let started = Instant::now();
    let result = run(scenario, &options, |now, end| {
        bar.set_position(now.as_micros() / 1_000);
        bar.set_message(format!(
            "{:.1}s/{:.0}s",
            now.as_micros() as f64 / 1e6,
            end.as_micros() as f64 / 1e6
        ));
    })
    .with_context(|| format!("running {}", path.display()))?;
    bar.finish_and_clear();
    let wall = started.elapsed();
    print_summary(&result, wall.as_secs_f64());
    if let Some(dir) = out {
        result
            .write_outputs(&dir)
            .with_context(|| format!("writing results to {}", dir.display()))?;
        println!("results: {}", dir.display());
    }
    if let Some(trace) = trace {
        println!("trace: {}", trace.display());
    }
    println!("trace_hash: {}", result.summary.trace_hash);
    Ok(())
}

/// `AGORA_SIM_SEED`, the seed a failed run tells to rerun with.
fn seed_from_env() -> anyhow::Result<Option<u64>> {
    match std::env::var("AGORA_SIM_SEED") {
        Ok(text) => text
            .trim()
            .parse()
            .map(Some)
            .with_context(|| format!("AGORA_SIM_SEED={text:?} is not an unsigned integer")),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(e) => Err(e).context("reading AGORA_SIM_SEED"),
    }
}

fn sweep_command(
    path: &std::path::Path,
    params: &[String],
    seeds: u64,
    jobs: Option<usize>,
    out: Option<PathBuf>,
) -> anyhow::Result<()> {
    use agora_sim::sweep;
    let source = std::fs::read_to_string(path)
        .with_context(|| format!("reading scenario {}", path.display()))?;
    let params = params
        .iter()
        .map(|p| sweep::Param::parse(p))
        .collect::<Result<Vec<_>, _>>()?;
    let origin = path.display().to_string();
    let points = sweep::grid(&source, &origin, &params)?;
    anyhow::ensure!(seeds > 0, "--seeds must be at least 1");
    let first_seed = points.first().map_or(1, |p| p.scenario.seed);
    let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    let started = Instant::now();
    let rows = sweep::run_all(&points, first_seed, seeds, jobs);
    for row in rows.iter().filter(|r| r.error.is_some()) {
        eprintln!(
            "run (point {}, seed {}) failed: {}",
            row.point,
            row.seed,
            row.error.as_deref().unwrap_or("")
        );
    }
    let csv = sweep::summary_csv(&points, &rows);
    match out {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            std::fs::write(dir.join("sweep.csv"), &csv)
                .with_context(|| format!("writing {}", dir.join("sweep.csv").display()))?;
            std::fs::write(dir.join("sweep_runs.csv"), sweep::runs_csv(&points, &rows))
                .with_context(|| format!("writing {}", dir.join("sweep_runs.csv").display()))?;
            let files = agora_sim::plot::plot_sweep(&dir, &csv)
                .with_context(|| format!("plotting into {}", dir.display()))?;
            for file in files {
                println!("{}", file.display());
            }
            println!("results: {}", dir.display());
        }
        None => print!("{csv}"),
    }
    eprintln!(
        "{} runs ({} points x {seeds} seeds) on {jobs} threads in {:.1} s",
        rows.len(),
        points.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn print_summary(result: &RunResult, wall_secs: f64) {
    let s = &result.summary;
    let p = &s.propagation;
    let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1} ms"));
    println!(
        "scenario {} (seed {}): {} nodes, {:.0} s simulated, {} events",
        s.scenario, s.seed, s.node_slots, s.duration_s, s.events
    );
    println!(
        "offers: {} published ({} withdrawals), {} deliveries, latency p50 {} p90 {} p99 {}, coverage mean {:.4} min {:.4}, mean hops {:.2}",
        p.messages,
        p.withdrawals,
        p.deliveries,
        ms(p.p50_ms),
        ms(p.p90_ms),
        ms(p.p99_ms),
        p.coverage_mean,
        p.coverage_min,
        p.mean_hops
    );
    println!(
        "traffic: {:.0} frames and {:.0} bytes sent per node (mean), {} duplicates ({:.2} per delivery), {} lost, {} blocked",
        s.traffic.frames_sent_per_node.mean,
        s.traffic.bytes_sent_per_node.mean,
        s.traffic.duplicates,
        s.traffic.duplicates_per_delivery,
        s.traffic.lost,
        s.traffic.blocked
    );
    println!(
        "mesh: degree mean {:.2} (min {}, max {}), {:.2}% below D_lo; book completeness {:.4}",
        s.mesh.degree.mean,
        s.mesh.degree.min,
        s.mesh.degree.max,
        s.mesh.below_d_lo * 100.0,
        s.book_completeness
    );
    if let Some(m) = &s.market {
        println!(
            "market: {} agents, {} providers ({} lying), {} validators ({} byzantine); {} wishes, {} leases ({:.1}%), time-to-lease p50 {:.0} ms p99 {:.0} ms; double-spends certified {} (rejected {}), overspend {} µcr, quota conserved {}; final AUC {}",
            m.agents,
            m.providers,
            m.lying_providers,
            m.validators,
            m.byzantine_validators,
            m.counts.arrivals,
            m.counts.granted,
            m.lease_success_rate * 100.0,
            m.time_to_lease_ms.p50,
            m.time_to_lease_ms.p99,
            m.double_spends_certified,
            m.counts.double_spends_rejected,
            m.quota_overspend_micro,
            m.quota_conserved,
            m.final_auc.map_or("-".to_owned(), |a| format!("{a:.3}"))
        );
        println!(
            "market no-match: {:?}; failed attempts: {:?}; leases by role {:?} of wishes {:?}",
            m.counts.no_match,
            m.counts.attempt_failures,
            m.counts.granted_by_role,
            m.counts.arrivals_by_role
        );
        if let Some(share) = m.eclipse_attacker_share {
            println!(
                "eclipse: {} leases of agents on the victims, {:.1}% to the attackers' providers (other honest agents: {:.1}% to them in the last epoch)",
                m.counts.victim_leases,
                share * 100.0,
                m.final_liar_share.unwrap_or(0.0) * 100.0
            );
        }
    }
    eprintln!(
        "wall time {wall_secs:.2} s ({:.0} events/s, {:.1}x real time)",
        s.events as f64 / wall_secs.max(1e-9),
        s.duration_s / wall_secs.max(1e-9)
    );
}
