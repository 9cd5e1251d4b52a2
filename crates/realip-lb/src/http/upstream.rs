//! HTTP/1.1 connections to backends, kept open and reused (the
//! `keepalive` of an nginx upstream, HAProxy's connection reuse).
//!
//! A connection goes back to its backend's idle list when the response
//! body it carried has been read to the end; one dropped half-way is
//! closed (its state is unknown). The idle list is capped per backend and
//! connections idle too long, or closed by the backend, are not reused.
//!
//! Sending tells the caller whether the request reached the backend:
//! [`SendError::NotSent`] hands the request back (connect failed, or a
//! pooled connection turned out closed before a byte was written), so it
//! can be retried on another backend whatever its method.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Either, Empty};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A request body on its way to a backend: the client's, or none (a
/// bodiless request is sent with an empty body, so it can be rebuilt
/// for a retry).
pub type UpBody = Either<ClientBody, Empty<Bytes>>;

/// The client's request body, noting whether it broke its own framing (a
/// malformed chunk): the send then fails through the client's fault, and
/// the proxy answers 400 rather than blaming the backend.
pub struct ClientBody {
    inner: Incoming,
    failed: Arc<AtomicBool>,
}

impl ClientBody {
    /// Wrap `inner`; `failed` is set if it yields an error.
    pub fn new(inner: Incoming, failed: Arc<AtomicBool>) -> Self {
        ClientBody { inner, failed }
    }
}

