//! The plan's vocabulary: one family's table as a plain value (maps,
//! sets, chains of rules), which `kernel` encodes and the
//! renderer prints.

use std::net::IpAddr;

use realip_core::Cidr;

use super::names::{ChainName, PickMapName};
use crate::model::Proto;

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
    pub(crate) fn of(ip: IpAddr) -> Family {
        if ip.is_ipv4() {
            Family::Ip
        } else {
            Family::Ip6
        }
    }

    pub(crate) fn has(self, ip: IpAddr) -> bool {
        Family::of(ip) == self
    }

    /// `ip` or `ip6`.
    pub fn nft(self) -> &'static str {
        match self {
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
        }
    }

    pub(crate) fn addr_type(self) -> &'static str {
        match self {
            Family::Ip => "ipv4_addr",
            Family::Ip6 => "ipv6_addr",
        }
    }

    pub(crate) fn loopback(self) -> &'static str {
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
    Goto(ChainName),
    /// Drop silently (Local policy without a local endpoint: the LB's
    /// health check lags, so a reject would hurt more than help).
    Drop,
    /// Reject (no endpoint at all).
    Reject,
}

/// A verdict-map key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    /// address . protocol . port
    Dest(IpAddr, Proto, u16),
    /// protocol . port (node ports)
    Port(Proto, u16),
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
    /// Named after the chain that uses it.
    pub name: PickMapName,
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

/// What a rule does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Jump and come back.
    Jump(ChainName),
    /// Go and do not come back.
    Goto(ChainName),
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
        map: PickMapName,
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
    /// A rule that always acts.
    pub(crate) fn new(action: Action) -> Self {
        Rule {
            matches: Vec::new(),
            action,
        }
    }

    /// A rule that acts when every match holds.
    pub(crate) fn when(matches: Vec<Match>, action: Action) -> Self {
        Rule { matches, action }
    }
}

/// A chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Name.
    pub name: ChainName,
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
    /// split across tables (`plan::shard`).
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
