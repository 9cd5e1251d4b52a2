//! `realip node`: the kube-proxy role. Without a subcommand it is the
//! agent: it programs nf_tables over netlink from the objects, keeps them
//! in sync as the files change, and serves the health checks. `plan`
//! prints the ruleset instead; `health-check` serves only the health
//! answers. The work is `realip_node::agent`'s; here are the arguments,
//! the messages for people and the exit codes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use realip_node::agent::{self, Agent, FileSource, ObjectSource, RunConfig};
use realip_node::plan::{health_checks, plan, Family};

#[derive(Debug, clap::Args)]
#[command(
    about = "The kube-proxy role on nftables: program the rules, keep them in sync, answer health checks",
    long_about = "Without a subcommand, the agent: read Services, EndpointSlices and Nodes from --objects \
(a file or a directory of .yaml/.yml/.json files, as `kubectl get -o yaml` prints them), plan this \
node's rules and program them into nf_tables over netlink (no nft or iptables binary needed): one \
table `realip` per family, every sync one atomic transaction. The first sync replaces the tables \
whole; later ones send only what changed. Established connections survive restarts and resyncs \
(conntrack keeps their NAT bindings). The objects are polled (--poll); a change resyncs; every \
--full-sync-period the tables are replaced whole, repairing changes made behind our back. Objects \
that cannot be used are skipped with a log line naming them. Serves kube-proxy's /healthz and \
/livez on --healthz and one healthCheckNodePort server per Local LoadBalancer Service on \
--health-address. On SIGTERM it exits and leaves the rules in place, as kube-proxy does; \
--cleanup removes them. Needs CAP_NET_ADMIN in the node's network namespace.",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Args {
    #[command(subcommand)]
    command: Option<NodeCommand>,
    #[command(flatten)]
    agent: AgentArgs,
}

#[derive(Debug, clap::Args)]
struct AgentArgs {
    /// A YAML/JSON file or a directory of them, polled for changes.
    #[arg(long, value_name = "PATH", required = true)]
    objects: Option<PathBuf>,
    /// This node's name (its Node object must be among the objects).
    #[arg(long, value_name = "NAME", required = true)]
    node: Option<String>,
    /// Address the healthCheckNodePort servers listen on.
    #[arg(long, default_value = "0.0.0.0", value_name = "IP")]
    health_address: std::net::IpAddr,
    /// Where /healthz and /livez listen (kube-proxy: port 10256).
    #[arg(long, default_value = "0.0.0.0:10256", value_name = "ADDR:PORT")]
    healthz: std::net::SocketAddr,
    /// How often the objects are checked for changes.
    #[arg(long, default_value = "1s", value_parser = crate::process::parse_duration)]
    poll: Duration,
    /// How often the tables are replaced whole even without changes.
    #[arg(long, default_value = "1h", value_parser = crate::process::parse_duration)]
    full_sync_period: Duration,
    /// Sync once and exit (no health servers): 0 when the kernel holds the plan.
    #[arg(long)]
    once: bool,
    /// Remove the tables and exit.
    #[arg(long, conflicts_with = "once")]
    cleanup: bool,
    /// Log format.
    #[arg(long = "log-format", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

#[derive(Debug, clap::Subcommand)]
enum NodeCommand {
    /// Print the nftables ruleset (nft -f syntax) this node gets for the objects.
    #[command(
        long_about = "Read Services, EndpointSlices and Nodes (what `kubectl get -o yaml` or \
`-o json` prints: single objects, `---` documents or a List) from a file or a directory of .yaml/.yml/.json \
files, and print the nftables ruleset for NODE: one table per family, dispatch through verdict maps, \
kube-proxy's semantics (Cluster: masquerade with mark 0x4000; Local: local endpoints only, DROP \
without one, pods short-circuit, node-sourced traffic masqueraded; REJECT without endpoints; \
terminating fallback; session affinity; internalTrafficPolicy). Objects that cannot be used are \
skipped with a line on stderr naming them. Nothing is applied: pipe into `nft -c -f -` to check it."
    )]
    Plan {
        /// A YAML/JSON file or a directory of them.
        #[arg(long, value_name = "PATH")]
        objects: PathBuf,
        /// This node's name (its Node object must be among the objects).
        #[arg(long, value_name = "NAME")]
        node: String,
        /// Which family's table: ip, ip6 or all.
        #[arg(long, default_value = "all", value_parser = ["ip", "ip6", "all"])]
        family: String,
    },
    /// Serve healthCheckNodePort answers for this node's Local LoadBalancer Services, and
    /// /healthz and /livez on --healthz.
    HealthCheck {
        /// A YAML/JSON file or a directory of them.
        #[arg(long, value_name = "PATH")]
        objects: PathBuf,
        /// This node's name.
        #[arg(long, value_name = "NAME")]
        node: String,
        /// Address the health-check node ports listen on.
        #[arg(long, default_value = "0.0.0.0", value_name = "IP")]
        address: std::net::IpAddr,
        /// Where /healthz and /livez listen (kube-proxy: port 10256).
        #[arg(long, default_value = "0.0.0.0:10256", value_name = "ADDR:PORT")]
        healthz: std::net::SocketAddr,
    },
}

