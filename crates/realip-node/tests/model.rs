//! The model reduction through the typed adders, which the live API
//! source uses, against the text path the files use: one reduction for
//! both, the same skips with the same reasons.
#![allow(missing_docs)]

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use realip_node::model::{load_str, Loader, Proto};

const SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec:
  type: NodePort
  clusterIP: 10.96.0.10
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30080}]
"#;

const SCTP_SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: sig, namespace: demo}
spec:
  clusterIP: 10.96.0.11
  ports: [{name: s, port: 3868, protocol: SCTP}]
"#;

const HEADLESS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: db, namespace: demo}
spec: {clusterIP: None, ports: [{port: 5432}]}
"#;

const SLICE: &str = r#"
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-abc, namespace: demo, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- {addresses: [10.244.1.10], nodeName: node-1, conditions: {ready: true}}
- {addresses: [10.244.1.11], nodeName: node-1, conditions: {ready: false, serving: true, terminating: true}}
"#;

const FQDN_SLICE: &str = r#"
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ext-1, namespace: demo, labels: {kubernetes.io/service-name: ext}}
addressType: FQDN
endpoints: [{addresses: [example.invalid]}]
"#;

const NODE: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: node-1}
spec: {podCIDR: 10.244.1.0/24}
status: {addresses: [{type: InternalIP, address: 10.0.0.11}, {type: Hostname, address: node-1}]}
"#;

fn typed<T: serde::de::DeserializeOwned>(yaml: &str) -> T {
    serde_yaml_ng::from_str(yaml).unwrap()
}

fn through_adders() -> (realip_node::model::Model, Vec<realip_node::model::Skipped>) {
    let mut l = Loader::default();
    for s in [SERVICE, SCTP_SERVICE, HEADLESS] {
        l.add_service(&typed::<core::Service>(s));
    }
    for s in [SLICE, FQDN_SLICE] {
        l.add_endpoint_slice(&typed::<discovery::EndpointSlice>(s));
    }
    l.add_node(&typed::<core::Node>(NODE));
    l.finish()
}

#[test]
fn typed_adders_reduce_as_the_text_path_does() {
    let (api, api_skipped) = through_adders();
    let text = [SERVICE, SCTP_SERVICE, HEADLESS, SLICE, FQDN_SLICE, NODE].join("---\n");
    let (files, files_skipped) = load_str(&text);
    assert_eq!(api, files);
    // The same objects skipped for the same reasons; only where they came
    // from differs (a file's document number, none for the API).
    let reasons =
        |s: &[realip_node::model::Skipped]| s.iter().map(|s| s.reason.clone()).collect::<Vec<_>>();
    assert_eq!(reasons(&api_skipped), reasons(&files_skipped));
    assert_eq!(
        api_skipped
            .iter()
            .map(|s| s.object.as_str())
            .collect::<Vec<_>>(),
        ["Service demo/sig", "EndpointSlice demo/ext-1"]
    );
    assert!(files_skipped[0]
        .object
        .starts_with("Service demo/sig (input document 2"));
}

#[test]
fn an_unprogrammable_object_is_skipped_and_the_rest_are_kept() {
    let (m, skipped) = through_adders();
    // SCTP is refused with its reason, naming the object...
    assert_eq!(skipped[0].object, "Service demo/sig");
    assert_eq!(
        skipped[0].reason,
        "protocol SCTP is not supported (TCP, UDP)"
    );
    assert_eq!(skipped[1].reason, "addressType FQDN is not IPv4 or IPv6");
    // ...the headless one is valid but has no data plane...
    assert_eq!(m.services.len(), 1);
    let web = m.services.values().next().unwrap();
    assert_eq!(web.key.to_string(), "demo/web");
    assert_eq!(web.ports[0].proto, Proto::Tcp);
    assert_eq!(web.ports[0].node_port, Some(30080));
    // ...and the others are all there, conditions read with the API's
    // defaults.
    let eps = &m.endpoints[&web.key];
    assert_eq!(eps.len(), 2);
    assert!(eps[0].ready && eps[0].serving && !eps[0].terminating);
    assert!(!eps[1].ready && eps[1].serving && eps[1].terminating);
    let node = &m.nodes["node-1"];
    assert_eq!(node.ips, ["10.0.0.11".parse::<std::net::IpAddr>().unwrap()]);
    assert!(!node.being_deleted);
}

#[test]
fn a_node_being_deleted_is_marked() {
    let mut l = Loader::default();
    let mut n: core::Node = typed(NODE);
    n.spec.get_or_insert_with(Default::default).taints = Some(vec![core::Taint {
        key: "ToBeDeletedByClusterAutoscaler".into(),
        effect: "NoSchedule".into(),
        ..Default::default()
    }]);
    l.add_node(&n);
    let (m, _) = l.finish();
    assert!(m.nodes["node-1"].being_deleted);
}

#[test]
fn a_slice_without_its_service_label_is_skipped() {
    let mut s: discovery::EndpointSlice = typed(SLICE);
    s.metadata.labels = None;
    let mut l = Loader::default();
    l.add_endpoint_slice(&s);
    let (m, skipped) = l.finish();
    assert!(m.endpoints.is_empty());
    assert_eq!(skipped[0].object, "EndpointSlice demo/web-abc");
    assert_eq!(skipped[0].reason, "no kubernetes.io/service-name label");
}
