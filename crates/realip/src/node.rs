//! `realip node`: the kube-proxy role. Without a subcommand it is the
//! agent: it programs nf_tables over netlink from the objects (files, or
//! the API server's watches), keeps them in sync as they change, and
//! serves the health checks and metrics. `plan` prints the ruleset
//! instead; `health-check` serves only the health answers. The work is
//! `realip_node::agent`'s and `realip_kube`'s; here are the arguments,
//! the messages for people and the exit codes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use realip_kube::{ApiAccess, ApiSource, Selection};
use realip_node::agent::{self, Agent, FileSource, ObjectSource, RunConfig};
use realip_node::plan::{health_checks, plan, Family};

mod trace;

#[derive(Debug, clap::Args)]
#[command(
    about = "The kube-proxy role on nftables: program the rules, keep them in sync, answer health checks",
    long_about = "Without a subcommand, the agent. It reads Services, EndpointSlices and Nodes from the \
API server (--kubeconfig, --master, or in-cluster), or from --objects (a file or a directory of \
.yaml/.yml/.json files, as `kubectl get -o yaml` prints them), plans this node's rules and programs \
them into nf_tables over netlink (no nft or iptables binary needed): one table `realip` per family, \
every sync one atomic transaction. The first sync replaces the tables whole; later ones send only \
what changed. Established connections survive restarts and resyncs (conntrack keeps their NAT \
bindings).\n\n\
From the API server it watches, as kube-proxy does, the Services without the \
service.kubernetes.io/service-proxy-name label (or only those labelled --service-proxy-name) that are \
not headless, their EndpointSlices, and this node's Node. It needs list and watch on services, \
endpointslices (discovery.k8s.io) and nodes, as the ClusterRole system:node-proxier grants. \
--master overrides the kubeconfig's server; alone, it is used without credentials. With neither, \
and no --objects, it uses the pod's service account when KUBERNETES_SERVICE_HOST is set (in-cluster); \
but in-cluster config reaches the API server through the `kubernetes` Service's ClusterIP, which is \
what this agent programs, so a DaemonSet replacing kube-proxy should give --master or a kubeconfig. \
The first sync waits until all three lists have loaded. A failed watch is logged with the API \
server's URL and the API's message (a 403 names the missing permission) and retried with backoff, \
relisting; meanwhile the rules stay as they are and /healthz turns 503 after twice --sync-period.\n\n\
Changes sync at once, but syncs begin at least --min-sync-period apart (changes meanwhile are one \
sync); every --sync-period the tables are replaced whole, repairing changes made behind our back. \
Files are polled (--poll). A failed sync is retried after --sync-period, or sooner when the objects \
change. Objects that cannot be used (say, an SCTP port) are skipped with a log line naming them; \
the rest are programmed.\n\n\
Serves kube-proxy's /healthz and /livez on --healthz, /proxyMode and /metrics (kube-proxy's metric \
names) on --metrics-bind-address, and one healthCheckNodePort server per Local LoadBalancer Service \
on --health-address. On SIGTERM it exits and leaves the rules in place, as kube-proxy does; \
--cleanup removes them. Needs CAP_NET_ADMIN in the node's network namespace.",
    args_conflicts_with_subcommands = true
)]
pub struct Args {
    #[command(subcommand)]
    command: Option<NodeCommand>,
    #[command(flatten)]
    agent: AgentArgs,
}

/// `--metrics-bind-address`: an address, or empty for none.
#[derive(Debug, Clone, Copy)]
struct MetricsAddr(Option<SocketAddr>);

fn parse_metrics_addr(s: &str) -> Result<MetricsAddr, String> {
    if s.is_empty() {
        return Ok(MetricsAddr(None));
    }
    s.parse()
        .map(|a| MetricsAddr(Some(a)))
        .map_err(|e| format!("{e} (give ADDR:PORT, or an empty string for no metrics server)"))
}

