//! The explanation's recorder: keeps every event and turns them into one
//! `Step` of hops with verdicts once the walk is over.

use crate::addr::Addr;
use crate::strategy::{HeaderName, Strategy};
use crate::trust::TrustSet;

use super::client::{ClientAddr, Source};
use super::event::{At, Event, Recorder};
use super::hops::RawHop;
use super::report::{HopAddr, HopReport, Step, Stop, Verdict};
use super::verdict::verdict;

#[derive(Default)]
pub(super) struct Record<'h> {
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

impl Record<'_> {
    pub(super) fn finish(
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
