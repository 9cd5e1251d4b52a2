//! The L7 proxy: the seeds' HTTP load balancer (ULB7, SLB layer 7) and
//! ingress controller. HTTP/1.1, h2 (TLS, by ALPN) and h2c (prior
//! knowledge) in; HTTP/1.1 with pooled connections out. Requests are
//! routed by host and path prefix ([`crate::route`]), their forwarding
//! headers rewritten ([`crate::forward`]), and sent to a backend the
//! route's pool schedules.
//!
//! Errors, as nginx and HAProxy answer them: no route 404, a malformed
//! request 400 and an oversized head 431 (hyper's), no backend up 503, a
//! backend that cannot be reached or breaks off 502, no response head
//! within the response timeout 504. A request that never reached a
//! backend is retried on another one whatever its method; one that did is
//! retried only when it is idempotent and has no body.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::{Either, Empty, Full};
use hyper::body::{Body, Incoming};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::forward::{Forwarding, RequestFacts, RequestIds};
use crate::pool::Pool;
use crate::route::Routes;
use crate::tcp::TcpStats;
use crate::upstream::{ClientBody, PooledBody, SendError, UpBody, Upstream};

/// What an HTTP listener does; replaced whole on a reload (connections
/// read it per request, so a reload applies to the next request).
pub struct Site {
    /// Where requests go.
    pub routes: Routes<Arc<Pool>>,
    /// How forwarding headers are rewritten.
    pub forwarding: Forwarding,
    /// TLS termination, when set (h2 and HTTP/1.1 by ALPN).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Expect a PROXY header from a trusted LB in front (relay).
    pub accept_proxy: realip_net::ProxyMode,
    /// The protocols an HTTP/1.1 Upgrade may switch to, lower case.
    pub upgrades: Vec<String>,
    /// Limits and timeouts.
    pub limits: HttpLimits,
}

impl std::fmt::Debug for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Site")
            .field("routes", &self.routes)
            .field("forwarding", &self.forwarding)
            .field("tls", &self.tls.is_some())
            .field("accept_proxy", &self.accept_proxy)
            .field("limits", &self.limits)
            .finish()
    }
}

/// Limits of an HTTP listener.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Largest request head (431 past it).
    pub max_header_bytes: usize,
    /// Longest wait for a request head, and for a TLS handshake.
    pub header_timeout: Duration,
    /// Longest wait for a backend's response head (504 past it).
    pub response_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Other backends tried after one fails.
    pub retries: u32,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_header_bytes: 64 * 1024,
            header_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            retries: 2,
        }
    }
}

/// Request counters for `/metrics`.
#[derive(Debug, Default)]
pub struct HttpStats {
    /// Responses sent, by status class (1xx .. 5xx).
    pub responses: [AtomicU64; 5],
    /// Requests sent again to another backend.
    pub retries: AtomicU64,
    /// Requests no backend answered (502, 503, 504).
    pub upstream_failures: AtomicU64,
}

impl HttpStats {
    fn count(&self, status: StatusCode) {
        self.count_code(status.as_u16());
    }

    pub(crate) fn count_code(&self, code: u16) {
        let class = usize::from(code / 100).clamp(1, 5) - 1;
        self.responses[class].fetch_add(1, Ordering::Relaxed);
    }
}

/// A client connection (hyper path) or a backend connection with no bytes
/// either way for this long is closed.
pub(crate) const IDLE: Duration = Duration::from_secs(75);

/// The response body: a backend's, or one of ours.
pub type RespBody = Either<PooledBody, Full<Bytes>>;

/// Everything a listener's connections share.
#[derive(Debug)]
pub struct Shared {
    /// The current site; a reload sends a new one.
    pub site: watch::Receiver<Arc<Site>>,
    /// Connection counters (shared with L4 for `/metrics` and draining).
    pub conns: Arc<TcpStats>,
    /// Request counters.
    pub stats: Arc<HttpStats>,
    /// Idle backend connections (the hyper path).
    pub upstream: Arc<Upstream>,
    /// Idle backend connections (the HTTP/1.x fast path).
    pub raw: crate::upstream::RawPool,
    /// X-Request-Id source.
    pub ids: RequestIds,
}

