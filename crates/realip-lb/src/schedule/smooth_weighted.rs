//! nginx's smooth weighted round robin: in turn, in proportion to weight,
//! spread evenly.

use std::net::SocketAddr;
use std::sync::Mutex;

use super::select::{Backend, Select};

/// Each backend's current weight.
#[derive(Debug)]
pub(crate) struct SmoothWeighted {
    current: Mutex<Vec<i64>>,
}

impl SmoothWeighted {
    pub(crate) fn new(backends: &[Backend]) -> Self {
        SmoothWeighted {
            current: Mutex::new(vec![0; backends.len()]),
        }
    }
}

impl Select for SmoothWeighted {
    /// Each pick adds every weight to its current value, takes the
    /// largest, and subtracts the total from it. Weights 5,1,1 give
    /// a a b a c a a, not a a a a a b c.
    fn pick(&self, backends: &[Backend], _: SocketAddr, _: SocketAddr) -> usize {
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let total: i64 = backends.iter().map(|b| i64::from(b.weight)).sum();
        let mut best = 0;
        for (i, b) in backends.iter().enumerate() {
            cur[i] += i64::from(b.weight);
            if cur[i] > cur[best] {
                best = i;
            }
        }
        cur[best] -= total;
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::tests::{backends, client, lb};

    #[test]
    fn smooth_weighted_round_robin_is_exact_and_spread() {
        let mut b = backends(3);
        b[0].weight = 5;
        let s = SmoothWeighted::new(&b);
        let got: Vec<usize> = (0..7).map(|i| s.pick(&b, client(i), lb())).collect();
        // nginx's sequence for 5,1,1.
        assert_eq!(got, [0, 0, 1, 0, 2, 0, 0]);
        // Endpoint weights 2 and 1: exactly 2/3 and 1/3.
        let mut b = backends(2);
        b[0].weight = 2;
        let s = SmoothWeighted::new(&b);
        let mut count = [0; 2];
        for i in 0..3000 {
            count[s.pick(&b, client(i), lb())] += 1;
        }
        assert_eq!(count, [2000, 1000]);
    }
}
