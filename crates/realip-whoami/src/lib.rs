//! realip-whoami: the backend that shows what a pod really sees, and why.
//!
//! Three numbers where other whoami servers show one: the socket peer, what
//! every hop claimed (headers, PROXY header, client-IP field), and the client
//! resolved under the configured trust, with the reason. HTTP/1.1, h2c and
//! TLS (h2, optional mTLS) on one listener; a line protocol on TCP and UDP.
//!
//! What it must not do: believe a PROXY header or forwarding header from a
//! peer outside the trust set, guess whether a PROXY header is present, read
//! without bounds, wait without deadlines, or crash on any input.
#![forbid(unsafe_code)]

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use realip_core::Resolver;
use realip_net::{ProxyLimits, ProxyMode};
use tokio::sync::watch;

mod h1;
mod http_server;
mod line;
pub mod render;
mod tls;

pub use http_server::parse_go_duration;

/// The pure parsers behind the listeners, for the fuzz targets in `fuzz/`
/// only: not an API.
#[doc(hidden)]
pub mod fuzz {
    use std::net::SocketAddr;

    use realip_core::ClientAddr;

    /// The reply to one line of the TCP/UDP line protocol.
    pub fn line_reply(
        line: &str,
        peer: SocketAddr,
        client: Option<&ClientAddr>,
        hostname: &str,
    ) -> String {
        crate::line::respond(line, peer, client, hostname)
    }

    /// What the HTTP/1 fast path makes of a read buffer.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum H1Head {
        /// More bytes are needed.
        Partial,
        /// Handed to hyper.
        NotSimple,
        /// Answered by the fast path.
        Simple {
            /// Bytes of the head.
            len: usize,
            /// Whether the connection stays open after the answer.
            keep_alive: bool,
            /// GET or HEAD.
            method: http::Method,
            /// How many header fields it has.
            headers: usize,
        },
    }

    /// The fast path's parse of `buf` with at most `max_headers` headers.
    pub fn h1_head(buf: &[u8], max_headers: usize) -> H1Head {
        match crate::h1::parse(buf, max_headers) {
            crate::h1::Parse::Partial => H1Head::Partial,
            crate::h1::Parse::NotSimple => H1Head::NotSimple,
            crate::h1::Parse::Simple(h) => H1Head::Simple {
                len: h.len,
                keep_alive: h.keep_alive,
                method: h.request.method().clone(),
                headers: h.request.headers().len(),
            },
        }
    }
}
pub use realip_core::field::FieldFormat;

pub use realip_net::tls::TlsFiles;

/// Limits that keep one client from hurting the others.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most concurrent connections per listener; more are closed at once.
    pub max_connections: usize,
    /// Most bytes of request head (HTTP/1 line + headers).
    pub max_header_bytes: usize,
    /// Most request headers.
    pub max_headers: usize,
    /// A request head must arrive within this time (slowloris).
    pub header_timeout: Duration,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// PROXY header bounds.
    pub proxy: ProxyLimits,
    /// Longest line on the TCP line protocol.
    pub max_line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            proxy: ProxyLimits::default(),
            max_line: 4096,
        }
    }
}

/// The whole configuration of one `realip whoami` process.
#[derive(Debug, Clone)]
pub struct Config {
    /// HTTP listener.
    pub listen: SocketAddr,
    /// PROXY mode of the HTTP listener.
    pub http_proxy: ProxyMode,
    /// `--name`.
    pub name: Option<String>,
    /// TLS for the HTTP listener.
    pub tls: Option<TlsFiles>,
    /// TCP line-protocol listener.
    pub tcp: Option<SocketAddr>,
    /// PROXY mode of the TCP listener.
    pub tcp_proxy: ProxyMode,
    /// UDP line-protocol socket.
    pub udp: Option<SocketAddr>,
    /// PROXY mode of the UDP socket (v2 in each datagram).
    pub udp_proxy: ProxyMode,
    /// A client-IP field at the front of TCP streams and UDP datagrams.
    pub client_field: Option<FieldFormat>,
    /// Trust and strategies.
    pub resolver: Resolver,
    /// Time in-flight requests get after SIGTERM.
    pub grace: Duration,
    /// Bounds.
    pub limits: Limits,
}

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

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not bind.
    #[error("binding {what} on {addr}: {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// Where.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// TLS files could not be used.
    #[error("TLS: {0}")]
    Tls(String),
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn local_ips() -> Vec<IpAddr> {
    match if_addrs::get_if_addrs() {
        Ok(list) => list.into_iter().map(|i| i.ip()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Resolves once shutdown is requested. The watch guard is dropped inside,
/// so callers can hold this future across awaits in `Send` tasks.
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|&v| v).await;
}

/// Accept connections until shutdown, at most `max_connections` at a time
/// (more are closed at once and counted), then give the open ones the grace
/// time to finish. Shared by the HTTP and TCP listeners.
pub(crate) async fn accept_loop<F, Fut>(
    listener: tokio::net::TcpListener,
    state: Arc<State>,
    mut shutdown: watch::Receiver<bool>,
    handle: F,
) where
    F: Fn(tokio::net::TcpStream, SocketAddr, Arc<State>, watch::Receiver<bool>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let limit = state.config.limits.max_connections;
    let slots = Arc::new(tokio::sync::Semaphore::new(limit));
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stopped(&mut shutdown) => break,
        };
        while conns.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            let n = state.stats.over_limit.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(%peer, limit, refused = n, "connection limit reached; closing");
            continue;
        };
        state.stats.connections.fetch_add(1, Ordering::Relaxed);
        let fut = handle(stream, peer, state.clone(), shutdown.clone());
        conns.spawn(async move {
            let _permit = permit;
            fut.await;
        });
    }
    drop(listener);
    let grace = state.config.grace;
    if tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        tracing::warn!(
            left = conns.len(),
            "grace time over; closing remaining connections"
        );
        conns.abort_all();
    }
}

