//! Expressions, the verbs of an nf_tables rule, and their netlink form.

use crate::writer::Writer;

/// Where a verdict sends the packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Let it through (this hook).
    Accept,
    /// Drop silently.
    Drop,
    /// Back to the calling chain.
    Return,
    /// Into a chain, coming back after it.
    Jump(String),
    /// Into a chain, not coming back.
    Goto(String),
}

impl Verdict {
    pub(crate) fn write(&self, w: &mut Writer) {
        // NFTA_DATA_VERDICT { NFTA_VERDICT_CODE, NFTA_VERDICT_CHAIN }
        let v = w.nest(2);
        let (code, chain): (i32, Option<&str>) = match self {
            Verdict::Accept => (1, None),
            Verdict::Drop => (0, None),
            Verdict::Return => (-5, None),
            Verdict::Jump(c) => (-3, Some(c)),
            Verdict::Goto(c) => (-4, Some(c)),
        };
        w.u32(1, code as u32);
        if let Some(c) = chain {
            w.str(2, c);
        }
        w.end(v);
    }
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `==`
    Eq,
    /// `!=`
    Neq,
}

/// Packet metadata keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKey {
    /// The packet mark.
    Mark,
    /// The transport protocol number.
    L4Proto,
    /// The packet's trace bit: set, nf_tables reports every rule the
    /// packet meets over NFNLGRP_NFTRACE (`meta nftrace set 1`).
    Nftrace,
}

impl MetaKey {
    fn code(self) -> u32 {
        match self {
            MetaKey::Mark => 3,
            MetaKey::L4Proto => 16,
            MetaKey::Nftrace => 12,
        }
    }
}

/// One expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// Load `len` bytes at `offset` of the network header into `dreg`.
    NetworkHeader {
        /// Byte offset.
        offset: u32,
        /// Byte count.
        len: u32,
        /// Destination register.
        dreg: u32,
    },
    /// Load `len` bytes at `offset` of the transport header into `dreg`.
    TransportHeader {
        /// Byte offset.
        offset: u32,
        /// Byte count.
        len: u32,
        /// Destination register.
        dreg: u32,
    },
    /// Load packet metadata.
    Meta {
        /// What.
        key: MetaKey,
        /// Destination register.
        dreg: u32,
    },
    /// Set packet metadata from a register.
    MetaSet {
        /// What.
        key: MetaKey,
        /// Source register.
        sreg: u32,
    },
    /// Compare a register with a constant; a mismatch ends the rule.
    Cmp {
        /// Source register.
        sreg: u32,
        /// Operator.
        op: CmpOp,
        /// The constant, as bytes in the register.
        data: Vec<u8>,
    },
    /// `dreg = (sreg & mask) ^ xor`.
    Bitwise {
        /// Source register.
        sreg: u32,
        /// Destination register.
        dreg: u32,
        /// AND mask.
        mask: Vec<u8>,
        /// XOR value (same length).
        xor: Vec<u8>,
    },
    /// Load the connection-tracking state bits.
    CtState {
        /// Destination register.
        dreg: u32,
    },
    /// Put a constant in a register.
    Immediate {
        /// Destination register.
        dreg: u32,
        /// The bytes.
        data: Vec<u8>,
    },
    /// A verdict.
    Verdict(Verdict),
    /// Look a register up in a set (a miss ends the rule), or in a verdict
    /// map (the element's verdict is taken).
    Lookup {
        /// The set's name.
        set: String,
        /// Source register (start of the key).
        sreg: u32,
        /// For maps: the destination register ([`crate::reg::VERDICT`] for
        /// verdict maps, a data register for data maps).
        dreg: Option<u32>,
    },
    /// Add or refresh the key in a dynamic set.
    DynsetUpdate {
        /// The set's name.
        set: String,
        /// Source register of the key.
        sreg: u32,
    },
    /// Destination NAT to the address in `reg_addr` and the port in
    /// `reg_proto`.
    Dnat {
        /// The address family of the new destination.
        family: crate::family::Family,
        /// Register with the address.
        reg_addr: u32,
        /// Register with the port.
        reg_proto: u32,
    },
    /// Source NAT to the outgoing interface's address.
    Masquerade {
        /// Fully random source ports.
        fully_random: bool,
    },
    /// Reject with ICMP (port unreachable) or a TCP reset.
    Reject {
        /// The ICMP code: 3 (port unreachable) for IPv4, 4 for IPv6.
        icmp_code: u8,
    },
    /// The routing type of the packet's source or destination address.
    FibAddrType {
        /// `true`: source address; `false`: destination.
        saddr: bool,
        /// Destination register.
        dreg: u32,
    },
    /// A random number modulo `modulus`.
    NumgenRandom {
        /// The modulus.
        modulus: u32,
        /// Destination register.
        dreg: u32,
    },
}

