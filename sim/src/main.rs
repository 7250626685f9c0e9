//! `agora-sim`: the deterministic discrete-event simulator of the Agora network.
//!
//! This crate will drive the very same `agora-protocol` state machines as the node. So far
//! the protocol holds only identities and signed messages, so the binary offers no
//! subcommands yet; the engine and scenarios arrive with the simulator issue.

use clap::Parser;

/// Deterministic simulator for the Agora network (engine under construction).
#[derive(Debug, Parser)]
#[command(name = "agora-sim", version, about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    println!(
        "agora-sim {}: no scenarios can run yet; the engine arrives with the simulator issue",
        env!("CARGO_PKG_VERSION")
    );
}
