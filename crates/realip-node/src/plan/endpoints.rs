//! Which endpoints a Service port's traffic may go to, and the rules of a
//! policy chain that pick one (kube-proxy's
//! `writeServiceToEndpointRules`).

use std::net::IpAddr;

use super::names::{ChainName, PickMapName};
use super::ruleset::{pick_size, Action, Match, PickMap, Rule};
use crate::model::{Endpoint, Proto};

/// The endpoints traffic may go to: ready ones, or, when none is ready,
/// serving ones that are terminating (ProxyTerminatingEndpoints).
pub(crate) fn usable<'a>(eps: impl Iterator<Item = &'a Endpoint> + Clone) -> Vec<&'a Endpoint> {
    let ready: Vec<_> = eps.clone().filter(|e| e.ready).collect();
    if !ready.is_empty() {
        return ready;
    }
    eps.filter(|e| e.serving && e.terminating).collect()
}

/// Where a balancing rule sends a connection.
pub(crate) struct Target {
    /// The endpoint's address.
    pub ip: IpAddr,
    /// Its target port.
    pub port: u16,
    /// Its affinity set (sessionAffinity: ClientIP).
    pub affinity: Option<String>,
}

impl Target {
    fn dnat(&self, proto: Proto) -> Action {
        Action::Dnat {
            proto,
            ip: self.ip,
            port: self.port,
            affinity: self.affinity.clone(),
        }
    }
}

/// The rules of `policy_chain` (a cluster or local policy chain) that
/// send a new connection to one of `targets`, with equal odds.
pub(crate) fn endpoint_rules(
    policy_chain: &ChainName,
    proto: Proto,
    session_affinity: bool,
    targets: &[Target],
    picks: &mut Vec<PickMap>,
) -> Vec<Rule> {
    let n = targets.len();
    if !session_affinity && n >= 2 {
        // One rule: a random index into the group's own map, whose value
        // is the DNAT target. One map per group (the kernel checks a
        // shared map's every element per binding), named after the chain.
        let map = PickMapName::of(policy_chain);
        picks.push(PickMap {
            name: map.clone(),
            endpoints: targets.iter().map(|t| (t.ip, t.port)).collect(),
            size: pick_size(n),
        });
        return vec![Rule::new(Action::DnatPick {
            proto,
            map,
            modulus: n as u32,
        })];
    }
    let mut rules = Vec::new();
    // A client seen recently goes back to its endpoint.
    for t in targets {
        if let Some(set) = &t.affinity {
            rules.push(Rule::when(
                vec![Match::SaddrInSet(set.clone())],
                t.dnat(proto),
            ));
        }
    }
    // With affinity each endpoint needs its own rule (to add the client
    // to its set): equal odds by a cascade, endpoint i taken with
    // probability 1/(n-i) of what is left, as kube-proxy's iptables mode
    // does with `statistic --mode random`.
    for (i, t) in targets.iter().enumerate() {
        if i + 1 < n {
            rules.push(Rule::when(
                vec![Match::RandomZero((n - i) as u32)],
                t.dnat(proto),
            ));
        } else {
            rules.push(Rule::new(t.dnat(proto)));
        }
    }
    rules
}
