//! What a cloud provider's service controller makes of one Service and
//! the cluster's Nodes, for `realip lb --service NS/NAME`: the backends
//! (each eligible Node's InternalIP at the chosen port's nodePort), the
//! health check, and whether to write the Service's
//! `status.loadBalancer`. Pure: the objects in, a [`Plan`] out; the
//! watches and the status write are [`crate::lb_source`]'s.
//!
//! The node set is k8s.io/cloud-provider's (controllers/service,
//! v1.37): `stableNodeSetPredicates`, since StableLoadBalancerNodeSet
//! went GA in v1.30 and its gate was removed. A Node is a backend unless
//! it is being deleted (deletionTimestamp set), is labelled
//! `node.kubernetes.io/exclude-from-external-load-balancers` with a value
//! that is not a false boolean as Go's `strconv.ParseBool` reads one (a
//! value that does not parse excludes too), or carries the cluster
//! autoscaler's `ToBeDeletedByClusterAutoscaler` taint. Readiness and
//! `spec.unschedulable` are not filters there any more (KEP-3458): a
//! NotReady node stays in the pool and the health check takes it out,
//! which is faster than a resync and drains instead of cutting.
//!
//! The health check follows the Service's externalTrafficPolicy, as
//! providers do: Local checks `/healthz` on spec.healthCheckNodePort,
//! which kube-proxy answers 200 with `localEndpoints` N (the pool makes
//! N the node's weight) or 503 with none; Cluster checks kube-proxy's own
//! `/healthz` on its healthz port, 10256 (KEP-3458), which turns 503 when
//! the node is being deleted or kube-proxy is out of sync.

use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::core::v1::{Node, Service, ServicePort};

/// The label that keeps a Node out of external load balancers.
pub const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";
/// The cluster autoscaler's taint on a node it is about to delete.
pub const TO_BE_DELETED_TAINT: &str = "ToBeDeletedByClusterAutoscaler";
/// kube-proxy's healthz port (`--healthz-bind-address`'s default).
pub const KUBE_PROXY_HEALTHZ_PORT: u16 = 10256;
/// The path checked, on either port.
pub const HEALTHZ_PATH: &str = "/healthz";

/// The Service `--service NS/NAME` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRef {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

/// A `--service` value that cannot name a Service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--service {value:?}: {why}")]
pub struct BadServiceRef {
    /// What was given.
    pub value: String,
    /// What is wrong with it.
    pub why: &'static str,
}

/// A DNS-1123 label (a namespace) or, with `letter_first`, a DNS-1035
/// label (a Service's name).
fn is_label(s: &str, letter_first: bool) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && (if letter_first {
            b[0].is_ascii_lowercase()
        } else {
            b[0].is_ascii_alphanumeric()
        })
        && b[b.len() - 1].is_ascii_alphanumeric()
}

impl std::str::FromStr for ServiceRef {
    type Err = BadServiceRef;

    fn from_str(s: &str) -> Result<Self, BadServiceRef> {
        let bad = |why| BadServiceRef {
            value: s.to_string(),
            why,
        };
        let (namespace, name) = s
            .split_once('/')
            .ok_or_else(|| bad("give NAMESPACE/NAME, e.g. default/web"))?;
        // Both go into the watch's URL and field selector verbatim, so
        // anything but what the API server itself allows could reshape
        // them.
        if !is_label(namespace, false) {
            return Err(bad(
                "the namespace is not a DNS label (lowercase letters, digits and '-', at most 63)",
            ));
        }
        if !is_label(name, true) {
            return Err(bad(
                "the name is not a Service name (a DNS-1035 label: a lowercase letter, then \
                 lowercase letters, digits and '-', at most 63)",
            ));
        }
        Ok(ServiceRef {
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
    }
}

impl std::fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl ServiceRef {
    /// The field selector of the watch: this Service only.
    pub fn fields(&self) -> String {
        format!("metadata.name={}", self.name)
    }
}

/// `--service-port`: which of the Service's ports this listener serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSelector {
    /// The port with this `name`.
    Name(String),
    /// The port whose `port` (not nodePort) is this.
    Number(u16),
}

impl std::str::FromStr for PortSelector {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        // A port name (IANA_SVC_NAME) holds at least one letter, so digits
        // alone are a number.
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return match s.parse::<u16>() {
                Ok(n) if n > 0 => Ok(PortSelector::Number(n)),
                _ => Err(format!("{s:?} is not a port number (1-65535)")),
            };
        }
        if s.is_empty() || s.len() > 63 {
            return Err(format!("{s:?} is not a port name or number"));
        }
        Ok(PortSelector::Name(s.to_string()))
    }
}