/// One client connection.
pub(crate) struct Conn {
    pub(crate) shared: Arc<Shared>,
    /// The client (or the one a trusted PROXY header named).
    pub(crate) peer: SocketAddr,
    pub(crate) local: SocketAddr,
    pub(crate) scheme: &'static str,
}

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
    let local = stream.local_addr()?;
    let mut stream = stream;
    let (peer, local, rest) = crate::tcp::accept_proxy(
        &mut stream,
        peer,
        local,
        site.accept_proxy,
        site.forwarding.resolver.trusted(),
    )
    .await?;
    let io = Counted {
        inner: realip_net::Rewind::new(rest, stream),
        stats: shared.conns.clone(),
    };
    let limits = site.limits;
    match &site.tls {
        None => {
            let conn = Conn {
                shared,
                peer,
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
                local,
                scheme: "https",
            };
            let h2 = tls_stream.get_ref().1.alpn_protocol() == Some(b"h2");
            serve_http(tls_stream, conn, limits, h2, shutdown).await;
        }
    }
    Ok(())
}

/// HTTP/1.x goes through the fast path ([`crate::h1proxy`]) until a
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
    match crate::h1proxy::serve(&mut io, &conn, limits, &mut shutdown).await {
        crate::h1proxy::Outcome::Closed => {}
        crate::h1proxy::Outcome::Handoff(read) => {
            serve_hyper(realip_net::Rewind::new(read, io), conn, limits, shutdown).await
        }
    }
}

async fn serve_hyper<I>(io: I, conn: Conn, limits: HttpLimits, mut shutdown: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = conn.peer;
    // Nothing either way for this long closes the connection: hyper bounds
    // the wait for a request head, not a client that stops reading a body.
    let io = realip_net::IdleTimeout::new(io, IDLE);
    let builder = realip_net::http_server(limits.header_timeout, limits.max_header_bytes);
    let conn = Arc::new(conn);
    let svc = hyper::service::service_fn(move |req| {
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(handle(req, &conn).await) }
    });
    // Upgrades (WebSocket) are passed through: see `proxy`.
    let served = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::pin!(served);
    let mut draining = false;
    loop {
        tokio::select! {
            r = served.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection closed on a bad request or I/O error");
                }
                return;
            }
            _ = shutdown.wait_for(|&v| v), if !draining => {
                served.as_mut().graceful_shutdown();
                draining = true;
            }
        }
    }
}

/// The answers the proxy gives itself, the same on both paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// No route for the host and path: 404.
    NoRoute,
    /// No backend of the route's pool is up: 503.
    NoBackend,
    /// The backends tried could not be reached or broke off: 502.
    Unreachable,
    /// No response head within the response timeout: 504.
    Timeout,
    /// A 101 to a request that asked for no upgrade: 502.
    UnaskedSwitch,
    /// Two Host headers (RFC 9112 §3.2): 400.
    TwoHosts,
    /// An HTTP/1.1 request without Host, or h2 without `:authority`
    /// (RFC 9112 §3.2, RFC 9113 §8.3.1): 400.
    NoHost,
    /// A Host that is no `host[:port]`, a comma list among them: 400.
    BadHost,
    /// A request target that is no URI, or CONNECT (a tunnel this proxy
    /// does not open): 400.
    BadTarget,
    /// Content-Length and Transfer-Encoding together, or a coding list
    /// other than one `chunked` (RFC 9112 §6.3, §7): 400.
    TwoFramings,
    /// The client's body broke its own framing (a malformed chunk): 400.
    BadBody,
    /// The backend's answer could be read two ways, or was malformed: 502.
    BadResponse,
}

