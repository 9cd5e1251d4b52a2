//! The HTTP/1.x fast path of the L7 proxy: bodiless requests (the GETs and
//! HEADs of browsers, probes and load tests) proxied on the wire format,
//! without building `http` types or hopping between tasks. Requests are
//! parsed with `httparse`, their heads rewritten as they are copied (hop-by-
//! hop headers out, the forwarding plan of [`crate::forward`] applied), and
//! written to a pooled backend connection; the response head is rewritten
//! the same way and its body passed through as it comes, framed by
//! Content-Length, chunked encoding (tracked by [`crate::chunked`] to find
//! its end) or the backend closing.
//!
//! It handles only what it can handle exactly. Anything else, the h2c
//! preface, a request with a body, `Expect`, `Upgrade`, `CONNECT`, a
//! Connection header naming other headers, a head over the limits or one
//! httparse refuses, is handed with every byte read so far to the hyper
//! path ([`crate::http`]), which then serves the rest of the connection;
//! its 400 and 431 stay the only ones. Routing, forwarding headers, retries
//! and the 404/502/503/504 answers are the same on both paths.
//!
//! One timer per connection bounds every wait: it is pushed forward, which
//! costs no timer-wheel work, before each read or write.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use realip_core::Headers;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

use crate::chunked::Chunked;
use crate::forward::{Plan, RequestFacts};
use crate::http::{another_backend, is_hop_by_hop, Answer, Conn, HttpLimits};
use crate::upstream::{RawConn, RawPool};

/// How a connection left the fast path.
pub(crate) enum Outcome {
    /// Done: closed, timed out, failed, or shutting down.
    Closed,
    /// The hyper path takes over; these bytes were read and not consumed.
    Handoff(Bytes),
}

/// Most headers in a request or response head.
const MAX_HEADERS: usize = 100;
/// Largest response head from a backend.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Body copy buffer.
const BODY_BUF: usize = 64 * 1024;
/// How long a client connection may sit idle between requests.
const KEEP_ALIVE: Duration = Duration::from_secs(75);

/// Raw headers from httparse as realip evidence.
struct RawHeaders<'h, 'b>(&'h [httparse::Header<'b>]);

impl Headers for RawHeaders<'_, '_> {
    fn values<'s>(&'s self, name: &str) -> impl DoubleEndedIterator<Item = &'s [u8]> {
        self.0
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}

/// Whether a Connection value holds only `close` and `keep-alive` (any
/// other token names a header to drop: left to the hyper path).
fn connection_tokens(v: &[u8]) -> Option<(bool, bool)> {
    let (mut close, mut keep) = (false, false);
    for t in v.split(|&b| b == b',') {
        let t = t.trim_ascii();
        if t.eq_ignore_ascii_case(b"close") {
            close = true;
        } else if t.eq_ignore_ascii_case(b"keep-alive") {
            keep = true;
        } else if !t.is_empty() {
            return None;
        }
    }
    Some((close, keep))
}

/// A request the fast path takes, its upstream head already written.
pub(crate) struct Taken {
    /// Bytes of the client's head.
    pub(crate) len: usize,
    /// Where it goes, when a route matched.
    pub(crate) routed: Option<Routed>,
    http10: bool,
    keep_alive: bool,
    is_head: bool,
    idempotent: bool,
}

/// A request's route: the site it was routed under (read once the head is
/// whole), the pool and the forwarding plan.
pub(crate) struct Routed {
    site: std::sync::Arc<crate::http::Site>,
    pool: std::sync::Arc<crate::pool::Pool>,
    plan: Plan,
}

pub(crate) enum Parsed {
    Partial,
    NotSimple,
    Simple(Taken),
}

/// Read buffer to start with; it grows up to the head limit.
const INITIAL_BUF: usize = 4096;

