//! `realip lab`: the cluster in network namespaces. So far: `clean`.

use std::process::ExitCode;

use realip_lab::topology::{check_support, clean};

#[derive(Debug, clap::Args)]
#[command(about = "The whole cluster in network namespaces on this machine")]
pub struct Args {
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Debug, clap::Subcommand)]
enum LabCommand {
    /// Delete leftover lab namespaces (every namespace named realip-*). Run it only when no
    /// lab is in use.
    Clean,
}

/// Run `realip lab`.
pub fn run(args: Args) -> ExitCode {
    match args.command {
        LabCommand::Clean => {
            if let Err(e) = check_support() {
                eprintln!("realip lab: {e}");
                return ExitCode::from(2);
            }
            match clean() {
                Ok(removed) => {
                    for n in &removed {
                        crate::logging::print_out(&format!("removed {n}\n"));
                    }
                    if removed.is_empty() {
                        crate::logging::print_out("nothing to remove\n");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("realip lab: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
