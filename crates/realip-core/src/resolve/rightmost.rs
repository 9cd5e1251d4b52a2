//! The rightmost walks (trusted range, non-private): the hot path of most
//! chains, with a byte-level loop for X-Forwarded-For when nothing is recorded.

use std::net::IpAddr;

use crate::addr::Addr;
use crate::headers::{self, Headers};
use crate::strategy::HeaderName;

use super::event::{At, Event, Recorder};
use super::hops::{count_entries, forwarded_hop, hops_fwd, is_forwarded, RawHop};
use super::outcome::{header_client, peer_client, Outcome};
use super::report::Stop;

/// Which rightmost walk: the two differ only where the chain gives out.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Rule {
    /// nginx's realip: an untrusted peer is the client, an entry that does
    /// not parse leaves the last address walked (flagged), and when every
    /// entry is trusted the leftmost is the answer.
    TrustedRange,
    /// rightmost-non-private: a public peer, a broken entry or a chain of
    /// only non-public addresses is no answer, so the chain goes on.
    NonPublic,
}

pub(super) fn walk_rightmost<'h, H: Headers + ?Sized, R: Recorder<'h>>(
    name: &'h HeaderName,
    headers: &'h H,
    peer: &Addr,
    rec: &mut R,
    passes: impl Fn(&Addr) -> bool,
    rule: Rule,
) -> Outcome {
    rec.header_name(name);
    if R::ON {
        // Explanations list every entry, even those the walk never reaches.
        let all: Vec<RawHop<'h>> = hops_fwd(headers, name).collect();
        let n = all.len();
        rec.entries(all.clone());
        let total = || n;
        walk_rightmost_over(all.into_iter().rev(), total, name, peer, rec, passes, rule)
    } else {
        // The hot path: entries parsed lazily, nearest first, and counted
        // only if the answer is one of them.
        let total = || count_entries(headers, name);
        if is_forwarded(name) {
            let it = headers.values(name).rev().flat_map(|v| {
                headers::parse_forwarded(v)
                    .into_iter()
                    .rev()
                    .map(forwarded_hop)
            });
            walk_rightmost_over(it, total, name, peer, rec, passes, rule)
        } else {
            xff_rightmost(name, headers, peer, passes, rule)
        }
    }
}

/// The hot path of a rightmost walk over an X-Forwarded-For-style header:
/// the answers of [`walk_rightmost_over`] on [`headers::xff_entries_rev`],
/// in one loop over the bytes, nearest entry first. An answer's index is
/// the number of entries to its left, counted only then: none when the
/// client is the leftmost entry (the usual case, and every all-trusted
/// chain); the values not yet walked plus the part of this one before it
/// otherwise.
fn xff_rightmost<H: Headers + ?Sized>(
    name: &HeaderName,
    headers: &H,
    peer: &Addr,
    passes: impl Fn(&Addr) -> bool,
    rule: Rule,
) -> Outcome {
    // The same judgement on a bare IPv4 (trust looks at the address and the
    // zone only).
    let passes_v4 = |ip: std::net::Ipv4Addr| {
        passes(&Addr {
            ip: IpAddr::V4(ip),
            port: None,
            zone: None,
        })
    };
    if !passes(peer) {
        if rule == Rule::NonPublic {
            return (None, Stop::PeerPublic);
        }
        return (Some(peer_client(peer)), Stop::PeerUntrusted);
    }
    let sep = |b: u8| matches!(b, b',' | b' ' | b'\t');
    // The entry walked just before (one to the right of the current one).
    let mut last: Option<Addr> = None;
    let mut values = headers.values(name);
    while let Some(v) = values.next_back() {
        let mut end = v.len();
        loop {
            while end > 0 && sep(v[end - 1]) {
                end -= 1;
            }
            if end == 0 {
                break;
            }
            // Plain IPv4, the usual entry: found and read in one backward
            // pass, and judged without building an Addr. Anything else is
            // scanned for its start and parsed in full.
            let fast = crate::addr::rev_v4(v, end, sep);
            let start = match fast {
                Some((start, _, _)) => start,
                None => {
                    let mut start = end;
                    while start > 0 && !sep(v[start - 1]) {
                        start -= 1;
                    }
                    start
                }
            };
            let tok = &v[start..end];
            let parsed = match fast {
                Some((_, ip, port)) => {
                    let a = Addr {
                        ip: IpAddr::V4(ip),
                        port,
                        zone: None,
                    };
                    if passes_v4(ip) {
                        last = Some(a);
                        end = start;
                        continue;
                    }
                    Ok(a)
                }
                None => Addr::parse_bytes(tok),
            };
            match parsed {
                Ok(a) if passes(&a) => last = Some(a),
                Ok(a) => {
                    let left = values.map(headers::count_xff_entries).sum::<usize>()
                        + headers::count_xff_entries(&v[..start]);
                    return (Some(header_client(name, left, a)), Stop::UntrustedEntry);
                }
                Err(_) => {
                    if rule == Rule::NonPublic {
                        return (None, Stop::NothingQualified);
                    }
                    return match last {
                        Some(a) => {
                            let left = values.map(headers::count_xff_entries).sum::<usize>()
                                + headers::count_xff_entries(&v[..start]);
                            (Some(header_client(name, left + 1, a)), Stop::Unparsable)
                        }
                        None => (Some(peer_client(peer)), Stop::Unparsable),
                    };
                }
            }
            end = start;
        }
    }
    match (last, rule) {
        (_, Rule::NonPublic) => (None, Stop::NothingQualified),
        // Every entry trusted: the last one walked is the leftmost.
        (Some(a), Rule::TrustedRange) => (Some(header_client(name, 0, a)), Stop::AllTrusted),
        (None, Rule::TrustedRange) => (Some(peer_client(peer)), Stop::NoEntries),
    }
}