/// Serve requests until the connection ends or needs the hyper path.
pub(crate) async fn serve<I>(
    io: &mut I,
    conn: &Conn,
    limits: HttpLimits,
    shutdown: &mut watch::Receiver<bool>,
) -> Outcome
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(INITIAL_BUF);
    let mut up_head = Vec::with_capacity(1024);
    let mut rbuf = BytesMut::with_capacity(BODY_BUF);
    let mut out = Vec::with_capacity(2048);
    let timer = tokio::time::sleep(KEEP_ALIVE);
    tokio::pin!(timer);
    // Which wait the timer is set for.
    #[derive(PartialEq)]
    enum Phase {
        Idle,
        Head,
        Busy,
    }
    let mut phase = Phase::Busy;
    loop {
        let parsed = if buf.is_empty() {
            Parsed::Partial
        } else {
            parse(&buf, conn, &mut up_head)
        };
        let taken = match parsed {
            Parsed::Partial if buf.len() < limits.max_header_bytes => None,
            Parsed::Partial | Parsed::NotSimple => return Outcome::Handoff(buf.freeze()),
            Parsed::Simple(t) => Some(t),
        };
        let Some(t) = taken else {
            // Idle between requests: the keep-alive timeout; once a head
            // has started: the header timeout.
            if buf.is_empty() && phase != Phase::Idle {
                timer.as_mut().reset(Instant::now() + KEEP_ALIVE);
                phase = Phase::Idle;
            } else if !buf.is_empty() && phase != Phase::Head {
                timer.as_mut().reset(Instant::now() + limits.header_timeout);
                phase = Phase::Head;
            }
            if *shutdown.borrow() {
                return Outcome::Closed;
            }
            if buf.capacity() - buf.len() < 512 {
                buf.reserve(INITIAL_BUF.min(limits.max_header_bytes + 1));
            }
            // Results handled after the select: an await inside a branch
            // would hold the watch's guard across it (not Send).
            enum Woke {
                Read(bool),
                Timer,
                Stop,
            }
            let woke = tokio::select! {
                biased;
                r = io.read_buf(&mut buf) => Woke::Read(matches!(r, Ok(1..))),
                () = &mut timer => Woke::Timer,
                _ = shutdown.wait_for(|&v| v) => Woke::Stop,
            };
            match woke {
                Woke::Read(true) => continue,
                Woke::Read(false) | Woke::Stop => return Outcome::Closed,
                Woke::Timer => {
                    if !buf.is_empty() {
                        tracing::info!(peer = %conn.peer, "request head timed out");
                        let _ = io.write_all(realip_net::ANSWER_408).await;
                    }
                    return Outcome::Closed;
                }
            }
        };
        buf.advance(t.len);
        phase = Phase::Busy;
        let keep_alive = match &t.routed {
            None => respond(io, conn, Answer::NoRoute, t.keep_alive).await,
            Some(r) => {
                exchange(
                    io,
                    conn,
                    &r.site,
                    &r.pool,
                    &r.plan,
                    &t,
                    &up_head,
                    &mut rbuf,
                    &mut out,
                    timer.as_mut(),
                )
                .await
            }
        };
        if !keep_alive || *shutdown.borrow() {
            let _ = io.shutdown().await;
            return Outcome::Closed;
        }
    }
}

