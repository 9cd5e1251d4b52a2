//! What a listener's connections share: the site (routes, forwarding,
//! TLS, limits; replaced whole on a reload), the counters, the pools, and
//! one client connection's facts.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::StatusCode;
use realip_core::{LocalAddr, PeerAddr, Source};
use tokio::sync::watch;

use super::answer::Answer;
use super::attempts::Next;
use super::limits::HttpLimits;
use super::upstream::{RawPool, Upstream};
use crate::forward::{Forwarding, RequestIds};
use crate::pool::Pool;
use crate::route::Routes;
use crate::tcp::TcpStats;

/// What an HTTP listener does; replaced whole on a reload (connections
/// read it per request, so a reload applies to the next request).
pub struct Site {
    /// Where requests go.
    pub routes: Routes<Arc<Pool>>,
    /// How forwarding headers are rewritten.
    pub forwarding: Forwarding,
    /// TLS termination, when set (h2 and HTTP/1.1 by ALPN).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Expect a PROXY header from a trusted LB in front (PROXY role
    /// expect); its client is where forwarding starts.
    pub accept_proxy: realip_net::ProxyMode,
    /// The protocols an HTTP/1.1 Upgrade may switch to, lower case.
    pub upgrades: Vec<String>,
    /// Limits and timeouts.
    pub limits: HttpLimits,
}

impl std::fmt::Debug for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Site")
            .field("routes", &self.routes)
            .field("forwarding", &self.forwarding)
            .field("tls", &self.tls.is_some())
            .field("accept_proxy", &self.accept_proxy)
            .field("limits", &self.limits)
            .finish()
    }
}

/// Request counters for `/metrics`.
#[derive(Debug, Default)]
pub struct HttpStats {
    /// Responses sent, by status class (1xx .. 5xx).
    pub responses: [AtomicU64; 5],
    /// Requests sent again to another backend.
    pub retries: AtomicU64,
    /// Requests no backend answered (502, 503, 504).
    pub upstream_failures: AtomicU64,
}

impl HttpStats {
    pub(crate) fn count(&self, status: StatusCode) {
        self.count_code(status.as_u16());
    }

    /// Count one of the proxy's own answers given instead of a backend's.
    pub(crate) fn gave(&self, answer: Answer) {
        if answer.is_upstream_failure() {
            self.upstream_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Count what the attempts policy decided, once per decision: a
    /// request sent to another backend, or given up.
    pub(crate) fn note(&self, next: &Next) {
        match *next {
            Next::Again { fresh: false, .. } => {
                self.retries.fetch_add(1, Ordering::Relaxed);
            }
            Next::Again { fresh: true, .. } => {}
            Next::Give(a) => self.gave(a),
        }
    }

    pub(crate) fn count_code(&self, code: u16) {
        let class = usize::from(code / 100).clamp(1, 5) - 1;
        self.responses[class].fetch_add(1, Ordering::Relaxed);
    }
}

/// Everything a listener's connections share.
#[derive(Debug)]
pub struct Shared {
    /// The current site; a reload sends a new one.
    pub site: watch::Receiver<Arc<Site>>,
    /// Connection counters (shared with L4 for `/metrics` and draining).
    pub conns: Arc<TcpStats>,
    /// Request counters.
    pub stats: Arc<HttpStats>,
    /// Idle backend connections (the hyper path).
    pub upstream: Arc<Upstream>,
    /// Idle backend connections (the HTTP/1.x fast path).
    pub raw: RawPool,
    /// X-Request-Id source.
    pub ids: RequestIds,
}

/// One client connection.
pub(crate) struct Conn {
    pub(crate) shared: Arc<Shared>,
    /// The TCP peer, for the logs: an LB in front when it sent a PROXY
    /// header.
    pub(crate) peer: PeerAddr,
    /// The client: the TCP peer, or the one a trusted PROXY header named.
    /// Forwarding headers and scheduling start from it.
    pub(crate) client: SocketAddr,
    /// Where `client` was read: the TCP peer or a PROXY header.
    pub(crate) client_source: Source,
    /// The address the client connected to (the header's, when it named
    /// one).
    pub(crate) local: LocalAddr,
    pub(crate) scheme: &'static str,
}
