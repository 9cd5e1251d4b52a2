//! The L4 UDP proxy: a flow per client address, each with its own socket
//! to the backend it was given, replies sent back from the listening
//! socket, flows forgotten after an idle timeout. With `proxy-v2` every
//! datagram to the backend starts with a PROXY v2 header (DGRAM), as the
//! spec asks for datagrams.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use realip_core::proxy::{Addresses, Command, OwnedHeader, Transport, Version};
use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::pool::Pool;

/// Settings of one UDP listener.
#[derive(Debug, Clone)]
pub struct UdpConfig {
    /// A PROXY v2 header on every datagram to the backend.
    pub proxy_v2: bool,
    /// A flow with no datagram either way for this long is forgotten.
    pub idle_timeout: Duration,
    /// Most flows at once; datagrams that would open more are dropped.
    pub max_flows: usize,
}

/// What a UDP listener does; replaced whole on a reload (a flow keeps the
/// backend it was given).
#[derive(Debug)]
pub struct UdpSite {
    /// The backends.
    pub pool: Arc<Pool>,
    /// The settings.
    pub config: UdpConfig,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct UdpStats {
    /// Datagrams from clients passed to backends.
    pub datagrams_up: AtomicU64,
    /// Datagrams from backends passed to clients.
    pub datagrams_down: AtomicU64,
    /// Bytes from clients (payload, without PROXY headers).
    pub bytes_up: AtomicU64,
    /// Bytes to clients.
    pub bytes_down: AtomicU64,
    /// Flows opened.
    pub flows_opened: AtomicU64,
    /// Flows now.
    pub flows_open: AtomicU64,
    /// Datagrams dropped: flow table full, no backend up, send failed.
    pub dropped: AtomicU64,
}

/// Largest datagram handled (the UDP maximum).
const MAX_DATAGRAM: usize = 65_535;

type Flows = Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>>;

/// Serve `socket` until `shutdown` turns true.
pub async fn serve(
    socket: UdpSocket,
    site: watch::Receiver<Arc<UdpSite>>,
    stats: Arc<UdpStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let socket = Arc::new(socket);
    let Ok(local) = socket.local_addr() else {
        return;
    };
    let flows: Flows = Arc::default();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let received = tokio::select! {
            r = socket.recv_from(&mut buf) => r,
            _ = shutdown.wait_for(|&v| v) => return,
        };
        let (n, client) = match received {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "udp receive failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let existing = flows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&client)
            .cloned();
        let site = site.borrow().clone();
        let upstream = match existing {
            Some(u) => u,
            None => match open_flow(
                &socket,
                &site.pool,
                &flows,
                client,
                local,
                &site.config,
                &stats,
            )
            .await
            {
                Some(u) => u,
                None => {
                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            },
        };
        let datagram = if site.config.proxy_v2 {
            let header = OwnedHeader {
                version: Version::V2,
                command: Command::Proxy,
                transport: Transport::Dgram,
                addresses: match (client, local) {
                    (SocketAddr::V4(s), SocketAddr::V4(d)) => Addresses::Ipv4 { src: s, dst: d },
                    (SocketAddr::V6(s), SocketAddr::V6(d)) => Addresses::Ipv6 { src: s, dst: d },
                    _ => Addresses::Unspec,
                },
                tlvs: Vec::new(),
            };
            match header.encode(false) {
                Ok(mut h) => {
                    h.extend_from_slice(&buf[..n]);
                    h
                }
                Err(_) => continue,
            }
        } else {
            buf[..n].to_vec()
        };
        match upstream.send(&datagram).await {
            Ok(_) => {
                stats.datagrams_up.fetch_add(1, Ordering::Relaxed);
                stats.bytes_up.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) => {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%client, error = %e, "udp send to backend failed");
            }
        }
    }
}

/// A new flow: pick a backend, connect a socket to it, and start relaying
/// its replies until the flow idles out.
async fn open_flow(
    listener: &Arc<UdpSocket>,
    pool: &Pool,
    flows: &Flows,
    client: SocketAddr,
    local: SocketAddr,
    config: &UdpConfig,
    stats: &Arc<UdpStats>,
) -> Option<Arc<UdpSocket>> {
    if flows.lock().unwrap_or_else(PoisonError::into_inner).len() >= config.max_flows {
        tracing::warn!(%client, max = config.max_flows, "udp flow table full; datagram dropped");
        return None;
    }
    let schedule = pool.schedule();
    let backend = schedule.pick(client, local)?.backend().addr;
    let bind: SocketAddr = if backend.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let upstream = match UdpSocket::bind(bind).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "udp flow socket");
            return None;
        }
    };
    if let Err(e) = upstream.connect(backend).await {
        tracing::info!(%client, %backend, error = %e, "udp backend unreachable");
        return None;
    }
    let upstream = Arc::new(upstream);
    flows
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(client, upstream.clone());
    tracing::info!(%client, %backend, "udp flow");
    stats.flows_opened.fetch_add(1, Ordering::Relaxed);
    stats.flows_open.fetch_add(1, Ordering::Relaxed);
    let (listener, flows, up, idle, stats) = (
        listener.clone(),
        flows.clone(),
        upstream.clone(),
        config.idle_timeout,
        stats.clone(),
    );
    tokio::spawn(async move {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        // Until no reply for the idle timeout, or the backend refuses: the
        // flow ends; the client's next datagram opens another.
        while let Ok(Ok(n)) = tokio::time::timeout(idle, up.recv(&mut buf)).await {
            if listener.send_to(&buf[..n], client).await.is_ok() {
                stats.datagrams_down.fetch_add(1, Ordering::Relaxed);
                stats.bytes_down.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
        stats.flows_open.fetch_sub(1, Ordering::Relaxed);
        // Only this flow: a newer one for the same client stays.
        let mut table = flows.lock().unwrap_or_else(PoisonError::into_inner);
        if table.get(&client).is_some_and(|u| Arc::ptr_eq(u, &up)) {
            table.remove(&client);
        }
    });
    Some(upstream)
}