/// Parse a head; when the fast path takes it, route it, plan its
/// forwarding headers and write its upstream head into `up`.
pub(crate) fn parse(buf: &[u8], conn: &Conn, up: &mut Vec<u8>) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::NotSimple,
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Parsed::NotSimple;
    };
    if method == "CONNECT" || !target.starts_with('/') {
        return Parsed::NotSimple;
    }
    let http10 = version == 0;
    let mut host = None;
    let mut keep_alive = !http10;
    // `Content-Length: 0` repeated is one length (RFC 9110 §8.6), and one
    // header goes on.
    let mut length_zero = false;
    for h in req.headers.iter() {
        let n = h.name;
        if n.eq_ignore_ascii_case("host") {
            // Two, or one that is no host[:port] (a list, a path): 400
            // from the hyper path (RFC 9112 §3.2).
            if host.is_some() || !crate::http::valid_host(h.value) {
                return Parsed::NotSimple;
            }
            host = std::str::from_utf8(h.value).ok();
        } else if n.eq_ignore_ascii_case("content-length") {
            if h.value != b"0" {
                return Parsed::NotSimple;
            }
            length_zero = true;
        } else if n.eq_ignore_ascii_case("transfer-encoding")
            || n.eq_ignore_ascii_case("expect")
            || n.eq_ignore_ascii_case("upgrade")
        {
            return Parsed::NotSimple;
        } else if n.eq_ignore_ascii_case("connection") {
            match connection_tokens(h.value) {
                None => return Parsed::NotSimple,
                Some((true, _)) => keep_alive = false,
                Some((false, true)) if http10 => keep_alive = true,
                Some(_) => {}
            }
        }
    }
    let Some(host) = host else {
        return Parsed::NotSimple;
    };
    let path = target.split('?').next().unwrap_or(target);
    let taken = Taken {
        len,
        routed: None,
        http10,
        keep_alive,
        is_head: method == "HEAD",
        idempotent: matches!(
            method,
            "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE"
        ),
    };
    let site = conn.shared.site.borrow().clone();
    let mut taken = taken;
    let Some(route) = site.routes.find(Some(host), path) else {
        return Parsed::Simple(taken);
    };
    let facts = RequestFacts {
        peer: conn.peer,
        local: conn.local,
        scheme: conn.scheme,
        host: Some(host),
        target,
    };
    let plan = site
        .forwarding
        .plan(&RawHeaders(req.headers), &facts, &conn.shared.ids);
    up.clear();
    up.extend_from_slice(method.as_bytes());
    up.push(b' ');
    up.extend_from_slice(target.as_bytes());
    // The backend answers in the client's version: an HTTP/1.0 client
    // never gets a chunked body.
    up.extend_from_slice(if http10 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    for h in req.headers.iter() {
        if is_hop_by_hop(h.name)
            || plan.drops(h.name.as_bytes())
            || h.name.eq_ignore_ascii_case("content-length")
        {
            continue;
        }
        up.extend_from_slice(h.name.as_bytes());
        up.extend_from_slice(b": ");
        up.extend_from_slice(h.value);
        up.extend_from_slice(b"\r\n");
    }
    if length_zero {
        up.extend_from_slice(b"content-length: 0\r\n");
    }
    for (n, v) in &plan.set {
        up.extend_from_slice(n.as_str().as_bytes());
        up.extend_from_slice(b": ");
        up.extend_from_slice(v.as_bytes());
        up.extend_from_slice(b"\r\n");
    }
    if http10 {
        up.extend_from_slice(b"connection: keep-alive\r\n");
    }
    up.extend_from_slice(b"\r\n");
    let pool = route.target.clone();
    taken.routed = Some(Routed { site, pool, plan });
    Parsed::Simple(taken)
}

/// One of our own answers; returns whether the connection stays open.
async fn respond<I: AsyncWrite + Unpin>(
    io: &mut I,
    conn: &Conn,
    answer: Answer,
    keep_alive: bool,
) -> bool {
    let status = answer.status();
    conn.shared.stats.count_code(status.as_u16());
    let text = answer.text();
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n{}\r\n{text}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        text.len(),
        if keep_alive { "" } else { "connection: close\r\n" }
    );
    io.write_all(head.as_bytes()).await.is_ok() && keep_alive
}

/// Why an attempt at a backend got no response head.
enum Failure {
    /// Nothing reached the backend: any request may go elsewhere.
    NotSent(String),
    /// It may have reached the backend.
    Failed(String),
    /// No head within the response timeout.
    Timeout,
}

