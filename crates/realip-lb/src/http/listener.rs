//! An HTTP listener: accept (capped), the PROXY header from a trusted LB
//! (PROXY role expect, [`realip_net::Expect`]), TLS, then a path per
//! connection: the wire fast path for HTTP/1.x, hyper for h2 and whatever
//! the fast path hands over.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::hyper_path::serve_hyper;
use super::limits::HttpLimits;
use super::site::{Conn, Shared};
use super::wire;
use crate::tcp::TcpStats;

/// Serve `listener` until `shutdown`; then stop accepting and ask open
/// connections to finish the request in flight and close (see
/// [`crate::server::Running::stop`]).
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let accept =
        realip_net::CappedAccept::new(listener, shared.site.borrow().limits.max_connections);
    while let Some((permit, stream, peer)) = accept.next(&mut shutdown).await {
        shared.conns.accepted.fetch_add(1, Ordering::Relaxed);
        shared.conns.open.fetch_add(1, Ordering::Relaxed);
        let (shared, shutdown) = (shared.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(e) = connection(stream, peer, shared.clone(), shutdown).await {
                shared.conns.failed.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%peer, error = %e, "connection failed");
            }
            shared.conns.open.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let site = shared.site.borrow().clone();
    let mut stream = stream;
    let expect = realip_net::Expect {
        mode: site.accept_proxy,
        trusted: site.forwarding.resolver.trusted(),
        limits: realip_net::ProxyLimits::default(),
    };
    let accepted = expect
        .accept(&mut stream, realip_core::PeerAddr(peer))
        .await
        .map_err(std::io::Error::other)?;
    let (peer, client, local) = (accepted.socket_peer, accepted.client, accepted.local);
    let client_source = accepted.client_source();
    let io = Counted {
        inner: realip_net::Rewind::new(accepted.rest, stream),
        stats: shared.conns.clone(),
    };
    let limits = site.limits;
    match &site.tls {
        None => {
            let conn = Conn {
                shared,
                peer,
                client,
                client_source,
                local,
                scheme: "http",
            };
            serve_http(io, conn, limits, false, shutdown).await;
        }
        Some(tls) => {
            let tls_stream = tokio::time::timeout(limits.header_timeout, tls.accept(io))
                .await
                .map_err(|_| std::io::Error::other("TLS handshake timed out"))?
                .map_err(|e| std::io::Error::other(format!("TLS handshake: {e}")))?;
            let conn = Conn {
                shared,
                peer,
                client,
                client_source,
                local,
                scheme: "https",
            };
            let h2 = tls_stream.get_ref().1.alpn_protocol() == Some(b"h2");
            serve_http(tls_stream, conn, limits, h2, shutdown).await;
        }
    }
    Ok(())
}

/// HTTP/1.x goes through the fast path ([`wire`]) until a
/// request needs hyper; h2 (by ALPN or the h2c preface) goes to hyper.
async fn serve_http<I>(
    mut io: I,
    conn: Conn,
    limits: HttpLimits,
    alpn_h2: bool,
    mut shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if alpn_h2 {
        return serve_hyper(io, conn, limits, shutdown).await;
    }
    match wire::serve(&mut io, &conn, limits, &mut shutdown).await {
        wire::Outcome::Closed => {}
        wire::Outcome::Handoff(read) => {
            serve_hyper(realip_net::Rewind::new(read, io), conn, limits, shutdown).await
        }
    }
}

/// A client stream that counts the bytes it carries into the listener's
/// counters (`realip_lb_bytes_total`): "up" is what the client sent.
struct Counted<S> {
    inner: S,
    stats: Arc<TcpStats>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            self.stats.bytes_up.fetch_add(n, Ordering::Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = &r {
            self.stats
                .bytes_down
                .fetch_add(*n as u64, Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
