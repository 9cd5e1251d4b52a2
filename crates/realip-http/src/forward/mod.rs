//! What the L7 proxy does to a request's forwarding headers on its way to a
//! backend (pure: no I/O). The ingress role in the seeds: nginx-ingress
//! sets X-Forwarded-For, X-Real-IP, X-Forwarded-Host/Port/Proto,
//! X-Original-Uri, X-Scheme and X-Request-Id.
//!
//! The rule nginx and HAProxy leave to configuration: a forwarding header
//! from a peer that is not trusted is never passed on. Every one of them
//! is removed and the chain restarts at the peer; from a trusted peer the
//! chain is kept, the client is resolved from it with realip-core, and
//! this hop is appended.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::HttpHeaders;
use http::header::{HeaderMap, HeaderName, HeaderValue, FORWARDED};
use realip_core::{Headers, Resolver, Source};

/// One header the proxy can add.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// X-Forwarded-For: the chain, with this hop's peer appended (or only
    /// the resolved client, see [`XffMode`]).
    XForwardedFor,
    /// X-Real-IP: the resolved client.
    XRealIp,
    /// RFC 7239 Forwarded: `for=PEER;proto=SCHEME;host=HOST` appended.
    Forwarded,
    /// X-Forwarded-Proto: http or https (a trusted peer's is kept).
    XForwardedProto,
    /// X-Forwarded-Host: the Host the client asked for (a trusted peer's is kept).
    XForwardedHost,
    /// X-Forwarded-Port: the port the client connected to (a trusted peer's is kept).
    XForwardedPort,
    /// X-Original-Uri: the request target as received.
    XOriginalUri,
    /// X-Scheme: http or https.
    XScheme,
    /// X-Request-Id: a valid one from a trusted peer is kept, otherwise a
    /// new one (32 hex digits, as nginx's `$request_id`).
    XRequestId,
}

impl Header {
    /// Every header, in the order they are listed in help texts.
    pub const ALL: [Header; 9] = [
        Header::XForwardedFor,
        Header::XRealIp,
        Header::Forwarded,
        Header::XForwardedProto,
        Header::XForwardedHost,
        Header::XForwardedPort,
        Header::XOriginalUri,
        Header::XScheme,
        Header::XRequestId,
    ];

