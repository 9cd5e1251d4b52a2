//! The plan: a pure function from (model, this node) to the desired
//! nftables ruleset, one table per address family, with kube-proxy's
//! semantics (KEP-3866 nftables mode layout; iptables-mode behaviour).
//!
//! Dispatch goes through verdict maps keyed on address . protocol . port,
//! so the per-packet cost does not grow with the number of Services.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;

use data_encoding::BASE32;
use realip_core::Cidr;
use sha2::{Digest, Sha256};

use crate::model::{Endpoint, Model, Proto, Service, ServicePort, ServiceType};

/// The masquerade mark bit, as kube-proxy uses it.
pub const MASQ_MARK: u32 = 0x4000;
/// The table each family's rules live in.
pub const TABLE: &str = "realip";

/// An address family: one table each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// IPv4 (`table ip`).
    Ip,
    /// IPv6 (`table ip6`).
    Ip6,
}

impl Family {
    fn of(ip: IpAddr) -> Family {
        if ip.is_ipv4() {
            Family::Ip
        } else {
            Family::Ip6
        }
    }

    fn has(self, ip: IpAddr) -> bool {
        Family::of(ip) == self
    }

    /// `ip` or `ip6`.
    pub fn nft(self) -> &'static str {
        match self {
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
        }
    }

    fn addr_type(self) -> &'static str {
        match self {
            Family::Ip => "ipv4_addr",
            Family::Ip6 => "ipv6_addr",
        }
    }

    fn loopback(self) -> &'static str {
        match self {
            Family::Ip => "127.0.0.0/8",
            Family::Ip6 => "::1",
        }
    }
}

/// A verdict in a map or rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Continue in a chain, not coming back.
    Goto(String),
    /// Drop silently (Local policy without a local endpoint: the LB's
    /// health check lags, so a reject would hurt more than help).
    Drop,
    /// Reject (no endpoint at all).
    Reject,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Goto(c) => write!(f, "goto {c}"),
            Verdict::Drop => f.write_str("drop"),
            // Verdict maps cannot hold `reject`; a chain can.
            Verdict::Reject => f.write_str("goto reject-chain"),
        }
    }
}

/// A verdict-map key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    /// address . protocol . port
    Dest(IpAddr, Proto, u16),
    /// protocol . port (node ports)
    Port(Proto, u16),
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Dest(ip, p, port) => write!(f, "{ip} . {} . {port}", p.as_str()),
            Key::Port(p, port) => write!(f, "{} . {port}", p.as_str()),
        }
    }
}

/// A verdict map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Map {
    /// Name.
    pub name: &'static str,
    /// Whether keys carry an address.
    pub with_addr: bool,
    /// Elements, sorted.
    pub elements: Vec<(Key, Verdict)>,
}

/// A set of map keys (no verdicts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySet {
    /// Name.
    pub name: &'static str,
    /// Whether keys carry an address (`addr . proto . port`) or not
    /// (`proto . port`).
    pub with_addr: bool,
    /// Keys, sorted.
    pub keys: Vec<Key>,
}

/// A balancing group's data map: index -> endpoint, for `dnat to numgen
/// random mod N map @pick-...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PickMap {
    /// `pick-HASH-c` (cluster) or `pick-HASH-l` (local): the id hash of the
    /// chain that uses it.
    pub name: String,
    /// Endpoint `i` is element `i`.
    pub endpoints: Vec<(IpAddr, u16)>,
    /// The map's size: the kernel then makes a fixed hash table once
    /// instead of growing one (a tenth of a full sync at 10k Services),
    /// but refuses elements past it. A power of two, at least 16, so most
    /// scale-ups fit; one that does not is a new map.
    pub size: u32,
}

/// A pick map's size for `n` endpoints.
pub fn pick_size(n: usize) -> u32 {
    n.max(16).next_power_of_two().min(1 << 24) as u32
}

/// A dynamic set of client addresses (session affinity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AffinitySet {
    /// Name.
    pub name: String,
    /// Seconds an entry lives.
    pub timeout: u32,
}

/// A base chain's hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hook {
    /// `nat` or `filter`.
    pub kind: &'static str,
    /// `prerouting`, `output`, `postrouting`, `input`, `forward`.
    pub hook: &'static str,
    /// The priority, numeric (dstnat is -100, srcnat 100): nft 1.0.6
    /// refuses the names on some hooks.
    pub priority: &'static str,
}

