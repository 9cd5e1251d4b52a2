//! realip-nft: nf_tables over netlink, with no `nft` binary and no libnftnl.
//!
//! A [`Batch`] is one nf_tables transaction: the kernel applies every
//! message in it or none (there is never a moment with half a ruleset).
//! Rules are lists of typed [`Expr`]s, the same expressions `nft
//! --debug=netlink` prints; [`Netlink::commit`] sends a batch in one
//! `sendmsg` and reads the kernel's verdict, naming the message that failed.
//!
//! Why our own encoder: `rustables` has no `fib`, `numgen` or `dynset`
//! expressions, `nftnl` binds libnftnl through unsafe FFI, and
//! `netlink-packet-netfilter` does not cover nf_tables. The subset
//! kube-proxy's data plane needs is small and stable (the uapi header
//! `linux/netfilter/nf_tables.h` is the contract), so it is encoded here,
//! in safe code.
//!
//! What it must not do: decide what the rules are (realip-node plans
//! them), or leave the kernel state unknown (every commit ends in an
//! acknowledgement or an error, read with a timeout).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod batch;
mod conntrack;
mod expr;
mod socket;

pub use batch::{Batch, ChainType, ElemData, Hook, SetData, SetSpec};
pub use conntrack::Flow;
pub use expr::{CmpOp, Expr, MetaKey, Verdict};
pub use socket::{CommitError, Netlink};

/// The parsers of what the kernel sends back, for the fuzz targets in
/// `fuzz/` only: not an API.
#[doc(hidden)]
pub mod fuzz {
    use std::net::SocketAddr;

    pub use crate::socket::Answer;

    /// Walk one receive buffer for request `seq`; `on_msg` gets each
    /// message's payload.
    pub fn answer(b: &[u8], seq: u32, dump: bool, on_msg: impl FnMut(&[u8])) -> Answer {
        crate::socket::answer(b, seq, dump, on_msg)
    }

    /// (sequence number, error code) of each NLMSG_ERROR in a buffer.
    pub fn replies(b: &[u8]) -> Vec<(u32, i32)> {
        crate::socket::replies(b)
    }

    /// The table names of one table dump message.
    pub fn table_names(payload: &[u8]) -> Vec<String> {
        crate::socket::table_names(payload)
    }

    /// A conntrack flow from one ctnetlink message's attributes.
    pub fn flow(attrs: &[u8]) -> Option<crate::Flow> {
        crate::conntrack::flow(attrs)
    }

    /// A flow's attributes as `conntrack_delete` writes its tuple, plus the
    /// reply tuple and the zone: what a dump message carries.
    pub fn flow_attrs(f: &crate::Flow) -> Vec<u8> {
        let mut w = crate::batch::Writer::default();
        let tuple = |w: &mut crate::batch::Writer, ty, src: SocketAddr, dst| {
            crate::conntrack::write_tuple(w, ty, f.proto, src, dst)
        };
        tuple(&mut w, 1, f.orig_src, f.orig_dst);
        tuple(&mut w, 2, f.reply_src, f.reply_dst);
        if f.zone != 0 {
            w.bytes(18, &f.zone.to_be_bytes());
        }
        w.buf
    }

    /// How a refused message of a batch is named, from its bytes at `at`.
    pub fn describe(buf: &[u8], at: usize) -> String {
        crate::batch::describe(buf, at)
    }
}

/// An nf_tables address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// `ip`: NFPROTO_IPV4.
    Ipv4,
    /// `ip6`: NFPROTO_IPV6.
    Ipv6,
}

impl Family {
    fn nfproto(self) -> u8 {
        match self {
            Family::Ipv4 => 2,
            Family::Ipv6 => 10,
        }
    }
}

/// Registers, as the netlink ABI numbers them.
pub mod reg {
    /// The verdict register (a map lookup's destination).
    pub const VERDICT: u32 = 0;
    /// The first 128-bit register (= 32-bit registers 0 to 3).
    pub const R1: u32 = 1;
    /// The second 128-bit register.
    pub const R2: u32 = 2;
    /// 32-bit register `n` (0..16): concatenations place each field in the
    /// next 32-bit register after the previous field's end.
    pub const fn r32(n: u32) -> u32 {
        8 + n
    }
}

/// nft's data type numbers, for set keys: the kernel ignores them, `nft
/// list` uses them to print elements.
pub mod datatype {
    /// A plain integer.
    pub const INTEGER: u32 = 4;
    /// `ipv4_addr`.
    pub const IPADDR: u32 = 7;
    /// `ipv6_addr`.
    pub const IP6ADDR: u32 = 8;
    /// `inet_proto`.
    pub const INET_PROTOCOL: u32 = 12;
    /// `inet_service`.
    pub const INET_SERVICE: u32 = 13;
    /// `mark`: a host-order 32-bit integer (what `numgen` yields).
    pub const MARK: u32 = 19;

    /// The type of a concatenation `a . b . c`, as nft computes it.
    pub fn concat(types: &[u32]) -> u32 {
        types.iter().fold(0, |acc, t| (acc << 6) | t)
    }
}
