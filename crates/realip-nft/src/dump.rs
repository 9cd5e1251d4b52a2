//! Reading back what the kernel holds: the rules of a chain (decoded into
//! the expressions this crate writes, and rendered roughly as `nft list`
//! prints them) and the elements of a set or map. A trace event names a
//! rule only by its handle; this is how it gets its text.

use std::net::IpAddr;

use crate::family::Family;
use crate::socket::{CommitError, Netlink};
use crate::trace::TraceVerdict;
use crate::writer::Writer;

const MSG_GETRULE: u16 = 7;
const MSG_GETSETELEM: u16 = 13;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;

/// Attribute iterator over a netlink attribute stream; stops at the first
/// malformed length instead of reading past the buffer.
pub(crate) fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let ty = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            return None;
        }
        let payload = &b[4..len];
        b = &b[((len + 3) & !3).min(b.len())..];
        Some((ty, payload))
    })
}

pub(crate) fn be_u32(v: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?))
}

pub(crate) fn be_u64(v: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(v.get(..8)?.try_into().ok()?))
}

pub(crate) fn nl_str(v: &[u8]) -> String {
    let end = v.iter().position(|&c| c == 0).unwrap_or(v.len());
    String::from_utf8_lossy(&v[..end]).into_owned()
}

/// NFTA_VERDICT_CODE and NFTA_VERDICT_CHAIN, nested.
pub(crate) fn verdict(v: &[u8]) -> Option<TraceVerdict> {
    let (mut code, mut chain) = (None, None);
    for (t, p) in attrs(v) {
        match t {
            1 => code = be_u32(p).map(|c| c as i32),
            2 => chain = Some(nl_str(p)),
            _ => {}
        }
    }
    Some(TraceVerdict::from_code(code?, chain))
}

/// NFTA_DATA_VALUE (1) or NFTA_DATA_VERDICT (2) inside `v`.
fn data(v: &[u8]) -> (Option<Vec<u8>>, Option<TraceVerdict>) {
    let (mut value, mut verd) = (None, None);
    for (t, p) in attrs(v) {
        match t {
            1 => value = Some(p.to_vec()),
            2 => verd = verdict(p),
            _ => {}
        }
    }
    (value, verd)
}

/// One expression of a rule read back from the kernel: the kinds realip
/// writes, decoded; any other kept by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleExpr {
    /// `payload`: load header bytes (base 1 network, 2 transport).
    Payload {
        /// NFT_PAYLOAD_*_HEADER.
        base: u32,
        /// Byte offset.
        offset: u32,
        /// Byte count.
        len: u32,
        /// Destination register.
        dreg: u32,
    },
    /// `meta`: load (`dreg`) or set (`sreg`) a key.
    Meta {
        /// NFT_META_*.
        key: u32,
        /// Load into.
        dreg: Option<u32>,
        /// Set from.
        sreg: Option<u32>,
    },
    /// `cmp`.
    Cmp {
        /// Source register.
        sreg: u32,
        /// NFT_CMP_* (0 eq, 1 neq).
        op: u32,
        /// The constant.
        data: Vec<u8>,
    },
    /// `bitwise`: `(sreg & mask) ^ xor`.
    Bitwise {
        /// Source register.
        sreg: u32,
        /// The mask.
        mask: Vec<u8>,
        /// The xor.
        xor: Vec<u8>,
    },
    /// `ct` load.
    Ct {
        /// NFT_CT_* (0 state).
        key: u32,
        /// Destination register.
        dreg: u32,
    },
    /// `immediate`: a verdict, or data into a register.
    Immediate {
        /// Destination register (0: the verdict).
        dreg: u32,
        /// Data, for a data register.
        data: Vec<u8>,
        /// The verdict, for the verdict register.
        verdict: Option<TraceVerdict>,
    },
    /// `lookup` in a set, or a map when `dreg` is there.
    Lookup {
        /// The set's name.
        set: String,
        /// Source register.
        sreg: u32,
        /// Destination register (0: a verdict map).
        dreg: Option<u32>,
        /// `!=` (NFT_LOOKUP_F_INV).
        inverted: bool,
    },
    /// `dynset`: add or update an element from the packet path.
    Dynset {
        /// The set's name.
        set: String,
    },
    /// `nat` (0 snat, 1 dnat).
    Nat {
        /// NFT_NAT_SNAT or NFT_NAT_DNAT.
        kind: u32,
        /// Register with the address.
        reg_addr: Option<u32>,
    },
    /// `masq`.
    Masquerade,
    /// `reject`.
    Reject,
    /// `fib`.
    Fib {
        /// NFTA_FIB_F_* (1 saddr, 2 daddr).
        flags: u32,
        /// NFT_FIB_RESULT_* (3 address type).
        result: u32,
        /// Destination register.
        dreg: u32,
    },
    /// `numgen`.
    Numgen {
        /// The modulus.
        modulus: u32,
        /// Destination register.
        dreg: u32,
    },
    /// `counter`.
    Counter,
    /// Any other expression, by name.
    Other(String),
}

