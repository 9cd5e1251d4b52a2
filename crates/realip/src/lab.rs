//! `realip lab`: every path in the seeds, reproduced in network
//! namespaces on this machine and checked against what whoami reports.

use std::process::ExitCode;

use realip_lab::k8s::K8sBin;
use realip_lab::run::{AgentObjects, KubeProxyMode, Options, Proxy, ScenarioResult};
use realip_lab::scenario::Scenario;
use realip_lab::topology::{check_support, clean};

mod up;

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
when one fails, 2 without root or namespace support (or, with --api, without the Kubernetes \
binaries). Needs root, iproute2 and nftables; everything it makes is removed at the end, on error \
and on Ctrl-C.

With --api, each scenario runs on a real control plane: a namespace of its own on the fabric \
(10.0.0.2) runs etcd, kube-apiserver (certificates made for the run with openssl) and \
kube-controller-manager with the EndpointSlice controller. The Services are applied with kubectl as \
written, each given a selector; the lab creates the Node objects and one Pod per pod, bound to its \
node and labelled for the Services whose slices list it, and marks a Pod Running and Ready once its \
process is. The slices the agents get are the controller's, and the probes run only once they \
list what the scenario's own slices said. The agents watch the apiserver (see --agent-objects) \
and the probes wait for their first sync and a settled /metrics; or they read the apiserver's \
objects from files the lab writes before starting them. A value a Service leaves out (clusterIP, \
nodePort, healthCheckNodePort) is allocated by the apiserver and read back where the scenario \
names it ({NS/NAME.nodePort}). The binaries come from --k8s-bin, else $REALIP_K8S_BIN, else \
target/k8s/bin of this workspace (scripts/k8s builds them). --api is not the default: it needs \
that build, and each scenario then starts its own apiserver, which takes seconds where the files \
take milliseconds.

Live scenarios (marked [--api] in `lab list`) add steps: kubectl commands (seed 003's expose and \
patch, a scale, a delete) run against the lab's apiserver, each followed by probes. Their \
Deployments' Pods are made by the real deployment and ReplicaSet controllers; the lab places each \
on a free pod slot (the node with the fewest Pods first; none free: Pending, Unschedulable), starts \
whoami there and marks it Ready, and keeps a deleted Pod serving through its grace period before \
deleting it for good. A step's probes wait until the Pods, the slices, the apiserver's watch cache \
and every agent have caught up. --proxy kube-proxy:nftables|kube-proxy:iptables runs the real \
kube-proxy as the node agent instead of realip node. REALIP_LAB_KEEP=1 keeps each run's directory \
and logs."
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
    /// Run on a real control plane (etcd, kube-apiserver, kube-controller-manager), the
    /// objects applied with kubectl; see `realip lab --help`.
    #[arg(long, global = true)]
    api: bool,
    /// Where the Kubernetes binaries are (etcd, kube-apiserver, kube-controller-manager,
    /// kubectl) for --api; default $REALIP_K8S_BIN, else target/k8s/bin of this workspace.
    #[arg(long, global = true, value_name = "DIR")]
    k8s_bin: Option<std::path::PathBuf>,
    /// With --api, how the node agents get the objects: `watch` (each watches the apiserver
    /// with a kubeconfig of its own, user system:kube-proxy) or `files` (the lab copies them into
    /// a file per node, which the agents poll). Default: watch when this realip's `node` has
    /// --kubeconfig.
    #[arg(long, global = true, value_name = "HOW", value_parser = ["watch", "files"])]
    agent_objects: Option<String>,
    /// The node agent in every node namespace: `realip` (realip node), or with --api the real
    /// `kube-proxy:nftables` or `kube-proxy:iptables` built by scripts/k8s, watching the lab's
    /// apiserver; the same scenarios, probes and checks either way.
    #[arg(long, global = true, value_name = "AGENT", default_value = "realip")]
    proxy: Proxy,
    /// With --api: run the scenarios under each of these node agents (`--compare=A,B,...`, the
    /// first the one under test; default realip, kube-proxy:nftables, kube-proxy:iptables) and
    /// print what the pods saw side by side, probe by probe. A difference fails unless the
    /// probe declares it a realip extension.
    #[arg(long, global = true, value_name = "AGENTS", num_args = 0..=1, require_equals = true, value_delimiter = ',',
          default_missing_value = "realip,kube-proxy:nftables,kube-proxy:iptables", conflicts_with = "proxy")]
    compare: Option<Vec<Proxy>>,
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
    /// Bring a cluster up and keep it running until Ctrl-C, which tears everything down: a
    /// scenario's (its pods, node agents, Services and LB), or with --pods whoami pods on bare
    /// nodes. With --api, also its control plane and a kubeconfig. Prints the namespaces and
    /// commands to try.
    Up {
        /// A built-in scenario's name or a scenario file.
        #[arg(value_name = "NAME|FILE", conflicts_with = "pods")]
        scenario: Option<String>,
        /// Without a scenario: pods per node, comma-separated (`1,0` is two nodes with one pod
        /// on node-1), each running whoami, and no Services.
        #[arg(long, value_name = "N,N,...")]
        pods: Option<String>,
    },
    /// Delete leftover lab namespaces (every namespace named realip-*). Run it only when no
    /// lab is in use.
    Clean,
}

