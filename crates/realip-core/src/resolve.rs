//! Resolution: walk the evidence under a trust set and name the client.
//!
//! Every strategy is one walk over a chain of hops, nearest first. The same
//! walk serves [`Resolver::resolve`] (no allocation beyond what the parsers
//! need) and [`Resolver::explain`] (every hop recorded with a verdict), so
//! the explanation can never disagree with the answer.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::addr::{Addr, AddrError};
use crate::headers::{self, Headers, Node};
use crate::strategy::{HeaderName, Strategy};
use crate::trust::{not_public, TrustSet};

/// The socket peer: the address the kernel says the connection came from.
/// A distinct type so it cannot be mixed up with a resolved client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerAddr(pub SocketAddr);

/// What a PROXY protocol header claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyClaim {
    /// The source address in the header.
    Source(SocketAddr),
    /// A header without an address (v1 UNKNOWN, v2 LOCAL or UNSPEC): the
    /// spec says to use the connection's own endpoints.
    NoAddress,
}

/// Everything known about one request or connection.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a, H: Headers + ?Sized> {
    /// The socket peer.
    pub peer: PeerAddr,
    /// The request's headers ([`headers::NoHeaders`] for raw TCP/UDP).
    pub headers: &'a H,
    /// The PROXY header's claim, when one was received.
    pub proxy: Option<ProxyClaim>,
    /// The TOA option's address, when one was received.
    pub toa: Option<SocketAddr>,
    /// The custom protocol's client-IP field, when one was read.
    pub field: Option<IpAddr>,
}

impl<'a, H: Headers + ?Sized> Request<'a, H> {
    /// A request with only a peer and headers.
    pub fn new(peer: SocketAddr, headers: &'a H) -> Self {
        Request {
            peer: PeerAddr(peer),
            headers,
            proxy: None,
            toa: None,
            field: None,
        }
    }
}

/// Where a hop's address came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    /// The socket peer.
    Peer,
    /// A PROXY protocol header.
    ProxyProtocol,
    /// A TOA TCP option.
    Toa,
    /// A custom protocol's client-IP field.
    ClientField,
    /// Entry `index` (0 = leftmost, across all instances) of a header.
    Header {
        /// The header's name as configured.
        name: HeaderName,
        /// Position from the left.
        index: usize,
    },
}

impl Source {
    /// A short machine-readable kind: `peer`, `proxy-protocol`, `toa`,
    /// `client-field` or `header`.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Peer => "peer",
            Source::ProxyProtocol => "proxy-protocol",
            Source::Toa => "toa",
            Source::ClientField => "client-field",
            Source::Header { .. } => "header",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Header { name, index } => write!(f, "{name}[{index}]"),
            s => f.write_str(s.kind()),
        }
    }
}

/// The resolved client: an address and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientAddr {
    /// The client's IP (IPv4-mapped IPv6 unmapped).
    pub ip: IpAddr,
    /// The client's port, when the evidence carried one.
    pub port: Option<u16>,
    /// The hop it came from.
    pub source: Source,
}

impl fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.ip, self.port) {
            (IpAddr::V6(ip), Some(p)) => write!(f, "[{ip}]:{p}"),
            (ip, Some(p)) => write!(f, "{ip}:{p}"),
            (ip, None) => write!(f, "{ip}"),
        }
    }
}

/// A hop's address as the explanation shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HopAddr {
    /// An address.
    Addr(Addr),
    /// Forwarded `for=unknown`.
    Unknown,
    /// Forwarded `for=_identifier`.
    Obfuscated(String),
    /// A Forwarded element with no `for=`.
    Missing,
    /// Text that is not an address, and why.
    Invalid {
        /// The text (lossy, cut for display).
        text: String,
        /// What was wrong with it.
        error: String,
    },
}

impl fmt::Display for HopAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HopAddr::Addr(a) => write!(f, "{a}"),
            HopAddr::Unknown => f.write_str("unknown"),
            HopAddr::Obfuscated(s) => f.write_str(s),
            HopAddr::Missing => f.write_str("(no for=)"),
            HopAddr::Invalid { text, .. } => write!(f, "{text:?}"),
        }
    }
}

/// Why a verdict was reached. Usually static text or a label the trust set
/// made once, so explaining a request formats nothing.
#[derive(Debug, Clone)]
pub struct Reason(ReasonRepr);

