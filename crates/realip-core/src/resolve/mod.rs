//! Resolution: walk the evidence under a trust set and name the client.
//!
//! Every strategy is one walk over a chain of hops, nearest first. The same
//! walk serves [`Resolver::resolve`] (no allocation beyond what the parsers
//! need) and [`Resolver::explain`] (every hop recorded with a verdict), so
//! the explanation can never disagree with the answer.

//
// The files, in the order a request meets them: `request` (the evidence),
// `resolver` (the chain), `walk` and `rightmost` (one walk per strategy,
// over `hops`), `event` and `record` (what the walk saw), `verdict` (those
// events in words), `report` and `client` (what comes back).

mod client;
mod event;
mod hops;
mod outcome;
mod record;
mod report;
mod request;
mod resolver;
mod rightmost;
mod verdict;
mod walk;

pub use client::{ClientAddr, Source};
pub use report::{HopAddr, HopReport, Reason, Resolution, Step, Stop, Verdict};
pub use request::{BackendAddr, LocalAddr, PeerAddr, ProxyClaim, Request};
pub use resolver::Resolver;
