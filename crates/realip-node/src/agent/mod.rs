//! The node agent: watch the object source, plan, sync the kernel, keep
//! the health servers in line, and say how long each step took.
//!
//! The loop, as kube-proxy's: each sync computes the whole desired state
//! from the model and applies only the difference, in one transaction;
//! a periodic full sync repairs what was changed behind its back. When
//! to sync is [`Runner`]'s pure policy (kube-proxy's bounded-frequency
//! runner); this module wires it to the clock, the source and the
//! kernel. A sync that fails leaves the kernel holding the last good
//! ruleset.

mod health_servers;
mod runner;
mod source;

use std::collections::BTreeSet;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use realip_nft::CommitError;
use tokio::task::JoinHandle;

use crate::health::ProxyHealth;
use crate::metrics::{changes, SyncMetrics};
use crate::model::Model;
use crate::plan::{health_checks, plan, HealthCheck, PlanError};
use crate::sync::Syncer;

pub use health_servers::{serve_healthz, serve_metrics, BindError, HealthServers};
pub use runner::{Periods, Runner, Step};
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

/// How the long-running agent serves and syncs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Address the healthCheckNodePort servers listen on.
    pub health_address: IpAddr,
    /// Where `/healthz` and `/livez` listen (kube-proxy: port 10256).
    pub healthz: SocketAddr,
    /// Where `/proxyMode` and `/metrics` listen (kube-proxy:
    /// 127.0.0.1:10249); `None`: not served.
    pub metrics: Option<SocketAddr>,
    /// How often the source's version is looked at (a file source is only
    /// polled; a live one also wakes the agent when it changes).
    pub poll: Duration,
    /// Syncs begin at least this far apart; changes meanwhile coalesce
    /// into one sync.
    pub min_sync_period: Duration,
    /// A sync runs at least this often, changes or not (it sends only a
    /// difference), and a failed one is retried after it; also the health
    /// timeout's unit: `/healthz` turns 503 once the agent has not been in
    /// line with its source for twice this.
    pub sync_period: Duration,
    /// How often the tables are replaced whole, repairing changes made
    /// behind the agent's back (kube-proxy: one hour, fixed).
    pub full_sync_period: Duration,
}

/// What a successful sync leaves for the loop.
#[derive(Debug)]
struct Synced {
    checks: Vec<HealthCheck>,
    node_being_deleted: bool,
}

/// The agent for one node, reading objects from `S`.
#[derive(Debug)]
pub struct Agent<S> {
    source: S,
    node: String,
    syncer: Syncer,
    metrics: Arc<SyncMetrics>,
    /// The model of the last good sync, to count what changed since.
    last_model: Model,
    /// What the last sync skipped, so that each skipped object is logged
    /// when it first is, not at every sync.
    last_skipped: BTreeSet<String>,
}

/// Tasks stopped when the agent returns, however it returns.
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

impl<S: ObjectSource> Agent<S> {
    /// An agent on a fresh netlink socket in this network namespace.
    pub fn new(source: S, node: impl Into<String>) -> Result<Self, CommitError> {
        Ok(Agent {
            source,
            node: node.into(),
            syncer: Syncer::new()?,
            metrics: Arc::new(SyncMetrics::default()),
            last_model: Model::default(),
            last_skipped: BTreeSet::new(),
        })
    }

    /// The source the agent reads.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// Remove every table realip made.
    pub fn cleanup(&mut self) -> Result<(), CommitError> {
        self.syncer.sync(Vec::new()).map(|_| ())
    }

    /// One load, plan and sync; returns the health checks the plan asks
    /// for. `Err` leaves the kernel as it was.
    pub fn sync_once(&mut self) -> Result<Vec<HealthCheck>, SyncError> {
        self.sync().map(|s| s.checks)
    }