impl std::fmt::Display for PortSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortSelector::Name(n) => write!(f, "{n:?}"),
            PortSelector::Number(n) => write!(f, "{n}"),
        }
    }
}

/// The transport of the listener, so of the Service port it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `--mode tcp` and `--mode http`.
    Tcp,
    /// `--mode udp`.
    Udp,
}

impl Protocol {
    /// As a ServicePort spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }
}

/// What the command line asks of the Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// `--service-port`; `None`: the port equal to `listen_port`, else the
    /// only one.
    pub port: Option<PortSelector>,
    /// The port of `--listen`.
    pub listen_port: u16,
    /// The listener's transport.
    pub protocol: Protocol,
    /// The port checked under externalTrafficPolicy Cluster (kube-proxy's
    /// healthz, or `--health-port`).
    pub cluster_health_port: u16,
}

/// The Service port chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChosenPort {
    /// Its name ("" when it has none).
    pub name: String,
    /// Its `port`.
    pub port: u16,
    /// Its nodePort.
    pub node_port: u16,
}

/// Why the pool is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The Service does not exist (yet, or any more).
    Missing,
    /// No port has the listener's protocol.
    NoPorts {
        /// The listener's protocol.
        protocol: Protocol,
    },
    /// `--service-port` names no port.
    NoSuchPort {
        /// What was asked for.
        wanted: PortSelector,
        /// The ports there are (`name/port/protocol`).
        have: Vec<String>,
    },
    /// Several ports and none on the listen port: which is meant?
    Ambiguous {
        /// The listen port.
        listen_port: u16,
        /// The candidates (`name/port`).
        have: Vec<String>,
    },
    /// The chosen port has no nodePort: a ClusterIP Service, a
    /// LoadBalancer with allocateLoadBalancerNodePorts false, or one the
    /// API server has not allocated yet.
    NoNodePort {
        /// spec.type.
        service_type: String,
        /// The port.
        port: u16,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Missing => write!(f, "the Service does not exist; waiting for it"),
            Problem::NoPorts { protocol } => {
                write!(f, "the Service has no {} port", protocol.as_str())
            }
            Problem::NoSuchPort { wanted, have } => write!(
                f,
                "--service-port {wanted} is not one of the Service's ports ({})",
                have.join(", ")
            ),
            Problem::Ambiguous { listen_port, have } => write!(
                f,
                "the Service has several ports ({}) and none is --listen's port {listen_port}: \
                 choose one with --service-port NAME|NUMBER",
                have.join(", ")
            ),
            Problem::NoNodePort { service_type, port } => write!(
                f,
                "port {port} has no nodePort (type {service_type}): nodes cannot be reached; \
                 make the Service type LoadBalancer or NodePort"
            ),
        }
    }
}

/// Why a Node is not a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exclusion {
    /// deletionTimestamp is set.
    Deleting,
    /// Labelled [`EXCLUDE_LABEL`] with this value.
    Labelled(String),
    /// Tainted [`TO_BE_DELETED_TAINT`].
    ToBeDeleted,
    /// No InternalIP in status.addresses.
    NoInternalIp,
    /// Its InternalIP is also this (earlier by name) Node's: one backend
    /// twice would take two shares.
    SameAddress(String),
}

impl std::fmt::Display for Exclusion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exclusion::Deleting => write!(f, "being deleted"),
            Exclusion::Labelled(v) => write!(f, "labelled {EXCLUDE_LABEL}={v}"),
            Exclusion::ToBeDeleted => write!(f, "tainted {TO_BE_DELETED_TAINT}"),
            Exclusion::NoInternalIp => write!(f, "no InternalIP address"),
            Exclusion::SameAddress(other) => write!(f, "the same InternalIP as {other}"),
        }
    }
}

/// One node in the pool.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct NodeBackend {
    /// The Node's name.
    pub node: String,
    /// Its InternalIP and the nodePort.
    pub addr: SocketAddr,
}