#[derive(Debug, Clone)]
enum ReasonRepr {
    Static(&'static str),
    Shared(std::sync::Arc<str>),
    Owned(String),
}

impl std::ops::Deref for Reason {
    type Target = str;
    fn deref(&self) -> &str {
        match &self.0 {
            ReasonRepr::Static(s) => s,
            ReasonRepr::Shared(s) => s,
            ReasonRepr::Owned(s) => s,
        }
    }
}

impl PartialEq for Reason {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for Reason {}

impl From<&'static str> for Reason {
    fn from(s: &'static str) -> Self {
        Reason(ReasonRepr::Static(s))
    }
}

impl From<String> for Reason {
    fn from(s: String) -> Self {
        Reason(ReasonRepr::Owned(s))
    }
}

impl From<std::sync::Arc<str>> for Reason {
    fn from(s: std::sync::Arc<str>) -> Self {
        Reason(ReasonRepr::Shared(s))
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self)
    }
}

/// What the walk decided about one hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Trusted to speak for the client; the walk went past it.
    Trusted(Reason),
    /// Not trusted; the walk went no further.
    Untrusted(Reason),
    /// Not checked against the trust set, but believed: a claim from a
    /// trusted peer, the peer itself under `remote-addr`, or the entry a
    /// trusted count points at.
    Believed(Reason),
    /// Not an address the walk could use.
    Unusable(Reason),
    /// Skipped by a strategy that looks for something else.
    Skipped(Reason),
    /// The walk stopped before reaching it.
    NotReached,
}

impl Verdict {
    /// `Some(true)` trusted, `Some(false)` untrusted, `None` neither.
    pub fn trusted(&self) -> Option<bool> {
        match self {
            Verdict::Trusted(_) => Some(true),
            Verdict::Untrusted(_) => Some(false),
            _ => None,
        }
    }

    /// A short word: trusted, untrusted, believed, unusable, skipped,
    /// not-reached.
    pub fn word(&self) -> &'static str {
        match self {
            Verdict::Trusted(_) => "trusted",
            Verdict::Untrusted(_) => "untrusted",
            Verdict::Believed(_) => "believed",
            Verdict::Unusable(_) => "unusable",
            Verdict::Skipped(_) => "skipped",
            Verdict::NotReached => "not-reached",
        }
    }

    /// Why.
    pub fn reason(&self) -> &str {
        match self {
            Verdict::Trusted(r)
            | Verdict::Untrusted(r)
            | Verdict::Believed(r)
            | Verdict::Unusable(r)
            | Verdict::Skipped(r) => r,
            Verdict::NotReached => "not read: the walk stopped nearer the peer",
        }
    }
}

/// One hop in an explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HopReport {
    /// The address (or what stood in its place).
    pub addr: HopAddr,
    /// Where it came from.
    pub source: Source,
    /// What the walk made of it.
    pub verdict: Verdict,
}

/// Why a walk ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The strategy answered with the hop it found.
    Answered,
    /// The peer is not trusted, so nothing it sent was read.
    PeerUntrusted,
    /// A `*-non-private` strategy met a public peer: its headers are not
    /// read and the strategy has no answer, so the chain goes on.
    PeerPublic,
    /// The peer is 0.0.0.0 or `::`: no connection comes from there, so no
    /// strategy answers with it or believes what it sent.
    PeerUnspecified,
    /// The walk reached an untrusted entry: the client.
    UntrustedEntry,
    /// Every entry was trusted; the leftmost is the answer.
    AllTrusted,
    /// The header is absent; the trusted peer is the answer.
    NoEntries,
    /// An entry that is not an address stopped the walk; the last address
    /// walked is the answer. (Flagged: a trusted proxy wrote garbage.)
    Unparsable,
    /// `unknown`, `_hidden` or an element without `for=` stopped the walk;
    /// never skipped, because skipping lets a forged far entry win.
    Opaque,
    /// Fewer entries than the trusted count: the peer is the answer.
    TooFewEntries {
        /// Entries present.
        have: usize,
        /// The configured count.
        count: usize,
    },
    /// No entry qualified (all private, or a broken one on the way).
    NothingQualified,
    /// A single-IP header gave no address.
    SingleHeader(String),
    /// No PROXY header / TOA option / client field was received.
    NoEvidence(&'static str),
    /// The evidence came from an untrusted peer and was not believed.
    EvidenceUntrusted(&'static str),
    /// A PROXY header without an address: the peer stands.
    ProxyNoAddress,
}

impl Stop {
    /// Whether the answer deserves a warning (a trusted hop sent garbage).
    pub fn is_flagged(&self) -> bool {
        matches!(self, Stop::Unparsable | Stop::Opaque)
    }
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::Answered => f.write_str("found"),
            Stop::PeerUntrusted => f.write_str("the peer is not trusted, so its headers were not read; the peer is the client"),
            Stop::PeerPublic => f.write_str("the peer is public, so its headers were not read; no answer here (end the chain with remote-addr to take the peer)"),
            Stop::PeerUnspecified => f.write_str("the peer is unspecified (0.0.0.0 or ::), never a client or a proxy; no answer"),
            Stop::UntrustedEntry => f.write_str("reached the first untrusted entry from the right: the client"),
            Stop::AllTrusted => f.write_str("every entry is trusted; the leftmost is the answer"),
            Stop::NoEntries => f.write_str("no entries; the trusted peer is the answer"),
            Stop::Unparsable => f.write_str("FLAGGED: an entry that is not an address stopped the walk; the last address walked is the answer"),
            Stop::Opaque => f.write_str("FLAGGED: an opaque identifier (unknown, _obfuscated, missing for=) stopped the walk; the last address walked is the answer"),
            Stop::TooFewEntries { have, count } => write!(f, "{have} entries, fewer than the trusted count {count}; the peer is the answer"),
            Stop::NothingQualified => f.write_str("no entry qualified"),
            Stop::SingleHeader(why) => f.write_str(why),
            Stop::NoEvidence(what) => write!(f, "no {what} was received"),
            Stop::EvidenceUntrusted(what) => write!(f, "the {what} came from an untrusted peer and was not believed"),
            Stop::ProxyNoAddress => f.write_str("the PROXY header carries no address (UNKNOWN/LOCAL); the peer stands"),
        }
    }
}