    /// Its name, lower case.
    pub fn name(self) -> &'static str {
        match self {
            Header::XForwardedFor => "x-forwarded-for",
            Header::XRealIp => "x-real-ip",
            Header::Forwarded => "forwarded",
            Header::XForwardedProto => "x-forwarded-proto",
            Header::XForwardedHost => "x-forwarded-host",
            Header::XForwardedPort => "x-forwarded-port",
            Header::XOriginalUri => "x-original-uri",
            Header::XScheme => "x-scheme",
            Header::XRequestId => "x-request-id",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A name that is not one of [`Header::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a forwarding header: {}", Header::ALL.map(Header::name).join(", "))]
pub struct UnknownHeader {
    /// The name given.
    pub value: String,
}

impl std::str::FromStr for Header {
    type Err = UnknownHeader;

    fn from_str(s: &str) -> Result<Self, UnknownHeader> {
        Header::ALL
            .into_iter()
            .find(|h| h.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownHeader { value: s.into() })
    }
}

/// What X-Forwarded-For carries on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XffMode {
    /// The chain (from a trusted peer) with the peer appended: nginx's
    /// `$proxy_add_x_forwarded_for`, HAProxy's `option forwardfor`.
    #[default]
    Append,
    /// Only the resolved client: the backend need not trust anyone but us.
    Client,
}

/// A word that is not an [`XffMode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not an X-Forwarded-For mode: append or client")]
pub struct UnknownXffMode {
    /// The word given.
    pub value: String,
}

impl std::str::FromStr for XffMode {
    type Err = UnknownXffMode;

    fn from_str(s: &str) -> Result<Self, UnknownXffMode> {
        match s {
            "append" => Ok(XffMode::Append),
            "client" => Ok(XffMode::Client),
            _ => Err(UnknownXffMode { value: s.into() }),
        }
    }
}

/// The set of headers a listener adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderSet(u16);

impl HeaderSet {
    /// No header added (forwarding headers from untrusted peers are still
    /// removed).
    pub const NONE: HeaderSet = HeaderSet(0);

    /// What nginx-ingress sets: everything but Forwarded.
    pub fn ingress() -> Self {
        Header::ALL
            .into_iter()
            .filter(|h| *h != Header::Forwarded)
            .collect()
    }

    /// Whether `h` is in the set.
    pub fn has(self, h: Header) -> bool {
        self.0 & h.bit() != 0
    }
}

impl FromIterator<Header> for HeaderSet {
    fn from_iter<I: IntoIterator<Item = Header>>(iter: I) -> Self {
        HeaderSet(iter.into_iter().fold(0, |acc, h| acc | h.bit()))
    }
}

/// The headers a peer that is not trusted may not send on: every header
/// above, plus X-Original-Forwarded-For (nginx-ingress's copy of the
/// incoming chain).
const STRIPPED: [&str; 10] = [
    "x-forwarded-for",
    "x-real-ip",
    "forwarded",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-original-uri",
    "x-scheme",
    "x-request-id",
    "x-original-forwarded-for",
];

/// What happens to a request header whose name holds an underscore.
///
/// CGI, WSGI, PHP and Rack map `_` and `-` to the same variable
/// (`HTTP_X_FORWARDED_FOR`), so `X_Forwarded_For` from a client would sit
/// beside the proxy's own `X-Forwarded-For` and could win there (RFC 9110
/// §17.10; Puma CVE-2024-45614). Whatever the choice, a name that
/// normalises to a forwarding header the proxy strips or sets is always
/// removed; this decides the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Underscores {
    /// Drop every such header, as nginx does by default
    /// (`underscores_in_headers off`).
    #[default]
    Drop,
    /// Pass them on (nginx's `underscores_in_headers on`, HAProxy's way).
    Pass,
}

/// A word that is not an [`Underscores`] choice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a choice for header names with underscores: drop or pass")]
pub struct UnknownUnderscores {
    /// The word given.
    pub value: String,
}

impl std::str::FromStr for Underscores {
    type Err = UnknownUnderscores;

    fn from_str(s: &str) -> Result<Self, UnknownUnderscores> {
        match s {
            "drop" => Ok(Underscores::Drop),
            "pass" => Ok(Underscores::Pass),
            _ => Err(UnknownUnderscores { value: s.into() }),
        }
    }
}

/// Whether header name `a` is `b` as a CGI-style backend reads it: ASCII
/// case and `_` against `-` do not matter.
fn same_name(a: &[u8], b: &str) -> bool {
    let b = b.as_bytes();
    a.len() == b.len()
        && a.iter().zip(b).all(|(&x, &y)| {
            let norm = |c: u8| {
                if c == b'_' {
                    b'-'
                } else {
                    c.to_ascii_lowercase()
                }
            };
            norm(x) == norm(y)
        })
}

/// How one listener rewrites requests.
#[derive(Debug, Clone)]
pub struct Forwarding {
    /// Headers added.
    pub headers: HeaderSet,
    /// What X-Forwarded-For carries.
    pub xff: XffMode,
    /// What happens to other header names with underscores.
    pub underscores: Underscores,
    /// Who may speak for the client, and how the client is read from a
    /// trusted peer's headers.
    pub resolver: Resolver,
}

/// What the proxy knows about the request besides its headers.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// The TCP peer (or the client a trusted PROXY header named).
    pub peer: SocketAddr,
    /// The address the client connected to.
    pub local: SocketAddr,
    /// `https` when TLS was terminated here.
    pub scheme: &'a str,
    /// The host the client asked for (Host, or the h2 `:authority`).
    pub host: Option<&'a str>,
    /// The request target as received (path and query).
    pub target: &'a str,
}

/// The outcome, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    /// The client this hop believes in.
    pub client: IpAddr,
    /// Where it was read: the peer, or an entry of a trusted peer's header.
    pub source: Source,
    /// Whether the peer was trusted (its headers were kept).
    pub peer_trusted: bool,
}

