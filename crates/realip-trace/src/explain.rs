//! From what the kernel said to the answer: the trace events of the one
//! packet, the rules they name (read back from the kernel), the pick map
//! a random DNAT indexes and the conntrack entry, turned into a verdict,
//! a DNAT, a masquerade and the chains crossed, each with its reason.
//! Pure: the kernel was asked before this runs.
//!
//! The model only names things here (which Service a chain belongs to,
//! its traffic policy); every fact about the packet comes from the
//! events, the rules and conntrack.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use realip_nft::{Flow, RuleExpr, RuleInfo, TraceEvent, TraceKind, TraceVerdict};
use realip_node::model::{Model, ServiceType};
use realip_node::plan::ChainNameBase;
use serde::Serialize;

use crate::probe::Probe;

/// Which namespace the packet was traced in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// A scratch namespace holding the ruleset realip node programs for
    /// the node, with the node's addresses.
    Scratch,
    /// The node's own namespace, against the live ruleset.
    NodeNamespace,
}

/// The Service port a chain belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Owner {
    /// `namespace/name`.
    pub service: String,
    /// The port's name, or its number.
    pub port: String,
    /// `tcp` or `udp`.
    pub proto: &'static str,
    /// `ClusterIP`, `NodePort` or `LoadBalancer`.
    pub kind: &'static str,
    /// `Cluster` or `Local`.
    pub external_traffic_policy: &'static str,
    /// `Cluster` or `Local`.
    pub internal_traffic_policy: &'static str,
}

impl Owner {
    fn describe(&self) -> String {
        format!("{} port {}/{}", self.service, self.port, self.proto)
    }
}

/// The chains of every Service port in the model, by name: kube-proxy's
/// `service-`, `local-` and `external-` chains all end in the port's
/// chain-name base.
pub fn chain_owners(model: &Model) -> BTreeMap<String, Owner> {
    let mut out = BTreeMap::new();
    for svc in model.services.values() {
        for sp in &svc.ports {
            let port = if sp.name.is_empty() {
                sp.port.to_string()
            } else {
                sp.name.clone()
            };
            // kube-proxy's svcPortNameString, as realip-node's plan makes it.
            let text = format!(
                "{}/{}/{}/{port}",
                svc.key.namespace,
                svc.key.name,
                sp.proto.as_str()
            );
            let base = ChainNameBase::of(&text);
            let owner = Owner {
                service: svc.key.to_string(),
                port,
                proto: sp.proto.as_str(),
                kind: match svc.kind {
                    ServiceType::ClusterIp => "ClusterIP",
                    ServiceType::NodePort => "NodePort",
                    ServiceType::LoadBalancer => "LoadBalancer",
                },
                external_traffic_policy: if svc.external_local {
                    "Local"
                } else {
                    "Cluster"
                },
                internal_traffic_policy: if svc.internal_local {
                    "Local"
                } else {
                    "Cluster"
                },
            };
            for prefix in ["service-", "local-", "external-"] {
                out.insert(format!("{prefix}{base}"), owner.clone());
            }
        }
    }
    out
}

/// Everything the kernel was asked, for one traced packet.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The packet.
    pub probe: Probe,
    /// The node whose ruleset it met.
    pub node: String,
    /// Where.
    pub mode: Mode,
    /// The scratch table that set the trace bit (its events are not part
    /// of the path).
    pub trace_table: String,
    /// The trace events of this packet, in the order the kernel sent them.
    pub events: Vec<TraceEvent>,
    /// The rules those events name, by (table, chain, handle).
    pub rules: BTreeMap<(String, String, u64), RuleInfo>,
    /// The endpoints of each pick map a rule on the path indexes (key
    /// below the rule's modulus, in index order), by (table, map).
    pub picks: BTreeMap<(String, String), Vec<SocketAddr>>,
    /// The conntrack entry of the packet's connection, if one was
    /// confirmed.
    pub flow: Option<Flow>,
    /// Which Service port each chain belongs to.
    pub owners: BTreeMap<String, Owner>,
}

