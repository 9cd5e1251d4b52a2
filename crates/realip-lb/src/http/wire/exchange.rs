//! One request on the fast path: sent to a backend (retried as the
//! attempts policy says), the response relayed to the client.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use realip_core::BackendAddr;
use realip_net::{read_head, Deadline, HeadError, HeadLimits};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::request::Taken;
use super::response::{frame_response, write_response_head, Framing, ResponseHead};
use crate::chunked::Chunked;
use crate::forward::Plan;
use crate::http::answer::Answer;
use crate::http::attempts::{Attempts, Failure, Next};
use crate::http::limits::{BODY_BUF, MAX_HEADERS, MAX_RESPONSE_HEAD};
use crate::http::log::{log_request, start, Done};
use crate::http::site::{Conn, Site};
use crate::http::upstream::{RawConn, UpstreamError};
use crate::pool::Pool;

/// One of our own answers; returns whether the connection stays open.
pub(crate) async fn respond<I: AsyncWrite + Unpin>(
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

/// One request on the fast path: what each step of its exchange reads
/// (Pingora's per-request context).
pub(crate) struct Exchange<'a> {
    pub(crate) conn: &'a Conn,
    pub(crate) site: &'a Site,
    pub(crate) pool: &'a Pool,
    pub(crate) plan: &'a Plan,
    pub(crate) taken: &'a Taken,
    /// The head written for the backend.
    pub(crate) up_head: &'a [u8],
}

/// A client connection's buffers, kept from request to request.
pub(crate) struct Bufs {
    /// What the backend sent.
    pub(crate) rbuf: BytesMut,
    /// What goes to the client.
    pub(crate) out: Vec<u8>,
}

/// Send the request to a backend (retrying as the attempts policy says)
/// and pass the response to the client, then log the request (one event,
/// as whoami's); returns whether the client connection stays open.
pub(crate) async fn exchange<I: AsyncRead + AsyncWrite + Unpin>(
    io: &mut I,
    x: &Exchange<'_>,
    bufs: &mut Bufs,
    timer: std::pin::Pin<&mut Sleep>,
) -> bool {
    let started = start();
    let (keep, done) = exchange_once(io, x, bufs, timer).await;
    log_request(x.conn, x.plan.client, &x.plan.source, &done, started);
    keep
}

async fn exchange_once<I: AsyncRead + AsyncWrite + Unpin>(
    io: &mut I,
    x: &Exchange<'_>,
    bufs: &mut Bufs,
    mut timer: std::pin::Pin<&mut Sleep>,
) -> (bool, Done) {
    let (conn, t) = (x.conn, x.taken);
    let stats = &conn.shared.stats;
    let schedule = x.pool.schedule();
    let client = SocketAddr::new(x.plan.client, conn.client.port());
    let mut done = Done {
        status: 0,
        backend: None,
        tries: 0,
    };
    let Some(first) = schedule.pick(client, conn.local.0) else {
        stats.gave(Answer::NoBackend);
        done.status = Answer::NoBackend.status().as_u16();
        return (
            respond(io, conn, Answer::NoBackend, t.keep_alive).await,
            done,
        );
    };
    // Held until the response head: least connections counts it.
    let _held = first;
    let mut attempts = Attempts::new(_held.backend().addr, x.site.limits.retries, t.idempotent);
    let mut fresh = false;
    loop {
        let backend = attempts.backend();
        done.backend = Some(BackendAddr(backend));
        done.tries += 1;
        let failure = match attempt(x, backend, fresh, &mut bufs.rbuf, timer.as_mut()).await {
            Ok((up, head_len)) => {
                let keep = match relay(io, x, up, backend, head_len, bufs, timer.as_mut()).await {
                    Relayed::Done { keep, status } => {
                        done.status = status;
                        keep
                    }
                    Relayed::Refused(why) => {
                        // The connection is dropped with whatever it held.
                        stats.gave(Answer::BadResponse);
                        tracing::warn!(%backend, error = why, "backend answer refused");
                        done.status = Answer::BadResponse.status().as_u16();
                        respond(io, conn, Answer::BadResponse, false).await
                    }
                };
                return (keep, done);
            }
            Err((failure, why)) => {
                match &why {
                    Some(e) => tracing::info!(%backend, error = %e, ?failure, "attempt failed"),
                    None => {
                        tracing::warn!(%backend, timeout = ?x.site.limits.response_timeout, "no response head in time")
                    }
                }
                failure
            }
        };
        let next = attempts.next(failure, &schedule);
        stats.note(&next);
        match next {
            Next::Again { fresh: f, .. } => fresh = f,
            Next::Give(answer) => {
                done.status = answer.status().as_u16();
                return (respond(io, conn, answer, t.keep_alive).await, done);
            }
        }
    }
}

