//! `realip node`: the kube-proxy role. So far: `plan`, which prints the
//! nftables ruleset this node would get, and `health-check`, which serves
//! the healthCheckNodePort answers the plan implies.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use realip_node::health::{serve, ProxyHealth, Responder, ServiceHealthState};
use realip_node::model::{FileSource, ObjectSource};
use realip_node::plan::{health_checks, plan, Family};

#[derive(Debug, clap::Args)]
#[command(about = "The kube-proxy role on nftables: plan rules, answer health checks")]
pub struct Args {
    #[command(subcommand)]
    command: NodeCommand,
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

/// Run `realip node`.
pub fn run(args: Args) -> ExitCode {
    match args.command {
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
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("realip node: starting the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            rt.block_on(async move {
                // The objects were read just now: the proxy state is fresh.
                let proxy = Arc::new(ProxyHealth::new(Duration::from_secs(3600)));
                proxy.updated(SystemTime::now());
                let mut tasks = Vec::new();
                match tokio::net::TcpListener::bind(healthz).await {
                    Ok(l) => tasks.push(tokio::spawn(serve(l, Responder::Proxy(proxy.clone())))),
                    Err(e) => {
                        eprintln!("realip node: binding {healthz}: {e}");
                        return ExitCode::FAILURE;
                    }
                }
                for c in checks {
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
                            tasks.push(tokio::spawn(serve(l, Responder::Service(state))));
                        }
                        Err(e) => {
                            eprintln!("realip node: binding {addr} for {}: {e}", c.service);
                            return ExitCode::FAILURE;
                        }
                    }
                }
                crate::logging::wait_for_signal().await;
                for t in tasks {
                    t.abort();
                }
                ExitCode::SUCCESS
            })
        }
    }
}
