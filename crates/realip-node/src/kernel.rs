//! The plan as nf_tables netlink messages: what `realip node` programs,
//! with no `nft` binary. The expressions are the ones `nft -f` makes of
//! the plan's text form (`nft --debug=netlink`), so the kernel holds the
//! same ruleset either way; the kernel tests compare the two listings.

use std::net::IpAddr;

use realip_nft::{
    datatype, reg, Batch, ChainType, CmpOp, ElemData, Expr, Family as NfFamily, Hook as NfHook,
    MetaKey, SetData, SetSpec, Verdict as NfVerdict,
};

use crate::model::Proto;
use crate::plan::names::{
    HAIRPIN, NO_ENDPOINT_NODEPORTS, NO_ENDPOINT_SERVICES, SERVICE_IPS, SERVICE_NODEPORTS,
};
use crate::plan::{
    Action, AffinitySet, Chain, ChainName, Family, Key, KeySet, Map, Match, Rule, Ruleset, Verdict,
    MASQ_MARK,
};

/// The netlink family of a plan family.
pub fn nf_family(f: Family) -> NfFamily {
    match f {
        Family::Ip => NfFamily::Ipv4,
        Family::Ip6 => NfFamily::Ipv6,
    }
}

/// Add to `batch` the messages that replace this family's table with
/// `rs`, atomically: create the table if missing, delete it with
/// everything in it, create it anew. Connections already tracked keep
/// their NAT bindings (conntrack holds them, not the rules), so a restart
/// or a full resync drops no established connection.
pub fn replace_table(batch: &mut Batch, rs: &Ruleset) {
    let fam = nf_family(rs.family);
    batch.add_table(fam, &rs.table);
    batch.del_table(fam, &rs.table);
    batch.add_table(fam, &rs.table);
    add_contents(batch, rs);
}

/// The table's sets, maps, chains and rules, for an empty table.
pub fn add_contents(batch: &mut Batch, rs: &Ruleset) {
    let fam = nf_family(rs.family);
    let t = rs.table.as_str();
    // In the text form's order (the kernel lists in creation order), with
    // every chain made before a map element or rule names it.
    for m in &rs.maps {
        add_map(batch, rs.family, t, m);
    }
    // Pick maps are filled before the rules that use them bind them: the
    // kernel checks a map's elements against each binding.
    for p in &rs.picks {
        let name = p.name.to_string();
        add_pick_map(batch, rs.family, t, &name, p.size);
        add_pick_elements(batch, rs.family, t, &name, 0, &p.endpoints);
    }
    for s in &rs.sets {
        add_affinity_set(batch, rs.family, t, s);
    }
    if rs.postrouting {
        add_hairpin_set(batch, rs.family, t);
        add_hairpin(batch, rs.family, t, &rs.hairpin);
    }
    for ks in &rs.key_sets {
        add_key_set(batch, rs.family, t, ks);
        add_keys(batch, rs.family, t, ks.name, &ks.keys);
    }
    for c in &rs.chains {
        add_chain(batch, fam, t, c);
    }
    for m in &rs.maps {
        add_map_elements(batch, rs.family, t, m);
    }
    for c in &rs.chains {
        add_rules(batch, rs.family, t, &c.name.to_string(), &c.rules);
    }
}

pub(crate) fn add_chain(batch: &mut Batch, fam: NfFamily, table: &str, c: &Chain) {
    let hook = c.hook.map(|h| {
        let hook = match h.hook {
            "prerouting" => NfHook::Prerouting,
            "input" => NfHook::Input,
            "forward" => NfHook::Forward,
            "output" => NfHook::Output,
            _ => NfHook::Postrouting,
        };
        let ty = if h.kind == "nat" {
            ChainType::Nat
        } else {
            ChainType::Filter
        };
        (hook, ty, h.priority.parse().unwrap_or(0))
    });
    batch.add_chain(fam, table, &c.name.to_string(), hook);
}

pub(crate) fn add_affinity_set(batch: &mut Batch, family: Family, table: &str, s: &AffinitySet) {
    let (key_type, key_len) = match family {
        Family::Ip => (datatype::IPADDR, 4),
        Family::Ip6 => (datatype::IP6ADDR, 16),
    };
    batch.add_set(
        nf_family(family),
        table,
        &SetSpec {
            name: s.name.clone(),
            key_type,
            key_len,
            data: SetData::None,
            dynamic_timeout_ms: Some(u64::from(s.timeout) * 1000),
            size: None,
            userdata: None,
        },
    );
}

