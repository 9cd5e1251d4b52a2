//! Round robin: in turn, weights ignored (but 0, which is out).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::select::{Backend, Select};

/// The next backend in turn.
#[derive(Debug, Default)]
pub(crate) struct RoundRobin {
    next: AtomicUsize,
}

impl Select for RoundRobin {
    fn pick(&self, backends: &[Backend], _: SocketAddr, _: SocketAddr) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % backends.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_takes_turns() {
        let b = crate::schedule::tests::backends(3);
        let (c, lb) = (
            crate::schedule::tests::client(1),
            crate::schedule::tests::lb(),
        );
        let r = RoundRobin::default();
        let got: Vec<usize> = (0..6).map(|_| r.pick(&b, c, lb)).collect();
        assert_eq!(got, [0, 1, 2, 0, 1, 2]);
    }
}
