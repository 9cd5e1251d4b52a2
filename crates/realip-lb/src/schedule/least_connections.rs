//! Least connections (weighted): the backend with the fewest open
//! connections per unit of weight.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::select::{Backend, Select};

/// Open picks per backend.
#[derive(Debug)]
pub(crate) struct LeastConnections {
    next: AtomicUsize,
    open: Vec<AtomicUsize>,
}

impl LeastConnections {
    pub(crate) fn new(backends: &[Backend]) -> Self {
        LeastConnections {
            next: AtomicUsize::new(0),
            open: backends.iter().map(|_| AtomicUsize::new(0)).collect(),
        }
    }
}

impl Select for LeastConnections {
    fn pick(&self, backends: &[Backend], _: SocketAddr, _: SocketAddr) -> usize {
        // Fewest open per unit of weight; ties go round robin so an idle
        // pool still spreads.
        let n = backends.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut best = start % n;
        let mut best_load = u128::MAX;
        for k in 0..n {
            let i = (start + k) % n;
            let open = self.open[i].load(Ordering::Relaxed) as u128;
            // open / weight, compared without division.
            let load = (open << 32) / u128::from(backends[i].weight);
            if load < best_load {
                best = i;
                best_load = load;
            }
        }
        self.open[best].fetch_add(1, Ordering::Relaxed);
        best
    }

    fn done(&self, index: usize) {
        self.open[index].fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::tests::{backends, client, lb};

    #[test]
    fn least_connections_counts_open_picks_by_weight() {
        let mut b = backends(2);
        b[1].weight = 2;
        let s = LeastConnections::new(&b);
        let held: Vec<usize> = (0..6).map(|i| s.pick(&b, client(i), lb())).collect();
        let on = |i| held.iter().filter(|&&p| p == i).count();
        // Weight 2 holds twice as many.
        assert_eq!((on(0), on(1)), (2, 4));
        for i in held {
            s.done(i);
        }
        assert!(s.open.iter().all(|o| o.load(Ordering::Relaxed) == 0));
    }
}
