//! nf_tables tracing: the events the kernel sends for a packet whose
//! trace bit is set (NFT_MSG_TRACE on the NFNLGRP_NFTRACE multicast group
//! of NETLINK_NETFILTER), and a scratch table that sets that bit for one
//! 5-tuple only.
//!
//! The attribute layout is the uapi header's `enum nft_trace_attributes`;
//! the kernel writes every number in it big-endian. It sends the
//! packet's headers only with the first event of each base chain it
//! enters, so the headers after a DNAT show in the next hook's events.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{recv, setsockopt, sockopt, MsgFlags};
use nix::sys::time::TimeVal;

use crate::batch::{Batch, ChainType, Hook};
use crate::dump::{attrs, be_u32, be_u64, nl_str, verdict};
use crate::expr::{CmpOp, Expr, MetaKey};
use crate::family::Family;
use crate::reg;
use crate::socket::{messages, netfilter_socket, CommitError, Netlink};

/// NFNLGRP_NFTRACE.
const GROUP_NFTRACE: u32 = 9;
/// NFT_MSG_TRACE in the nf_tables subsystem (10).
const MSG_TRACE: u16 = (10 << 8) | 17;

/// Where a verdict sends the packet, as a trace event or a rule says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceVerdict {
    /// NF_ACCEPT: on to the next hook.
    Accept,
    /// NF_DROP (also what `reject` returns after it answers).
    Drop,
    /// NFT_CONTINUE: the rule matched and the chain goes on.
    Continue,
    /// NFT_BREAK: the rule stopped (a lookup or compare missed).
    Break,
    /// NFT_RETURN: back to the calling chain.
    Return,
    /// NFT_JUMP to a chain.
    Jump(String),
    /// NFT_GOTO to a chain.
    Goto(String),
    /// Any other code (queue, stolen, ...).
    Other(i32),
}

impl TraceVerdict {
    pub(crate) fn from_code(code: i32, chain: Option<String>) -> Self {
        match (code, chain) {
            (1, _) => TraceVerdict::Accept,
            (0, _) => TraceVerdict::Drop,
            (-1, _) => TraceVerdict::Continue,
            (-2, _) => TraceVerdict::Break,
            (-5, _) => TraceVerdict::Return,
            (-3, Some(c)) => TraceVerdict::Jump(c),
            (-4, Some(c)) => TraceVerdict::Goto(c),
            (c, _) => TraceVerdict::Other(c),
        }
    }
}

impl std::fmt::Display for TraceVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TraceVerdict::Accept => f.write_str("accept"),
            TraceVerdict::Drop => f.write_str("drop"),
            TraceVerdict::Continue => f.write_str("continue"),
            TraceVerdict::Break => f.write_str("break"),
            TraceVerdict::Return => f.write_str("return"),
            TraceVerdict::Jump(c) => write!(f, "jump {c}"),
            TraceVerdict::Goto(c) => write!(f, "goto {c}"),
            TraceVerdict::Other(c) => write!(f, "verdict {c}"),
        }
    }
}

/// What a trace event reports (`enum nft_trace_types`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceKind {
    /// A base chain ended without a verdict: its policy decided.
    Policy,
    /// A regular chain ended without a verdict: back to its caller.
    Return,
    /// A rule matched; its verdict is in the event.
    Rule,
    /// A type this decoder does not know.
    Other(u32),
}

/// One trace event: the packet met a rule, or the end of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEvent {
    /// The same for every event of one packet (a hash the kernel makes
    /// of the skb).
    pub id: u32,
    /// What happened.
    pub kind: TraceKind,
    /// NFPROTO of the hook (2 IPv4, 10 IPv6, 1 inet).
    pub nfproto: u32,
    /// The table.
    pub table: String,
    /// The chain.
    pub chain: String,
    /// The rule's handle, for [`TraceKind::Rule`] events.
    pub rule: Option<u64>,
    /// The verdict of the rule or chain.
    pub verdict: Option<TraceVerdict>,
    /// A base chain's policy, for [`TraceKind::Policy`] events.
    pub policy: Option<TraceVerdict>,
    /// Input interface index.
    pub iif: Option<u32>,
    /// Output interface index.
    pub oif: Option<u32>,
    /// The packet mark.
    pub mark: Option<u32>,
    /// The network header (at most 40 bytes), in the first event of a
    /// base chain.
    pub network_header: Vec<u8>,
    /// The transport header (at most 20 bytes), likewise.
    pub transport_header: Vec<u8>,
}

