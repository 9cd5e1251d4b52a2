//! What one `realip whoami` process is told: listeners, trust and bounds.

use std::net::SocketAddr;
use std::time::Duration;

use realip_core::field::FieldFormat;
use realip_core::Resolver;
use realip_net::tls::TlsFiles;
use realip_net::{ProxyLimits, ProxyMode};

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
