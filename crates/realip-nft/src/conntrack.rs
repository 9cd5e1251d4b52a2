//! Conntrack entries over ctnetlink: list them and delete the ones that
//! point at an endpoint that is gone.
//!
//! UDP has no connection teardown, so a conntrack entry created for a
//! flow keeps sending that flow's datagrams to the endpoint it was NATed
//! to, even after the rules stop naming it (kube-proxy flushes these:
//! `pkg/proxy/conntrack/cleanup.go`). TCP needs no flush: a removed
//! endpoint's connections fail and the client reconnects through the new
//! rules.

use std::io;
use std::net::{IpAddr, SocketAddr};

use crate::dump::attrs;
use crate::family::Family;
use crate::socket::{CommitError, Netlink};
use crate::writer::Writer;

const SUBSYS_CTNETLINK: u16 = 1;
const MSG_CT_GET: u16 = 1;
const MSG_CT_DELETE: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;

/// One tracked flow, as its two tuples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    /// IP protocol number (6 TCP, 17 UDP).
    pub proto: u8,
    /// The original direction: client to the address it dialled.
    pub orig_src: SocketAddr,
    /// Where the client sent it (a service address before DNAT).
    pub orig_dst: SocketAddr,
    /// The reply direction's source: the endpoint after DNAT.
    pub reply_src: SocketAddr,
    /// The reply direction's destination.
    pub reply_dst: SocketAddr,
    /// The conntrack zone (0 by default).
    pub zone: u16,
}

