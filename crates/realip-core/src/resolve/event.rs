//! What a walk reports about each hop, and the recorder it reports to:
//! the fast path's recorder drops everything, so walks pay nothing for it.

use crate::strategy::HeaderName;

use super::client::Source;
use super::hops::RawHop;
use super::report::HopAddr;

/// Where in the chain a hop sits, for events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum At {
    Peer,
    /// Entry counted from the right (0 = nearest).
    FromRight(usize),
    /// Entry counted from the left (0 = farthest).
    FromLeft(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Event {
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

pub(super) trait Recorder<'h> {
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

pub(super) struct NoRecord;

impl<'h> Recorder<'h> for NoRecord {
    const ON: bool = false;
    fn event(&mut self, _at: At, _ev: Event) {}
}