/// Send the request to a backend (retrying as the rules allow) and pass
/// the response to the client; returns whether the client connection
/// stays open.
#[allow(clippy::too_many_arguments)]
async fn exchange<I: AsyncRead + AsyncWrite + Unpin>(
    io: &mut I,
    conn: &Conn,
    site: &crate::http::Site,
    pool: &crate::pool::Pool,
    plan: &Plan,
    t: &Taken,
    up_head: &[u8],
    rbuf: &mut BytesMut,
    out: &mut Vec<u8>,
    mut timer: std::pin::Pin<&mut Sleep>,
) -> bool {
    let stats = &conn.shared.stats;
    let raw = &conn.shared.raw;
    let schedule = pool.schedule();
    let client = SocketAddr::new(plan.client, conn.peer.port());
    let Some(first) = schedule.pick(client, conn.local) else {
        stats.upstream_failures.fetch_add(1, Ordering::Relaxed);
        return respond(io, conn, Answer::NoBackend, t.keep_alive).await;
    };
    // Held until the response head: least connections counts it.
    let _held = first;
    let mut backend = _held.backend().addr;
    let mut tried = vec![backend];
    let mut fresh_only = false;
    loop {
        let attempt = attempt(
            raw,
            backend,
            fresh_only,
            up_head,
            rbuf,
            site.limits.response_timeout,
            timer.as_mut(),
        )
        .await;
        let failure = match attempt {
            Ok((up, head_len)) => {
                let relayed = relay(
                    io,
                    conn,
                    t,
                    up,
                    backend,
                    head_len,
                    rbuf,
                    out,
                    timer.as_mut(),
                )
                .await;
                return match relayed {
                    Relayed::Done(keep) => keep,
                    Relayed::Refused(why) => {
                        // The connection is dropped with whatever it held.
                        stats.upstream_failures.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%backend, error = why, "backend answer refused");
                        respond(io, conn, Answer::BadResponse, false).await
                    }
                };
            }
            Err((f, reused)) => {
                // A pooled connection the backend had closed: the same
                // backend again on a fresh one, when that is safe.
                if reused && !fresh_only {
                    if let Failure::NotSent(_) = f {
                        fresh_only = true;
                        continue;
                    }
                    if let (Failure::Failed(_), true) = (&f, t.idempotent) {
                        fresh_only = true;
                        continue;
                    }
                }
                f
            }
        };
        let retry = match &failure {
            Failure::Timeout => {
                stats.upstream_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%backend, timeout = ?site.limits.response_timeout, "no response head in time");
                return respond(io, conn, Answer::Timeout, t.keep_alive).await;
            }
            Failure::NotSent(why) => {
                tracing::info!(%backend, error = %why, "request not sent; trying another backend");
                true
            }
            Failure::Failed(why) => {
                tracing::info!(%backend, error = %why, "backend failed the request");
                t.idempotent
            }
        };
        match another_backend(&schedule, &tried) {
            Some(b) if retry && tried.len() <= site.limits.retries as usize => {
                stats.retries.fetch_add(1, Ordering::Relaxed);
                backend = b;
                tried.push(b);
                fresh_only = false;
            }
            _ => {
                stats.upstream_failures.fetch_add(1, Ordering::Relaxed);
                return respond(io, conn, Answer::Unreachable, t.keep_alive).await;
            }
        }
    }
}

/// Write the request head to `backend` and read the response head into
/// `rbuf`; returns the connection and the head's length, or why not (and
/// whether the connection was a pooled one).
#[allow(clippy::too_many_arguments)]
async fn attempt(
    raw: &RawPool,
    backend: SocketAddr,
    fresh_only: bool,
    up_head: &[u8],
    rbuf: &mut BytesMut,
    response_timeout: Duration,
    mut timer: std::pin::Pin<&mut Sleep>,
) -> Result<(RawConn, usize), (Failure, bool)> {
    let pooled = if fresh_only { None } else { raw.take(backend) };
    let mut up = match pooled {
        Some(c) => c,
        None => raw
            .connect(backend)
            .await
            .map_err(|e| (Failure::NotSent(e), false))?,
    };
    let reused = up.reused;
    timer.as_mut().reset(Instant::now() + response_timeout);
    let wrote = tokio::select! {
        r = up.stream.write_all(up_head) => r,
        () = &mut timer => return Err((Failure::Timeout, reused)),
    };
    if let Err(e) = wrote {
        // Refused before a byte went out on a connection the backend had
        // closed; on a fresh one part of it may have arrived.
        let f = if reused {
            Failure::NotSent(e.to_string())
        } else {
            Failure::Failed(e.to_string())
        };
        return Err((f, reused));
    }
    rbuf.clear();
    loop {
        if rbuf.capacity() - rbuf.len() < 1024 {
            rbuf.reserve(BODY_BUF);
        }
        let read = tokio::select! {
            r = up.stream.read_buf(rbuf) => r,
            () = &mut timer => return Err((Failure::Timeout, reused)),
        };
        match read {
            Ok(0) if rbuf.is_empty() => {
                return Err((
                    Failure::Failed(format!(
                        "{backend} closed the connection without a response"
                    )),
                    reused,
                ))
            }
            Ok(0) => {
                return Err((
                    Failure::Failed(format!("{backend} closed inside the response head")),
                    false,
                ))
            }
            Err(e) => {
                return Err((
                    Failure::Failed(format!("{backend}: {e}")),
                    reused && rbuf.is_empty(),
                ))
            }
            Ok(_) => {}
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(rbuf) {
            Ok(httparse::Status::Complete(n)) => return Ok((up, n)),
            Ok(httparse::Status::Partial) if rbuf.len() < MAX_RESPONSE_HEAD => {}
            Ok(httparse::Status::Partial) => {
                return Err((
                    Failure::Failed(format!(
                        "{backend}: response head over {MAX_RESPONSE_HEAD} bytes"
                    )),
                    false,
                ))
            }
            Err(e) => {
                return Err((
                    Failure::Failed(format!("{backend}: malformed response head: {e}")),
                    false,
                ))
            }
        }
    }
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    None,
    Length(u64),
    Chunked,
    Close,
}

/// What a backend's response head says, once it is known to say it one
/// way only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ResponseHead {
    pub(crate) code: u16,
    pub(crate) framing: Framing,
    /// The Content-Length to pass on: the body's, or for HEAD and 304 the
    /// one a GET would get.
    pub(crate) length: Option<u64>,
    /// Chunked, for a HEAD answer saying what a GET would get.
    pub(crate) chunked: bool,
    /// The backend connection cannot carry another request.
    pub(crate) up_close: bool,
}

