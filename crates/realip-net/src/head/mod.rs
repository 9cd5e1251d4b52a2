//! Reading an HTTP/1 head off a stream: the loop whoami's fast path, the
//! lb's fast path and the lb's backend exchange share, with its bound and
//! its deadline.
//!
//! What ends a head is the caller's to say: each parses with its own
//! `httparse` call and its own header limit, and the lb writes the head it
//! forwards in the same pass, so the reader takes the caller's parse as a
//! closure rather than finding CRLFCRLF itself (which would parse twice,
//! and disagree with httparse on bare LF and leading empty lines). The
//! reader owns what every caller needs the same: read only with room in
//! the buffer, refuse a head that keeps not ending (memory: a peer could
//! otherwise make us buffer without end), give up on a peer that is too
//! slow (slowloris), tell a clean close from one in the middle of a head,
//! and leave whatever followed the head in the buffer.
//!
//! Nothing is allocated here: the buffer and the timer are the caller's,
//! kept from request to request.

use std::pin::Pin;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

/// When a head is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// The caller's timer as it was set, for the whole head: a backend's
    /// response head is due a set time after the request went out.
    Set,
    /// One deadline, this long after the reader first waits, for the whole
    /// head however it trickles in.
    Whole(Duration),
    /// `idle` while nothing of a head has arrived (a keep-alive connection
    /// between requests), then `head` counted from the first byte, so a
    /// slow sender gets the header timeout and not the idle time.
    IdleThenHead {
        /// The wait for a head's first byte.
        idle: Duration,
        /// The wait for the rest of the head, from its first byte.
        head: Duration,
    },
    /// Every read gets this long, however long the head takes: a backend
    /// that has answered 1xx is alive and only has to keep sending.
    EachRead(Duration),
}

/// The bound and deadline of a head, and how its buffer grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// A head still not ended once this many bytes are buffered is
    /// refused ([`HeadError::TooLarge`]) without another read. The read
    /// that crossed the bound may have taken more (as much as the buffer
    /// had room for), and a head that ends within it is taken: the bound
    /// limits what a head that never ends can make us hold; it is not an
    /// exact largest head.
    pub max_bytes: usize,
    /// When the head is due.
    pub deadline: Deadline,
    /// A read needs at least this much room in the buffer ...
    pub min_room: usize,
    /// ... or the buffer grows by this much first.
    pub grow: usize,
}

impl HeadLimits {
    /// Heads bounded by `max_bytes`, due as `deadline` says; the buffer
    /// grows by 4 KiB (less when the bound is lower) whenever it has less
    /// than 512 bytes of room, as for a client's request head.
    pub fn new(max_bytes: usize, deadline: Deadline) -> Self {
        HeadLimits {
            max_bytes,
            deadline,
            min_room: 512,
            grow: 4096.min(max_bytes.saturating_add(1)),
        }
    }

    /// The same, with the buffer grown by `grow` whenever it has less than
    /// `min_room` of room (a buffer that goes on to carry a body).
    pub fn growing(self, min_room: usize, grow: usize) -> Self {
        HeadLimits {
            min_room,
            grow,
            ..self
        }
    }
}

/// Why no head was read.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    /// `limit` bytes arrived and the head had not ended.
    #[error("no end of the head in its first {limit} bytes (the head size limit)")]
    TooLarge {
        /// [`HeadLimits::max_bytes`].
        limit: usize,
    },
    /// Nothing of a head arrived before the deadline.
    #[error("no head arrived in time")]
    Idle,
    /// Part of a head arrived, then not the rest before the deadline.
    #[error("the head did not arrive in time: part of it came, then too little")]
    TimedOut,
    /// The peer closed the connection in the middle of a head.
    #[error("the connection closed in the middle of a head")]
    Closed,
    /// Reading failed; what was read is still in the buffer.
    #[error("reading a head: {0}")]
    Io(#[from] std::io::Error),
    /// The shutdown signal came while waiting for the head.
    #[error("shutting down while waiting for a head")]
    Shutdown,
}