/// Decode one NFT_MSG_TRACE message (the bytes after the netlink
/// header: nfgenmsg, then attributes). Anything malformed gives `None`
/// rather than a panic.
pub fn parse_trace_event(payload: &[u8]) -> Option<TraceEvent> {
    let family = u32::from(*payload.first()?);
    let mut ev = TraceEvent {
        id: 0,
        kind: TraceKind::Other(0),
        nfproto: family,
        table: String::new(),
        chain: String::new(),
        rule: None,
        verdict: None,
        policy: None,
        iif: None,
        oif: None,
        mark: None,
        network_header: Vec::new(),
        transport_header: Vec::new(),
    };
    let mut have_id = false;
    for (ty, v) in attrs(payload.get(4..)?) {
        match ty {
            1 => ev.table = nl_str(v),
            2 => ev.chain = nl_str(v),
            3 => ev.rule = be_u64(v),
            4 => {
                ev.kind = match be_u32(v)? {
                    1 => TraceKind::Policy,
                    2 => TraceKind::Return,
                    3 => TraceKind::Rule,
                    n => TraceKind::Other(n),
                }
            }
            5 => ev.verdict = verdict(v),
            6 => {
                ev.id = be_u32(v)?;
                have_id = true;
            }
            8 => ev.network_header = v.to_vec(),
            9 => ev.transport_header = v.to_vec(),
            10 => ev.iif = be_u32(v),
            12 => ev.oif = be_u32(v),
            14 => ev.mark = be_u32(v),
            15 => ev.nfproto = be_u32(v)?,
            16 => ev.policy = be_u32(v).map(|p| TraceVerdict::from_code(p as i32, None)),
            _ => {}
        }
    }
    have_id.then_some(ev)
}

/// The addresses, protocol and ports a network header (and the transport
/// header after it) carry: how an event is told to be about our packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FiveTuple {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol number.
    pub proto: u8,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
}

impl FiveTuple {
    /// Read from an event's headers (IPv4 or IPv6, no extension headers).
    pub fn of_headers(network: &[u8], transport: &[u8]) -> Option<FiveTuple> {
        let version = network.first()? >> 4;
        let (src, dst, proto) = match version {
            4 if network.len() >= 20 => (
                IpAddr::from(<[u8; 4]>::try_from(&network[12..16]).ok()?),
                IpAddr::from(<[u8; 4]>::try_from(&network[16..20]).ok()?),
                network[9],
            ),
            6 if network.len() >= 40 => (
                IpAddr::from(<[u8; 16]>::try_from(&network[8..24]).ok()?),
                IpAddr::from(<[u8; 16]>::try_from(&network[24..40]).ok()?),
                network[6],
            ),
            _ => return None,
        };
        let port = |at: usize| {
            transport
                .get(at..at + 2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
        };
        Some(FiveTuple {
            src,
            dst,
            proto,
            sport: port(0)?,
            dport: port(2)?,
        })
    }
}

/// Why tracing could not be done.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The socket could not be opened, joined or read.
    #[error("trace socket: {0}")]
    Socket(#[source] io::Error),
    /// The kernel dropped events: the receive buffer overflowed.
    #[error("trace events were lost (the socket's receive buffer overflowed)")]
    Lost,
}

/// A socket on NFNLGRP_NFTRACE in the current network namespace: every
/// trace event of every traced packet in it.
#[derive(Debug)]
pub struct TraceListener {
    fd: OwnedFd,
}

impl TraceListener {
    /// Join the trace group (needs CAP_NET_ADMIN). The kernel makes trace
    /// events only while someone listens: open this before the packet.
    pub fn open() -> Result<Self, TraceError> {
        let fd = netfilter_socket(1 << (GROUP_NFTRACE - 1), 4 << 20)
            .map_err(|e| TraceError::Socket(io::Error::from(e)))?;
        Ok(TraceListener { fd })
    }

    /// The events that arrive within `first` (waiting for the first one)
    /// and then until `quiet` passes without one, `max` in all. The
    /// kernel sends them while it handles the packet, so a short quiet
    /// spell means the packet has left every hook.
    pub fn collect(
        &self,
        first: Duration,
        quiet: Duration,
        max: Duration,
    ) -> Result<Vec<TraceEvent>, TraceError> {
        let started = Instant::now();
        let mut events = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let elapsed = started.elapsed();
            if elapsed >= max {
                break;
            }
            let wait = if events.is_empty() { first } else { quiet };
            let wait = wait.min(max - elapsed).max(Duration::from_millis(1));
            let tv = TimeVal::new(wait.as_secs() as i64, wait.subsec_micros() as i64);
            setsockopt(&self.fd, sockopt::ReceiveTimeout, &tv)
                .map_err(|e| TraceError::Socket(e.into()))?;
            let n = match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(n) => n,
                Err(Errno::EAGAIN) => break,
                Err(Errno::ENOBUFS) => return Err(TraceError::Lost),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(TraceError::Socket(e.into())),
            };
            events.extend(trace_messages(&buf[..n]));
        }
        Ok(events)
    }
}

/// The trace events in one receive buffer.
pub fn trace_messages(b: &[u8]) -> Vec<TraceEvent> {
    messages(b)
        .filter(|(ty, _)| *ty == MSG_TRACE)
        .filter_map(|(_, m)| parse_trace_event(&m[16..]))
        .collect()
}

