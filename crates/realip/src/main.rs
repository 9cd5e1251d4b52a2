//! The `realip` binary: parses arguments, calls the crates, prints results.
//! Nothing here decides anything about addresses; that is realip-core's job.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

// Request handling allocates small, short-lived buffers; mimalloc serves
// them with less work than glibc's malloc (measured with bench/whoami.sh).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod lab;
mod lb;
mod logging;
mod node;
mod process;
mod ready;
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
// No doc comments on the variants: clap would take them for the
// subcommands' about texts and drop the long help each Args defines.
enum Command {
    Resolve(resolve::Args),
    Whoami(whoami::Args),
    Node(node::Args),
    Lab(lab::Args),
    // Boxed: the load balancer's flags are many, and the enum would be as
    // large as they are for every subcommand.
    Lb(Box<lb::Args>),
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
        Command::Lb(args) => lb::run(*args),
    }
}
