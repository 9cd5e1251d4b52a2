//! The live objects of `realip lb --service NS/NAME`: two watches into
//! reflector stores (the one Service, by field selector in its namespace,
//! and every Node), run by the same loop as the node agent's
//! ([`watch::run`]: logged with the server and the API's message,
//! relisted with backoff, the stores keeping the last lists meanwhile);
//! and the write of the Service's `status.loadBalancer`, retried with
//! backoff, a refusal logged once with the URL and the permission.
//!
//! It needs list and watch on services in the Service's namespace, list
//! and watch on nodes, and patch on services/status to publish.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    LoadBalancerIngress, LoadBalancerStatus, Node, Service, ServiceStatus,
};
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::utils::Backoff;
use kube::runtime::watcher::{self, DefaultBackoff};
use kube::{Api, ResourceExt};
use tokio::task::JoinHandle;

use crate::config::Connection;
use crate::service_lb::{Publish, ServiceRef};
use crate::watch::{self, Kind, Shared, LB_WATCHES};

/// The Service and the Nodes, kept current by two watches. Dropping it
/// stops them.
#[derive(Debug)]
pub struct LbSource {
    target: ServiceRef,
    service: Store<Service>,
    nodes: Store<Node>,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl LbSource {
    /// Start the watches on the current tokio runtime; returns at once.
    pub fn start(conn: &Connection, target: &ServiceRef) -> LbSource {
        let shared = Arc::new(Shared::new(&LB_WATCHES));
        let server: Arc<str> = conn.server.as_str().into();
        let (service, service_writer) = reflector::store();
        let (nodes, nodes_writer) = reflector::store();
        let tasks = vec![
            tokio::spawn(watch::run(
                Api::<Service>::namespaced(conn.client.clone(), &target.namespace),
                watcher::Config::default().fields(&target.fields()),
                service_writer,
                Kind::BalancedService,
                shared.clone(),
                server.clone(),
            )),
            tokio::spawn(watch::run(
                Api::<Node>::all(conn.client.clone()),
                watcher::Config::default(),
                nodes_writer,
                Kind::BalancedNodes,
                shared.clone(),
                server,
            )),
        ];
        LbSource {
            target: target.clone(),
            service,
            nodes,
            shared,
            tasks,
        }
    }

    /// Bumped at every change to either store.
    pub fn version(&self) -> u64 {
        self.shared.version()
    }

    /// Resolves once the version is no longer `since`.
    pub fn changed(&self, since: u64) -> impl Future<Output = ()> {
        let mut rx = self.shared.subscribe();
        async move {
            // The sender lives as long as the source; were it gone no
            // change could come, so wait forever rather than spin.
            if rx.wait_for(|v| *v != since).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Both lists have loaded once.
    pub fn listed(&self) -> bool {
        self.shared.listed()
    }

    /// The Service, if it exists.
    pub fn service(&self) -> Option<Arc<Service>> {
        // The field selector lets only this one in; the name is checked
        // anyway, so a server that ignored the selector changes nothing.
        self.service
            .state()
            .into_iter()
            .find(|s| s.name_any() == self.target.name)
    }

    /// Every Node, by name.
    pub fn nodes(&self) -> Vec<Arc<Node>> {
        let mut nodes = self.nodes.state();
        nodes.sort_by_key(|n| n.name_any());
        nodes
    }
}

impl Drop for LbSource {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A status write that failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("PATCH {url}: {message}{}", if *.forbidden { format!(" ({})", STATUS_PERMISSION) } else { String::new() })]
pub struct StatusError {
    /// The status subresource's URL.
    pub url: String,
    /// The API's status, or the transport's error.
    pub message: String,
    /// A 401 or 403: retrying will not help until someone grants it.
    pub forbidden: bool,
}

/// What a refused status write needs.
pub const STATUS_PERMISSION: &str =
    "realip lb --service needs patch on services/status in the Service's namespace to publish \
     its address; without it the Service's EXTERNAL-IP stays <pending>, and the load balancer \
     serves all the same (--publish-status=false turns the write off)";

/// Set `target`'s `status.loadBalancer.ingress` to `[{ip}]` (a merge
/// patch of the status subresource, as the service controller writes it).
pub async fn write_status(
    conn: &Connection,
    target: &ServiceRef,
    ip: IpAddr,
) -> Result<(), StatusError> {
    let api = Api::<Service>::namespaced(conn.client.clone(), &target.namespace);
    let patch = Service {
        status: Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(vec![LoadBalancerIngress {
                    ip: Some(ip.to_string()),
                    ..LoadBalancerIngress::default()
                }]),
            }),
            ..ServiceStatus::default()
        }),
        ..Service::default()
    };
    let url = format!(
        "{}/api/v1/namespaces/{}/services/{}/status",
        conn.server.trim_end_matches('/'),
        target.namespace,
        target.name
    );
    match api
        .patch_status(&target.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) => Err(StatusError {
            url,
            forbidden: s.code == 401 || s.code == 403,
            message: format!("{} {}: {}", s.code, s.reason, s.message),
        }),
        Err(other) => Err(StatusError {
            url,
            message: watch::causes(&other),
            forbidden: false,
        }),
    }
}

