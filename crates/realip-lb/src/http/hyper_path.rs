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
use realip_core::BackendAddr;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use super::answer::{content_length, is_idempotent, strip_hop_by_hop, valid_host, Answer};
use super::attempts::{Attempts, Failure, Next};
use super::limits::{HttpLimits, IDLE};
use super::log::{log_request, start, Done};
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
    let started = start();
    let mut log = Logged {
        client: conn.client.ip(),
        source: realip_core::Source::Peer,
        done: Done {
            status: 0,
            backend: None,
            tries: 0,
        },
    };
    let resp = proxy(req, conn, &mut log).await;
    conn.shared.stats.count(resp.status());
    log.done.status = resp.status().as_u16();
    log_request(conn, log.client, &log.source, &log.done, started);
    resp
}

/// What the request's log event says, filled in as the request goes.
struct Logged {
    client: std::net::IpAddr,
    source: realip_core::Source,
    done: Done,
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

async fn proxy(req: Request<Incoming>, conn: &Conn, log: &mut Logged) -> Response<RespBody> {
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
        peer: conn.client,
        local: conn.local.0,
        scheme: conn.scheme,
        host: host.as_deref(),
        target: &target,
    };
    let rewritten = site
        .forwarding
        .apply(&mut parts.headers, &facts, &conn.shared.ids);
    log.client = rewritten.client;
    log.source = rewritten.source.clone();
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

    let schedule = route.target.schedule();
    let client = SocketAddr::new(rewritten.client, conn.client.port());
    let stats = &conn.shared.stats;
    let Some(first) = schedule.pick(client, conn.local.0) else {
        stats.gave(Answer::NoBackend);
        return ours(Answer::NoBackend);
    };
    // Held until the response head: least connections counts it.
    let _held = first;
    let mut attempts = Attempts::new(_held.backend().addr, site.limits.retries, replayable);
    loop {
        let backend = attempts.backend();
        log.done.backend = Some(BackendAddr(backend));
        log.done.tries += 1;
        let sent = tokio::time::timeout(
            site.limits.response_timeout,
            conn.shared.upstream.send(backend, req),
        )
        .await;
        // The request again, for another try: handed back, or rebuilt when
        // it is replayable.
        let (failure, again) = match sent {
            Ok(Ok(resp)) => return pass_on(resp, client_upgrade, backend, conn),
            Err(_) => {
                tracing::warn!(%backend, timeout = ?site.limits.response_timeout, "no response head in time");
                (Failure::Timeout, None)
            }
            Ok(Err(SendError::Failed(_))) if body_failed.load(Ordering::Relaxed) => {
                // Not the backend's failure: the connection it was on is
                // gone with the broken body, and the client is told.
                tracing::info!(peer = %conn.peer, %backend, "malformed request body");
                (Failure::ClientBody, None)
            }
            Ok(Err(SendError::NotSent(back, why))) => {
                tracing::info!(%backend, error = %why, "request not sent");
                (Failure::NotSent { reused: false }, Some(*back))
            }
            Ok(Err(SendError::Failed(why))) => {
                tracing::info!(%backend, error = %why, "backend failed the request");
                let rebuilt = copy.as_ref().map(|(m, u, h)| {
                    let mut r = Request::new(Either::Right(Empty::new()));
                    *r.method_mut() = m.clone();
                    *r.uri_mut() = u.clone();
                    *r.headers_mut() = h.clone();
                    r
                });
                (Failure::Failed { reused: false }, rebuilt)
            }
        };
        // Pooled connections that prove closed are retried inside
        // `Upstream::send`, so every failure here is on the attempt itself.
        let next = attempts.next(failure, &schedule);
        stats.note(&next);
        match (next, again) {
            (Next::Again { .. }, Some(r)) => req = r,
            (Next::Give(a), _) => return ours(a),
            // The policy goes on only with a request it may send again.
            (Next::Again { .. }, None) => {
                stats.gave(Answer::Unreachable);
                return ours(Answer::Unreachable);
            }
        }
    }
}

/// A backend's response on its way to the client: a 101 to an upgrade
/// splices the two, anything else has its hop-by-hop headers and framing
/// rewritten by the fast path's rule, or is refused with 502.
fn pass_on(
    resp: Response<PooledBody>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    backend: SocketAddr,
    conn: &Conn,
) -> Response<RespBody> {
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        return switch(resp, client_upgrade, backend, conn);
    }
    let (mut parts, body) = resp.into_parts();
    if parts.headers.contains_key(header::CONNECTION) {
        strip_hop_by_hop(&mut parts.headers);
    }
    // RFC 9112 §6.1, §6.3: one `chunked` from an HTTP/1.1 backend, or 502;
    // chunked wins over a length, which then goes.
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
            conn.shared.stats.gave(Answer::BadResponse);
            tracing::warn!(%backend, "backend answer refused: unsupported Transfer-Encoding");
            return ours(Answer::BadResponse);
        }
    }
    parts.headers.remove(header::TRANSFER_ENCODING);
    // hyper accepts `Content-Length: 2, 2` and would pass the list on; the
    // client gets one plain number (RFC 9110 §8.6).
    if let Some(n) = one_length(&parts.headers) {
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    Response::from_parts(parts, Either::Left(body))
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
    conn: &Conn,
) -> Response<RespBody> {
    let peer = conn.peer;
    let Some(client) = client else {
        conn.shared.stats.gave(Answer::UnaskedSwitch);
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