fn u32_of(a: &[(u16, &[u8])], ty: u16) -> Option<u32> {
    a.iter()
        .find(|(t, _)| *t == ty)
        .and_then(|(_, v)| be_u32(v))
}

fn expr(name: &str, body: &[u8]) -> RuleExpr {
    let a: Vec<(u16, &[u8])> = attrs(body).collect();
    let u = |ty| u32_of(&a, ty);
    let raw = |ty: u16| a.iter().find(|(t, _)| *t == ty).map(|(_, v)| *v);
    let other = || RuleExpr::Other(name.to_string());
    match name {
        "payload" => match (u(1), u(2), u(3), u(4)) {
            (Some(dreg), Some(base), Some(offset), Some(len)) => RuleExpr::Payload {
                base,
                offset,
                len,
                dreg,
            },
            _ => other(),
        },
        "meta" => match u(2) {
            Some(key) => RuleExpr::Meta {
                key,
                dreg: u(1),
                sreg: u(3),
            },
            None => other(),
        },
        "cmp" => match (u(1), u(2), raw(3)) {
            (Some(sreg), Some(op), Some(d)) => RuleExpr::Cmp {
                sreg,
                op,
                data: data(d).0.unwrap_or_default(),
            },
            _ => other(),
        },
        "bitwise" => match (u(1), raw(4)) {
            (Some(sreg), Some(m)) => RuleExpr::Bitwise {
                sreg,
                mask: data(m).0.unwrap_or_default(),
                xor: raw(5).and_then(|x| data(x).0).unwrap_or_default(),
            },
            _ => other(),
        },
        "ct" => match (u(1), u(2)) {
            (Some(dreg), Some(key)) => RuleExpr::Ct { key, dreg },
            _ => other(),
        },
        "immediate" => match (u(1), raw(2)) {
            (Some(dreg), Some(d)) => {
                let (value, verdict) = data(d);
                RuleExpr::Immediate {
                    dreg,
                    data: value.unwrap_or_default(),
                    verdict,
                }
            }
            _ => other(),
        },
        "lookup" => match (raw(1), u(2)) {
            (Some(s), Some(sreg)) => RuleExpr::Lookup {
                set: nl_str(s),
                sreg,
                dreg: u(3),
                inverted: u(5).is_some_and(|f| f & 1 != 0),
            },
            _ => other(),
        },
        "dynset" => match raw(1) {
            Some(s) => RuleExpr::Dynset { set: nl_str(s) },
            None => other(),
        },
        "nat" => match u(1) {
            Some(kind) => RuleExpr::Nat {
                kind,
                reg_addr: u(3),
            },
            None => other(),
        },
        "masq" => RuleExpr::Masquerade,
        "reject" => RuleExpr::Reject,
        "fib" => match (u(1), u(2), u(3)) {
            (Some(dreg), Some(result), Some(flags)) => RuleExpr::Fib {
                flags,
                result,
                dreg,
            },
            _ => other(),
        },
        "numgen" => match (u(1), u(2)) {
            (Some(dreg), Some(modulus)) => RuleExpr::Numgen { modulus, dreg },
            _ => other(),
        },
        "counter" => RuleExpr::Counter,
        _ => other(),
    }
}

