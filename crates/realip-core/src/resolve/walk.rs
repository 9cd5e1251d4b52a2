//! One walk per strategy, nearest hop first. The rightmost walks, the
//! ones most chains use, have a file of their own.

use crate::addr::Addr;
use crate::headers::{self, Headers};
use crate::strategy::{HeaderName, Strategy};
use crate::trust::{not_public, TrustSet};

use super::client::{ClientAddr, Source};
use super::event::{At, Event, Recorder};
use super::hops::{count_entries, hops_fwd, hops_rev, RawHop};
use super::outcome::{header_client, peer_client, Outcome};
use super::report::{HopAddr, Stop};
use super::request::{ProxyClaim, Request};
use super::rightmost::{walk_rightmost, Rule};

pub(super) fn run<'h, H: Headers + ?Sized, R: Recorder<'h>>(
    strategy: &'h Strategy,
    trusted: &'h TrustSet,
    req: &Request<'h, H>,
    rec: &mut R,
) -> Outcome {
    // The peer's scope id is our own interface, not a claim from afar, so it
    // is dropped and the peer can be trusted like any other address.
    let peer = Addr::from_socket(req.peer.0);
    // Only an API caller or a forged UDP source can hand us 0.0.0.0 or `::`;
    // the address parser refuses them everywhere else, and so do we here.
    if peer.ip.is_unspecified() {
        if let Some(h) = strategy.header() {
            rec.header_name(h);
        }
        rec.event(At::Peer, Event::Unusable);
        return (None, Stop::PeerUnspecified);
    }
    match strategy {
        Strategy::RemoteAddr => {
            rec.event(At::Peer, Event::Answer);
            (Some(peer_client(&peer)), Stop::Answered)
        }
        Strategy::RightmostTrustedRange(h) => walk_rightmost(
            h,
            req.headers,
            &peer,
            rec,
            |a| trusted.trusts(a),
            Rule::TrustedRange,
        ),
        Strategy::RightmostNonPrivate(h) => walk_rightmost(
            h,
            req.headers,
            &peer,
            rec,
            |a| not_public(a.ip).is_some(),
            Rule::NonPublic,
        ),
        Strategy::LeftmostNonPrivate(h) => walk_leftmost(h, req.headers, &peer, rec),
        Strategy::RightmostTrustedCount { header, count } => {
            walk_count(header, count.get(), req.headers, &peer, rec)
        }
        Strategy::SingleHeader(h) => {
            rec.header_name(h);
            if !trusted.trusts(&peer) {
                rec.event(At::Peer, Event::Untrusted);
                return (None, Stop::EvidenceUntrusted("header"));
            }
            rec.event(At::Peer, Event::Trusted);
            match headers::single_ip(req.headers.values(h)) {
                Ok(a) => {
                    let c = ClientAddr {
                        ip: a.ip,
                        port: a.port,
                        source: Source::Header {
                            name: h.clone(),
                            index: 0,
                        },
                    };
                    if R::ON {
                        rec.entries(vec![RawHop::Addr(a)]);
                        rec.event(At::FromLeft(0), Event::Answer);
                    }
                    (Some(c), Stop::Answered)
                }
                Err(e) => {
                    if R::ON {
                        if let headers::SingleHeaderError::Invalid { value, error } = &e {
                            rec.entries(vec![RawHop::Invalid(value.clone(), error.to_string())]);
                            rec.event(At::FromLeft(0), Event::Unusable);
                        }
                    }
                    (None, Stop::SingleHeader(format!("{h}: {e}")))
                }
            }
        }
        Strategy::ProxyProtocol => match req.proxy {
            None => (None, Stop::NoEvidence("PROXY header")),
            Some(claim) => {
                let addr = match claim {
                    ProxyClaim::Source(sa) => HopAddr::Addr(Addr::from_socket(sa)),
                    ProxyClaim::NoAddress => HopAddr::Missing,
                };
                claimed(
                    trusted,
                    &peer,
                    rec,
                    Source::ProxyProtocol,
                    addr,
                    "PROXY header",
                )
            }
        },
        Strategy::Toa => match req.toa {
            None => (None, Stop::NoEvidence("TOA option")),
            Some(sa) => claimed(
                trusted,
                &peer,
                rec,
                Source::Toa,
                HopAddr::Addr(Addr::from_socket(sa)),
                "TOA option",
            ),
        },
        Strategy::ClientField => match req.field {
            None => (None, Stop::NoEvidence("client-IP field")),
            Some(ip) => claimed(
                trusted,
                &peer,
                rec,
                Source::ClientField,
                HopAddr::Addr(Addr::ip(ip)),
                "client-IP field",
            ),
        },
    }
}

