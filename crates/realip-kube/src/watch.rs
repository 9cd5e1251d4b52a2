//! The node agent's three watches, as kube-proxy's informers select them
//! (cmd/kube-proxy `Run`): Services and EndpointSlices without the
//! `service.kubernetes.io/service-proxy-name` and
//! `service.kubernetes.io/headless` labels (Services also without
//! `clusterIP: None`), and only this node's own Node. With a proxy name,
//! only the Services labelled with it, and their slices: the
//! EndpointSlice controller copies a Service's labels onto its slices
//! (pkg/controller/endpointslice `setEndpointSliceLabels`), so one label
//! selects both. `realip lb --service` runs two more through the same
//! loop ([`crate::lb_source`]): its one Service and every Node.
//!
//! Each watch feeds a reflector store. An error marks the watch down,
//! is logged with the API server's URL, the resource and the API's own
//! message (a 403 names the user and the missing verb), and the watch is
//! started again after kube-rs's default backoff, with a fresh list. A
//! watch connection that merely ends (the server's timeout) resumes from
//! its resourceVersion inside kube-rs, and a `410 Gone` there is an
//! error, so it relists too.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher::{self, DefaultBackoff, Event};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;

/// The label by which a Service asks for another proxy.
pub const PROXY_NAME_LABEL: &str = "service.kubernetes.io/service-proxy-name";
/// The label the EndpointSlice controller puts on a headless Service's
/// slices.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// Headless Services have no data plane; the API server leaves them out.
pub const SERVICE_FIELDS: &str = "spec.clusterIP!=None";

/// A name that cannot go into a selector as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?} is not valid: {rule}")]
pub struct InvalidName {
    /// Which name.
    pub what: &'static str,
    /// What was given.
    pub value: String,
    /// What it must look like.
    pub rule: &'static str,
}

/// Which Services this proxy serves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    proxy_name: Option<String>,
}

impl Selection {
    /// The Services no other proxy claims: kube-proxy's default.
    pub fn unclaimed() -> Self {
        Selection::default()
    }

    /// Only the Services labelled `service.kubernetes.io/service-proxy-name=NAME`,
    /// to run beside kube-proxy (which then leaves them alone).
    pub fn named(name: &str) -> Result<Self, InvalidName> {
        // A label value: it goes into a selector verbatim, so a comma or
        // an operator in it would change what is selected.
        let ok = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && name.as_bytes()[0].is_ascii_alphanumeric()
            && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
        if !ok {
            return Err(InvalidName {
                what: "service proxy name",
                value: name.to_string(),
                rule: "a label value: 1 to 63 letters, digits, '-', '_' or '.', \
                       beginning and ending with a letter or digit",
            });
        }
        Ok(Selection {
            proxy_name: Some(name.to_string()),
        })
    }

    /// The label selector of both the Service and the EndpointSlice watch.
    pub fn labels(&self) -> String {
        match &self.proxy_name {
            None => format!("!{PROXY_NAME_LABEL},!{HEADLESS_LABEL}"),
            Some(name) => format!("{PROXY_NAME_LABEL}={name},!{HEADLESS_LABEL}"),
        }
    }
}

/// The field selector of the Node watch: this node only.
pub fn node_fields(node: &str) -> Result<String, InvalidName> {
    // A DNS subdomain, as Node names are; anything else could not be a
    // Node's and could reshape the selector.
    let ok = !node.is_empty()
        && node.len() <= 253
        && node
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.'))
        && node.as_bytes()[0].is_ascii_alphanumeric()
        && node.as_bytes()[node.len() - 1].is_ascii_alphanumeric();
    if !ok {
        return Err(InvalidName {
            what: "node name",
            value: node.to_string(),
            rule: "a DNS subdomain: lowercase letters, digits, '-' and '.', \
                   beginning and ending with a letter or digit, at most 253",
        });
    }
    Ok(format!("metadata.name={node}"))
}