impl Answer {
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Answer::NoRoute => StatusCode::NOT_FOUND,
            Answer::NoBackend => StatusCode::SERVICE_UNAVAILABLE,
            Answer::Unreachable | Answer::UnaskedSwitch | Answer::BadResponse => {
                StatusCode::BAD_GATEWAY
            }
            Answer::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Answer::TwoHosts
            | Answer::NoHost
            | Answer::BadHost
            | Answer::BadTarget
            | Answer::TwoFramings
            | Answer::BadBody => StatusCode::BAD_REQUEST,
        }
    }

    /// Whether the client connection must close after this answer: after
    /// a request whose framing or target cannot be trusted, the bytes that
    /// follow it are no request (RFC 9112 §6.3, §9.6).
    pub(crate) fn closes(self) -> bool {
        self.status() == StatusCode::BAD_REQUEST
    }

    pub(crate) fn text(self) -> &'static str {
        match self {
            Answer::NoRoute => "no route for this host and path\n",
            Answer::NoBackend => "no backend is up\n",
            Answer::Unreachable => "the backend could not be reached or broke off\n",
            Answer::Timeout => "the backend did not answer in time\n",
            Answer::UnaskedSwitch => "the backend switched protocols unasked\n",
            Answer::TwoHosts => "more than one Host header\n",
            Answer::NoHost => "no Host header\n",
            Answer::BadHost => "the Host header is no host[:port]\n",
            Answer::BadTarget => "bad request target\n",
            Answer::TwoFramings => "the body's framing could be read two ways\n",
            Answer::BadBody => "malformed request body\n",
            Answer::BadResponse => "the backend's answer could not be passed on safely\n",
        }
    }
}

fn ours(a: Answer) -> Response<RespBody> {
    let mut r = Response::new(Either::Right(Full::new(Bytes::from_static(
        a.text().as_bytes(),
    ))));
    *r.status_mut() = a.status();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if a.closes() {
        // hyper closes an HTTP/1 connection after a response saying so
        // (and leaves the header out of h2).
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

/// Whether a Host value (or an authority) is `uri-host[":"port]` (RFC 9110
/// §7.2) with a host a DNS name or IP literal could be. A comma is refused
/// although RFC 3986's reg-name allows it: `a, b` is how two Host lines
/// look once combined (RFC 9110 §5.3), and two are a 400 (RFC 9112 §3.2);
/// so are userinfo, paths and anything a backend could split differently.
pub(crate) fn valid_host(v: &[u8]) -> bool {
    let port = match v.first() {
        Some(b'[') => {
            let Some(end) = v.iter().position(|&b| b == b']') else {
                return false;
            };
            let ip_ok = std::str::from_utf8(&v[1..end])
                .is_ok_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok());
            if !ip_ok {
                return false;
            }
            match &v[end + 1..] {
                [] => None,
                [b':', port @ ..] => Some(port),
                _ => return false,
            }
        }
        _ => {
            let (host, port) = match v.iter().position(|&b| b == b':') {
                Some(i) => (&v[..i], Some(&v[i + 1..])),
                None => (v, None),
            };
            let host_ok = !host.is_empty()
                && host
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
            if !host_ok {
                return false;
            }
            port
        }
    };
    port.is_none_or(|p| p.len() <= 5 && p.iter().all(u8::is_ascii_digit))
}

/// The backend to try after `tried` failed: the next one up in the
/// schedule's order after the last one tried, never one tried already.
pub(crate) fn another_backend(
    schedule: &crate::Schedule,
    tried: &[SocketAddr],
) -> Option<SocketAddr> {
    let all = schedule.backends();
    let from = tried
        .last()
        .and_then(|l| all.iter().position(|b| b.addr == *l))
        .map_or(0, |i| i + 1);
    all.iter()
        .cycle()
        .skip(from)
        .take(all.len())
        .find(|b| b.weight > 0 && !tried.contains(&b.addr))
        .map(|b| b.addr)
}

async fn handle(req: Request<Incoming>, conn: &Conn) -> Response<RespBody> {
    let stats = &conn.shared.stats;
    let resp = proxy(req, conn).await;
    stats.count(resp.status());
    resp
}

/// Headers that belong to one connection, never forwarded (RFC 9110
/// §7.6.1), plus Transfer-Encoding, which the framing on each side decides.
pub(crate) const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
];

/// Whether a header is one of [`HOP_BY_HOP`].
pub(crate) fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|n| n.eq_ignore_ascii_case(name))
}

