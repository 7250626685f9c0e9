//! `agora`: the Agora command-line tool: identities, attestations, the node daemon and a
//! client for any node's HTTP API.
//!
//! Exit codes: 0 success, 1 error (bad input, I/O), 2 usage error (from clap),
//! 3 a credential was checked and rejected (`agora attest verify`).

use std::process::ExitCode;

use clap::Parser as _;

mod cli;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(&args.global);
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            // One line: the error and its causes, never a backtrace.
            eprintln!("error: {err:#}");
            ExitCode::from(cli::EXIT_ERROR)
        }
    }
}
