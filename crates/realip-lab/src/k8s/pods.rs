//! The lab as scheduler and kubelet for the Pods the controllers make
//! (pure): what the apiserver's Pods, Services, EndpointSlices and
//! Deployments say, where a pending Pod goes, and whether the controllers
//! have caught up with a change.
//!
//! A Deployment's Pods are made by the real deployment and ReplicaSet
//! controllers, unbound. The lab places each on a free pod slot of the
//! topology (a pod namespace no Pod holds), on the node with the fewest
//! Pods, then the lowest node and slot: the spreading a scheduler's
//! default scoring and the seeds' anti-affinity give. A Pod no slot is
//! left for stays Pending, marked Unschedulable as the scheduler marks it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde_json::{Map, Value};

/// A Pod as the lab's kubelet reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its UID (a Pod made again under the same name is another Pod).
    pub uid: String,
    /// The node it is bound to.
    pub node: Option<String>,
    /// Its first container's name (the status names it).
    pub container: String,
    /// Seconds of grace once it is being deleted: `Some` from the moment
    /// the apiserver set its deletionTimestamp.
    pub deleting: Option<u64>,
    /// Its status says PodScheduled False (the lab found no slot).
    pub unschedulable: bool,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
}

/// The Pods of a `kubectl get pods -o json` list.
pub fn pod_views(list: &Value) -> Vec<PodView> {
    let items = list["items"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    items
        .iter()
        .map(|p| {
            let meta = &p["metadata"];
            let deleting = meta["deletionTimestamp"]
                .as_str()
                .map(|_| meta["deletionGracePeriodSeconds"].as_u64().unwrap_or(0));
            let unschedulable =
                conditions(p).any(|c| c["type"] == "PodScheduled" && c["status"] == "False");
            PodView {
                namespace: meta["namespace"].as_str().unwrap_or("default").into(),
                name: meta["name"].as_str().unwrap_or("").into(),
                uid: meta["uid"].as_str().unwrap_or("").into(),
                node: p["spec"]["nodeName"]
                    .as_str()
                    .filter(|n| !n.is_empty())
                    .map(str::to_string),
                container: p["spec"]["containers"][0]["name"]
                    .as_str()
                    .unwrap_or("app")
                    .into(),
                deleting,
                unschedulable,
                labels: string_map(&meta["labels"]),
            }
        })
        .collect()
}

fn conditions(p: &Value) -> impl Iterator<Item = &Value> {
    p["status"]["conditions"].as_array().into_iter().flatten()
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}

/// Where a pending Pod goes: a slot of `free` (pod J of node N), on the
/// node with the fewest Pods in `taken`, then the lowest node and slot.
pub fn place(
    free: &BTreeSet<(usize, usize)>,
    taken: &BTreeSet<(usize, usize)>,
) -> Option<(usize, usize)> {
    let load = |n: usize| taken.iter().filter(|(m, _)| *m == n).count();
    free.iter()
        .filter(|slot| !taken.contains(slot))
        .min_by_key(|&&(n, j)| (load(n), n, j))
        .copied()
}

/// The binding the scheduler posts: Pod `name` onto `node`.
pub fn binding(name: &str, node: &str) -> Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    })
}

/// The status patch the scheduler writes when no slot is free.
pub fn unschedulable() -> Value {
    serde_json::json!({"status": {"conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "no free pod slot in the lab's topology (realip lab plays the scheduler)",
    }]}})
}

/// One endpoint's address and conditions.
type Conditions = (IpAddr, bool, bool, bool);

