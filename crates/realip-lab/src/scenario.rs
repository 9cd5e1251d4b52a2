//! Scenarios as data (pure): the topology, what runs on which host, the
//! probes and what the seeds say each probe will show. The built-in ones
//! are YAML files embedded in the binary (`scenarios/*.yaml`); a user's
//! file has the same form.
//!
//! ```yaml
//! name: nodeport-local
//! title: "NodePort, externalTrafficPolicy: Local"
//! seed: 001_fcd58f5af6a77e51.txt
//! pods: [1, 0]                  # pods per node; each runs whoami
//! whoami: [--trusted, 10.0.0.0/8]
//! objects: |                     # what `realip node` programs on every node
//!   apiVersion: v1
//!   kind: Service
//!   ...
//! router:                        # realip lb on the router (the cloud LB)
//!   lb: [--listen, 203.0.113.1:80, --backend, 10.0.0.11:30080]
//!   tproxy: true                 # reply routing for --client-ip transparent
//! programs:                      # a pod that runs something else
//!   pod/1/0: [lb, --mode, http, ...]
//! probes:
//!   - name: via node-1 (endpoint here)
//!     from: client               # client, router, node/N, pod/N/J
//!     to: 10.0.0.11:30081
//!     send: http                 # http, health, tcp-field, udp-field
//!     hops: [client 203.0.113.7, node-1 10.0.0.11, pod 10.244.1.10]
//!     predicts: the pod sees the client
//!     expect: {peer: 203.0.113.7}
//! ```
//!
//! A live scenario (`--api` only) adds steps, each kubectl commands run
//! against the lab's apiserver and then probes; its objects may hold
//! Deployments, whose Pods the real controllers make and the lab places
//! on free pod slots of the topology:
//!
//! ```yaml
//! steps:
//!   - name: kubectl patch svc nodeport ... Local
//!     kubectl:
//!       - [patch, svc, nodeport, -p, '{"spec":{"externalTrafficPolicy":"Local"}}']
//!     settle: 1s                 # then wait (the LB's health checks)
//!     probes: [...]
//! ```
//!
//! A value the apiserver allocates may be named instead of written, where
//! a Service leaves it out: `to: "10.0.0.11:{demo/web.nodePort}"` (see
//! [`crate::manifest`]); such a scenario runs with `--api` only.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::manifest::{placeholders, substitute, ManifestError};

/// A scenario.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name (`realip lab run NAME`).
    pub name: String,
    /// One line for the table and the report.
    pub title: String,
    /// The seed article it reproduces, if any.
    #[serde(default)]
    pub seed: Option<String>,
    /// Pods per node, node-1 first.
    pub pods: Vec<usize>,
    /// Extra arguments for every pod's whoami.
    #[serde(default)]
    pub whoami: Vec<String>,
    /// Kubernetes objects (Nodes are added from the topology when absent).
    #[serde(default)]
    pub objects: String,
    /// The cloud LB on the router.
    #[serde(default)]
    pub router: Option<RouterSpec>,
    /// Pods that run another program instead of whoami: `pod/N/J` to
    /// realip arguments (`{pod}` becomes the pod's IP).
    #[serde(default)]
    pub programs: BTreeMap<String, Vec<String>>,
    /// The probes, in order, before any step.
    #[serde(default)]
    pub probes: Vec<Probe>,
    /// Steps run after the probes, in order: kubectl commands against the
    /// lab's apiserver, then probes of what they changed (`--api` only).
    #[serde(default)]
    pub steps: Vec<Step>,
}

/// One step of a live scenario: what a person types, then what the pods
/// see. Before its probes run, the lab waits for the change to settle:
/// the pods the controllers made or removed are placed, started or
/// stopped (the lab plays the scheduler and the kubelet), the
/// EndpointSlices say what the Pods imply, and every node agent has
/// synced after that.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// What it does, for the table (`kubectl patch svc nodeport ...`).
    pub name: String,
    /// kubectl commands, each its arguments (run with the lab's admin
    /// kubeconfig in the control namespace).
    #[serde(default)]
    pub kubectl: Vec<Vec<String>>,
    /// Then wait this long (the LB's health checks): `400ms`, `2s`.
    #[serde(default)]
    pub settle: Option<String>,
    /// The probes after it; a value the apiserver allocated is read from
    /// the Services as they are after the step.
    pub probes: Vec<Probe>,
}