/// How the nodes are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthPlan {
    /// externalTrafficPolicy Cluster: `GET /healthz` on kube-proxy's
    /// healthz port.
    KubeProxy {
        /// 10256, or `--health-port`.
        port: u16,
    },
    /// externalTrafficPolicy Local: `GET /healthz` on the Service's
    /// healthCheckNodePort.
    HealthCheckNodePort {
        /// spec.healthCheckNodePort.
        port: u16,
    },
    /// externalTrafficPolicy Local without a healthCheckNodePort (type
    /// NodePort): a TCP connect to the nodePort, which kube-proxy drops on
    /// a node without a local endpoint, so the connect times out there.
    /// TCP ports only: a UDP nodePort takes no connect, so a UDP listener
    /// checks kube-proxy's healthz instead.
    NodePortConnect,
}

impl HealthPlan {
    /// The port checked, when it is not each backend's own.
    pub fn port(self) -> Option<u16> {
        match self {
            HealthPlan::KubeProxy { port } | HealthPlan::HealthCheckNodePort { port } => Some(port),
            HealthPlan::NodePortConnect => None,
        }
    }
}

impl std::fmt::Display for HealthPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HealthPlan::KubeProxy { port } => write!(
                f,
                "http:{HEALTHZ_PATH} on port {port} (kube-proxy's healthz; externalTrafficPolicy Cluster)"
            ),
            HealthPlan::HealthCheckNodePort { port } => write!(
                f,
                "http:{HEALTHZ_PATH} on port {port} (healthCheckNodePort; externalTrafficPolicy Local)"
            ),
            HealthPlan::NodePortConnect => write!(
                f,
                "tcp connect to the nodePort (externalTrafficPolicy Local without a healthCheckNodePort)"
            ),
        }
    }
}

/// The pool for one Service and the Nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The Service port served, when one could be chosen.
    pub port: Option<ChosenPort>,
    /// The nodes, by name.
    pub backends: Vec<NodeBackend>,
    /// How they are checked.
    pub health: HealthPlan,
    /// The nodes left out, by name, and why.
    pub excluded: Vec<(String, Exclusion)>,
    /// Why there are no backends, when the Service is the reason.
    pub problem: Option<Problem>,
}

/// Go's `strconv.ParseBool`, which the service controller reads the
/// exclusion label with.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Why `node` is not in the service controller's stable node set, if it
/// is not.
pub fn excluded(node: &Node) -> Option<Exclusion> {
    if node.metadata.deletion_timestamp.is_some() {
        return Some(Exclusion::Deleting);
    }
    if let Some(v) = node
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(EXCLUDE_LABEL))
    {
        // Only a value that reads as false keeps the node in.
        if parse_go_bool(v) != Some(false) {
            return Some(Exclusion::Labelled(v.clone()));
        }
    }
    let tainted = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|t| t.iter().any(|t| t.key == TO_BE_DELETED_TAINT));
    if tainted {
        return Some(Exclusion::ToBeDeleted);
    }
    None
}

/// The node's InternalIP: the first of the Service's primary IP family
/// when it says one (a single-stack Service's nodePort answers on that
/// family only), else the first.
fn internal_ip(node: &Node, family: Option<&str>) -> Option<IpAddr> {
    let ips: Vec<IpAddr> = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter(|a| a.type_ == "InternalIP")
        .filter_map(|a| a.address.parse().ok())
        .collect();
    let of_family = |ip: &IpAddr| match family {
        Some("IPv4") => ip.is_ipv4(),
        Some("IPv6") => ip.is_ipv6(),
        _ => true,
    };
    ips.iter()
        .copied()
        .find(of_family)
        .or_else(|| ips.first().copied())
}

fn port_label(p: &ServicePort) -> String {
    let name = p.name.as_deref().unwrap_or("");
    format!(
        "{}/{}/{}",
        if name.is_empty() { "-" } else { name },
        p.port,
        p.protocol.as_deref().unwrap_or("TCP")
    )
}

