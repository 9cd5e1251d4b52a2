//! `realip node`: the kube-proxy role. Without a subcommand it is the
//! agent: it programs nf_tables over netlink from the objects, keeps them
//! in sync as the files change, and serves the health checks. `plan`
//! prints the ruleset instead; `health-check` serves only the health
//! answers.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use realip_node::health::{serve, ProxyHealth, Responder, ServiceHealthState};
use realip_node::model::{FileSource, ObjectSource};
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
    #[arg(long, default_value = "1s", value_parser = crate::parse_duration)]
    poll: Duration,
    /// How often the tables are replaced whole even without changes.
    #[arg(long, default_value = "1h", value_parser = crate::parse_duration)]
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
    let src = FileSource {
        path: objects.to_path_buf(),
    };
    match src.load() {
        Ok((model, skipped)) => {
            for s in skipped {
                eprintln!("realip node: {s}");
            }
            Ok(model)
        }
        Err(e) => {
            eprintln!("realip node: reading {}: {e}", objects.display());
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
        return agent(args.agent);
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
            rt.block_on(async move {
                // The objects were read just now: the proxy state is fresh.
                let proxy = Arc::new(ProxyHealth::new(Duration::from_secs(3600)));
                proxy.updated(SystemTime::now());
                let healthz_task = match tokio::net::TcpListener::bind(healthz).await {
                    Ok(l) => tokio::spawn(serve(l, Responder::Proxy(proxy.clone()))),
                    Err(e) => {
                        eprintln!("realip node: binding {healthz}: {e}");
                        return ExitCode::FAILURE;
                    }
                };
                let mut servers = HealthServers::new();
                let failed = update_health(&mut servers, &checks, address, &proxy).await;
                if let Some(e) = failed.first() {
                    eprintln!("realip node: {e}");
                    return ExitCode::FAILURE;
                }
                crate::logging::wait_for_signal().await;
                healthz_task.abort();
                for (_, (_, task)) in servers {
                    task.abort();
                }
                ExitCode::SUCCESS
            })
        }
    }
}

/// What the objects path looks like now: each file's name, size and
/// modification time. A change in any of them means "reload".
fn fingerprint(path: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let stat = |p: &Path| {
        let m = std::fs::metadata(p).ok();
        (
            p.to_path_buf(),
            m.as_ref().map_or(0, |m| m.len()),
            m.and_then(|m| m.modified().ok()),
        )
    };
    match std::fs::read_dir(path) {
        Ok(dir) => {
            let mut out: Vec<_> = dir
                .filter_map(|e| e.ok())
                .map(|e| stat(&e.path()))
                .collect();
            out.sort();
            out
        }
        Err(_) => vec![stat(path)],
    }
}

/// The healthCheckNodePort servers, by port.
type HealthServers =
    std::collections::BTreeMap<u16, (Arc<ServiceHealthState>, tokio::task::JoinHandle<()>)>;

/// Bring the health servers in line with the plan: new ports bound, gone
/// ones stopped, counts updated in place. Returns the ports that could not
/// be bound (the agent retries them at its next sync; `health-check`
/// gives up).
async fn update_health(
    servers: &mut HealthServers,
    checks: &[realip_node::plan::HealthCheck],
    address: std::net::IpAddr,
    proxy: &Arc<ProxyHealth>,
) -> Vec<String> {
    let mut failed = Vec::new();
    use std::sync::atomic::Ordering;
    let wanted: std::collections::BTreeSet<u16> = checks.iter().map(|c| c.port).collect();
    servers.retain(|port, (state, task)| {
        let keep = wanted.contains(port);
        if !keep {
            tracing::info!(port, service = %format!("{}/{}", state.namespace, state.name), "health check stopped");
            task.abort();
        }
        keep
    });
    for c in checks {
        if let Some((state, _)) = servers.get(&c.port) {
            if state.namespace == c.service.namespace && state.name == c.service.name {
                state
                    .local_endpoints
                    .store(c.local_endpoints, Ordering::Relaxed);
                continue;
            }
            if let Some((_, task)) = servers.remove(&c.port) {
                task.abort();
            }
        }
        let addr = std::net::SocketAddr::new(address, c.port);
        let state = Arc::new(ServiceHealthState {
            namespace: c.service.namespace.clone(),
            name: c.service.name.clone(),
            local_endpoints: AtomicUsize::new(c.local_endpoints),
            proxy: proxy.clone(),
        });
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => {
                tracing::info!(service = %c.service, %addr, local_endpoints = c.local_endpoints, "health check listening");
                let task = tokio::spawn(serve(l, Responder::Service(state.clone())));
                servers.insert(c.port, (state, task));
            }
            Err(e) => failed.push(format!("binding {addr} for {}: {e}", c.service)),
        }
    }
    failed
}