/// The LB on the router.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterSpec {
    /// `realip lb` arguments.
    #[serde(default)]
    pub lb: Vec<String>,
    /// Or a `realip lb --config` file's text.
    #[serde(default)]
    pub config: Option<String>,
    /// Install the reply routing `--client-ip transparent` needs.
    #[serde(default)]
    pub tproxy: bool,
    /// Wait this long after the LB starts (its first health checks):
    /// `400ms`, `1s`.
    #[serde(default)]
    pub settle: Option<String>,
}

/// `250ms` or `2s`.
pub fn parse_millis(s: &str) -> Option<u64> {
    if let Some(ms) = s.strip_suffix("ms") {
        ms.parse().ok()
    } else {
        s.strip_suffix('s')?.parse::<u64>().ok()?.checked_mul(1000)
    }
}

/// What a probe sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Send {
    /// `GET path` and whoami's `/api` JSON back.
    Http,
    /// `GET path`, the raw status and body back (a health check).
    Health,
    /// TCP: the client's IPv4 as a 4-byte field, then `WHO`.
    TcpField,
    /// UDP: the same in one datagram.
    UdpField,
}

/// One probe: requests from a host to an address, and what must be seen.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    /// What it shows.
    pub name: String,
    /// Where it runs: `client`, `router`, `node/N`, `pod/N/J`.
    pub from: String,
    /// `ADDR:PORT`.
    pub to: String,
    /// What it sends.
    #[serde(default = "default_send")]
    pub send: Send,
    /// The request path (http, health).
    #[serde(default = "default_path")]
    pub path: String,
    /// Extra request headers (http).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// How many requests, each on a new connection (shares need many).
    #[serde(default = "default_count")]
    pub count: usize,
    /// The path for the table and the diagram: each hop as `LABEL ADDR`;
    /// the last hop's source is filled in from what the pod saw.
    #[serde(default)]
    pub hops: Vec<String>,
    /// What the seeds say will happen.
    pub predicts: String,
    /// What is checked against what whoami reported.
    pub expect: Expect,
    /// Where realip goes past kube-proxy on purpose (endpoint weights, the
    /// tunnel policy): why the pod sees something else under kube-proxy.
    /// A `--compare` run accepts a difference only on such a probe.
    #[serde(default)]
    pub extension: Option<String>,
}

fn default_send() -> Send {
    Send::Http
}
fn default_path() -> String {
    "/api".to_string()
}
fn default_count() -> usize {
    1
}

/// Expectations; each one set is checked.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The pod's socket peer IP (getpeername).
    #[serde(default)]
    pub peer: Option<String>,
    /// The client whoami resolved.
    #[serde(default)]
    pub client: Option<String>,
    /// Request headers as whoami received them: each must contain the text.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Request headers that must not contain the text (or be absent).
    #[serde(default)]
    pub absent: BTreeMap<String, String>,
    /// The connection times out (nothing answers).
    #[serde(default)]
    pub timeout: bool,
    /// The HTTP status (health).
    #[serde(default)]
    pub status: Option<u16>,
    /// Text the body must contain (health).
    #[serde(default)]
    pub body: Option<String>,
    /// The NAT a node's conntrack must have recorded for the probe:
    /// `node-N` to `DNAT`, `SNAT` or `DNAT+SNAT`.
    #[serde(default)]
    pub nat: BTreeMap<String, String>,
    /// Per-pod shares in percent, in `pod/N/J` order of the scenario's
    /// pods, each within `tolerance` points.
    #[serde(default)]
    pub shares: Option<Shares>,
    /// Every request was answered by one of these pods (`pod/N/J`).
    #[serde(default)]
    pub pods: Vec<String>,
}

/// Expected shares of the requests per pod.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shares {
    /// Pod name (`pod/N/J`) to percent.
    pub want: BTreeMap<String, f64>,
    /// Allowed difference, in points.
    pub tolerance: f64,
}

/// In the router's `lb` arguments: a kubeconfig for the lab's apiserver
/// (user `realip-lb`, allowed to read Services and Nodes and write a
/// Service's status, as a cloud controller is).
pub const KUBECONFIG: &str = "{kubeconfig}";

