//! The model: the parts of Services, EndpointSlices and Nodes that decide
//! the data plane, read from what `kubectl get -o yaml|json` prints.
//!
//! Objects are read with the k8s-openapi types and reduced to typed values
//! here. An object that cannot be used is skipped with a reason naming it;
//! it never stops the others.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use realip_core::{Cidr, TrustError};
use serde::Deserialize;

/// A Service's identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Transport protocol of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// `tcp` or `udp`, as nftables writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// `spec.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceType {
    /// Reachable on its cluster IPs only.
    ClusterIp,
    /// Plus a port on every node.
    NodePort,
    /// Plus the load balancer's ingress IPs.
    LoadBalancer,
}

/// One Service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// The port's name ("" when the Service has one unnamed port).
    pub name: String,
    /// Protocol.
    pub proto: Proto,
    /// The Service port.
    pub port: u16,
    /// The node port, for NodePort and LoadBalancer Services.
    pub node_port: Option<u16>,
}

/// What the data plane needs of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Identity.
    pub key: ServiceKey,
    /// Type.
    pub kind: ServiceType,
    /// Cluster IPs (both families when dual-stack).
    pub cluster_ips: Vec<IpAddr>,
    /// Ports.
    pub ports: Vec<ServicePort>,
    /// `spec.externalIPs`.
    pub external_ips: Vec<IpAddr>,
    /// `status.loadBalancer.ingress[].ip`.
    pub lb_ips: Vec<IpAddr>,
    /// `externalTrafficPolicy: Local`.
    pub external_local: bool,
    /// `internalTrafficPolicy: Local`.
    pub internal_local: bool,
    /// `spec.healthCheckNodePort` (Local LoadBalancer Services).
    pub health_check_node_port: Option<u16>,
    /// `sessionAffinity: ClientIP` timeout in seconds.
    pub affinity_timeout: Option<u32>,
}

/// One endpoint of a Service port set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The pod's address.
    pub ip: IpAddr,
    /// The node the pod runs on.
    pub node: Option<String>,
    /// Ready (serving and not terminating).
    pub ready: bool,
    /// Serving (may be terminating).
    pub serving: bool,
    /// Terminating.
    pub terminating: bool,
    /// Ports by (name, protocol).
    pub ports: Vec<(String, Proto, u16)>,
}

impl Endpoint {
    /// The target port for a Service port, matched by name and protocol.
    pub fn port_for(&self, sp: &ServicePort) -> Option<u16> {
        self.ports
            .iter()
            .find(|(n, p, _)| *n == sp.name && *p == sp.proto)
            .map(|(_, _, port)| *port)
    }
}

/// What the data plane needs of a Node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Name.
    pub name: String,
    /// `spec.podCIDRs` (or `spec.podCIDR`).
    pub pod_cidrs: Vec<Cidr>,
    /// `status.addresses` that are IPs.
    pub ips: Vec<IpAddr>,
    /// Being deleted (a `deletionTimestamp`), or tainted
    /// `ToBeDeletedByClusterAutoscaler`: kube-proxy's `/healthz` then says
    /// 503 so that load balancers drain the node first.
    pub being_deleted: bool,
}

/// Everything the plan reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    /// Services by key.
    pub services: BTreeMap<ServiceKey, Service>,
    /// Endpoints by Service, merged across EndpointSlices, in slice order.
    pub endpoints: BTreeMap<ServiceKey, Vec<Endpoint>>,
    /// Nodes by name.
    pub nodes: BTreeMap<String, Node>,
}

/// An object that was not used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// `Kind namespace/name`, or where in the input it was.
    pub object: String,
    /// Why.
    pub reason: String,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "skipped {}: {}", self.object, self.reason)
    }
}

