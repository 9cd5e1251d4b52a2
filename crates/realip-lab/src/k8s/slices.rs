//! Whether the EndpointSlice controller has written what the scenario's
//! slices say (pure): the lab probes only once every Service's slices, all
//! of them together, list exactly the expected endpoints and ports.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde_json::Value;

use super::objects::{Endpoint, ExpectedSlices, SlicePort};

/// What one Service's slices hold now.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Written {
    endpoints: BTreeSet<Endpoint>,
    ports: BTreeSet<SlicePort>,
}

/// The slices of a `kubectl get endpointslices -A -o json` list, grouped
/// by their Service.
fn written(list: &Value) -> BTreeMap<(String, String), Written> {
    let mut out: BTreeMap<(String, String), Written> = BTreeMap::new();
    for s in list["items"].as_array().into_iter().flatten() {
        let (Some(ns), Some(svc)) = (
            s["metadata"]["namespace"].as_str(),
            s["metadata"]["labels"]["kubernetes.io/service-name"].as_str(),
        ) else {
            continue;
        };
        let w = out.entry((ns.to_string(), svc.to_string())).or_default();
        for e in s["endpoints"].as_array().into_iter().flatten() {
            let Some(address) = e["addresses"][0]
                .as_str()
                .and_then(|a| a.parse::<IpAddr>().ok())
            else {
                continue;
            };
            w.endpoints.insert(Endpoint {
                address,
                node: e["nodeName"].as_str().unwrap_or("").to_string(),
                // The controller always writes it; absent means ready.
                ready: e["conditions"]["ready"].as_bool().unwrap_or(true),
            });
        }
        for p in s["ports"].as_array().into_iter().flatten() {
            if let Some(port) = p["port"].as_u64().and_then(|p| u16::try_from(p).ok()) {
                w.ports.insert(SlicePort {
                    name: p["name"].as_str().unwrap_or("").to_string(),
                    port,
                    protocol: p["protocol"].as_str().unwrap_or("TCP").to_string(),
                });
            }
        }
    }
    out
}

fn endpoints(set: &BTreeSet<Endpoint>) -> String {
    let all: Vec<String> = set
        .iter()
        .map(|e| {
            let ready = if e.ready { "" } else { " (not ready)" };
            format!("{} on {}{ready}", e.address, e.node)
        })
        .collect();
    if all.is_empty() {
        "none".into()
    } else {
        all.join(", ")
    }
}

fn ports(set: &BTreeSet<SlicePort>) -> String {
    let all: Vec<String> = set
        .iter()
        .map(|p| format!("{}:{}/{}", p.name, p.port, p.protocol))
        .collect();
    all.join(", ")
}

/// What differs between the expectation and `list` (the slices as the
/// apiserver returns them), one line per Service; empty when all match.
pub fn differences(expected: &[ExpectedSlices], list: &Value) -> Vec<String> {
    let now = written(list);
    let mut out = Vec::new();
    for want in expected {
        let key = (want.namespace.clone(), want.service.clone());
        let got = now.get(&key).cloned().unwrap_or_default();
        let who = format!("{}/{}", want.namespace, want.service);
        if got.endpoints != want.endpoints {
            out.push(format!(
                "{who}: endpoints {}, want {}",
                endpoints(&got.endpoints),
                endpoints(&want.endpoints)
            ));
        } else if !want.endpoints.is_empty() && got.ports != want.ports {
            out.push(format!(
                "{who}: ports {}, want {}",
                ports(&got.ports),
                ports(&want.ports)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn want() -> Vec<ExpectedSlices> {
        vec![ExpectedSlices {
            namespace: "demo".into(),
            service: "web".into(),
            endpoints: [Endpoint {
                address: std::net::Ipv4Addr::new(10, 244, 1, 10).into(),
                node: "node-1".into(),
                ready: true,
            }]
            .into(),
            ports: [SlicePort {
                name: "http".into(),
                port: 8080,
                protocol: "TCP".into(),
            }]
            .into(),
        }]
    }

    fn slice(endpoints: Value, ports: Value) -> Value {
        json!({"items": [{
            "metadata": {"namespace": "demo", "name": "web-abcde",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "endpoints": endpoints, "ports": ports,
        }]})
    }

    #[test]
    fn equal_only_when_endpoints_and_ports_are() {
        let ports = json!([{"name": "http", "port": 8080, "protocol": "TCP"}]);
        let ep = json!([{"addresses": ["10.244.1.10"], "nodeName": "node-1", "conditions": {"ready": true}}]);
        assert!(differences(&want(), &slice(ep.clone(), ports.clone())).is_empty());
        // Not there yet: the placeholder slice the controller makes first.
        let d = differences(&want(), &slice(Value::Null, Value::Null));
        assert_eq!(d, ["demo/web: endpoints none, want 10.244.1.10 on node-1"]);
        let d = differences(&want(), &json!({"items": []}));
        assert_eq!(d.len(), 1);
        let unready = json!([{"addresses": ["10.244.1.10"], "nodeName": "node-1", "conditions": {"ready": false}}]);
        let d = differences(&want(), &slice(unready, ports));
        assert_eq!(
            d,
            ["demo/web: endpoints 10.244.1.10 on node-1 (not ready), want 10.244.1.10 on node-1"]
        );
        let d = differences(
            &want(),
            &slice(ep, json!([{"name": "http", "port": 80, "protocol": "TCP"}])),
        );
        assert_eq!(d, ["demo/web: ports http:80/TCP, want http:8080/TCP"]);
    }

    #[test]
    fn endpoints_are_gathered_over_all_slices_of_a_service() {
        let mut w = want();
        w[0].endpoints.insert(Endpoint {
            address: std::net::Ipv4Addr::new(10, 244, 2, 10).into(),
            node: "node-2".into(),
            ready: true,
        });
        let one = |ip: &str, node: &str| {
            json!({"metadata": {"namespace": "demo", "labels": {"kubernetes.io/service-name": "web"}},
                   "endpoints": [{"addresses": [ip], "nodeName": node, "conditions": {"ready": true}}],
                   "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]})
        };
        let list = json!({"items": [one("10.244.1.10", "node-1"), one("10.244.2.10", "node-2")]});
        assert!(differences(&w, &list).is_empty());
    }
}
