//! What `explain` returns: every hop with its verdict, and why each
//! strategy's walk stopped, as data the CLI and whoami render.

use std::fmt;

use crate::addr::Addr;

use super::client::{ClientAddr, Source};

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