/// A scenario that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {reason}")]
pub struct ScenarioError {
    /// The file (or built-in name).
    pub file: String,
    /// Why.
    pub reason: String,
}

/// The built-in scenarios, in order.
pub const BUILTIN: [(&str, &str); 18] = [
    ("clusterip", include_str!("../scenarios/01-clusterip.yaml")),
    (
        "nodeport-cluster",
        include_str!("../scenarios/02-nodeport-cluster.yaml"),
    ),
    (
        "nodeport-local",
        include_str!("../scenarios/03-nodeport-local.yaml"),
    ),
    (
        "l4-lb-cluster",
        include_str!("../scenarios/04-l4-lb-cluster.yaml"),
    ),
    (
        "l4-lb-local",
        include_str!("../scenarios/05-l4-lb-local.yaml"),
    ),
    ("l7-lb", include_str!("../scenarios/06-l7-lb.yaml")),
    ("ingress", include_str!("../scenarios/07-ingress.yaml")),
    (
        "lb-to-pods",
        include_str!("../scenarios/08-lb-to-pods.yaml"),
    ),
    (
        "proxy-protocol",
        include_str!("../scenarios/09-proxy-protocol.yaml"),
    ),
    (
        "client-field",
        include_str!("../scenarios/10-client-field.yaml"),
    ),
    (
        "local-shares",
        include_str!("../scenarios/11-local-shares.yaml"),
    ),
    ("forgery", include_str!("../scenarios/12-forgery.yaml")),
    (
        "local-spread",
        include_str!("../scenarios/13-local-spread.yaml"),
    ),
    (
        "kubectl-nodeport",
        include_str!("../scenarios/14-seed-003-nodeport.yaml"),
    ),
    (
        "kubectl-loadbalancer",
        include_str!("../scenarios/15-seed-003-loadbalancer.yaml"),
    ),
    ("scaling", include_str!("../scenarios/16-scaling.yaml")),
    (
        "dual-stack",
        include_str!("../scenarios/17-dual-stack.yaml"),
    ),
    (
        "dual-stack-lb",
        include_str!("../scenarios/18-dual-stack-lb.yaml"),
    ),
];

impl Scenario {
    /// Parse and check one scenario.
    pub fn parse(file: &str, text: &str) -> Result<Scenario, ScenarioError> {
        let err = |reason: String| ScenarioError {
            file: file.to_string(),
            reason,
        };
        let s: Scenario = serde_yaml_ng::from_str(text).map_err(|e| err(e.to_string()))?;
        if s.pods.is_empty() {
            return Err(err("pods: at least one node".into()));
        }
        for st in &s.steps {
            if let Some(t) = &st.settle {
                parse_millis(t).ok_or_else(|| {
                    err(format!(
                        "step {:?}: settle: {t:?} is not like 400ms or 1s",
                        st.name
                    ))
                })?;
            }
            if st.kubectl.iter().any(Vec::is_empty) {
                return Err(err(format!("step {:?}: an empty kubectl command", st.name)));
            }
        }
        let all_probes = s
            .probes
            .iter()
            .chain(s.steps.iter().flat_map(|st| &st.probes));
        for p in all_probes {
            parse_host(&p.from, &s.pods)
                .map_err(|e| err(format!("probe {:?}: from: {e}", p.name)))?;
            if p.to.contains('{') {
                // Read once the Services are there (see `manifest`).
                placeholders(&p.to).map_err(|e| err(format!("probe {:?}: to: {e}", p.name)))?;
            } else {
                p.to.parse::<std::net::SocketAddr>().map_err(|_| {
                    err(format!(
                        "probe {:?}: to: {:?} is not ADDR:PORT",
                        p.name, p.to
                    ))
                })?;
            }
            if p.count == 0 || p.count > 10_000 {
                return Err(err(format!("probe {:?}: count must be 1..=10000", p.name)));
            }
            let pods = p.expect.shares.iter().flat_map(|sh| sh.want.keys());
            for k in pods.chain(&p.expect.pods) {
                if !matches!(parse_host(k, &s.pods), Ok(Host::Pod(..))) {
                    return Err(err(format!(
                        "probe {:?}: {k:?} is not a pod of this scenario",
                        p.name
                    )));
                }
            }
        }
        let program_texts = s.programs.values().flatten();
        let router_texts = s
            .router
            .iter()
            .flat_map(|r| r.lb.iter().chain(r.config.iter()));
        for t in program_texts.chain(router_texts) {
            placeholders(t).map_err(|e| err(e.to_string()))?;
        }
        if let Some(r) = &s.router {
            if r.lb.is_empty() == r.config.is_none() {
                return Err(err(
                    "router: give either lb (arguments) or config (a file's text)".into(),
                ));
            }
            if let Some(t) = &r.settle {
                parse_millis(t)
                    .ok_or_else(|| err(format!("router: settle: {t:?} is not like 400ms or 1s")))?;
            }
        }
        for k in s.programs.keys() {
            match parse_host(k, &s.pods) {
                Ok(Host::Pod(..)) => {}
                _ => {
                    return Err(err(format!(
                        "programs: {k:?} is not a pod of this scenario"
                    )))
                }
            }
        }
        Ok(s)
    }

