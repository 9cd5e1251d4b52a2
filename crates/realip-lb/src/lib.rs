//! realip-lb: the seeds' cloud load balancer and ingress. Scheduling and
//! health verdicts (pure), pools with health checks ([`pool`]), the L4
//! proxies, TCP ([`tcp`]: `none`, `proxy-v1`, `proxy-v2` with TLVs,
//! `transparent`) and UDP ([`udp`]: a flow table, PROXY v2 per datagram),
//! the L7 proxy ([`http`], with its HTTP/1.x fast path, routes
//! [`route`] and realip-http's forwarding-header plan [`forward`]), the YAML
//! configuration ([`config`]) and running it with in-place reloads
//! ([`server`]).
//!
//! [`Schedule`] picks a backend for a request or a flow by the configured
//! [`Method`]: round robin, smooth weighted round robin (nginx's), least
//! connections (weighted), source-IP hash (ULB's `vserver-method: source`),
//! or Maglev (Eisenbud et al., NSDI 2016). A schedule is built from the
//! backends that are up, with their weights, whenever health or weights
//! change; building is the slow part (Maglev fills a table of a prime
//! M > 100·N entries) and stays off the request path, which only reads.
//!
//! Weights are how the seeds' imbalance is fixed: a node whose health
//! check reports `localEndpoints: N` is weighted N, so each pod behind a
//! Local Service gets an equal share; weight 0 takes a backend out.
//!
//! What it must not do: I/O outside [`pool`], [`metrics`], [`tcp`],
//! [`udp`], [`http`] and [`server`] (the
//! planning parts, [`config`], [`route`], [`chunked`] and the
//! scheduler, stay pure), a wait without a deadline,
//! or a pick whose cost grows with the number of backends for Maglev and
//! source hash (both are table or hash lookups).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod chunked;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub use realip_http::forward;
pub mod health;
pub mod http;
pub mod metrics;
pub mod pool;
pub mod route;
pub mod server;
pub mod tcp;
pub mod udp;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// A backend as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// Where it listens; also its identity for hashing, so it keeps its
    /// Maglev slots while others come and go.
    pub addr: SocketAddr,
    /// Its share relative to the others; 0 takes it out.
    pub weight: u32,
}

/// How backends are picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// In turn, weights ignored (except 0).
    RoundRobin,
    /// In turn, in proportion to weight, spread evenly (nginx's smooth
    /// weighted round robin).
    WeightedRoundRobin,
    /// The backend with the fewest open connections per unit of weight.
    LeastConnections,
    /// A hash of the client's IP: the same client, the same backend.
    SourceHash,
    /// Maglev consistent hashing of the flow: removing a backend moves
    /// only its own flows (and few others).
    Maglev,
}

impl std::str::FromStr for Method {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "round-robin" | "rr" => Method::RoundRobin,
            "weighted-round-robin" | "wrr" => Method::WeightedRoundRobin,
            "least-connections" | "leastconn" => Method::LeastConnections,
            "source-hash" | "source" => Method::SourceHash,
            "maglev" => Method::Maglev,
            _ => {
                return Err(format!(
                    "{s:?} is not a schedule: round-robin, weighted-round-robin, least-connections, source-hash or maglev"
                ))
            }
        })
    }
}

/// The backends that are up, and how to pick among them.
#[derive(Debug)]
pub struct Schedule {
    method: Method,
    backends: Vec<Backend>,
    next: AtomicUsize,
    /// Smooth WRR's current weights.
    current: Mutex<Vec<i64>>,
    /// Open connections per backend (least connections).
    open: Vec<AtomicUsize>,
    /// Maglev's lookup table, or the weighted slots for source hash.
    table: Vec<u32>,
}

/// A picked backend; for least connections it counts as open until
/// dropped.
#[derive(Debug)]
pub struct Picked<'a> {
    schedule: &'a Schedule,
    index: usize,
}

impl Picked<'_> {
    /// The backend.
    pub fn backend(&self) -> &Backend {
        &self.schedule.backends[self.index]
    }

    /// Its position in [`Schedule::backends`].
    pub fn index(&self) -> usize {
        self.index
    }
}