/// Why an object cannot be used: the reason a [`Skipped`] gives.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
    /// A port's protocol is not TCP or UDP.
    #[error("protocol {0} is not supported (TCP, UDP)")]
    Protocol(String),
    /// A port number out of range.
    #[error("{what} {value} is not a port from 1 to 65535")]
    Port {
        /// Which port (`port`, `nodePort`, ...).
        what: &'static str,
        /// The number given.
        value: i32,
    },
    /// An address that does not parse.
    #[error("{what} {text:?} is not an IP address")]
    Address {
        /// Which address (`clusterIP`, `externalIP`, ...).
        what: &'static str,
        /// The text given.
        text: String,
    },
    /// A Service without a spec.
    #[error("no spec")]
    NoSpec,
    /// A Service type this version does not know.
    #[error("type {0} is unknown")]
    UnknownType(String),
    /// A Service the API server has not given a cluster IP yet.
    #[error("no clusterIP assigned yet")]
    NoClusterIp,
    /// `sessionAffinityConfig.clientIP.timeoutSeconds` below zero.
    #[error("affinity timeout {0} is negative")]
    NegativeAffinityTimeout(i32),
    /// An EndpointSlice of FQDNs or another address type.
    #[error("addressType {0} is not IPv4 or IPv6")]
    AddressType(String),
    /// A Node's pod CIDR that does not parse.
    #[error("podCIDR: {0}")]
    PodCidr(#[source] TrustError),
}

/// Accumulates objects, from texts or as typed API objects, into the
/// model. Both paths go through the same typed adders, so a Service read
/// from a file and one from the API server are reduced alike.
#[derive(Debug, Default)]
pub struct Loader {
    model: Model,
    skipped: Vec<Skipped>,
}

fn skip(object: impl Into<String>, reason: impl Into<String>) -> Skipped {
    Skipped {
        object: object.into(),
        reason: reason.into(),
    }
}

/// `Kind namespace/name`, and where it came from when that is known (a
/// file's document; the API's objects need no more than their name).
fn label(kind: &str, ns: Option<&str>, name: Option<&str>, at: Option<&str>) -> String {
    let name = name.unwrap_or("?");
    let id = match ns {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    };
    match at {
        Some(at) => format!("{id} ({at})"),
        None => id,
    }
}

impl Loader {
    /// Add every object in a YAML or JSON text: single objects, several
    /// `---` documents, or a `kind: List`.
    pub fn add_text(&mut self, text: &str, origin: &str) {
        for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
            match serde_yaml_ng::Value::deserialize(doc) {
                Ok(serde_yaml_ng::Value::Null) => {}
                Ok(v) => self.add_value(v, &format!("{origin} document {}", i + 1)),
                Err(e) => {
                    self.skipped
                        .push(skip(format!("{origin} document {}", i + 1), e.to_string()));
                    // A syntax error ends the stream; nothing after it parses.
                    break;
                }
            }
        }
    }

    fn add_value(&mut self, v: serde_yaml_ng::Value, at: &str) {
        let kind = v
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or("")
            .to_string();
        let name = v
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(|n| n.as_str())
            .unwrap_or("?")
            .to_string();
        let ns = v
            .get("metadata")
            .and_then(|m| m.get("namespace"))
            .and_then(|n| n.as_str())
            .unwrap_or("default")
            .to_string();
        let label = format!("{kind} {ns}/{name} ({at})");
        match kind.as_str() {
            "List" | "ServiceList" | "EndpointSliceList" | "NodeList" => {
                if let Some(items) = v.get("items").and_then(|i| i.as_sequence()) {
                    for (j, item) in items.iter().enumerate() {
                        self.add_value(item.clone(), &format!("{at} item {}", j + 1));
                    }
                }
            }
            "Service" => match serde_yaml_ng::from_value::<core::Service>(v) {
                Ok(s) => self.service_at(&s, Some(at)),
                Err(e) => self.skipped.push(skip(label, e.to_string())),
            },
            "EndpointSlice" => match serde_yaml_ng::from_value::<discovery::EndpointSlice>(v) {
                Ok(s) => self.endpoint_slice_at(&s, Some(at)),
                Err(e) => self.skipped.push(skip(label, e.to_string())),
            },
            "Node" => match serde_yaml_ng::from_value::<core::Node>(v) {
                Ok(n) => self.node_at(&n, Some(at)),
                Err(e) => self.skipped.push(skip(label, e.to_string())),
            },
            // Pods, ConfigMaps and the rest do not shape the data plane.
            _ => {}
        }
    }

    /// Add a Service; one that cannot be programmed is skipped with its
    /// reason, and headless and ExternalName Services add nothing.
    pub fn add_service(&mut self, s: &core::Service) {
        self.service_at(s, None);
    }

    /// Add an EndpointSlice's endpoints to its Service's (the
    /// `kubernetes.io/service-name` label names it); a slice that cannot
    /// be used is skipped with its reason.
    pub fn add_endpoint_slice(&mut self, s: &discovery::EndpointSlice) {
        self.endpoint_slice_at(s, None);
    }

    /// Add a Node; one whose pod CIDR does not parse is skipped.
    pub fn add_node(&mut self, n: &core::Node) {
        self.node_at(n, None);
    }

    fn service_at(&mut self, s: &core::Service, at: Option<&str>) {
        let ns = s.metadata.namespace.as_deref().unwrap_or("default");
        let name = s.metadata.name.as_deref().unwrap_or("?");
        match service(s, ns, name) {
            Ok(Some(svc)) => {
                self.model.services.insert(svc.key.clone(), svc);
            }
            Ok(None) => {}
            Err(reason) => self.skipped.push(skip(
                label("Service", Some(ns), Some(name), at),
                reason.to_string(),
            )),
        }
    }

    fn endpoint_slice_at(&mut self, s: &discovery::EndpointSlice, at: Option<&str>) {
        let ns = s.metadata.namespace.as_deref().unwrap_or("default");
        let label = || label("EndpointSlice", Some(ns), s.metadata.name.as_deref(), at);
        let service = s
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("kubernetes.io/service-name"));
        let Some(service) = service else {
            self.skipped
                .push(skip(label(), "no kubernetes.io/service-name label"));
            return;
        };
        let key = ServiceKey {
            namespace: ns.to_string(),
            name: service.clone(),
        };
        match endpoints(s) {
            Ok(eps) => self.model.endpoints.entry(key).or_default().extend(eps),
            Err(reason) => self.skipped.push(skip(label(), reason.to_string())),
        }
    }

    fn node_at(&mut self, n: &core::Node, at: Option<&str>) {
        let name = n.metadata.name.as_deref().unwrap_or("?");
        match node(n, name) {
            Ok(node) => {
                self.model.nodes.insert(node.name.clone(), node);
            }
            // Nodes have no namespace: the label is `Node name`.
            Err(reason) => self.skipped.push(skip(
                label("Node", None, Some(name), at),
                reason.to_string(),
            )),
        }
    }

    /// The model, with endpoints merged per Service in the order their
    /// slices were added, and what was skipped.
    pub fn finish(self) -> (Model, Vec<Skipped>) {
        (self.model, self.skipped)
    }
}

