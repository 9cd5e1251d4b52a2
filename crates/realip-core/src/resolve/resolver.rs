//! The entry point: a trust set and a strategy chain, tried in order; the
//! fast path and the explanation run the same walk with different recorders.

use crate::addr::Addr;
use crate::headers::Headers;
use crate::strategy::Strategy;
use crate::trust::TrustSet;

use super::client::ClientAddr;
use super::event::NoRecord;
use super::record::Record;
use super::report::Resolution;
use super::request::Request;
use super::walk::run;

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