/// One load, plan and sync. `Err` leaves the kernel as it was.
fn sync_once(
    syncer: &mut realip_node::sync::Syncer,
    objects: &Path,
    node: &str,
) -> Result<Vec<realip_node::plan::HealthCheck>, String> {
    let src = FileSource {
        path: objects.to_path_buf(),
    };
    let t0 = std::time::Instant::now();
    let (model, skipped) = src
        .load()
        .map_err(|e| format!("reading {}: {e}", objects.display()))?;
    for s in skipped {
        tracing::warn!(object = %s.object, reason = %s.reason, "object skipped");
    }
    let t1 = std::time::Instant::now();
    let rulesets = plan(&model, node).map_err(|e| e.to_string())?;
    let t2 = std::time::Instant::now();
    let report = syncer.sync(rulesets).map_err(|e| e.to_string())?;
    let ms = |d: Duration| (d.as_secs_f64() * 1e3 * 100.0).round() / 100.0;
    if report.messages > 0 {
        // bench/node-sync.sh reads these fields.
        tracing::info!(
            full = report.full,
            messages = report.messages,
            bytes = report.bytes,
            load_ms = ms(t1 - t0),
            plan_ms = ms(t2 - t1),
            sync_ms = ms(report.elapsed),
            udp_flows_flushed = report.udp_flows_flushed,
            "synced"
        );
    }
    if let Some(e) = &report.flush_error {
        tracing::warn!(error = %e, "stale UDP conntrack entries could not be flushed");
    }
    Ok(health_checks(&model, node))
}

fn agent(args: AgentArgs) -> ExitCode {
    crate::logging::init(&args.log_format);
    // clap makes both required without a subcommand.
    let (Some(objects), Some(node)) = (args.objects, args.node) else {
        eprintln!("realip node: --objects and --node are required");
        return ExitCode::from(2);
    };
    let mut syncer = match realip_node::sync::Syncer::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("realip node: {e} (programming nf_tables needs CAP_NET_ADMIN)");
            return ExitCode::from(2);
        }
    };
    if args.cleanup {
        return match syncer.sync(Vec::new()) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("realip node: removing the tables: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if args.once {
        return match sync_once(&mut syncer, &objects, &node) {
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
    rt.block_on(async move {
        // Healthy while syncs keep succeeding (kube-proxy: within twice
        // the sync period).
        let proxy = Arc::new(ProxyHealth::new(args.poll.max(Duration::from_secs(15))));
        let healthz = match tokio::net::TcpListener::bind(args.healthz).await {
            Ok(l) => tokio::spawn(serve(l, Responder::Proxy(proxy.clone()))),
            Err(e) => {
                eprintln!("realip node: binding {}: {e}", args.healthz);
                return ExitCode::FAILURE;
            }
        };
        let mut servers = HealthServers::new();
        let mut seen = None;
        let mut last_full = tokio::time::Instant::now();
        let stop = crate::logging::wait_for_signal();
        tokio::pin!(stop);
        loop {
            let now = fingerprint(&objects);
            let full_due = last_full.elapsed() >= args.full_sync_period;
            if seen.as_ref() != Some(&now) || full_due {
                if full_due {
                    syncer.forget();
                    last_full = tokio::time::Instant::now();
                }
                match sync_once(&mut syncer, &objects, &node) {
                    Ok(checks) => {
                        for e in
                            update_health(&mut servers, &checks, args.health_address, &proxy).await
                        {
                            tracing::error!(error = %e, "health check port not served; retrying at the next sync");
                        }
                        proxy.updated(SystemTime::now());
                        seen = Some(now);
                    }
                    // The kernel keeps the last good ruleset; try again at
                    // the next poll.
                    Err(e) => tracing::error!(error = %e, "sync failed; keeping the last ruleset"),
                }
            } else {
                proxy.updated(SystemTime::now());
            }
            tokio::select! {
                () = tokio::time::sleep(args.poll) => {}
                () = &mut stop => break,
            }
        }
        healthz.abort();
        for (_, (_, task)) in servers {
            task.abort();
        }
        // Rules stay: a restarted agent reconciles them, and traffic keeps
        // flowing meanwhile.
        ExitCode::SUCCESS
    })
}