/// PROXY / TOA / field: one claimed address, believed only from a trusted peer.
fn claimed<'h, R: Recorder<'h>>(
    trusted: &TrustSet,
    peer: &Addr,
    rec: &mut R,
    source: Source,
    addr: HopAddr,
    what: &'static str,
) -> Outcome {
    if !trusted.trusts(peer) {
        rec.event(At::Peer, Event::Untrusted);
        if R::ON {
            rec.extra(source, addr, Event::NotBelieved);
        }
        return (None, Stop::EvidenceUntrusted(what));
    }
    rec.event(At::Peer, Event::Trusted);
    match addr {
        HopAddr::Addr(a) => {
            if R::ON {
                rec.extra(source.clone(), HopAddr::Addr(a.clone()), Event::Answer);
            }
            (
                Some(ClientAddr {
                    ip: a.ip,
                    port: a.port,
                    source,
                }),
                Stop::Answered,
            )
        }
        other => {
            if R::ON {
                rec.extra(source, other, Event::NoAddress);
            }
            rec.event(At::Peer, Event::Answer);
            (Some(peer_client(peer)), Stop::ProxyNoAddress)
        }
    }
}

fn walk_leftmost<'h, H: Headers + ?Sized, R: Recorder<'h>>(
    name: &'h HeaderName,
    headers: &'h H,
    peer: &Addr,
    rec: &mut R,
) -> Outcome {
    rec.header_name(name);
    if R::ON {
        rec.entries(hops_fwd(headers, name).collect());
    }
    let private = |a: &Addr| not_public(a.ip).is_some();
    if !private(peer) {
        rec.event(At::Peer, Event::Untrusted);
        return (None, Stop::PeerPublic);
    }
    rec.event(At::Peer, Event::Trusted);
    for (l, hop) in hops_fwd(headers, name).enumerate() {
        match hop {
            RawHop::Addr(a) if !private(&a) => {
                rec.event(At::FromLeft(l), Event::Answer);
                return (Some(header_client(name, l, a)), Stop::Answered);
            }
            RawHop::Addr(_) => rec.event(At::FromLeft(l), Event::SkippedPrivate),
            _ => rec.event(At::FromLeft(l), Event::Unusable),
        }
    }
    (None, Stop::NothingQualified)
}

fn walk_count<'h, H: Headers + ?Sized, R: Recorder<'h>>(
    name: &'h HeaderName,
    count: usize,
    headers: &'h H,
    peer: &Addr,
    rec: &mut R,
) -> Outcome {
    rec.header_name(name);
    let total = count_entries(headers, name);
    if R::ON {
        rec.entries(hops_fwd(headers, name).collect());
    }
    rec.event(At::Peer, Event::TrustedByCount);
    if total < count {
        rec.event(At::Peer, Event::Answer);
        return (
            Some(peer_client(peer)),
            Stop::TooFewEntries { have: total, count },
        );
    }
    for (r, hop) in hops_rev(headers, name).enumerate().take(count) {
        if r + 1 < count {
            rec.event(At::FromRight(r), Event::TrustedByCount);
            continue;
        }
        return match hop {
            RawHop::Addr(a) => {
                rec.event(At::FromRight(r), Event::Answer);
                (Some(header_client(name, total - 1 - r, a)), Stop::Answered)
            }
            _ => {
                rec.event(At::FromRight(r), Event::Unusable);
                (None, Stop::NothingQualified)
            }
        };
    }
    (None, Stop::NothingQualified)
}