/// What one strategy of a chain did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The strategy, by name.
    pub strategy: std::sync::Arc<str>,
    /// The hops it looked at, far client first, the peer last.
    pub hops: Vec<HopReport>,
    /// Which hop is the answer.
    pub answer: Option<usize>,
    /// Why the walk ended.
    pub stop: Stop,
}

/// The answer and how it was reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The client, if any strategy found one (`None` when the whole chain
    /// gave out; see [`Resolver::resolve`]).
    pub client: Option<ClientAddr>,
    /// One step per strategy tried, in order.
    pub steps: Vec<Step>,
}

impl Resolution {
    /// The step that decided: the one that answered, or the last tried.
    pub fn decisive(&self) -> Option<&Step> {
        self.steps
            .iter()
            .find(|s| s.answer.is_some())
            .or(self.steps.last())
    }

    /// The hops of the deciding step.
    pub fn hops(&self) -> &[HopReport] {
        self.decisive().map_or(&[], |s| &s.hops)
    }
}

/// A trust configuration and a strategy chain.
#[derive(Debug, Clone)]
pub struct Resolver {
    trusted: TrustSet,
    chain: Vec<Strategy>,
    // Names made once, so explanations do not format them per request.
    names: Vec<std::sync::Arc<str>>,
}

impl Resolver {
    /// A resolver trying `chain` in order under `trusted`.
    pub fn new(trusted: TrustSet, chain: Vec<Strategy>) -> Self {
        let names = chain.iter().map(|s| s.to_string().into()).collect();
        Resolver {
            trusted,
            chain,
            names,
        }
    }

    /// The trust set.
    pub fn trusted(&self) -> &TrustSet {
        &self.trusted
    }

    /// The strategy chain.
    pub fn chain(&self) -> &[Strategy] {
        &self.chain
    }

    /// The client, without an explanation: the hot path.
    ///
    /// The strategies are tried in order and the first answer wins; a
    /// strategy without one (no evidence, an untrusted or public peer,
    /// nothing qualified) hands on to the next. When none answers the
    /// result is `None`, never a guess: the peer is the answer only where a
    /// strategy says so (an untrusted peer under rightmost-trusted-range,
    /// or a `remote-addr` ending the chain, the labelled last resort).
    /// realclientip-go's ChainStrategy likewise returns "" and leaves the
    /// choice to its caller; ours print why (`realip resolve` exits 1,
    /// whoami's /realip answers 422) or, like realip-http, use the peer.
    pub fn resolve<H: Headers + ?Sized>(&self, req: &Request<'_, H>) -> Option<ClientAddr> {
        self.chain
            .iter()
            .find_map(|s| run(s, &self.trusted, req, &mut NoRecord).0)
    }

