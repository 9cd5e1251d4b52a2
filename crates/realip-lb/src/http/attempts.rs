//! Which backend a request tries next after one failed, or which answer
//! it gets instead: one pure policy for both paths, unit-tested alone
//! (Pingora's retry phase). The caller counts what [`Next`] says once,
//! through `HttpStats::note`.
//!
//! The rules, as nginx's `proxy_next_upstream` and HAProxy's `retry-on`
//! draw them:
//! - a request that never reached a backend may go elsewhere, whatever
//!   its method;
//! - one that may have reached it goes again only when it is replayable
//!   (idempotent, and no body);
//! - a pooled connection that fails may have been closed by the backend
//!   meanwhile: the same backend gets one more try on a fresh connection
//!   before another is chosen;
//! - at most `retries` other backends, each tried once;
//! - no response head in time is a 504 at once (another backend would make
//!   the client wait twice as long), and a broken client body a 400.

use std::net::SocketAddr;

use super::answer::Answer;
use crate::Schedule;

/// Why an attempt at a backend got no response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Nothing reached the backend: a connect that failed, or a pooled
    /// connection found closed before a byte went out.
    NotSent {
        /// On a pooled connection.
        reused: bool,
    },
    /// It may have reached the backend.
    Failed {
        /// On a pooled connection.
        reused: bool,
    },
    /// No response head within the response timeout.
    Timeout,
    /// The client broke its own body's framing: not the backend's fault.
    ClientBody,
}

/// What to do after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Try `backend`; `fresh`: the same one again, on a new connection.
    Again {
        /// The backend to try.
        backend: SocketAddr,
        /// A new connection to the backend just tried, not a pooled one.
        fresh: bool,
    },
    /// Stop, and answer the client this.
    Give(Answer),
}

/// The attempts of one request.
#[derive(Debug)]
pub(crate) struct Attempts {
    first: SocketAddr,
    /// Every backend tried, once a second one is (most requests need one
    /// backend, and no allocation).
    tried: Vec<SocketAddr>,
    retries: usize,
    replayable: bool,
    /// The current backend has had its try on a fresh connection.
    fresh: bool,
}

impl Attempts {
    /// Starting at `first`; at most `retries` others; `replayable` when
    /// the request may be sent again after it may have arrived.
    pub(crate) fn new(first: SocketAddr, retries: u32, replayable: bool) -> Self {
        Attempts {
            first,
            tried: Vec::new(),
            retries: retries as usize,
            replayable,
            fresh: false,
        }
    }

    /// The backend being tried.
    pub(crate) fn backend(&self) -> SocketAddr {
        self.tried.last().copied().unwrap_or(self.first)
    }

    fn tried(&self) -> &[SocketAddr] {
        if self.tried.is_empty() {
            std::slice::from_ref(&self.first)
        } else {
            &self.tried
        }
    }