    /// What runs in pod J of node N: realip's arguments. whoami on the
    /// pod's addresses, both families (HTTP :8080, the TCP and UDP field
    /// listeners :9000 and :9001) with the scenario's extra arguments, or the program the
    /// scenario names for that pod (`{pod}` replaced by the pod's IP).
    pub fn pod_program(&self, n: usize, j: usize) -> Vec<String> {
        let ip = crate::topology::pod_ip(n, j).to_string();
        let key = format!("pod/{n}/{j}");
        match self.programs.get(&key) {
            Some(p) => p.iter().map(|a| a.replace("{pod}", &ip)).collect(),
            None => {
                // Both families on one socket each (the lab is dual-stack;
                // whoami reports an IPv4 peer as IPv4, not v4-mapped).
                let mut a: Vec<String> = [
                    "whoami",
                    "--listen",
                    "[::]:8080",
                    "--tcp",
                    "[::]:9000",
                    "--udp",
                    "[::]:9001",
                    "--name",
                    &key,
                ]
                .iter()
                .map(|a| a.to_string())
                .collect();
                a.extend(self.whoami.iter().cloned());
                a
            }
        }
    }

    /// The scenario with every value it names instead of writing it (see
    /// [`crate::manifest`]) read from `services`: in the probes' targets,
    /// the LB's arguments or configuration, and the programs' arguments.
    pub fn with_allocations(
        &self,
        services: &[serde_json::Value],
    ) -> Result<Scenario, ManifestError> {
        let mut s = self.clone();
        for p in &mut s.probes {
            p.to = substitute(&p.to, services)?;
        }
        if let Some(r) = &mut s.router {
            for a in &mut r.lb {
                *a = substitute(a, services)?;
            }
            if let Some(c) = &mut r.config {
                *c = substitute(c, services)?;
            }
        }
        for args in s.programs.values_mut() {
            for a in args {
                *a = substitute(a, services)?;
            }
        }
        Ok(s)
    }

    /// A step's probes with the values they name read from `services`
    /// (the Services as they are after the step).
    pub fn step_probes(
        step: &Step,
        services: &[serde_json::Value],
    ) -> Result<Vec<Probe>, ManifestError> {
        let mut probes = step.probes.clone();
        for p in &mut probes {
            p.to = substitute(&p.to, services)?;
        }
        Ok(probes)
    }

    /// Whether it runs only on the API: it has steps (kubectl commands),
    /// or Deployments (whose Pods the controllers make), or lets the LB
    /// read its Service (`{kubeconfig}` in the router's arguments).
    pub fn needs_api(&self) -> bool {
        !self.steps.is_empty()
            || self.has_deployments()
            || self
                .router
                .iter()
                .flat_map(|r| &r.lb)
                .any(|a| a.contains(KUBECONFIG))
    }

    /// Whether its objects hold a Deployment.
    pub fn has_deployments(&self) -> bool {
        crate::manifest::parse_documents(&self.objects)
            .is_ok_and(|docs| docs.iter().any(|d| d["kind"] == "Deployment"))
    }