/// What became of the packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "lowercase")]
pub enum Verdict {
    /// Every hook let it through.
    Accept,
    /// A rule or a policy dropped it.
    Drop(Decision),
    /// A `reject` rule answered it (ICMP port unreachable or a TCP
    /// reset) and dropped it.
    Reject(Decision),
}

/// Where the packet's fate was decided, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The table.
    pub table: String,
    /// The chain.
    pub chain: String,
    /// The rule's handle (none: the chain's policy).
    pub rule: Option<u64>,
    /// The rule as the kernel holds it.
    pub rule_text: Option<String>,
    /// In words.
    pub why: String,
}

/// The destination NAT.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dnat {
    /// The endpoint conntrack recorded for this packet.
    pub to: Option<SocketAddr>,
    /// Every endpoint the rule could have picked.
    pub endpoints: Vec<SocketAddr>,
    /// The chance of each (1/N for a random pick over N).
    pub chance: f64,
    /// How the kernel picks: the rule's text.
    pub rule_text: Option<String>,
    /// The chain of the rule.
    pub chain: String,
    /// The rule's handle.
    pub rule: Option<u64>,
    /// The pick map the rule indexes, if it picks at random.
    pub pick_map: Option<String>,
}

/// The source NAT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Masquerade {
    /// A masquerade rule ran on the packet.
    pub masqueraded: bool,
    /// The source the endpoint sees after it, from conntrack.
    pub source: Option<IpAddr>,
    /// The packet mark when it reached the masquerade decision.
    pub mark: Option<u32>,
    /// The rule that marked the packet for masquerade, and why.
    pub marked_by: Option<Decision>,
}

/// The connection as conntrack recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conntrack {
    /// Original direction: client to what it dialled.
    pub original: (SocketAddr, SocketAddr),
    /// Reply direction: endpoint to the address it answers.
    pub reply: (SocketAddr, SocketAddr),
    /// `none`, `DNAT`, `SNAT` or `DNAT+SNAT`.
    pub nat: &'static str,
}

/// One trace event, as a step of the path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// The netfilter hook, when the chain's name says it.
    pub hook: Option<&'static str>,
    /// `ip`, `ip6` or `inet`.
    pub family: &'static str,
    /// The table.
    pub table: String,
    /// The chain.
    pub chain: String,
    /// `rule`, `return` or `policy`.
    pub event: &'static str,
    /// The rule's handle.
    pub rule: Option<u64>,
    /// The rule as the kernel holds it.
    pub rule_text: Option<String>,
    /// Its verdict.
    pub verdict: String,
    /// The packet mark then.
    pub mark: Option<u32>,
    /// The packet's addresses then, when the event carried its headers.
    pub packet: Option<String>,
}

/// The whole answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The packet.
    pub packet: Probe,
    /// The node.
    pub node: String,
    /// Where it was traced.
    pub mode: Mode,
    /// The hook the packet entered by.
    pub entered: Option<&'static str>,
    /// The kernel's id for the packet's trace.
    pub trace_id: Option<u32>,
    /// Its fate.
    pub verdict: Verdict,
    /// The Service port whose chains it crossed.
    pub service: Option<Owner>,
    /// The DNAT, if one happened.
    pub dnat: Option<Dnat>,
    /// The masquerade.
    pub masquerade: Masquerade,
    /// The conntrack entry.
    pub conntrack: Option<Conntrack>,
    /// The source address the endpoint (or the local socket) sees.
    pub peer_seen: Option<SocketAddr>,
    /// Every rule and chain end the packet met, in order.
    pub steps: Vec<Step>,
    /// Things worth knowing about the trace itself.
    pub notes: Vec<String>,
}

/// The hook a chain's name says it is on: realip's base chains are
/// named `TYPE-HOOK`, the trace table's chains by their hook.
fn hook_of(chain: &str) -> Option<&'static str> {
    let tail = chain.rsplit('-').next().unwrap_or(chain);
    match tail {
        "prerouting" => Some("prerouting"),
        "input" => Some("input"),
        "forward" => Some("forward"),
        "output" => Some("output"),
        "postrouting" => Some("postrouting"),
        _ => None,
    }
}

