//! A backend pool: its configured backends, what the health checks have
//! seen, and the schedule built from both. The schedule is replaced
//! whole when health or weights change; a pick takes the current one
//! (connections keep the backend they were given).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::watch;

use crate::health::{probe, Change, Check, Health, Probe, ProbeFailure};
use crate::{Backend, Method, Schedule};

/// Health-check settings of a pool.
#[derive(Debug, Clone)]
pub struct Checks {
    /// What a check is.
    pub check: Check,
    /// Time between rounds.
    pub interval: Duration,
    /// Longest a check may take.
    pub timeout: Duration,
    /// Passes in a row that bring a backend back.
    pub rise: u32,
    /// Failures in a row that take a backend out.
    pub fall: u32,
    /// Check this port of each backend's address instead of its own (a
    /// node's healthCheckNodePort, as cloud LBs do).
    pub port: Option<u16>,
}

/// A pool of backends.
#[derive(Debug)]
pub struct Pool {
    method: Method,
    configured: Vec<Backend>,
    health: Mutex<Vec<Health>>,
    /// How long each backend's last check took.
    latency: Mutex<Vec<Option<Duration>>>,
    current: RwLock<Arc<Schedule>>,
}

/// One backend as `/metrics` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendStatus {
    /// The backend.
    pub addr: SocketAddr,
    /// Whether it takes traffic.
    pub up: bool,
    /// The weight it is scheduled with (0 when down).
    pub weight: u32,
    /// How long its last health check took.
    pub last_check: Option<Duration>,
}

impl Pool {
    /// A pool with every backend up at its configured weight.
    pub fn new(method: Method, backends: Vec<Backend>) -> Self {
        let schedule = Arc::new(Schedule::new(method, backends.clone()));
        Pool {
            method,
            health: Mutex::new(backends.iter().map(|_| Health::new()).collect()),
            latency: Mutex::new(vec![None; backends.len()]),
            configured: backends,
            current: RwLock::new(schedule),
        }
    }

    /// Take over what `old` has seen of the backends both pools have (a
    /// reload that changed the pool keeps a down backend down).
    pub fn inherit(&self, old: &Pool) {
        let old_health = old
            .health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        let mut carried = false;
        for (b, h) in self.configured.iter().zip(health.iter_mut()) {
            if let Some(i) = old.configured.iter().position(|o| o.addr == b.addr) {
                *h = old_health[i].clone();
                carried = true;
            }
        }
        if carried {
            self.rebuild(&health);
        }
    }

    fn rebuild(&self, health: &[Health]) {
        // Down backends stay in the pool with weight 0, so Maglev keeps
        // its table size and the other flows their backends.
        let now: Vec<Backend> = self
            .configured
            .iter()
            .zip(health.iter())
            .map(|(b, h)| Backend {
                addr: b.addr,
                weight: h.weight(b.weight),
            })
            .collect();
        let schedule = Arc::new(Schedule::new(self.method, now));
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = schedule;
    }

    /// The schedule to pick from now.
    pub fn schedule(&self) -> Arc<Schedule> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The configured backends, in order.
    pub fn backends(&self) -> &[Backend] {
        &self.configured
    }

    /// Every backend's health, weight and last check time.
    pub fn status(&self) -> Vec<BackendStatus> {
        let health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        let latency = self.latency.lock().unwrap_or_else(PoisonError::into_inner);
        self.configured
            .iter()
            .zip(health.iter())
            .zip(latency.iter())
            .map(|((b, h), l)| BackendStatus {
                addr: b.addr,
                up: h.is_up(),
                weight: h.weight(b.weight),
                last_check: *l,
            })
            .collect()
    }

    /// Record how long each backend's check of this round took.
    pub fn record_latency(&self, took: &[Duration]) {
        let mut latency = self.latency.lock().unwrap_or_else(PoisonError::into_inner);
        for (l, t) in latency.iter_mut().zip(took) {
            *l = Some(*t);
        }
    }

