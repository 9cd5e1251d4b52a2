//! The lab's hosts as network namespaces: a plan (pure) and a builder
//! (effects) that always tears down what it made.
//!
//! Layout, every address inside the lab's own namespaces:
//!
//! ```text
//! client 203.0.113.7 ── router (203.0.113.1 | 10.0.0.1) ── fabric bridge ─┬─ node-1 10.0.0.11 ── cbr0 10.244.1.1 ── pods 10.244.1.10..
//!                                                                         └─ node-2 10.0.0.12 ── cbr0 10.244.2.1 ── pods 10.244.2.10..
//! ```
//!
//! Nodes route each other's pod CIDRs over the fabric, as a flat cloud VPC
//! would; the router forwards between the client and the nodes.

use std::fmt;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, Once};

/// Every namespace the lab makes starts with this.
pub const PREFIX: &str = "realip";

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// Pods per node, in node order (node-1 first).
    pub pods_per_node: Vec<usize>,
}

/// Roles of the hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Holds the bridge every node and the router plug into.
    Fabric,
    /// Between the client and the nodes.
    Router,
    /// The internet client.
    Client,
    /// A Kubernetes node (1-based index).
    Node(usize),
    /// A pod (node index, pod index from 0).
    Pod(usize, usize),
}

/// One namespace to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Its role.
    pub role: Role,
    /// The namespace name.
    pub netns: String,
}

/// One command step, as data: `ip` arguments, or a sysctl inside a netns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Create a namespace.
    AddNetns(String),
    /// `ip -n NS ARGS...`
    Ip(String, Vec<String>),
    /// Turn on IPv4 forwarding in NS.
    Forwarding(String),
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::AddNetns(n) => write!(f, "ip netns add {n}"),
            Step::Ip(n, args) => write!(f, "ip -n {n} {}", args.join(" ")),
            Step::Forwarding(n) => write!(f, "ip netns exec {n} sysctl net.ipv4.ip_forward=1"),
        }
    }
}

/// The whole plan: hosts and the steps that build them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The run's unique id (part of every name).
    pub id: String,
    /// Hosts, fabric first.
    pub hosts: Vec<Host>,
    /// Steps in order.
    pub steps: Vec<Step>,
}

impl Plan {
    /// The namespace of a role.
    pub fn netns(&self, role: &Role) -> Option<&str> {
        self.hosts
            .iter()
            .find(|h| &h.role == role)
            .map(|h| h.netns.as_str())
    }
}

/// The client's address.
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);

/// Node `i`'s (1-based) address on the fabric.
pub fn node_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, 10 + i as u8)
}

/// Node `i`'s pod CIDR gateway (its cbr0 address).
pub fn node_pod_gateway(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, i as u8, 1)
}

/// Pod `j` on node `i`.
pub fn pod_ip(i: usize, j: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, i as u8, 10 + j as u8)
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A run id unique on this machine: process id, a counter, and the clock.
pub fn unique_id() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:x}{n:x}{:04x}", std::process::id(), t & 0xffff)
}

fn ip(ns: &str, args: &[&str]) -> Step {
    Step::Ip(ns.to_string(), args.iter().map(|s| s.to_string()).collect())
}

/// Why a spec cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Addresses are laid out for at most 200 nodes and 200 pods per node.
    #[error("at most 200 nodes and 200 pods per node (asked for {nodes} nodes, {pods} pods)")]
    TooBig {
        /// Nodes asked.
        nodes: usize,
        /// Most pods asked on one node.
        pods: usize,
    },
}

