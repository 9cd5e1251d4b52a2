//! The plan (pure): which namespaces, which links and addresses, in the
//! order `ip` must make them.

use super::hosts::{
    node_ip, node_ip6, node_pod_cidr6, node_pod_gateway, node_pod_gateway6, pod_ip, pod_ip6, Host,
    Plan, Role, Spec, Step, CLIENT_IP, CLIENT_IP6, CONTROL_IP, CONTROL_IP6, FABRIC_GATEWAY6,
    PREFIX, ROUTER_IP6,
};

fn ip(ns: &str, args: &[&str]) -> Step {
    Step::Ip(ns.to_string(), args.iter().map(|s| s.to_string()).collect())
}

/// `ip -6 addr add ADDR/64 dev DEV nodad`: usable at once (no duplicate
/// address detection to wait for: every address here is ours).
fn addr6(ns: &str, addr: impl std::fmt::Display, dev: &str) -> Step {
    ip(
        ns,
        &[
            "-6",
            "addr",
            "add",
            &format!("{addr}/64"),
            "dev",
            dev,
            "nodad",
        ],
    )
}

/// `ip -6 route add DST via GW`.
fn route6(ns: &str, dst: &str, via: impl std::fmt::Display) -> Step {
    ip(ns, &["-6", "route", "add", dst, "via", &via.to_string()])
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
    if spec.control {
        hosts.push(Host {
            role: Role::Control,
            netns: name("control"),
        });
    }
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
        steps.push(Step::NoDad(h.netns.clone()));
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
    steps.push(addr6(&router, FABRIC_GATEWAY6, "fab0"));
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
    steps.push(addr6(&client, CLIENT_IP6, "eth0"));
    steps.push(ip(&client, &["link", "set", "eth0", "up"]));
    steps.push(ip(
        &client,
        &["route", "add", "default", "via", "203.0.113.1"],
    ));
    steps.push(route6(&client, "default", ROUTER_IP6));
    steps.push(ip(
        &router,
        &["addr", "add", "203.0.113.1/24", "dev", "client0"],
    ));
    steps.push(addr6(&router, ROUTER_IP6, "client0"));
    steps.push(ip(&router, &["link", "set", "client0", "up"]));
    steps.push(Step::Forwarding(router.clone()));
    if spec.control {
        // The control plane on the fabric, beside the nodes. Its default
        // route is the router's, like a node's: the replies to pods (the
        // `kubernetes` Service's endpoint is here) go back through the VPC
        // route table.
        let control = name("control");
        steps.push(ip(
            &control,
            &[
                "link", "add", "eth0", "type", "veth", "peer", "name", "control", "netns", &fabric,
            ],
        ));
        steps.push(ip(
            &fabric,
            &["link", "set", "control", "master", "br0", "up"],
        ));
        steps.push(ip(
            &control,
            &["addr", "add", &format!("{CONTROL_IP}/24"), "dev", "eth0"],
        ));
        steps.push(addr6(&control, CONTROL_IP6, "eth0"));
        steps.push(ip(&control, &["link", "set", "eth0", "up"]));
        steps.push(ip(
            &control,
            &["route", "add", "default", "via", "10.0.0.1"],
        ));
        steps.push(route6(&control, "default", FABRIC_GATEWAY6));
    }
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
        steps.push(addr6(&node, node_ip6(n), "eth0"));
        steps.push(ip(&node, &["link", "set", "eth0", "up"]));
        steps.push(ip(&node, &["route", "add", "default", "via", "10.0.0.1"]));
        steps.push(route6(&node, "default", FABRIC_GATEWAY6));
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
        steps.push(route6(&router, &node_pod_cidr6(n), node_ip6(n)));
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
        steps.push(addr6(&node, node_pod_gateway6(n), "cbr0"));
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
                steps.push(route6(&node, &node_pod_cidr6(m), node_ip6(m)));
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
            steps.push(addr6(&pod, pod_ip6(n, j), "eth0"));
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
            steps.push(route6(&pod, "default", node_pod_gateway6(n)));
        }
    }
    Ok(Plan {
        id: id.to_string(),
        hosts,
        steps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::hosts::unique_id;

    #[test]
    fn plan_names_and_addresses() {
        let p = plan(
            &Spec {
                pods_per_node: vec![1, 0],
                control: false,
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
            Step::Ip(n, _) | Step::Forwarding(n) | Step::NoDad(n) | Step::AddNetns(n) =>
                n.starts_with("realip-t1-"),
        }));
    }

    #[test]
    fn ids_are_unique() {
        let a = unique_id();
        let b = unique_id();
        assert_ne!(a, b);
        assert!(plan(
            &Spec {
                pods_per_node: vec![201],
                control: false,
            },
            "x"
        )
        .is_err());
    }

    #[test]
    fn the_control_plane_is_one_more_host_on_the_fabric() {
        let p = plan(
            &Spec {
                pods_per_node: vec![1],
                control: true,
            },
            "t2",
        )
        .unwrap();
        assert_eq!(p.netns(&Role::Control), Some("realip-t2-control"));
        let text: Vec<String> = p.steps.iter().map(|s| s.to_string()).collect();
        for want in [
            "ip -n realip-t2-fabric link set control master br0 up",
            "ip -n realip-t2-control addr add 10.0.0.2/24 dev eth0",
            "ip -n realip-t2-control link set lo up",
        ] {
            assert!(text.contains(&want.to_string()), "{want}: {text:#?}");
        }
        let without = plan(
            &Spec {
                pods_per_node: vec![1],
                control: false,
            },
            "t2",
        )
        .unwrap();
        assert_eq!(without.netns(&Role::Control), None);
        assert!(without
            .steps
            .iter()
            .all(|s| !s.to_string().contains("control")));
    }
}