fn strip_hop_by_hop(h: &mut HeaderMap) {
    // Names listed in Connection are hop-by-hop too.
    let listed: Vec<header::HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| header::HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in listed {
        h.remove(n);
    }
    for n in HOP_BY_HOP {
        h.remove(n);
    }
}

/// The host a request is for (RFC 9112 §3.2, RFC 9113 §8.3.1), or the
/// answer refusing it. An absolute-form target's or h2's authority wins
/// over any Host header; a request whose host is missing, doubled or
/// malformed is refused.
fn host_of(parts: &http::request::Parts) -> Result<Option<String>, Answer> {
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    let (first, second) = (hosts.next(), hosts.next());
    if second.is_some() {
        return Err(Answer::TwoHosts);
    }
    let host = match parts.uri.authority() {
        Some(a) => Some(a.as_str()),
        None => match first {
            Some(v) => Some(v.to_str().map_err(|_| Answer::BadHost)?),
            None => None,
        },
    };
    match host {
        Some(h) if !valid_host(h.as_bytes()) => Err(Answer::BadHost),
        Some(h) => Ok(Some(h.to_owned())),
        // HTTP/1.0 may leave it out; HTTP/1.1 and h2 may not.
        None if parts.version == Version::HTTP_10 || parts.version == Version::HTTP_09 => Ok(None),
        None => Err(Answer::NoHost),
    }
}

