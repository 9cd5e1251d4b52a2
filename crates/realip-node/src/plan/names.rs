//! Names in the table: chains as a typed [`ChainName`], and the names of
//! the sets and maps a Service port owns, built from kube-proxy's
//! `chainNameBase` (a hash of the port's name, then the name made safe
//! for nft). Nothing here is split apart again: what a name is made of
//! is kept in its type.

use std::cmp::Ordering;
use std::fmt;
use std::net::IpAddr;

use data_encoding::BASE32;
use sha2::{Digest, Sha256};

use crate::model::{Service, ServicePort};

/// The verdict map of cluster, external and LB IPs (kube-proxy's
/// `serviceIPsMap`).
pub const SERVICE_IPS: &str = "service-ips";
/// The verdict map of node ports (`serviceNodePortsMap`).
pub const SERVICE_NODEPORTS: &str = "service-nodeports";
/// Addresses of Service ports without endpoints (`noEndpointServicesMap`).
pub const NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
/// Node ports without endpoints (`noEndpointNodePortsMap`).
pub const NO_ENDPOINT_NODEPORTS: &str = "no-endpoint-nodeports";
/// Cluster IP . protocol . port of every Service port balanced
/// cluster-wide: traffic to them from outside the pod network is
/// masqueraded.
pub const CLUSTER_IPS: &str = "cluster-ips";
/// External and LB IPs of Cluster-policy Service ports: traffic to them
/// is masqueraded.
pub const CLUSTER_EXTERNAL: &str = "cluster-external";
/// Node ports of Cluster-policy Service ports: likewise.
pub const CLUSTER_NODEPORTS: &str = "cluster-nodeports";
/// Endpoint address pairs (`ip . ip`): a pod that reached itself.
pub const HAIRPIN: &str = "hairpin";

/// kube-proxy's chain-name hash: the first 8 characters of
/// base32(sha256(text)).
pub fn hash8(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    BASE32.encode(&digest)[..8].to_string()
}

/// kube-proxy's `svcPortNameString`: `namespace/name/protocol/port`, the
/// port by name when it has one.
pub(crate) fn service_port_name(svc: &Service, sp: &ServicePort) -> String {
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

/// kube-proxy's `chainNameBase`: `HASH-readable`, where the hash keeps
/// the name unique and the readable part (the text with every character
/// nft does not take in an identifier turned into `-`) keeps it readable.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChainNameBase {
    /// `HASH-readable`; the hash is the first 8 bytes.
    text: String,
}

impl ChainNameBase {
    /// The base of the names made for `text` (a Service port's name, or
    /// a port's name and an endpoint for affinity sets).
    pub fn of(text: &str) -> Self {
        let mut out = hash8(text);
        out.push('-');
        out.extend(text.chars().map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        }));
        ChainNameBase { text: out }
    }

    /// The 8-character hash: what picks a Service port's table when a
    /// plan is split (`plan::shard`).
    pub fn hash(&self) -> &str {
        &self.text[..8]
    }

    /// `HASH-readable`.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for ChainNameBase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The chains hooked into netfilter, named `${type}-${hook}` as
/// kube-proxy names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BaseChain {
    /// `nat-prerouting`: traffic arriving from outside, into `services`.
    NatPrerouting,
    /// `nat-output`: traffic from this node, into `services`.
    NatOutput,
    /// `nat-postrouting`: hairpin marking, then `masquerading`.
    NatPostrouting,
    /// `filter-input`: new connections into `endpoints-check`.
    FilterInput,
    /// `filter-forward`: invalid packets dropped, new connections into
    /// `endpoints-check`.
    FilterForward,
    /// `filter-output`: new connections into `endpoints-check`.
    FilterOutput,
}

impl BaseChain {
    /// Every base chain, in the order the table lists them.
    pub const ALL: [BaseChain; 6] = [
        BaseChain::NatPrerouting,
        BaseChain::NatOutput,
        BaseChain::NatPostrouting,
        BaseChain::FilterInput,
        BaseChain::FilterForward,
        BaseChain::FilterOutput,
    ];

    /// The chain's name.
    pub fn as_str(self) -> &'static str {
        match self {
            BaseChain::NatPrerouting => "nat-prerouting",
            BaseChain::NatOutput => "nat-output",
            BaseChain::NatPostrouting => "nat-postrouting",
            BaseChain::FilterInput => "filter-input",
            BaseChain::FilterForward => "filter-forward",
            BaseChain::FilterOutput => "filter-output",
        }
    }
}

/// A chain's name. The chains of one Service port carry its
/// [`ChainNameBase`]; the rest are fixed, and named as kube-proxy names
/// them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ChainName {
    /// A chain hooked into netfilter.
    Base(BaseChain),
    /// `services`: dispatch through `service-ips`, and to `nodeports` for
    /// local destinations.
    Services,
    /// `nodeports`: dispatch through `service-nodeports`.
    NodePorts,
    /// `endpoints-check`: new connections to Service ports without
    /// endpoints, through the `no-endpoint-*` maps.
    EndpointsCheck,
    /// `reject-chain`: a verdict map cannot hold `reject`, a chain can.
    Reject,
    /// `mark-for-masquerade`: sets the masquerade bit.
    MarkForMasquerade,
    /// `masquerading`: masquerades what carries the bit.
    Masquerading,
    /// `service-BASE`, kube-proxy's cluster policy chain: balances over
    /// every usable endpoint of the port.
    ClusterPolicy(ChainNameBase),
    /// `local-BASE`, kube-proxy's local policy chain: balances over this
    /// node's endpoints only (the Local traffic policies).
    LocalPolicy(ChainNameBase),
    /// `external-BASE`, kube-proxy's external traffic chain: where node
    /// ports, external IPs and LB IPs of an `externalTrafficPolicy: Local`
    /// Service go before their policy chain.
    External(ChainNameBase),
}

