//! A scenario as API objects (pure): what the lab applies to its apiserver
//! in place of the objects file, and what the EndpointSlice controller
//! must then write.
//!
//! Services are applied as written (their fixed clusterIP, nodePort and
//! healthCheckNodePort stay, so the probes stay the same), each given a
//! selector. The scenario's hand-written EndpointSlices are not applied:
//! they say which pods back which Service, so the pods whose IPs they list
//! get the Service's selector labels, and the real controller writes the
//! slices from the Pods. What the hand-written slices said is kept as the
//! expectation the lab waits for before any probe.
//!
//! Nodes come from the topology (the lab plays the kubelet); every pod of
//! the topology is a Pod object bound to its node, in the namespace of the
//! Services that select it (`default` when none does).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde_json::{json, Map, Value};

use crate::manifest::{parse_documents, ManifestError};
use crate::scenario::Scenario;
use crate::topology::{node_ip, node_ip6, node_pod_cidr6, pod_ip, pod_ip6};

/// The label key prefix of the selectors the lab gives Services:
/// `svc.lab.realip/NAME`.
pub const SELECTOR_PREFIX: &str = "svc.lab.realip/";

/// Every Pod object carries this label with its host (`pod-1-0`).
pub const POD_LABEL: &str = "lab.realip/pod";

/// The image in the Pod specs: under `.invalid`, so it names what runs
/// without anything ever pulling it (the lab starts the process itself).
pub const IMAGE: &str = "realip.invalid/realip:lab";

/// A scenario object the lab cannot turn into API objects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// The objects are not YAML documents.
    #[error(transparent)]
    Yaml(#[from] ManifestError),
    /// One object cannot be used.
    #[error("{what}: {reason}")]
    Object {
        /// `kind namespace/name`.
        what: String,
        /// Why.
        reason: String,
    },
}

/// A Pod object of one of the topology's pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodObject {
    /// The pod's host: node N (1-based), pod J.
    pub host: (usize, usize),
    /// Its namespace.
    pub namespace: String,
    /// Its name (`pod-N-J`).
    pub name: String,
    /// Its Ready condition, once its process is up: what the scenario's
    /// slices say of its endpoint.
    pub ready: bool,
}

/// One endpoint as the EndpointSlice controller writes it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    /// The pod's IP (of the slice's family).
    pub address: IpAddr,
    /// Its node.
    pub node: String,
    /// conditions.ready.
    pub ready: bool,
}

/// One port of a slice.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SlicePort {
    /// Its name ("" for a Service's one unnamed port).
    pub name: String,
    /// The pod's port.
    pub port: u16,
    /// TCP, UDP or SCTP.
    pub protocol: String,
}

/// What one Service's slices must hold, taken from the scenario's
/// hand-written slices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedSlices {
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub service: String,
    /// Every endpoint, over all its slices.
    pub endpoints: BTreeSet<Endpoint>,
    /// The slices' ports; compared only when there are endpoints (a
    /// Service without any gets a placeholder slice with no ports).
    pub ports: BTreeSet<SlicePort>,
}

/// The scenario as API objects.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiObjects {
    /// Everything to apply, in an order the apiserver's admission takes:
    /// Namespaces, ServiceAccounts, Nodes, the scenario's other objects,
    /// Services, Pods.
    pub apply: Vec<Value>,
    /// The Pod objects, whose status the lab sets as their processes get
    /// ready (a pod listed by Services in two namespaces has two).
    pub pods: Vec<PodObject>,
    /// What the controller must write, Service by Service.
    pub expected: Vec<ExpectedSlices>,
    /// The pod slots no Pod object is made for: with Deployments in the
    /// scenario, every slot no hand-written slice lists, for the Pods the
    /// controllers make (see [`crate::k8s::pods`]).
    pub free: BTreeSet<(usize, usize)>,
}

/// The name of the Pod object for pod J of node N.
pub fn pod_name(n: usize, j: usize) -> String {
    format!("pod-{n}-{j}")
}

/// The pod of the topology (`pods` per node) that has `ip`, of either
/// family (10.244.N.(10+J) or fd00:244:N::(0x10+J)).
fn pod_with_ip(ip: IpAddr, pods: &[usize]) -> Option<(usize, usize)> {
    let (n, j) = match ip {
        IpAddr::V4(v4) => {
            let [a, b, n, last] = v4.octets();
            if (a, b) != (10, 244) {
                return None;
            }
            (usize::from(n), usize::from(last).checked_sub(10)?)
        }
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            if seg[..2] != [0xfd00, 0x244] || seg[3..7] != [0, 0, 0, 0] {
                return None;
            }
            (usize::from(seg[2]), usize::from(seg[7]).checked_sub(0x10)?)
        }
    };
    (n >= 1 && n <= pods.len() && j < pods[n - 1]).then_some((n, j))
}