fn load(objects: &Path) -> Result<realip_node::model::Model, ExitCode> {
    match FileSource::new(objects).load() {
        Ok((model, skipped)) => {
            for s in skipped {
                eprintln!("realip node: {s}");
            }
            Ok(model)
        }
        Err(e) => {
            eprintln!("realip node: {e}");
            Err(ExitCode::from(2))
        }
    }
}

/// The single-threaded runtime the long-running subcommands use.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("realip node: starting the runtime: {e}");
            ExitCode::FAILURE
        })
}

/// Run `realip node`.
pub fn run(args: Args) -> ExitCode {
    let Some(command) = args.command else {
        return run_agent(args.agent);
    };
    match command {
        NodeCommand::Plan {
            objects,
            node,
            family,
        } => {
            let model = match load(&objects) {
                Ok(m) => m,
                Err(code) => return code,
            };
            match plan(&model, &node) {
                Ok(rulesets) => {
                    for rs in rulesets {
                        let want = match family.as_str() {
                            "ip" => rs.family == Family::Ip,
                            "ip6" => rs.family == Family::Ip6,
                            _ => true,
                        };
                        if want && !crate::logging::print_display(&rs) {
                            break;
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("realip node: {e}");
                    ExitCode::from(2)
                }
            }
        }
        NodeCommand::HealthCheck {
            objects,
            node,
            address,
            healthz,
        } => {
            crate::logging::init("text");
            let model = match load(&objects) {
                Ok(m) => m,
                Err(code) => return code,
            };
            let checks = health_checks(&model, &node);
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            let served = rt.block_on(agent::serve_health_checks(
                &checks,
                address,
                healthz,
                crate::logging::wait_for_signal(),
            ));
            match served {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("realip node: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn run_agent(args: AgentArgs) -> ExitCode {
    crate::logging::init(&args.log_format);
    // clap makes both required without a subcommand.
    let (Some(objects), Some(node)) = (args.objects, args.node) else {
        eprintln!("realip node: --objects and --node are required");
        return ExitCode::from(2);
    };
    let mut agent = match Agent::new(FileSource::new(objects), node) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("realip node: {e} (programming nf_tables needs CAP_NET_ADMIN)");
            return ExitCode::from(2);
        }
    };
    if args.cleanup {
        return match agent.cleanup() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("realip node: removing the tables: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if args.once {
        return match agent.sync_once() {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("realip node: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let config = RunConfig {
        health_address: args.health_address,
        healthz: args.healthz,
        poll: args.poll,
        full_sync_period: args.full_sync_period,
    };
    match rt.block_on(agent.run(&config, crate::logging::wait_for_signal(), || {
        crate::ready::notify("synced")
    })) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("realip node: {e}");
            ExitCode::FAILURE
        }
    }
}
