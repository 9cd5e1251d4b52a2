//! Maglev consistent hashing (Eisenbud et al., NSDI 2016): removing a
//! backend moves only its own flows, and few others.

use std::net::SocketAddr;

use super::hash::{backend_key, hash64, hash_flow};
use super::select::{Backend, Select};

/// The lookup table.
#[derive(Debug)]
pub(crate) struct Maglev {
    table: Vec<u32>,
}

impl Maglev {
    /// `pool`: how many backends the pool has, up or down; the table's size
    /// follows it, so a backend going down or coming back leaves the other
    /// flows alone.
    pub(crate) fn new(backends: &[Backend], pool: usize) -> Self {
        Maglev {
            table: maglev_table(backends, pool),
        }
    }
}

impl Select for Maglev {
    fn pick(&self, _: &[Backend], client: SocketAddr, local: SocketAddr) -> usize {
        let h = hash_flow(client, local);
        self.table[(h % self.table.len() as u64) as usize] as usize
    }
}

/// The smallest prime above `n`.
fn prime_above(n: usize) -> usize {
    let is_prime = |m: usize| m >= 2 && (2..).take_while(|d| d * d <= m).all(|d| (m / d) * d != m);
    (n + 1..).find(|&m| is_prime(m)).unwrap_or(n + 1)
}

/// Maglev's lookup table: a prime M > 100·N entries, filled by the
/// backends in turn, each taking the next free entry of its own
/// permutation of the table (offset and skip from two hashes of its
/// address). A backend's weight is how many entries it takes per turn,
/// relative to the heaviest.
fn maglev_table(backends: &[Backend], pool: usize) -> Vec<u32> {
    let n = backends.len();
    if n == 0 {
        return Vec::new();
    }
    let m = prime_above(100 * pool.max(n));
    let perms: Vec<(usize, usize)> = backends
        .iter()
        .map(|b| {
            let k = backend_key(b);
            let offset = (hash64(&k, 2) % m as u64) as usize;
            let skip = (hash64(&k, 3) % (m as u64 - 1)) as usize + 1;
            (offset, skip)
        })
        .collect();
    let max_w = backends.iter().map(|b| b.weight).max().unwrap_or(1) as f64;
    let mut next = vec![0usize; n];
    let mut credit = vec![0f64; n];
    let mut entry = vec![u32::MAX; m];
    let mut filled = 0;
    while filled < m {
        for i in 0..n {
            credit[i] += f64::from(backends[i].weight) / max_w;
            while credit[i] >= 1.0 && filled < m {
                credit[i] -= 1.0;
                let (offset, skip) = perms[i];
                let mut c = (offset + next[i] * skip) % m;
                while entry[c] != u32::MAX {
                    next[i] += 1;
                    c = (offset + next[i] * skip) % m;
                }
                entry[c] = i as u32;
                next[i] += 1;
                filled += 1;
            }
        }
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::tests::{backends, client, lb};
    use crate::schedule::{Method, Schedule};

    #[test]
    fn maglev_table_is_prime_sized_and_balanced() {
        let b = backends(10);
        let t = maglev_table(&b, 10);
        assert_eq!(t.len(), 1009);
        let mut count = [0usize; 10];
        for &e in &t {
            count[e as usize] += 1;
        }
        // Maglev fills in turns: each backend within one entry of M/N.
        assert!(count.iter().all(|&c| (100..=101).contains(&c)), "{count:?}");
    }

    #[test]
    fn maglev_removing_one_of_ten_moves_few_other_flows() {
        let b = backends(10);
        let before = Schedule::new(Method::Maglev, b.clone());
        let gone = b[3].addr;
        // Down: still in the pool, weight 0.
        let after = Schedule::new(
            Method::Maglev,
            b.into_iter().map(|mut x| {
                if x.addr == gone {
                    x.weight = 0;
                }
                x
            }),
        );
        let (mut kept_flows, mut moved) = (0, 0);
        for i in 0..20_000 {
            let c = client(i);
            let was = before.pick(c, lb()).unwrap().backend().addr;
            if was == gone {
                continue;
            }
            kept_flows += 1;
            if after.pick(c, lb()).unwrap().backend().addr != was {
                moved += 1;
            }
        }
        let share = moved as f64 / kept_flows as f64;
        eprintln!(
            "maglev: {moved} of {kept_flows} other flows moved ({:.1}%)",
            share * 100.0
        );
        assert!(
            share <= 0.15,
            "{moved} of {kept_flows} flows on the other 9 moved"
        );
    }

    #[test]
    fn maglev_weights_shape_the_shares() {
        let mut b = backends(2);
        b[0].weight = 2;
        let s = Schedule::new(Method::Maglev, b);
        let mut count = [0usize; 2];
        for i in 0..30_000 {
            count[s.pick(client(i), lb()).unwrap().index()] += 1;
        }
        let share = count[0] as f64 / 30_000.0;
        assert!((share - 2.0 / 3.0).abs() < 0.05, "{count:?}");
    }
}