/// Run `realip lab`.
pub fn run(args: Args) -> ExitCode {
    match args.command {
        None => {
            // From files, the live scenarios cannot run: say which.
            let (run, live): (Vec<Scenario>, Vec<Scenario>) = Scenario::builtins()
                .into_iter()
                .partition(|s| args.api || !s.needs_api());
            if !live.is_empty() {
                let names: Vec<&str> = live.iter().map(|s| s.name.as_str()).collect();
                eprintln!(
                    "realip lab: not run from files (they run kubectl against a real apiserver: add --api): {}",
                    names.join(", ")
                );
            }
            scenarios(run, &args)
        }
        Some(LabCommand::List) => {
            let mut text = String::new();
            for s in Scenario::builtins() {
                let api = if s.needs_api() { " [--api]" } else { "" };
                text.push_str(&format!("{:<18} {}{api}\n", s.name, s.title));
            }
            crate::logging::print_out(&text);
            ExitCode::SUCCESS
        }
        Some(LabCommand::Run {
            scenarios: ref names,
        }) => {
            let mut chosen = Vec::new();
            for n in names {
                match scenario(n) {
                    Ok(s) if s.needs_api() && !args.api => {
                        eprintln!(
                            "realip lab: {} runs kubectl against a real apiserver (steps, Deployments or an LB that reads its Service): add --api",
                            s.name
                        );
                        return ExitCode::from(2);
                    }
                    Ok(s) => chosen.push(s),
                    Err(code) => return code,
                }
            }
            scenarios(chosen, &args)
        }
        Some(LabCommand::Up {
            scenario: ref name,
            ref pods,
        }) => {
            let chosen = match name {
                Some(n) => scenario(n),
                None => up::bare(pods.as_deref().unwrap_or("1,0")),
            };
            match chosen.and_then(|s| Ok((s, prepare(&args, args.proxy)?))) {
                Ok((s, (exe, options))) => up::run(&s, &exe, &options),
                Err(code) => code,
            }
        }
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

/// A built-in scenario by name, or a scenario file.
fn scenario(name: &str) -> Result<Scenario, ExitCode> {
    if let Some(s) = Scenario::builtins().into_iter().find(|s| s.name == name) {
        return Ok(s);
    }
    let text = std::fs::read_to_string(name).map_err(|e| {
        eprintln!("realip lab: {name:?} is not a built-in scenario (see `realip lab list`) nor a readable file: {e}");
        ExitCode::from(2)
    })?;
    Scenario::parse(name, &text).map_err(|e| {
        eprintln!("realip lab: {e}");
        ExitCode::from(2)
    })
}

/// What every run needs: root and namespaces, this program's path, and
/// with --api the Kubernetes binaries. Exit 2 when one is missing.
fn prepare(args: &Args, proxy: Proxy) -> Result<(std::path::PathBuf, Options), ExitCode> {
    crate::logging::init("text");
    if let Err(e) = check_support() {
        eprintln!("realip lab: {e}");
        return Err(ExitCode::from(2));
    }
    let exe = std::env::current_exe().map_err(|e| {
        eprintln!("realip lab: finding this program: {e}");
        ExitCode::from(2)
    })?;
    let mut options = Options {
        agents: match args.agent_objects.as_deref() {
            Some("files") => Some(AgentObjects::Files),
            Some(_) => Some(AgentObjects::Watch),
            None => None,
        },
        ..Options::default()
    };
    if args.agent_objects.is_some() && !args.api {
        eprintln!("realip lab: --agent-objects is for --api");
        return Err(ExitCode::from(2));
    }
    options.proxy = proxy;
    if let Proxy::KubeProxy(mode) = proxy {
        if !args.api || args.agent_objects.as_deref() == Some("files") {
            eprintln!(
                "realip lab: --proxy {} watches the lab's apiserver: add --api (with the agents watching)",
                proxy
            );
            return Err(ExitCode::from(2));
        }
        // What kube-proxy runs to program the kernel.
        let tool = match mode {
            KubeProxyMode::Nftables => "nft",
            KubeProxyMode::Iptables => "iptables-restore",
        };
        let found = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            eprintln!(
                "realip lab: --proxy {}: kube-proxy needs {tool} (apt-get install {})",
                proxy,
                if tool == "nft" {
                    "nftables"
                } else {
                    "iptables"
                }
            );
            return Err(ExitCode::from(2));
        }
    }
    if args.api {
        let dir = K8sBin::choose(args.k8s_bin.as_deref());
        match K8sBin::find(&dir) {
            Ok(bin) if proxy != Proxy::Realip && !bin.path("kube-proxy").is_file() => {
                eprintln!(
                    "realip lab: --proxy {}: no kube-proxy in {} (scripts/k8s builds it)",
                    proxy,
                    bin.dir().display()
                );
                return Err(ExitCode::from(2));
            }
            Ok(bin) => options.api = Some(bin),
            Err(e) => {
                eprintln!("realip lab: --api: {e}");
                return Err(ExitCode::from(2));
            }
        }
    }
    Ok((exe, options))
}

/// Run `list` under each agent of `--compare` and report side by side.
fn compare(list: &[Scenario], agents: &[Proxy], args: &Args) -> ExitCode {
    if !args.api {
        eprintln!(
            "realip lab: --compare runs kube-proxy, which watches the lab's apiserver: add --api"
        );
        return ExitCode::from(2);
    }
    let started = std::time::Instant::now();
    let mut runs = Vec::new();
    for &agent in agents {
        let (exe, mut options) = match prepare(args, agent) {
            Ok(p) => p,
            Err(code) => return code,
        };
        options.proxy = agent;
        runs.push(run_all(list, &exe, &options, args.jobs));
    }
    let names: Vec<String> = agents.iter().map(ToString::to_string).collect();
    let all = realip_lab::compare::compare(&names, &runs);
    if let Some(path) = &args.html {
        if let Err(e) = std::fs::write(path, realip_lab::compare::html(&names, &all)) {
            eprintln!("realip lab: writing {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    let text = if args.json {
        realip_lab::compare::json(&names, &all) + "\n"
    } else {
        realip_lab::compare::table(&names, &all, started.elapsed().as_secs_f64())
    };
    crate::logging::print_out(&text);
    if all.iter().all(|s| s.pass) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Run `list`, `jobs` at a time; the results in `list`'s order.
fn run_all(
    list: &[Scenario],
    exe: &std::path::Path,
    options: &Options,
    jobs: usize,
) -> Vec<ScenarioResult> {
    let jobs = jobs.max(1);
    let mut results: Vec<Option<ScenarioResult>> = vec![None; list.len()];
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done = std::sync::Mutex::new(&mut results);
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(list.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(s) = list.get(i) else { break };
                let r = realip_lab::run::run(s, exe, options);
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
    results.into_iter().flatten().collect()
}

/// Run scenarios, `jobs` at a time, and report.
fn scenarios(list: Vec<Scenario>, args: &Args) -> ExitCode {
    if let Some(agents) = &args.compare {
        return compare(&list, agents, args);
    }
    let (exe, options) = match prepare(args, args.proxy) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let started = std::time::Instant::now();
    let results = run_all(&list, &exe, &options, args.jobs);
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