/// Plan the lab for `spec` with run id `id`. Pure: names, addresses and
/// the `ip` steps, nothing executed.
pub fn plan(spec: &Spec, id: &str) -> Result<Plan, PlanError> {
    let nodes = spec.pods_per_node.len();
    let most = spec.pods_per_node.iter().copied().max().unwrap_or(0);
    if nodes > 200 || most > 200 {
        return Err(PlanError::TooBig { nodes, pods: most });
    }
    let name = |what: &str| format!("{PREFIX}-{id}-{what}");
    let mut hosts = vec![
        Host {
            role: Role::Fabric,
            netns: name("fabric"),
        },
        Host {
            role: Role::Router,
            netns: name("router"),
        },
        Host {
            role: Role::Client,
            netns: name("client"),
        },
    ];
    for (i, pods) in spec.pods_per_node.iter().enumerate() {
        let n = i + 1;
        hosts.push(Host {
            role: Role::Node(n),
            netns: name(&format!("node{n}")),
        });
        for j in 0..*pods {
            hosts.push(Host {
                role: Role::Pod(n, j),
                netns: name(&format!("node{n}-pod{j}")),
            });
        }
    }
    let mut steps: Vec<Step> = hosts
        .iter()
        .map(|h| Step::AddNetns(h.netns.clone()))
        .collect();
    for h in &hosts {
        steps.push(ip(&h.netns, &["link", "set", "lo", "up"]));
    }
    let fabric = name("fabric");
    let router = name("router");
    let client = name("client");
    steps.push(ip(&fabric, &["link", "add", "br0", "type", "bridge"]));
    steps.push(ip(&fabric, &["link", "set", "br0", "up"]));
    // Router <-> fabric.
    steps.push(ip(
        &router,
        &[
            "link", "add", "fab0", "type", "veth", "peer", "name", "router", "netns", &fabric,
        ],
    ));
    steps.push(ip(
        &fabric,
        &["link", "set", "router", "master", "br0", "up"],
    ));
    steps.push(ip(&router, &["addr", "add", "10.0.0.1/24", "dev", "fab0"]));
    steps.push(ip(&router, &["link", "set", "fab0", "up"]));
    // Client <-> router.
    steps.push(ip(
        &client,
        &[
            "link", "add", "eth0", "type", "veth", "peer", "name", "client0", "netns", &router,
        ],
    ));
    steps.push(ip(
        &client,
        &["addr", "add", &format!("{CLIENT_IP}/24"), "dev", "eth0"],
    ));
    steps.push(ip(&client, &["link", "set", "eth0", "up"]));
    steps.push(ip(
        &client,
        &["route", "add", "default", "via", "203.0.113.1"],
    ));
    steps.push(ip(
        &router,
        &["addr", "add", "203.0.113.1/24", "dev", "client0"],
    ));
    steps.push(ip(&router, &["link", "set", "client0", "up"]));
    steps.push(Step::Forwarding(router.clone()));
    for (i, pods) in spec.pods_per_node.iter().enumerate() {
        let n = i + 1;
        let node = name(&format!("node{n}"));
        let port = format!("node{n}");
        steps.push(ip(
            &node,
            &[
                "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns", &fabric,
            ],
        ));
        steps.push(ip(&fabric, &["link", "set", &port, "master", "br0", "up"]));
        steps.push(ip(
            &node,
            &["addr", "add", &format!("{}/24", node_ip(n)), "dev", "eth0"],
        ));
        steps.push(ip(&node, &["link", "set", "eth0", "up"]));
        steps.push(ip(&node, &["route", "add", "default", "via", "10.0.0.1"]));
        steps.push(Step::Forwarding(node.clone()));
        // The router reaches pods through their node, like a VPC route table.
        steps.push(ip(
            &router,
            &[
                "route",
                "add",
                &format!("10.244.{n}.0/24"),
                "via",
                &node_ip(n).to_string(),
            ],
        ));
        steps.push(ip(&node, &["link", "add", "cbr0", "type", "bridge"]));
        steps.push(ip(
            &node,
            &[
                "addr",
                "add",
                &format!("{}/24", node_pod_gateway(n)),
                "dev",
                "cbr0",
            ],
        ));
        steps.push(ip(&node, &["link", "set", "cbr0", "up"]));
        for m in 1..=spec.pods_per_node.len() {
            if m != n {
                steps.push(ip(
                    &node,
                    &[
                        "route",
                        "add",
                        &format!("10.244.{m}.0/24"),
                        "via",
                        &node_ip(m).to_string(),
                    ],
                ));
            }
        }
        for j in 0..*pods {
            let pod = name(&format!("node{n}-pod{j}"));
            let veth = format!("pod{j}");
            steps.push(ip(
                &pod,
                &[
                    "link", "add", "eth0", "type", "veth", "peer", "name", &veth, "netns", &node,
                ],
            ));
            steps.push(ip(&node, &["link", "set", &veth, "master", "cbr0", "up"]));
            // What kubelet's --hairpin-mode=hairpin-veth does: a pod that
            // reaches itself through a Service gets its packet back out of
            // the bridge port it came in on (bridged traffic passes
            // netfilter when br_netfilter is loaded, so the DNAT happens
            // on the bridge path).
            steps.push(ip(
                &node,
                &[
                    "link",
                    "set",
                    &veth,
                    "type",
                    "bridge_slave",
                    "hairpin",
                    "on",
                ],
            ));
            steps.push(ip(
                &pod,
                &[
                    "addr",
                    "add",
                    &format!("{}/24", pod_ip(n, j)),
                    "dev",
                    "eth0",
                ],
            ));
            steps.push(ip(&pod, &["link", "set", "eth0", "up"]));
            steps.push(ip(
                &pod,
                &[
                    "route",
                    "add",
                    "default",
                    "via",
                    &node_pod_gateway(n).to_string(),
                ],
            ));
        }
    }
    Ok(Plan {
        id: id.to_string(),
        hosts,
        steps,
    })
}

