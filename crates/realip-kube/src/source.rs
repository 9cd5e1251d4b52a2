//! The watches' stores as the agent's object source.

use std::future::Future;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use realip_node::agent::{ObjectSource, SourceError};
use realip_node::model::{Loader, Model, Skipped};
use tokio::task::JoinHandle;

use crate::config::Connection;
use crate::watch::{self, node_fields, InvalidName, Kind, Selection, Shared, SERVICE_FIELDS};

/// Services, EndpointSlices and this node's Node, kept current by three
/// watches. Dropping it stops them.
#[derive(Debug)]
pub struct ApiSource {
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    nodes: Store<Node>,
    shared: Arc<Shared>,
    server: String,
    tasks: Vec<JoinHandle<()>>,
}

impl ApiSource {
    /// Start the watches for `node` on the current tokio runtime. Returns
    /// at once; [`ready`](ObjectSource::ready) says when every list has
    /// loaded.
    pub fn start(
        conn: &Connection,
        node: &str,
        selection: &Selection,
    ) -> Result<ApiSource, InvalidName> {
        let node_fields = node_fields(node)?;
        let shared = Arc::new(Shared::default());
        let server: Arc<str> = conn.server.as_str().into();
        let (services, services_writer) = reflector::store();
        let (slices, slices_writer) = reflector::store();
        let (nodes, nodes_writer) = reflector::store();
        let labels = selection.labels();
        let tasks = vec![
            tokio::spawn(watch::run(
                Api::<Service>::all(conn.client.clone()),
                watcher::Config::default()
                    .labels(&labels)
                    .fields(SERVICE_FIELDS),
                services_writer,
                Kind::Services,
                shared.clone(),
                server.clone(),
            )),
            tokio::spawn(watch::run(
                Api::<EndpointSlice>::all(conn.client.clone()),
                watcher::Config::default().labels(&labels),
                slices_writer,
                Kind::EndpointSlices,
                shared.clone(),
                server.clone(),
            )),
            tokio::spawn(watch::run(
                Api::<Node>::all(conn.client.clone()),
                watcher::Config::default().fields(&node_fields),
                nodes_writer,
                Kind::Node,
                shared.clone(),
                server,
            )),
        ];
        Ok(ApiSource {
            services,
            slices,
            nodes,
            shared,
            server: conn.server.clone(),
            tasks,
        })
    }

    /// The API server's URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Resolves once every list has loaded.
    pub async fn wait_ready(&self) {
        let mut rx = self.shared.subscribe();
        while !self.shared.listed() {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

impl Drop for ApiSource {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Objects in a fixed order: the stores are hash maps, and a Service's
/// endpoints are merged in slice order, which the plan's endpoint order
/// (and so the kernel's) follows. An unstable order would change the
/// rules at every sync.
fn sorted<K: ResourceExt>(mut objects: Vec<Arc<K>>) -> Vec<Arc<K>> {
    objects.sort_by_key(|o| (o.namespace(), o.name_any()));
    objects
}

impl ObjectSource for ApiSource {
    type Version = u64;

    fn version(&self) -> u64 {
        self.shared.version()
    }

    fn load(&self) -> Result<(Model, Vec<Skipped>), SourceError> {
        let mut loader = Loader::default();
        for s in sorted(self.services.state()) {
            loader.add_service(&s);
        }
        for s in sorted(self.slices.state()) {
            loader.add_endpoint_slice(&s);
        }
        for n in sorted(self.nodes.state()) {
            loader.add_node(&n);
        }
        Ok(loader.finish())
    }

    fn ready(&self) -> bool {
        self.shared.listed()
    }

    fn connected(&self) -> bool {
        self.shared.up()
    }

    fn changed(&self, since: &u64) -> impl Future<Output = ()> {
        let mut rx = self.shared.subscribe();
        let since = *since;
        async move {
            // The sender lives as long as the source; if it were gone no
            // change could come, so wait forever rather than spin.
            if rx.wait_for(|v| *v != since).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}
