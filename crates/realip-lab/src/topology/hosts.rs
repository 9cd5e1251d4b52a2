//! The lab's hosts as data: roles, names, addresses and the `ip` steps
//! that build them. Pure.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU32, Ordering};

/// Every namespace the lab makes starts with this.
pub const PREFIX: &str = "realip";

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// Pods per node, in node order (node-1 first).
    pub pods_per_node: Vec<usize>,
    /// One more host on the fabric for the control plane (`--api`).
    pub control: bool,
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
    /// The control plane's host on the fabric (etcd, kube-apiserver,
    /// kube-controller-manager).
    Control,
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
    /// Turn on forwarding in NS, both families.
    Forwarding(String),
    /// No IPv6 duplicate address detection in NS, for the interfaces made
    /// after it: every address here is ours, and a tentative link-local
    /// address would hold up neighbour discovery for a second or two.
    NoDad(String),
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::AddNetns(n) => write!(f, "ip netns add {n}"),
            Step::Ip(n, args) => write!(f, "ip -n {n} {}", args.join(" ")),
            Step::Forwarding(n) => write!(
                f,
                "ip netns exec {n} sysctl net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1"
            ),
            Step::NoDad(n) => write!(
                f,
                "ip netns exec {n} sysctl net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0"
            ),
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

/// The control plane's address on the fabric: the apiserver listens here
/// (port 6443), and the nodes reach it directly, as a VPC's nodes reach a
/// managed apiserver.
pub const CONTROL_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

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

// IPv6: every host has an address of each family (the lab is dual-stack),
// laid out to read like its IPv4 one: 10.0.0.11 is fd00:10::11, pod
// 10.244.1.10 is fd00:244:1::10, the client 203.0.113.7 is 2001:db8::7.

/// The client's IPv6 address.
pub const CLIENT_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7);

/// The router's IPv6 address on the client's side (the LB's IPv6 VIP).
pub const ROUTER_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

/// The router's IPv6 address on the fabric.
pub const FABRIC_GATEWAY6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 1);

/// The control plane's IPv6 address on the fabric.
pub const CONTROL_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 2);

/// Node `i`'s IPv6 address on the fabric.
pub fn node_ip6(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 0x10 + i as u16)
}

/// Node `i`'s IPv6 pod CIDR (a /64).
pub fn node_pod_cidr6(i: usize) -> String {
    format!("fd00:244:{:x}::/64", i)
}

/// Node `i`'s IPv6 pod gateway (its cbr0 address).
pub fn node_pod_gateway6(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0x244, i as u16, 0, 0, 0, 0, 1)
}

/// Pod `j` on node `i`, IPv6.
pub fn pod_ip6(i: usize, j: usize) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0x244, i as u16, 0, 0, 0, 0, 0x10 + j as u16)
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
