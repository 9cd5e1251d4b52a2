//! The L4 TCP proxy: accept, pick a backend, tell it who the client is
//! (or not, as the seeds' LB in front of kube-proxy does not), copy both
//! ways until either side is done or the connection idles out.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use realip_core::proxy::{OwnedHeader, Version};
use realip_net::IdleTimeout;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::pool::Pool;

/// How the backend learns the client's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientIp {
    /// It does not: it sees the LB's own address (the seeds' problem).
    None,
    /// A PROXY protocol v1 line before the client's bytes.
    ProxyV1,
    /// A PROXY protocol v2 header before the client's bytes.
    ProxyV2,
}

impl std::str::FromStr for ClientIp {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(ClientIp::None),
            "proxy-v1" => Ok(ClientIp::ProxyV1),
            "proxy-v2" => Ok(ClientIp::ProxyV2),
            _ => Err(format!(
                "{s:?} is not a TCP client-IP mode: none, proxy-v1 or proxy-v2"
            )),
        }
    }
}

/// Settings of one TCP listener.
#[derive(Debug, Clone)]
pub struct TcpConfig {
    /// How the backend learns the client.
    pub client_ip: ClientIp,
    /// Expect a PROXY header from the peer (an LB in front of this one):
    /// its claimed client is the one passed on (relay). Only peers in
    /// `trusted` may send one; a connection without a valid header, or
    /// from anyone else, is closed.
    pub accept_proxy: realip_net::ProxyMode,
    /// Who may speak for the client.
    pub trusted: realip_core::TrustSet,
    /// Longest wait for a backend to accept.
    pub connect_timeout: Duration,
    /// A connection with no bytes either way for this long is closed.
    pub idle_timeout: Duration,
}

/// Counters for `/metrics` and the logs.
#[derive(Debug, Default)]
pub struct TcpStats {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Connections that found no backend, or none that answered.
    pub failed: AtomicU64,
    /// Bytes from clients to backends.
    pub bytes_up: AtomicU64,
    /// Bytes from backends to clients.
    pub bytes_down: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
}

impl TcpStats {
    /// Wait until no connection is open, or `grace` has passed; returns
    /// how many were still open.
    pub async fn drain(&self, grace: Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let open = self.open.load(Ordering::Relaxed);
            if open == 0 || tokio::time::Instant::now() >= deadline {
                return open;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Serve `listener` until `shutdown` turns true; then stop accepting and
/// return (open connections finish on their own tasks: see
/// [`TcpStats::drain`]).
pub async fn serve(
    listener: TcpListener,
    pool: Arc<Pool>,
    config: TcpConfig,
    stats: Arc<TcpStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.wait_for(|&v| v) => return,
        };
        let (client, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors and the like: back off, do not spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        let (pool, config, stats) = (pool.clone(), config.clone(), stats.clone());
        stats.open.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            if let Err(e) = connection(client, peer, &pool, &config, &stats).await {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%peer, error = %e, "connection failed");
            }
            stats.open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn connection(
    client: TcpStream,
    peer: SocketAddr,
    pool: &Pool,
    config: &TcpConfig,
    stats: &TcpStats,
) -> std::io::Result<()> {
    let mut client = client;
    let mut local = client.local_addr()?;
    // Relay: the upstream LB's header names the client (and the address
    // it dialled); the bytes read past it go on to the backend.
    let mut peer = peer;
    let mut rest = bytes::Bytes::new();
    if config.accept_proxy.is_on() {
        if !config.trusted.contains(peer.ip()) {
            return Err(std::io::Error::other(
                "PROXY header expected from a peer that is not trusted; closed",
            ));
        }
        let h = realip_net::read_proxy_header(
            &mut client,
            config.accept_proxy,
            realip_net::ProxyLimits::default(),
        )
        .await
        .map_err(|e| std::io::Error::other(format!("PROXY header: {e}")))?;
        if let (realip_core::ProxyClaim::Source(src), Some(dst)) =
            (h.claim(), h.header.addresses.destination())
        {
            peer = src;
            local = dst;
        }
        rest = h.rest;
    }
    // The schedule of now; a health change later does not move this
    // connection.
    let schedule = pool.schedule();
    let picked = schedule
        .pick(peer, local)
        .ok_or_else(|| std::io::Error::other("no backend is up"))?;
    let target = picked.backend().addr;
    let mut backend =
        match tokio::time::timeout(config.connect_timeout, TcpStream::connect(target)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(std::io::Error::other(format!("backend {target}: {e}"))),
            Err(_) => {
                return Err(std::io::Error::other(format!(
                    "backend {target}: no answer within {:?}",
                    config.connect_timeout
                )))
            }
        };
    let _ = client.set_nodelay(true);
    let _ = backend.set_nodelay(true);
    let version = match config.client_ip {
        ClientIp::None => None,
        ClientIp::ProxyV1 => Some(Version::V1),
        ClientIp::ProxyV2 => Some(Version::V2),
    };
    if let Some(v) = version {
        let header = OwnedHeader::tcp(v, peer, local)
            .encode(false)
            .map_err(std::io::Error::other)?;
        backend.write_all(&header).await?;
    }
    if !rest.is_empty() {
        backend.write_all(&rest).await?;
    }
    tracing::info!(%peer, backend = %target, "connected");
    let mut client = IdleTimeout::new(client, config.idle_timeout);
    let mut backend = IdleTimeout::new(backend, config.idle_timeout);
    // 64 KiB buffers: tokio's default 8 KiB costs a syscall pair per 8 KiB
    // of bulk data (bench/lb-l4.sh).
    let (up, down) =
        tokio::io::copy_bidirectional_with_sizes(&mut client, &mut backend, 1 << 16, 1 << 16)
            .await?;
    stats.bytes_up.fetch_add(up, Ordering::Relaxed);
    stats.bytes_down.fetch_add(down, Ordering::Relaxed);
    drop(picked);
    Ok(())
}
