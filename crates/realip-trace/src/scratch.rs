//! The scratch namespaces a trace runs in: one that plays the node (its
//! addresses on `eth0`, its pod CIDRs on a `cbr0` bridge, forwarding on,
//! realip's ruleset for it), and one that plays the sender, so that the
//! packet arrives on an interface and crosses prerouting as a remote
//! client's or a pod's does. A packet from the node itself needs no
//! second namespace: it is sent from the node's and crosses output.
//!
//! The plan of namespaces and `ip` steps is pure; realip-lab's [`Lab`]
//! builds it and removes every namespace on drop, on error and on
//! SIGINT, SIGTERM or SIGHUP. Nothing is attached to the host's network.

use std::net::IpAddr;
use std::path::PathBuf;

use realip_core::Cidr;
use realip_lab::topology::{Host, Plan, Role, Step, PREFIX};
use realip_node::model::Node;

/// Who sends the packet, which decides the hook it enters by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// The node itself (SRC is one of its addresses, or loopback): the
    /// packet crosses output.
    Node,
    /// A pod on this node (SRC is in its pod CIDR): it arrives on cbr0,
    /// through prerouting; `gateway` is the node's address there.
    Pod {
        /// cbr0's address in the pod's CIDR.
        gateway: IpAddr,
    },
    /// Anything else, a client or another node: it arrives on eth0,
    /// through prerouting; `gateway` is the node's address it routes by.
    Remote {
        /// The node's address of SRC's family.
        gateway: IpAddr,
    },
}

/// Why the namespaces cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScratchError {
    /// A remote sender needs a node address of its family to route by.
    #[error(
        "node {node} has no {family} address among its status.addresses, so a packet from {src} \
         has nowhere to arrive; give the Node an InternalIP of that family"
    )]
    NoNodeAddress {
        /// The node.
        node: String,
        /// `IPv4` or `IPv6`.
        family: &'static str,
        /// SRC.
        src: IpAddr,
    },
}

/// The first host address of a CIDR: cbr0's address, as kubenet and the
/// lab give it.
pub fn gateway_of(c: &Cidr) -> IpAddr {
    match c.network() {
        IpAddr::V4(v) => IpAddr::from(u32::from(v).wrapping_add(1).to_be_bytes()),
        IpAddr::V6(v) => IpAddr::from(u128::from(v).wrapping_add(1).to_be_bytes()),
    }
}

/// Who sends a packet from `src` to this node.
pub fn sender_for(node: &Node, src: IpAddr) -> Result<Sender, ScratchError> {
    let gateways: Vec<IpAddr> = node.pod_cidrs.iter().map(gateway_of).collect();
    if src.is_loopback() || node.ips.contains(&src) || gateways.contains(&src) {
        return Ok(Sender::Node);
    }
    if let Some(c) = node.pod_cidrs.iter().find(|c| c.contains(src)) {
        return Ok(Sender::Pod {
            gateway: gateway_of(c),
        });
    }
    match node.ips.iter().find(|ip| ip.is_ipv4() == src.is_ipv4()) {
        Some(gw) => Ok(Sender::Remote { gateway: *gw }),
        None => Err(ScratchError::NoNodeAddress {
            node: node.name.clone(),
            family: if src.is_ipv4() { "IPv4" } else { "IPv6" },
            src,
        }),
    }
}

/// The namespaces of one trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scratch {
    /// What realip-lab builds.
    pub plan: Plan,
    /// The node's namespace.
    pub node_ns: String,
    /// The sender's namespace (none: the node sends).
    pub sender_ns: Option<String>,
}

