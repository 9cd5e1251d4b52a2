//! The L4 TCP proxy: accept (PROXY role expect, when configured), pick a
//! backend, tell it who the client is (PROXY role send, [`crate::proxy_send`];
//! or not, as the seeds' LB in front of kube-proxy does not), copy both
//! ways until either side is done or the connection idles out.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use realip_core::proxy::Version;
use realip_core::{BackendAddr, PeerAddr};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::pool::Pool;
pub use crate::proxy_send::ProxyTlvs;

/// How the backend learns the client's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientIp {
    /// It does not: it sees the LB's own address (the seeds' problem).
    None,
    /// A PROXY protocol v1 line before the client's bytes.
    ProxyV1,
    /// A PROXY protocol v2 header before the client's bytes.
    ProxyV2,
    /// The connection to the backend is made from the client's own
    /// address (IP_TRANSPARENT, as nginx's `proxy_bind $remote_addr
    /// transparent` and HAProxy's `usesrc clientip`). The backend's replies
    /// must be routed back through this host and handed to the socket: see
    /// [`transparent_connect`].
    Transparent,
}

/// A word that is not a [`ClientIp`] mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a TCP client-IP mode: none, proxy-v1, proxy-v2 or transparent")]
pub struct UnknownClientIp {
    /// The word given.
    pub value: String,
}

impl std::str::FromStr for ClientIp {
    type Err = UnknownClientIp;

    fn from_str(s: &str) -> Result<Self, UnknownClientIp> {
        match s {
            "none" => Ok(ClientIp::None),
            "proxy-v1" => Ok(ClientIp::ProxyV1),
            "proxy-v2" => Ok(ClientIp::ProxyV2),
            "transparent" => Ok(ClientIp::Transparent),
            _ => Err(UnknownClientIp { value: s.into() }),
        }
    }
}

/// Settings of one TCP listener.
#[derive(Debug, Clone)]
pub struct TcpConfig {
    /// How the backend learns the client.
    pub client_ip: ClientIp,
    /// Expect a PROXY header from the peer (an LB in front of this one;
    /// PROXY role expect): its claimed client is the one passed on (role
    /// relay = send with the received client). Only peers in `trusted` may
    /// send one; a connection without a valid header, or from anyone else,
    /// is closed.
    pub accept_proxy: realip_net::ProxyMode,
    /// Who may speak for the client.
    pub trusted: realip_core::TrustSet,
    /// Longest wait for a backend to accept.
    pub connect_timeout: Duration,
    /// A connection with no bytes either way for this long is closed.
    pub idle_timeout: Duration,
    /// What a PROXY v2 header carries besides the addresses.
    pub tlvs: ProxyTlvs,
    /// Connections served at once; more wait in the listen backlog (set
    /// when the listener starts; a reload does not change it).
    pub max_connections: usize,
}