    fn sync(&mut self) -> Result<Synced, SyncError> {
        let t0 = Instant::now();
        let (model, skipped) = self.source.load()?;
        let skipped: BTreeSet<String> = skipped.iter().map(|s| s.to_string()).collect();
        for s in skipped.difference(&self.last_skipped) {
            tracing::warn!("{s}");
        }
        self.last_skipped = skipped;
        let t1 = Instant::now();
        let rulesets = plan(&model, &self.node)?;
        let t2 = Instant::now();
        let report = self.syncer.sync(rulesets).inspect_err(|_| {
            self.metrics.failed();
        })?;
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
        // kube-proxy times the whole syncProxyRules, computing included.
        self.metrics.synced(
            t0.elapsed(),
            report.full,
            SystemTime::now(),
            changes(&self.last_model, &model),
        );
        let synced = Synced {
            checks: health_checks(&model, &self.node),
            node_being_deleted: model.nodes.get(&self.node).is_some_and(|n| n.being_deleted),
        };
        self.last_model = model;
        Ok(synced)
    }

    /// Sync whenever the source changes, at most every `min_sync_period`,
    /// and whole every `sync_period`, serving the health checks and the
    /// metrics, until `stop` resolves. Nothing syncs before the source is
    /// [`ready`](ObjectSource::ready). The rules stay when it returns: a
    /// restarted agent reconciles them, and traffic keeps flowing
    /// meanwhile. `ready` is called once, after the first sync is in the
    /// kernel and its health checks are served.
    pub async fn run(
        mut self,
        config: &RunConfig,
        stop: impl Future<Output = ()>,
        ready: impl FnOnce(),
    ) -> Result<(), BindError> {
        let mut ready = Some(ready);
        // kube-proxy's health timeout is twice the sync period.
        let proxy = Arc::new(ProxyHealth::new(config.sync_period));
        let mut tasks = Tasks(vec![serve_healthz(config.healthz, &proxy).await?]);
        if let Some(addr) = config.metrics {
            tasks.0.push(serve_metrics(addr, &self.metrics).await?);
        }
        let mut servers = HealthServers::new(config.health_address, proxy.clone());
        let mut runner = Runner::new(Periods {
            min_sync: config.min_sync_period,
            sync: config.sync_period,
            full: config.full_sync_period,
        });
        let mut seen: Option<S::Version> = None;
        let mut queued = false;
        tokio::pin!(stop);
        loop {
            let version = self.source.version();
            let pending = seen.as_ref() != Some(&version);
            let loaded = self.source.ready();
            if pending && loaded && !queued {
                self.metrics.queued(SystemTime::now());
                queued = true;
            }
            let now = Instant::now();
            let step = if loaded {
                runner.next(now, pending)
            } else {
                Step::WaitUntil(now + config.sync_period)
            };
            let until = match step {
                Step::Sync { full } => {
                    if full {
                        self.syncer.forget();
                    }
                    // What this sync covers; a change during it shows as
                    // a newer version and syncs again.
                    seen = Some(version);
                    queued = false;
                    let result = self.sync();
                    runner.attempted(now, full, result.is_ok());
                    match result {
                        Ok(synced) => {
                            for e in servers.update(&synced.checks).await {
                                tracing::error!(error = %e, "health check port not served; retrying at the next sync");
                            }
                            proxy.set_node_eligible(!synced.node_being_deleted);
                            if self.source.connected() {
                                proxy.updated(SystemTime::now());
                            }
                            if let Some(ready) = ready.take() {
                                ready();
                            }
                        }
                        Err(e) => tracing::error!(
                            error = %e,
                            retry_in = ?config.sync_period,
                            "sync failed; keeping the last ruleset (retrying sooner if the objects change)"
                        ),
                    }
                    continue;
                }
                Step::WaitUntil(until) => until,
            };
            // In line with a source that is in touch with its origin:
            // healthy. Cut off from it (an API outage), the kernel keeps
            // the last rules but the health ages out, so load balancers
            // prefer nodes that still see the cluster's changes. (Issue
            // #12 asks for this; kube-proxy's own /healthz only ages out
            // while an update it has received waits to be synced.)
            if loaded && !pending && !runner.failing() && self.source.connected() {
                proxy.updated(SystemTime::now());
            }
            tokio::select! {
                () = tokio::time::sleep_until(until.into()) => {}
                () = tokio::time::sleep(config.poll) => {}
                () = self.source.changed(&version) => {}
                () = &mut stop => break,
            }
        }
        drop(tasks);
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
