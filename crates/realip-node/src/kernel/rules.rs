//! Rules as netlink messages: each planned match and action as the
//! expressions `nft -f` makes of its text form.

use std::net::IpAddr;

use realip_nft::{reg, Batch, CmpOp, Expr, MetaKey, Verdict as NfVerdict};

use super::encode::{addr_width, ip_bytes, nf_family, proto_number};
use crate::model::Proto;
use crate::plan::names::{
    HAIRPIN, NO_ENDPOINT_NODEPORTS, NO_ENDPOINT_SERVICES, SERVICE_IPS, SERVICE_NODEPORTS,
};
use crate::plan::{Action, Family, Match, Rule, MASQ_MARK};

/// Network-header offsets of the source and destination addresses.
fn saddr_offset(family: Family) -> u32 {
    match family {
        Family::Ip => 12,
        Family::Ip6 => 8,
    }
}

fn daddr_offset(family: Family) -> u32 {
    match family {
        Family::Ip => 16,
        Family::Ip6 => 24,
    }
}

pub(crate) fn add_rules(
    batch: &mut Batch,
    family: Family,
    table: &str,
    chain: &str,
    rules: &[Rule],
) {
    let fam = nf_family(family);
    for r in rules {
        for exprs in rule_exprs(family, r) {
            batch.add_rule(fam, table, chain, &exprs);
        }
    }
}

/// The expressions of one planned rule. Usually one rule; a match on one
/// of several addresses (`ip saddr { a, b }`) becomes one rule per
/// address. That is exact for the plan's rules: the addresses of one
/// match never overlap (a node's pod CIDRs, a Service's cluster IPs), and
/// the actions behind such matches are `goto` (the first match ends the
/// chain) or marking for masquerade (the same twice as once).
fn rule_exprs(family: Family, r: &Rule) -> Vec<Vec<Expr>> {
    let mut variants: Vec<Vec<Expr>> = vec![Vec::new()];
    for m in &r.matches {
        let alternatives = match_exprs(family, m);
        if alternatives.len() == 1 {
            for v in &mut variants {
                v.extend(alternatives[0].iter().cloned());
            }
        } else {
            variants = variants
                .iter()
                .flat_map(|v| {
                    alternatives.iter().map(move |a| {
                        let mut v = v.clone();
                        v.extend(a.iter().cloned());
                        v
                    })
                })
                .collect();
        }
    }
    let action = action_exprs(family, &r.action);
    if action.len() == 1 {
        for v in &mut variants {
            v.extend(action[0].iter().cloned());
        }
        variants
    } else {
        // A two-rule action (endpoints-check) takes no matches.
        action
    }
}

/// Alternatives: the match holds when any one of them does.
fn match_exprs(family: Family, m: &Match) -> Vec<Vec<Expr>> {
    match m {
        Match::SaddrIn(cidrs) => cidrs
            .iter()
            .map(|c| {
                Expr::network_prefix(
                    saddr_offset(family),
                    &ip_bytes(c.network()),
                    u32::from(c.prefix()),
                    CmpOp::Eq,
                )
            })
            .collect(),
        Match::SaddrNotIn(cidrs) => vec![cidrs
            .iter()
            .flat_map(|c| {
                Expr::network_prefix(
                    saddr_offset(family),
                    &ip_bytes(c.network()),
                    u32::from(c.prefix()),
                    CmpOp::Neq,
                )
            })
            .collect()],
        Match::SaddrEq(ip) => vec![addr_eq(saddr_offset(family), *ip)],
        Match::FibSaddrLocal => vec![fib_local(true)],
        Match::SaddrInSet(set) => vec![vec![
            Expr::NetworkHeader {
                offset: saddr_offset(family),
                len: addr_width(family),
                dreg: reg::R1,
            },
            Expr::Lookup {
                set: set.clone(),
                sreg: reg::R1,
                dreg: None,
            },
        ]],
        Match::CtNew => vec![ct_state(0x08)],
        Match::CtInvalid => vec![ct_state(0x01)],
        Match::Hairpin => {
            let w = addr_width(family);
            vec![vec![
                Expr::NetworkHeader {
                    offset: saddr_offset(family),
                    len: w,
                    dreg: reg::R1,
                },
                Expr::NetworkHeader {
                    offset: daddr_offset(family),
                    len: w,
                    dreg: reg::r32(w / 4),
                },
                Expr::Lookup {
                    set: HAIRPIN.into(),
                    sreg: reg::R1,
                    dreg: None,
                },
            ]]
        }
        Match::PortInSet(set) => {
            let mut e = proto_port().to_vec();
            e.push(Expr::Lookup {
                set: (*set).to_string(),
                sreg: reg::R1,
                dreg: None,
            });
            vec![e]
        }
        Match::LocalDest => vec![local_dest(family)],
        Match::DestInSet(set) => {
            let mut e = dest_key(family);
            e.push(Expr::Lookup {
                set: (*set).to_string(),
                sreg: reg::R1,
                dreg: None,
            });
            vec![e]
        }
        Match::RandomZero(n) => vec![vec![
            Expr::NumgenRandom {
                modulus: *n,
                dreg: reg::R1,
            },
            Expr::Cmp {
                sreg: reg::R1,
                op: CmpOp::Eq,
                data: vec![0; 4],
            },
        ]],
        Match::MarkClear => vec![bits_test(
            Expr::Meta {
                key: MetaKey::Mark,
                dreg: reg::R1,
            },
            MASQ_MARK,
            CmpOp::Eq,
        )],
    }
}