/// The priority of the trace table's chains: before raw (-300),
/// conntrack (-200) and every NAT or filter chain, so the trace starts
/// before anything has changed the packet.
pub const TRACE_PRIORITY: i32 = -350;

impl Netlink {
    /// Create table `name` (family of the packet's addresses) with a
    /// prerouting and an output chain that set the trace bit on packets
    /// of exactly this 5-tuple, and nothing else. The table belongs to
    /// this socket: the kernel removes it when the socket closes, even if
    /// the process is killed.
    pub fn add_trace_table(&mut self, name: &str, t: &FiveTuple) -> Result<(), CommitError> {
        let (family, soff, doff, a, b): (Family, u32, u32, Vec<u8>, Vec<u8>) = match (t.src, t.dst)
        {
            (IpAddr::V4(s), IpAddr::V4(d)) => (
                Family::Ipv4,
                12,
                16,
                s.octets().to_vec(),
                d.octets().to_vec(),
            ),
            (IpAddr::V6(s), IpAddr::V6(d)) => (
                Family::Ipv6,
                8,
                24,
                s.octets().to_vec(),
                d.octets().to_vec(),
            ),
            _ => {
                return Err(CommitError::Socket(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the source and destination are of different address families",
                )))
            }
        };
        let cmp = |data: Vec<u8>| Expr::Cmp {
            sreg: reg::R1,
            op: CmpOp::Eq,
            data,
        };
        let exprs = vec![
            Expr::NetworkHeader {
                offset: soff,
                len: a.len() as u32,
                dreg: reg::R1,
            },
            cmp(a),
            Expr::NetworkHeader {
                offset: doff,
                len: b.len() as u32,
                dreg: reg::R1,
            },
            cmp(b),
            Expr::Meta {
                key: MetaKey::L4Proto,
                dreg: reg::R1,
            },
            cmp(vec![t.proto]),
            Expr::TransportHeader {
                offset: 0,
                len: 2,
                dreg: reg::R1,
            },
            cmp(t.sport.to_be_bytes().to_vec()),
            Expr::TransportHeader {
                offset: 2,
                len: 2,
                dreg: reg::R1,
            },
            cmp(t.dport.to_be_bytes().to_vec()),
            Expr::Immediate {
                dreg: reg::R1,
                data: vec![1, 0, 0, 0],
            },
            Expr::MetaSet {
                key: MetaKey::Nftrace,
                sreg: reg::R1,
            },
        ];
        let mut batch = Batch::new();
        batch.add_owned_table(family, name);
        for (chain, hook) in [("prerouting", Hook::Prerouting), ("output", Hook::Output)] {
            batch.add_chain(
                family,
                name,
                chain,
                Some((hook, ChainType::Filter, TRACE_PRIORITY)),
            );
            batch.add_rule(family, name, chain, &exprs);
        }
        self.commit(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::writer::Writer;

    fn event_bytes() -> Vec<u8> {
        let mut w = Writer::default();
        w.buf.extend_from_slice(&[2, 0, 0, 0]);
        w.str(1, "realip");
        w.str(2, "services");
        w.u64(3, 7);
        w.u32(4, 3);
        let v = w.nest(5);
        w.u32(1, (-3i32) as u32);
        w.str(2, "mark-for-masquerade");
        w.end(v);
        w.u32(6, 0xdead_beef);
        w.bytes(
            8,
            &[
                0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 203, 0, 113, 7, 10, 0, 0, 11,
            ],
        );
        w.bytes(9, &[0x9c, 0x40, 0x75, 0x30, 0, 0, 0, 0]);
        w.u32(14, 0x4000);
        w.u32(15, 2);
        w.buf
    }

    #[test]
    fn a_rule_event_decodes_with_its_packet() {
        let ev = parse_trace_event(&event_bytes()).unwrap();
        assert_eq!(ev.id, 0xdead_beef);
        assert_eq!(ev.kind, TraceKind::Rule);
        assert_eq!(
            (ev.table.as_str(), ev.chain.as_str()),
            ("realip", "services")
        );
        assert_eq!(ev.rule, Some(7));
        assert_eq!(
            ev.verdict,
            Some(TraceVerdict::Jump("mark-for-masquerade".into()))
        );
        assert_eq!(ev.mark, Some(0x4000));
        let t = FiveTuple::of_headers(&ev.network_header, &ev.transport_header).unwrap();
        assert_eq!(t.src, "203.0.113.7".parse::<IpAddr>().unwrap());
        assert_eq!(t.dst, "10.0.0.11".parse::<IpAddr>().unwrap());
        assert_eq!((t.proto, t.sport, t.dport), (6, 40000, 30000));
    }

    #[test]
    fn truncated_events_give_nothing_rather_than_a_panic() {
        let b = event_bytes();
        for cut in 0..b.len() {
            let _ = parse_trace_event(&b[..cut]);
            let _ = trace_messages(&b[..cut]);
        }
        assert!(parse_trace_event(&[]).is_none());
    }
}