    /// Record one round of probes (one per configured backend, in order)
    /// and rebuild the schedule if a backend went down, came back or was
    /// reweighted. Returns what changed.
    pub fn observe(&self, probes: &[Probe], rise: u32, fall: u32) -> Vec<(SocketAddr, Change)> {
        let mut health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        let mut changes = Vec::new();
        for ((h, p), b) in health.iter_mut().zip(probes).zip(&self.configured) {
            let c = h.observe(*p, rise, fall);
            if c != Change::None {
                changes.push((b.addr, c));
            }
        }
        if !changes.is_empty() {
            self.rebuild(&health);
        }
        changes
    }
}

/// Check the pool's backends every interval until `shutdown`, all of a
/// round at once, each bounded by the timeout.
pub async fn run_checks(pool: Arc<Pool>, checks: Checks, mut shutdown: watch::Receiver<bool>) {
    loop {
        let tasks: Vec<_> = pool
            .backends()
            .iter()
            .map(|b| {
                let addr = match checks.port {
                    Some(p) => SocketAddr::new(b.addr.ip(), p),
                    None => b.addr,
                };
                let (check, timeout) = (checks.check.clone(), checks.timeout);
                tokio::spawn(async move {
                    let started = std::time::Instant::now();
                    let p = probe(&check, addr, timeout).await;
                    (p, started.elapsed())
                })
            })
            .collect();
        let mut probes = Vec::with_capacity(tasks.len());
        let mut took = Vec::with_capacity(tasks.len());
        for t in tasks {
            let (p, d) = t
                .await
                .unwrap_or((Probe::Fail(ProbeFailure::Timeout), checks.timeout));
            probes.push(p);
            took.push(d);
        }
        pool.record_latency(&took);
        for (addr, change) in pool.observe(&probes, checks.rise, checks.fall) {
            match change {
                Change::Down => {
                    let why = pool
                        .configured
                        .iter()
                        .zip(&probes)
                        .find_map(|(b, p)| match p {
                            Probe::Fail(f) if b.addr == addr => Some(*f),
                            _ => None,
                        });
                    match why {
                        Some(reason) => tracing::warn!(backend = %addr, %reason, "backend down"),
                        None => tracing::warn!(backend = %addr, "backend down"),
                    }
                }
                Change::Up => tracing::info!(backend = %addr, "backend up"),
                Change::Reweighted => {
                    tracing::info!(backend = %addr, "backend reweighted by its health answer")
                }
                Change::None => {}
            }
        }
        tokio::select! {
            () = tokio::time::sleep(checks.interval) => {}
            _ = shutdown.wait_for(|&v| v) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_down_backend_leaves_the_schedule_and_comes_back() {
        let b: Vec<Backend> = ["127.0.0.10:80", "127.0.0.11:80"]
            .iter()
            .map(|a| Backend {
                addr: a.parse().unwrap(),
                weight: 1,
            })
            .collect();
        let pool = Pool::new(Method::RoundRobin, b);
        assert_eq!(pool.schedule().backends().len(), 2);
        let fail = [Probe::Fail(ProbeFailure::Refused), Probe::Pass(None)];
        assert!(pool.observe(&fail, 2, 2).is_empty());
        assert_eq!(pool.observe(&fail, 2, 2).len(), 1);
        assert_eq!(pool.schedule().backends().len(), 1);
        let pass = [Probe::Pass(None), Probe::Pass(None)];
        assert!(pool.observe(&pass, 2, 2).is_empty());
        assert_eq!(
            pool.observe(&pass, 2, 2),
            [(pool.backends()[0].addr, Change::Up)]
        );
        assert_eq!(pool.schedule().backends().len(), 2);
        // A reported weight reshapes the schedule.
        let w = [Probe::Pass(Some(2)), Probe::Pass(None)];
        assert_eq!(pool.observe(&w, 2, 2).len(), 1);
        assert_eq!(pool.schedule().backends()[0].weight, 2);
    }
}