/// Why the lab could not be built or used.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// No root, no `ip`, or no namespace support.
    #[error("network namespaces are not available here ({0}); the lab needs root and iproute2")]
    Unsupported(String),
    /// A step failed.
    #[error("`{step}` failed: {stderr}")]
    Step {
        /// The step.
        step: String,
        /// What `ip` said.
        stderr: String,
    },
    /// The plan was refused.
    #[error(transparent)]
    Plan(#[from] PlanError),
}

/// Whether this process can create network namespaces (root and iproute2).
pub fn check_support() -> Result<(), LabError> {
    let probe = Command::new("ip").args(["netns", "list"]).output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            return Err(LabError::Unsupported(
                String::from_utf8_lossy(&o.stderr).trim().to_string(),
            ))
        }
        Err(e) => return Err(LabError::Unsupported(format!("cannot run ip: {e}"))),
    }
    // Creating one is the only real test of permission.
    let name = format!("{PREFIX}-probe-{}", unique_id());
    let add = Command::new("ip").args(["netns", "add", &name]).output();
    match add {
        Ok(o) if o.status.success() => {
            let _ = Command::new("ip").args(["netns", "del", &name]).output();
            Ok(())
        }
        Ok(o) => Err(LabError::Unsupported(
            String::from_utf8_lossy(&o.stderr).trim().to_string(),
        )),
        Err(e) => Err(LabError::Unsupported(e.to_string())),
    }
}

fn run(step: &Step) -> Result<(), LabError> {
    let out = match step {
        Step::AddNetns(n) => Command::new("ip").args(["netns", "add", n]).output(),
        Step::Ip(n, args) => Command::new("ip").arg("-n").arg(n).args(args).output(),
        Step::Forwarding(n) => Command::new("ip")
            .args([
                "netns",
                "exec",
                n,
                "sh",
                "-c",
                "echo 1 > /proc/sys/net/ipv4/ip_forward",
            ])
            .output(),
    };
    match out {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(LabError::Step {
            step: step.to_string(),
            stderr: String::from_utf8_lossy(&o.stderr).trim().to_string(),
        }),
        Err(e) => Err(LabError::Step {
            step: step.to_string(),
            stderr: e.to_string(),
        }),
    }
}

/// Namespaces alive in this process, for the signal handler.
static LIVE: Mutex<Vec<String>> = Mutex::new(Vec::new());
static SIGNALS: Once = Once::new();

fn register(name: &str) {
    if let Ok(mut live) = LIVE.lock() {
        live.push(name.to_string());
    }
}

fn unregister(name: &str) {
    if let Ok(mut live) = LIVE.lock() {
        live.retain(|n| n != name);
    }
}

/// Processes started in the lab, stopped by the signal handler before the
/// namespaces go (a namespace outlives its deletion while a process is in it).
static PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Set by the signal handler: no new namespace or process is started.
static STOPPING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether a signal is tearing the lab down (start nothing new).
pub fn stopping() -> bool {
    STOPPING.load(std::sync::atomic::Ordering::SeqCst)
}

/// Record a process started inside the lab, for Ctrl-C cleanup.
pub fn register_pid(pid: u32) {
    if let Ok(mut p) = PIDS.lock() {
        p.push(pid);
    }
}

/// Forget a process that has been stopped.
pub fn unregister_pid(pid: u32) {
    if let Ok(mut p) = PIDS.lock() {
        p.retain(|&x| x != pid);
    }
}

/// On SIGINT, SIGTERM or SIGHUP, stop the processes started in the lab and
/// delete every namespace this process made, then exit with 128 + the
/// signal: Ctrl-C never leaves a lab behind.
/// Installed once, by the first [`Lab::build`].
pub(crate) fn ensure_signal_cleanup() {
    SIGNALS.call_once(|| {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
            return;
        };
        std::thread::spawn(move || {
            if let Some(sig) = signals.forever().next() {
                STOPPING.store(true, std::sync::atomic::Ordering::SeqCst);
                // Several passes: a namespace or process another thread was
                // creating at the moment of the signal appears after the
                // first snapshot (and no new one is started once STOPPING
                // is set).
                for _ in 0..5 {
                    let pids = PIDS.lock().map(|p| p.clone()).unwrap_or_default();
                    for pid in pids {
                        if let Ok(pid) = i32::try_from(pid) {
                            let _ = nix::sys::signal::kill(
                                nix::unistd::Pid::from_raw(pid),
                                nix::sys::signal::Signal::SIGKILL,
                            );
                        }
                    }
                    let names = LIVE.lock().map(|l| l.clone()).unwrap_or_default();
                    for n in names.iter().rev() {
                        let gone = Command::new("ip")
                            .args(["netns", "del", n])
                            .output()
                            .is_ok_and(|o| o.status.success());
                        if gone {
                            unregister(n);
                        }
                    }
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                std::process::exit(128 + sig);
            }
        });
    });
}