/// What a TCP listener does; replaced whole on a reload (a connection
/// keeps the one it was accepted under).
#[derive(Debug)]
pub struct TcpSite {
    /// The backends.
    pub pool: Arc<Pool>,
    /// The settings.
    pub config: TcpConfig,
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

/// Serve `listener` until `shutdown` turns true; then stop accepting and
/// return (open connections finish on their own tasks; the stats' `open`
/// count says how many are left: see [`crate::server::Running::stop`]).
pub async fn serve(
    listener: TcpListener,
    site: watch::Receiver<Arc<TcpSite>>,
    stats: Arc<TcpStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let ids = Arc::new(crate::forward::RequestIds::default());
    let accept = realip_net::CappedAccept::new(listener, site.borrow().config.max_connections);
    while let Some((permit, client, peer)) = accept.next(&mut shutdown).await {
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        let (site, stats, ids) = (site.borrow().clone(), stats.clone(), ids.clone());
        stats.open.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let conn = connection(
                client,
                PeerAddr(peer),
                &site.pool,
                &site.config,
                &stats,
                &ids,
            );
            if let Err(e) = conn.await {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%peer, error = %e, "connection failed");
            }
            stats.open.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
}

async fn connection(
    mut client: TcpStream,
    peer: PeerAddr,
    pool: &Pool,
    config: &TcpConfig,
    stats: &TcpStats,
    ids: &crate::forward::RequestIds,
) -> std::io::Result<()> {
    let expect = realip_net::Expect {
        mode: config.accept_proxy,
        trusted: &config.trusted,
        limits: realip_net::ProxyLimits::default(),
    };
    let accepted = expect
        .accept(&mut client, peer)
        .await
        .map_err(std::io::Error::other)?;
    // The schedule of now; a health change later does not move this
    // connection.
    let schedule = pool.schedule();
    let picked = schedule
        .pick(accepted.client, accepted.local.0)
        .ok_or_else(|| std::io::Error::other("no backend is up"))?;
    let backend = BackendAddr(picked.backend().addr);
    let connect = async {
        if config.client_ip == ClientIp::Transparent {
            transparent_connect(accepted.client.ip(), backend.0).await
        } else {
            TcpStream::connect(backend.0).await
        }
    };
    let mut upstream = match tokio::time::timeout(config.connect_timeout, connect).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(std::io::Error::other(format!("backend {backend}: {e}"))),
        Err(_) => {
            return Err(std::io::Error::other(format!(
                "backend {backend}: no answer within {:?}",
                config.connect_timeout
            )))
        }
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let version = match config.client_ip {
        ClientIp::None | ClientIp::Transparent => None,
        ClientIp::ProxyV1 => Some(Version::V1),
        ClientIp::ProxyV2 => Some(Version::V2),
    };
    let mut prefix = match version {
        Some(v) => {
            crate::proxy_send::tcp_header(v, accepted.client, accepted.local, &config.tlvs, ids)
                .map_err(std::io::Error::other)?
        }
        None => Vec::new(),
    };
    prefix.extend_from_slice(&accepted.rest);
    // The client has usually sent its first bytes while the backend
    // connection was being made: they go out with the header, in one send.
    let mut first = [0u8; 16 * 1024];
    let (client_done, early) = match client.try_read(&mut first) {
        Ok(0) => (true, 0),
        Ok(n) => {
            prefix.extend_from_slice(&first[..n]);
            (false, n)
        }
        Err(_) => (false, 0),
    };
    stats
        .bytes_up
        .fetch_add((accepted.rest.len() + early) as u64, Ordering::Relaxed);
    if !prefix.is_empty() {
        upstream.write_all(&prefix).await?;
    }
    // `peer` is the TCP peer, an LB in front when it sent a header; the
    // client it named is what the backend is told.
    tracing::info!(
        peer = %accepted.socket_peer,
        client = %accepted.client,
        source = %accepted.client_source(),
        %backend,
        "connected"
    );
    let (up, down) = relay(&mut client, &mut upstream, client_done, config.idle_timeout).await?;
    stats.bytes_up.fetch_add(up, Ordering::Relaxed);
    stats.bytes_down.fetch_add(down, Ordering::Relaxed);
    drop(picked);
    Ok(())
}

/// Connect to `backend` from `client`'s address, which is not one of this
/// host's: IP_TRANSPARENT lets the socket bind it (CAP_NET_ADMIN), the port
/// is the kernel's choice. For the backend's replies to come back, the
/// backend's route to the client must go through this host, and this host
/// must deliver packets for the client's address locally instead of
/// forwarding them:
///
/// ```text
/// nft add table ip realip-tproxy
/// nft add chain ip realip-tproxy pre '{ type filter hook prerouting priority mangle; }'
/// nft add rule ip realip-tproxy pre socket transparent 1 meta mark set 1
/// ip rule add fwmark 1 lookup 100
/// ip route add local 0.0.0.0/0 dev lo table 100
/// ```
///
/// (the `socket transparent` match finds the established transparent
/// socket a reply belongs to). `realip lab` and the tests set this up in
/// their namespaces.
pub async fn transparent_connect(
    client: std::net::IpAddr,
    backend: SocketAddr,
) -> std::io::Result<TcpStream> {
    let socket = match backend {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // On an IPv6 socket too: Linux passes SOL_IP options of TCP/UDP
    // sockets to the IPv4 code, which sets the same flag IPV6_TRANSPARENT
    // does.
    nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::IpTransparent, &true)
        .map_err(|e| std::io::Error::other(format!("IP_TRANSPARENT (needs CAP_NET_ADMIN): {e}")))?;
    // The client's address may be reused by many of its connections at once.
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::new(client, 0)).map_err(|e| {
        std::io::Error::other(format!("binding the client's address {client}: {e}"))
    })?;
    socket.connect(backend).await
}

