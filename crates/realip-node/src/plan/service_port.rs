//! The rules of one Service port in one family's table: its policy
//! chains, its external traffic chain, and its entries in the dispatch
//! maps and masquerade sets. The steps and their names follow
//! kube-proxy's `syncProxyRules`.

use std::collections::BTreeSet;
use std::net::IpAddr;

use realip_core::Cidr;

use super::endpoints::{endpoint_rules, usable, Target};
use super::names::{affinity_set_name, service_port_name, ChainName, ChainNameBase};
use super::ruleset::{Action, AffinitySet, Chain, Family, Key, Match, PickMap, Rule, Verdict};
use crate::model::{Endpoint, Model, Service, ServicePort, ServiceType};

/// What the Service ports add to one family's table, gathered port by
/// port (kube-proxy adds them to its transaction as it goes).
#[derive(Debug, Default)]
pub(crate) struct PortRules {
    /// `service-ips` elements.
    pub service_ips: Vec<(Key, Verdict)>,
    /// `service-nodeports` elements.
    pub service_nodeports: Vec<(Key, Verdict)>,
    /// `no-endpoint-services` and `no-endpoint-nodeports` elements.
    pub no_endpoints: Vec<(Key, Verdict)>,
    /// Affinity sets, one per endpoint of a sticky Service port.
    pub affinity_sets: Vec<AffinitySet>,
    /// Their names: a pod can back the same port twice, as cluster and
    /// local target, and gets one set.
    affinity_names: BTreeSet<String>,
    /// Policy and external traffic chains.
    pub chains: Vec<Chain>,
    /// Every endpoint address (the `hairpin` set).
    pub hairpin: BTreeSet<IpAddr>,
    /// The balancing groups' pick maps.
    pub picks: Vec<PickMap>,
    /// `cluster-ips` keys.
    pub cluster_ips: Vec<Key>,
    /// `cluster-external` keys.
    pub cluster_external: Vec<Key>,
    /// `cluster-nodeports` keys.
    pub cluster_nodeports: Vec<Key>,
}

/// A Service as one family's table sees it.
struct ServiceInFamily<'a> {
    svc: &'a Service,
    /// Its cluster IPs of this family.
    cluster_ips: Vec<IpAddr>,
    /// External IPs then LB IPs of this family: kube-proxy's "external
    /// destinations".
    external_ips: Vec<IpAddr>,
    /// Its endpoints of this family.
    endpoints: Vec<&'a Endpoint>,
}

impl PortRules {
    /// Add every port of `svc`, for the node `node` whose pod ranges of
    /// this family are `pod_cidrs`.
    pub(crate) fn add_service(
        &mut self,
        model: &Model,
        node: &str,
        fam: Family,
        pod_cidrs: &[Cidr],
        svc: &Service,
    ) {
        let cluster_ips: Vec<IpAddr> = svc
            .cluster_ips
            .iter()
            .copied()
            .filter(|i| fam.has(*i))
            .collect();
        if cluster_ips.is_empty() {
            return;
        }
        let s = ServiceInFamily {
            svc,
            cluster_ips,
            external_ips: svc
                .external_ips
                .iter()
                .chain(&svc.lb_ips)
                .copied()
                .filter(|i| fam.has(*i))
                .collect(),
            endpoints: model
                .endpoints
                .get(&svc.key)
                .map(|v| v.iter().filter(|e| fam.has(e.ip)).collect())
                .unwrap_or_default(),
        };
        for sp in &svc.ports {
            self.add_port(&s, sp, node, pod_cidrs);
        }
    }