fn family_name(nfproto: u32) -> &'static str {
    match nfproto {
        2 => "ip",
        10 => "ip6",
        1 => "inet",
        _ => "?",
    }
}

fn nft_family(nfproto: u32) -> realip_nft::Family {
    if nfproto == 10 {
        realip_nft::Family::Ipv6
    } else {
        realip_nft::Family::Ipv4
    }
}

fn packet_text(ev: &TraceEvent) -> Option<String> {
    let t = realip_nft::FiveTuple::of_headers(&ev.network_header, &ev.transport_header)?;
    let proto = match t.proto {
        6 => "tcp".to_string(),
        17 => "udp".to_string(),
        132 => "sctp".to_string(),
        n => format!("proto {n}"),
    };
    Some(format!(
        "{proto} {} -> {}",
        SocketAddr::new(t.src, t.sport),
        SocketAddr::new(t.dst, t.dport)
    ))
}

/// The events of our packet among everything the trace group delivered:
/// those whose id is the id of an event of the trace table that carried
/// our 5-tuple (the trace table sets the bit first, before any NAT).
pub fn our_events(all: &[TraceEvent], trace_table: &str, probe: &Probe) -> Vec<TraceEvent> {
    let want = probe.five_tuple();
    let id = all.iter().find_map(|e| {
        let t = realip_nft::FiveTuple::of_headers(&e.network_header, &e.transport_header)?;
        (e.table == trace_table && t == want).then_some(e.id)
    });
    match id {
        Some(id) => all.iter().filter(|e| e.id == id).cloned().collect(),
        None => Vec::new(),
    }
}

struct Path<'a> {
    obs: &'a Observed,
}

