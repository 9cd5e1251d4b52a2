//! The JSON shape of a resolution, shared by `realip resolve --json` and
//! `realip whoami`'s `/api`, so scripts parse one format everywhere.
//!
//! ```json
//! {"client": {"ip": "3.3.3.3", "port": null, "source": "header",
//!             "header": "X-Forwarded-For", "index": 0},
//!  "strategy": "rightmost-trusted-range:X-Forwarded-For",
//!  "stop": "...", "flagged": false,
//!  "hops": [{"addr": "3.3.3.3", "ip": "3.3.3.3", "port": null,
//!            "source": "header", "header": "X-Forwarded-For", "index": 0,
//!            "trusted": false, "verdict": "untrusted", "reason": "...",
//!            "answer": true}, ...],
//!  "steps": [{"strategy": ..., "stop": ..., "answer": 0, "hops": [...]}]}
//! ```

use std::net::IpAddr;

use serde::Serialize;

use crate::resolve::{ClientAddr, HopAddr, HopReport, Resolution, Source, Step};

/// The resolved client.
#[derive(Debug, Serialize)]
pub struct JsonClient<'a> {
    /// The IP.
    pub ip: IpAddr,
    /// The port, or null.
    pub port: Option<u16>,
    /// peer, proxy-protocol, toa, client-field or header.
    pub source: &'static str,
    /// The header's name, when the source is a header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<&'a str>,
    /// The entry's index from the left, when the source is a header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
}

impl<'a> From<&'a ClientAddr> for JsonClient<'a> {
    fn from(c: &'a ClientAddr) -> Self {
        let (header, index) = source_parts(&c.source);
        JsonClient {
            ip: c.ip,
            port: c.port,
            source: c.source.kind(),
            header,
            index,
        }
    }
}

fn source_parts(s: &Source) -> (Option<&str>, Option<usize>) {
    match s {
        Source::Header { name, index } => (Some(name), Some(*index)),
        _ => (None, None),
    }
}

/// One hop.
#[derive(Debug, Serialize)]
pub struct JsonHop<'a> {
    /// The address as written (or `unknown`, `_hidden`, the bad text).
    pub addr: String,
    /// The IP, when the hop is an address.
    pub ip: Option<IpAddr>,
    /// The port, when there is one.
    pub port: Option<u16>,
    /// Where the hop came from.
    pub source: &'static str,
    /// The header's name, for header entries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<&'a str>,
    /// Index from the left, for header entries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// true / false when checked against trust, null when not.
    pub trusted: Option<bool>,
    /// trusted, untrusted, believed, unusable, skipped or not-reached.
    pub verdict: &'static str,
    /// Why.
    pub reason: &'a str,
    /// Whether this hop is the answer.
    pub answer: bool,
}

fn hop(h: &HopReport, is_answer: bool) -> JsonHop<'_> {
    let (header, index) = source_parts(&h.source);
    let (ip, port) = match &h.addr {
        HopAddr::Addr(a) => (Some(a.ip), a.port),
        _ => (None, None),
    };
    JsonHop {
        addr: match &h.addr {
            HopAddr::Invalid { text, .. } => text.clone(),
            other => other.to_string(),
        },
        ip,
        port,
        source: h.source.kind(),
        header,
        index,
        trusted: h.verdict.trusted(),
        verdict: h.verdict.word(),
        reason: h.verdict.reason(),
        answer: is_answer,
    }
}

/// One strategy's step.
#[derive(Debug, Serialize)]
pub struct JsonStep<'a> {
    /// The strategy.
    pub strategy: &'a str,
    /// Why it stopped.
    pub stop: String,
    /// Index of the answer in `hops`, or null.
    pub answer: Option<usize>,
    /// Far client first, peer last.
    pub hops: Vec<JsonHop<'a>>,
}

fn step(s: &Step) -> JsonStep<'_> {
    JsonStep {
        strategy: &s.strategy,
        stop: s.stop.to_string(),
        answer: s.answer,
        hops: s
            .hops
            .iter()
            .enumerate()
            .map(|(i, h)| hop(h, s.answer == Some(i)))
            .collect(),
    }
}

/// The whole resolution.
#[derive(Debug, Serialize)]
pub struct JsonResolution<'a> {
    /// The client, or null.
    pub client: Option<JsonClient<'a>>,
    /// The deciding strategy.
    pub strategy: Option<&'a str>,
    /// Why the deciding walk stopped.
    pub stop: Option<String>,
    /// Whether the answer rests on a broken or opaque entry.
    pub flagged: bool,
    /// The deciding step's hops, far client first, peer last.
    pub hops: Vec<JsonHop<'a>>,
    /// Every strategy tried.
    pub steps: Vec<JsonStep<'a>>,
}

impl<'a> From<&'a Resolution> for JsonResolution<'a> {
    fn from(r: &'a Resolution) -> Self {
        let decisive = r.decisive();
        JsonResolution {
            client: r.client.as_ref().map(JsonClient::from),
            strategy: decisive.map(|s| &*s.strategy),
            stop: decisive.map(|s| s.stop.to_string()),
            flagged: decisive.is_some_and(|s| s.stop.is_flagged()),
            hops: decisive.map(|s| step(s).hops).unwrap_or_default(),
            steps: r.steps.iter().map(step).collect(),
        }
    }
}