/// A balancing group's data map: index -> endpoint address . port. One
/// map per group, bound by the group's one rule: a map shared by many
/// rules would cost the kernel a check of every element per binding.
pub(crate) fn add_pick_map(batch: &mut Batch, family: Family, table: &str, name: &str, size: u32) {
    let t = addr_type(family);
    batch.add_set(
        nf_family(family),
        table,
        &SetSpec {
            name: name.to_string(),
            key_type: datatype::INTEGER,
            key_len: 4,
            data: SetData::Value {
                type_id: datatype::concat(&[t, datatype::INET_SERVICE]),
                len: addr_width(family) + 4,
            },
            dynamic_timeout_ms: None,
            size: Some(size),
            userdata: Some(pick_typeof(family)),
        },
    );
}

/// What nft 1.0.6 stores as NFTA_SET_USERDATA for `typeof numgen random
/// mod 1 : ip daddr . tcp dport`: the key's byte order and the two
/// `typeof` expressions, in libnftnl's TLV format, taken from `nft
/// --debug=mnl`. With it `nft list` prints the map as the text form writes
/// it; the kernel ignores it. For `ip6 daddr` two bytes of the payload
/// description differ ([`pick_typeof`]).
const PICK_TYPEOF_IP: [u8; 100] = [
    0x00, 0x04, 0x01, 0x00, 0x00, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00, 0x03, 0x1a, 0x00, 0x04,
    0x17, 0x00, 0x00, 0x00, 0x01, 0x12, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00, 0x01, 0x04, 0x01, 0x00,
    0x00, 0x00, 0x02, 0x04, 0x00, 0x00, 0x00, 0x00, 0x04, 0x34, 0x00, 0x04, 0x0d, 0x00, 0x00, 0x00,
    0x01, 0x2c, 0x00, 0x14, 0x00, 0x04, 0x07, 0x00, 0x00, 0x00, 0x01, 0x0c, 0x00, 0x04, 0x0c, 0x00,
    0x00, 0x00, 0x01, 0x04, 0x0c, 0x00, 0x00, 0x00, 0x01, 0x14, 0x00, 0x04, 0x07, 0x00, 0x00, 0x00,
    0x01, 0x0c, 0x00, 0x04, 0x08, 0x00, 0x00, 0x00, 0x01, 0x04, 0x02, 0x00, 0x00, 0x00, 0x06, 0x04,
    0x00, 0x00, 0x00, 0x00,
];

/// The pick maps' userdata for a family: the IPv4 bytes, with the payload
/// base and offset of `ip6 daddr` in place of `ip daddr`'s.
fn pick_typeof(family: Family) -> Vec<u8> {
    let mut ud = PICK_TYPEOF_IP.to_vec();
    if family == Family::Ip6 {
        ud[62] = 0x0d;
        ud[68] = 0x09;
    }
    ud
}

/// A pick map key: the index, host order (as numgen yields it).
pub(crate) fn pick_key(i: u32) -> Vec<u8> {
    i.to_ne_bytes().to_vec()
}

/// Add pick map elements: endpoint `first + i` for each given one.
pub(crate) fn add_pick_elements(
    batch: &mut Batch,
    family: Family,
    table: &str,
    map: &str,
    first: u32,
    eps: &[(IpAddr, u16)],
) {
    let elements: Vec<_> = eps
        .iter()
        .enumerate()
        .map(|(i, (ip, port))| {
            let mut v = ip_bytes(*ip);
            v.extend_from_slice(&port.to_be_bytes());
            v.extend_from_slice(&[0, 0]);
            (pick_key(first + i as u32), Some(ElemData::Value(v)))
        })
        .collect();
    batch.add_elements(nf_family(family), table, map, &elements);
}

/// A set of map keys (`cluster-ips`, `cluster-external`,
/// `cluster-nodeports`).
pub(crate) fn add_key_set(batch: &mut Batch, family: Family, table: &str, ks: &KeySet) {
    let (key_type, key_len) = key_shape(family, ks.with_addr);
    batch.add_set(
        nf_family(family),
        table,
        &plain_set(key_type, key_len, ks.name, SetData::None),
    );
}

/// Add keys to a key set.
pub(crate) fn add_keys(batch: &mut Batch, family: Family, table: &str, set: &str, keys: &[Key]) {
    let elements: Vec<_> = keys.iter().map(|k| (key_bytes(k), None)).collect();
    batch.add_elements(nf_family(family), table, set, &elements);
}

