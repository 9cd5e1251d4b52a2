//! Picking a backend: [`Schedule`] over the backends that are up, by the
//! configured [`Method`], each algorithm in its own file behind the small
//! `Select` trait. A schedule is built whenever health or weights change;
//! building is the slow part (Maglev fills a table of a prime M > 100·N
//! entries) and stays off the request path, which only reads.

mod hash;
mod least_connections;
mod maglev;
mod round_robin;
mod select;
mod smooth_weighted;
mod source_hash;

use std::net::SocketAddr;

pub use select::Backend;
use select::Select;

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

/// A word that is not a schedule [`Method`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a schedule: round-robin, weighted-round-robin, least-connections, source-hash or maglev")]
pub struct UnknownMethod {
    /// The word given.
    pub value: String,
}

impl std::str::FromStr for Method {
    type Err = UnknownMethod;

    fn from_str(s: &str) -> Result<Self, UnknownMethod> {
        Ok(match s {
            "round-robin" | "rr" => Method::RoundRobin,
            "weighted-round-robin" | "wrr" => Method::WeightedRoundRobin,
            "least-connections" | "leastconn" => Method::LeastConnections,
            "source-hash" | "source" => Method::SourceHash,
            "maglev" => Method::Maglev,
            _ => return Err(UnknownMethod { value: s.into() }),
        })
    }
}

/// The backends that are up, and how to pick among them.
#[derive(Debug)]
pub struct Schedule {
    method: Method,
    backends: Vec<Backend>,
    select: Box<dyn Select>,
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
        self.schedule.select.done(self.index);
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
        let select: Box<dyn Select> = match method {
            Method::RoundRobin => Box::<round_robin::RoundRobin>::default(),
            Method::WeightedRoundRobin => Box::new(smooth_weighted::SmoothWeighted::new(&backends)),
            Method::LeastConnections => {
                Box::new(least_connections::LeastConnections::new(&backends))
            }
            Method::SourceHash => Box::new(source_hash::SourceHash::new(&backends)),
            Method::Maglev => Box::new(maglev::Maglev::new(&backends, pool)),
        };
        Schedule {
            method,
            backends,
            select,
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
        if self.backends.is_empty() {
            return None;
        }
        let index = self.select.pick(&self.backends, client, local);
        Some(Picked {
            schedule: self,
            index,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::net::IpAddr;

    pub(crate) fn backends(n: usize) -> Vec<Backend> {
        (0..n)
            .map(|i| Backend {
                addr: format!("127.0.0.{}:8080", i + 10).parse().unwrap(),
                weight: 1,
            })
            .collect()
    }

    pub(crate) fn client(i: u32) -> SocketAddr {
        SocketAddr::new(
            IpAddr::from((0x0a00_0000u32 + i).to_be_bytes()),
            40_000 + (i % 20_000) as u16,
        )
    }

    pub(crate) fn lb() -> SocketAddr {
        "192.0.2.1:80".parse().unwrap()
    }

    #[test]
    fn nothing_up_picks_nothing() {
        let s = Schedule::new(Method::Maglev, vec![]);
        assert!(s.pick(client(1), lb()).is_none());
        let mut b = backends(2);
        b.iter_mut().for_each(|b| b.weight = 0);
        let s = Schedule::new(Method::RoundRobin, b);
        assert!(s.pick(client(1), lb()).is_none());
    }

    #[test]
    fn a_least_connections_pick_is_open_until_dropped() {
        let mut b = backends(2);
        b[1].weight = 2;
        let s = Schedule::new(Method::LeastConnections, b);
        let held: Vec<Picked<'_>> = (0..6).map(|i| s.pick(client(i), lb()).unwrap()).collect();
        let on = |i| held.iter().filter(|p| p.index() == i).count();
        // Weight 2 holds twice as many.
        assert_eq!((on(0), on(1)), (2, 4));
        // Drop backend 1's four: only backend 0's two stay open, so the
        // next three all go to backend 1 (had the drops not counted, the
        // loads would tie and the picks alternate).
        let (_kept, gone): (Vec<_>, Vec<_>) = held.into_iter().partition(|p| p.index() == 0);
        drop(gone);
        let next: Vec<usize> = (0..3)
            .map(|i| s.pick(client(i), lb()).unwrap().index())
            .collect();
        assert_eq!(next, [1, 1, 1]);
    }

    #[test]
    fn methods_parse() {
        assert_eq!("maglev".parse::<Method>(), Ok(Method::Maglev));
        assert_eq!("source".parse::<Method>(), Ok(Method::SourceHash));
        assert!("random".parse::<Method>().is_err());
    }
}