#[derive(Debug, clap::Args)]
struct AgentArgs {
    /// A YAML/JSON file or a directory of them, polled for changes, instead of the API server.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["kubeconfig", "master", "service_proxy_name"])]
    objects: Option<PathBuf>,
    /// Watch the API server of this kubeconfig's current context.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// The API server's URL: replaces the kubeconfig's server; without --kubeconfig, used with no
    /// credentials.
    #[arg(long, value_name = "URL")]
    master: Option<String>,
    /// Serve only the Services labelled service.kubernetes.io/service-proxy-name=NAME (and their
    /// EndpointSlices), to run beside kube-proxy, which leaves them alone (give this agent other
    /// --healthz and --metrics-bind-address ports than kube-proxy's).
    #[arg(long, value_name = "NAME")]
    service_proxy_name: Option<String>,
    /// This node's name (its Node object must exist). Default: the NODE_NAME environment variable
    /// (a DaemonSet sets it from spec.nodeName).
    #[arg(long, visible_alias = "hostname-override", value_name = "NAME")]
    node: Option<String>,
    /// Address the healthCheckNodePort servers listen on.
    #[arg(long, default_value = "0.0.0.0", value_name = "IP")]
    health_address: std::net::IpAddr,
    /// Where /healthz and /livez listen (kube-proxy: port 10256).
    #[arg(long, default_value = "0.0.0.0:10256", value_name = "ADDR:PORT")]
    healthz: SocketAddr,
    /// Where /proxyMode and /metrics listen (kube-proxy's metrics port); empty: not served.
    #[arg(long, default_value = "127.0.0.1:10249", value_name = "ADDR:PORT", value_parser = parse_metrics_addr)]
    metrics_bind_address: MetricsAddr,
    /// How often the objects' version is looked at (files are polled; the API server's watches
    /// also wake the agent themselves).
    #[arg(long, default_value = "1s", value_parser = crate::process::parse_duration)]
    poll: Duration,
    /// Syncs begin at least this far apart; changes meanwhile are folded into one sync.
    #[arg(long, default_value = "1s", value_parser = crate::process::parse_duration)]
    min_sync_period: Duration,
    /// A sync runs at least this often, changes or not (sending only a difference); a failed sync
    /// is retried after it; /healthz turns 503 after twice this out of line with the objects
    #[arg(long, default_value = "30s", value_parser = crate::process::parse_duration)]
    sync_period: Duration,
    /// How often the tables are replaced whole, repairing changes made behind our back
    /// (kube-proxy: one hour, fixed)
    #[arg(long, default_value = "1h", value_parser = crate::process::parse_duration)]
    full_sync_period: Duration,
    /// Sync once and exit (no health servers): 0 when the kernel holds the plan. From the API
    /// server, once every list has loaded (at most 30 s; then it fails).
    #[arg(long)]
    once: bool,
    /// Remove the tables and exit (no objects are read).
    #[arg(long, conflicts_with = "once")]
    cleanup: bool,
    /// Log format.
    #[arg(long = "log-format", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

#[derive(Debug, clap::Subcommand)]
enum NodeCommand {
    Trace(trace::TraceArgs),
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
        NodeCommand::Trace(args) => trace::run(args),
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
    if args.cleanup {
        // Nothing to read: the tables are ours by name.
        return match realip_node::sync::Syncer::new().and_then(|mut s| s.sync(Vec::new())) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("realip node: removing the tables: {e} (needs CAP_NET_ADMIN)");
                ExitCode::FAILURE
            }
        };
    }
    let Some(node) = args
        .node
        .clone()
        .or_else(|| std::env::var("NODE_NAME").ok().filter(|n| !n.is_empty()))
    else {
        eprintln!("realip node: --node NAME is required (or NODE_NAME in the environment)");
        return ExitCode::from(2);
    };
    let config = RunConfig {
        health_address: args.health_address,
        healthz: args.healthz,
        metrics: args.metrics_bind_address.0,
        poll: args.poll,
        min_sync_period: args.min_sync_period,
        sync_period: args.sync_period,
        full_sync_period: args.full_sync_period,
    };
    if let Some(objects) = &args.objects {
        let agent = match Agent::new(FileSource::new(objects), node) {
            Ok(a) => a,
            Err(e) => return no_netlink(&e),
        };
        let rt = match runtime() {
            Ok(rt) => rt,
            Err(code) => return code,
        };
        return rt.block_on(drive(agent, &config, args.once));
    }
    let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    let Some(access) = ApiAccess::choose(args.kubeconfig.clone(), args.master.clone(), in_cluster)
    else {
        eprintln!(
            "realip node: where are the objects? Give --kubeconfig FILE or --master URL (the API \
             server), or --objects PATH (files); in a pod, KUBERNETES_SERVICE_HOST selects \
             in-cluster config"
        );
        return ExitCode::from(2);
    };
    let selection = match args.service_proxy_name.as_deref().map(Selection::named) {
        None => Selection::unclaimed(),
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            eprintln!("realip node: --service-proxy-name: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async {
        let conn = match realip_kube::connect(&access).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("realip node: {e}");
                return ExitCode::from(2);
            }
        };
        let source = match ApiSource::start(&conn, &node, &selection) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("realip node: --node: {e}");
                return ExitCode::from(2);
            }
        };
        tracing::info!(server = %conn.server, node = %node, labels = %selection.labels(), "watching the API server");
        let agent = match Agent::new(source, node) {
            Ok(a) => a,
            Err(e) => return no_netlink(&e),
        };
        if args.once {
            // The first sync must see whole lists, as the agent's does; a
            // list that never loads (forbidden, unreachable) is a failure
            // to report, not a wait without end.
            tokio::select! {
                () = agent.source().wait_ready() => {}
                () = tokio::time::sleep(ONCE_LISTS) => {
                    eprintln!(
                        "realip node: the lists from {} did not load within {ONCE_LISTS:?} (the warnings above say why)",
                        conn.server
                    );
                    return ExitCode::FAILURE;
                }
                () = crate::logging::wait_for_signal() => return ExitCode::FAILURE,
            }
        }
        drive(agent, &config, args.once).await
    })
}

/// How long `--once` waits for the API server's lists.
const ONCE_LISTS: Duration = Duration::from_secs(30);

fn no_netlink(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("realip node: {e} (programming nf_tables needs CAP_NET_ADMIN)");
    ExitCode::from(2)
}

/// One sync (`--once`), or the agent until a signal.
async fn drive<S: ObjectSource>(mut agent: Agent<S>, config: &RunConfig, once: bool) -> ExitCode {
    if once {
        return match agent.sync_once() {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("realip node: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match agent
        .run(config, crate::logging::wait_for_signal(), || {
            crate::ready::notify("synced")
        })
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("realip node: {e}");
            ExitCode::FAILURE
        }
    }
}