/// A match in a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// Source in any of these ranges.
    SaddrIn(Vec<Cidr>),
    /// Source in none of these ranges.
    SaddrNotIn(Vec<Cidr>),
    /// Source is this address.
    SaddrEq(IpAddr),
    /// Source is a local address of this node.
    FibSaddrLocal,
    /// Source address is in an affinity set.
    SaddrInSet(String),
    /// New connection.
    CtNew,
    /// Invalid connection-tracking state.
    CtInvalid,
    /// The masquerade bit is clear.
    MarkClear,
    /// A fresh random number modulo this is 0 (probability 1/n).
    RandomZero(u32),
    /// `daddr . l4proto . dport` is in this set.
    DestInSet(&'static str),
    /// `l4proto . dport` is in this set.
    PortInSet(&'static str),
    /// The destination is a local address of this node, not loopback
    /// (node ports).
    LocalDest,
    /// Source and destination are the same endpoint (after DNAT): a pod
    /// reached itself through a Service.
    Hairpin,
}

/// Where a balancing rule sends a connection.
struct Target {
    ip: IpAddr,
    port: u16,
    affinity: Option<String>,
}

/// What a rule does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Jump and come back.
    Jump(String),
    /// Go and do not come back.
    Goto(String),
    /// Return to the caller.
    Return,
    /// Drop.
    Drop,
    /// Reject (ICMP unreachable / TCP reset).
    Reject,
    /// Set the masquerade bit.
    MarkMasq,
    /// Clear the masquerade bit (so it is not seen again).
    UnmarkMasq,
    /// DNAT to a random endpoint of a group: element `random % modulus`
    /// of its pick map.
    DnatPick {
        /// The Service port's protocol.
        proto: Proto,
        /// The group's pick map.
        map: String,
        /// How many endpoints the group has.
        modulus: u32,
    },
    /// Source NAT to the outgoing interface's address, random ports.
    Masquerade,
    /// DNAT to an endpoint; with an affinity set, the client's address is
    /// added to (or refreshed in) it first.
    Dnat {
        /// The Service port's protocol.
        proto: Proto,
        /// The endpoint.
        ip: IpAddr,
        /// Its port.
        port: u16,
        /// The endpoint's affinity set (sessionAffinity: ClientIP).
        affinity: Option<String>,
    },
    /// Dispatch through the service map.
    DispatchServices,
    /// Dispatch through the node-port map (local destinations only).
    DispatchNodePorts,
    /// Dispatch new connections to Services without endpoints.
    DispatchNoEndpoints,
}

/// One rule: all matches, then the action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Conditions.
    pub matches: Vec<Match>,
    /// Action.
    pub action: Action,
}

impl Rule {
    fn new(action: Action) -> Self {
        Rule {
            matches: Vec::new(),
            action,
        }
    }

    fn when(matches: Vec<Match>, action: Action) -> Self {
        Rule { matches, action }
    }
}

/// A chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Name.
    pub name: String,
    /// Set for base chains.
    pub hook: Option<Hook>,
    /// Rules in order.
    pub rules: Vec<Rule>,
}

/// One family's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    /// The family.
    pub family: Family,
    /// The table's name: `realip`, or `realip-NN` when a large plan is
    /// split across tables ([`shard`]).
    pub table: String,
    /// Whether this table holds the postrouting half (masquerade, hairpin)
    /// that all of a family's tables share.
    pub postrouting: bool,
    /// Verdict maps.
    pub maps: Vec<Map>,
    /// Each balancing group's endpoints (`pick-<chain>` maps).
    pub picks: Vec<PickMap>,
    /// Affinity sets.
    pub sets: Vec<AffinitySet>,
    /// Sets of keys the masquerade rules test: `cluster-ips` (cluster IP .
    /// protocol . port of every Service balanced cluster-wide; traffic to
    /// them from outside the pod network is masqueraded),
    /// `cluster-external` (external and LB IPs of Cluster-policy Services)
    /// and `cluster-nodeports` (their node ports): external traffic to
    /// those is masqueraded.
    pub key_sets: Vec<KeySet>,
    /// Every endpoint address: the `hairpin` set holds `ip . ip` for each.
    pub hairpin: Vec<IpAddr>,
    /// Chains: base chains first, then the rest by name.
    pub chains: Vec<Chain>,
}

/// What a healthCheckNodePort server must answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// The Service.
    pub service: crate::model::ServiceKey,
    /// The port to listen on.
    pub port: u16,
    /// Ready endpoints on this node.
    pub local_endpoints: usize,
}

/// Why there is no plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The node is not among the objects.
    #[error("node {0:?} is not among the objects; pass its Node object too")]
    UnknownNode(String),
}

/// kube-proxy's chain-name hash: the first 8 characters of
/// base32(sha256(text)).
pub fn hash8(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    BASE32.encode(&digest)[..8].to_string()
}

fn port_id(svc: &Service, sp: &ServicePort) -> String {
    let port = if sp.name.is_empty() {
        sp.port.to_string()
    } else {
        sp.name.clone()
    };
    format!(
        "{}/{}/{}/{}",
        svc.key.namespace,
        svc.key.name,
        sp.proto.as_str(),
        port
    )
}