/// One direction of a relay: bytes read from one socket and not yet
/// written to the other. The buffer starts small (a short request costs
/// 8 KiB, not the 64 KiB bulk transfers want) and grows once a read fills it.
struct Half {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    read_done: bool,
    shut: bool,
    moved: u64,
}

const SMALL_BUF: usize = 8 * 1024;
const BULK_BUF: usize = 64 * 1024;

impl Half {
    fn new(read_done: bool) -> Self {
        Half {
            buf: vec![0; SMALL_BUF],
            start: 0,
            end: 0,
            read_done,
            shut: false,
            moved: 0,
        }
    }

    /// Move bytes until the reader ends (then shut the writer) or either
    /// side would block. Sets `progress` when a byte moved.
    fn poll(
        &mut self,
        cx: &mut std::task::Context<'_>,
        mut r: std::pin::Pin<&mut tokio::net::tcp::ReadHalf<'_>>,
        mut w: std::pin::Pin<&mut tokio::net::tcp::WriteHalf<'_>>,
        progress: &mut bool,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        use tokio::io::{AsyncRead, AsyncWrite};
        loop {
            if self.start < self.end {
                match w.as_mut().poll_write(cx, &self.buf[self.start..self.end]) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()))
                    }
                    Poll::Ready(Ok(n)) => {
                        self.start += n;
                        self.moved += n as u64;
                        *progress = true;
                        continue;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            if self.read_done {
                if !self.shut {
                    match w.as_mut().poll_shutdown(cx) {
                        Poll::Ready(_) => self.shut = true,
                        Poll::Pending => return Poll::Pending,
                    }
                }
                return Poll::Ready(Ok(()));
            }
            self.start = 0;
            self.end = 0;
            let mut rb = tokio::io::ReadBuf::new(&mut self.buf);
            match r.as_mut().poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    if n == 0 {
                        self.read_done = true;
                    } else {
                        if n == self.buf.len() && self.buf.len() < BULK_BUF {
                            self.buf.resize(BULK_BUF, 0);
                        }
                        self.end = n;
                        *progress = true;
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Copy both ways until both directions have ended (each end passed on as
/// a half-close) or nothing moves for `idle`; returns the bytes moved up
/// (client to backend) and down. One timer serves both directions.
async fn relay(
    client: &mut TcpStream,
    backend: &mut TcpStream,
    client_done: bool,
    idle: Duration,
) -> std::io::Result<(u64, u64)> {
    use std::task::Poll;
    let (mut cr, mut cw) = client.split();
    let (mut br, mut bw) = backend.split();
    let mut up = Half::new(client_done);
    let mut down = Half::new(false);
    let (mut up_done, mut down_done) = (false, false);
    let sleep = tokio::time::sleep(idle);
    tokio::pin!(sleep);
    std::future::poll_fn(|cx| {
        let mut progress = false;
        if !up_done {
            match up.poll(
                cx,
                std::pin::Pin::new(&mut cr),
                std::pin::Pin::new(&mut bw),
                &mut progress,
            ) {
                Poll::Ready(Ok(())) => up_done = true,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
        }
        if !down_done {
            match down.poll(
                cx,
                std::pin::Pin::new(&mut br),
                std::pin::Pin::new(&mut cw),
                &mut progress,
            ) {
                Poll::Ready(Ok(())) => down_done = true,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
        }
        if up_done && down_done {
            return Poll::Ready(Ok(()));
        }
        if progress {
            // Pushing a deadline later is an atomic store, not timer work.
            sleep.as_mut().reset(tokio::time::Instant::now() + idle);
        }
        match std::future::Future::poll(sleep.as_mut(), cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no traffic for {idle:?}"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    })
    .await?;
    Ok((up.moved, down.moved))
}