/// Write the request head to `backend` (on a pooled connection unless
/// `fresh`) and read the response head into `rbuf`; returns the connection
/// and the head's length, or why not.
async fn attempt(
    x: &Exchange<'_>,
    backend: SocketAddr,
    fresh: bool,
    rbuf: &mut BytesMut,
    mut timer: std::pin::Pin<&mut Sleep>,
) -> Result<(RawConn, usize), (Failure, Option<UpstreamError>)> {
    let raw = &x.conn.shared.raw;
    let pooled = if fresh { None } else { raw.take(backend) };
    let mut up = match pooled {
        Some(c) => c,
        None => raw
            .connect(backend)
            .await
            .map_err(|e| (Failure::NotSent { reused: false }, Some(e)))?,
    };
    let reused = up.reused;
    timer
        .as_mut()
        .reset(Instant::now() + x.site.limits.response_timeout);
    let wrote = tokio::select! {
        r = up.stream.write_all(x.up_head) => r,
        () = &mut timer => return Err((Failure::Timeout, None)),
    };
    if let Err(source) = wrote {
        // Refused before a byte went out on a connection the backend had
        // closed; on a fresh one part of it may have arrived.
        let f = if reused {
            Failure::NotSent { reused }
        } else {
            Failure::Failed { reused }
        };
        return Err((f, Some(UpstreamError::Io { backend, source })));
    }
    rbuf.clear();
    // One deadline for the head, set before the write.
    let head_limits = HeadLimits::new(MAX_RESPONSE_HEAD, Deadline::Set).growing(1024, BODY_BUF);
    let read = read_head(
        &mut up.stream,
        rbuf,
        &head_limits,
        timer,
        None,
        response_head,
    )
    .await;
    // Nothing at all on a pooled connection: the backend had closed it;
    // part of a head: it broke off answering this request.
    let closed = |in_head: bool| {
        let reused = reused && !in_head;
        Err((
            Failure::Failed { reused },
            Some(UpstreamError::Closed { backend, in_head }),
        ))
    };
    let refused = match read {
        Ok(Some(Ok(n))) => return Ok((up, n)),
        Ok(None) => return closed(false),
        Err(HeadError::Closed) => return closed(true),
        Err(HeadError::Io(source)) => {
            let reused = reused && rbuf.is_empty();
            return Err((
                Failure::Failed { reused },
                Some(UpstreamError::Io { backend, source }),
            ));
        }
        // No shutdown signal is watched here.
        Err(HeadError::Idle | HeadError::TimedOut | HeadError::Shutdown) => {
            return Err((Failure::Timeout, None))
        }
        Err(HeadError::TooLarge { limit }) => UpstreamError::HeadTooLarge { backend, limit },
        Ok(Some(Err(source))) => UpstreamError::Malformed { backend, source },
    };
    Err((Failure::Failed { reused: false }, Some(refused)))
}

/// What httparse makes of a backend's bytes so far: `None` while the
/// head is incomplete, else its length or why it is no response head.
fn response_head(b: &[u8]) -> Option<Result<usize, httparse::Error>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(b) {
        Ok(httparse::Status::Complete(n)) => Some(Ok(n)),
        Ok(httparse::Status::Partial) => None,
        Err(e) => Some(Err(e)),
    }
}

/// Why the relay stopped.
enum Relayed {
    /// Done; whether the client connection stays open, and the status
    /// the client got.
    Done { keep: bool, status: u16 },
    /// The backend's answer cannot be passed on; nothing of the final
    /// response has reached the client.
    Refused(&'static str),
}

/// Pass the response (head in `rbuf[..head_len]`) to the client.
#[allow(clippy::too_many_arguments)]
async fn relay<I: AsyncRead + AsyncWrite + Unpin>(
    io: &mut I,
    x: &Exchange<'_>,
    mut up: RawConn,
    backend: SocketAddr,
    head_len: usize,
    bufs: &mut Bufs,
    mut timer: std::pin::Pin<&mut Sleep>,
) -> Relayed {
    let (conn, t) = (x.conn, x.taken);
    let Bufs { rbuf, out } = bufs;
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
                return Relayed::Done {
                    keep: false,
                    status: code,
                };
            }
            // The final head may have come with the 1xx; each read after
            // it gets the idle time.
            let head_limits =
                HeadLimits::new(MAX_RESPONSE_HEAD, Deadline::EachRead(limits_timeout))
                    .growing(1024, BODY_BUF);
            let read = read_head(
                &mut up.stream,
                rbuf,
                &head_limits,
                timer.as_mut(),
                None,
                response_head,
            )
            .await;
            head_len = match read {
                Ok(Some(Ok(n))) => n,
                Ok(Some(Err(_))) | Err(HeadError::TooLarge { .. }) => {
                    return Relayed::Refused("malformed response head after a 1xx")
                }
                Err(HeadError::Idle | HeadError::TimedOut) => {
                    return Relayed::Refused("no final response in time after a 1xx")
                }
                Ok(None) | Err(HeadError::Closed | HeadError::Io(_) | HeadError::Shutdown) => {
                    return Relayed::Refused("the backend broke off after a 1xx")
                }
            };
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
                return Relayed::Done {
                    keep: false,
                    status: code,
                };
            }
        };
        if done && !up_close && !surplus {
            conn.shared.raw.put(backend, up.stream);
        }
        return Relayed::Done {
            keep: done && client_keep,
            status: code,
        };
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