/// A readable, unique chain name: the hash keeps it unique, the rest
/// (restricted to characters nft takes in an identifier) keeps it readable.
fn chain_name(prefix: &str, id: &str) -> String {
    let readable: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("{prefix}-{}-{readable}", hash8(id))
}

/// The endpoints traffic may go to: ready ones, or, when none is ready,
/// serving ones that are terminating (ProxyTerminatingEndpoints).
fn usable<'a>(eps: impl Iterator<Item = &'a Endpoint> + Clone) -> Vec<&'a Endpoint> {
    let ready: Vec<_> = eps.clone().filter(|e| e.ready).collect();
    if !ready.is_empty() {
        return ready;
    }
    eps.filter(|e| e.serving && e.terminating).collect()
}

/// Health checks this node must serve.
pub fn health_checks(model: &Model, node: &str) -> Vec<HealthCheck> {
    let mut out = Vec::new();
    for svc in model.services.values() {
        let Some(port) = svc.health_check_node_port else {
            continue;
        };
        let local = model
            .endpoints
            .get(&svc.key)
            .map(|eps| {
                eps.iter()
                    .filter(|e| e.ready && e.node.as_deref() == Some(node))
                    .count()
            })
            .unwrap_or(0);
        out.push(HealthCheck {
            service: svc.key.clone(),
            port,
            local_endpoints: local,
        });
    }
    out
}

/// The desired rulesets (IPv4 then IPv6) for `node`.
pub fn plan(model: &Model, node: &str) -> Result<Vec<Ruleset>, PlanError> {
    let this = model
        .nodes
        .get(node)
        .ok_or_else(|| PlanError::UnknownNode(node.to_string()))?;
    Ok([Family::Ip, Family::Ip6]
        .into_iter()
        .flat_map(|f| shard(plan_family(model, this, f)))
        .collect())
}