/// A built lab. Dropping it deletes every namespace it made.
#[derive(Debug)]
pub struct Lab {
    plan: Plan,
    made: Vec<String>,
}

impl Lab {
    /// Build `plan`. On any failure, what was made is torn down before the
    /// error returns.
    pub fn build(plan: Plan) -> Result<Lab, LabError> {
        ensure_signal_cleanup();
        let mut lab = Lab {
            plan,
            made: Vec::new(),
        };
        let steps = lab.plan.steps.clone();
        for step in &steps {
            if stopping() {
                return Err(LabError::Unsupported("interrupted".into()));
            }
            // Registered before it exists: a signal mid-step still cleans it.
            if let Step::AddNetns(n) = step {
                register(n);
            }
            let r = run(step);
            if let Step::AddNetns(n) = step {
                if r.is_ok() {
                    lab.made.push(n.clone());
                } else {
                    unregister(n);
                }
            }
            r?; // `lab` drops on `?`, removing what exists so far
        }
        Ok(lab)
    }

    /// The plan it was built from.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Run a command inside a host's namespace.
    pub fn exec(&self, role: &Role, argv: &[&str]) -> std::io::Result<std::process::Output> {
        let ns = self.plan.netns(role).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, format!("no host {role:?}"))
        })?;
        Command::new("ip")
            .args(["netns", "exec", ns])
            .args(argv)
            .output()
    }

    /// Delete everything now (also done on drop).
    pub fn teardown(&mut self) {
        for n in self.made.drain(..).rev() {
            let _ = Command::new("ip").args(["netns", "del", &n]).output();
            unregister(&n);
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Delete every namespace whose name starts with `realip-` (leftovers of
/// runs that were killed). Returns the names removed. Do not run it while
/// a lab is in use: it cannot tell a leftover from a live one.
pub fn clean() -> Result<Vec<String>, LabError> {
    clean_prefix(&format!("{PREFIX}-"))
}

/// Delete every namespace whose name starts with `prefix`, which must
/// itself start with `realip-` (nothing else is ever touched).
pub fn clean_prefix(prefix: &str) -> Result<Vec<String>, LabError> {
    if !prefix.starts_with(&format!("{PREFIX}-")) {
        return Ok(Vec::new());
    }
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map_err(|e| LabError::Unsupported(e.to_string()))?;
    let mut removed = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // `ip netns list` prints "name (id: N)" for namespaces with an id.
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        if name.starts_with(prefix) {
            let st = Command::new("ip").args(["netns", "del", name]).output();
            if matches!(st, Ok(ref o) if o.status.success()) {
                removed.push(name.to_string());
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_names_and_addresses() {
        let p = plan(
            &Spec {
                pods_per_node: vec![1, 0],
            },
            "t1",
        )
        .unwrap();
        let names: Vec<&str> = p.hosts.iter().map(|h| h.netns.as_str()).collect();
        assert_eq!(
            names,
            [
                "realip-t1-fabric",
                "realip-t1-router",
                "realip-t1-client",
                "realip-t1-node1",
                "realip-t1-node1-pod0",
                "realip-t1-node2"
            ]
        );
        assert!(p.hosts.iter().all(|h| h.netns.starts_with("realip-t1-")));
        let text: Vec<String> = p.steps.iter().map(|s| s.to_string()).collect();
        assert!(
            text.contains(&"ip -n realip-t1-client addr add 203.0.113.7/24 dev eth0".to_string()),
            "{text:#?}"
        );
        assert!(text
            .contains(&"ip -n realip-t1-node1-pod0 addr add 10.244.1.10/24 dev eth0".to_string()));
        assert!(text
            .contains(&"ip -n realip-t1-node1 route add 10.244.2.0/24 via 10.0.0.12".to_string()));
        assert!(text
            .contains(&"ip -n realip-t1-router route add 10.244.1.0/24 via 10.0.0.11".to_string()));
        // Namespaces exist before anything is put in them.
        let last_add = p
            .steps
            .iter()
            .rposition(|s| matches!(s, Step::AddNetns(_)))
            .unwrap();
        let first_ip = p
            .steps
            .iter()
            .position(|s| matches!(s, Step::Ip(..)))
            .unwrap();
        assert!(last_add < first_ip);
        // Nothing is ever done in the host's own namespace.
        assert!(p.steps.iter().all(|s| match s {
            Step::Ip(n, _) | Step::Forwarding(n) | Step::AddNetns(n) => n.starts_with("realip-t1-"),
        }));
    }

    #[test]
    fn ids_are_unique() {
        let a = unique_id();
        let b = unique_id();
        assert_ne!(a, b);
        assert!(plan(
            &Spec {
                pods_per_node: vec![201]
            },
            "x"
        )
        .is_err());
    }
}
