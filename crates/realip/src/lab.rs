//! `realip lab`: every path in the seeds, reproduced in network
//! namespaces on this machine and checked against what whoami reports.

use std::process::ExitCode;

use realip_lab::run::ScenarioResult;
use realip_lab::scenario::Scenario;
use realip_lab::topology::{check_support, clean, plan, unique_id, Lab, Role, Spec};

#[derive(Debug, clap::Args)]
#[command(
    about = "Every path in the seeds, on this machine's kernel, checked (the main job)",
    long_about = "Runs the seeds' paths for real: network namespaces as hosts (a client, a router \
that plays the cloud LB, nodes, pods), `realip node` as kube-proxy on every node (nftables), \
`realip lb` as the cloud LB and the ingress, `realip whoami` in the pods. Each scenario's probes \
are sent from inside the namespaces and checked against what whoami reported (or against a \
connection that really timed out). Without a subcommand, every built-in scenario runs and a table \
is printed: scenario, path, what the pod's socket saw, what the headers / PROXY header / field \
said, the client whoami resolved, what the seeds predict, PASS or FAIL. Exit 0 when all pass, 1 \
when one fails, 2 without root or namespace support. Needs root, iproute2 and nftables; \
everything it makes is removed at the end, on error and on Ctrl-C."
)]
pub struct Args {
    #[command(subcommand)]
    command: Option<LabCommand>,
    /// Print the results as JSON instead of the table.
    #[arg(long, global = true)]
    json: bool,
    /// Also write a self-contained HTML report (one SVG diagram per
    /// scenario) to FILE.
    #[arg(long, global = true, value_name = "FILE")]
    html: Option<std::path::PathBuf>,
    /// Scenarios run at once.
    #[arg(long, global = true, default_value = "4")]
    jobs: usize,
}

#[derive(Debug, clap::Subcommand)]
enum LabCommand {
    /// List the built-in scenarios.
    List,
    /// Run the named built-in scenarios, or scenario files (YAML, the form of
    /// crates/realip-lab/scenarios/*.yaml).
    Run {
        /// Built-in names or file paths.
        #[arg(required = true, value_name = "NAME|FILE")]
        scenarios: Vec<String>,
    },
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
        None => scenarios(Scenario::builtins(), &args),
        Some(LabCommand::List) => {
            let mut text = String::new();
            for s in Scenario::builtins() {
                text.push_str(&format!("{:<18} {}\n", s.name, s.title));
            }
            crate::logging::print_out(&text);
            ExitCode::SUCCESS
        }
        Some(LabCommand::Run {
            scenarios: ref names,
        }) => {
            let builtins = Scenario::builtins();
            let mut chosen = Vec::new();
            for n in names {
                if let Some(s) = builtins.iter().find(|s| &s.name == n) {
                    chosen.push(s.clone());
                    continue;
                }
                let text = match std::fs::read_to_string(n) {
                    Ok(t) => t,
                    Err(e) => {
                        eprintln!("realip lab: {n:?} is not a built-in scenario (see `realip lab list`) nor a readable file: {e}");
                        return ExitCode::from(2);
                    }
                };
                match Scenario::parse(n, &text) {
                    Ok(s) => chosen.push(s),
                    Err(e) => {
                        eprintln!("realip lab: {e}");
                        return ExitCode::from(2);
                    }
                }
            }
            scenarios(chosen, &args)
        }
        Some(LabCommand::Up { ref pods }) => up(pods),
        Some(LabCommand::Clean) => {
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

/// Run scenarios, `jobs` at a time, and report.
fn scenarios(list: Vec<Scenario>, args: &Args) -> ExitCode {
    if let Err(e) = check_support() {
        eprintln!("realip lab: {e}");
        return ExitCode::from(2);
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("realip lab: finding this program: {e}");
            return ExitCode::from(2);
        }
    };
    let started = std::time::Instant::now();
    let jobs = args.jobs.max(1);
    let mut results: Vec<Option<ScenarioResult>> = vec![None; list.len()];
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done = std::sync::Mutex::new(&mut results);
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(list.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(s) = list.get(i) else { break };
                let r = realip_lab::run::run(s, &exe);
                if let Ok(mut d) = done.lock() {
                    d[i] = Some(r);
                }
            });
        }
    });
    // Interrupted: the lab's signal handler is tearing down and will exit.
    if realip_lab::topology::stopping() {
        loop {
            std::thread::park();
        }
    }
    let results: Vec<ScenarioResult> = results.into_iter().flatten().collect();
    if let Some(path) = &args.html {
        if let Err(e) = std::fs::write(path, realip_lab::report::html(&results)) {
            eprintln!("realip lab: writing {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    let text = if args.json {
        realip_lab::report::json(&results) + "\n"
    } else {
        realip_lab::report::table(&results, started.elapsed().as_secs_f64())
    };
    crate::logging::print_out(&text);
    if results.iter().all(|r| r.pass) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
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