fn plan_family(model: &Model, this: &crate::model::Node, fam: Family) -> Ruleset {
    let pod_cidrs: Vec<Cidr> = this
        .pod_cidrs
        .iter()
        .copied()
        .filter(|c| fam.has(c.network()))
        .collect();
    let mut service_ips = Vec::new();
    let mut node_ports = Vec::new();
    let mut no_endpoints = Vec::new();
    let mut sets = Vec::new();
    let mut chains: Vec<Chain> = Vec::new();
    // Affinity sets already made (a pod can back the same port twice, as
    // cluster and local target), and every endpoint address (hairpin).
    let mut affinity_sets: BTreeSet<String> = BTreeSet::new();
    let mut hairpin: BTreeSet<IpAddr> = BTreeSet::new();
    let mut picks: Vec<PickMap> = Vec::new();
    let mut cluster_keys: Vec<Key> = Vec::new();
    let mut cluster_external: Vec<Key> = Vec::new();
    let mut cluster_nodeports: Vec<Key> = Vec::new();

    for svc in model.services.values() {
        let cluster_ips: Vec<IpAddr> = svc
            .cluster_ips
            .iter()
            .copied()
            .filter(|i| fam.has(*i))
            .collect();
        if cluster_ips.is_empty() {
            continue;
        }
        let external: Vec<IpAddr> = svc
            .external_ips
            .iter()
            .chain(&svc.lb_ips)
            .copied()
            .filter(|i| fam.has(*i))
            .collect();
        let all_eps: Vec<&Endpoint> = model
            .endpoints
            .get(&svc.key)
            .map(|v| v.iter().filter(|e| fam.has(e.ip)).collect())
            .unwrap_or_default();
        for sp in &svc.ports {
            let id = port_id(svc, sp);
            let with_port: Vec<&Endpoint> = all_eps
                .iter()
                .copied()
                .filter(|e| e.port_for(sp).is_some())
                .collect();
            let cluster = usable(with_port.iter().copied());
            let local = usable(
                with_port
                    .iter()
                    .copied()
                    .filter(|e| e.node.as_deref() == Some(this.name.as_str())),
            );
            let node_port = match svc.kind {
                ServiceType::ClusterIp => None,
                _ => sp.node_port,
            };
            if cluster.is_empty() {
                // No endpoint anywhere: reject, so clients fail fast.
                for ip in cluster_ips.iter().chain(&external) {
                    no_endpoints.push((Key::Dest(*ip, sp.proto, sp.port), Verdict::Reject));
                }
                if let Some(np) = node_port {
                    no_endpoints.push((Key::Port(sp.proto, np), Verdict::Reject));
                }
                continue;
            }
            // Endpoints are DNAT rules in the balancing chains, not chains
            // of their own: a chain per endpoint is a netlink message and
            // a kernel object per endpoint, the bulk of a full sync at
            // scale. Hairpin traffic is caught in postrouting instead
            // (the `hairpin` set).
            let mut target = |ep: &Endpoint| -> Target {
                let port = ep.port_for(sp).unwrap_or(sp.port);
                hairpin.insert(ep.ip);
                let affinity = svc.affinity_timeout.map(|t| {
                    let name = format!(
                        "affinity-{}",
                        &chain_name("endpoint", &format!("{id}__{}/{port}", ep.ip))
                            ["endpoint-".len()..]
                    );
                    if affinity_sets.insert(name.clone()) {
                        sets.push(AffinitySet {
                            name: name.clone(),
                            timeout: t,
                        });
                    }
                    name
                });
                Target {
                    ip: ep.ip,
                    port,
                    affinity,
                }
            };
            let cluster_targets: Vec<Target> = cluster.iter().map(|e| target(e)).collect();
            let local_targets: Vec<Target> = if svc.internal_local || svc.external_local {
                local.iter().map(|e| target(e)).collect()
            } else {
                Vec::new()
            };
            let dnat = |t: &Target| Action::Dnat {
                proto: sp.proto,
                ip: t.ip,
                port: t.port,
                affinity: t.affinity.clone(),
            };
            let balance = |eps: &[Target], picks: &mut Vec<PickMap>, chain: &str| -> Vec<Rule> {
                let mut rules = Vec::new();
                let n = eps.len();
                if svc.affinity_timeout.is_none() && n >= 2 {
                    // One rule: a random index into the group's own map,
                    // whose value is the DNAT target. One map per group
                    // (the kernel checks a shared map's every element per
                    // binding), named after the chain.
                    // Short: the kernel finds sets by a linear scan of
                    // full-name compares (`pick-HASH-c`, `-l` for local).
                    let map = format!(
                        "pick-{}-{}",
                        chain.split('-').nth(1).unwrap_or(chain),
                        if chain.starts_with("local-") {
                            "l"
                        } else {
                            "c"
                        }
                    );
                    picks.push(PickMap {
                        name: map.clone(),
                        endpoints: eps.iter().map(|t| (t.ip, t.port)).collect(),
                        size: pick_size(n),
                    });
                    rules.push(Rule::new(Action::DnatPick {
                        proto: sp.proto,
                        map,
                        modulus: n as u32,
                    }));
                    return rules;
                }
                // A client seen recently goes back to its endpoint.
                for t in eps {
                    if let Some(set) = &t.affinity {
                        rules.push(Rule::when(vec![Match::SaddrInSet(set.clone())], dnat(t)));
                    }
                }
                // With affinity each endpoint needs its own rule (to add
                // the client to its set): equal odds by a cascade,
                // endpoint i taken with probability 1/(n-i) of what is
                // left, as kube-proxy's iptables mode does with
                // `statistic --mode random`.
                for (i, t) in eps.iter().enumerate() {
                    if i + 1 < n {
                        rules.push(Rule::when(vec![Match::RandomZero((n - i) as u32)], dnat(t)));
                    } else {
                        rules.push(Rule::new(dnat(t)));
                    }
                }
                rules
            };
            // Cluster-wide balancing.
            let svc_chain = chain_name("service", &id);
            let mut rules = Vec::new();
            // ClusterIP traffic from outside the pod network is masqueraded
            // (one rule for all Services, in `services`, over the
            // `cluster-ips` set) so replies come back through this node.
            if !svc.internal_local {
                for ip in &cluster_ips {
                    cluster_keys.push(Key::Dest(*ip, sp.proto, sp.port));
                }
            }
            rules.extend(balance(&cluster_targets, &mut picks, &svc_chain));
            chains.push(Chain {
                name: svc_chain.clone(),
                hook: None,
                rules,
            });
            // Node-local balancing, for the Local policies.
            let local_chain = chain_name("local", &id);
            let uses_local = svc.internal_local || svc.external_local;
            let local_target = if local_targets.is_empty() {
                Verdict::Drop
            } else {
                if uses_local {
                    chains.push(Chain {
                        name: local_chain.clone(),
                        hook: None,
                        rules: balance(&local_targets, &mut picks, &local_chain),
                    });
                }
                Verdict::Goto(local_chain.clone())
            };
            // Traffic to the cluster IPs.
            for ip in &cluster_ips {
                let v = if svc.internal_local {
                    local_target.clone()
                } else {
                    Verdict::Goto(svc_chain.clone())
                };
                service_ips.push((Key::Dest(*ip, sp.proto, sp.port), v));
            }
            // External traffic: node ports, external IPs, LB IPs.
            if node_port.is_none() && external.is_empty() {
                continue;
            }
            if !svc.external_local {
                // Cluster policy: masquerade, so a pod on another node
                // replies through this one (and sees this node's IP). The
                // marking is one rule per table over the cluster-external
                // and cluster-nodeports sets; dispatch goes straight to
                // the Service's chain.
                for ip in &external {
                    let key = Key::Dest(*ip, sp.proto, sp.port);
                    cluster_external.push(key.clone());
                    service_ips.push((key, Verdict::Goto(svc_chain.clone())));
                }
                if let Some(np) = node_port {
                    let key = Key::Port(sp.proto, np);
                    cluster_nodeports.push(key.clone());
                    node_ports.push((key, Verdict::Goto(svc_chain.clone())));
                }
                continue;
            }
            let ext_chain = chain_name("external", &id);
            let mut rules = Vec::new();
            {
                if !pod_cidrs.is_empty() {
                    // Pods reaching an LB IP go anywhere, unmasqueraded.
                    rules.push(Rule::when(
                        vec![Match::SaddrIn(pod_cidrs.clone())],
                        Action::Goto(svc_chain.clone()),
                    ));
                }
                // The node itself has no client address to keep.
                rules.push(Rule::when(
                    vec![Match::FibSaddrLocal],
                    Action::Jump("mark-for-masquerade".into()),
                ));
                rules.push(Rule::when(
                    vec![Match::FibSaddrLocal],
                    Action::Goto(svc_chain.clone()),
                ));
                rules.push(match &local_target {
                    Verdict::Goto(c) => Rule::new(Action::Goto(c.clone())),
                    _ => Rule::new(Action::Drop),
                });
            }
            chains.push(Chain {
                name: ext_chain.clone(),
                hook: None,
                rules,
            });
            for ip in &external {
                service_ips.push((
                    Key::Dest(*ip, sp.proto, sp.port),
                    Verdict::Goto(ext_chain.clone()),
                ));
            }
            if let Some(np) = node_port {
                node_ports.push((Key::Port(sp.proto, np), Verdict::Goto(ext_chain.clone())));
            }
        }
    }

    let (no_ep_dest, no_ep_ports): (Vec<_>, Vec<_>) = no_endpoints
        .into_iter()
        .partition(|(k, _)| matches!(k, Key::Dest(..)));
    let mut maps = vec![
        Map {
            name: "service-ips",
            with_addr: true,
            elements: service_ips,
        },
        Map {
            name: "service-nodeports",
            with_addr: false,
            elements: node_ports,
        },
        Map {
            name: "no-endpoint-services",
            with_addr: true,
            elements: no_ep_dest,
        },
        Map {
            name: "no-endpoint-nodeports",
            with_addr: false,
            elements: no_ep_ports,
        },
    ];
    for m in &mut maps {
        m.elements.sort();
        m.elements.dedup();
    }
    sets.sort_by(|a, b| a.name.cmp(&b.name));
    sets.dedup();

    let base = |name: &str, kind, hook, priority, rules| Chain {
        name: name.to_string(),
        hook: Some(Hook {
            kind,
            hook,
            priority,
        }),
        rules,
    };
    let mut all = vec![
        base(
            "nat-prerouting",
            "nat",
            "prerouting",
            "-100",
            vec![Rule::new(Action::Jump("services".into()))],
        ),
        base(
            "nat-output",
            "nat",
            "output",
            "-100",
            vec![Rule::new(Action::Jump("services".into()))],
        ),
        base(
            "nat-postrouting",
            "nat",
            "postrouting",
            "100",
            vec![
                // A pod that reached itself through a Service must not see
                // its own address as the source: its reply would skip the
                // un-DNAT.
                Rule::when(
                    vec![Match::Hairpin],
                    Action::Jump("mark-for-masquerade".into()),
                ),
                Rule::new(Action::Jump("masquerading".into())),
            ],
        ),
        base(
            "filter-input",
            "filter",
            "input",
            "-110",
            vec![Rule::when(
                vec![Match::CtNew],
                Action::Jump("endpoints-check".into()),
            )],
        ),
        base(
            "filter-forward",
            "filter",
            "forward",
            "-110",
            vec![
                Rule::when(vec![Match::CtInvalid], Action::Drop),
                Rule::when(vec![Match::CtNew], Action::Jump("endpoints-check".into())),
            ],
        ),
        base(
            "filter-output",
            "filter",
            "output",
            "-110",
            vec![Rule::when(
                vec![Match::CtNew],
                Action::Jump("endpoints-check".into()),
            )],
        ),
    ];
    let mut rest = vec![
        Chain {
            name: "services".into(),
            hook: None,
            rules: {
                let mut r = Vec::new();
                if !pod_cidrs.is_empty() {
                    r.push(Rule::when(
                        vec![
                            Match::SaddrNotIn(pod_cidrs.clone()),
                            Match::DestInSet("cluster-ips"),
                        ],
                        Action::Jump("mark-for-masquerade".into()),
                    ));
                }
                r.push(Rule::when(
                    vec![Match::DestInSet("cluster-external")],
                    Action::Jump("mark-for-masquerade".into()),
                ));
                r.push(Rule::new(Action::DispatchServices));
                r.push(Rule::when(
                    vec![Match::LocalDest],
                    Action::Jump("nodeports".into()),
                ));
                r
            },
        },
        Chain {
            name: "nodeports".into(),
            hook: None,
            rules: vec![
                Rule::when(
                    vec![Match::PortInSet("cluster-nodeports")],
                    Action::Jump("mark-for-masquerade".into()),
                ),
                Rule::new(Action::DispatchNodePorts),
            ],
        },
        Chain {
            name: "endpoints-check".into(),
            hook: None,
            rules: vec![Rule::new(Action::DispatchNoEndpoints)],
        },
        Chain {
            name: "reject-chain".into(),
            hook: None,
            rules: vec![Rule::new(Action::Reject)],
        },
        Chain {
            name: "mark-for-masquerade".into(),
            hook: None,
            rules: vec![Rule::new(Action::MarkMasq)],
        },
        Chain {
            name: "masquerading".into(),
            hook: None,
            rules: vec![
                Rule::when(vec![Match::MarkClear], Action::Return),
                Rule::new(Action::UnmarkMasq),
                Rule::new(Action::Masquerade),
            ],
        },
    ];
    rest.extend(chains);
    rest.sort_by(|a, b| a.name.cmp(&b.name));
    let mut seen = BTreeSet::new();
    rest.retain(|c| seen.insert(c.name.clone()));
    all.extend(rest);
    picks.sort_by(|a, b| a.name.cmp(&b.name));
    let key_sets = [
        ("cluster-ips", true, cluster_keys),
        ("cluster-external", true, cluster_external),
        ("cluster-nodeports", false, cluster_nodeports),
    ]
    .into_iter()
    .map(|(name, with_addr, mut keys)| {
        keys.sort();
        keys.dedup();
        KeySet {
            name,
            with_addr,
            keys,
        }
    })
    .collect();
    Ruleset {
        family: fam,
        table: TABLE.to_string(),
        postrouting: true,
        maps,
        picks,
        sets,
        key_sets,
        hairpin: hairpin.into_iter().collect(),
        chains: all,
    }
}

