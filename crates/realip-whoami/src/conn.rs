//! The steps every TCP listener takes before its protocol starts: the
//! connection cap, the PROXY accept step (realip-net's, with its trust
//! gate) and its counters, and the shutdown signal.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use realip_core::PeerAddr;
use realip_net::{AcceptError, Accepted, ProxyMode};
use tokio::sync::watch;

use crate::state::State;

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
            // On a dual-stack socket ([::]) an IPv4 peer comes as
            // ::ffff:a.b.c.d; it is shown, trusted and matched as the
            // IPv4 address it is (as Go's net, and so traefik/whoami, do).
            Ok((stream, peer)) => (stream, canonical(peer)),
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

/// The PROXY step of a fresh connection under `mode` (PROXY role expect,
/// [`realip_net::Expect`]: trust is checked before a byte is read, then a
/// bounded, timed read). `None`: close the connection (already logged and
/// counted).
pub(crate) async fn accept_proxy(
    stream: &mut tokio::net::TcpStream,
    peer: SocketAddr,
    mode: ProxyMode,
    state: &State,
) -> Option<Accepted> {
    let cfg = &state.config;
    let expect = realip_net::Expect {
        mode,
        trusted: cfg.resolver.trusted(),
        limits: cfg.limits.proxy,
    };
    match expect.accept(stream, PeerAddr(peer)).await {
        Ok(a) => Some(a),
        Err(AcceptError::Untrusted { .. }) => {
            let n = state.stats.proxy_untrusted.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(%peer, count = n, "PROXY header from an untrusted peer is not accepted; closing (see --trusted)");
            None
        }
        Err(AcceptError::Header { source: e, .. }) => {
            let n = state.stats.proxy_invalid.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(%peer, error = %e, count = n, "closing connection");
            None
        }
        // Not the peer's doing: no PROXY counter.
        Err(e @ AcceptError::LocalAddr { .. }) => {
            tracing::warn!(error = %e, "closing connection");
            None
        }
    }
}

/// `peer` with a v4-mapped IPv6 address as the IPv4 address it carries.
pub(crate) fn canonical(peer: SocketAddr) -> SocketAddr {
    SocketAddr::new(peer.ip().to_canonical(), peer.port())
}