impl Drop for Picked<'_> {
    fn drop(&mut self) {
        if self.schedule.method == Method::LeastConnections {
            self.schedule.open[self.index].fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Schedule {
    /// A schedule over the backends with a weight above 0. Pass the whole
    /// pool, down backends with weight 0: Maglev sizes its table from the
    /// pool (a prime above 100 per backend), so a backend going down or
    /// coming back leaves the table size, and so the other flows, alone.
    pub fn new(method: Method, backends: impl IntoIterator<Item = Backend>) -> Self {
        let all: Vec<Backend> = backends.into_iter().collect();
        let pool = all.len();
        let backends: Vec<Backend> = all.into_iter().filter(|b| b.weight > 0).collect();
        let table = match method {
            Method::Maglev => maglev_table(&backends, pool),
            Method::SourceHash => weighted_slots(&backends),
            _ => Vec::new(),
        };
        Schedule {
            method,
            open: backends.iter().map(|_| AtomicUsize::new(0)).collect(),
            current: Mutex::new(vec![0; backends.len()]),
            next: AtomicUsize::new(0),
            backends,
            table,
        }
    }

    /// The backends in play.
    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    /// The method.
    pub fn method(&self) -> Method {
        self.method
    }

    /// Pick a backend for a connection or request from `client` (to
    /// `local`, which with the client identifies the flow for Maglev).
    /// `None` when no backend is up.
    pub fn pick(&self, client: SocketAddr, local: SocketAddr) -> Option<Picked<'_>> {
        let n = self.backends.len();
        if n == 0 {
            return None;
        }
        let index = match self.method {
            Method::RoundRobin => self.next.fetch_add(1, Ordering::Relaxed) % n,
            Method::WeightedRoundRobin => self.smooth_wrr(),
            Method::LeastConnections => {
                // Fewest open per unit of weight; ties go round robin so an
                // idle pool still spreads.
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                let mut best = start % n;
                let mut best_load = u128::MAX;
                for k in 0..n {
                    let i = (start + k) % n;
                    let open = self.open[i].load(Ordering::Relaxed) as u128;
                    // open / weight, compared without division.
                    let load = (open << 32) / u128::from(self.backends[i].weight);
                    if load < best_load {
                        best = i;
                        best_load = load;
                    }
                }
                self.open[best].fetch_add(1, Ordering::Relaxed);
                best
            }
            Method::SourceHash => {
                let h = hash_ip(client.ip());
                self.table[(h % self.table.len() as u64) as usize] as usize
            }
            Method::Maglev => {
                let h = hash_flow(client, local);
                self.table[(h % self.table.len() as u64) as usize] as usize
            }
        };
        Some(Picked {
            schedule: self,
            index,
        })
    }

    /// nginx's smooth weighted round robin: each pick adds every weight to
    /// its current value, takes the largest, and subtracts the total from
    /// it. Weights 5,1,1 give a a b a c a a, not a a a a a b c.
    fn smooth_wrr(&self) -> usize {
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let total: i64 = self.backends.iter().map(|b| i64::from(b.weight)).sum();
        let mut best = 0;
        for (i, b) in self.backends.iter().enumerate() {
            cur[i] += i64::from(b.weight);
            if cur[i] > cur[best] {
                best = i;
            }
        }
        cur[best] -= total;
        best
    }
}

/// 64-bit FNV-1a with a splitmix64 finish: stable across runs and
/// versions (std's hasher promises neither), well mixed.
fn hash64(bytes: &[u8], seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => match v.to_ipv4_mapped() {
            Some(v4) => v4.octets().to_vec(),
            None => v.octets().to_vec(),
        },
    }
}

fn hash_ip(ip: IpAddr) -> u64 {
    hash64(&ip_bytes(ip), 0)
}

fn hash_flow(client: SocketAddr, local: SocketAddr) -> u64 {
    let mut b = ip_bytes(client.ip());
    b.extend_from_slice(&client.port().to_be_bytes());
    b.extend(ip_bytes(local.ip()));
    b.extend_from_slice(&local.port().to_be_bytes());
    hash64(&b, 1)
}

fn backend_key(b: &Backend) -> Vec<u8> {
    let mut k = ip_bytes(b.addr.ip());
    k.extend_from_slice(&b.addr.port().to_be_bytes());
    k
}