    /// The client and the full story of how it was found.
    pub fn explain<H: Headers + ?Sized>(&self, req: &Request<'_, H>) -> Resolution {
        let mut steps = Vec::new();
        let mut client = None;
        for (s, name) in self.chain.iter().zip(&self.names) {
            let mut rec = Record::default();
            let (answer, stop) = run(s, &self.trusted, req, &mut rec);
            let peer = Addr::from_socket(req.peer.0);
            let step = rec.finish(s, name, &self.trusted, &peer, answer.as_ref(), stop);
            steps.push(step);
            if answer.is_some() {
                client = answer;
                break;
            }
        }
        Resolution { client, steps }
    }
}

// ---------------------------------------------------------------------------
// The walks.
//
// A walk sees hops nearest first and reports events through a recorder. The
// fast path's recorder ignores them and the hops are produced lazily, so the
// walk stops parsing as soon as it has an answer.

/// A hop as the walk sees it.
#[derive(Debug, Clone)]
enum RawHop<'h> {
    Addr(Addr),
    Unknown,
    Obfuscated(std::borrow::Cow<'h, str>),
    Missing,
    Invalid(String, String),
    /// Invalid, kept cheap for the fast path: the bytes and the error.
    InvalidBytes(&'h [u8], AddrError),
}

impl RawHop<'_> {
    fn is_opaque(&self) -> bool {
        matches!(
            self,
            RawHop::Unknown | RawHop::Obfuscated(_) | RawHop::Missing
        )
    }

    fn to_report_addr(&self) -> HopAddr {
        match self {
            RawHop::Addr(a) => HopAddr::Addr(a.clone()),
            RawHop::Unknown => HopAddr::Unknown,
            RawHop::Obfuscated(s) => HopAddr::Obfuscated(s.to_string()),
            RawHop::Missing => HopAddr::Missing,
            RawHop::Invalid(t, e) => HopAddr::Invalid {
                text: t.clone(),
                error: e.clone(),
            },
            RawHop::InvalidBytes(b, e) => HopAddr::Invalid {
                text: headers::display_bytes(b),
                error: e.to_string(),
            },
        }
    }
}

#[inline]
fn xff_hop(tok: &[u8]) -> RawHop<'_> {
    match Addr::parse_bytes(tok) {
        Ok(a) => RawHop::Addr(a),
        Err(e) => RawHop::InvalidBytes(tok, e),
    }
}

fn forwarded_hop(el: headers::ForwardedElement<'_>) -> RawHop<'_> {
    if let Some(err) = el.error {
        return RawHop::Invalid(el.raw.to_string(), err.to_string());
    }
    match el.for_ {
        None => RawHop::Missing,
        Some(Node::Addr(a)) => RawHop::Addr(a),
        Some(Node::Unknown) => RawHop::Unknown,
        Some(Node::Obfuscated(s)) => RawHop::Obfuscated(s),
        Some(Node::Invalid(t, e)) => RawHop::Invalid(t.into_owned(), e.to_string()),
    }
}

fn is_forwarded(name: &str) -> bool {
    name.eq_ignore_ascii_case("forwarded")
}

/// Hops of a list header, nearest first, produced lazily.
fn hops_rev<'h, H: Headers + ?Sized>(
    headers: &'h H,
    name: &'h str,
) -> impl Iterator<Item = RawHop<'h>> + 'h {
    let forwarded = is_forwarded(name);
    let xff = (!forwarded).then(|| headers::xff_entries_rev(headers.values(name)).map(xff_hop));
    let fwd = forwarded.then(|| {
        headers.values(name).rev().flat_map(|v| {
            headers::parse_forwarded(v)
                .into_iter()
                .rev()
                .map(forwarded_hop)
        })
    });
    xff.into_iter().flatten().chain(fwd.into_iter().flatten())
}

/// Hops of a list header, far client first.
fn hops_fwd<'h, H: Headers + ?Sized>(
    headers: &'h H,
    name: &'h str,
) -> impl Iterator<Item = RawHop<'h>> + 'h {
    let forwarded = is_forwarded(name);
    let xff = (!forwarded).then(|| headers::xff_entries(headers.values(name)).map(xff_hop));
    let fwd = forwarded.then(|| {
        headers
            .values(name)
            .flat_map(|v| headers::parse_forwarded(v).into_iter().map(forwarded_hop))
    });
    xff.into_iter().flatten().chain(fwd.into_iter().flatten())
}