/// Keep `target`'s status as `want` says until `want`'s sender is
/// dropped: write on [`Publish::Write`], retry a failed write with
/// kube-rs's default backoff (800 ms doubling to 30 s), log a refusal once,
/// and say once why nothing is written when the Service is not ours to
/// publish.
pub async fn publish_status(
    conn: Connection,
    target: ServiceRef,
    mut want: tokio::sync::watch::Receiver<Publish>,
) {
    let mut backoff = DefaultBackoff::default();
    let mut refusal_logged = false;
    let mut said: Option<Publish> = None;
    loop {
        let now = want.borrow_and_update().clone();
        let mut retry = None;
        match &now {
            Publish::Write(ip) => match write_status(&conn, &target, *ip).await {
                Ok(()) => {
                    backoff.reset();
                    tracing::info!(service = %target, ip = %ip, "published status.loadBalancer.ingress");
                }
                Err(e) => {
                    let delay = backoff.next().unwrap_or(std::time::Duration::from_secs(30));
                    if !e.forbidden {
                        tracing::warn!(service = %target, error = %e, retry_in = ?delay, "writing the Service's status failed; retrying");
                    } else if !refusal_logged {
                        refusal_logged = true;
                        tracing::warn!(service = %target, error = %e, retry_in = ?delay, "writing the Service's status was refused; retrying quietly");
                    } else {
                        tracing::debug!(service = %target, error = %e, "status write refused again");
                    }
                    retry = Some(delay);
                }
            },
            Publish::NotLoadBalancer(kind) if said.as_ref() != Some(&now) => {
                tracing::info!(service = %target, r#type = %kind, "not writing status.loadBalancer: the Service is not type LoadBalancer");
            }
            Publish::OtherClass(class) if said.as_ref() != Some(&now) => {
                tracing::info!(service = %target, class = %class, "not writing status.loadBalancer: spec.loadBalancerClass names another implementation");
            }
            _ => {}
        }
        said = Some(now);
        let changed = match retry {
            Some(delay) => tokio::select! {
                () = tokio::time::sleep(delay) => Ok(()),
                r = want.changed() => r,
            },
            None => want.changed().await,
        };
        if changed.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_the_url_and_the_permission() {
        let e = StatusError {
            url: "https://127.0.0.1:6443/api/v1/namespaces/default/services/web/status".into(),
            message: "403 Forbidden: services \"web\" is forbidden: User \"lb\" cannot patch \
                      resource \"services/status\" in API group \"\" in the namespace \"default\""
                .into(),
            forbidden: true,
        };
        let text = e.to_string();
        assert!(
            text.starts_with(
                "PATCH https://127.0.0.1:6443/api/v1/namespaces/default/services/web/status: 403 Forbidden"
            ),
            "{text}"
        );
        assert!(text.contains("needs patch on services/status"), "{text}");
        let other = StatusError {
            forbidden: false,
            message: "connection refused".into(),
            ..e
        };
        assert!(!other.to_string().contains("needs patch"));
    }
}
