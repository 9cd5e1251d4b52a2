//! The chains every table has whatever its Services: the base chains
//! hooked into netfilter, and the dispatch, no-endpoint and masquerade
//! chains they lead to (kube-proxy's `setupNFTables`).

use realip_core::Cidr;

use super::names::{BaseChain, ChainName, CLUSTER_EXTERNAL, CLUSTER_IPS, CLUSTER_NODEPORTS};
use super::ruleset::{Action, Chain, Hook, Match, Rule};

/// Where a base chain hooks in. Filtering runs before DNAT (priority
/// dstnat - 10), on the addresses the client used.
fn hook(b: BaseChain) -> Hook {
    let (kind, hook, priority) = match b {
        BaseChain::NatPrerouting => ("nat", "prerouting", "-100"),
        BaseChain::NatOutput => ("nat", "output", "-100"),
        BaseChain::NatPostrouting => ("nat", "postrouting", "100"),
        BaseChain::FilterInput => ("filter", "input", "-110"),
        BaseChain::FilterForward => ("filter", "forward", "-110"),
        BaseChain::FilterOutput => ("filter", "output", "-110"),
    };
    Hook {
        kind,
        hook,
        priority,
    }
}

fn jump(to: ChainName) -> Rule {
    Rule::new(Action::Jump(to))
}

fn jump_when(matches: Vec<Match>, to: ChainName) -> Rule {
    Rule::when(matches, Action::Jump(to))
}

/// The base chains, in the order the table lists them.
pub(crate) fn base_chains() -> Vec<Chain> {
    BaseChain::ALL
        .into_iter()
        .map(|b| {
            let rules = match b {
                BaseChain::NatPrerouting | BaseChain::NatOutput => vec![jump(ChainName::Services)],
                BaseChain::NatPostrouting => vec![
                    // A pod that reached itself through a Service must not
                    // see its own address as the source: its reply would
                    // skip the un-DNAT.
                    jump_when(vec![Match::Hairpin], ChainName::MarkForMasquerade),
                    jump(ChainName::Masquerading),
                ],
                // The reject verdict is only valid in input, forward and
                // output hooks, hence three entries to endpoints-check.
                BaseChain::FilterInput | BaseChain::FilterOutput => {
                    vec![jump_when(vec![Match::CtNew], ChainName::EndpointsCheck)]
                }
                BaseChain::FilterForward => vec![
                    Rule::when(vec![Match::CtInvalid], Action::Drop),
                    jump_when(vec![Match::CtNew], ChainName::EndpointsCheck),
                ],
            };
            Chain {
                name: ChainName::Base(b),
                hook: Some(hook(b)),
                rules,
            }
        })
        .collect()
}

/// The regular chains every table has, for a node whose pod ranges of
/// this family are `pod_cidrs`.
pub(crate) fn top_level_chains(pod_cidrs: &[Cidr]) -> Vec<Chain> {
    let chain = |name, rules| Chain {
        name,
        hook: None,
        rules,
    };
    let mut services = Vec::new();
    if !pod_cidrs.is_empty() {
        services.push(jump_when(
            vec![
                Match::SaddrNotIn(pod_cidrs.to_vec()),
                Match::DestInSet(CLUSTER_IPS),
            ],
            ChainName::MarkForMasquerade,
        ));
    }
    services.push(jump_when(
        vec![Match::DestInSet(CLUSTER_EXTERNAL)],
        ChainName::MarkForMasquerade,
    ));
    services.push(Rule::new(Action::DispatchServices));
    services.push(jump_when(vec![Match::LocalDest], ChainName::NodePorts));
    vec![
        chain(ChainName::Services, services),
        chain(
            ChainName::NodePorts,
            vec![
                jump_when(
                    vec![Match::PortInSet(CLUSTER_NODEPORTS)],
                    ChainName::MarkForMasquerade,
                ),
                Rule::new(Action::DispatchNodePorts),
            ],
        ),
        chain(
            ChainName::EndpointsCheck,
            vec![Rule::new(Action::DispatchNoEndpoints)],
        ),
        chain(ChainName::Reject, vec![Rule::new(Action::Reject)]),
        chain(
            ChainName::MarkForMasquerade,
            vec![Rule::new(Action::MarkMasq)],
        ),
        chain(
            ChainName::Masquerading,
            vec![
                Rule::when(vec![Match::MarkClear], Action::Return),
                Rule::new(Action::UnmarkMasq),
                Rule::new(Action::Masquerade),
            ],
        ),
    ]
}