fn count_entries<H: Headers + ?Sized>(headers: &H, name: &str) -> usize {
    if is_forwarded(name) {
        headers
            .values(name)
            .map(|v| headers::parse_forwarded(v).len())
            .sum()
    } else {
        headers.values(name).map(headers::count_xff_entries).sum()
    }
}

/// Where in the chain a hop sits, for events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    Peer,
    /// Entry counted from the right (0 = nearest).
    FromRight(usize),
    /// Entry counted from the left (0 = farthest).
    FromLeft(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    /// In the trust set (or private, for the non-private strategies).
    Trusted,
    /// Trusted because the configured count says so.
    TrustedByCount,
    /// Not trusted: the walk stops here.
    Untrusted,
    /// Not an address.
    Unusable,
    /// Private, passed over by a non-private strategy.
    SkippedPrivate,
    /// A claim from an untrusted peer.
    NotBelieved,
    /// A PROXY header with no address.
    NoAddress,
    /// This hop is the answer.
    Answer,
}

trait Recorder<'h> {
    /// Whether hops are wanted. The fast path says no, and its walks never
    /// build them.
    const ON: bool;
    /// Receive the whole list of entries, far first, before the walk.
    fn entries(&mut self, _hops: Vec<RawHop<'h>>) {}
    fn event(&mut self, at: At, ev: Event);
    /// A hop that is not a header entry (PROXY, TOA, field).
    fn extra(&mut self, _source: Source, _addr: HopAddr, _ev: Event) {}
    fn header_name(&mut self, _name: &HeaderName) {}
}

struct NoRecord;

impl<'h> Recorder<'h> for NoRecord {
    const ON: bool = false;
    fn event(&mut self, _at: At, _ev: Event) {}
}

#[derive(Default)]
struct Record<'h> {
    header: Option<HeaderName>,
    entries: Vec<RawHop<'h>>,
    events: Vec<(At, Event)>,
    extras: Vec<(Source, HopAddr, Event)>,
}

impl<'h> Recorder<'h> for Record<'h> {
    const ON: bool = true;
    fn entries(&mut self, hops: Vec<RawHop<'h>>) {
        self.entries = hops;
    }
    fn event(&mut self, at: At, ev: Event) {
        self.events.push((at, ev));
    }
    fn extra(&mut self, source: Source, addr: HopAddr, ev: Event) {
        self.extras.push((source, addr, ev));
    }
    fn header_name(&mut self, name: &HeaderName) {
        self.header = Some(name.clone());
    }
}

/// Turn a walk's event into words. Pure: only the strategy, the trust set
/// and the hop decide.
fn verdict(
    strategy: &Strategy,
    trusted: &TrustSet,
    addr: &HopAddr,
    ev: Event,
    is_peer: bool,
) -> Verdict {
    let a = match addr {
        HopAddr::Addr(a) => Some(a),
        _ => None,
    };
    let private_rule = matches!(
        strategy,
        Strategy::RightmostNonPrivate(_) | Strategy::LeftmostNonPrivate(_)
    );
    let untrusted = || -> Reason {
        match a {
            Some(_) if private_rule => "public: in no special-purpose block".into(),
            Some(_) if trusted.is_empty() => "no trusted ranges configured".into(),
            Some(_) => trusted.not_in_label().clone().into(),
            None => "not an address".into(),
        }
    };
    match ev {
        Event::Trusted if private_rule => Verdict::Trusted(not_public_reason(a)),
        Event::Trusted => Verdict::Trusted(match a.and_then(|a| trusted.matching_label(a.ip)) {
            Some(label) => label.clone().into(),
            None => "trusted".into(),
        }),
        Event::TrustedByCount if is_peer => {
            Verdict::Trusted("the nearest proxy (trusted by count)".into())
        }
        Event::TrustedByCount => Verdict::Trusted(match strategy {
            Strategy::RightmostTrustedCount { count, .. } => {
                format!("appended by one of the {count} trusted proxies (by count)").into()
            }
            _ => "trusted by count".into(),
        }),
        Event::Untrusted => Verdict::Untrusted(untrusted()),
        Event::Unusable => Verdict::Unusable(match addr {
            HopAddr::Invalid { error, .. } => format!("not an address: {error}").into(),
            HopAddr::Unknown => "for=unknown: the proxy did not know the client".into(),
            HopAddr::Obfuscated(_) => "obfuscated identifier, no address".into(),
            HopAddr::Missing => "element without for=".into(),
            HopAddr::Addr(_) => "unspecified (0.0.0.0 or ::): never a client or a proxy".into(),
        }),
        Event::SkippedPrivate => Verdict::Skipped(not_public_reason(a)),
        Event::NotBelieved => Verdict::Skipped("not believed: the peer is not trusted".into()),
        Event::NoAddress => Verdict::Skipped("carries no address (UNKNOWN/LOCAL)".into()),
        Event::Answer => match strategy {
            Strategy::RemoteAddr => Verdict::Believed("the socket peer, taken as it is".into()),
            Strategy::RightmostTrustedCount { .. } if is_peer => {
                Verdict::Believed("fewer entries than the trusted count".into())
            }
            Strategy::RightmostTrustedCount { .. } => {
                Verdict::Believed("the entry the trusted count points at".into())
            }
            Strategy::SingleHeader(_) => {
                Verdict::Believed("the header's one value, from a trusted peer".into())
            }
            Strategy::ProxyProtocol | Strategy::Toa | Strategy::ClientField if is_peer => {
                Verdict::Believed("the claim carries no address, so the peer stands".into())
            }
            Strategy::ProxyProtocol | Strategy::Toa | Strategy::ClientField => {
                Verdict::Believed("claimed by a trusted peer".into())
            }
            _ => Verdict::Untrusted(untrusted()),
        },
    }
}