/// The PROXY step of a fresh connection under `mode`: trust is checked
/// before a byte is read (a stranger can neither make us parse nor speak
/// for anyone), then a bounded, timed read. `None`: close the connection
/// (already logged and counted).
pub(crate) async fn accept_proxy(
    stream: &mut tokio::net::TcpStream,
    peer: SocketAddr,
    mode: ProxyMode,
    state: &State,
) -> Option<Option<realip_net::ProxyHeader>> {
    if !mode.is_on() {
        return Some(None);
    }
    let cfg = &state.config;
    if !cfg.resolver.trusted().contains(peer.ip()) {
        let n = state.stats.proxy_untrusted.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(%peer, count = n, "PROXY header from an untrusted peer is not accepted; closing (see --trusted)");
        return None;
    }
    match realip_net::read_proxy_header(stream, mode, cfg.limits.proxy).await {
        Ok(h) => Some(Some(h)),
        Err(e) => {
            let n = state.stats.proxy_invalid.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(%peer, error = %e, count = n, "closing connection");
            None
        }
    }
}

/// Bound listeners, ready to serve.
pub struct Server {
    state: Arc<State>,
    http: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    tcp: Option<tokio::net::TcpListener>,
    udp: Option<tokio::net::UdpSocket>,
}

impl Server {
    /// Bind every configured listener (inside a tokio runtime).
    pub async fn bind(config: Config) -> Result<Self, StartError> {
        let bind = |what, addr| async move {
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { what, addr, source })
        };
        let http = bind("HTTP", config.listen).await?;
        let tcp = match config.tcp {
            Some(a) => Some(bind("TCP", a).await?),
            None => None,
        };
        let udp = match config.udp {
            Some(addr) => Some(tokio::net::UdpSocket::bind(addr).await.map_err(|source| {
                StartError::Bind {
                    what: "UDP",
                    addr,
                    source,
                }
            })?),
            None => None,
        };
        let tls = match &config.tls {
            Some(files) => Some(tls::acceptor(files).map_err(StartError::Tls)?),
            None => None,
        };
        let hostname = hostname();
        let ips = local_ips();
        let preamble = render::preamble(config.name.as_deref(), &hostname, &ips);
        // A name that is not a valid HTTP header name can never arrive.
        let resolver_headers = config
            .resolver
            .chain()
            .iter()
            .filter_map(|s| s.header())
            .filter_map(|h| http::HeaderName::try_from(&**h).ok())
            .collect();
        let state = Arc::new(State {
            config,
            hostname,
            ips,
            preamble,
            resolver_headers,
            health: AtomicU16::new(200),
            stats: Stats::default(),
        });
        Ok(Server {
            state,
            http,
            tls,
            tcp,
            udp,
        })
    }

    /// The HTTP listener's address (useful with port 0).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.local_addr().ok()
    }

    /// The TCP listener's address.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The UDP socket's address.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp.as_ref().and_then(|s| s.local_addr().ok())
    }

    /// Serve until `shutdown` turns true, then drain within the grace time.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let state = self.state.clone();
        let grace = state.config.grace;
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(http_server::serve(
            self.http,
            self.tls,
            state.clone(),
            shutdown.clone(),
        ));
        if let Some(l) = self.tcp {
            tasks.spawn(line::serve_tcp(l, state.clone(), shutdown.clone()));
        }
        if let Some(s) = self.udp {
            tasks.spawn(line::serve_udp(s, state.clone(), shutdown.clone()));
        }
        crate::stopped(&mut shutdown).await;
        tracing::info!(grace = ?grace, "shutting down: no new connections, draining");
        // Each listener drains its own connections within the grace time;
        // this bound is a backstop.
        let drained = tokio::time::timeout(grace + Duration::from_millis(500), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tasks.abort_all();
        }
        let s = &state.stats;
        tracing::info!(
            connections = s.connections.load(Ordering::Relaxed),
            requests = s.requests.load(Ordering::Relaxed),
            proxy_untrusted = s.proxy_untrusted.load(Ordering::Relaxed),
            proxy_invalid = s.proxy_invalid.load(Ordering::Relaxed),
            over_limit = s.over_limit.load(Ordering::Relaxed),
            "stopped"
        );
    }
}