/// A Content-Length value: one decimal number, or a list of the same one
/// (RFC 9110 §8.6). Signs, spaces inside, hex and overflow are refused:
/// two readers could disagree on them.
pub(crate) fn content_length(v: &[u8]) -> Option<u64> {
    let mut n: Option<u64> = None;
    for part in v.split(|&b| b == b',') {
        let part = part.trim_ascii();
        if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let this = part.iter().fold(0u64, |a, &d| a * 10 + u64::from(d - b'0'));
        if n.is_some_and(|m| m != this) {
            return None;
        }
        n = Some(this);
    }
    n
}

/// Decide how a response is framed (RFC 9112 §6.3), or why it cannot be
/// relayed: never pass on framing a client could read two ways.
pub(crate) fn frame_response(
    resp: &httparse::Response<'_, '_>,
    is_head: bool,
) -> Result<ResponseHead, &'static str> {
    let code = resp.code.unwrap_or(0);
    if !(100..=599).contains(&code) {
        return Err("status code out of range");
    }
    let backend_11 = resp.version == Some(1);
    let bodiless = is_head || (100..200).contains(&code) || code == 204 || code == 304;
    let mut up_close = !backend_11;
    let mut length = None;
    let mut te: Option<bool> = None;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let l = content_length(h.value).ok_or("malformed Content-Length")?;
            if length.is_some_and(|m| m != l) {
                return Err("conflicting Content-Length");
            }
            length = Some(l);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Only `chunked`, once: anything else (`gzip, chunked`,
            // `chunked, chunked`, `xchunked`) is a coding this proxy cannot
            // pass on faithfully, as nginx refuses it.
            if te.is_some() || !h.value.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return Err("unsupported Transfer-Encoding");
            }
            te = Some(true);
        } else if h.name.eq_ignore_ascii_case("connection") {
            match connection_tokens(h.value) {
                Some((close, keep)) => up_close |= close || (!backend_11 && !keep),
                None => up_close = true,
            }
        }
    }
    let chunked = te.is_some();
    if chunked && !backend_11 {
        // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message is faulty.
        return Err("Transfer-Encoding from an HTTP/1.0 backend");
    }
    if chunked && length.is_some() {
        // RFC 9112 §6.3 (3): chunked wins and Content-Length goes; the
        // backend that sent both is not trusted with another request.
        length = None;
        up_close = true;
    }
    let framing = if bodiless {
        Framing::None
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::Close
    };
    // 1xx and 204 carry no Content-Length (RFC 9110 §8.6).
    if (100..200).contains(&code) || code == 204 {
        length = None;
    }
    Ok(ResponseHead {
        code,
        framing,
        length,
        chunked,
        up_close,
    })
}

