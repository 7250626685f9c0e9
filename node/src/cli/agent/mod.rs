//! `agora agent …`: what an AI agent does with Agora, one subcommand per file.

use std::process::ExitCode;

use clap::Subcommand;

use super::GlobalArgs;

mod control;
mod lease;
mod ps;
mod quota;
mod run;
mod service;
mod session;
mod signup;
mod token;

pub(crate) use lease::report_failure;

#[derive(Debug, Subcommand)]
pub(super) enum AgentCommand {
    /// Sign up at a node: one signed call with your key (and attestation, if any); prints
    /// your account and saves the signup record beside the key as FILE.signup.
    Signup(signup::SignupArgs),
    /// List the offers a node sees (the same as `agora offers`).
    Offers(Box<crate::cli::offers::OffersArgs>),
    /// Run a workload: quote, sign one lease request listing the best offers, send it
    /// through the node (which fails over along them), check the provider's signed grant.
    Run(Box<run::RunArgs>),
    /// Run a command in a lease's workload: prints its output and exits with its code.
    Exec(session::ExecArgs),
    /// Print a lease's workload output (`-f` to follow it until the workload ends).
    Logs(session::LogsArgs),
    /// Copy files into (`put`) or out of (`get`) a lease's workload, as tar streams.
    Files(session::FilesArgs),
    /// List your leases as the node knows them.
    Ps(ps::PsArgs),
    /// Lengthen a lease (signed by you, relayed to its provider).
    Extend(control::ExtendArgs),
    /// End a lease now; prints the provider's final signed receipt and countersigns it
    /// (`--no-ack` not to), so the provider's evidence shows you confirmed what it cost.
    Stop(control::StopArgs),
    /// Show one lease (refreshed from its provider, signatures checked); an ended lease's
    /// final receipt not yet acknowledged is countersigned (`--no-ack` not to).
    Status(control::StatusArgs),
    /// Publish a port of your lease as a service others find (`agora services`,
    /// `GET /v1/services`, MCP `list_services`): a record you sign, gossiped with a TTL.
    Publish(Box<service::PublishArgs>),
    /// Let another agent's key reach ports of your lease: prints a grant you sign (or writes
    /// `--out FILE`) for it to pass to `agora tunnel --grant`.
    Grant(Box<service::GrantArgs>),
    /// Revoke a grant: the provider refuses it from now on and cuts its open streams.
    Revoke(service::RevokeArgs),
    /// Hand one node a delegation (what it may do for you, a spend cap, an expiry) for a
    /// bearer token that works there only; its `/mcp` endpoint then acts for you.
    Token(token::TokenArgs),
}

pub(super) fn run(cmd: AgentCommand, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    match cmd {
        AgentCommand::Signup(args) => signup::run(&args, global),
        AgentCommand::Offers(args) => crate::cli::offers::run(&args, global),
        AgentCommand::Run(args) => run::run(&args, global),
        AgentCommand::Exec(args) => session::exec(&args, global),
        AgentCommand::Logs(args) => session::logs(&args, global),
        AgentCommand::Files(args) => session::files(&args, global),
        AgentCommand::Ps(args) => ps::run(&args, global),
        AgentCommand::Extend(args) => control::extend(&args, global),
        AgentCommand::Stop(args) => control::stop(&args, global),
        AgentCommand::Status(args) => control::status(&args, global),
        AgentCommand::Token(args) => token::run(&args, global),
        AgentCommand::Publish(args) => service::publish(&args, global),
        AgentCommand::Grant(args) => service::grant(&args, global),
        AgentCommand::Revoke(args) => service::revoke(&args, global),
    }
}
