//! What every connection of a running server shares: the configuration,
//! facts read once at start, the health status and the counters.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU16, AtomicU64};

use crate::config::Config;

/// Counters shown in logs and at shutdown.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Connections closed because the peer may not send a PROXY header.
    pub proxy_untrusted: AtomicU64,
    /// Connections closed because the PROXY header was missing or invalid.
    pub proxy_invalid: AtomicU64,
    /// Connections refused at the connection limit.
    pub over_limit: AtomicU64,
    /// Requests served.
    pub requests: AtomicU64,
}

/// Shared state of a running server.
#[derive(Debug)]
pub struct State {
    /// The configuration.
    pub config: Config,
    /// Host name, read once.
    pub hostname: String,
    /// Local addresses, read once.
    pub ips: Vec<IpAddr>,
    /// The `/` page's fixed first lines, made once.
    pub preamble: String,
    /// The HTTP headers the strategy chain reads. A request carrying none
    /// of them resolves like every other such request on its connection,
    /// so that answer is worked out once per connection.
    pub resolver_headers: Vec<http::HeaderName>,
    /// The `/health` status (POST sets it).
    pub health: AtomicU16,
    /// Counters.
    pub stats: Stats,
}