/// The head the client gets for a backend's response `resp` framed as
/// `head`: the client's version, hop-by-hop headers out, and exactly one
/// framing header, written here rather than copied.
pub(crate) fn write_response_head(
    out: &mut Vec<u8>,
    resp: &httparse::Response<'_, '_>,
    head: &ResponseHead,
    http10: bool,
    is_head: bool,
    client_keep: bool,
) {
    let reason = resp.reason.unwrap_or("");
    out.clear();
    out.extend_from_slice(if http10 { b"HTTP/1.0 " } else { b"HTTP/1.1 " });
    out.extend_from_slice(head.code.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in resp.headers.iter() {
        if is_hop_by_hop(h.name) || h.name.eq_ignore_ascii_case("content-length") {
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    // A HEAD answer says what a GET would get.
    if let Some(n) = head.length {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(n.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    } else if head.framing == Framing::Chunked || (is_head && head.chunked) {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if !(100..200).contains(&head.code) {
        if !client_keep {
            out.extend_from_slice(b"connection: close\r\n");
        } else if http10 {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Why the relay stopped.
enum Relayed {
    /// Done; whether the client connection stays open.
    Done(bool),
    /// The backend's answer cannot be passed on; nothing of the final
    /// response has reached the client.
    Refused(&'static str),
}

/// Pass the response (head in `rbuf[..head_len]`) to the client.
#[allow(clippy::too_many_arguments)]
async fn relay<I: AsyncRead + AsyncWrite + Unpin>(
    io: &mut I,
    conn: &Conn,
    t: &Taken,
    mut up: RawConn,
    backend: SocketAddr,
    head_len: usize,
    rbuf: &mut BytesMut,
    out: &mut Vec<u8>,
    mut timer: std::pin::Pin<&mut Sleep>,
) -> Relayed {
    let limits_timeout = conn
        .shared
        .raw
        .limits()
        .idle_timeout
        .max(Duration::from_secs(60));
    let mut head_len = head_len;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        if !matches!(
            resp.parse(&rbuf[..head_len]),
            Ok(httparse::Status::Complete(_))
        ) {
            return Relayed::Refused("malformed response head");
        }
        let head = match frame_response(&resp, t.is_head) {
            Ok(h) => h,
            Err(why) => return Relayed::Refused(why),
        };
        let ResponseHead {
            code,
            framing,
            up_close,
            ..
        } = head;
        if code == 101 {
            // Never asked for (no Upgrade is forwarded here).
            return Relayed::Refused("101 to a request that asked for no upgrade");
        }
        // A chunked body cannot go to an HTTP/1.0 client; a 1.0 backend
        // should not send one to a 1.0 request.
        if t.http10 && framing == Framing::Chunked {
            return Relayed::Refused("chunked answer to an HTTP/1.0 request");
        }
        let interim = (100..200).contains(&code);
        let client_keep = t.keep_alive && !matches!(framing, Framing::Close);
        write_response_head(out, &resp, &head, t.http10, t.is_head, client_keep);
        rbuf.advance(head_len);
        if interim {
            // 1xx (103 Early Hints): passed on to HTTP/1.1 clients, then
            // the final head follows.
            if !t.http10
                && write_timed(io, out, limits_timeout, timer.as_mut())
                    .await
                    .is_err()
            {
                return Relayed::Done(false);
            }
            loop {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut r = httparse::Response::new(&mut headers);
                match r.parse(rbuf) {
                    Ok(httparse::Status::Complete(n)) => {
                        head_len = n;
                        break;
                    }
                    Ok(httparse::Status::Partial) if rbuf.len() < MAX_RESPONSE_HEAD => {}
                    _ => return Relayed::Refused("malformed response head after a 1xx"),
                }
                if rbuf.capacity() - rbuf.len() < 1024 {
                    rbuf.reserve(BODY_BUF);
                }
                timer.as_mut().reset(Instant::now() + limits_timeout);
                let n = tokio::select! {
                    r = up.stream.read_buf(rbuf) => r,
                    () = &mut timer => return Relayed::Refused("no final response in time after a 1xx"),
                };
                if !matches!(n, Ok(1..)) {
                    return Relayed::Refused("the backend broke off after a 1xx");
                }
            }
            continue;
        }
        conn.shared.stats.count_code(code);
        // The body: what arrived with the head goes out with it.
        let mut surplus = false;
        let done = match framing {
            Framing::None => {
                surplus = !rbuf.is_empty();
                write_timed(io, out, limits_timeout, timer.as_mut())
                    .await
                    .is_ok()
            }
            Framing::Length(mut left) => {
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(rbuf.len());
                out.extend_from_slice(&rbuf[..n]);
                rbuf.advance(n);
                left -= n as u64;
                surplus = !rbuf.is_empty();
                let mut ok = write_timed(io, out, limits_timeout, timer.as_mut())
                    .await
                    .is_ok();
                while ok && left > 0 {
                    rbuf.clear();
                    match read_timed(&mut up.stream, rbuf, limits_timeout, timer.as_mut()).await {
                        // Cut short: the client connection closes too, so
                        // the client sees the body is incomplete.
                        Some(0) | None => ok = false,
                        Some(n) => {
                            let take = usize::try_from(left).unwrap_or(usize::MAX).min(n);
                            surplus = take < n;
                            left -= take as u64;
                            ok = write_timed(io, &rbuf[..take], limits_timeout, timer.as_mut())
                                .await
                                .is_ok();
                        }
                    }
                }
                ok
            }
            Framing::Chunked => {
                let mut tracker = Chunked::default();
                let mut ok = match tracker.feed(rbuf) {
                    Ok(n) => {
                        out.extend_from_slice(&rbuf[..n]);
                        surplus = n < rbuf.len();
                        write_timed(io, out, limits_timeout, timer.as_mut())
                            .await
                            .is_ok()
                    }
                    Err(e) => {
                        tracing::info!(%backend, error = %e, "bad response body");
                        false
                    }
                };
                while ok && !tracker.is_done() {
                    rbuf.clear();
                    match read_timed(&mut up.stream, rbuf, limits_timeout, timer.as_mut()).await {
                        Some(0) => ok = false,
                        Some(n) => match tracker.feed(&rbuf[..n]) {
                            Ok(used) => {
                                surplus = used < n;
                                ok = write_timed(io, &rbuf[..used], limits_timeout, timer.as_mut())
                                    .await
                                    .is_ok();
                            }
                            Err(e) => {
                                tracing::info!(%backend, error = %e, "bad response body");
                                ok = false;
                            }
                        },
                        None => ok = false,
                    }
                }
                ok
            }
            Framing::Close => {
                out.extend_from_slice(rbuf);
                let mut ok = write_timed(io, out, limits_timeout, timer.as_mut())
                    .await
                    .is_ok();
                while ok {
                    rbuf.clear();
                    match read_timed(&mut up.stream, rbuf, limits_timeout, timer.as_mut()).await {
                        Some(0) => break,
                        Some(n) => {
                            ok = write_timed(io, &rbuf[..n], limits_timeout, timer.as_mut())
                                .await
                                .is_ok()
                        }
                        None => ok = false,
                    }
                }
                // Done either way: the client learns the end by the close.
                return Relayed::Done(false);
            }
        };
        if done && !up_close && !surplus {
            conn.shared.raw.put(backend, up.stream);
        }
        return Relayed::Done(done && client_keep);
    }
}

/// Read once into `buf` within `timeout`: Some(bytes read, 0 at the end),
/// None on an error or timeout.
async fn read_timed(
    s: &mut TcpStream,
    buf: &mut BytesMut,
    timeout: Duration,
    mut timer: std::pin::Pin<&mut Sleep>,
) -> Option<usize> {
    if buf.capacity() < BODY_BUF {
        buf.reserve(BODY_BUF);
    }
    timer.as_mut().reset(Instant::now() + timeout);
    tokio::select! {
        r = s.read_buf(buf) => r.ok(),
        () = &mut timer => None,
    }
}

/// Write all of `data` within `timeout`.
async fn write_timed<I: AsyncWrite + Unpin>(
    io: &mut I,
    data: &[u8],
    timeout: Duration,
    mut timer: std::pin::Pin<&mut Sleep>,
) -> std::io::Result<()> {
    timer.as_mut().reset(Instant::now() + timeout);
    tokio::select! {
        r = io.write_all(data) => r,
        () = &mut timer => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_tokens_and_hop_by_hop() {
        assert_eq!(connection_tokens(b"close"), Some((true, false)));
        assert_eq!(connection_tokens(b"Keep-Alive, close"), Some((true, true)));
        assert_eq!(connection_tokens(b"x-secret"), None);
    }
}