async fn proxy(req: Request<Incoming>, conn: &Conn) -> Response<RespBody> {
    let site = conn.shared.site.borrow().clone();
    let (mut parts, body) = req.into_parts();
    // CONNECT asks for a tunnel this reverse proxy does not open; what
    // follows it is no HTTP request.
    if parts.method == Method::CONNECT {
        return ours(Answer::BadTarget);
    }
    // Both framings (RFC 9112 §6.3), or a coding list hyper read as
    // chunked that another reader need not (`chunked` twice, RFC 9112 §7;
    // `x, chunked`): a request that two readers could split differently is
    // refused, and its connection closed.
    let mut codings = parts.headers.get_all(header::TRANSFER_ENCODING).iter();
    match (codings.next(), codings.next()) {
        (None, _) => {}
        (Some(te), None)
            if te.as_bytes().trim_ascii().eq_ignore_ascii_case(b"chunked")
                && !parts.headers.contains_key(header::CONTENT_LENGTH) => {}
        _ => return ours(Answer::TwoFramings),
    }
    // The asterisk form is OPTIONS' alone (RFC 9112 §3.2.4).
    if parts.uri == "*" && parts.method != Method::OPTIONS {
        return ours(Answer::BadTarget);
    }
    let host = match host_of(&parts) {
        Ok(h) => h,
        Err(a) => return ours(a),
    };
    let path = parts.uri.path().to_owned();
    let Some(route) = site.routes.find(host.as_deref(), &path) else {
        return ours(Answer::NoRoute);
    };
    let target = parts
        .uri
        .path_and_query()
        .map_or_else(|| path.clone(), |pq| pq.as_str().to_owned());
    // An HTTP/1.1 Upgrade to a protocol the listener passes (WebSocket by
    // default): the only hop-by-hop headers passed on, and after the
    // backend's 101 both connections are spliced. Any other Upgrade is
    // dropped with the hop-by-hop headers and the request goes on plain.
    let upgrade = upgrade_of(&parts, &site.upgrades);
    let client_upgrade = upgrade
        .is_some()
        .then(|| parts.extensions.remove::<hyper::upgrade::OnUpgrade>())
        .flatten();
    strip_hop_by_hop(&mut parts.headers);
    if let Some(u) = &upgrade {
        parts.headers.insert(header::UPGRADE, u.clone());
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    // The backend gets the host the request was routed by: the
    // authority replaces a Host that disagrees with it (RFC 9112 §3.2.2),
    // and HTTP/1.1 needs one where h2 carried :authority.
    if let Some(v) = host.as_deref().and_then(|h| HeaderValue::from_str(h).ok()) {
        parts.headers.insert(header::HOST, v);
    }
    // hyper frames the body to the backend from what it read: the
    // client's own Content-Length never goes on beside it.
    parts.headers.remove(header::CONTENT_LENGTH);
    let facts = RequestFacts {
        peer: conn.peer,
        local: conn.local,
        scheme: conn.scheme,
        host: host.as_deref(),
        target: &target,
    };
    let rewritten = site
        .forwarding
        .apply(&mut parts.headers, &facts, &conn.shared.ids);
    parts.uri = match target.parse() {
        Ok(u) => u,
        Err(_) => return ours(Answer::BadTarget),
    };
    parts.version = Version::HTTP_11;
    let bodiless = body.is_end_stream();
    let replayable = bodiless && is_idempotent(&parts.method);
    // Whether the client broke its body's framing: then a failed send is
    // the client's fault, not the backend's.
    let body_failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let body: UpBody = if bodiless {
        Either::Right(Empty::new())
    } else {
        Either::Left(ClientBody::new(body, body_failed.clone()))
    };
    let copy = replayable.then(|| {
        (
            parts.method.clone(),
            parts.uri.clone(),
            parts.headers.clone(),
        )
    });
    let mut req = Request::from_parts(parts, body);

    let pool = &route.target;
    let schedule = pool.schedule();
    let client = SocketAddr::new(rewritten.client, conn.peer.port());
    let Some(first) = schedule.pick(client, conn.local) else {
        conn.shared
            .stats
            .upstream_failures
            .fetch_add(1, Ordering::Relaxed);
        return ours(Answer::NoBackend);
    };
    let mut tried = vec![first.backend().addr];
    // Held until the response head: least connections counts it.
    let _held = first;
    let retries = site.limits.retries as usize;
    loop {
        let backend = *tried.last().unwrap_or(&conn.local);
        let sent = tokio::time::timeout(
            site.limits.response_timeout,
            conn.shared.upstream.send(backend, req),
        )
        .await;
        let next = match sent {
            Ok(Ok(resp)) => {
                if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                    return switch(resp, client_upgrade, backend, conn.peer);
                }
                let (mut parts, body) = resp.into_parts();
                if parts.headers.contains_key(header::CONNECTION) {
                    strip_hop_by_hop(&mut parts.headers);
                }
                // The fast path's rule (RFC 9112 §6.1, §6.3): one `chunked`
                // from an HTTP/1.1 backend, or 502; chunked wins over a
                // length, which then goes.
                let mut codings = parts.headers.get_all(header::TRANSFER_ENCODING).iter();
                match (codings.next(), codings.next()) {
                    (None, _) => {}
                    (Some(te), None)
                        if te.as_bytes().trim_ascii().eq_ignore_ascii_case(b"chunked")
                            && parts.version == Version::HTTP_11 =>
                    {
                        parts.headers.remove(header::CONTENT_LENGTH);
                    }
                    _ => {
                        conn.shared
                            .stats
                            .upstream_failures
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%backend, "backend answer refused: unsupported Transfer-Encoding");
                        return ours(Answer::BadResponse);
                    }
                }
                parts.headers.remove(header::TRANSFER_ENCODING);
                // hyper accepts `Content-Length: 2, 2` and would pass the
                // list on; the client gets one plain number (RFC 9110 §8.6).
                if let Some(n) = one_length(&parts.headers) {
                    parts
                        .headers
                        .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
                }
                return Response::from_parts(parts, Either::Left(body));
            }
            Err(_) => {
                conn.shared
                    .stats
                    .upstream_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%backend, timeout = ?site.limits.response_timeout, "no response head in time");
                return ours(Answer::Timeout);
            }
            Ok(Err(SendError::NotSent(back, why))) => {
                tracing::info!(%backend, error = %why, "request not sent; trying another backend");
                Some(*back)
            }
            Ok(Err(SendError::Failed(_))) if body_failed.load(Ordering::Relaxed) => {
                // Not the backend's failure: the connection it was on is
                // gone with the broken body, and the client is told.
                tracing::info!(peer = %conn.peer, %backend, "malformed request body");
                return ours(Answer::BadBody);
            }
            Ok(Err(SendError::Failed(why))) => {
                tracing::info!(%backend, error = %why, "backend failed the request");
                copy.as_ref().map(|(m, u, h)| {
                    let mut r = Request::new(Either::Right(Empty::new()));
                    *r.method_mut() = m.clone();
                    *r.uri_mut() = u.clone();
                    *r.headers_mut() = h.clone();
                    r
                })
            }
        };
        match (next, another_backend(&schedule, &tried)) {
            (Some(r), Some(b)) if tried.len() <= retries => {
                conn.shared.stats.retries.fetch_add(1, Ordering::Relaxed);
                req = r;
                tried.push(b);
            }
            _ => {
                conn.shared
                    .stats
                    .upstream_failures
                    .fetch_add(1, Ordering::Relaxed);
                return ours(Answer::Unreachable);
            }
        }
    }
}