/// Read from `io` into `buf` until `parse` says it has seen enough.
///
/// `parse` gets all of `buf` (from its start: the caller's head begins
/// there) each time it may hold more of the head, first before any read
/// when `buf` already holds bytes (a pipelined request), and returns
/// `None` while the head is incomplete, or its verdict: the parsed head,
/// or its reason not to read on (a malformed head). `Ok(Some(verdict))`
/// leaves `buf` as it is, head and what followed it: the caller takes off
/// as much as it consumed.
///
/// `Ok(None)`: the peer closed cleanly, before a byte of a head. `timer`
/// is the caller's, reset as `limits.deadline` says (at most once per
/// wait). With `shutdown`, a `true` in it ends the wait (and is checked
/// before each read). When a read and the deadline are both ready, the
/// read wins.
pub async fn read_head<I, T, P>(
    io: &mut I,
    buf: &mut BytesMut,
    limits: &HeadLimits,
    mut timer: Pin<&mut Sleep>,
    mut shutdown: Option<&mut watch::Receiver<bool>>,
    mut parse: P,
) -> Result<Option<T>, HeadError>
where
    I: AsyncRead + Unpin,
    P: FnMut(&[u8]) -> Option<T>,
{
    let mut armed = Armed::No;
    loop {
        if !buf.is_empty() {
            if let Some(verdict) = parse(buf) {
                return Ok(Some(verdict));
            }
            if buf.len() >= limits.max_bytes {
                return Err(HeadError::TooLarge {
                    limit: limits.max_bytes,
                });
            }
        }
        arm(limits.deadline, &mut armed, buf.is_empty(), timer.as_mut());
        if shutdown.as_ref().is_some_and(|s| *s.borrow()) {
            return Err(HeadError::Shutdown);
        }
        if buf.capacity() - buf.len() < limits.min_room {
            buf.reserve(limits.grow);
        }
        let woke = tokio::select! {
            biased;
            r = io.read_buf(buf) => Woke::Read(r),
            () = timer.as_mut() => Woke::Timer,
            () = stopped(shutdown.as_deref_mut()) => Woke::Stop,
        };
        match woke {
            Woke::Read(Ok(0)) if buf.is_empty() => return Ok(None),
            Woke::Read(Ok(0)) => return Err(HeadError::Closed),
            Woke::Read(Ok(_)) => {}
            Woke::Read(Err(e)) => return Err(HeadError::Io(e)),
            Woke::Timer if buf.is_empty() => return Err(HeadError::Idle),
            Woke::Timer => return Err(HeadError::TimedOut),
            Woke::Stop => return Err(HeadError::Shutdown),
        }
    }
}

/// What ended a wait.
enum Woke {
    Read(std::io::Result<usize>),
    Timer,
    Stop,
}

/// Which deadline the timer holds for the head being read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Armed {
    No,
    Idle,
    Head,
}

/// Set the timer for the coming wait, if `deadline` wants it set.
fn arm(deadline: Deadline, armed: &mut Armed, empty: bool, timer: Pin<&mut Sleep>) {
    let (want, wait) = match deadline {
        Deadline::Set => return,
        Deadline::EachRead(d) => {
            timer.reset(Instant::now() + d);
            return;
        }
        Deadline::Whole(d) => (Armed::Head, d),
        Deadline::IdleThenHead { idle, .. } if empty => (Armed::Idle, idle),
        Deadline::IdleThenHead { head, .. } => (Armed::Head, head),
    };
    if want != *armed {
        // Pushing a timer forward is a stored instant, no timer-wheel work.
        timer.reset(Instant::now() + wait);
        *armed = want;
    }
}

/// Resolves once `shutdown` holds `true` (or its sender is gone); never
/// without one. The watch guard is dropped inside, so the future can be
/// held across awaits in `Send` tasks.
async fn stopped(shutdown: Option<&mut watch::Receiver<bool>>) {
    match shutdown {
        Some(rx) => {
            let _ = rx.wait_for(|&v| v).await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
