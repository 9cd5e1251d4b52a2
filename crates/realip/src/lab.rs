//! `realip lab`: the cluster in network namespaces. So far: `clean`.

use std::process::ExitCode;

use realip_lab::topology::{check_support, clean, plan, unique_id, Lab, Role, Spec};

#[derive(Debug, clap::Args)]
#[command(about = "The whole cluster in network namespaces on this machine")]
pub struct Args {
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Debug, clap::Subcommand)]
enum LabCommand {
    /// Build the cluster's namespaces (fabric, router, client, nodes, pods) and keep them
    /// until Ctrl-C, which tears everything down. Explore with `ip netns exec NAME ...`.
    Up {
        /// Pods per node, comma-separated: `1,0` is two nodes with one pod on node-1.
        #[arg(long, default_value = "1,0", value_name = "N,N,...")]
        pods: String,
    },
    /// Delete leftover lab namespaces (every namespace named realip-*). Run it only when no
    /// lab is in use.
    Clean,
}

/// Run `realip lab`.
pub fn run(args: Args) -> ExitCode {
    match args.command {
        LabCommand::Up { pods } => up(&pods),
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

fn up(pods: &str) -> ExitCode {
    let counts: Result<Vec<usize>, _> =
        pods.split(',').map(|p| p.trim().parse::<usize>()).collect();
    let counts = match counts {
        Ok(c) if !c.is_empty() => c,
        _ => {
            eprintln!("realip lab: --pods {pods:?}: expected numbers like 1,0");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = check_support() {
        eprintln!("realip lab: {e}");
        return ExitCode::from(2);
    }
    let p = match plan(
        &Spec {
            pods_per_node: counts,
        },
        &unique_id(),
    ) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("realip lab: {e}");
            return ExitCode::from(2);
        }
    };
    let lab = match Lab::build(p) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("realip lab: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut text = String::new();
    for h in &lab.plan().hosts {
        let what = match h.role {
            Role::Fabric => "fabric (bridge br0)".to_string(),
            Role::Router => "router 10.0.0.1 | 203.0.113.1".to_string(),
            Role::Client => format!("client {}", realip_lab::topology::CLIENT_IP),
            Role::Node(n) => {
                let gw = realip_lab::topology::node_pod_gateway(n).octets();
                format!(
                    "node-{n} {} (pods {}.{}.{}.0/24 via cbr0)",
                    realip_lab::topology::node_ip(n),
                    gw[0],
                    gw[1],
                    gw[2]
                )
            }
            Role::Pod(n, j) => format!("pod {}", realip_lab::topology::pod_ip(n, j)),
        };
        text.push_str(&format!("{}  {what}\n", h.netns));
    }
    text.push_str("ready: Ctrl-C tears the lab down\n");
    crate::logging::print_out(&text);
    // The lab's signal handler removes the namespaces and exits.
    loop {
        std::thread::park();
    }
}