    /// The next step after `failure` at [`Attempts::backend`].
    pub(crate) fn next(&mut self, failure: Failure, schedule: &Schedule) -> Next {
        let (safe, reused) = match failure {
            Failure::Timeout => return Next::Give(Answer::Timeout),
            Failure::ClientBody => return Next::Give(Answer::BadBody),
            Failure::NotSent { reused } => (true, reused),
            Failure::Failed { reused } => (self.replayable, reused),
        };
        if !safe {
            return Next::Give(Answer::Unreachable);
        }
        if reused && !self.fresh {
            self.fresh = true;
            return Next::Again {
                backend: self.backend(),
                fresh: true,
            };
        }
        match another_backend(schedule, self.tried()) {
            Some(b) if self.tried().len() <= self.retries => {
                if self.tried.is_empty() {
                    self.tried.push(self.first);
                }
                self.tried.push(b);
                self.fresh = false;
                Next::Again {
                    backend: b,
                    fresh: false,
                }
            }
            _ => Next::Give(Answer::Unreachable),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Backend, Method};

    fn schedule() -> Schedule {
        let b = |a: &str, w| Backend {
            addr: a.parse().unwrap(),
            weight: w,
        };
        Schedule::new(
            Method::RoundRobin,
            vec![
                b("127.0.0.1:1", 1),
                b("127.0.0.1:2", 0),
                b("127.0.0.1:3", 1),
                b("127.0.0.1:4", 1),
            ],
        )
    }

    fn a(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    fn again(p: u16, fresh: bool) -> Next {
        Next::Again {
            backend: a(p),
            fresh,
        }
    }

    #[test]
    fn a_request_that_never_arrived_goes_elsewhere_up_to_the_retries() {
        let s = schedule();
        let mut at = Attempts::new(a(3), 2, false);
        assert_eq!(
            at.next(Failure::NotSent { reused: false }, &s),
            again(4, false)
        );
        assert_eq!(
            at.next(Failure::NotSent { reused: false }, &s),
            again(1, false)
        );
        // Two others tried: that was the last.
        assert_eq!(
            at.next(Failure::NotSent { reused: false }, &s),
            Next::Give(Answer::Unreachable)
        );
        let mut none = Attempts::new(a(3), 0, true);
        assert_eq!(
            none.next(Failure::NotSent { reused: false }, &s),
            Next::Give(Answer::Unreachable)
        );
    }

    #[test]
    fn one_that_may_have_arrived_goes_again_only_when_replayable() {
        let s = schedule();
        let mut post = Attempts::new(a(1), 2, false);
        assert_eq!(
            post.next(Failure::Failed { reused: false }, &s),
            Next::Give(Answer::Unreachable)
        );
        let mut get = Attempts::new(a(1), 2, true);
        assert_eq!(
            get.next(Failure::Failed { reused: false }, &s),
            again(3, false)
        );
    }

    #[test]
    fn a_pooled_connection_gets_one_fresh_try_per_backend() {
        let s = schedule();
        let mut at = Attempts::new(a(1), 1, true);
        assert_eq!(
            at.next(Failure::Failed { reused: true }, &s),
            again(1, true)
        );
        // The fresh one failed too: another backend, pooled first again.
        assert_eq!(
            at.next(Failure::Failed { reused: false }, &s),
            again(3, false)
        );
        assert_eq!(
            at.next(Failure::NotSent { reused: true }, &s),
            again(3, true)
        );
        assert_eq!(
            at.next(Failure::NotSent { reused: false }, &s),
            Next::Give(Answer::Unreachable)
        );
        // Not replayable: no second try even on the same backend.
        let mut post = Attempts::new(a(1), 1, false);
        assert_eq!(
            post.next(Failure::Failed { reused: true }, &s),
            Next::Give(Answer::Unreachable)
        );
        assert_eq!(
            post.next(Failure::NotSent { reused: true }, &s),
            again(1, true)
        );
    }

    #[test]
    fn a_timeout_or_a_broken_body_stops_at_once() {
        let s = schedule();
        let mut at = Attempts::new(a(1), 2, true);
        assert_eq!(at.next(Failure::Timeout, &s), Next::Give(Answer::Timeout));
        assert_eq!(
            at.next(Failure::ClientBody, &s),
            Next::Give(Answer::BadBody)
        );
        assert_eq!(at.backend(), a(1));
    }

    #[test]
    fn another_backend_goes_on_in_order_and_never_back() {
        // 2 is down (weight 0).
        let s = schedule();
        // After 3: 4; after 4 it wraps to 1; a down backend is skipped.
        assert_eq!(another_backend(&s, &[a(3)]), Some(a(4)));
        assert_eq!(another_backend(&s, &[a(3), a(4)]), Some(a(1)));
        assert_eq!(another_backend(&s, &[a(1)]), Some(a(3)));
        // Every live one tried: none.
        assert_eq!(another_backend(&s, &[a(1), a(3), a(4)]), None);
    }
}