/// Load-balanced Service ports per table before a plan is split.
pub const SHARD_SIZE: usize = 1000;
/// Most tables a family's plan is split into.
pub const MAX_SHARDS: usize = 64;

/// Every table name realip may use, so a full sync can remove what an
/// earlier run left whatever its split was.
pub fn table_names() -> impl Iterator<Item = String> {
    std::iter::once(TABLE.to_string()).chain((0..MAX_SHARDS).map(shard_name))
}

fn shard_name(i: usize) -> String {
    format!("{TABLE}-{i:02}")
}

/// FNV-1a: a stable hash for spreading Services over tables.
fn fnv(text: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in text.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h
}

/// The chains every table of a family has (dispatch, reject, marking);
/// the first table alone has the postrouting ones and the filter-hook ones
/// (every verdict that names no chain, DROP and REJECT, lives there).
fn is_common(c: &Chain) -> bool {
    c.hook.is_some()
        || matches!(
            c.name.as_str(),
            "services"
                | "nodeports"
                | "endpoints-check"
                | "reject-chain"
                | "mark-for-masquerade"
                | "masquerading"
        )
}

fn is_postrouting(c: &Chain) -> bool {
    matches!(
        c.name.as_str(),
        "nat-postrouting"
            | "masquerading"
            | "filter-input"
            | "filter-forward"
            | "filter-output"
            | "endpoints-check"
    )
}