/// What to do to a request's headers: remove every forwarding header
/// when the peer is not trusted, then set these (each replacing any
/// header of its name).
#[derive(Debug, Clone)]
pub struct Plan {
    /// The client this hop believes in.
    pub client: IpAddr,
    /// Where it was read: the peer, or an entry of a trusted peer's header.
    pub source: Source,
    /// Whether the peer was trusted (its forwarding headers are kept).
    pub peer_trusted: bool,
    /// Headers to set, replacing their namesakes.
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// What happens to header names with underscores.
    pub underscores: Underscores,
}

impl Plan {
    /// Whether a header the request carries is left out of what goes on:
    /// a forwarding header from an untrusted peer, or one the plan sets,
    /// each also under any spelling a backend reads as the same name
    /// (`X_Forwarded_For`); and any name with an underscore, unless they
    /// pass.
    pub fn drops(&self, name: &[u8]) -> bool {
        let underscored = name.contains(&b'_');
        (underscored && self.underscores == Underscores::Drop)
            || (!self.peer_trusted && STRIPPED.iter().any(|s| same_name(name, s)))
            || self.set.iter().any(|(n, _)| same_name(name, n.as_str()))
    }
}

impl Forwarding {
    /// Work out the rewrite from the request's headers (an `http`
    /// HeaderMap or raw parsed headers alike).
    pub fn plan<H: Headers + ?Sized>(
        &self,
        headers: &H,
        facts: &RequestFacts<'_>,
        ids: &RequestIds,
    ) -> Plan {
        let peer_trusted = self.resolver.trusted().contains(facts.peer.ip());
        let (client, source) = if peer_trusted {
            let req = realip_core::Request::new(facts.peer, headers);
            self.resolver
                .resolve(&req)
                .map_or((facts.peer.ip(), Source::Peer), |c| (c.ip, c.source))
        } else {
            // The chain restarts here: nothing the peer said about earlier
            // hops is passed on.
            (facts.peer.ip(), Source::Peer)
        };
        let present = |name: &str| peer_trusted && headers.values(name).next().is_some();
        let set_list = self.headers;
        let mut set = Vec::with_capacity(9);
        if set_list.has(Header::XForwardedFor) {
            let v = match self.xff {
                XffMode::Append => {
                    let mut joined = Vec::with_capacity(64);
                    if peer_trusted {
                        for v in headers.values("x-forwarded-for") {
                            joined.extend_from_slice(v);
                            joined.extend_from_slice(b", ");
                        }
                    }
                    let _ = write!(ByteWriter(&mut joined), "{}", facts.peer.ip());
                    HeaderValue::from_bytes(&joined).unwrap_or_else(|_| ip_value(facts.peer.ip()))
                }
                XffMode::Client => ip_value(client),
            };
            set.push((HeaderName::from_static("x-forwarded-for"), v));
        }
        if set_list.has(Header::XRealIp) {
            set.push((HeaderName::from_static("x-real-ip"), ip_value(client)));
        }
        if set_list.has(Header::Forwarded) {
            set.push((FORWARDED, forwarded_value(headers, peer_trusted, facts)));
        }
        if set_list.has(Header::XForwardedProto) && !present("x-forwarded-proto") {
            set.push((
                HeaderName::from_static("x-forwarded-proto"),
                HeaderValue::from_static(scheme_static(facts.scheme)),
            ));
        }
        if set_list.has(Header::XForwardedHost) && !present("x-forwarded-host") {
            if let Some(v) = facts.host.and_then(|h| HeaderValue::from_str(h).ok()) {
                set.push((HeaderName::from_static("x-forwarded-host"), v));
            }
        }
        if set_list.has(Header::XForwardedPort) && !present("x-forwarded-port") {
            set.push((
                HeaderName::from_static("x-forwarded-port"),
                HeaderValue::from(facts.local.port()),
            ));
        }
        if set_list.has(Header::XOriginalUri) {
            if let Ok(v) = HeaderValue::from_str(facts.target) {
                set.push((HeaderName::from_static("x-original-uri"), v));
            }
        }
        if set_list.has(Header::XScheme) {
            set.push((
                HeaderName::from_static("x-scheme"),
                HeaderValue::from_static(scheme_static(facts.scheme)),
            ));
        }
        if set_list.has(Header::XRequestId) {
            let valid = peer_trusted && {
                let mut all = headers.values("x-request-id");
                matches!((all.next(), all.next()), (Some(v), None) if valid_request_id(v))
            };
            if !valid {
                set.push((HeaderName::from_static("x-request-id"), ids.next()));
            }
        }
        Plan {
            client,
            source,
            peer_trusted,
            set,
            underscores: self.underscores,
        }
    }