/// One watch: the node agent's three, or the two of `realip lb
/// --service`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The proxied Services.
    Services,
    /// Their EndpointSlices.
    EndpointSlices,
    /// This node's Node.
    Node,
    /// The one Service a load balancer serves.
    BalancedService,
    /// Every Node, the load balancer's backends.
    BalancedNodes,
}

/// The node agent's watches.
pub const NODE_WATCHES: [Kind; 3] = [Kind::Services, Kind::EndpointSlices, Kind::Node];
/// The load balancer's watches.
pub const LB_WATCHES: [Kind; 2] = [Kind::BalancedService, Kind::BalancedNodes];

impl Kind {
    const COUNT: usize = 5;

    /// The API resource, as RBAC names it.
    pub fn resource(self) -> &'static str {
        match self {
            Kind::Services | Kind::BalancedService => "services",
            Kind::EndpointSlices => "endpointslices",
            Kind::Node | Kind::BalancedNodes => "nodes",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// What stays while this watch is down.
    fn meanwhile(self) -> &'static str {
        match self {
            Kind::Services | Kind::EndpointSlices | Kind::Node => "the rules stay as they are",
            Kind::BalancedService | Kind::BalancedNodes => "the pool stays as it is",
        }
    }
}

/// What the watches tell the source: a version bumped at every change
/// to a store, and for each watch whether it has listed once and whether
/// it is up now.
#[derive(Debug)]
pub struct Shared {
    version: tokio::sync::watch::Sender<u64>,
    /// The watches of this source; [`listed`](Shared::listed) and
    /// [`up`](Shared::up) ask about these.
    kinds: Vec<Kind>,
    listed: [AtomicBool; Kind::COUNT],
    up: [AtomicBool; Kind::COUNT],
}

impl Default for Shared {
    /// The node agent's.
    fn default() -> Self {
        Shared::new(&NODE_WATCHES)
    }
}

impl Shared {
    /// For a source that runs the watches `kinds`.
    pub fn new(kinds: &[Kind]) -> Self {
        Shared {
            version: tokio::sync::watch::Sender::new(0),
            kinds: kinds.to_vec(),
            listed: Default::default(),
            up: Default::default(),
        }
    }

    /// The version now.
    pub fn version(&self) -> u64 {
        *self.version.borrow()
    }

    /// A receiver of the version, for waiting on a change.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Every watch has listed once.
    pub fn listed(&self) -> bool {
        self.kinds
            .iter()
            .all(|k| self.listed[k.index()].load(Ordering::Acquire))
    }

    /// Every watch is up.
    pub fn up(&self) -> bool {
        self.kinds
            .iter()
            .all(|k| self.up[k.index()].load(Ordering::Acquire))
    }

    fn bump(&self) {
        self.version.send_modify(|v| *v = v.wrapping_add(1));
    }
}

/// The text of a watch error: the API's status whole (a 403's message
/// names the user, the verb and the resource), else the error and its
/// causes.
pub fn describe(e: &watcher::Error) -> String {
    let client = match e {
        watcher::Error::InitialListFailed(c)
        | watcher::Error::WatchStartFailed(c)
        | watcher::Error::WatchFailed(c) => c,
        watcher::Error::WatchError(status) => return status_text(status),
        watcher::Error::NoResourceVersion => return e.to_string(),
    };
    match client {
        kube::Error::Api(status) => status_text(status),
        other => causes(other),
    }
}

fn status_text(s: &kube::core::Status) -> String {
    match (s.reason.is_empty(), s.message.is_empty()) {
        (false, false) => format!("{} {}: {}", s.code, s.reason, s.message),
        (true, false) => format!("{}: {}", s.code, s.message),
        (false, true) => format!("{} {}", s.code, s.reason),
        (true, true) => format!("status {}", s.code),
    }
}

/// An error and its sources, each once (kube's errors often repeat their
/// source in their own text).
pub fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = s.source();
    }
    out
}