/// A response's Content-Length when it has one to rewrite (hyper has
/// refused the ones that disagree).
fn one_length(h: &HeaderMap) -> Option<u64> {
    let mut all = h.get_all(header::CONTENT_LENGTH).iter();
    let first = all.next()?;
    if all.next().is_none() && first.as_bytes().iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v: Vec<&[u8]> = h
        .get_all(header::CONTENT_LENGTH)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    crate::h1proxy::content_length(&v.join(&b","[..]))
}

/// The protocol an HTTP/1.1 request asks to switch to, when it is one of
/// `allowed`: an `Upgrade` header with `upgrade` among the Connection
/// tokens.
fn upgrade_of(parts: &http::request::Parts, allowed: &[String]) -> Option<HeaderValue> {
    if parts.version != Version::HTTP_11 {
        return None;
    }
    let mut offered = parts.headers.get_all(header::UPGRADE).iter();
    let (Some(value), None) = (offered.next(), offered.next()) else {
        return None;
    };
    // One protocol, one the listener passes: a list could name h2c beside
    // websocket and the backend would choose.
    let token = value.to_str().ok()?.trim();
    if !allowed.iter().any(|a| a.eq_ignore_ascii_case(token)) {
        return None;
    }
    let asked = parts
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    asked
        .then(|| parts.headers.get(header::UPGRADE).cloned())
        .flatten()
}

/// The backend switched protocols: answer the client's 101 with its
/// headers, and once both sides have upgraded copy bytes both ways until
/// either ends.
fn switch(
    mut resp: Response<crate::upstream::PooledBody>,
    client: Option<hyper::upgrade::OnUpgrade>,
    backend: SocketAddr,
    peer: SocketAddr,
) -> Response<RespBody> {
    let Some(client) = client else {
        return ours(Answer::UnaskedSwitch);
    };
    let upstream = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        match tokio::try_join!(client, upstream) {
            Ok((c, u)) => {
                let (mut c, mut u) = (TokioIo::new(c), TokioIo::new(u));
                if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut u).await {
                    tracing::debug!(%peer, %backend, error = %e, "upgraded connection ended");
                }
            }
            Err(e) => tracing::info!(%peer, %backend, error = %e, "upgrade failed"),
        }
    });
    let (parts, _) = resp.into_parts();
    Response::from_parts(parts, Either::Right(Full::new(Bytes::new())))
}

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Backend, Method, Schedule};

    #[test]
    fn another_backend_goes_on_in_order_and_never_back() {
        let b = |a: &str, w| Backend {
            addr: a.parse().unwrap(),
            weight: w,
        };
        let s = Schedule::new(
            Method::RoundRobin,
            vec![
                b("127.0.0.1:1", 1),
                b("127.0.0.1:2", 0),
                b("127.0.0.1:3", 1),
                b("127.0.0.1:4", 1),
            ],
        );
        let a = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        // After 3: 4; after 4 it wraps to 1; a down backend is skipped.
        assert_eq!(another_backend(&s, &[a(3)]), Some(a(4)));
        assert_eq!(another_backend(&s, &[a(3), a(4)]), Some(a(1)));
        assert_eq!(another_backend(&s, &[a(1)]), Some(a(3)));
        // Every live one tried: none.
        assert_eq!(another_backend(&s, &[a(1), a(3), a(4)]), None);
        assert!(is_hop_by_hop("Keep-Alive") && !is_hop_by_hop("x-forwarded-for"));
    }
}
