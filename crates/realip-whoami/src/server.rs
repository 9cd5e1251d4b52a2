//! Binding every configured listener, then running them together until
//! shutdown and the grace time are over.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::Config;
use crate::conn::stopped;
use crate::state::{State, Stats};
use crate::{http_server, line, render, tls};

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
    Tls(realip_net::tls::TlsError),
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
        stopped(&mut shutdown).await;
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