impl ChainName {
    /// The name as two pieces whose concatenation is the text.
    fn pieces(&self) -> (&'static str, &str) {
        match self {
            ChainName::Base(b) => (b.as_str(), ""),
            ChainName::Services => ("services", ""),
            ChainName::NodePorts => ("nodeports", ""),
            ChainName::EndpointsCheck => ("endpoints-check", ""),
            ChainName::Reject => ("reject-chain", ""),
            ChainName::MarkForMasquerade => ("mark-for-masquerade", ""),
            ChainName::Masquerading => ("masquerading", ""),
            ChainName::ClusterPolicy(b) => ("service-", b.as_str()),
            ChainName::LocalPolicy(b) => ("local-", b.as_str()),
            ChainName::External(b) => ("external-", b.as_str()),
        }
    }

    /// The Service port this chain belongs to, if it belongs to one.
    pub fn base(&self) -> Option<&ChainNameBase> {
        match self {
            ChainName::ClusterPolicy(b) | ChainName::LocalPolicy(b) | ChainName::External(b) => {
                Some(b)
            }
            _ => None,
        }
    }
}

impl fmt::Display for ChainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (a, b) = self.pieces();
        f.write_str(a)?;
        f.write_str(b)
    }
}

/// Ordered as the text is: the table lists its chains by name, and the
/// golden files pin that order down.
impl Ord for ChainName {
    fn cmp(&self, other: &Self) -> Ordering {
        let (a1, a2) = self.pieces();
        let (b1, b2) = other.pieces();
        if a1 == b1 {
            // The common case when sorting thousands of chains: the same
            // kind, told apart by their bases.
            return a2.cmp(b2);
        }
        a1.bytes()
            .chain(a2.bytes())
            .cmp(b1.bytes().chain(b2.bytes()))
    }
}

impl PartialOrd for ChainName {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A balancing group's data map, `pick-HASH-c` for a cluster policy
/// chain and `pick-HASH-l` for a local one. Short: the kernel finds sets
/// by a linear scan of full-name compares.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PickMapName {
    /// The hash of the chain's base (fields in this order so the derived
    /// order is the text's: the hash has a fixed length, `c` < `l`).
    hash: String,
    /// A local policy chain's map.
    local: bool,
}

impl PickMapName {
    /// The map of the balancing group in `chain`.
    pub fn of(chain: &ChainName) -> Self {
        PickMapName {
            hash: chain.base().map_or("", |b| b.hash()).to_string(),
            local: matches!(chain, ChainName::LocalPolicy(_)),
        }
    }

    /// The hash it shares with its chain.
    pub fn hash(&self) -> &str {
        &self.hash
    }
}

impl fmt::Display for PickMapName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.local { "l" } else { "c" };
        write!(f, "pick-{}-{kind}", self.hash)
    }
}

/// kube-proxy's `affinitySetName` of one endpoint of a Service port:
/// `affinity-` and the base of `port__ip/port`.
pub(crate) fn affinity_set_name(service_port_name: &str, ip: IpAddr, port: u16) -> String {
    format!(
        "affinity-{}",
        ChainNameBase::of(&format!("{service_port_name}__{ip}/{port}"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_names_read_as_kube_proxy_writes_them() {
        let base = ChainNameBase::of("demo/web/tcp/http");
        assert_eq!(base.hash(), hash8("demo/web/tcp/http"));
        assert_eq!(
            ChainName::ClusterPolicy(base.clone()).to_string(),
            format!("service-{}-demo-web-tcp-http", base.hash())
        );
        assert_eq!(
            ChainName::External(base.clone()).to_string(),
            format!("external-{}-demo-web-tcp-http", base.hash())
        );
        assert_eq!(
            PickMapName::of(&ChainName::LocalPolicy(base.clone())).to_string(),
            format!("pick-{}-l", base.hash())
        );
        assert_eq!(ChainName::Reject.to_string(), "reject-chain");
        assert_eq!(
            ChainName::Base(BaseChain::NatPostrouting).to_string(),
            "nat-postrouting"
        );
    }

    #[test]
    fn chain_names_order_as_their_text() {
        let a = ChainNameBase::of("a/b/tcp/1");
        let b = ChainNameBase::of("a/b/tcp/2");
        let mut names = vec![
            ChainName::Services,
            ChainName::LocalPolicy(a.clone()),
            ChainName::ClusterPolicy(b.clone()),
            ChainName::ClusterPolicy(a.clone()),
            ChainName::External(a),
            ChainName::Reject,
            ChainName::Base(BaseChain::FilterInput),
            ChainName::MarkForMasquerade,
            ChainName::Masquerading,
            ChainName::NodePorts,
            ChainName::EndpointsCheck,
            ChainName::LocalPolicy(b),
        ];
        let mut texts: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        names.sort();
        texts.sort();
        let sorted: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        assert_eq!(sorted, texts);
    }
}
