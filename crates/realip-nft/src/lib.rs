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
mod ctevents;
pub mod datatype;
mod dump;
mod expr;
mod family;
#[doc(hidden)]
pub mod fuzz;
pub mod reg;
mod socket;
mod trace;
mod writer;

pub use batch::{Batch, ChainType, ElemData, Hook, SetData, SetSpec};
pub use conntrack::Flow;
pub use ctevents::{new_flows, ConntrackEvents};
pub use dump::{parse_rule, parse_set_elements, RuleExpr, RuleInfo, SetElement};
pub use expr::{CmpOp, Expr, MetaKey, Verdict};
pub use family::Family;
pub use socket::{CommitError, Netlink};
pub use trace::{
    parse_trace_event, trace_messages, FiveTuple, TraceError, TraceEvent, TraceKind, TraceListener,
    TraceVerdict, TRACE_PRIORITY,
};