/// `kind namespace/name` of an object, for messages.
fn describe(o: &Value) -> String {
    let kind = o["kind"].as_str().unwrap_or("object");
    let name = o["metadata"]["name"].as_str().unwrap_or("?");
    match o["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

fn namespace_of(o: &Value) -> String {
    o["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_string()
}

/// Where a slice's endpoints point: (namespace, Service) -> endpoints,
/// ports; and each pod's (namespace -> Services that list it).
type Listed = BTreeMap<(String, String), (BTreeSet<Endpoint>, BTreeSet<SlicePort>)>;

fn read_slice(
    slice: &Value,
    pods: &[usize],
    listed: &mut Listed,
    members: &mut BTreeMap<(usize, usize), BTreeMap<String, BTreeSet<String>>>,
    readiness: &mut BTreeMap<(usize, usize), bool>,
) -> Result<(), TranslateError> {
    let bad = |reason: String| TranslateError::Object {
        what: describe(slice),
        reason,
    };
    let ns = namespace_of(slice);
    let service = slice["metadata"]["labels"]["kubernetes.io/service-name"]
        .as_str()
        .ok_or_else(|| bad("no kubernetes.io/service-name label".into()))?
        .to_string();
    let entry = listed.entry((ns.clone(), service.clone())).or_default();
    for p in slice["ports"].as_array().into_iter().flatten() {
        let port = p["port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| bad(format!("port {p} has no port number")))?;
        entry.1.insert(SlicePort {
            name: p["name"].as_str().unwrap_or("").to_string(),
            port,
            protocol: p["protocol"].as_str().unwrap_or("TCP").to_string(),
        });
    }
    for e in slice["endpoints"].as_array().into_iter().flatten() {
        let addr = e["addresses"][0].as_str().unwrap_or("");
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| bad(format!("endpoint address {addr:?} is not an IP address")))?;
        let (n, j) = pod_with_ip(ip, pods).ok_or_else(|| {
            bad(format!(
                "endpoint {ip} is none of the topology's pods (with --api, endpoints are pods)"
            ))
        })?;
        let node = format!("node-{n}");
        if let Some(said) = e["nodeName"].as_str() {
            if said != node {
                return Err(bad(format!(
                    "endpoint {ip} says nodeName {said}, but that pod is on {node}"
                )));
            }
        }
        if e["conditions"]["terminating"] == Value::Bool(true) {
            return Err(bad(format!(
                "endpoint {ip} is terminating, which the lab cannot make a Pod be"
            )));
        }
        let ready = e["conditions"]["ready"].as_bool().unwrap_or(true);
        if let Some(was) = readiness.insert((n, j), ready) {
            if was != ready {
                return Err(bad(format!(
                    "endpoint {ip} is ready in one slice and not in another; a Pod has one Ready condition"
                )));
            }
        }
        entry.0.insert(Endpoint {
            address: ip,
            node,
            ready,
        });
        members
            .entry((n, j))
            .or_default()
            .entry(ns.clone())
            .or_default()
            .insert(service.clone());
    }
    Ok(())
}

/// Namespaces the apiserver makes itself.
const BUILT_IN_NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

/// Translate scenario `s` (see the module's header).
pub fn translate(s: &Scenario) -> Result<ApiObjects, TranslateError> {
    let docs = parse_documents(&s.objects)?;
    let mut services: Vec<Value> = Vec::new();
    let mut others: Vec<Value> = Vec::new();
    let mut listed = Listed::new();
    let mut members = BTreeMap::new();
    let mut readiness = BTreeMap::new();
    for d in docs {
        match d["kind"].as_str() {
            Some("Service") => services.push(d),
            Some("EndpointSlice") => {
                read_slice(&d, &s.pods, &mut listed, &mut members, &mut readiness)?
            }
            Some("Node") => {
                return Err(TranslateError::Object {
                    what: describe(&d),
                    reason: "with --api the lab makes the Node objects from the topology".into(),
                })
            }
            _ => others.push(d),
        }
    }
    // Each Service's selector: its own, or one the lab gives it.
    let mut selectors: BTreeMap<(String, String), Map<String, Value>> = BTreeMap::new();
    let mut expected = Vec::new();
    for svc in &mut services {
        let ns = namespace_of(svc);
        let name = svc["metadata"]["name"]
            .as_str()
            .ok_or_else(|| TranslateError::Object {
                what: describe(svc),
                reason: "no metadata.name".into(),
            })?
            .to_string();
        if svc["spec"]["type"] == "ExternalName" {
            continue;
        }
        let own = svc["spec"]["selector"]
            .as_object()
            .is_some_and(|sel| !sel.is_empty());
        let selector = match svc["spec"]["selector"].as_object() {
            Some(sel) if !sel.is_empty() => sel.clone(),
            _ => {
                let mut sel = Map::new();
                sel.insert(format!("{SELECTOR_PREFIX}{name}"), json!("endpoint"));
                sel
            }
        };
        svc["spec"]["selector"] = Value::Object(selector.clone());
        let hand_written = listed.remove(&(ns.clone(), name.clone()));
        if own && hand_written.is_none() && s.has_deployments() {
            // Its Pods are the controllers' to make: what the slices must
            // say is known only once they have (`pods::lagging`).
            selectors.insert((ns, name), selector);
            continue;
        }
        let (endpoints, ports) = hand_written.unwrap_or_default();
        expected.push(ExpectedSlices {
            namespace: ns.clone(),
            service: name.clone(),
            endpoints,
            ports,
        });
        selectors.insert((ns, name), selector);
    }
    if let Some(((ns, name), _)) = listed.into_iter().next() {
        return Err(TranslateError::Object {
            what: format!("EndpointSlice for {ns}/{name}"),
            reason: "the scenario has no such Service".into(),
        });
    }
    let mut pods = Vec::new();
    let mut pod_objects = Vec::new();
    let mut free = BTreeSet::new();
    let deployments = s.has_deployments();
    for (i, &count) in s.pods.iter().enumerate() {
        let n = i + 1;
        for j in 0..count {
            let mut homes = members.remove(&(n, j)).unwrap_or_default();
            if homes.is_empty() && deployments {
                free.insert((n, j));
                continue;
            }
            if homes.is_empty() {
                homes.insert("default".to_string(), BTreeSet::new());
            }
            for (ns, svcs) in homes {
                let mut labels = Map::new();
                labels.insert(POD_LABEL.into(), json!(pod_name(n, j)));
                for svc in &svcs {
                    for (k, v) in &selectors[&(ns.clone(), svc.clone())] {
                        if let Some(old) = labels.insert(k.clone(), v.clone()) {
                            if &old != v {
                                return Err(TranslateError::Object {
                                    what: format!("Pod {ns}/{}", pod_name(n, j)),
                                    reason: format!(
                                        "the selectors of its Services want label {k} to be both {old} and {v}"
                                    ),
                                });
                            }
                        }
                    }
                }
                pod_objects.push(pod(s, n, j, &ns, labels));
                pods.push(PodObject {
                    host: (n, j),
                    namespace: ns,
                    name: pod_name(n, j),
                    ready: readiness.get(&(n, j)).copied().unwrap_or(true),
                });
            }
        }
    }
    let defined: BTreeSet<String> = others
        .iter()
        .filter(|o| o["kind"] == "Namespace")
        .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    let used: BTreeSet<String> = services
        .iter()
        .chain(&others)
        .filter(|o| o["kind"] != "Namespace")
        .map(namespace_of)
        .chain(pods.iter().map(|p| p.namespace.clone()))
        .collect();
    let mut apply: Vec<Value> = used
        .iter()
        .filter(|ns| !BUILT_IN_NAMESPACES.contains(&ns.as_str()) && !defined.contains(*ns))
        .map(|ns| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
        .collect();
    // The ServiceAccount admission plugin wants each Pod's ServiceAccount
    // to exist; the controller that would make `default` is not run.
    let pod_namespaces: BTreeSet<String> = pods
        .iter()
        .map(|p| p.namespace.clone())
        .chain(
            others
                .iter()
                .filter(|o| o["kind"] == "Deployment")
                .map(namespace_of),
        )
        .collect();
    apply.extend(pod_namespaces.into_iter().map(|ns| {
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": "default", "namespace": ns}})
    }));
    apply.extend((1..=s.pods.len()).map(node));
    if s.router
        .iter()
        .flat_map(|r| &r.lb)
        .any(|a| a.contains(crate::scenario::KUBECONFIG))
    {
        apply.extend(lb_rbac());
    }
    apply.extend(others);
    apply.extend(services);
    apply.extend(pod_objects);
    Ok(ApiObjects {
        apply,
        pods,
        expected,
        free,
    })
}

/// What the router's LB may do (see [`crate::k8s::pki::Identity::lb`]).
fn lb_rbac() -> [Value; 2] {
    let user = crate::k8s::pki::LB_USER;
    [
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": user},
        "rules": [
            {"apiGroups": [""], "resources": ["services", "nodes"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["services/status"], "verbs": ["patch", "update"]},
        ]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": user},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": user},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]}),
    ]
}

/// Node N as its kubelet would register it: its pod CIDR, its address on
/// the fabric, Ready.
pub fn node(n: usize) -> Value {
    let name = format!("node-{n}");
    let cidr = format!("10.244.{n}.0/24");
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}},
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr, node_pod_cidr6(n)]},
        // Server-side apply keys status.addresses by type, so it refuses
        // the two InternalIPs of a dual-stack node (kubernetes#113482); the
        // Node is applied with the IPv4 one and its whole status written
        // after, as a kubelet writes it ([`node_status`]).
        "status": {
            "addresses": [{"type": "InternalIP", "address": node_ip(n).to_string()}],
            "conditions": node_status(n)["conditions"].clone(),
        },
    })
}