/// The Service port `wanted` means, or why none.
fn choose_port<'a>(ports: &'a [ServicePort], wanted: &Wanted) -> Result<&'a ServicePort, Problem> {
    let ours: Vec<&ServicePort> = ports
        .iter()
        .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == wanted.protocol.as_str())
        .collect();
    match &wanted.port {
        Some(sel) => ours
            .iter()
            .copied()
            .find(|p| match sel {
                PortSelector::Name(n) => p.name.as_deref() == Some(n.as_str()),
                PortSelector::Number(n) => p.port == i32::from(*n),
            })
            .ok_or_else(|| Problem::NoSuchPort {
                wanted: sel.clone(),
                have: ports.iter().map(port_label).collect(),
            }),
        None => {
            if let Some(p) = ours
                .iter()
                .find(|p| p.port == i32::from(wanted.listen_port))
            {
                return Ok(p);
            }
            match ours.as_slice() {
                [] => Err(Problem::NoPorts {
                    protocol: wanted.protocol,
                }),
                [only] => Ok(only),
                many => Err(Problem::Ambiguous {
                    listen_port: wanted.listen_port,
                    have: many.iter().map(|p| port_label(p)).collect(),
                }),
            }
        }
    }
}

fn to_port(n: Option<i32>) -> Option<u16> {
    n.and_then(|n| u16::try_from(n).ok()).filter(|&n| n > 0)
}

/// The pool for `service` (`None`: it does not exist) and `nodes`.
pub fn plan<'a>(
    service: Option<&Service>,
    nodes: impl IntoIterator<Item = &'a Node>,
    wanted: &Wanted,
) -> Plan {
    let spec = service.and_then(|s| s.spec.as_ref());
    let local = spec.and_then(|s| s.external_traffic_policy.as_deref()) == Some("Local");
    let health = match (local, spec.and_then(|s| to_port(s.health_check_node_port))) {
        (true, Some(port)) => HealthPlan::HealthCheckNodePort { port },
        (true, None) if wanted.protocol == Protocol::Tcp => HealthPlan::NodePortConnect,
        _ => HealthPlan::KubeProxy {
            port: wanted.cluster_health_port,
        },
    };
    let mut plan = Plan {
        port: None,
        backends: Vec::new(),
        health,
        excluded: Vec::new(),
        problem: None,
    };
    let Some(spec) = spec else {
        plan.problem = Some(Problem::Missing);
        return plan;
    };
    let port = match choose_port(spec.ports.as_deref().unwrap_or_default(), wanted) {
        Ok(p) => p,
        Err(problem) => {
            plan.problem = Some(problem);
            return plan;
        }
    };
    let Some(node_port) = to_port(port.node_port) else {
        plan.problem = Some(Problem::NoNodePort {
            service_type: spec.type_.clone().unwrap_or_else(|| "ClusterIP".into()),
            port: to_port(Some(port.port)).unwrap_or(0),
        });
        return plan;
    };
    plan.port = Some(ChosenPort {
        name: port.name.clone().unwrap_or_default(),
        port: to_port(Some(port.port)).unwrap_or(0),
        node_port,
    });
    let family = spec
        .ip_families
        .as_ref()
        .and_then(|f| f.first())
        .map(String::as_str);
    for node in nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        if let Some(why) = excluded(node) {
            plan.excluded.push((name, why));
            continue;
        }
        match internal_ip(node, family) {
            Some(ip) => plan.backends.push(NodeBackend {
                node: name,
                addr: SocketAddr::new(ip, node_port),
            }),
            None => plan.excluded.push((name, Exclusion::NoInternalIp)),
        }
    }
    plan.backends.sort();
    let mut unique: Vec<NodeBackend> = Vec::with_capacity(plan.backends.len());
    for b in std::mem::take(&mut plan.backends) {
        match unique.iter().find(|u| u.addr == b.addr) {
            Some(first) => plan
                .excluded
                .push((b.node, Exclusion::SameAddress(first.node.clone()))),
            None => unique.push(b),
        }
    }
    plan.backends = unique;
    plan.excluded.sort_by(|a, b| a.0.cmp(&b.0));
    plan
}

/// What to do about the Service's `status.loadBalancer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Publish {
    /// Write `ingress: [{ip}]`.
    Write(IpAddr),
    /// It already says that.
    Done,
    /// The Service does not exist.
    Missing,
    /// Not type LoadBalancer: no one reads the status of another type.
    NotLoadBalancer(String),
    /// spec.loadBalancerClass names another implementation, whose status
    /// it is to write (the service controller skips such Services too).
    OtherClass(String),
}