/// One rule as the kernel holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    /// The chain.
    pub chain: String,
    /// Its handle (what trace events name).
    pub handle: u64,
    /// Its expressions, in order.
    pub exprs: Vec<RuleExpr>,
}

/// A rule from one NFT_MSG_NEWRULE message (the bytes after the netlink
/// header).
pub fn parse_rule(payload: &[u8]) -> Option<RuleInfo> {
    let (mut chain, mut handle, mut exprs) = (None, None, Vec::new());
    for (t, v) in attrs(payload.get(4..)?) {
        match t {
            2 => chain = Some(nl_str(v)),
            3 => handle = be_u64(v),
            4 => {
                for (_, elem) in attrs(v) {
                    let (mut name, mut body) = (None, &[][..]);
                    for (et, ev) in attrs(elem) {
                        match et {
                            1 => name = Some(nl_str(ev)),
                            2 => body = ev,
                            _ => {}
                        }
                    }
                    if let Some(n) = name {
                        exprs.push(expr(&n, body));
                    }
                }
            }
            _ => {}
        }
    }
    Some(RuleInfo {
        chain: chain?,
        handle: handle?,
        exprs,
    })
}

/// What a register holds while a rule is rendered.
#[derive(Debug, Clone)]
enum Loaded {
    Saddr,
    Daddr,
    Sport,
    Dport,
    L4Proto,
    Mark,
    FibType(&'static str),
    CtState,
    Numgen(u32),
    Value(Vec<u8>),
    Other(String),
}

impl Loaded {
    fn name(&self, fam: Family) -> String {
        let ip = match fam {
            Family::Ipv4 => "ip",
            Family::Ipv6 => "ip6",
        };
        match self {
            Loaded::Saddr => format!("{ip} saddr"),
            Loaded::Daddr => format!("{ip} daddr"),
            Loaded::Sport => "th sport".into(),
            Loaded::Dport => "th dport".into(),
            Loaded::L4Proto => "meta l4proto".into(),
            Loaded::Mark => "meta mark".into(),
            Loaded::FibType(w) => format!("fib {w} type"),
            Loaded::CtState => "ct state".into(),
            Loaded::Numgen(m) => format!("numgen random mod {m}"),
            Loaded::Value(v) => value_text(&Loaded::Other(String::new()), v),
            Loaded::Other(s) => s.clone(),
        }
    }
}

fn ip_text(v: &[u8]) -> Option<IpAddr> {
    match v.len() {
        4 => <[u8; 4]>::try_from(v).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(v).ok().map(IpAddr::from),
        _ => None,
    }
}

fn value_text(what: &Loaded, v: &[u8]) -> String {
    match (what, v) {
        (Loaded::Saddr | Loaded::Daddr, _) => {
            // A prefix loads only its whole bytes: pad them out.
            let full = if v.len() <= 4 { 4 } else { 16 };
            let mut b = v.to_vec();
            b.resize(full, 0);
            match ip_text(&b) {
                Some(ip) if v.len() == full => ip.to_string(),
                Some(ip) => format!("{ip}/{}", v.len() * 8),
                None => hex(v),
            }
        }
        (Loaded::Sport | Loaded::Dport, [a, b, ..]) => u16::from_be_bytes([*a, *b]).to_string(),
        (Loaded::L4Proto, [p, ..]) => match p {
            6 => "tcp".into(),
            17 => "udp".into(),
            132 => "sctp".into(),
            n => n.to_string(),
        },
        (Loaded::FibType(_), [2, 0, 0, 0]) => "local".into(),
        _ => match ip_text(v) {
            Some(ip) => ip.to_string(),
            None if v.len() == 2 => u16::from_be_bytes([v[0], v[1]]).to_string(),
            None => hex(v),
        },
    }
}

fn hex(v: &[u8]) -> String {
    let mut s = String::from("0x");
    for b in v {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// A 32-bit register value as the number it is (host order, as the
/// kernel keeps marks and flags), else its bytes.
fn word(v: &[u8]) -> String {
    match <[u8; 4]>::try_from(v) {
        Ok(b) => format!("{:#x}", u32::from_ne_bytes(b)),
        Err(_) => hex(v),
    }
}

/// `what` after `& mask ^ xor`, as nft writes the common cases.
fn bits_text(what: &str, mask: &[u8], xor: &[u8]) -> String {
    let m = <[u8; 4]>::try_from(mask).map(u32::from_ne_bytes).ok();
    let x = <[u8; 4]>::try_from(xor).map(u32::from_ne_bytes).ok();
    match (m, x) {
        (Some(m), Some(x)) if x != 0 && m == !x => format!("{what} | {x:#x}"),
        (Some(m), Some(0)) => format!("{what} & {m:#x}"),
        (Some(u32::MAX), Some(x)) => format!("{what} ^ {x:#x}"),
        (Some(m), Some(x)) => format!("({what} & {m:#x}) ^ {x:#x}"),
        _ => format!("({what} & {}) ^ {}", hex(mask), hex(xor)),
    }
}

fn ct_states(mask: &[u8]) -> String {
    let bits = mask
        .get(..4)
        .and_then(|m| <[u8; 4]>::try_from(m).ok())
        .map(u32::from_ne_bytes)
        .unwrap_or(0);
    let names: Vec<&str> = [
        (1, "invalid"),
        (2, "established"),
        (4, "related"),
        (8, "new"),
        (64, "untracked"),
    ]
    .iter()
    .filter(|(b, _)| bits & b != 0)
    .map(|(_, n)| *n)
    .collect();
    names.join(",")
}

/// A register number as the index of its first 32-bit register.
fn reg32(r: u32) -> u32 {
    if (1..=4).contains(&r) {
        (r - 1) * 4
    } else {
        r.saturating_sub(8)
    }
}

impl RuleInfo {
    /// The rule roughly as `nft list` prints it (enough to tell which
    /// rule matched: the keys, sets, maps and verdicts it names).
    pub fn text(&self, fam: Family) -> String {
        let mut out: Vec<String> = Vec::new();
        // Loads not yet consumed, by first 32-bit register, in order.
        let mut pending: Vec<(u32, Loaded)> = Vec::new();
        let mut masked: Option<(Vec<u8>, Vec<u8>)> = None;
        let take_from = |pending: &mut Vec<(u32, Loaded)>, sreg: u32| -> Vec<Loaded> {
            let start = reg32(sreg);
            let (keep, took): (Vec<_>, Vec<_>) = pending.drain(..).partition(|(r, _)| *r < start);
            *pending = keep;
            took.into_iter().map(|(_, l)| l).collect()
        };
        for e in &self.exprs {
            match e {
                RuleExpr::Payload {
                    base,
                    offset,
                    len,
                    dreg,
                } => {
                    let l = match (fam, base, offset) {
                        (Family::Ipv4, 1, 12) | (Family::Ipv6, 1, 8) => Loaded::Saddr,
                        (Family::Ipv4, 1, 16) | (Family::Ipv6, 1, 24) => Loaded::Daddr,
                        (_, 2, 0) => Loaded::Sport,
                        (_, 2, 2) => Loaded::Dport,
                        _ => Loaded::Other(format!("@payload,{base},{offset},{len}")),
                    };
                    pending.retain(|(r, _)| *r != reg32(*dreg));
                    pending.push((reg32(*dreg), l));
                }
                RuleExpr::Meta {
                    key, dreg: Some(d), ..
                } => {
                    let l = match key {
                        3 => Loaded::Mark,
                        16 => Loaded::L4Proto,
                        k => Loaded::Other(format!("meta key {k}")),
                    };
                    pending.retain(|(r, _)| *r != reg32(*d));
                    pending.push((reg32(*d), l));
                }
                RuleExpr::Meta {
                    key, sreg: Some(s), ..
                } => {
                    let mut v = take_from(&mut pending, *s)
                        .first()
                        .map(|l| l.name(fam))
                        .unwrap_or_default();
                    if let Some((m, x)) = masked.take() {
                        v = bits_text(&v, &m, &x);
                    }
                    let k = match key {
                        3 => "mark".to_string(),
                        12 => "nftrace".to_string(),
                        k => format!("key {k}"),
                    };
                    out.push(format!("meta {k} set {v}"));
                }
                RuleExpr::Meta { .. } => {}
                RuleExpr::Fib { flags, dreg, .. } => {
                    let w = if flags & 1 != 0 { "saddr" } else { "daddr" };
                    pending.push((reg32(*dreg), Loaded::FibType(w)));
                }
                RuleExpr::Ct { key, dreg } => {
                    let l = if *key == 0 {
                        Loaded::CtState
                    } else {
                        Loaded::Other(format!("ct key {key}"))
                    };
                    pending.push((reg32(*dreg), l));
                }
                RuleExpr::Numgen { modulus, dreg } => {
                    pending.push((reg32(*dreg), Loaded::Numgen(*modulus)));
                }
                RuleExpr::Bitwise { mask, xor, .. } => masked = Some((mask.clone(), xor.clone())),
                RuleExpr::Cmp { sreg, op, data } => {
                    let what = take_from(&mut pending, *sreg)
                        .into_iter()
                        .next()
                        .unwrap_or(Loaded::Other("?".into()));
                    let opt = if *op == 1 { "!= " } else { "" };
                    let text = match (&what, masked.take().map(|(m, _)| m)) {
                        (Loaded::CtState, Some(m)) => {
                            let states = ct_states(&m);
                            if *op == 1 {
                                format!("ct state {states}")
                            } else {
                                format!("ct state != {states}")
                            }
                        }
                        (Loaded::Saddr | Loaded::Daddr, Some(m)) => {
                            let bits: u32 = m.iter().map(|b| b.count_ones()).sum();
                            let v = value_text(&what, data);
                            let v = v.split('/').next().unwrap_or("").to_string();
                            format!("{} {opt}{v}/{bits}", what.name(fam))
                        }
                        (_, Some(m)) => format!(
                            "{} & {} {}{}",
                            what.name(fam),
                            word(&m),
                            if *op == 1 { "!= " } else { "== " },
                            word(data)
                        ),
                        (_, None) => {
                            format!("{} {opt}{}", what.name(fam), value_text(&what, data))
                        }
                    };
                    out.push(text);
                }
                RuleExpr::Immediate {
                    dreg: 0,
                    verdict: Some(v),
                    ..
                } => out.push(v.to_string()),
                RuleExpr::Immediate { dreg, data, .. } => {
                    pending.push((reg32(*dreg), Loaded::Value(data.clone())));
                }
                RuleExpr::Lookup {
                    set,
                    sreg,
                    dreg,
                    inverted,
                } => {
                    let key: Vec<String> = take_from(&mut pending, *sreg)
                        .iter()
                        .map(|l| l.name(fam))
                        .collect();
                    let key = key.join(" . ");
                    match dreg {
                        Some(0) => out.push(format!("{key} vmap @{set}")),
                        Some(d) => {
                            pending.push((reg32(*d), Loaded::Other(format!("{key} map @{set}"))))
                        }
                        None if *inverted => out.push(format!("{key} != @{set}")),
                        None => out.push(format!("{key} @{set}")),
                    }
                }
                RuleExpr::Dynset { set } => out.push(format!("update @{set}")),
                RuleExpr::Nat { kind, reg_addr } => {
                    let to: Vec<String> = reg_addr
                        .map(|r| take_from(&mut pending, r))
                        .unwrap_or_default()
                        .iter()
                        .map(|l| l.name(fam))
                        .collect();
                    let k = if *kind == 1 { "dnat" } else { "snat" };
                    out.push(format!("{k} to {}", to.join(" : ")));
                }
                RuleExpr::Masquerade => out.push("masquerade".into()),
                RuleExpr::Reject => out.push("reject".into()),
                RuleExpr::Counter => {}
                RuleExpr::Other(n) => out.push(format!("<{n}>")),
            }
        }
        out.join(" ")
    }

    /// The verdict the rule ends in, if it names one.
    pub fn verdict(&self) -> Option<&TraceVerdict> {
        self.exprs.iter().rev().find_map(|e| match e {
            RuleExpr::Immediate {
                dreg: 0,
                verdict: Some(v),
                ..
            } => Some(v),
            _ => None,
        })
    }

    /// A random pick: the map a `numgen random mod N` indexes, and N.
    pub fn pick(&self) -> Option<(&str, u32)> {
        let mut modulus = None;
        for e in &self.exprs {
            match e {
                RuleExpr::Numgen { modulus: m, .. } => modulus = Some(*m),
                RuleExpr::Lookup {
                    set, dreg: Some(d), ..
                } if *d != 0 => {
                    if let Some(m) = modulus {
                        return Some((set, m));
                    }
                }
                _ => {}
            }
        }
        None
    }

    /// The sets and maps the rule looks the packet up in.
    pub fn sets(&self) -> Vec<&str> {
        self.exprs
            .iter()
            .filter_map(|e| match e {
                RuleExpr::Lookup { set, .. } => Some(set.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Whether the rule has this kind of statement.
    pub fn has(&self, what: fn(&RuleExpr) -> bool) -> bool {
        self.exprs.iter().any(what)
    }
}

/// One element of a set or map: its key and, for a map, its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetElement {
    /// The key's bytes.
    pub key: Vec<u8>,
    /// A data map's value.
    pub value: Option<Vec<u8>>,
    /// A verdict map's verdict.
    pub verdict: Option<TraceVerdict>,
}

/// The elements of one NFT_MSG_NEWSETELEM dump message.
pub fn parse_set_elements(payload: &[u8]) -> Vec<SetElement> {
    let mut out = Vec::new();
    let Some(a) = payload.get(4..) else {
        return out;
    };
    for (t, list) in attrs(a) {
        if t != 3 {
            continue;
        }
        for (_, elem) in attrs(list) {
            let mut e = SetElement {
                key: Vec::new(),
                value: None,
                verdict: None,
            };
            for (et, ev) in attrs(elem) {
                match et {
                    1 => e.key = data(ev).0.unwrap_or_default(),
                    2 => (e.value, e.verdict) = data(ev),
                    _ => {}
                }
            }
            out.push(e);
        }
    }
    out
}

fn request(w: &mut Writer, msg: u16, family: Family, seq: u32) -> usize {
    let at = w.buf.len();
    w.buf.extend_from_slice(&0u32.to_ne_bytes());
    w.buf.extend_from_slice(&((10u16 << 8) | msg).to_ne_bytes());
    w.buf
        .extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    w.buf.extend_from_slice(&seq.to_ne_bytes());
    w.buf.extend_from_slice(&0u32.to_ne_bytes());
    w.buf.extend_from_slice(&[family.nfproto(), 0, 0, 0]);
    at
}

fn finish(w: &mut Writer, at: usize) {
    let len = (w.buf.len() - at) as u32;
    w.buf[at..at + 4].copy_from_slice(&len.to_ne_bytes());
}

impl Netlink {
    /// The rules of one chain, in order.
    pub fn chain_rules(
        &mut self,
        family: Family,
        table: &str,
        chain: &str,
    ) -> Result<Vec<RuleInfo>, CommitError> {
        let mut w = Writer::default();
        let seq = self.next_seq();
        let at = request(&mut w, MSG_GETRULE, family, seq);
        w.str(1, table);
        w.str(2, chain);
        finish(&mut w, at);
        let mut rules = Vec::new();
        self.exchange(&w.buf, seq, true, |payload| {
            // The kernel filters the dump by table and chain; the check
            // keeps an older kernel's unfiltered answer from mixing in.
            if let Some(r) = parse_rule(payload).filter(|r| r.chain == chain) {
                rules.push(r);
            }
        })?;
        Ok(rules)
    }

    /// The elements of a set or map.
    pub fn set_elements(
        &mut self,
        family: Family,
        table: &str,
        set: &str,
    ) -> Result<Vec<SetElement>, CommitError> {
        let mut w = Writer::default();
        let seq = self.next_seq();
        let at = request(&mut w, MSG_GETSETELEM, family, seq);
        w.str(1, table);
        w.str(2, set);
        finish(&mut w, at);
        let mut out = Vec::new();
        self.exchange(&w.buf, seq, true, |payload| {
            out.extend(parse_set_elements(payload));
        })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::{CmpOp, Expr, Verdict};
    use crate::reg;

    fn rule_bytes(exprs: &[Expr]) -> Vec<u8> {
        let mut w = Writer::default();
        w.buf.extend_from_slice(&[2, 0, 0, 0]);
        w.str(1, "realip");
        w.str(2, "services");
        w.u64(3, 12);
        let l = w.nest(4);
        for e in exprs {
            e.write(&mut w);
        }
        w.end(l);
        w.buf
    }

    #[test]
    fn a_pick_rule_reads_back_with_its_map_and_modulus() {
        let b = rule_bytes(&[
            Expr::NumgenRandom {
                modulus: 2,
                dreg: reg::R1,
            },
            Expr::Lookup {
                set: "pick-ABC-c".into(),
                sreg: reg::R1,
                dreg: Some(reg::R1),
            },
            Expr::Dnat {
                family: Family::Ipv4,
                reg_addr: reg::R1,
                reg_proto: reg::r32(1),
            },
        ]);
        let r = parse_rule(&b).unwrap();
        assert_eq!((r.chain.as_str(), r.handle), ("services", 12));
        assert_eq!(r.pick(), Some(("pick-ABC-c", 2)));
        assert_eq!(
            r.text(Family::Ipv4),
            "dnat to numgen random mod 2 map @pick-ABC-c"
        );
    }

    #[test]
    fn a_dispatch_rule_renders_as_nft_writes_it() {
        let b = rule_bytes(&[
            Expr::NetworkHeader {
                offset: 16,
                len: 4,
                dreg: reg::r32(0),
            },
            Expr::Meta {
                key: crate::expr::MetaKey::L4Proto,
                dreg: reg::r32(1),
            },
            Expr::TransportHeader {
                offset: 2,
                len: 2,
                dreg: reg::r32(2),
            },
            Expr::Lookup {
                set: "cluster-ips".into(),
                sreg: reg::r32(0),
                dreg: None,
            },
            Expr::Verdict(Verdict::Jump("mark-for-masquerade".into())),
        ]);
        let r = parse_rule(&b).unwrap();
        assert_eq!(
            r.text(Family::Ipv4),
            "ip daddr . meta l4proto . th dport @cluster-ips jump mark-for-masquerade"
        );
        assert_eq!(r.sets(), ["cluster-ips"]);
        let mut p = Expr::network_prefix(12, &[10, 244, 1, 0], 24, CmpOp::Neq);
        p.push(Expr::Verdict(Verdict::Goto("x".into())));
        let r = parse_rule(&rule_bytes(&p)).unwrap();
        assert_eq!(r.text(Family::Ipv4), "ip saddr != 10.244.1.0/24 goto x");
    }

    #[test]
    fn truncated_rules_and_elements_give_nothing_rather_than_a_panic() {
        let b = rule_bytes(&[Expr::Verdict(Verdict::Accept)]);
        for cut in 0..b.len() {
            let _ = parse_rule(&b[..cut]);
            let _ = parse_set_elements(&b[..cut]);
        }
    }
}
