//! What a run reports: each request's observation, each check, each probe
//! and scenario. Plain data, serialised for the JSON and HTML reports.

use std::collections::BTreeMap;
use std::net::IpAddr;

/// What one request saw.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct Seen {
    /// It timed out (no connection, or no answer).
    pub timeout: bool,
    /// Another failure (refused, reset, malformed answer).
    pub error: Option<String>,
    /// HTTP status.
    pub status: Option<u16>,
    /// The pod's socket peer (whoami's remoteAddr / peer).
    pub peer: Option<IpAddr>,
    /// The client whoami resolved.
    pub client: Option<IpAddr>,
    /// Where whoami took the client from (peer, header, proxy-protocol, field).
    pub source: Option<String>,
    /// The forwarding headers whoami received.
    pub headers: BTreeMap<String, String>,
    /// The PROXY header's source, when one came.
    pub proxy_source: Option<String>,
    /// Which pod answered (whoami's name).
    pub pod: Option<String>,
    /// The body (health answers).
    pub body: Option<String>,
}

/// One check of an expectation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Check {
    /// What was checked.
    pub what: String,
    /// Whether it held.
    pub ok: bool,
    /// What was seen.
    pub detail: String,
}

/// A probe's outcome.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProbeResult {
    /// The probe's name.
    pub name: String,
    /// The step it ran after (a live scenario's kubectl commands).
    pub step: Option<String>,
    /// The realip extension it shows, if it does (see `Probe::extension`).
    pub extension: Option<String>,
    /// Hops, the last one with what the pod saw.
    pub path: Vec<String>,
    /// What the pod's socket saw.
    pub socket: String,
    /// What headers, a PROXY header or a field said.
    pub said: String,
    /// The client whoami resolved.
    pub resolved: String,
    /// What the seeds predict.
    pub predicts: String,
    /// Per-pod shares, in percent, when measured.
    pub shares: BTreeMap<String, f64>,
    /// What the kernel's conntrack recorded on the nodes for this probe's
    /// flows: each translated flow as `HOST: SRC -> DST => SRC' -> DST'`
    /// (the addresses before and after the hop's NAT). Observed, not planned.
    pub nat: Vec<String>,
    /// Every check.
    pub checks: Vec<Check>,
    /// All checks held.
    pub pass: bool,
    /// Every request's observation.
    pub seen: Vec<Seen>,
}

/// A scenario's outcome.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScenarioResult {
    /// Its name.
    pub name: String,
    /// Its title.
    pub title: String,
    /// The seed article.
    pub seed: Option<String>,
    /// Probes, in order.
    pub probes: Vec<ProbeResult>,
    /// Why it could not run, if it could not.
    pub error: Option<String>,
    /// Wall time.
    pub seconds: f64,
    /// Every probe passed and nothing failed to start.
    pub pass: bool,
}