/// Whether `service`'s status should say it is served on `ip`, as a
/// cloud controller writes it (`kubectl get svc` shows it as
/// EXTERNAL-IP).
pub fn publish(service: Option<&Service>, ip: IpAddr) -> Publish {
    let Some(s) = service else {
        return Publish::Missing;
    };
    let spec = s.spec.as_ref();
    let kind = spec
        .and_then(|s| s.type_.clone())
        .unwrap_or_else(|| "ClusterIP".into());
    if kind != "LoadBalancer" {
        return Publish::NotLoadBalancer(kind);
    }
    if let Some(class) = spec.and_then(|s| s.load_balancer_class.clone()) {
        return Publish::OtherClass(class);
    }
    let ingress = s
        .status
        .as_ref()
        .and_then(|st| st.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_deref())
        .unwrap_or_default();
    let said: Vec<Option<IpAddr>> = ingress
        .iter()
        .map(|i| i.ip.as_deref().and_then(|a| a.parse().ok()))
        .collect();
    if said == [Some(ip)] {
        Publish::Done
    } else {
        Publish::Write(ip)
    }
}

/// What changed from `old` to `new`, for the log line: backends added
/// and removed (`node=addr`), and the health check when it moved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    /// Backends that joined.
    pub added: Vec<String>,
    /// Backends that left.
    pub removed: Vec<String>,
    /// The health check, when it is new or changed.
    pub health: Option<String>,
}