fn addr_eq(offset: u32, ip: IpAddr) -> Vec<Expr> {
    let b = ip_bytes(ip);
    vec![
        Expr::NetworkHeader {
            offset,
            len: b.len() as u32,
            dreg: reg::R1,
        },
        Expr::Cmp {
            sreg: reg::R1,
            op: CmpOp::Eq,
            data: b,
        },
    ]
}

fn ct_state(bits: u32) -> Vec<Expr> {
    bits_test(Expr::CtState { dreg: reg::R1 }, bits, CmpOp::Neq)
}

/// Load a 32-bit value into R1, keep `bits`, compare with 0: `Eq` is "none
/// of the bits set", `Neq` "any of them".
fn bits_test(load: Expr, bits: u32, op: CmpOp) -> Vec<Expr> {
    vec![
        load,
        Expr::Bitwise {
            sreg: reg::R1,
            dreg: reg::R1,
            mask: bits.to_ne_bytes().to_vec(),
            xor: vec![0; 4],
        },
        Expr::Cmp {
            sreg: reg::R1,
            op,
            data: vec![0; 4],
        },
    ]
}

/// `meta l4proto . th dport` into R1 and the next 32-bit register.
fn proto_port() -> [Expr; 2] {
    [
        Expr::Meta {
            key: MetaKey::L4Proto,
            dreg: reg::R1,
        },
        Expr::TransportHeader {
            offset: 2,
            len: 2,
            dreg: reg::r32(1),
        },
    ]
}

/// `meta l4proto PROTO`: DNAT to a port needs the protocol pinned.
fn l4proto_is(proto: Proto) -> [Expr; 2] {
    [
        Expr::Meta {
            key: MetaKey::L4Proto,
            dreg: reg::R1,
        },
        Expr::Cmp {
            sreg: reg::R1,
            op: CmpOp::Eq,
            data: vec![proto_number(proto)],
        },
    ]
}

/// `fib saddr|daddr type local`: RTN_LOCAL is 2.
fn fib_local(saddr: bool) -> Vec<Expr> {
    vec![
        Expr::FibAddrType {
            saddr,
            dreg: reg::R1,
        },
        Expr::Cmp {
            sreg: reg::R1,
            op: CmpOp::Eq,
            data: 2u32.to_ne_bytes().to_vec(),
        },
    ]
}

/// `daddr . meta l4proto . th dport` into the registers from R1 on.
fn dest_key(family: Family) -> Vec<Expr> {
    let w = addr_width(family);
    vec![
        Expr::NetworkHeader {
            offset: daddr_offset(family),
            len: w,
            dreg: reg::R1,
        },
        Expr::Meta {
            key: MetaKey::L4Proto,
            dreg: reg::r32(w / 4),
        },
        Expr::TransportHeader {
            offset: 2,
            len: 2,
            dreg: reg::r32(w / 4 + 1),
        },
    ]
}

/// `fib daddr type local daddr != loopback`.
fn local_dest(family: Family) -> Vec<Expr> {
    let mut e = local_port_key(family);
    e.truncate(e.len() - 2);
    e
}