/// Split a large plan across tables, Services spread by a hash of their
/// chain id. Why: the kernel validates a whole table on every commit that
/// adds a NAT rule or a jump, so one table of 10k Services makes every
/// incremental sync cost ~100 ms; a table per thousand Services keeps it
/// to the tables that changed. Each table dispatches through its own maps
/// (a new connection does one map lookup per table); masquerading and the
/// hairpin set stay in the first. A plan with up to [`SHARD_SIZE`]
/// load-balanced ports stays one table, `realip`.
pub fn shard(rs: Ruleset) -> Vec<Ruleset> {
    let groups = rs
        .chains
        .iter()
        .filter(|c| c.name.starts_with("service-"))
        .count();
    let k = groups
        .div_ceil(SHARD_SIZE)
        .next_power_of_two()
        .min(MAX_SHARDS);
    if k <= 1 {
        return vec![rs];
    }
    // "service-HASH8-..." / "external-HASH8-..." / "local-HASH8-...": the
    // id hash picks the table, so a Service port's chains stay together.
    let shard_of = |chain: &str| -> usize {
        let id = chain.split('-').nth(1).unwrap_or(chain);
        fnv(id) as usize % k
    };
    let mut out: Vec<Ruleset> = (0..k)
        .map(|i| Ruleset {
            family: rs.family,
            table: shard_name(i),
            postrouting: i == 0,
            maps: rs
                .maps
                .iter()
                .map(|m| Map {
                    name: m.name,
                    with_addr: m.with_addr,
                    elements: Vec::new(),
                })
                .collect(),
            picks: Vec::new(),
            sets: Vec::new(),
            key_sets: rs
                .key_sets
                .iter()
                .map(|k| KeySet {
                    name: k.name,
                    with_addr: k.with_addr,
                    keys: Vec::new(),
                })
                .collect(),
            hairpin: if i == 0 {
                rs.hairpin.clone()
            } else {
                Vec::new()
            },
            chains: Vec::new(),
        })
        .collect();
    // Everything is moved into its table, not copied: a split plan is
    // tens of thousands of chains.
    let Ruleset {
        chains,
        sets,
        key_sets,
        picks,
        maps,
        ..
    } = rs;
    // A key goes where its Service's dispatch goes.
    let dispatch: HashMap<Key, usize> = maps
        .iter()
        .filter(|m| m.name == "service-ips" || m.name == "service-nodeports")
        .flat_map(|m| m.elements.iter())
        .filter_map(|(k, v)| match v {
            Verdict::Goto(c) => Some((k.clone(), shard_of(c.as_str()))),
            _ => None,
        })
        .collect();
    let mut set_shard: HashMap<String, usize> = HashMap::new();
    for c in chains {
        if is_common(&c) {
            for (i, t) in out.iter_mut().enumerate() {
                if i == 0 || !is_postrouting(&c) {
                    t.chains.push(c.clone());
                }
            }
            continue;
        }
        let i = shard_of(&c.name);
        for r in &c.rules {
            for m in &r.matches {
                if let Match::SaddrInSet(name) = m {
                    set_shard.insert(name.clone(), i);
                }
            }
            if let Action::Dnat {
                affinity: Some(name),
                ..
            } = &r.action
            {
                set_shard.insert(name.clone(), i);
            }
        }
        out[i].chains.push(c);
    }
    for s in sets {
        let i = set_shard.get(s.name.as_str()).copied().unwrap_or(0);
        out[i].sets.push(s);
    }
    for (si, ks) in key_sets.into_iter().enumerate() {
        for key in ks.keys {
            let i = dispatch.get(&key).copied().unwrap_or(0);
            out[i].key_sets[si].keys.push(key);
        }
    }
    for p in picks {
        // `pick-HASH-c`: the same hash as its chain.
        let i = shard_of(&p.name);
        out[i].picks.push(p);
    }
    for (mi, m) in maps.into_iter().enumerate() {
        for (key, v) in m.elements {
            let i = match &v {
                Verdict::Goto(c) => shard_of(c),
                // No chain to follow: the first table, so the others need
                // no filter-hook chains (a new connection pays for each
                // table's hooks).
                _ => 0,
            };
            out[i].maps[mi].elements.push((key, v));
        }
    }
    out
}