impl<'a> Path<'a> {
    fn rule(&self, ev: &TraceEvent) -> Option<&'a RuleInfo> {
        let h = ev.rule?;
        self.obs.rules.get(&(ev.table.clone(), ev.chain.clone(), h))
    }

    fn text(&self, ev: &TraceEvent) -> Option<String> {
        self.rule(ev).map(|r| r.text(nft_family(ev.nfproto)))
    }

    fn decision(&self, ev: &TraceEvent, why: String) -> Decision {
        Decision {
            table: ev.table.clone(),
            chain: ev.chain.clone(),
            rule: ev.rule,
            rule_text: self.text(ev),
            why,
        }
    }

    fn owner(&self, chain: &str) -> Option<&'a Owner> {
        self.obs.owners.get(chain)
    }

    /// Why a rule or policy dropped the packet, from where it was.
    fn why_dropped(&self, ev: &TraceEvent, before: &[&TraceEvent], reject: bool) -> String {
        let node = &self.obs.node;
        if ev.kind == TraceKind::Policy {
            return format!("the policy of chain {} is drop", ev.chain);
        }
        if ev.chain == "reject-chain" {
            let via = before
                .iter()
                .rev()
                .find(|e| e.chain == "endpoints-check")
                .and_then(|e| self.rule(e))
                .map(|r| r.sets().join(", "))
                .unwrap_or_default();
            let what = if via.contains("nodeports") {
                "node port"
            } else {
                "Service port"
            };
            return format!(
                "the {what} has no endpoints (found in @{via}): kube-proxy rejects new \
                 connections to it (a TCP reset or ICMP port unreachable) rather than let them \
                 time out",
            );
        }
        if let Some(o) = self.owner(&ev.chain) {
            if ev.chain.starts_with("external-") {
                let lb = if o.kind == "LoadBalancer" {
                    format!(
                        " (the load balancer's health check on the healthCheckNodePort takes \
                         {node} out)"
                    )
                } else {
                    String::new()
                };
                return format!(
                    "{} has externalTrafficPolicy: Local and {node} has no ready endpoint of \
                     it: traffic from outside the node is dropped, not sent to another node{lb}",
                    o.describe()
                );
            }
            if ev.chain.starts_with("local-") {
                return format!(
                    "{} has internalTrafficPolicy: Local and {node} has no ready endpoint of it",
                    o.describe()
                );
            }
        }
        let rule = self.rule(ev);
        if rule.is_some_and(|r| {
            r.has(|e| matches!(e, RuleExpr::Ct { key: 0, .. }))
                && r.text(nft_family(ev.nfproto)).contains("invalid")
        }) {
            return "conntrack counted the packet invalid (it fits no connection it knows)".into();
        }
        let verb = if reject { "rejects" } else { "drops" };
        match self.text(ev) {
            Some(t) => format!(
                "rule {} of {} {verb} it: `{t}`",
                ev.rule.unwrap_or(0),
                ev.chain
            ),
            None => format!("a rule of {} {verb} it", ev.chain),
        }
    }

    /// Why a rule sent the packet to be marked for masquerade.
    fn why_marked(&self, ev: &TraceEvent) -> String {
        let sets = self.rule(ev).map(|r| r.sets()).unwrap_or_default();
        let has = |s: &str| sets.contains(&s);
        let owner = self.owner(&ev.chain);
        if ev.chain == "services" && has("cluster-ips") {
            return "it comes from outside this node's pod network to a ClusterIP: kube-proxy \
                    masquerades such traffic so the endpoint's reply comes back through this node"
                .into();
        }
        if ev.chain == "services" && has("cluster-external") {
            return "it goes to an external or load-balancer IP of an externalTrafficPolicy: \
                    Cluster Service: the endpoint may be on another node, so its reply must come \
                    back through this one"
                .into();
        }
        if ev.chain == "nodeports" && has("cluster-nodeports") {
            return "it goes to a node port of an externalTrafficPolicy: Cluster Service: the \
                    endpoint may be on another node, so its reply must come back through this one"
                .into();
        }
        if ev.chain.starts_with("nat-postrouting") && has("hairpin") {
            return "a pod reached itself through its Service (hairpin): without the SNAT it would \
                    answer itself directly"
                .into();
        }
        if let (true, Some(o)) = (ev.chain.starts_with("external-"), owner) {
            return format!(
                "it comes from {} itself to {} (externalTrafficPolicy: Local): kube-proxy \
                 masquerades the node's own traffic",
                self.obs.node,
                o.describe()
            );
        }
        match self.text(ev) {
            Some(t) => format!("rule {} of {}: `{t}`", ev.rule.unwrap_or(0), ev.chain),
            None => format!("a rule of {}", ev.chain),
        }
    }
}