/// Node N's status: what the kubelet reports and the agents read.
pub fn node_status(n: usize) -> Value {
    json!({
        "addresses": [
            {"type": "InternalIP", "address": node_ip(n).to_string()},
            {"type": "InternalIP", "address": node_ip6(n).to_string()},
            {"type": "Hostname", "address": format!("node-{n}")},
        ],
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "message": "realip lab plays the kubelet"}],
    })
}

/// The Pod object for pod J of node N: bound to its node, running what
/// the lab runs there.
fn pod(s: &Scenario, n: usize, j: usize, ns: &str, labels: Map<String, Value>) -> Value {
    let program = s.pod_program(n, j);
    let whoami = program.first().is_some_and(|p| p == "whoami");
    let mut container = json!({
        "name": program.first().cloned().unwrap_or_else(|| "realip".into()),
        "image": IMAGE,
        "command": ["realip"],
        "args": program,
    });
    if whoami {
        container["ports"] = json!([
            {"name": "http", "containerPort": 8080, "protocol": "TCP"},
            {"name": "tcp-field", "containerPort": 9000, "protocol": "TCP"},
            {"name": "udp-field", "containerPort": 9001, "protocol": "UDP"},
        ]);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod_name(n, j), "namespace": ns, "labels": labels},
        "spec": {
            "nodeName": format!("node-{n}"),
            // No token controller and no kubelet to mount one.
            "automountServiceAccountToken": false,
            "enableServiceLinks": false,
            "terminationGracePeriodSeconds": 0,
            "containers": [container],
        },
    })
}