/// What a 401 or 403 needs, for the log line next to the API's message.
fn permission_hint(e: &watcher::Error, kind: Kind) -> Option<String> {
    let code = match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => s.code,
        watcher::Error::WatchError(s) => s.code,
        _ => return None,
    };
    let group = if kind == Kind::EndpointSlices {
        " in API group discovery.k8s.io"
    } else {
        ""
    };
    match (code, kind) {
        (401, _) => Some("the credentials were not accepted; check the kubeconfig's user or the token".into()),
        (403, Kind::Services | Kind::EndpointSlices | Kind::Node) => Some(format!(
            "realip node needs list and watch on {}{group} (the ClusterRole system:node-proxier grants them)",
            kind.resource()
        )),
        (403, Kind::BalancedService) => Some(
            "realip lb --service needs list and watch on services in the Service's namespace \
             (and patch on services/status to publish its address)"
                .into(),
        ),
        (403, Kind::BalancedNodes) => Some(
            "realip lb --service needs list and watch on nodes (cluster-wide: a ClusterRole)"
                .into(),
        ),
        _ => None,
    }
}

/// Run one watch into `writer` until the task is aborted. Never returns
/// and never panics on what the API server sends.
pub async fn run<K>(
    api: Api<K>,
    config: watcher::Config,
    mut writer: Writer<K>,
    kind: Kind,
    shared: Arc<Shared>,
    server: Arc<str>,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    // kube-rs's default_backoff() schedule (800 ms doubling to 30 s,
    // jittered, reset after 2 min without errors), kept across restarts.
    // Not the stream adapter itself: it retries inside the stream, and a
    // watch that resumes from its resourceVersion then says nothing until
    // the next change, so "up again" could not be seen. Starting the
    // watcher again lists first, and the list's end says it.
    let mut backoff = DefaultBackoff::default();
    let i = kind.index();
    loop {
        let mut stream = std::pin::pin!(watcher::watcher(api.clone(), config.clone()));
        let error = loop {
            match stream.next().await {
                Some(Ok(event)) => {
                    // The store keeps what the model reads; the server's
                    // field bookkeeping is most of an object's size.
                    let event = event.modify(|o| o.managed_fields_mut().clear());
                    writer.apply_watcher_event(&event);
                    // `Init` is sent before the list is asked for: it
                    // proves nothing about the connection.
                    if !matches!(event, Event::Init) && !shared.up[i].swap(true, Ordering::AcqRel) {
                        tracing::info!(server = %server, resource = %kind.resource(), "watch up");
                    }
                    match event {
                        Event::InitDone => {
                            shared.listed[i].store(true, Ordering::Release);
                            shared.bump();
                            tracing::info!(
                                server = %server,
                                resource = %kind.resource(),
                                objects = writer.as_reader().len(),
                                "listed"
                            );
                        }
                        Event::Apply(_) | Event::Delete(_) => shared.bump(),
                        // Buffered by the writer until InitDone swaps it in.
                        Event::Init | Event::InitApply(_) => {}
                    }
                }
                Some(Err(e)) => break e,
                // kube-rs's watcher does not end; if it ever did, start
                // it again like after an error.
                None => break watcher::Error::NoResourceVersion,
            }
        };
        shared.up[i].store(false, Ordering::Release);
        let delay = backoff.next().unwrap_or(Duration::from_secs(30));
        let error_text = describe(&error);
        let meanwhile = kind.meanwhile();
        match permission_hint(&error, kind) {
            Some(hint) => tracing::warn!(
                server = %server,
                resource = %kind.resource(),
                error = %error_text,
                hint = %hint,
                retry_in = ?delay,
                "watch failed; {meanwhile}, retrying"
            ),
            None => tracing::warn!(
                server = %server,
                resource = %kind.resource(),
                error = %error_text,
                retry_in = ?delay,
                "watch failed; {meanwhile}, retrying"
            ),
        }
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_kube_proxys() {
        assert_eq!(
            Selection::unclaimed().labels(),
            "!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless"
        );
        assert_eq!(
            Selection::named("realip").unwrap().labels(),
            "service.kubernetes.io/service-proxy-name=realip,!service.kubernetes.io/headless"
        );
        assert_eq!(SERVICE_FIELDS, "spec.clusterIP!=None");
        assert_eq!(
            node_fields("node-1.example").unwrap(),
            "metadata.name=node-1.example"
        );
    }

    #[test]
    fn names_that_would_reshape_a_selector_are_refused() {
        for bad in ["", "a,b", "x=y", "-a", "a-", "a b", &"a".repeat(64)] {
            let e = Selection::named(bad).unwrap_err();
            assert_eq!(e.what, "service proxy name", "{bad:?}");
        }
        for ok in ["realip", "a", "r.e_a-l1"] {
            assert!(Selection::named(ok).is_ok(), "{ok:?}");
        }
        for bad in ["", "Node1", "a,metadata.name=b", "a b", "-a", "a."] {
            assert!(node_fields(bad).is_err(), "{bad:?}");
        }
    }

    fn forbidden() -> watcher::Error {
        let status = kube::core::Status {
            code: 403,
            reason: "Forbidden".into(),
            message: "services is forbidden: User \"system:serviceaccount:kube-system:realip\" \
                      cannot list resource \"services\" in API group \"\" at the cluster scope"
                .into(),
            ..Default::default()
        };
        watcher::Error::InitialListFailed(kube::Error::Api(Box::new(status)))
    }

    #[test]
    fn a_403_keeps_the_apis_message_whole_and_says_what_is_needed() {
        let e = forbidden();
        assert_eq!(
            describe(&e),
            "403 Forbidden: services is forbidden: User \"system:serviceaccount:kube-system:realip\" \
             cannot list resource \"services\" in API group \"\" at the cluster scope"
        );
        assert_eq!(
            permission_hint(&e, Kind::EndpointSlices).unwrap(),
            "realip node needs list and watch on endpointslices in API group discovery.k8s.io \
             (the ClusterRole system:node-proxier grants them)"
        );
        let gone = watcher::Error::WatchError(Box::new(kube::core::Status {
            code: 410,
            reason: "Expired".into(),
            message: "too old resource version: 1 (2)".into(),
            ..Default::default()
        }));
        assert_eq!(
            describe(&gone),
            "410 Expired: too old resource version: 1 (2)"
        );
        assert_eq!(permission_hint(&gone, Kind::Services), None);
    }

    #[test]
    fn causes_are_listed_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer: {0}")]
        struct Outer(#[source] std::io::Error);
        #[derive(Debug, thiserror::Error)]
        #[error("top")]
        struct Top(#[source] Outer);
        let e = Top(Outer(std::io::Error::other("connection refused")));
        assert_eq!(causes(&e), "top: outer: connection refused");
    }

    #[test]
    fn versions_bump_and_flags_need_all_three() {
        let s = Shared::default();
        assert_eq!(s.version(), 0);
        s.bump();
        assert_eq!(s.version(), 1);
        assert!(!s.listed() && !s.up());
        for i in 0..2 {
            s.listed[i].store(true, Ordering::Release);
            s.up[i].store(true, Ordering::Release);
        }
        assert!(!s.listed() && !s.up());
        s.listed[2].store(true, Ordering::Release);
        s.up[2].store(true, Ordering::Release);
        assert!(s.listed() && s.up());
    }

    #[test]
    fn a_load_balancers_source_waits_for_its_own_two() {
        let s = Shared::new(&LB_WATCHES);
        // The node agent's watches say nothing about it.
        for k in NODE_WATCHES {
            s.listed[k.index()].store(true, Ordering::Release);
        }
        assert!(!s.listed());
        s.listed[Kind::BalancedService.index()].store(true, Ordering::Release);
        assert!(!s.listed());
        s.listed[Kind::BalancedNodes.index()].store(true, Ordering::Release);
        assert!(s.listed());
        assert_eq!(Kind::BalancedNodes.resource(), "nodes");
    }

    #[test]
    fn a_load_balancers_403_names_what_it_needs() {
        let e = forbidden();
        assert_eq!(
            permission_hint(&e, Kind::BalancedNodes).unwrap(),
            "realip lb --service needs list and watch on nodes (cluster-wide: a ClusterRole)"
        );
        assert!(permission_hint(&e, Kind::BalancedService)
            .unwrap()
            .contains("services in the Service's namespace"));
    }
}