fn walk_rightmost_over<'h, R: Recorder<'h>>(
    hops: impl Iterator<Item = RawHop<'h>>,
    total: impl Fn() -> usize,
    name: &HeaderName,
    peer: &Addr,
    rec: &mut R,
    passes: impl Fn(&Addr) -> bool,
    rule: Rule,
) -> Outcome {
    if !passes(peer) {
        rec.event(At::Peer, Event::Untrusted);
        if rule == Rule::NonPublic {
            return (None, Stop::PeerPublic);
        }
        return (Some(peer_client(peer)), Stop::PeerUntrusted);
    }
    rec.event(At::Peer, Event::Trusted);
    let iter = hops;
    let mut last: Option<(usize, Addr)> = None;
    let index_of = |r: usize| total() - 1 - r;
    for (r, hop) in iter.enumerate() {
        match hop {
            RawHop::Addr(a) if passes(&a) => {
                rec.event(At::FromRight(r), Event::Trusted);
                last = Some((r, a));
            }
            RawHop::Addr(a) => {
                rec.event(At::FromRight(r), Event::Answer);
                return (
                    Some(header_client(name, index_of(r), a)),
                    Stop::UntrustedEntry,
                );
            }
            other => {
                rec.event(At::FromRight(r), Event::Unusable);
                let stop = if other.is_opaque() {
                    Stop::Opaque
                } else {
                    Stop::Unparsable
                };
                if rule == Rule::NonPublic {
                    return (None, Stop::NothingQualified);
                }
                return match last {
                    Some((lr, a)) => {
                        rec.event(At::FromRight(lr), Event::Answer);
                        (Some(header_client(name, index_of(lr), a)), stop)
                    }
                    None => {
                        rec.event(At::Peer, Event::Answer);
                        (Some(peer_client(peer)), stop)
                    }
                };
            }
        }
    }
    match (last, rule) {
        (_, Rule::NonPublic) => (None, Stop::NothingQualified),
        (Some((lr, a)), Rule::TrustedRange) => {
            rec.event(At::FromRight(lr), Event::Answer);
            (Some(header_client(name, index_of(lr), a)), Stop::AllTrusted)
        }
        (None, Rule::TrustedRange) => {
            rec.event(At::Peer, Event::Answer);
            (Some(peer_client(peer)), Stop::NoEntries)
        }
    }
}