impl Expr {
    /// Match `len` bytes of the network header against `value` under
    /// `prefix` bits (a CIDR match), into register 1. Whole-byte prefixes
    /// load only the prefix bytes, as nft does.
    pub fn network_prefix(offset: u32, value: &[u8], prefix: u32, op: CmpOp) -> Vec<Expr> {
        let full = value.len() as u32 * 8;
        let prefix = prefix.min(full);
        if prefix & 7 == 0 {
            let n = prefix / 8;
            return vec![
                Expr::NetworkHeader {
                    offset,
                    len: n,
                    dreg: crate::reg::R1,
                },
                Expr::Cmp {
                    sreg: crate::reg::R1,
                    op,
                    data: value[..n as usize].to_vec(),
                },
            ];
        }
        let mut mask = vec![0u8; value.len()];
        for (i, m) in mask.iter_mut().enumerate() {
            let bits = prefix.saturating_sub(i as u32 * 8).min(8);
            *m = if bits == 0 { 0 } else { 0xffu8 << (8 - bits) };
        }
        let masked: Vec<u8> = value.iter().zip(&mask).map(|(v, m)| v & m).collect();
        vec![
            Expr::NetworkHeader {
                offset,
                len: value.len() as u32,
                dreg: crate::reg::R1,
            },
            Expr::Bitwise {
                sreg: crate::reg::R1,
                dreg: crate::reg::R1,
                mask,
                xor: vec![0; value.len()],
            },
            Expr::Cmp {
                sreg: crate::reg::R1,
                op,
                data: masked,
            },
        ]
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        // NFTA_LIST_ELEM { NFTA_EXPR_NAME, NFTA_EXPR_DATA { ... } }
        let elem = w.nest(1);
        w.str(1, self.name());
        let data = w.nest(2);
        match self {
            Expr::NetworkHeader { offset, len, dreg } => payload(w, 1, *offset, *len, *dreg),
            Expr::TransportHeader { offset, len, dreg } => payload(w, 2, *offset, *len, *dreg),
            Expr::Meta { key, dreg } => {
                w.u32(1, *dreg);
                w.u32(2, key.code());
            }
            Expr::MetaSet { key, sreg } => {
                w.u32(2, key.code());
                w.u32(3, *sreg);
            }
            Expr::Cmp { sreg, op, data } => {
                w.u32(1, *sreg);
                w.u32(
                    2,
                    match op {
                        CmpOp::Eq => 0,
                        CmpOp::Neq => 1,
                    },
                );
                w.value(3, data);
            }
            Expr::Bitwise {
                sreg,
                dreg,
                mask,
                xor,
            } => {
                w.u32(1, *sreg);
                w.u32(2, *dreg);
                w.u32(3, mask.len() as u32);
                w.value(4, mask);
                w.value(5, xor);
            }
            Expr::CtState { dreg } => {
                w.u32(1, *dreg);
                w.u32(2, 0);
            }
            Expr::Immediate { dreg, data } => {
                w.u32(1, *dreg);
                w.value(2, data);
            }
            Expr::Verdict(v) => {
                w.u32(1, crate::reg::VERDICT);
                let d = w.nest(2);
                v.write(w);
                w.end(d);
            }
            Expr::Lookup { set, sreg, dreg } => {
                w.str(1, set);
                w.u32(2, *sreg);
                if let Some(d) = dreg {
                    w.u32(3, *d);
                }
            }
            Expr::DynsetUpdate { set, sreg } => {
                w.str(1, set);
                w.u32(3, 1);
                w.u32(4, *sreg);
            }
            Expr::Dnat {
                family,
                reg_addr,
                reg_proto,
            } => {
                w.u32(1, 1);
                w.u32(2, u32::from(family.nfproto()));
                w.u32(3, *reg_addr);
                w.u32(5, *reg_proto);
                // NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_PROTO_SPECIFIED
                w.u32(7, 0x1 | 0x2);
            }
            Expr::Masquerade { fully_random } => {
                if *fully_random {
                    w.u32(1, 0x10);
                }
            }
            Expr::Reject { icmp_code } => {
                w.u32(1, 0);
                w.bytes(2, &[*icmp_code]);
            }
            Expr::FibAddrType { saddr, dreg } => {
                w.u32(1, *dreg);
                w.u32(2, 3);
                w.u32(3, if *saddr { 1 } else { 2 });
            }
            Expr::NumgenRandom { modulus, dreg } => {
                w.u32(1, *dreg);
                w.u32(2, *modulus);
                w.u32(3, 1);
            }
        }
        w.end(data);
        w.end(elem);
    }

    fn name(&self) -> &'static str {
        match self {
            Expr::NetworkHeader { .. } | Expr::TransportHeader { .. } => "payload",
            Expr::Meta { .. } | Expr::MetaSet { .. } => "meta",
            Expr::Cmp { .. } => "cmp",
            Expr::Bitwise { .. } => "bitwise",
            Expr::CtState { .. } => "ct",
            Expr::Immediate { .. } | Expr::Verdict(_) => "immediate",
            Expr::Lookup { .. } => "lookup",
            Expr::DynsetUpdate { .. } => "dynset",
            Expr::Dnat { .. } => "nat",
            Expr::Masquerade { .. } => "masq",
            Expr::Reject { .. } => "reject",
            Expr::FibAddrType { .. } => "fib",
            Expr::NumgenRandom { .. } => "numgen",
        }
    }
}

fn payload(w: &mut Writer, base: u32, offset: u32, len: u32, dreg: u32) {
    w.u32(1, dreg);
    w.u32(2, base);
    w.u32(3, offset);
    w.u32(4, len);
}
