//! The HTTP listener's connections: HTTP/1.1 and h2c on one port (TLS with
//! h2 when configured), the PROXY step, then the h1 fast path or hyper.
//! What is answered lives in `endpoints`, which both paths share.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use realip_net::{claim_of, IdleTimeout, Rewind};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::conn::{accept_loop, accept_proxy, stopped};
use crate::endpoints::{handle, ConnInfo};
use crate::h1;
use crate::state::State;

pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<State>,
    shutdown: watch::Receiver<bool>,
) {
    accept_loop(
        listener,
        state,
        shutdown,
        move |stream, peer, state, shutdown| {
            let _ = stream.set_nodelay(true);
            connection(stream, peer, tls.clone(), state, shutdown)
        },
    )
    .await
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<State>,
    shutdown: watch::Receiver<bool>,
) {
    let cfg = &state.config;
    let Some(accepted) = accept_proxy(&mut stream, peer, cfg.http_proxy, &state).await else {
        return;
    };
    let prefix = accepted.rest;
    // A plaintext connection keeps a second handle on the socket, so a
    // request head that times out can still be answered 408 after hyper
    // has given the connection up (hyper closes without a response).
    let (stream, answer_408) = if tls.is_none() {
        match split_for_408(stream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "socket setup failed; closing");
                return;
            }
        }
    } else {
        (stream, None)
    };
    let io = IdleTimeout::new(Rewind::new(prefix, stream), cfg.limits.idle_timeout);
    let claim = accepted.header.as_ref().map(claim_of);
    let proxy = accepted.header;
    match tls {
        None => {
            let info = Arc::new(ConnInfo::new(peer, proxy, claim, None));
            // Simple requests take the fast path; the first one that is not
            // simple moves the connection to hyper, bytes and all.
            let (mut io, mut shutdown) = (io, shutdown);
            let rest = match h1::serve(&mut io, &info, &state, &mut shutdown).await {
                h1::Outcome::Closed => return,
                h1::Outcome::Handoff(rest) => rest,
            };
            serve_http(Rewind::new(rest, io), info, state, shutdown, answer_408).await
        }
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(cfg.limits.header_timeout, acceptor.accept(io)).await;
            let tls_stream = match handshake {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::info!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::info!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let tls_info = crate::tls::info(tls_stream.get_ref().1);
            let info = Arc::new(ConnInfo::new(peer, proxy, claim, Some(tls_info)));
            serve_http(tls_stream, info, state, shutdown, None).await
        }
    }
}

/// The socket, re-registered with tokio, and a duplicate kept outside
/// tokio for the 408.
fn split_for_408(stream: TcpStream) -> std::io::Result<(TcpStream, Option<std::net::TcpStream>)> {
    let std_stream = stream.into_std()?;
    let dup = std_stream.try_clone()?;
    Ok((TcpStream::from_std(std_stream)?, Some(dup)))
}

/// What hyper would send for a slow request head if it sent anything.
fn send_408(sock: &std::net::TcpStream) {
    use std::io::Write;
    // Non-blocking and tiny: it fits any socket buffer, and if it does not,
    // closing without it is what hyper would have done anyway.
    let _ = (&*sock).write_all(realip_net::ANSWER_408);
}

async fn serve_http<I>(
    io: I,
    info: Arc<ConnInfo>,
    state: Arc<State>,
    mut shutdown: watch::Receiver<bool>,
    answer_408: Option<std::net::TcpStream>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = state.config.limits;
    let peer = info.peer;
    let mut builder = realip_net::http_server(limits.header_timeout, limits.max_header_bytes);
    // hyper's default is 100 on a stack array; setting any value moves the
    // array to the heap for every request, so only set a different one.
    if limits.max_headers != 100 {
        builder.http1().max_headers(limits.max_headers);
    }
    let svc = hyper::service::service_fn(move |req| {
        let info = info.clone();
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(req, &info, &state).await) }
    });
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                // hyper has already answered 400/408/431 where HTTP allows;
                // this is the log line for it.
                if let Err(e) = r {
                    let timed_out = e
                        .downcast_ref::<hyper::Error>()
                        .is_some_and(hyper::Error::is_timeout);
                    if let (true, Some(sock)) = (timed_out, &answer_408) {
                        send_408(sock);
                    }
                    tracing::info!(peer = %peer, error = %e, "connection closed on a bad request or I/O error");
                }
                break;
            }
            _ = stopped(&mut shutdown), if !draining => {
                // Finish the request in flight, then close.
                conn.as_mut().graceful_shutdown();
                draining = true;
            }
        }
    }
}