/// A Pod's IPs: `status.podIPs`, else `status.podIP`.
fn pod_ips(p: &Value) -> Vec<IpAddr> {
    let listed: Vec<IpAddr> = p["status"]["podIPs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["ip"].as_str()?.parse().ok())
        .collect();
    if listed.is_empty() {
        p["status"]["podIP"]
            .as_str()
            .and_then(|i| i.parse().ok())
            .into_iter()
            .collect()
    } else {
        listed
    }
}

fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

fn selects(selector: &Map<String, Value>, labels: &Map<String, Value>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// What the EndpointSlice controller writes for `service` from `pods`:
/// each selected Pod with an IP that has not finished, with its ready,
/// serving and terminating conditions.
fn implied(service: &Value, pods: &[Value]) -> BTreeSet<Conditions> {
    let Some(selector) = service["spec"]["selector"].as_object() else {
        return BTreeSet::new();
    };
    let ns = service["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default");
    let publish = service["spec"]["publishNotReadyAddresses"] == true;
    let families: Vec<&str> = match service["spec"]["ipFamilies"].as_array() {
        Some(f) => f.iter().filter_map(Value::as_str).collect(),
        None => vec!["IPv4"],
    };
    let mut out = BTreeSet::new();
    for p in pods {
        let labels = p["metadata"]["labels"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        if p["metadata"]["namespace"].as_str().unwrap_or("default") != ns
            || !selects(selector, &labels)
        {
            continue;
        }
        if matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")) {
            continue;
        }
        let pod_ready = conditions(p).any(|c| c["type"] == "Ready" && c["status"] == "True");
        let serving = publish || pod_ready;
        let terminating = p["metadata"]["deletionTimestamp"].is_string();
        let ready = publish || (serving && !terminating);
        // One slice per family of the Service, each with the Pod's IP of
        // that family.
        for ip in pod_ips(p) {
            if families.contains(&family(ip)) {
                out.insert((ip, ready, serving, terminating));
            }
        }
    }
    out
}

/// What `service`'s slices among `slices` hold.
fn written(service: &Value, slices: &[Value]) -> BTreeSet<Conditions> {
    let ns = service["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default");
    let name = &service["metadata"]["name"];
    let mut out = BTreeSet::new();
    for s in slices {
        if s["metadata"]["namespace"].as_str().unwrap_or("default") != ns
            || &s["metadata"]["labels"]["kubernetes.io/service-name"] != name
        {
            continue;
        }
        for e in s["endpoints"].as_array().into_iter().flatten() {
            let Some(ip) = e["addresses"][0].as_str().and_then(|i| i.parse().ok()) else {
                continue;
            };
            let c = &e["conditions"];
            let ready = c["ready"].as_bool().unwrap_or(true);
            let serving = c["serving"].as_bool().unwrap_or(ready);
            let terminating = c["terminating"].as_bool().unwrap_or(false);
            out.insert((ip, ready, serving, terminating));
        }
    }
    out
}

fn show(set: &BTreeSet<Conditions>) -> String {
    let items: Vec<String> = set
        .iter()
        .map(|(ip, ready, serving, terminating)| {
            let mut flags = Vec::new();
            flags.push(if *ready { "ready" } else { "not ready" });
            if *serving && !*ready {
                flags.push("serving");
            }
            if *terminating {
                flags.push("terminating");
            }
            format!("{ip} ({})", flags.join(", "))
        })
        .collect();
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

fn items(list: &Value) -> &[Value] {
    list["items"].as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// Where the controllers have not caught up yet: each Service whose
/// slices do not say what its Pods imply, and each Deployment whose
/// controller has not seen its last change or whose live Pods are not its
/// replicas. Empty when everything has settled.
pub fn lagging(services: &Value, pods: &Value, slices: &Value, deployments: &Value) -> Vec<String> {
    let (pods, slices) = (items(pods), items(slices));
    let mut out = Vec::new();
    for svc in items(services) {
        if svc["spec"]["type"] == "ExternalName" || svc["spec"]["selector"].as_object().is_none() {
            continue;
        }
        let (want, got) = (implied(svc, pods), written(svc, slices));
        if want != got {
            out.push(format!(
                "Service {}/{}: the slices say {}, its Pods {}",
                svc["metadata"]["namespace"].as_str().unwrap_or("default"),
                svc["metadata"]["name"].as_str().unwrap_or("?"),
                show(&got),
                show(&want)
            ));
        }
    }
    // A Pod the lab has yet to place or start (it may have appeared since
    // the lab last looked): the slices cannot be final yet.
    for p in pods {
        let meta = &p["metadata"];
        if meta["deletionTimestamp"].is_string() {
            continue;
        }
        let who = format!(
            "Pod {}/{}",
            meta["namespace"].as_str().unwrap_or("default"),
            meta["name"].as_str().unwrap_or("?")
        );
        let bound = p["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| !n.is_empty());
        let unschedulable =
            conditions(p).any(|c| c["type"] == "PodScheduled" && c["status"] == "False");
        if !bound && !unschedulable {
            out.push(format!("{who}: not placed yet"));
        } else if bound && !p["status"]["podIP"].is_string() {
            out.push(format!("{who}: not running yet"));
        }
    }
    for d in items(deployments) {
        let meta = &d["metadata"];
        let who = format!(
            "Deployment {}/{}",
            meta["namespace"].as_str().unwrap_or("default"),
            meta["name"].as_str().unwrap_or("?")
        );
        let generation = meta["generation"].as_u64().unwrap_or(0);
        if d["status"]["observedGeneration"].as_u64().unwrap_or(0) < generation {
            out.push(format!(
                "{who}: its controller has not seen generation {generation}"
            ));
            continue;
        }
        let replicas = d["spec"]["replicas"].as_u64().unwrap_or(1);
        let selector = d["spec"]["selector"]["matchLabels"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let ns = meta["namespace"].as_str().unwrap_or("default");
        let live = pods
            .iter()
            .filter(|p| p["metadata"]["namespace"].as_str().unwrap_or("default") == ns)
            .filter(|p| !p["metadata"]["deletionTimestamp"].is_string())
            .filter(|p| {
                let labels = p["metadata"]["labels"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
                selects(&selector, &labels)
            })
            .count() as u64;
        if live != replicas {
            out.push(format!("{who}: {live} live Pods, {replicas} wanted"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_pod_goes_to_the_emptiest_node_first() {
        let free: BTreeSet<_> = [(1, 0), (1, 1), (2, 0)].into();
        let mut taken = BTreeSet::new();
        assert_eq!(place(&free, &taken), Some((1, 0)));
        taken.insert((1, 0));
        assert_eq!(place(&free, &taken), Some((2, 0)), "node-2 has none");
        taken.insert((2, 0));
        assert_eq!(place(&free, &taken), Some((1, 1)));
        taken.insert((1, 1));
        assert_eq!(place(&free, &taken), None, "no slot left");
        // A slot held by a Pod the lab made itself counts as taken.
        let free: BTreeSet<_> = [(1, 1), (2, 0)].into();
        let taken: BTreeSet<_> = [(1, 0)].into();
        assert_eq!(place(&free, &taken), Some((2, 0)));
    }

    fn pod(name: &str, ip: &str, ready: bool, deleting: bool) -> Value {
        let mut p = json!({
            "metadata": {"name": name, "namespace": "demo", "uid": format!("uid-{name}"),
                         "labels": {"app": "web"}},
            "spec": {"nodeName": "node-1", "containers": [{"name": "web"}]},
            "status": {"phase": "Running", "podIP": ip,
                       "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]},
        });
        if deleting {
            p["metadata"]["deletionTimestamp"] = json!("2026-12-02T00:00:00Z");
            p["metadata"]["deletionGracePeriodSeconds"] = json!(600);
        }
        p
    }

    fn list(items: Vec<Value>) -> Value {
        json!({"items": items})
    }

    #[test]
    fn slices_are_compared_with_what_the_pods_imply() {
        let services = list(vec![json!({
            "metadata": {"name": "web", "namespace": "demo"},
            "spec": {"selector": {"app": "web"}},
        })]);
        let pods = list(vec![
            pod("a", "10.244.1.10", true, false),
            pod("b", "10.244.2.10", true, true),
        ]);
        let slices = |eps: Value| {
            list(vec![json!({
                "metadata": {"namespace": "demo", "labels": {"kubernetes.io/service-name": "web"}},
                "endpoints": eps,
            })])
        };
        let none = list(vec![]);
        let caught_up = slices(json!([
            {"addresses": ["10.244.1.10"], "conditions": {"ready": true, "serving": true, "terminating": false}},
            {"addresses": ["10.244.2.10"], "conditions": {"ready": false, "serving": true, "terminating": true}},
        ]));
        assert_eq!(
            lagging(&services, &pods, &caught_up, &none),
            Vec::<String>::new()
        );
        let behind = slices(json!([
            {"addresses": ["10.244.1.10"], "conditions": {"ready": true}},
            {"addresses": ["10.244.2.10"], "conditions": {"ready": true}},
        ]));
        let lag = lagging(&services, &pods, &behind, &none);
        assert_eq!(lag.len(), 1);
        assert!(
            lag[0].contains("10.244.2.10 (not ready, serving, terminating)"),
            "{lag:?}"
        );
    }

    #[test]
    fn a_deployment_lags_until_its_live_pods_are_its_replicas() {
        let none = list(vec![]);
        let deployment = |replicas: u64, seen: u64| {
            list(vec![json!({
                "metadata": {"name": "web", "namespace": "demo", "generation": 2},
                "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}}},
                "status": {"observedGeneration": seen},
            })])
        };
        let pods = list(vec![
            pod("a", "10.244.1.10", true, false),
            pod("b", "10.244.2.10", true, true),
        ]);
        assert!(lagging(&none, &pods, &none, &deployment(1, 2)).is_empty());
        // A Pod that is there but not placed, or placed but not running,
        // is not settled.
        let mut pending = pod("c", "10.244.1.11", false, false);
        pending["spec"]["nodeName"] = json!(null);
        pending["status"] = json!({"phase": "Pending"});
        let lag = lagging(&none, &list(vec![pending.clone()]), &none, &none);
        assert_eq!(lag, ["Pod demo/c: not placed yet"]);
        pending["spec"]["nodeName"] = json!("node-1");
        let lag = lagging(&none, &list(vec![pending.clone()]), &none, &none);
        assert_eq!(lag, ["Pod demo/c: not running yet"]);
        pending["spec"]["nodeName"] = json!(null);
        pending["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "False"}]);
        assert!(
            lagging(&none, &list(vec![pending]), &none, &none).is_empty(),
            "no slot: settled"
        );
        let lag = lagging(&none, &pods, &none, &deployment(2, 2));
        assert_eq!(lag, ["Deployment demo/web: 1 live Pods, 2 wanted"]);
        let lag = lagging(&none, &pods, &none, &deployment(1, 1));
        assert!(lag[0].contains("has not seen generation 2"), "{lag:?}");
    }

    #[test]
    fn pods_are_read_with_their_deletion_and_scheduling() {
        let mut p = pod("b", "10.244.2.10", true, true);
        p["spec"]["nodeName"] = json!("");
        p["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "False"}]);
        let v = &pod_views(&list(vec![p]))[0];
        assert_eq!(v.deleting, Some(600));
        assert_eq!(v.node, None);
        assert!(v.unschedulable);
        assert_eq!(v.container, "web");
        assert_eq!(v.labels["app"], "web");
    }
}