impl std::fmt::Debug for ClientBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBody").finish_non_exhaustive()
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Err(_))) = &polled {
            self.failed.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Settings of the connection pool.
#[derive(Debug, Clone, Copy)]
pub struct PoolLimits {
    /// Idle connections kept per backend.
    pub max_idle: usize,
    /// An idle connection older than this is closed, not reused.
    pub idle_timeout: Duration,
    /// Longest wait for a backend to accept.
    pub connect_timeout: Duration,
}

impl Default for PoolLimits {
    fn default() -> Self {
        PoolLimits {
            max_idle: 128,
            idle_timeout: Duration::from_secs(50),
            connect_timeout: Duration::from_secs(3),
        }
    }
}

/// Idle connections per backend, the newest taken first, at most
/// `max_idle` kept per backend, none older than `idle_timeout` handed out.
/// Both pools below keep theirs here; each says how to tell a live one.
struct IdleConns<T> {
    limits: PoolLimits,
    lists: Mutex<HashMap<SocketAddr, Vec<(T, Instant)>>>,
}

impl<T> IdleConns<T> {
    fn new(limits: PoolLimits) -> Self {
        IdleConns {
            limits,
            lists: Mutex::new(HashMap::new()),
        }
    }

    /// The newest idle connection to `backend` that `alive` accepts (given
    /// how long it has idled); the others met on the way are dropped.
    fn take(&self, backend: SocketAddr, alive: impl Fn(&T, Duration) -> bool) -> Option<T> {
        loop {
            let (conn, since) = {
                let mut lists = self.lists.lock().unwrap_or_else(PoisonError::into_inner);
                lists.get_mut(&backend)?.pop()?
            };
            let idle_for = since.elapsed();
            if idle_for < self.limits.idle_timeout && alive(&conn, idle_for) {
                return Some(conn);
            }
        }
    }

    fn put(&self, backend: SocketAddr, conn: T) {
        let mut lists = self.lists.lock().unwrap_or_else(PoisonError::into_inner);
        let list = lists.entry(backend).or_default();
        if list.len() < self.limits.max_idle {
            list.push((conn, Instant::now()));
        }
    }
}

/// Why a backend gave no response, for both pools and the logs.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The connect was refused or failed.
    #[error("connecting to {backend}: {source}")]
    Connect {
        /// The backend.
        backend: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// No answer to the connect in time.
    #[error("connecting to {backend}: no answer within {timeout:?}")]
    ConnectTimeout {
        /// The backend.
        backend: SocketAddr,
        /// The connect timeout.
        timeout: Duration,
    },
    /// Reading or writing failed.
    #[error("{backend}: {source}")]
    Io {
        /// The backend.
        backend: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// hyper's client gave up on the exchange.
    #[error("{backend}: {source}")]
    Http {
        /// The backend.
        backend: SocketAddr,
        /// The error.
        source: hyper::Error,
    },
    /// The backend closed before a whole response head.
    #[error("{backend} closed the connection {}", if *.in_head { "inside the response head" } else { "without a response" })]
    Closed {
        /// The backend.
        backend: SocketAddr,
        /// Whether part of a head had arrived.
        in_head: bool,
    },
    /// A response head over the limit.
    #[error("{backend}: response head over {limit} bytes")]
    HeadTooLarge {
        /// The backend.
        backend: SocketAddr,
        /// The limit.
        limit: usize,
    },
    /// A response head that does not parse.
    #[error("{backend}: malformed response head: {source}")]
    Malformed {
        /// The backend.
        backend: SocketAddr,
        /// httparse's reason.
        source: httparse::Error,
    },
}

/// A new TCP connection to `backend` within `timeout`, Nagle off.
async fn dial(backend: SocketAddr, timeout: Duration) -> Result<TcpStream, UpstreamError> {
    match tokio::time::timeout(timeout, TcpStream::connect(backend)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(source)) => Err(UpstreamError::Connect { backend, source }),
        Err(_) => Err(UpstreamError::ConnectTimeout { backend, timeout }),
    }
}

/// Idle connections to every backend.
pub struct Upstream {
    limits: PoolLimits,
    /// Each with the number of the socket hyper's connection task owns,
    /// for the same peek as the raw pool's (see `take_idle`).
    idle: IdleConns<Idle>,
}

/// A pooled hyper connection: its sender and its socket's number.
type Idle = (SendRequest<UpBody>, RawFd);

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Why a request got no response.
#[derive(Debug)]
pub enum SendError {
    /// It never left: here it is back, with why.
    NotSent(Box<Request<UpBody>>, UpstreamError),
    /// It was (or may have been) written, and no response came.
    Failed(UpstreamError),
}

impl Upstream {
    /// An empty pool.
    pub fn new(limits: PoolLimits) -> Arc<Self> {
        Arc::new(Upstream {
            limits,
            idle: IdleConns::new(limits),
        })
    }

    fn take_idle(&self, backend: SocketAddr) -> Option<Idle> {
        // hyper's connection task closes a connection that has bytes to
        // read while idle, but only once it has run and tokio has seen them:
        // peek at the socket too. While the sender is open the task holds
        // the socket, so the number is its; should the task end in between,
        // a peek at whatever took the number only reads, and the request
        // then fails as not sent and goes to a fresh connection.
        self.idle
            .take(backend, |(sender, fd), _| !sender.is_closed() && quiet(*fd))
    }

    fn put_idle(&self, backend: SocketAddr, sender: Idle) {
        if !sender.0.is_closed() {
            self.idle.put(backend, sender);
        }
    }

    async fn connect(&self, backend: SocketAddr) -> Result<Idle, UpstreamError> {
        let stream = dial(backend, self.limits.connect_timeout).await?;
        let fd = stream.as_raw_fd();
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .writev(false)
            // A backend that stalls mid-body is cut off, not waited on
            // forever; an idle pooled connection ends the same way.
            .handshake(TokioIo::new(realip_net::IdleTimeout::new(
                stream,
                super::limits::IDLE,
            )))
            .await
            .map_err(|source| UpstreamError::Http { backend, source })?;
        tokio::spawn(async move {
            // With upgrades: a 101 hands the connection to the splice.
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(%backend, error = %e, "backend connection ended");
            }
        });
        Ok((sender, fd))
    }

    /// Send `req` to `backend` on an idle connection, or a new one.
    pub async fn send(
        self: &Arc<Self>,
        backend: SocketAddr,
        req: Request<UpBody>,
    ) -> Result<Response<PooledBody>, SendError> {
        let mut req = req;
        // Pooled connections first; one that proves closed before the
        // request is written gives the request back, and the next is tried.
        while let Some((mut sender, fd)) = self.take_idle(backend) {
            // Back in the pool as soon as the last body byte was read, a
            // connection may need a moment to be ready for the next request.
            if !matches!(
                tokio::time::timeout(Duration::from_secs(1), sender.ready()).await,
                Ok(Ok(()))
            ) {
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok(self.wrap(backend, (sender, fd), resp)),
                Err(mut e) => match e.take_message() {
                    Some(back) => req = back,
                    None => {
                        return Err(SendError::Failed(UpstreamError::Http {
                            backend,
                            source: e.into_error(),
                        }))
                    }
                },
            }
        }
        let (mut sender, fd) = match self.connect(backend).await {
            Ok(s) => s,
            Err(why) => return Err(SendError::NotSent(Box::new(req), why)),
        };
        match sender.try_send_request(req).await {
            Ok(resp) => Ok(self.wrap(backend, (sender, fd), resp)),
            Err(mut e) => match e.take_message() {
                Some(back) => Err(SendError::NotSent(
                    Box::new(back),
                    UpstreamError::Http {
                        backend,
                        source: e.into_error(),
                    },
                )),
                None => Err(SendError::Failed(UpstreamError::Http {
                    backend,
                    source: e.into_error(),
                })),
            },
        }
    }

    fn wrap(
        self: &Arc<Self>,
        backend: SocketAddr,
        sender: Idle,
        resp: Response<Incoming>,
    ) -> Response<PooledBody> {
        // A connection that switched protocols is no HTTP connection any
        // more: never pooled.
        let home = (resp.status() != http::StatusCode::SWITCHING_PROTOCOLS)
            .then(|| (self.clone(), backend, sender));
        let (parts, body) = resp.into_parts();
        let done = body.is_end_stream();
        let mut pooled = PooledBody { inner: body, home };
        if done {
            pooled.release();
        }
        Response::from_parts(parts, pooled)
    }
}