// ----------------------------------------------------------- rendering

fn cidr_list(c: &[Cidr]) -> String {
    if c.len() == 1 {
        c[0].to_string()
    } else {
        format!(
            "{{ {} }}",
            c.iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

impl Ruleset {
    fn fmt_match(&self, m: &Match) -> String {
        let f = self.family.nft();
        match m {
            Match::SaddrIn(c) => format!("{f} saddr {}", cidr_list(c)),
            Match::SaddrNotIn(c) => format!("{f} saddr != {}", cidr_list(c)),
            Match::SaddrEq(ip) => format!("{f} saddr {ip}"),
            Match::FibSaddrLocal => "fib saddr type local".into(),
            Match::SaddrInSet(s) => format!("{f} saddr @{s}"),
            Match::CtNew => "ct state new".into(),
            Match::CtInvalid => "ct state invalid".into(),
            Match::MarkClear => format!("meta mark & 0x{MASQ_MARK:x} == 0"),
            Match::RandomZero(n) => format!("numgen random mod {n} == 0"),
            Match::DestInSet(set) => format!("{f} daddr . meta l4proto . th dport @{set}"),
            Match::PortInSet(set) => format!("meta l4proto . th dport @{set}"),
            Match::LocalDest => format!(
                "fib daddr type local {f} daddr != {}",
                self.family.loopback()
            ),
            Match::Hairpin => format!("{f} saddr . {f} daddr @hairpin"),
        }
    }

    fn fmt_action(&self, a: &Action) -> String {
        let f = self.family.nft();
        match a {
            Action::Jump(c) => format!("jump {c}"),
            Action::Goto(c) => format!("goto {c}"),
            Action::Return => "return".into(),
            Action::Drop => "drop".into(),
            Action::Reject => "reject".into(),
            Action::MarkMasq => format!("meta mark set meta mark | 0x{MASQ_MARK:x}"),
            Action::UnmarkMasq => format!("meta mark set meta mark ^ 0x{MASQ_MARK:x}"),
            Action::Masquerade => "masquerade fully-random".into(),
            Action::Dnat {
                proto,
                ip,
                port,
                affinity,
            } => {
                let update = affinity
                    .as_ref()
                    .map(|s| format!("update @{s} {{ {f} saddr }} "))
                    .unwrap_or_default();
                let to = match ip {
                    IpAddr::V4(v4) => format!("{v4}:{port}"),
                    IpAddr::V6(v6) => format!("[{v6}]:{port}"),
                };
                format!("meta l4proto {} {update}dnat to {to}", proto.as_str())
            }
            Action::DnatPick {
                proto,
                map,
                modulus,
            } => format!(
                "meta l4proto {} dnat {f} to numgen random mod {modulus} map @{map}",
                proto.as_str()
            ),
            Action::DispatchServices => {
                format!("{f} daddr . meta l4proto . th dport vmap @service-ips")
            }
            Action::DispatchNodePorts => {
                "meta l4proto . th dport vmap @service-nodeports".to_string()
            }
            Action::DispatchNoEndpoints => format!(
                "{f} daddr . meta l4proto . th dport vmap @no-endpoint-services\n\t\tfib daddr type local {f} daddr != {} meta l4proto . th dport vmap @no-endpoint-nodeports",
                self.family.loopback()
            ),
        }
    }
}

impl fmt::Display for Ruleset {
    /// The ruleset in `nft -f` syntax: what golden tests pin down and what
    /// a person reads to check it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "table {} {} {{", self.family.nft(), self.table)?;
        for m in &self.maps {
            writeln!(f, "\tmap {} {{", m.name)?;
            if m.with_addr {
                writeln!(
                    f,
                    "\t\ttype {} . inet_proto . inet_service : verdict",
                    self.family.addr_type()
                )?;
            } else {
                writeln!(f, "\t\ttype inet_proto . inet_service : verdict")?;
            }
            if !m.elements.is_empty() {
                writeln!(f, "\t\telements = {{")?;
                for (k, v) in &m.elements {
                    writeln!(f, "\t\t\t{k} : {v},")?;
                }
                writeln!(f, "\t\t}}")?;
            }
            writeln!(f, "\t}}")?;
        }
        for p in &self.picks {
            writeln!(f, "\tmap {} {{", p.name)?;
            // `typeof`: the key is what numgen yields, a plain integer
            // that has no `type` name nft accepts.
            writeln!(
                f,
                "\t\ttypeof numgen random mod 1 : {} daddr . tcp dport",
                self.family.nft()
            )?;
            writeln!(f, "\t\tsize {}", p.size)?;
            writeln!(f, "\t\telements = {{")?;
            for (i, (ip, port)) in p.endpoints.iter().enumerate() {
                writeln!(f, "\t\t\t{i} : {ip} . {port},")?;
            }
            writeln!(f, "\t\t}}")?;
            writeln!(f, "\t}}")?;
        }
        for s in &self.sets {
            writeln!(f, "\tset {} {{", s.name)?;
            writeln!(f, "\t\ttype {}", self.family.addr_type())?;
            writeln!(f, "\t\tflags dynamic,timeout")?;
            writeln!(f, "\t\ttimeout {}s", s.timeout)?;
            writeln!(f, "\t}}")?;
        }
        let t = self.family.addr_type();
        if self.postrouting {
            writeln!(f, "\tset hairpin {{")?;
            writeln!(f, "\t\ttype {t} . {t}")?;
            if !self.hairpin.is_empty() {
                writeln!(f, "\t\telements = {{")?;
                for ip in &self.hairpin {
                    writeln!(f, "\t\t\t{ip} . {ip},")?;
                }
                writeln!(f, "\t\t}}")?;
            }
            writeln!(f, "\t}}")?;
        }
        for ks in &self.key_sets {
            writeln!(f, "\tset {} {{", ks.name)?;
            if ks.with_addr {
                writeln!(f, "\t\ttype {t} . inet_proto . inet_service")?;
            } else {
                writeln!(f, "\t\ttype inet_proto . inet_service")?;
            }
            if !ks.keys.is_empty() {
                writeln!(f, "\t\telements = {{")?;
                for k in &ks.keys {
                    writeln!(f, "\t\t\t{k},")?;
                }
                writeln!(f, "\t\t}}")?;
            }
            writeln!(f, "\t}}")?;
        }
        for c in &self.chains {
            writeln!(f, "\tchain {} {{", c.name)?;
            if let Some(h) = c.hook {
                writeln!(
                    f,
                    "\t\ttype {} hook {} priority {}; policy accept;",
                    h.kind, h.hook, h.priority
                )?;
            }
            for r in &c.rules {
                let mut parts: Vec<String> = r.matches.iter().map(|m| self.fmt_match(m)).collect();
                parts.push(self.fmt_action(&r.action));
                writeln!(f, "\t\t{}", parts.join(" "))?;
            }
            writeln!(f, "\t}}")?;
        }
        writeln!(f, "}}")
    }
}