/// The difference between two plans (`None`: nothing was applied yet).
pub fn change(old: Option<&Plan>, new: &Plan) -> Change {
    let show = |b: &NodeBackend| format!("{}={}", b.node, b.addr);
    let before: &[NodeBackend] = old.map_or(&[], |o| &o.backends);
    Change {
        added: new
            .backends
            .iter()
            .filter(|b| !before.contains(b))
            .map(show)
            .collect(),
        removed: before
            .iter()
            .filter(|b| !new.backends.contains(b))
            .map(show)
            .collect(),
        health: (old.map(|o| o.health) != Some(new.health)).then(|| new.health.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(yaml: &str) -> Service {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    fn nodes(yaml: &str) -> Vec<Node> {
        yaml.split("\n---\n")
            .map(|d| serde_yaml_ng::from_str(d).unwrap())
            .collect()
    }

    fn wanted() -> Wanted {
        Wanted {
            port: None,
            listen_port: 80,
            protocol: Protocol::Tcp,
            cluster_health_port: KUBE_PROXY_HEALTHZ_PORT,
        }
    }

    const WEB: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Cluster
  ipFamilies: [IPv4]
  ports: [{name: http, port: 80, nodePort: 30080, protocol: TCP}]
"#;

    const NODES: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: node-2}
status: {addresses: [{type: Hostname, address: node-2}, {type: InternalIP, address: 10.0.0.12}]}
---
apiVersion: v1
kind: Node
metadata: {name: node-1}
status:
  addresses: [{type: ExternalIP, address: 198.51.100.1}, {type: InternalIP, address: "fd00::11"}, {type: InternalIP, address: 10.0.0.11}]
  conditions: [{type: Ready, status: "False"}]
spec: {unschedulable: true}
"#;

    fn addrs(p: &Plan) -> Vec<String> {
        p.backends
            .iter()
            .map(|b| format!("{}={}", b.node, b.addr))
            .collect()
    }

    #[test]
    fn every_node_at_its_internal_ip_and_the_node_port_checked_on_kube_proxys_healthz() {
        let p = plan(Some(&service(WEB)), &nodes(NODES), &wanted());
        assert_eq!(p.problem, None);
        // Sorted by name; node-1's IPv4 InternalIP for an IPv4 Service,
        // though its IPv6 one comes first. NotReady and unschedulable do
        // not matter (v1.37's stable node set): the health check decides.
        assert_eq!(
            addrs(&p),
            ["node-1=10.0.0.11:30080", "node-2=10.0.0.12:30080"]
        );
        assert_eq!(p.health, HealthPlan::KubeProxy { port: 10256 });
        assert_eq!(
            p.port,
            Some(ChosenPort {
                name: "http".into(),
                port: 80,
                node_port: 30080
            })
        );
        let v6 = service(&WEB.replace("[IPv4]", "[IPv6, IPv4]"));
        let p = plan(Some(&v6), &nodes(NODES), &wanted());
        assert_eq!(
            addrs(&p),
            ["node-1=[fd00::11]:30080", "node-2=10.0.0.12:30080"]
        );
        let w = Wanted {
            cluster_health_port: 10266,
            ..wanted()
        };
        let p = plan(Some(&service(WEB)), &nodes(NODES), &w);
        assert_eq!(p.health, HealthPlan::KubeProxy { port: 10266 });
    }

    #[test]
    fn local_checks_the_health_check_node_port_or_connects_without_one() {
        let local = WEB.replace("Cluster", "Local") + "  healthCheckNodePort: 32000\n";
        let p = plan(Some(&service(&local)), &nodes(NODES), &wanted());
        assert_eq!(p.health, HealthPlan::HealthCheckNodePort { port: 32000 });
        assert_eq!(p.health.port(), Some(32000));
        assert_eq!(p.backends.len(), 2);
        // A NodePort Service with Local has no healthCheckNodePort.
        let nodeport = WEB
            .replace("Cluster", "Local")
            .replace("LoadBalancer", "NodePort");
        let p = plan(Some(&service(&nodeport)), &nodes(NODES), &wanted());
        assert_eq!(p.health, HealthPlan::NodePortConnect);
        assert_eq!(p.health.port(), None);
        // A UDP nodePort takes no connect: kube-proxy's healthz then.
        let udp = nodeport.replace("protocol: TCP", "protocol: UDP");
        let w = Wanted {
            protocol: Protocol::Udp,
            ..wanted()
        };
        let p = plan(Some(&service(&udp)), &nodes(NODES), &w);
        assert_eq!(p.health, HealthPlan::KubeProxy { port: 10256 });
        assert_eq!(p.backends.len(), 2);
        // Unset is Cluster.
        let unset = WEB.replace("  externalTrafficPolicy: Cluster\n", "");
        let p = plan(Some(&service(&unset)), &nodes(NODES), &wanted());
        assert_eq!(p.health, HealthPlan::KubeProxy { port: 10256 });
    }

    #[test]
    fn nodes_the_service_controller_leaves_out() {
        let extra = r#"
apiVersion: v1
kind: Node
metadata: {name: cp, labels: {node.kubernetes.io/exclude-from-external-load-balancers: ""}}
status: {addresses: [{type: InternalIP, address: 10.0.0.1}]}
---
apiVersion: v1
kind: Node
metadata: {name: kept, labels: {node.kubernetes.io/exclude-from-external-load-balancers: "False"}}
status: {addresses: [{type: InternalIP, address: 10.0.0.2}]}
---
apiVersion: v1
kind: Node
metadata: {name: excluded-true, labels: {node.kubernetes.io/exclude-from-external-load-balancers: "true"}}
status: {addresses: [{type: InternalIP, address: 10.0.0.3}]}
---
apiVersion: v1
kind: Node
metadata: {name: going, deletionTimestamp: "2026-12-01T00:00:00Z", finalizers: [x]}
status: {addresses: [{type: InternalIP, address: 10.0.0.4}]}
---
apiVersion: v1
kind: Node
metadata: {name: scaled-down}
spec: {taints: [{key: ToBeDeletedByClusterAutoscaler, value: "1700000000", effect: NoSchedule}]}
status: {addresses: [{type: InternalIP, address: 10.0.0.5}]}
---
apiVersion: v1
kind: Node
metadata: {name: bare}
status: {addresses: [{type: Hostname, address: bare}]}
---
apiVersion: v1
kind: Node
metadata: {name: tainted-otherwise}
spec: {taints: [{key: node.kubernetes.io/not-ready, effect: NoExecute}]}
status: {addresses: [{type: InternalIP, address: 10.0.0.6}]}
"#;
        let p = plan(Some(&service(WEB)), &nodes(extra), &wanted());
        assert_eq!(
            addrs(&p),
            ["kept=10.0.0.2:30080", "tainted-otherwise=10.0.0.6:30080"]
        );
        assert_eq!(
            p.excluded,
            [
                ("bare".to_string(), Exclusion::NoInternalIp),
                // An empty value does not parse as a boolean: excluded,
                // as the service controller reads it.
                ("cp".to_string(), Exclusion::Labelled(String::new())),
                (
                    "excluded-true".to_string(),
                    Exclusion::Labelled("true".into())
                ),
                ("going".to_string(), Exclusion::Deleting),
                ("scaled-down".to_string(), Exclusion::ToBeDeleted),
            ]
        );
        assert_eq!(
            p.excluded[4].1.to_string(),
            "tainted ToBeDeletedByClusterAutoscaler"
        );
    }

    #[test]
    fn a_hostile_or_broken_api_cannot_make_a_backend_twice_or_panic() {
        let odd = r#"
apiVersion: v1
kind: Node
metadata: {name: a}
status: {addresses: [{type: InternalIP, address: 10.0.0.1}]}
---
apiVersion: v1
kind: Node
metadata: {name: b}
status: {addresses: [{type: InternalIP, address: 10.0.0.1}]}
---
apiVersion: v1
kind: Node
metadata: {name: c}
status: {addresses: [{type: InternalIP, address: "not an address"}]}
---
apiVersion: v1
kind: Node
metadata: {}
"#;
        let p = plan(Some(&service(WEB)), &nodes(odd), &wanted());
        assert_eq!(addrs(&p), ["a=10.0.0.1:30080"]);
        assert_eq!(
            p.excluded,
            [
                (String::new(), Exclusion::NoInternalIp),
                ("b".to_string(), Exclusion::SameAddress("a".into())),
                ("c".to_string(), Exclusion::NoInternalIp),
            ]
        );
        // Ports out of range are no ports.
        for bad in ["nodePort: 70000", "nodePort: -1", "nodePort: 0"] {
            let s = service(&WEB.replace("nodePort: 30080", bad));
            let p = plan(Some(&s), &nodes(NODES), &wanted());
            assert!(
                matches!(p.problem, Some(Problem::NoNodePort { .. })),
                "{bad}: {p:?}"
            );
        }
        let s = service(&(WEB.replace("Cluster", "Local") + "  healthCheckNodePort: 99999\n"));
        let p = plan(Some(&s), &nodes(NODES), &wanted());
        assert_eq!(p.health, HealthPlan::NodePortConnect);
        // No spec at all.
        let bare = service("apiVersion: v1\nkind: Service\nmetadata: {name: web}\n");
        assert_eq!(
            plan(Some(&bare), &nodes(NODES), &wanted()).problem,
            Some(Problem::Missing)
        );
    }

    #[test]
    fn which_port_and_why_none() {
        let two = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: LoadBalancer
  ports:
  - {name: http, port: 80, nodePort: 30080}
  - {name: https, port: 443, nodePort: 30443}
  - {name: dns, port: 53, nodePort: 30053, protocol: UDP}
"#;
        let n = nodes(NODES);
        let s = service(two);
        let chosen = |w: &Wanted| plan(Some(&s), &n, w).port.map(|p| p.node_port);
        // The listen port picks.
        assert_eq!(chosen(&wanted()), Some(30080));
        let on_443 = Wanted {
            listen_port: 443,
            ..wanted()
        };
        assert_eq!(chosen(&on_443), Some(30443));
        // By name or number, of the listener's protocol only.
        let by = |sel: &str| Wanted {
            port: Some(sel.parse().unwrap()),
            listen_port: 8443,
            ..wanted()
        };
        assert_eq!(chosen(&by("https")), Some(30443));
        assert_eq!(chosen(&by("443")), Some(30443));
        assert_eq!(
            plan(Some(&s), &n, &by("dns")).problem,
            Some(Problem::NoSuchPort {
                wanted: PortSelector::Name("dns".into()),
                have: vec![
                    "http/80/TCP".into(),
                    "https/443/TCP".into(),
                    "dns/53/UDP".into()
                ],
            })
        );
        let udp = Wanted {
            protocol: Protocol::Udp,
            listen_port: 5353,
            ..wanted()
        };
        assert_eq!(chosen(&udp), Some(30053));
        // Neither the listen port nor a single port: ambiguous, said so.
        let other = Wanted {
            listen_port: 8080,
            ..wanted()
        };
        let p = plan(Some(&s), &n, &other);
        assert!(p.backends.is_empty());
        let problem = p.problem.unwrap();
        assert_eq!(
            problem.to_string(),
            "the Service has several ports (http/80/TCP, https/443/TCP) and none is --listen's \
             port 8080: choose one with --service-port NAME|NUMBER"
        );
        // A single port serves whatever the listen port.
        let one = service(WEB);
        assert_eq!(
            plan(Some(&one), &n, &other).port.map(|p| p.node_port),
            Some(30080)
        );
    }

    #[test]
    fn no_node_port_or_no_service_means_no_backends() {
        let cluster_ip = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {type: ClusterIP, ports: [{port: 80}]}
"#;
        let p = plan(Some(&service(cluster_ip)), &nodes(NODES), &wanted());
        assert!(p.backends.is_empty());
        assert_eq!(
            p.problem,
            Some(Problem::NoNodePort {
                service_type: "ClusterIP".into(),
                port: 80
            })
        );
        let p = plan(None, &nodes(NODES), &wanted());
        assert!(p.backends.is_empty());
        assert_eq!(p.problem, Some(Problem::Missing));
        assert_eq!(
            plan(Some(&service(WEB)), &Vec::new(), &wanted()).backends,
            Vec::<NodeBackend>::new()
        );
    }

    #[test]
    fn status_is_written_once_for_a_load_balancer_of_no_other_class() {
        let ip: IpAddr = "203.0.113.10".parse().unwrap();
        let s = service(WEB);
        assert_eq!(publish(Some(&s), ip), Publish::Write(ip));
        let done = format!(
            "{WEB}status: {{loadBalancer: {{ingress: [{{ip: 203.0.113.10, ipMode: VIP}}]}}}}\n"
        );
        assert_eq!(publish(Some(&service(&done)), ip), Publish::Done);
        let stale = done.replace("203.0.113.10", "203.0.113.99");
        assert_eq!(publish(Some(&service(&stale)), ip), Publish::Write(ip));
        let node_port = WEB.replace("LoadBalancer", "NodePort");
        assert_eq!(
            publish(Some(&service(&node_port)), ip),
            Publish::NotLoadBalancer("NodePort".into())
        );
        let classy = WEB.replace(
            "type: LoadBalancer",
            "type: LoadBalancer\n  loadBalancerClass: example.com/other",
        );
        assert_eq!(
            publish(Some(&service(&classy)), ip),
            Publish::OtherClass("example.com/other".into())
        );
        assert_eq!(publish(None, ip), Publish::Missing);
    }

    #[test]
    fn changes_name_the_nodes_and_the_health_check() {
        let n = nodes(NODES);
        let cluster = plan(Some(&service(WEB)), &n, &wanted());
        let first = change(None, &cluster);
        assert_eq!(
            first.added,
            ["node-1=10.0.0.11:30080", "node-2=10.0.0.12:30080"]
        );
        assert!(first.removed.is_empty());
        assert!(first.health.unwrap().contains("port 10256"));
        let local = WEB.replace("Cluster", "Local") + "  healthCheckNodePort: 32000\n";
        let fewer = plan(Some(&service(&local)), &n[..1], &wanted());
        let c = change(Some(&cluster), &fewer);
        assert!(c.added.is_empty());
        assert_eq!(c.removed, ["node-1=10.0.0.11:30080"]);
        assert_eq!(
            c.health.as_deref(),
            Some("http:/healthz on port 32000 (healthCheckNodePort; externalTrafficPolicy Local)")
        );
        assert_eq!(change(Some(&fewer), &fewer), Change::default());
    }

    #[test]
    fn service_refs_and_port_selectors_are_checked() {
        let r: ServiceRef = "default/web".parse().unwrap();
        assert_eq!(r.to_string(), "default/web");
        assert_eq!(r.fields(), "metadata.name=web");
        for bad in [
            "web",
            "/web",
            "default/",
            "Default/web",
            "default/1web",
            "a/b,c",
            "a/b=c",
            "a/b/c",
        ] {
            assert!(bad.parse::<ServiceRef>().is_err(), "{bad:?}");
        }
        assert_eq!("http".parse(), Ok(PortSelector::Name("http".into())));
        assert_eq!("8080".parse(), Ok(PortSelector::Number(8080)));
        assert!("0".parse::<PortSelector>().is_err());
        assert!("70000".parse::<PortSelector>().is_err());
        assert!("".parse::<PortSelector>().is_err());
    }

    #[test]
    fn go_booleans() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_go_bool(t), Some(true));
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_go_bool(f), Some(false));
        }
        for x in ["", "yes", "tRUE", " true"] {
            assert_eq!(parse_go_bool(x), None);
        }
    }
}