/// `fib daddr type local daddr != loopback meta l4proto . th dport`.
fn local_port_key(family: Family) -> Vec<Expr> {
    let mut e = fib_local(false);
    match family {
        // 127.0.0.0/8: the first byte.
        Family::Ip => e.extend(Expr::network_prefix(16, &[127, 0, 0, 0], 8, CmpOp::Neq)),
        Family::Ip6 => e.extend(
            addr_eq(24, IpAddr::V6(std::net::Ipv6Addr::LOCALHOST))
                .into_iter()
                .map(|x| match x {
                    Expr::Cmp { sreg, data, .. } => Expr::Cmp {
                        sreg,
                        op: CmpOp::Neq,
                        data,
                    },
                    other => other,
                }),
        ),
    }
    e.extend(proto_port());
    e
}

fn vmap(set: &str) -> Expr {
    Expr::Lookup {
        set: set.to_string(),
        sreg: reg::R1,
        dreg: Some(reg::VERDICT),
    }
}

/// The action's expressions; two entries only for the two-rule
/// endpoints-check dispatch.
fn action_exprs(family: Family, a: &Action) -> Vec<Vec<Expr>> {
    let one = |e: Vec<Expr>| vec![e];
    match a {
        Action::Jump(c) => one(vec![Expr::Verdict(NfVerdict::Jump(c.to_string()))]),
        Action::Goto(c) => one(vec![Expr::Verdict(NfVerdict::Goto(c.to_string()))]),
        Action::Return => one(vec![Expr::Verdict(NfVerdict::Return)]),
        Action::Drop => one(vec![Expr::Verdict(NfVerdict::Drop)]),
        Action::Reject => one(vec![Expr::Reject {
            icmp_code: match family {
                Family::Ip => 3,
                Family::Ip6 => 4,
            },
        }]),
        Action::MarkMasq => one(mark(!MASQ_MARK, MASQ_MARK)),
        Action::UnmarkMasq => one(mark(u32::MAX, MASQ_MARK)),
        Action::Masquerade => one(vec![Expr::Masquerade { fully_random: true }]),
        Action::Dnat {
            proto,
            ip,
            port,
            affinity,
        } => {
            let mut e = l4proto_is(*proto).to_vec();
            if let Some(set) = affinity {
                e.push(Expr::NetworkHeader {
                    offset: saddr_offset(family),
                    len: addr_width(family),
                    dreg: reg::R1,
                });
                e.push(Expr::DynsetUpdate {
                    set: set.clone(),
                    sreg: reg::R1,
                });
            }
            e.extend([
                Expr::Immediate {
                    dreg: reg::R1,
                    data: ip_bytes(*ip),
                },
                Expr::Immediate {
                    dreg: reg::R2,
                    data: port.to_be_bytes().to_vec(),
                },
                Expr::Dnat {
                    family: nf_family(family),
                    reg_addr: reg::R1,
                    reg_proto: reg::R2,
                },
            ]);
            one(e)
        }
        Action::DnatPick {
            proto,
            map,
            modulus,
        } => {
            let mut e = l4proto_is(*proto).to_vec();
            e.extend([
                Expr::NumgenRandom {
                    modulus: *modulus,
                    dreg: reg::R1,
                },
                Expr::Lookup {
                    set: map.to_string(),
                    sreg: reg::R1,
                    dreg: Some(reg::R1),
                },
                Expr::Dnat {
                    family: nf_family(family),
                    reg_addr: reg::R1,
                    reg_proto: reg::r32(addr_width(family) / 4),
                },
            ]);
            one(e)
        }
        Action::DispatchServices => {
            let mut e = dest_key(family);
            e.push(vmap(SERVICE_IPS));
            one(e)
        }
        Action::DispatchNodePorts => {
            let mut e = proto_port().to_vec();
            e.push(vmap(SERVICE_NODEPORTS));
            one(e)
        }
        Action::DispatchNoEndpoints => {
            let mut a = dest_key(family);
            a.push(vmap(NO_ENDPOINT_SERVICES));
            let mut b = local_port_key(family);
            b.push(vmap(NO_ENDPOINT_NODEPORTS));
            vec![a, b]
        }
    }
}

/// `meta mark set (meta mark & and) ^ xor`.
fn mark(and: u32, xor: u32) -> Vec<Expr> {
    vec![
        Expr::Meta {
            key: MetaKey::Mark,
            dreg: reg::R1,
        },
        Expr::Bitwise {
            sreg: reg::R1,
            dreg: reg::R1,
            mask: and.to_ne_bytes().to_vec(),
            xor: xor.to_ne_bytes().to_vec(),
        },
        Expr::MetaSet {
            key: MetaKey::Mark,
            sreg: reg::R1,
        },
    ]
}