/// The status the lab writes once pod J of node N says READY=1, as its
/// kubelet would: Running, its IP, and Ready as the scenario wants it.
pub fn pod_status(s: &Scenario, n: usize, j: usize, ready: bool) -> Value {
    let container = s
        .pod_program(n, j)
        .first()
        .cloned()
        .unwrap_or_else(|| "realip".into());
    running_status(n, j, &container, ready)
}

/// The status of a Pod running in pod slot J of node N, its container
/// named `container`.
pub fn running_status(n: usize, j: usize, container: &str, ready: bool) -> Value {
    let flag = if ready { "True" } else { "False" };
    json!({"status": {
        "phase": "Running",
        "hostIP": node_ip(n).to_string(),
        "hostIPs": [{"ip": node_ip(n).to_string()}, {"ip": node_ip6(n).to_string()}],
        "podIP": pod_ip(n, j).to_string(),
        "podIPs": [{"ip": pod_ip(n, j).to_string()}, {"ip": pod_ip6(n, j).to_string()}],
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Initialized", "status": "True"},
            {"type": "ContainersReady", "status": flag},
            {"type": "Ready", "status": flag},
        ],
        "containerStatuses": [{
            "name": container, "image": IMAGE, "imageID": "", "ready": ready,
            "started": true, "restartCount": 0, "state": {"running": {}},
        }],
    }})
}

#[cfg(test)]
mod tests;
