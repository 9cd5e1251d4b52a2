//! The plan: a pure function from (model, this node) to the desired
//! nftables ruleset, one table per address family, with kube-proxy's
//! semantics (KEP-3866 nftables mode layout; iptables-mode behaviour).
//!
//! Dispatch goes through verdict maps keyed on address . protocol . port,
//! so the per-packet cost does not grow with the number of Services.
//!
//! The files, in the order a plan is made: [`names`] (what things are
//! called), [`ruleset`] (the value a plan is), `service_port` (one
//! Service port's chains and map entries, with `endpoints` picking the
//! endpoint), `base_chains` (the chains every table has), `shard`
//! (splitting a large plan across tables), `render` (`nft -f` syntax)
//! and `health_checks` (what the health-check servers answer).

mod base_chains;
mod endpoints;
pub mod health_checks;
pub mod names;
mod render;
pub mod ruleset;
mod service_port;
pub mod shard;

use std::collections::BTreeSet;

use realip_core::Cidr;

use crate::model::{Model, Node};

pub use health_checks::{health_checks, HealthCheck};
pub use names::{hash8, BaseChain, ChainName, ChainNameBase, PickMapName};
pub use ruleset::{
    pick_size, Action, AffinitySet, Chain, Family, Hook, Key, KeySet, Map, Match, PickMap, Rule,
    Ruleset, Verdict, MASQ_MARK, TABLE,
};
pub use shard::{shard, table_names, MAX_SHARDS, SHARD_SIZE};

use names::{
    CLUSTER_EXTERNAL, CLUSTER_IPS, CLUSTER_NODEPORTS, NO_ENDPOINT_NODEPORTS, NO_ENDPOINT_SERVICES,
    SERVICE_IPS, SERVICE_NODEPORTS,
};
use service_port::PortRules;

/// Why there is no plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The node is not among the objects.
    #[error("node {0:?} is not among the objects; pass its Node object too")]
    UnknownNode(String),
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

/// One family's table: every Service port's rules, then the chains every
/// table has, each part in the order the table lists it.
fn plan_family(model: &Model, this: &Node, fam: Family) -> Ruleset {
    let pod_cidrs: Vec<Cidr> = this
        .pod_cidrs
        .iter()
        .copied()
        .filter(|c| fam.has(c.network()))
        .collect();
    let mut ports = PortRules::default();
    for svc in model.services.values() {
        ports.add_service(model, &this.name, fam, &pod_cidrs, svc);
    }
    let PortRules {
        service_ips,
        service_nodeports,
        no_endpoints,
        mut affinity_sets,
        chains: port_chains,
        hairpin,
        mut picks,
        cluster_ips,
        cluster_external,
        cluster_nodeports,
        ..
    } = ports;

    let (no_endpoint_services, no_endpoint_nodeports): (Vec<_>, Vec<_>) = no_endpoints
        .into_iter()
        .partition(|(k, _)| matches!(k, Key::Dest(..)));
    let mut maps = vec![
        Map {
            name: SERVICE_IPS,
            with_addr: true,
            elements: service_ips,
        },
        Map {
            name: SERVICE_NODEPORTS,
            with_addr: false,
            elements: service_nodeports,
        },
        Map {
            name: NO_ENDPOINT_SERVICES,
            with_addr: true,
            elements: no_endpoint_services,
        },
        Map {
            name: NO_ENDPOINT_NODEPORTS,
            with_addr: false,
            elements: no_endpoint_nodeports,
        },
    ];
    for m in &mut maps {
        m.elements.sort();
        m.elements.dedup();
    }
    affinity_sets.sort_by(|a, b| a.name.cmp(&b.name));
    affinity_sets.dedup();

    // Base chains first, then the rest by name, each once.
    let mut chains = base_chains::base_chains();
    let mut rest = base_chains::top_level_chains(&pod_cidrs);
    rest.extend(port_chains);
    rest.sort_by(|a, b| a.name.cmp(&b.name));
    let mut seen = BTreeSet::new();
    rest.retain(|c| seen.insert(c.name.clone()));
    chains.extend(rest);
    picks.sort_by(|a, b| a.name.cmp(&b.name));
    let key_sets = [
        (CLUSTER_IPS, true, cluster_ips),
        (CLUSTER_EXTERNAL, true, cluster_external),
        (CLUSTER_NODEPORTS, false, cluster_nodeports),
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
        sets: affinity_sets,
        key_sets,
        hairpin: hairpin.into_iter().collect(),
        chains,
    }
}