fn tuple(b: &[u8]) -> Option<(u8, SocketAddr, SocketAddr)> {
    let (mut src, mut dst, mut proto, mut sport, mut dport) = (None, None, None, None, None);
    for (ty, p) in attrs(b) {
        match ty {
            1 => {
                for (t, v) in attrs(p) {
                    let ip = match v.len() {
                        4 => <[u8; 4]>::try_from(v).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(v).ok().map(IpAddr::from),
                        _ => None,
                    };
                    match t {
                        1 | 3 => src = ip,
                        2 | 4 => dst = ip,
                        _ => {}
                    }
                }
            }
            2 => {
                for (t, v) in attrs(p) {
                    match (t, v) {
                        (1, [n, ..]) => proto = Some(*n),
                        (2, [a, b, ..]) => sport = Some(u16::from_be_bytes([*a, *b])),
                        (3, [a, b, ..]) => dport = Some(u16::from_be_bytes([*a, *b])),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some((
        proto?,
        SocketAddr::new(src?, sport.unwrap_or(0)),
        SocketAddr::new(dst?, dport.unwrap_or(0)),
    ))
}

/// A flow from one ctnetlink message's attributes (after nfgenmsg).
pub(crate) fn flow(b: &[u8]) -> Option<Flow> {
    let (mut orig, mut reply, mut zone) = (None, None, 0);
    for (ty, p) in attrs(b) {
        match (ty, p) {
            (1, _) => orig = tuple(p),
            (2, _) => reply = tuple(p),
            (18, [a, b, ..]) => zone = u16::from_be_bytes([*a, *b]),
            _ => {}
        }
    }
    let (proto, orig_src, orig_dst) = orig?;
    let (_, reply_src, reply_dst) = reply?;
    Some(Flow {
        proto,
        orig_src,
        orig_dst,
        reply_src,
        reply_dst,
        zone,
    })
}

pub(crate) fn write_tuple(w: &mut Writer, ty: u16, proto: u8, src: SocketAddr, dst: SocketAddr) {
    let t = w.nest(ty);
    let ip = w.nest(1);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            w.bytes(1, &s.octets());
            w.bytes(2, &d.octets());
        }
        (s, d) => {
            let six = |a: IpAddr| match a {
                IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
                IpAddr::V6(v) => v.octets(),
            };
            w.bytes(3, &six(s));
            w.bytes(4, &six(d));
        }
    }
    w.end(ip);
    let p = w.nest(2);
    w.bytes(1, &[proto]);
    w.bytes(2, &src.port().to_be_bytes());
    w.bytes(3, &dst.port().to_be_bytes());
    w.end(p);
    w.end(t);
}

fn header(w: &mut Writer, msg: u16, flags: u16, family: Family, seq: u32) -> usize {
    let at = w.buf.len();
    w.buf.extend_from_slice(&0u32.to_ne_bytes());
    w.buf
        .extend_from_slice(&((SUBSYS_CTNETLINK << 8) | msg).to_ne_bytes());
    w.buf.extend_from_slice(&flags.to_ne_bytes());
    w.buf.extend_from_slice(&seq.to_ne_bytes());
    w.buf.extend_from_slice(&0u32.to_ne_bytes());
    w.buf.push(family.nfproto());
    w.buf.push(0);
    w.buf.extend_from_slice(&0u16.to_be_bytes());
    at
}

fn finish(w: &mut Writer, at: usize) {
    let len = (w.buf.len() - at) as u32;
    w.buf[at..at + 4].copy_from_slice(&len.to_ne_bytes());
}

impl Netlink {
    /// Every tracked flow of a family.
    pub fn conntrack_flows(&mut self, family: Family) -> Result<Vec<Flow>, CommitError> {
        let mut w = Writer::default();
        let seq = self.next_seq();
        let at = header(&mut w, MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, family, seq);
        finish(&mut w, at);
        let mut flows = Vec::new();
        self.exchange(&w.buf, seq, true, |payload| {
            if let Some(f) = payload.get(4..).and_then(flow) {
                flows.push(f);
            }
        })?;
        Ok(flows)
    }

    /// Delete one flow (by its original tuple). A flow that is already
    /// gone is not an error.
    pub fn conntrack_delete(&mut self, f: &Flow) -> Result<(), CommitError> {
        let family = if f.orig_src.is_ipv4() {
            Family::Ipv4
        } else {
            Family::Ipv6
        };
        let mut w = Writer::default();
        let seq = self.next_seq();
        let at = header(
            &mut w,
            MSG_CT_DELETE,
            NLM_F_REQUEST | NLM_F_ACK,
            family,
            seq,
        );
        write_tuple(&mut w, 1, f.proto, f.orig_src, f.orig_dst);
        if f.zone != 0 {
            w.bytes(18, &f.zone.to_be_bytes());
        }
        finish(&mut w, at);
        match self.exchange(&w.buf, seq, false, |_| {}) {
            Err(CommitError::Rejected { error, .. })
                if error.raw_os_error() == Some(2) || error.kind() == io::ErrorKind::NotFound =>
            {
                Ok(())
            }
            other => other,
        }
    }

    /// Delete every flow `doomed` picks, in both families. Returns how
    /// many were deleted.
    pub fn flush_flows(&mut self, doomed: impl Fn(&Flow) -> bool) -> Result<usize, CommitError> {
        let mut n = 0;
        for family in [Family::Ipv4, Family::Ipv6] {
            let flows = self.conntrack_flows(family)?;
            for f in flows.iter().filter(|f| doomed(f)) {
                self.conntrack_delete(f)?;
                n += 1;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flow_round_trips_through_its_attributes() {
        let mut w = Writer::default();
        let c: SocketAddr = "203.0.113.7:40000".parse().unwrap();
        let s: SocketAddr = "10.0.0.11:30053".parse().unwrap();
        let e: SocketAddr = "10.244.1.10:5353".parse().unwrap();
        write_tuple(&mut w, 1, 17, c, s);
        write_tuple(&mut w, 2, 17, e, c);
        w.bytes(18, &3u16.to_be_bytes());
        let f = flow(&w.buf).unwrap();
        assert_eq!(
            f,
            Flow {
                proto: 17,
                orig_src: c,
                orig_dst: s,
                reply_src: e,
                reply_dst: c,
                zone: 3
            }
        );
        // Truncated input gives nothing rather than a panic.
        for cut in 0..w.buf.len() {
            let _ = flow(&w.buf[..cut]);
        }
    }
}