/// Remove keys from a key set.
pub(crate) fn del_keys(batch: &mut Batch, family: Family, table: &str, set: &str, keys: &[Key]) {
    let keys: Vec<_> = keys.iter().map(key_bytes).collect();
    batch.del_elements(nf_family(family), table, set, &keys);
}

/// The `hairpin` set: `saddr . daddr` pairs of one endpoint address.
pub(crate) fn add_hairpin_set(batch: &mut Batch, family: Family, table: &str) {
    let t = addr_type(family);
    batch.add_set(
        nf_family(family),
        table,
        &plain_set(
            datatype::concat(&[t, t]),
            2 * addr_width(family),
            HAIRPIN,
            SetData::None,
        ),
    );
}

fn hairpin_keys(ips: &[IpAddr]) -> Vec<Vec<u8>> {
    ips.iter()
        .map(|ip| {
            let mut k = ip_bytes(*ip);
            k.extend(ip_bytes(*ip));
            k
        })
        .collect()
}

/// Add endpoint addresses to the `hairpin` set.
pub(crate) fn add_hairpin(batch: &mut Batch, family: Family, table: &str, ips: &[IpAddr]) {
    let elements: Vec<_> = hairpin_keys(ips).into_iter().map(|k| (k, None)).collect();
    batch.add_elements(nf_family(family), table, HAIRPIN, &elements);
}

/// Remove endpoint addresses from the `hairpin` set.
pub(crate) fn del_hairpin(batch: &mut Batch, family: Family, table: &str, ips: &[IpAddr]) {
    batch.del_elements(nf_family(family), table, HAIRPIN, &hairpin_keys(ips));
}

/// nft's address type of a family.
fn addr_type(family: Family) -> u32 {
    match family {
        Family::Ip => datatype::IPADDR,
        Family::Ip6 => datatype::IP6ADDR,
    }
}

/// Type and length of a dispatch key: `addr . proto . port` or
/// `proto . port`, each field padded to 4 bytes.
fn key_shape(family: Family, with_addr: bool) -> (u32, u32) {
    if with_addr {
        (
            datatype::concat(&[
                addr_type(family),
                datatype::INET_PROTOCOL,
                datatype::INET_SERVICE,
            ]),
            addr_width(family) + 8,
        )
    } else {
        (
            datatype::concat(&[datatype::INET_PROTOCOL, datatype::INET_SERVICE]),
            8,
        )
    }
}

/// A named set or map with nothing but a key and maybe verdicts.
fn plain_set(key_type: u32, key_len: u32, name: &str, data: SetData) -> SetSpec {
    SetSpec {
        name: name.to_string(),
        key_type,
        key_len,
        data,
        dynamic_timeout_ms: None,
        size: None,
        userdata: None,
    }
}

fn addr_width(family: Family) -> u32 {
    match family {
        Family::Ip => 4,
        Family::Ip6 => 16,
    }
}

pub(crate) fn add_map(batch: &mut Batch, family: Family, table: &str, m: &Map) {
    let (key_type, key_len) = key_shape(family, m.with_addr);
    batch.add_set(
        nf_family(family),
        table,
        &plain_set(key_type, key_len, m.name, SetData::Verdict),
    );
}

pub(crate) fn add_map_elements(batch: &mut Batch, family: Family, table: &str, m: &Map) {
    let fam = nf_family(family);
    let elements: Vec<_> = m
        .elements
        .iter()
        .map(|(k, v)| (key_bytes(k), Some(ElemData::Verdict(verdict(v)))))
        .collect();
    batch.add_elements(fam, table, m.name, &elements);
}

/// A map key as the registers hold it: each field padded to 4 bytes.
pub(crate) fn key_bytes(k: &Key) -> Vec<u8> {
    let mut out = Vec::with_capacity(24);
    let (proto, port) = match k {
        Key::Dest(ip, proto, port) => {
            out.extend_from_slice(&ip_bytes(*ip));
            (proto, port)
        }
        Key::Port(proto, port) => (proto, port),
    };
    out.extend_from_slice(&[proto_number(*proto), 0, 0, 0]);
    out.extend_from_slice(&port.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

fn proto_number(p: Proto) -> u8 {
    match p {
        Proto::Tcp => 6,
        Proto::Udp => 17,
    }
}

pub(crate) fn verdict(v: &Verdict) -> NfVerdict {
    match v {
        Verdict::Goto(c) => NfVerdict::Goto(c.to_string()),
        Verdict::Drop => NfVerdict::Drop,
        // Verdict maps cannot hold `reject`; a chain can.
        Verdict::Reject => NfVerdict::Goto(ChainName::Reject.to_string()),
    }
}

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
