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
//! path ([`super::hyper_path`]), which then serves the rest of the connection;
//! its 400 and 431 stay the only ones. Routing, forwarding headers, retries
//! and the 404/502/503/504 answers are the same on both paths.
//!
//! One timer per connection bounds every wait: it is pushed forward, which
//! costs no timer-wheel work, before each read or write.
//!
//! Request heads and backends' response heads are read by
//! [`realip_net::read_head`], as whoami's fast path reads its own: the
//! parse is this module's, the loop, the bound and the deadline the
//! reader's.

mod exchange;
mod request;
pub(crate) mod response;

use bytes::{Buf, Bytes, BytesMut};
use realip_net::{read_head, Deadline, HeadError, HeadLimits};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::answer::Answer;
use super::limits::{HttpLimits, BODY_BUF, IDLE};
use super::log::{log_request, start, Done};
use super::site::Conn;
use exchange::{exchange, respond, Bufs, Exchange};
pub(crate) use request::{parse, Parsed};

/// How a connection left the fast path.
pub(crate) enum Outcome {
    /// Done: closed, timed out, failed, or shutting down.
    Closed,
    /// The hyper path takes over; these bytes were read and not consumed.
    Handoff(Bytes),
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
    let mut bufs = Bufs {
        rbuf: BytesMut::with_capacity(BODY_BUF),
        out: Vec::with_capacity(2048),
    };
    let timer = tokio::time::sleep(IDLE);
    tokio::pin!(timer);
    // Idle between requests: the keep-alive timeout; once a head has
    // started: the header timeout.
    let head_limits = HeadLimits::new(
        limits.max_header_bytes,
        Deadline::IdleThenHead {
            idle: IDLE,
            head: limits.header_timeout,
        },
    );
    loop {
        // Whatever has arrived is parsed first (pipelined requests need no
        // read).
        let read = read_head(
            io,
            &mut buf,
            &head_limits,
            timer.as_mut(),
            Some(&mut *shutdown),
            |b| match parse(b, conn, &mut up_head) {
                Parsed::Partial => None,
                verdict => Some(verdict),
            },
        )
        .await;
        let t = match read {
            Ok(Some(Parsed::Simple(t))) => t,
            Ok(Some(Parsed::NotSimple | Parsed::Partial)) | Err(HeadError::TooLarge { .. }) => {
                return Outcome::Handoff(buf.freeze())
            }
            Err(HeadError::TimedOut) => {
                tracing::info!(peer = %conn.peer, "request head timed out");
                let _ = io.write_all(realip_net::ANSWER_408).await;
                return Outcome::Closed;
            }
            Ok(None)
            | Err(HeadError::Closed | HeadError::Io(_) | HeadError::Idle | HeadError::Shutdown) => {
                return Outcome::Closed
            }
        };
        buf.advance(t.len);
        let keep_alive = match &t.routed {
            None => {
                let started = start();
                let keep = respond(io, conn, Answer::NoRoute, t.keep_alive).await;
                let done = Done {
                    status: Answer::NoRoute.status().as_u16(),
                    backend: None,
                    tries: 0,
                };
                log_request(
                    conn,
                    conn.client.ip(),
                    &realip_core::Source::Peer,
                    &done,
                    started,
                );
                keep
            }
            Some(r) => {
                let x = Exchange {
                    conn,
                    site: &r.site,
                    pool: &r.pool,
                    plan: &r.plan,
                    taken: &t,
                    up_head: &up_head,
                };
                exchange(io, &x, &mut bufs, timer.as_mut()).await
            }
        };
        if !keep_alive || *shutdown.borrow() {
            let _ = io.shutdown().await;
            return Outcome::Closed;
        }
    }
}