fn host_len(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// `addr add`, without duplicate address detection for IPv6 (a tentative
/// address would not answer for a second).
fn addr_add(ip: IpAddr, len: u8, dev: &str) -> Vec<String> {
    let mut a = s(&["addr", "add", &format!("{ip}/{len}"), "dev", dev]);
    if ip.is_ipv6() {
        a.push("nodad".into());
    }
    a
}

/// The node's uplink when no sender is behind it: a veth whose peer
/// stays down, so what the node routes out of it is dropped there (after
/// postrouting and conntrack's confirmation), as a dummy would (not every
/// kernel has the dummy driver).
fn uplink() -> Vec<String> {
    s(&[
        "link",
        "add",
        "eth0",
        "type",
        "veth",
        "peer",
        "name",
        "eth0-peer",
    ])
}

/// Plan the namespaces for a packet from `src` to `node`, named
/// `realip-trace-ID-node` and `realip-trace-ID-sender`.
pub fn plan(id: &str, node: &Node, src: IpAddr, sender: Sender) -> Scratch {
    let n = format!("{PREFIX}-trace-{id}-node");
    let p = format!("{PREFIX}-trace-{id}-sender");
    let ip = |args: Vec<String>| Step::Ip(n.clone(), args);
    let mut steps = vec![Step::AddNetns(n.clone())];
    let mut hosts = vec![Host {
        role: Role::Node(1),
        netns: n.clone(),
    }];
    steps.push(ip(s(&["link", "set", "lo", "up"])));
    steps.push(ip(s(&["link", "add", "cbr0", "type", "bridge"])));
    steps.push(ip(s(&["link", "set", "cbr0", "up"])));
    for c in &node.pod_cidrs {
        steps.push(ip(addr_add(gateway_of(c), c.prefix(), "cbr0")));
    }
    let sender_ns = match sender {
        Sender::Node => {
            steps.push(ip(uplink()));
            None
        }
        Sender::Remote { .. } | Sender::Pod { .. } => {
            steps.push(Step::AddNetns(p.clone()));
            hosts.push(Host {
                role: Role::Client,
                netns: p.clone(),
            });
            Some(p.clone())
        }
    };
    match sender {
        Sender::Remote { .. } => steps.push(ip(s(&[
            "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &p,
        ]))),
        Sender::Pod { .. } => {
            steps.push(ip(uplink()));
            steps.push(ip(s(&[
                "link", "add", "vpod", "type", "veth", "peer", "name", "eth0", "netns", &p,
            ])));
            steps.push(ip(s(&["link", "set", "vpod", "master", "cbr0"])));
            steps.push(ip(s(&["link", "set", "vpod", "up"])));
        }
        Sender::Node => {}
    }
    for a in &node.ips {
        steps.push(ip(addr_add(*a, host_len(*a), "eth0")));
    }
    steps.push(ip(s(&["link", "set", "eth0", "up"])));
    // Off-node destinations (other nodes' pods, anything DNAT picks that
    // is not local) leave by eth0, whose address masquerade then takes,
    // as a node's uplink.
    steps.push(ip(s(&["route", "add", "default", "dev", "eth0"])));
    steps.push(ip(s(&["-6", "route", "add", "default", "dev", "eth0"])));
    if let Sender::Remote { gateway } | Sender::Pod { gateway } = sender {
        let pi = |args: Vec<String>| Step::Ip(p.clone(), args);
        steps.push(pi(s(&["link", "set", "lo", "up"])));
        steps.push(pi(addr_add(src, host_len(src), "eth0")));
        steps.push(pi(s(&["link", "set", "eth0", "up"])));
        let fam = if src.is_ipv4() { "-4" } else { "-6" };
        steps.push(pi(s(&[
            fam,
            "route",
            "add",
            "default",
            "via",
            &gateway.to_string(),
            "dev",
            "eth0",
            "onlink",
        ])));
    }
    Scratch {
        plan: Plan {
            id: id.to_string(),
            hosts,
            steps,
        },
        node_ns: n,
        sender_ns,
    }
}

/// The node namespace's sysctls: forwarding on, reverse-path filtering
/// off (a pod's or a client's address arrives on an interface the
/// scratch routes do not point back through), and bridged frames kept out
/// of the IP hooks: a pod's packet reaches the node's IP stack on cbr0
/// and is routed from there, the path kube-proxy's rules are written for
/// (with br_netfilter the kernel would bridge the DNATed frame straight
/// to a pod MAC that does not exist here, and no later hook would see it).
pub const NODE_SYSCTLS: [(&str, &str); 8] = [
    ("net/bridge/bridge-nf-call-iptables", "0"),
    ("net/bridge/bridge-nf-call-ip6tables", "0"),
    ("net/ipv4/ip_forward", "1"),
    ("net/ipv6/conf/all/forwarding", "1"),
    ("net/ipv4/conf/all/rp_filter", "0"),
    ("net/ipv4/conf/default/rp_filter", "0"),
    ("net/ipv4/conf/eth0/rp_filter", "0"),
    ("net/ipv4/conf/cbr0/rp_filter", "0"),
];

/// Where a namespace's handle is.
pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> Node {
        Node {
            name: "node-2".into(),
            pod_cidrs: vec!["10.244.2.0/24".parse().unwrap()],
            ips: vec!["10.0.0.12".parse().unwrap()],
            being_deleted: false,
        }
    }

    #[test]
    fn the_sender_follows_the_source_address() {
        let n = node();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(sender_for(&n, ip("10.0.0.12")), Ok(Sender::Node));
        assert_eq!(sender_for(&n, ip("10.244.2.1")), Ok(Sender::Node));
        assert_eq!(sender_for(&n, ip("127.0.0.1")), Ok(Sender::Node));
        assert_eq!(
            sender_for(&n, ip("10.244.2.7")),
            Ok(Sender::Pod {
                gateway: ip("10.244.2.1")
            })
        );
        assert_eq!(
            sender_for(&n, ip("203.0.113.7")),
            Ok(Sender::Remote {
                gateway: ip("10.0.0.12")
            })
        );
        assert!(matches!(
            sender_for(&n, ip("2001:db8::7")),
            Err(ScratchError::NoNodeAddress { .. })
        ));
    }

    #[test]
    fn namespaces_are_ours_by_name_and_the_client_routes_by_the_node() {
        let n = node();
        let src = "203.0.113.7".parse().unwrap();
        let sc = plan("abc", &n, src, sender_for(&n, src).unwrap());
        assert_eq!(sc.node_ns, "realip-trace-abc-node");
        assert_eq!(sc.sender_ns.as_deref(), Some("realip-trace-abc-sender"));
        let text: Vec<String> = sc.plan.steps.iter().map(|s| s.to_string()).collect();
        assert!(
            text.contains(&"ip -n realip-trace-abc-node addr add 10.244.2.1/24 dev cbr0".into())
        );
        assert!(text.contains(&"ip -n realip-trace-abc-node addr add 10.0.0.12/32 dev eth0".into()));
        assert!(text.contains(
            &"ip -n realip-trace-abc-sender -4 route add default via 10.0.0.12 dev eth0 onlink"
                .into()
        ));
        // Every namespace made is one of ours.
        for s in &sc.plan.steps {
            if let Step::AddNetns(name) = s {
                assert!(name.starts_with("realip-trace-abc-"));
            }
        }
    }
}