/// The answer, from what the kernel said.
pub fn explain(obs: &Observed) -> Report {
    let path = Path { obs };
    let entered = obs
        .events
        .iter()
        .find(|e| e.table == obs.trace_table)
        .and_then(|e| hook_of(&e.chain));
    let trace_id = obs.events.first().map(|e| e.id);
    let events: Vec<&TraceEvent> = obs
        .events
        .iter()
        .filter(|e| e.table != obs.trace_table)
        .collect();
    let mut notes = Vec::new();

    // A base chain's first event carries the packet's headers: there a
    // new hook begins, and the chains it jumps to are on the same hook.
    let mut hook = entered;
    // A base chain's end comes twice: its sentinel rule, then its
    // policy; the policy says it all.
    let shown: Vec<&TraceEvent> = events
        .iter()
        .enumerate()
        .filter(|(i, e)| {
            let sentinel = e.kind == TraceKind::Rule && e.rule.is_none();
            let next = events.get(i + 1);
            !(sentinel && next.is_some_and(|n| n.kind == TraceKind::Policy && n.chain == e.chain))
        })
        .map(|(_, e)| *e)
        .collect();
    let steps: Vec<Step> = shown
        .iter()
        .map(|e| {
            if !e.network_header.is_empty() {
                hook = hook_of(&e.chain).or(hook);
            }
            Step {
                hook,
                family: family_name(e.nfproto),
                table: e.table.clone(),
                chain: e.chain.clone(),
                event: match e.kind {
                    // The end of a regular chain comes as a rule event
                    // without a handle (the chain's sentinel rule).
                    TraceKind::Rule if e.rule.is_none() => "return",
                    TraceKind::Rule => "rule",
                    TraceKind::Return => "return",
                    TraceKind::Policy => "policy",
                    TraceKind::Other(_) => "other",
                },
                rule: e.rule,
                rule_text: path.text(e),
                verdict: match (e.kind, &e.policy, &e.verdict) {
                    (TraceKind::Policy, Some(p), _) => format!("policy {p}"),
                    (_, _, Some(v)) => v.to_string(),
                    _ => "continue".into(),
                },
                mark: e.mark.filter(|m| *m != 0),
                packet: packet_text(e),
            }
        })
        .collect();

    // The fate: the first drop, by a rule or a policy.
    let mut verdict = Verdict::Accept;
    for (i, e) in events.iter().enumerate() {
        let dropped = match e.kind {
            TraceKind::Rule => e.verdict == Some(TraceVerdict::Drop),
            TraceKind::Policy => e.policy == Some(TraceVerdict::Drop),
            _ => false,
        };
        if !dropped {
            continue;
        }
        let reject = path
            .rule(e)
            .is_some_and(|r| r.has(|x| matches!(x, RuleExpr::Reject)));
        let d = path.decision(e, path.why_dropped(e, &events[..i], reject));
        verdict = if reject {
            Verdict::Reject(d)
        } else {
            Verdict::Drop(d)
        };
        break;
    }

    let service = events.iter().find_map(|e| path.owner(&e.chain)).cloned();

    // Conntrack: what the NAT really was.
    let conntrack = obs.flow.as_ref().map(|f| {
        let d = f.orig_dst != f.reply_src;
        let s = f.orig_src != f.reply_dst;
        Conntrack {
            original: (f.orig_src, f.orig_dst),
            reply: (f.reply_src, f.reply_dst),
            nat: match (d, s) {
                (true, true) => "DNAT+SNAT",
                (true, false) => "DNAT",
                (false, true) => "SNAT",
                (false, false) => "none",
            },
        }
    });
    let ct_dnat = obs
        .flow
        .as_ref()
        .filter(|f| f.orig_dst != f.reply_src)
        .map(|f| f.reply_src);
    let ct_snat = obs
        .flow
        .as_ref()
        .filter(|f| f.orig_src != f.reply_dst)
        .map(|f| f.reply_dst.ip());

    // The DNAT rule the packet met.
    let dnat_event = events.iter().find(|e| {
        e.kind == TraceKind::Rule
            && path
                .rule(e)
                .is_some_and(|r| r.has(|x| matches!(x, RuleExpr::Nat { kind: 1, .. })))
    });
    let dnat = match dnat_event {
        Some(e) => {
            let rule = path.rule(e);
            let pick = rule.and_then(|r| r.pick());
            let (endpoints, pick_map) = match pick {
                Some((map, _)) => (
                    obs.picks
                        .get(&(e.table.clone(), map.to_string()))
                        .cloned()
                        .unwrap_or_default(),
                    Some(map.to_string()),
                ),
                None => (ct_dnat.into_iter().collect(), None),
            };
            if pick.is_some() && endpoints.is_empty() {
                notes.push("the pick map could not be read: the endpoints are unknown".into());
            }
            if let (Some(to), false) = (ct_dnat, endpoints.is_empty()) {
                if !endpoints.contains(&to) {
                    notes.push(format!(
                        "conntrack's endpoint {to} is not among the pick map's {endpoints:?}"
                    ));
                }
            }
            let chance = if endpoints.is_empty() {
                0.0
            } else {
                1.0 / endpoints.len() as f64
            };
            Some(Dnat {
                to: ct_dnat,
                endpoints,
                chance,
                rule_text: path.text(e),
                chain: e.chain.clone(),
                rule: e.rule,
                pick_map,
            })
        }
        None => ct_dnat.map(|to| {
            notes.push(
                "conntrack recorded a DNAT that no traced rule made (a table not traced, or an \
                 earlier connection)"
                    .into(),
            );
            Dnat {
                to: Some(to),
                endpoints: vec![to],
                chance: 1.0,
                rule_text: None,
                chain: String::new(),
                rule: None,
                pick_map: None,
            }
        }),
    };

    let masq_event = events.iter().find(|e| {
        e.kind == TraceKind::Rule
            && path
                .rule(e)
                .is_some_and(|r| r.has(|x| matches!(x, RuleExpr::Masquerade)))
    });
    let marked = events.iter().find(|e| {
        e.kind == TraceKind::Rule
            && matches!(&e.verdict, Some(TraceVerdict::Jump(c)) if c == "mark-for-masquerade")
    });
    // The mark as the marking left it (the masquerading chain clears the
    // bit before it masquerades).
    let mark = events.iter().filter_map(|e| e.mark).find(|m| *m != 0);
    let masquerade = Masquerade {
        masqueraded: masq_event.is_some(),
        source: ct_snat,
        mark,
        marked_by: marked.map(|e| path.decision(e, path.why_marked(e))),
    };
    if masquerade.masqueraded && ct_snat.is_none() && obs.flow.is_some() {
        notes.push(
            "a masquerade rule ran but conntrack kept the source (it was already the outgoing \
             interface's address)"
                .into(),
        );
    }

    let hooks: Vec<&str> = steps.iter().filter_map(|s| s.hook).collect();
    if matches!(verdict, Verdict::Accept)
        && !hooks.iter().any(|h| *h == "postrouting" || *h == "input")
    {
        notes.push(format!(
            "no input or postrouting chain saw the packet after {}: the kernel's routing dropped \
             it (no route) or no table hooks there",
            hooks.last().unwrap_or(&"its first hook")
        ));
    }
    if events.is_empty() {
        notes.push("the kernel sent no trace event for the packet".into());
    }
    if obs.flow.is_none() {
        notes.push(match verdict {
            Verdict::Accept => "conntrack recorded no entry for the packet".into(),
            _ => "conntrack recorded no entry: the packet was dropped before its connection was \
                  confirmed"
                .into(),
        });
    }

    let peer_seen = match &obs.flow {
        Some(f) => Some(f.reply_dst),
        None => Some(obs.probe.src.0),
    }
    .filter(|_| !matches!(verdict, Verdict::Drop(_) | Verdict::Reject(_)));

    Report {
        packet: obs.probe,
        node: obs.node.clone(),
        mode: obs.mode,
        entered,
        trace_id,
        verdict,
        service,
        dnat,
        masquerade,
        conntrack,
        peer_seen,
        steps,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{Destination, Proto, Source};

    fn ev(
        table: &str,
        chain: &str,
        kind: TraceKind,
        rule: Option<u64>,
        v: TraceVerdict,
    ) -> TraceEvent {
        TraceEvent {
            id: 9,
            kind,
            nfproto: 2,
            table: table.into(),
            chain: chain.into(),
            rule,
            verdict: (kind != TraceKind::Policy).then(|| v.clone()),
            policy: (kind == TraceKind::Policy).then_some(v),
            iif: None,
            oif: None,
            mark: None,
            network_header: Vec::new(),
            transport_header: Vec::new(),
        }
    }

    fn probe() -> Probe {
        Probe {
            proto: Proto::Tcp,
            src: Source("203.0.113.7:40000".parse().unwrap()),
            dst: Destination("10.0.0.12:30080".parse().unwrap()),
        }
    }

    fn rule(chain: &str, handle: u64, exprs: Vec<RuleExpr>) -> ((String, String, u64), RuleInfo) {
        (
            ("realip".into(), chain.into(), handle),
            RuleInfo {
                chain: chain.into(),
                handle,
                exprs,
            },
        )
    }

    #[test]
    fn a_drop_in_an_external_chain_is_explained_as_local_policy() {
        let chain = "external-ABCDEFGH-demo-web-tcp-http";
        let mut owners = BTreeMap::new();
        owners.insert(
            chain.to_string(),
            Owner {
                service: "demo/web".into(),
                port: "http".into(),
                proto: "tcp",
                kind: "NodePort",
                external_traffic_policy: "Local",
                internal_traffic_policy: "Cluster",
            },
        );
        let drop = RuleExpr::Immediate {
            dreg: 0,
            data: Vec::new(),
            verdict: Some(TraceVerdict::Drop),
        };
        let obs = Observed {
            probe: probe(),
            node: "node-2".into(),
            mode: Mode::Scratch,
            trace_table: "realip-trace".into(),
            events: vec![
                ev(
                    "realip-trace",
                    "prerouting",
                    TraceKind::Rule,
                    Some(1),
                    TraceVerdict::Continue,
                ),
                ev(
                    "realip",
                    "nat-prerouting",
                    TraceKind::Rule,
                    Some(2),
                    TraceVerdict::Jump("services".into()),
                ),
                ev(
                    "realip",
                    chain,
                    TraceKind::Rule,
                    Some(5),
                    TraceVerdict::Drop,
                ),
            ],
            rules: [rule(chain, 5, vec![drop])].into_iter().collect(),
            picks: BTreeMap::new(),
            flow: None,
            owners,
        };
        let r = explain(&obs);
        assert_eq!(r.entered, Some("prerouting"));
        let Verdict::Drop(d) = &r.verdict else {
            panic!("{:?}", r.verdict)
        };
        assert!(d.why.contains("externalTrafficPolicy: Local"), "{}", d.why);
        assert_eq!(d.rule_text.as_deref(), Some("drop"));
        assert_eq!(r.steps.len(), 2);
        assert!(r.peer_seen.is_none());
        assert_eq!(
            r.service.as_ref().map(|o| o.service.as_str()),
            Some("demo/web")
        );
    }

    #[test]
    fn a_random_pick_reports_every_endpoint_and_its_chance() {
        let pick = vec![
            RuleExpr::Numgen {
                modulus: 2,
                dreg: 1,
            },
            RuleExpr::Lookup {
                set: "pick-X-c".into(),
                sreg: 1,
                dreg: Some(1),
                inverted: false,
            },
            RuleExpr::Nat {
                kind: 1,
                reg_addr: Some(1),
            },
        ];
        let a: SocketAddr = "10.244.1.10:8080".parse().unwrap();
        let b: SocketAddr = "10.244.2.10:8080".parse().unwrap();
        let p = probe();
        let obs = Observed {
            probe: p,
            node: "node-2".into(),
            mode: Mode::Scratch,
            trace_table: "t".into(),
            events: vec![
                ev(
                    "realip",
                    "service-X",
                    TraceKind::Rule,
                    Some(3),
                    TraceVerdict::Accept,
                ),
                ev(
                    "realip",
                    "nat-postrouting",
                    TraceKind::Policy,
                    None,
                    TraceVerdict::Accept,
                ),
            ],
            rules: [rule("service-X", 3, pick)].into_iter().collect(),
            picks: [(("realip".to_string(), "pick-X-c".to_string()), vec![a, b])]
                .into_iter()
                .collect(),
            flow: Some(Flow {
                proto: 6,
                orig_src: p.src.0,
                orig_dst: p.dst.0,
                reply_src: b,
                reply_dst: p.src.0,
                zone: 0,
            }),
            owners: BTreeMap::new(),
        };
        let r = explain(&obs);
        assert_eq!(r.verdict, Verdict::Accept);
        let d = r.dnat.unwrap();
        assert_eq!(d.to, Some(b));
        assert_eq!(d.endpoints, [a, b]);
        assert_eq!(d.chance, 0.5);
        assert_eq!(r.conntrack.unwrap().nat, "DNAT");
        assert!(!r.masquerade.masqueraded);
        assert_eq!(r.peer_seen, Some(p.src.0));
    }
}
