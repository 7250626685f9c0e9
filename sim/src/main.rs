//! `agora-sim`: the deterministic discrete-event simulator of the Agora network.
//!
//! The engine core (virtual clock, event queue, trace hash) exists in the library; the
//! scenarios that will drive the `agora-protocol` machines do not yet, so the only
//! subcommand checks a trace file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

/// Deterministic simulator for the Agora network (engine core only; no scenarios yet).
#[derive(Debug, Parser)]
#[command(name = "agora-sim", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Recompute the trace hash of a trace file (one `time node kind digest` line per event).
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
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("agora-sim: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::VerifyTrace { file, expect }) => {
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
        }
        None => println!(
            "agora-sim {}: the engine core is built, but no scenarios can run yet; \
             `agora-sim verify-trace FILE` recomputes a trace file's hash",
            env!("CARGO_PKG_VERSION")
        ),
    }
    Ok(())
}
