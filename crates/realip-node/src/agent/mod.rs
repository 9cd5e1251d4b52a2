//! The node agent: poll the object source, plan, sync the kernel, keep
//! the health servers in line, and say how long each step took.
//!
//! The loop, as kube-proxy's: each sync computes the whole desired state
//! from the model and applies only the difference, in one transaction;
//! a periodic full sync repairs what was changed behind its back. A sync
//! that fails leaves the kernel holding the last good ruleset, and is
//! tried again at the next poll.

mod health_servers;
mod source;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use realip_nft::CommitError;

use crate::health::ProxyHealth;
use crate::plan::{health_checks, plan, HealthCheck, PlanError};
use crate::sync::Syncer;

pub use health_servers::{serve_healthz, BindError, HealthServers};
pub use source::{FileSource, Fingerprint, ObjectSource, SourceError};

/// Why one sync did not reach the kernel.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The objects could not be read.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// There is no plan for this node.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The kernel refused the transaction, or could not be reached.
    #[error(transparent)]
    Commit(#[from] CommitError),
}

/// How the long-running agent serves and polls.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Address the healthCheckNodePort servers listen on.
    pub health_address: IpAddr,
    /// Where `/healthz` and `/livez` listen (kube-proxy: port 10256).
    pub healthz: SocketAddr,
    /// How often the source is asked whether the objects changed.
    pub poll: Duration,
    /// How often the tables are replaced whole even without changes.
    pub full_sync_period: Duration,
}

/// The agent for one node, reading objects from `S`.
#[derive(Debug)]
pub struct Agent<S> {
    source: S,
    node: String,
    syncer: Syncer,
}

impl<S: ObjectSource> Agent<S> {
    /// An agent on a fresh netlink socket in this network namespace.
    pub fn new(source: S, node: impl Into<String>) -> Result<Self, CommitError> {
        Ok(Agent {
            source,
            node: node.into(),
            syncer: Syncer::new()?,
        })
    }

    /// Remove every table realip made.
    pub fn cleanup(&mut self) -> Result<(), CommitError> {
        self.syncer.sync(Vec::new()).map(|_| ())
    }

    /// One load, plan and sync; returns the health checks the plan asks
    /// for. `Err` leaves the kernel as it was.
    pub fn sync_once(&mut self) -> Result<Vec<HealthCheck>, SyncError> {
        let t0 = Instant::now();
        let (model, skipped) = self.source.load()?;
        for s in skipped {
            tracing::warn!(object = %s.object, reason = %s.reason, "object skipped");
        }
        let t1 = Instant::now();
        let rulesets = plan(&model, &self.node)?;
        let t2 = Instant::now();
        let report = self.syncer.sync(rulesets)?;
        let ms = |d: Duration| (d.as_secs_f64() * 1e3 * 100.0).round() / 100.0;
        if report.messages > 0 {
            // bench/node-sync.sh reads these fields.
            tracing::info!(
                full = report.full,
                messages = report.messages,
                bytes = report.bytes,
                load_ms = ms(t1 - t0),
                plan_ms = ms(t2 - t1),
                sync_ms = ms(report.elapsed),
                udp_flows_flushed = report.udp_flows_flushed,
                "synced"
            );
        }
        if let Some(e) = &report.flush_error {
            tracing::warn!(error = %e, "stale UDP conntrack entries could not be flushed");
        }
        Ok(health_checks(&model, &self.node))
    }

    /// Sync whenever the source changes (and whole every
    /// `full_sync_period`), serving the health checks, until `stop`
    /// resolves. The rules stay when it returns: a restarted agent
    /// reconciles them, and traffic keeps flowing meanwhile. `ready` is
    /// called once, after the first sync is in the kernel and its health
    /// checks are served.
    pub async fn run(
        mut self,
        config: &RunConfig,
        stop: impl Future<Output = ()>,
        ready: impl FnOnce(),
    ) -> Result<(), BindError> {
        let mut ready = Some(ready);
        // Healthy while syncs keep succeeding (kube-proxy: within twice
        // the sync period).
        let proxy = Arc::new(ProxyHealth::new(config.poll.max(Duration::from_secs(15))));
        let healthz = serve_healthz(config.healthz, &proxy).await?;
        let mut servers = HealthServers::new(config.health_address, proxy.clone());
        let mut seen = None;
        let mut last_full = tokio::time::Instant::now();
        tokio::pin!(stop);
        loop {
            let now = self.source.version();
            let full_due = last_full.elapsed() >= config.full_sync_period;
            if seen.as_ref() != Some(&now) || full_due {
                if full_due {
                    self.syncer.forget();
                    last_full = tokio::time::Instant::now();
                }
                match self.sync_once() {
                    Ok(checks) => {
                        for e in servers.update(&checks).await {
                            tracing::error!(error = %e, "health check port not served; retrying at the next sync");
                        }
                        proxy.updated(SystemTime::now());
                        seen = Some(now);
                        if let Some(ready) = ready.take() {
                            ready();
                        }
                    }
                    // The kernel keeps the last good ruleset; try again at
                    // the next poll.
                    Err(e) => tracing::error!(error = %e, "sync failed; keeping the last ruleset"),
                }
            } else {
                proxy.updated(SystemTime::now());
            }
            tokio::select! {
                () = tokio::time::sleep(config.poll) => {}
                () = &mut stop => break,
            }
        }
        healthz.abort();
        drop(servers);
        Ok(())
    }
}

/// Serve the health checks `checks` on `address`, and `/healthz` and
/// `/livez` on `healthz`, until `stop` resolves: `realip node
/// health-check`, without programming anything. The objects were read
/// just now, so the proxy state counts as fresh.
pub async fn serve_health_checks(
    checks: &[HealthCheck],
    address: IpAddr,
    healthz: SocketAddr,
    stop: impl Future<Output = ()>,
) -> Result<(), BindError> {
    let proxy = Arc::new(ProxyHealth::new(Duration::from_secs(3600)));
    proxy.updated(SystemTime::now());
    let healthz_task = serve_healthz(healthz, &proxy).await?;
    let mut servers = HealthServers::new(address, proxy);
    if let Some(e) = servers.update(checks).await.into_iter().next() {
        healthz_task.abort();
        return Err(e);
    }
    stop.await;
    healthz_task.abort();
    Ok(())
}
