//! The healthCheckNodePort servers, kept in line with the plan: new
//! ports bound, gone ones stopped, endpoint counts updated in place; and
//! the proxy's own `/healthz` and metrics ports.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::health::{serve, ProxyHealth, Responder, ServiceHealthState};
use crate::metrics::SyncMetrics;
use crate::model::ServiceKey;
use crate::plan::HealthCheck;

/// A health server's port could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The proxy's own `/healthz` and `/livez` port.
    #[error("binding {addr}: {source}")]
    Healthz {
        /// Where it was to listen.
        addr: SocketAddr,
        /// Why it could not.
        #[source]
        source: std::io::Error,
    },
    /// The metrics port (`/proxyMode`, `/metrics`).
    #[error("binding {addr} for the metrics: {source}")]
    Metrics {
        /// Where it was to listen.
        addr: SocketAddr,
        /// Why it could not.
        #[source]
        source: std::io::Error,
    },
    /// A Service's healthCheckNodePort.
    #[error("binding {addr} for {service}: {source}")]
    HealthCheck {
        /// Where it was to listen.
        addr: SocketAddr,
        /// The Service.
        service: ServiceKey,
        /// Why it could not.
        #[source]
        source: std::io::Error,
    },
}

/// Serve `/healthz` and `/livez` for `proxy` on `addr` until the task is
/// aborted.
pub async fn serve_healthz(
    addr: SocketAddr,
    proxy: &Arc<ProxyHealth>,
) -> Result<JoinHandle<()>, BindError> {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => Ok(tokio::spawn(serve(l, Responder::Proxy(proxy.clone())))),
        Err(source) => Err(BindError::Healthz { addr, source }),
    }
}

/// Serve `/proxyMode` and `/metrics` for `metrics` on `addr` until the
/// task is aborted.
pub async fn serve_metrics(
    addr: SocketAddr,
    metrics: &Arc<SyncMetrics>,
) -> Result<JoinHandle<()>, BindError> {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => Ok(tokio::spawn(serve(l, Responder::Metrics(metrics.clone())))),
        Err(source) => Err(BindError::Metrics { addr, source }),
    }
}

/// The healthCheckNodePort servers, by port; dropping them stops them.
#[derive(Debug)]
pub struct HealthServers {
    address: IpAddr,
    proxy: Arc<ProxyHealth>,
    by_port: BTreeMap<u16, (Arc<ServiceHealthState>, JoinHandle<()>)>,
}

impl HealthServers {
    /// No servers yet; they will listen on `address` and report `proxy`'s
    /// health with their counts.
    pub fn new(address: IpAddr, proxy: Arc<ProxyHealth>) -> Self {
        HealthServers {
            address,
            proxy,
            by_port: BTreeMap::new(),
        }
    }

    /// Bring the servers in line with `checks`. Returns the ports that
    /// could not be bound (the agent retries them at its next sync;
    /// `health-check` gives up).
    pub async fn update(&mut self, checks: &[HealthCheck]) -> Vec<BindError> {
        let mut failed = Vec::new();
        let wanted: BTreeSet<u16> = checks.iter().map(|c| c.port).collect();
        self.by_port.retain(|port, (state, task)| {
            let keep = wanted.contains(port);
            if !keep {
                tracing::info!(port, service = %format!("{}/{}", state.namespace, state.name), "health check stopped");
                task.abort();
            }
            keep
        });
        for c in checks {
            if let Some((state, _)) = self.by_port.get(&c.port) {
                if state.namespace == c.service.namespace && state.name == c.service.name {
                    state
                        .local_endpoints
                        .store(c.local_endpoints, Ordering::Relaxed);
                    continue;
                }
                if let Some((_, task)) = self.by_port.remove(&c.port) {
                    task.abort();
                }
            }
            let addr = SocketAddr::new(self.address, c.port);
            let state = Arc::new(ServiceHealthState {
                namespace: c.service.namespace.clone(),
                name: c.service.name.clone(),
                local_endpoints: AtomicUsize::new(c.local_endpoints),
                proxy: self.proxy.clone(),
            });
            match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => {
                    tracing::info!(service = %c.service, %addr, local_endpoints = c.local_endpoints, "health check listening");
                    let task = tokio::spawn(serve(l, Responder::Service(state.clone())));
                    self.by_port.insert(c.port, (state, task));
                }
                Err(source) => failed.push(BindError::HealthCheck {
                    addr,
                    service: c.service.clone(),
                    source,
                }),
            }
        }
        failed
    }
}

impl Drop for HealthServers {
    fn drop(&mut self) {
        for (_, task) in self.by_port.values() {
            task.abort();
        }
    }
}