    fn add_port(&mut self, s: &ServiceInFamily, sp: &ServicePort, node: &str, pod_cidrs: &[Cidr]) {
        let svc = s.svc;
        let svc_port_name = service_port_name(svc, sp);
        let with_port: Vec<&Endpoint> = s
            .endpoints
            .iter()
            .copied()
            .filter(|e| e.port_for(sp).is_some())
            .collect();
        let cluster_endpoints = usable(with_port.iter().copied());
        let local_endpoints = usable(
            with_port
                .iter()
                .copied()
                .filter(|e| e.node.as_deref() == Some(node)),
        );
        let node_port = match svc.kind {
            ServiceType::ClusterIp => None,
            _ => sp.node_port,
        };
        let has_endpoints = !cluster_endpoints.is_empty();
        if !has_endpoints {
            // No endpoint anywhere: reject, so clients fail fast, and make
            // no chain at all (kube-proxy: the filter verdict `goto
            // reject-chain`).
            for ip in s.cluster_ips.iter().chain(&s.external_ips) {
                self.no_endpoints
                    .push((Key::Dest(*ip, sp.proto, sp.port), Verdict::Reject));
            }
            if let Some(np) = node_port {
                self.no_endpoints
                    .push((Key::Port(sp.proto, np), Verdict::Reject));
            }
            return;
        }
        // Endpoints are DNAT rules in the policy chains, not chains of
        // their own: a chain per endpoint is a netlink message and a
        // kernel object per endpoint, the bulk of a full sync at scale.
        // Hairpin traffic is caught in postrouting instead (the `hairpin`
        // set).
        let uses_local_endpoints = svc.internal_local || svc.external_local;
        let cluster_targets: Vec<Target> = cluster_endpoints
            .iter()
            .map(|e| self.target(svc, sp, &svc_port_name, e))
            .collect();
        let local_targets: Vec<Target> = if uses_local_endpoints {
            local_endpoints
                .iter()
                .map(|e| self.target(svc, sp, &svc_port_name, e))
                .collect()
        } else {
            Vec::new()
        };
        let session_affinity = svc.affinity_timeout.is_some();
        let base = ChainNameBase::of(&svc_port_name);

        // The cluster policy chain: every usable endpoint.
        let cluster_policy_chain = ChainName::ClusterPolicy(base.clone());
        // ClusterIP traffic from outside the pod network is masqueraded
        // (one rule for all Services, in `services`, over the
        // `cluster-ips` set) so replies come back through this node.
        if !svc.internal_local {
            for ip in &s.cluster_ips {
                self.cluster_ips.push(Key::Dest(*ip, sp.proto, sp.port));
            }
        }
        let rules = endpoint_rules(
            &cluster_policy_chain,
            sp.proto,
            session_affinity,
            &cluster_targets,
            &mut self.picks,
        );
        self.chains.push(Chain {
            name: cluster_policy_chain.clone(),
            hook: None,
            rules,
        });

        // The local policy chain: this node's endpoints, for the Local
        // policies. Without one, Local-policy traffic is dropped (the
        // filter verdict `drop` of kube-proxy).
        let local_policy_chain = ChainName::LocalPolicy(base.clone());
        let uses_local_policy_chain = !local_targets.is_empty();
        let local_policy_verdict = if uses_local_policy_chain {
            let rules = endpoint_rules(
                &local_policy_chain,
                sp.proto,
                session_affinity,
                &local_targets,
                &mut self.picks,
            );
            self.chains.push(Chain {
                name: local_policy_chain.clone(),
                hook: None,
                rules,
            });
            Verdict::Goto(local_policy_chain)
        } else {
            Verdict::Drop
        };

        // Internal traffic: to the cluster IPs.
        let internal_traffic_verdict = if svc.internal_local {
            local_policy_verdict.clone()
        } else {
            Verdict::Goto(cluster_policy_chain.clone())
        };
        for ip in &s.cluster_ips {
            self.service_ips.push((
                Key::Dest(*ip, sp.proto, sp.port),
                internal_traffic_verdict.clone(),
            ));
        }

        // External traffic: node ports, external IPs, LB IPs.
        if node_port.is_none() && s.external_ips.is_empty() {
            return;
        }
        if !svc.external_local {
            // Cluster policy: masquerade, so a pod on another node
            // replies through this one (and sees this node's IP). The
            // marking is one rule per table over the cluster-external
            // and cluster-nodeports sets; dispatch goes straight to the
            // cluster policy chain, with no external traffic chain.
            for ip in &s.external_ips {
                let key = Key::Dest(*ip, sp.proto, sp.port);
                self.cluster_external.push(key.clone());
                self.service_ips
                    .push((key, Verdict::Goto(cluster_policy_chain.clone())));
            }
            if let Some(np) = node_port {
                let key = Key::Port(sp.proto, np);
                self.cluster_nodeports.push(key.clone());
                self.service_nodeports
                    .push((key, Verdict::Goto(cluster_policy_chain.clone())));
            }
            return;
        }
        let external_traffic_chain = ChainName::External(base);
        let mut rules = Vec::new();
        if !pod_cidrs.is_empty() {
            // Pods reaching an LB IP go anywhere, unmasqueraded
            // (kube-proxy: "short-circuit pod traffic").
            rules.push(Rule::when(
                vec![Match::SaddrIn(pod_cidrs.to_vec())],
                Action::Goto(cluster_policy_chain.clone()),
            ));
        }
        // The node itself has no client address to keep ("masquerade
        // local traffic", then "short-circuit local traffic").
        rules.push(Rule::when(
            vec![Match::FibSaddrLocal],
            Action::Jump(ChainName::MarkForMasquerade),
        ));
        rules.push(Rule::when(
            vec![Match::FibSaddrLocal],
            Action::Goto(cluster_policy_chain),
        ));
        // Anything else: this node's endpoints (has external endpoints),
        // or dropped.
        rules.push(match local_policy_verdict {
            Verdict::Goto(c) => Rule::new(Action::Goto(c)),
            _ => Rule::new(Action::Drop),
        });
        self.chains.push(Chain {
            name: external_traffic_chain.clone(),
            hook: None,
            rules,
        });
        for ip in &s.external_ips {
            self.service_ips.push((
                Key::Dest(*ip, sp.proto, sp.port),
                Verdict::Goto(external_traffic_chain.clone()),
            ));
        }
        if let Some(np) = node_port {
            self.service_nodeports.push((
                Key::Port(sp.proto, np),
                Verdict::Goto(external_traffic_chain),
            ));
        }
    }

    /// Where a policy chain sends a connection to `ep`; the endpoint's
    /// address joins the hairpin set, and a sticky Service port's
    /// endpoint gets its affinity set.
    fn target(
        &mut self,
        svc: &Service,
        sp: &ServicePort,
        svc_port_name: &str,
        ep: &Endpoint,
    ) -> Target {
        let port = ep.port_for(sp).unwrap_or(sp.port);
        self.hairpin.insert(ep.ip);
        let affinity = svc.affinity_timeout.map(|timeout| {
            let name = affinity_set_name(svc_port_name, ep.ip, port);
            if self.affinity_names.insert(name.clone()) {
                self.affinity_sets.push(AffinitySet {
                    name: name.clone(),
                    timeout,
                });
            }
            name
        });
        Target {
            ip: ep.ip,
            port,
            affinity,
        }
    }
}
