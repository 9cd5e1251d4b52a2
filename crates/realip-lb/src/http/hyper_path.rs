//! The hyper path: h2 (TLS or h2c), and the HTTP/1.1 requests the fast
//! path hands over (bodies, Upgrade, anything unusual), served by hyper
//! and sent on through the pooled hyper client.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::{Either, Empty, Full};
use hyper::body::{Body, Incoming};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use super::answer::{content_length, is_idempotent, strip_hop_by_hop, valid_host, Answer};
use super::attempts::another_backend;
use super::limits::{HttpLimits, IDLE};
use super::site::Conn;
use super::upstream::{ClientBody, PooledBody, SendError, UpBody};
use crate::forward::RequestFacts;

/// The response body: a backend's, or one of ours.
pub type RespBody = Either<PooledBody, Full<Bytes>>;

pub(crate) async fn serve_hyper<I>(
    io: I,
    conn: Conn,
    limits: HttpLimits,
    mut shutdown: watch::Receiver<bool>,
) where
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

async fn handle(req: Request<Incoming>, conn: &Conn) -> Response<RespBody> {
    let stats = &conn.shared.stats;
    let resp = proxy(req, conn).await;
    stats.count(resp.status());
    resp
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
    let replayable = bodiless && is_idempotent(parts.method.as_str());
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
    content_length(&v.join(&b","[..]))
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
    mut resp: Response<PooledBody>,
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
