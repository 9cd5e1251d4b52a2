//! The `realip` binary: parses arguments, calls the crates, prints results.
//! Nothing here decides anything about addresses; that is realip-core's job.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

// Request handling allocates small, short-lived buffers; mimalloc serves
// them with less work than glibc's malloc (measured with bench/whoami.sh).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod lab;
mod logging;
mod node;
mod resolve;
mod whoami;

/// Keep the client's real IP visible through every hop, and prove it.
#[derive(Debug, Parser)]
#[command(name = "realip", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// What would this request resolve to under this trust configuration?
    Resolve(resolve::Args),
    /// The backend that shows what a pod really sees.
    Whoami(whoami::Args),
    /// The kube-proxy role on nftables: plan rules, answer health checks.
    Node(node::Args),
    /// The whole cluster in network namespaces on this machine.
    Lab(lab::Args),
}

fn main() -> ExitCode {
    let cmd = Cli::command().mut_subcommand("resolve", |c| c.after_long_help(resolve::long_help()));
    let cli = match Cli::from_arg_matches(&cmd.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match cli.command {
        Command::Resolve(args) => resolve::run(args),
        Command::Whoami(args) => whoami::run(args),
        Command::Node(args) => node::run(args),
        Command::Lab(args) => lab::run(args),
    }
}