    /// Whether the scenario names a value instead of writing it.
    pub fn names_allocations(&self) -> bool {
        let texts = self
            .probes
            .iter()
            .map(|p| &p.to)
            .chain(self.programs.values().flatten())
            .chain(
                self.router
                    .iter()
                    .flat_map(|r| r.lb.iter().chain(r.config.iter())),
            );
        texts
            .into_iter()
            .any(|t| placeholders(t).is_ok_and(|p| !p.is_empty()))
    }

    /// Every built-in scenario.
    pub fn builtins() -> Vec<Scenario> {
        BUILTIN
            .iter()
            .map(|(name, text)| {
                Scenario::parse(name, text).unwrap_or_else(|e| panic!("built-in scenario {e}"))
            })
            .collect()
    }
}

/// A host of the lab, as scenarios name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Host {
    /// The internet client.
    Client,
    /// The router (where the cloud LB runs).
    Router,
    /// Node N (1-based).
    Node(usize),
    /// Pod J (0-based) on node N.
    Pod(usize, usize),
}

/// A host name that is not one of the topology's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// A node or pod index is not a number.
    #[error("{host:?}: {part:?} is not a number")]
    NotNumber {
        /// The host given.
        host: String,
        /// The part that is not a number.
        part: String,
    },
    /// Not one of the forms.
    #[error("{host:?} is not client, router, node/N or pod/N/J")]
    Form {
        /// The host given.
        host: String,
    },
    /// No such node.
    #[error("{host:?}: there are {nodes} nodes")]
    NoNode {
        /// The host given.
        host: String,
        /// How many nodes there are.
        nodes: usize,
    },
    /// No such pod on the node.
    #[error("{host:?}: node {node} has {pods} pods")]
    NoPod {
        /// The host given.
        host: String,
        /// The node.
        node: usize,
        /// How many pods it has.
        pods: usize,
    },
}

/// `client`, `router`, `node/N`, `pod/N/J`, checked against the topology.
pub fn parse_host(s: &str, pods: &[usize]) -> Result<Host, HostError> {
    let parts: Vec<&str> = s.split('/').collect();
    let num = |t: &str| {
        t.parse::<usize>().map_err(|_| HostError::NotNumber {
            host: s.into(),
            part: t.into(),
        })
    };
    let h = match parts.as_slice() {
        ["client"] => Host::Client,
        ["router"] => Host::Router,
        ["node", n] => Host::Node(num(n)?),
        ["pod", n, j] => Host::Pod(num(n)?, num(j)?),
        _ => return Err(HostError::Form { host: s.into() }),
    };
    match h {
        Host::Node(n) | Host::Pod(n, _) if n == 0 || n > pods.len() => Err(HostError::NoNode {
            host: s.into(),
            nodes: pods.len(),
        }),
        Host::Pod(n, j) if j >= pods[n - 1] => Err(HostError::NoPod {
            host: s.into(),
            node: n,
            pods: pods[n - 1],
        }),
        h => Ok(h),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_parse() {
        let all = Scenario::builtins();
        assert_eq!(all.len(), BUILTIN.len());
        let mut names: Vec<_> = all.iter().map(|s| s.name.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), BUILTIN.len());
        let live: Vec<_> = all
            .iter()
            .filter(|s| s.needs_api())
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(
            live,
            ["kubectl-nodeport", "kubectl-loadbalancer", "scaling"]
        );
        for (s, (name, _)) in all.iter().zip(BUILTIN) {
            assert_eq!(s.name, name);
            assert!(!s.probes.is_empty() || !s.steps.is_empty(), "{name}");
        }
    }

    #[test]
    fn hosts_are_checked() {
        assert_eq!(parse_host("pod/2/0", &[1, 1]), Ok(Host::Pod(2, 0)));
        assert!(parse_host("pod/2/1", &[1, 1]).is_err());
        assert!(parse_host("node/3", &[1, 1]).is_err());
        assert!(parse_host("nodes/1", &[1]).is_err());
        let e = Scenario::parse("x.yaml", "name: x\ntitle: t\npods: [1]\nprobes:\n  - {name: p, from: pod/1/3, to: 1.2.3.4:80, predicts: x, expect: {}}\n").unwrap_err();
        assert!(e.reason.contains("node 1 has 1 pods"), "{e}");
    }
}