    /// Rewrite `headers` for the backend.
    pub fn apply(
        &self,
        headers: &mut HeaderMap,
        facts: &RequestFacts<'_>,
        ids: &RequestIds,
    ) -> Rewritten {
        let plan = self.plan(&HttpHeaders(headers), facts, ids);
        let dropped: Vec<HeaderName> = headers
            .keys()
            .filter(|n| plan.drops(n.as_str().as_bytes()))
            .cloned()
            .collect();
        for name in dropped {
            headers.remove(name);
        }
        for (n, v) in plan.set {
            headers.insert(n, v);
        }
        Rewritten {
            client: plan.client,
            source: plan.source,
            peer_trusted: plan.peer_trusted,
        }
    }
}

/// `write!` into a byte vector.
struct ByteWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for ByteWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

fn scheme_static(scheme: &str) -> &'static str {
    if scheme == "https" {
        "https"
    } else {
        "http"
    }
}

fn ip_value(ip: IpAddr) -> HeaderValue {
    // An address's text is always a valid header value.
    HeaderValue::from_str(&ip.to_string()).unwrap_or(HeaderValue::from_static("unknown"))
}

/// The Forwarded header with `for=PEER;proto=SCHEME;host=HOST` appended
/// as its own element to a trusted peer's (RFC 7239 §4: IPv6 and ports
/// are quoted, `[v6]`).
fn forwarded_value<H: Headers + ?Sized>(
    headers: &H,
    peer_trusted: bool,
    facts: &RequestFacts<'_>,
) -> HeaderValue {
    let mut out = String::new();
    if peer_trusted {
        for v in headers.values("forwarded") {
            if let Ok(s) = std::str::from_utf8(v) {
                out.push_str(s);
                out.push_str(", ");
            }
        }
    }
    match facts.peer.ip() {
        IpAddr::V4(ip) => {
            let _ = write!(out, "for={ip}");
        }
        IpAddr::V6(ip) => {
            let _ = write!(out, "for=\"[{ip}]\"");
        }
    }
    let _ = write!(out, ";proto={}", scheme_static(facts.scheme));
    if let Some(h) = facts.host {
        // A token can hold a host name but not every byte a Host header
        // can; quote unless it is plain.
        if h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        {
            let _ = write!(out, ";host={h}");
        } else if h
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        {
            let _ = write!(out, ";host=\"{h}\"");
        }
    }
    HeaderValue::from_str(&out).unwrap_or_else(|_| HeaderValue::from_static("for=unknown"))
}

/// Whether an incoming X-Request-Id is kept: 1 to 128 bytes of letters,
/// digits, `-`, `_`, `.` (UUIDs, nginx's hex ids, Envoy's).
pub fn valid_request_id(v: &[u8]) -> bool {
    (1..=128).contains(&v.len())
        && v.iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Request ids: 128 bits, 32 hex digits, unique per process and not
/// guessable from the previous one (a keyed SipHash of a counter, keyed by
/// the OS's randomness through `RandomState`).
#[derive(Debug)]
pub struct RequestIds {
    keys: [std::hash::RandomState; 2],
    counter: AtomicU64,
}

impl Default for RequestIds {
    fn default() -> Self {
        RequestIds {
            keys: [std::hash::RandomState::new(), std::hash::RandomState::new()],
            counter: AtomicU64::new(0),
        }
    }
}

impl RequestIds {
    /// The next id.
    pub fn next(&self) -> HeaderValue {
        use std::hash::BuildHasher;
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let (a, b) = (self.keys[0].hash_one(n), self.keys[1].hash_one(n));
        let mut s = String::with_capacity(32);
        let _ = write!(s, "{a:016x}{b:016x}");
        HeaderValue::from_str(&s).unwrap_or(HeaderValue::from_static("0"))
    }
}

#[cfg(test)]
mod tests;
