//! A hyper timer that keeps one tokio timer per connection.
//!
//! hyper's HTTP/1 server arms its header-read timeout for every request:
//! with `TokioTimer` that is a boxed tokio `Sleep` made, registered in the
//! timer wheel and dropped per request, about 5% of a small keep-alive
//! request (bench/whoami.sh). [`ConnTimer`] hands out cheap sleeps that
//! share one tokio `Sleep`: a new deadline is only a stored `Instant`, and
//! the shared timer is re-armed when it fires early, once per timeout
//! period instead of once per request.
//!
//! Give each connection its own `ConnTimer`, and use it only where every
//! sleep is polled from the same task (hyper's HTTP/1 server): the shared
//! `Sleep` keeps one waker.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// A per-connection [`hyper::rt::Timer`]; see the module documentation.
#[derive(Debug, Clone)]
pub struct ConnTimer {
    shared: Arc<Mutex<Shared>>,
}

#[derive(Debug)]
struct Shared {
    sleep: Pin<Box<tokio::time::Sleep>>,
    /// When `sleep` fires.
    armed: Instant,
}

impl ConnTimer {
    /// A timer for one connection. Must be made inside a tokio runtime.
    pub fn new() -> Self {
        // Armed far away until the first sleep asks for something sooner.
        let armed = Instant::now() + Duration::from_secs(86_400 * 365);
        ConnTimer {
            shared: Arc::new(Mutex::new(Shared {
                sleep: Box::pin(tokio::time::sleep_until(armed.into())),
                armed,
            })),
        }
    }
}

impl Default for ConnTimer {
    fn default() -> Self {
        Self::new()
    }
}

impl hyper::rt::Timer for ConnTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(ConnSleep {
            shared: self.shared.clone(),
            deadline,
        })
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<ConnSleep>() {
            Some(s) => s.get_mut().deadline = new_deadline,
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// One deadline on a [`ConnTimer`].
#[derive(Debug)]
struct ConnSleep {
    shared: Arc<Mutex<Shared>>,
    deadline: Instant,
}

impl Future for ConnSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = self.deadline;
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if shared.armed > deadline {
                // Sooner than the shared timer: bring it forward.
                shared.armed = deadline;
                shared.sleep.as_mut().reset(deadline.into());
            }
            if shared.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // The shared timer fired at `armed`, which is at or before our
            // deadline.
            if shared.armed >= deadline {
                return Poll::Ready(());
            }
            // It fired for an earlier deadline: wait for ours.
            shared.armed = deadline;
            shared.sleep.as_mut().reset(deadline.into());
        }
    }
}

impl hyper::rt::Sleep for ConnSleep {}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Timer;

    #[tokio::test]
    async fn fires_at_each_deadline_and_not_before() {
        let t = ConnTimer::new();
        let start = Instant::now();
        t.sleep(Duration::from_millis(50)).await;
        assert!(start.elapsed() >= Duration::from_millis(50));
        // A later deadline after an earlier one has been armed.
        let mut first = t.sleep(Duration::from_millis(30));
        let second = t.sleep(Duration::from_millis(120));
        // Polling the first once arms the shared timer for it.
        assert!(futures_poll_once(first.as_mut()).is_pending());
        let start = Instant::now();
        second.await;
        assert!(start.elapsed() >= Duration::from_millis(110));
        // Reset moves a deadline without a new sleep.
        let mut s = t.sleep(Duration::from_secs(3600));
        assert!(futures_poll_once(s.as_mut()).is_pending());
        t.reset(&mut s, Instant::now() + Duration::from_millis(20));
        let start = Instant::now();
        s.await;
        assert!(start.elapsed() >= Duration::from_millis(20));
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    struct Noop;
    impl std::task::Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }

    fn futures_poll_once<F: Future + ?Sized>(f: Pin<&mut F>) -> Poll<F::Output> {
        let waker = std::task::Waker::from(Arc::new(Noop));
        f.poll(&mut Context::from_waker(&waker))
    }
}