/// The special-purpose block that makes a hop not public, for the
/// `*-non-private` strategies' verdicts.
fn not_public_reason(a: Option<&Addr>) -> Reason {
    a.and_then(|a| not_public(a.ip))
        .unwrap_or("not public")
        .into()
}

impl Record<'_> {
    fn finish(
        self,
        strategy: &Strategy,
        name: &std::sync::Arc<str>,
        trusted: &TrustSet,
        peer: &Addr,
        answer: Option<&ClientAddr>,
        stop: Stop,
    ) -> Step {
        let n = self.entries.len();
        let header = self.header.unwrap_or_else(|| HeaderName::from("?"));
        let mut hops: Vec<HopReport> = self
            .entries
            .iter()
            .enumerate()
            .map(|(index, raw)| HopReport {
                addr: raw.to_report_addr(),
                source: Source::Header {
                    name: header.clone(),
                    index,
                },
                verdict: Verdict::NotReached,
            })
            .collect();
        for (source, addr, ev) in self.extras {
            let verdict = verdict(strategy, trusted, &addr, ev, false);
            hops.push(HopReport {
                addr,
                source,
                verdict,
            });
        }
        // The peer closes every chain: it is always evidence.
        let mut peer_hop = HopReport {
            addr: HopAddr::Addr(peer.clone()),
            source: Source::Peer,
            verdict: Verdict::NotReached,
        };
        for (at, ev) in self.events {
            let (hop, is_peer) = match at {
                At::Peer => (&mut peer_hop, true),
                At::FromRight(r) if r < n => (&mut hops[n - 1 - r], false),
                At::FromLeft(l) if l < n => (&mut hops[l], false),
                _ => continue,
            };
            // The leftmost of an all-trusted chain is the answer and still
            // trusted: keep saying so.
            if ev == Event::Answer && matches!(hop.verdict, Verdict::Trusted(_)) {
                continue;
            }
            hop.verdict = verdict(strategy, trusted, &hop.addr, ev, is_peer);
        }
        hops.push(peer_hop);
        let answer = answer.and_then(|c| hops.iter().position(|h| h.source == c.source));
        Step {
            strategy: name.clone(),
            hops,
            answer,
            stop,
        }
    }
}

type Outcome = (Option<ClientAddr>, Stop);

fn peer_client(peer: &Addr) -> ClientAddr {
    ClientAddr {
        ip: peer.ip,
        port: peer.port,
        source: Source::Peer,
    }
}

fn run<'h, H: Headers + ?Sized, R: Recorder<'h>>(
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

/// Which rightmost walk: the two differ only where the chain gives out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// nginx's realip: an untrusted peer is the client, an entry that does
    /// not parse leaves the last address walked (flagged), and when every
    /// entry is trusted the leftmost is the answer.
    TrustedRange,
    /// rightmost-non-private: a public peer, a broken entry or a chain of
    /// only non-public addresses is no answer, so the chain goes on.
    NonPublic,
}

#[inline]
fn header_client(name: &HeaderName, index: usize, a: Addr) -> ClientAddr {
    ClientAddr {
        ip: a.ip,
        port: a.port,
        source: Source::Header {
            name: name.clone(),
            index,
        },
    }
}

fn walk_rightmost<'h, H: Headers + ?Sized, R: Recorder<'h>>(
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