/// Read the objects in one text.
pub fn load_str(text: &str) -> (Model, Vec<Skipped>) {
    let mut l = Loader::default();
    l.add_text(text, "input");
    l.finish()
}

fn proto(p: Option<&str>) -> Result<Proto, ObjectError> {
    match p.unwrap_or("TCP") {
        "TCP" => Ok(Proto::Tcp),
        "UDP" => Ok(Proto::Udp),
        other => Err(ObjectError::Protocol(other.to_string())),
    }
}

fn port16(v: i32, what: &'static str) -> Result<u16, ObjectError> {
    u16::try_from(v)
        .ok()
        .filter(|p| *p > 0)
        .ok_or(ObjectError::Port { what, value: v })
}

fn ip(s: &str, what: &'static str) -> Result<IpAddr, ObjectError> {
    s.parse::<IpAddr>().map_err(|_| ObjectError::Address {
        what,
        text: s.to_string(),
    })
}

/// `Ok(None)`: a valid Service with no data plane (headless, ExternalName).
fn service(s: &core::Service, ns: &str, name: &str) -> Result<Option<Service>, ObjectError> {
    let spec = s.spec.as_ref().ok_or(ObjectError::NoSpec)?;
    let kind = match spec.type_.as_deref().unwrap_or("ClusterIP") {
        "ClusterIP" => ServiceType::ClusterIp,
        "NodePort" => ServiceType::NodePort,
        "LoadBalancer" => ServiceType::LoadBalancer,
        "ExternalName" => return Ok(None),
        other => return Err(ObjectError::UnknownType(other.to_string())),
    };
    let mut cluster_ips = Vec::new();
    let listed = spec
        .cluster_ips
        .clone()
        .or_else(|| spec.cluster_ip.clone().map(|c| vec![c]))
        .unwrap_or_default();
    for c in &listed {
        if c == "None" || c.is_empty() {
            // Headless: DNS only, no proxying.
            return Ok(None);
        }
        cluster_ips.push(ip(c, "clusterIP")?);
    }
    if cluster_ips.is_empty() {
        return Err(ObjectError::NoClusterIp);
    }
    let mut ports = Vec::new();
    for p in spec.ports.as_deref().unwrap_or_default() {
        ports.push(ServicePort {
            name: p.name.clone().unwrap_or_default(),
            proto: proto(p.protocol.as_deref())?,
            port: port16(p.port, "port")?,
            node_port: match (kind, p.node_port) {
                (ServiceType::ClusterIp, _) | (_, None) => None,
                (_, Some(np)) => Some(port16(np, "nodePort")?),
            },
        });
    }
    let external_ips = spec
        .external_ips
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|e| ip(e, "externalIP"))
        .collect::<Result<Vec<_>, _>>()?;
    let lb_ips = if kind == ServiceType::LoadBalancer {
        s.status
            .as_ref()
            .and_then(|st| st.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .map(|ing| {
                ing.iter()
                    .filter_map(|i| i.ip.as_deref())
                    .map(|i| ip(i, "load balancer ingress IP"))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let external_local =
        spec.external_traffic_policy.as_deref() == Some("Local") && kind != ServiceType::ClusterIp;
    let affinity_timeout = if spec.session_affinity.as_deref() == Some("ClientIP") {
        let t = spec
            .session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .unwrap_or(10800);
        Some(u32::try_from(t).map_err(|_| ObjectError::NegativeAffinityTimeout(t))?)
    } else {
        None
    };
    Ok(Some(Service {
        key: ServiceKey {
            namespace: ns.to_string(),
            name: name.to_string(),
        },
        kind,
        cluster_ips,
        ports,
        external_ips,
        lb_ips,
        external_local,
        internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
        health_check_node_port: match (external_local, kind, spec.health_check_node_port) {
            (true, ServiceType::LoadBalancer, Some(p)) => Some(port16(p, "healthCheckNodePort")?),
            _ => None,
        },
        affinity_timeout,
    }))
}

fn endpoints(s: &discovery::EndpointSlice) -> Result<Vec<Endpoint>, ObjectError> {
    if !matches!(s.address_type.as_str(), "IPv4" | "IPv6") {
        return Err(ObjectError::AddressType(s.address_type.clone()));
    }
    let mut ports = Vec::new();
    for p in s.ports.as_deref().unwrap_or_default() {
        let Some(port) = p.port else { continue };
        ports.push((
            p.name.clone().unwrap_or_default(),
            proto(p.protocol.as_deref())?,
            port16(port, "endpoint port")?,
        ));
    }
    let mut out = Vec::new();
    for e in &s.endpoints {
        let c = e.conditions.as_ref();
        // The API's defaults: ready and serving unknown count as true,
        // terminating unknown as false.
        let ready = c.and_then(|c| c.ready).unwrap_or(true);
        let serving = c.and_then(|c| c.serving).unwrap_or(ready);
        let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
        // The first address is the one kube-proxy uses.
        let Some(addr) = e.addresses.first() else {
            continue;
        };
        out.push(Endpoint {
            ip: ip(addr, "endpoint address")?,
            node: e.node_name.clone(),
            ready,
            serving,
            terminating,
            ports: ports.clone(),
        });
    }
    Ok(out)
}

fn node(n: &core::Node, name: &str) -> Result<Node, ObjectError> {
    let spec = n.spec.as_ref();
    let cidrs = spec
        .and_then(|s| s.pod_cidrs.clone())
        .or_else(|| spec.and_then(|s| s.pod_cidr.clone()).map(|c| vec![c]))
        .unwrap_or_default();
    let pod_cidrs = cidrs
        .iter()
        .map(|c| Cidr::parse(c).map_err(ObjectError::PodCidr))
        .collect::<Result<Vec<_>, _>>()?;
    let ips = n
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.address.parse::<IpAddr>().ok())
                .collect()
        })
        .unwrap_or_default();
    let tainted = spec
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default()
        .iter()
        .any(|t| t.key == "ToBeDeletedByClusterAutoscaler");
    Ok(Node {
        name: name.to_string(),
        pod_cidrs,
        ips,
        being_deleted: n.metadata.deletion_timestamp.is_some() || tainted,
    })
}