/// For source hash: each backend holds slots in proportion to its weight
/// (at most 64Ki slots in all).
fn weighted_slots(backends: &[Backend]) -> Vec<u32> {
    let total: u64 = backends.iter().map(|b| u64::from(b.weight)).sum();
    let scale = if total > 65_536 {
        total / 65_536 + 1
    } else {
        1
    };
    let mut slots = Vec::new();
    for (i, b) in backends.iter().enumerate() {
        let n = (u64::from(b.weight) / scale).max(1);
        slots.extend(std::iter::repeat_n(i as u32, n as usize));
    }
    slots
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

    fn backends(n: usize) -> Vec<Backend> {
        (0..n)
            .map(|i| Backend {
                addr: format!("127.0.0.{}:8080", i + 10).parse().unwrap(),
                weight: 1,
            })
            .collect()
    }

    fn client(i: u32) -> SocketAddr {
        SocketAddr::new(
            IpAddr::from((0x0a00_0000u32 + i).to_be_bytes()),
            40_000 + (i % 20_000) as u16,
        )
    }

    const LB: &str = "192.0.2.1:80";

    #[test]
    fn nothing_up_picks_nothing() {
        let s = Schedule::new(Method::Maglev, vec![]);
        assert!(s.pick(client(1), LB.parse().unwrap()).is_none());
        let mut b = backends(2);
        b.iter_mut().for_each(|b| b.weight = 0);
        let s = Schedule::new(Method::RoundRobin, b);
        assert!(s.pick(client(1), LB.parse().unwrap()).is_none());
    }

    #[test]
    fn round_robin_takes_turns() {
        let s = Schedule::new(Method::RoundRobin, backends(3));
        let lb = LB.parse().unwrap();
        let got: Vec<usize> = (0..6)
            .map(|i| s.pick(client(i), lb).unwrap().index())
            .collect();
        assert_eq!(got, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn smooth_weighted_round_robin_is_exact_and_spread() {
        let mut b = backends(3);
        b[0].weight = 5;
        let s = Schedule::new(Method::WeightedRoundRobin, b);
        let lb = LB.parse().unwrap();
        let got: Vec<usize> = (0..7)
            .map(|i| s.pick(client(i), lb).unwrap().index())
            .collect();
        // nginx's sequence for 5,1,1.
        assert_eq!(got, [0, 0, 1, 0, 2, 0, 0]);
        // Endpoint weights 2 and 1: exactly 2/3 and 1/3.
        let mut b = backends(2);
        b[0].weight = 2;
        let s = Schedule::new(Method::WeightedRoundRobin, b);
        let mut count = [0; 2];
        for i in 0..3000 {
            count[s.pick(client(i), lb).unwrap().index()] += 1;
        }
        assert_eq!(count, [2000, 1000]);
    }

    #[test]
    fn least_connections_counts_open_picks_by_weight() {
        let mut b = backends(2);
        b[1].weight = 2;
        let s = Schedule::new(Method::LeastConnections, b);
        let lb = LB.parse().unwrap();
        let held: Vec<Picked<'_>> = (0..6).map(|i| s.pick(client(i), lb).unwrap()).collect();
        let on = |i| held.iter().filter(|p| p.index() == i).count();
        // Weight 2 holds twice as many.
        assert_eq!((on(0), on(1)), (2, 4));
        drop(held);
        assert!(s.open.iter().all(|o| o.load(Ordering::Relaxed) == 0));
    }

    #[test]
    fn source_hash_keeps_a_client_and_spreads_clients() {
        let s = Schedule::new(Method::SourceHash, backends(4));
        let lb: SocketAddr = LB.parse().unwrap();
        let mut count = [0usize; 4];
        for i in 0..4000 {
            let c = client(i);
            let a = s.pick(c, lb).unwrap().index();
            // Another port of the same client: the same backend.
            let other = SocketAddr::new(c.ip(), c.port().wrapping_add(1));
            assert_eq!(a, s.pick(other, lb).unwrap().index());
            count[a] += 1;
        }
        assert!(count.iter().all(|&c| (800..1200).contains(&c)), "{count:?}");
    }

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
        let lb: SocketAddr = LB.parse().unwrap();
        let (mut kept_flows, mut moved) = (0, 0);
        for i in 0..20_000 {
            let c = client(i);
            let was = before.pick(c, lb).unwrap().backend().addr;
            if was == gone {
                continue;
            }
            kept_flows += 1;
            if after.pick(c, lb).unwrap().backend().addr != was {
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
        let lb: SocketAddr = LB.parse().unwrap();
        let mut count = [0usize; 2];
        for i in 0..30_000 {
            count[s.pick(client(i), lb).unwrap().index()] += 1;
        }
        let share = count[0] as f64 / 30_000.0;
        assert!((share - 2.0 / 3.0).abs() < 0.05, "{count:?}");
    }

    #[test]
    fn methods_parse() {
        assert_eq!("maglev".parse::<Method>(), Ok(Method::Maglev));
        assert_eq!("source".parse::<Method>(), Ok(Method::SourceHash));
        assert!("random".parse::<Method>().is_err());
    }
}