/// A backend's response body; at its end the connection goes back to the
/// pool.
pub struct PooledBody {
    inner: Incoming,
    home: Option<(Arc<Upstream>, SocketAddr, Idle)>,
}

impl std::fmt::Debug for PooledBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledBody").finish_non_exhaustive()
    }
}

impl PooledBody {
    fn release(&mut self) {
        if let Some((up, backend, sender)) = self.home.take() {
            up.put_idle(backend, sender);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.release(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.release(),
            // An error leaves the connection in an unknown state: dropped.
            Poll::Ready(Some(Err(_))) => self.home = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether an idle backend connection has nothing to read: not closed, and
/// no bytes the backend sent unasked. Anything there would be read as the
/// answer to the next client's request (response queue poisoning), so it
/// is looked for every time, with one non-blocking peek at the socket
/// itself (tokio's readiness may not have seen bytes that just arrived).
fn quiet(fd: RawFd) -> bool {
    use nix::sys::socket::{recv, MsgFlags};
    let mut probe = [0u8; 1];
    matches!(
        recv(fd, &mut probe, MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT),
        Err(nix::errno::Errno::EAGAIN)
    )
}

/// Idle raw connections to backends, for the HTTP/1.1 fast path (which
/// writes and reads the wire format itself).
pub struct RawPool {
    limits: PoolLimits,
    idle: IdleConns<TcpStream>,
}

impl std::fmt::Debug for RawPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawPool")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// A connection to a backend, and whether it came from the pool (a reused
/// connection may have been closed by the backend meanwhile).
#[derive(Debug)]
pub struct RawConn {
    /// The stream.
    pub stream: TcpStream,
    /// Taken from the pool, not freshly connected.
    pub reused: bool,
}

impl RawPool {
    /// An empty pool.
    pub fn new(limits: PoolLimits) -> Self {
        RawPool {
            limits,
            idle: IdleConns::new(limits),
        }
    }

    /// The limits it was made with.
    pub fn limits(&self) -> PoolLimits {
        self.limits
    }

    /// An idle connection to `backend`, if one is left that the backend
    /// has neither closed nor written to.
    pub fn take(&self, backend: SocketAddr) -> Option<RawConn> {
        self.idle
            .take(backend, |stream, _| quiet(stream.as_raw_fd()))
            .map(|stream| RawConn {
                stream,
                reused: true,
            })
    }

    /// Give back a connection whose last response was read to its end.
    pub fn put(&self, backend: SocketAddr, stream: TcpStream) {
        self.idle.put(backend, stream);
    }

    /// A new connection to `backend`, within the connect timeout.
    pub async fn connect(&self, backend: SocketAddr) -> Result<RawConn, UpstreamError> {
        dial(backend, self.limits.connect_timeout)
            .await
            .map(|stream| RawConn {
                stream,
                reused: false,
            })
    }
}
