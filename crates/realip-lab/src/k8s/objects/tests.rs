use super::*;

fn builtin(name: &str) -> Scenario {
    Scenario::builtins()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap()
}

fn kinds(o: &ApiObjects) -> Vec<String> {
    o.apply.iter().map(describe).collect()
}

#[test]
fn every_builtin_translates() {
    for s in Scenario::builtins() {
        let o = translate(&s).unwrap_or_else(|e| panic!("{}: {e}", s.name));
        // Every pod of the topology has a Pod object, or is a free slot
        // for a Deployment's.
        let hosts: BTreeSet<(usize, usize)> = o.pods.iter().map(|p| p.host).collect();
        assert!(hosts.is_disjoint(&o.free), "{}", s.name);
        assert_eq!(
            hosts.len() + o.free.len(),
            s.pods.iter().sum::<usize>(),
            "{}",
            s.name
        );
        assert_eq!(s.has_deployments(), !o.free.is_empty(), "{}", s.name);
        // No hand-written slice is applied, and no Service is left without
        // a selector.
        for v in &o.apply {
            assert_ne!(v["kind"], "EndpointSlice", "{}", s.name);
            if v["kind"] == "Service" {
                assert!(v["spec"]["selector"].is_object(), "{}", s.name);
            }
        }
    }
}

#[test]
fn clusterip_labels_each_pod_for_its_service() {
    let o = translate(&builtin("clusterip")).unwrap();
    assert_eq!(
        kinds(&o),
        [
            "Namespace demo",
            "ServiceAccount default/default",
            "ServiceAccount demo/default",
            "Node node-1",
            "Node node-2",
            "Service demo/same",
            "Service demo/other",
            "Pod default/pod-1-0",
            "Pod demo/pod-1-1",
            "Pod demo/pod-2-0",
        ]
    );
    let pod = |name: &str| o.apply.iter().find(|v| describe(v) == name).unwrap();
    assert_eq!(
        pod("Pod demo/pod-1-1")["metadata"]["labels"],
        json!({"lab.realip/pod": "pod-1-1", "svc.lab.realip/same": "endpoint"})
    );
    assert_eq!(
        pod("Service demo/other")["spec"]["selector"],
        json!({"svc.lab.realip/other": "endpoint"})
    );
    // As written otherwise: the fixed ClusterIP stays.
    assert_eq!(pod("Service demo/same")["spec"]["clusterIP"], "10.96.0.10");
    assert_eq!(pod("Pod demo/pod-2-0")["spec"]["nodeName"], "node-2");
    assert_eq!(
        o.expected[1],
        ExpectedSlices {
            namespace: "demo".into(),
            service: "other".into(),
            endpoints: [Endpoint {
                address: std::net::Ipv4Addr::new(10, 244, 2, 10).into(),
                node: "node-2".into(),
                ready: true
            }]
            .into(),
            ports: [SlicePort {
                name: "http".into(),
                port: 8080,
                protocol: "TCP".into()
            }]
            .into(),
        }
    );
}

#[test]
fn a_pod_lives_in_its_services_namespace() {
    let o = translate(&builtin("ingress")).unwrap();
    let homes: Vec<(String, (usize, usize))> = o
        .pods
        .iter()
        .map(|p| (p.namespace.clone(), p.host))
        .collect();
    assert_eq!(homes, [("ingress".into(), (1, 0)), ("demo".into(), (2, 0))]);
    // The ingress pod runs realip lb: the Pod says so, without whoami's ports.
    let ingress = o
        .apply
        .iter()
        .find(|v| describe(v) == "Pod ingress/pod-1-0")
        .unwrap();
    let c = &ingress["spec"]["containers"][0];
    assert_eq!(c["name"], "lb");
    assert_eq!(c["args"][4], "10.244.1.10:8080");
    assert!(c["ports"].is_null());
}

#[test]
fn without_services_the_pods_are_in_default() {
    let o = translate(&builtin("lb-to-pods")).unwrap();
    assert!(o.expected.is_empty());
    assert!(o.pods.iter().all(|p| p.namespace == "default" && p.ready));
}

fn scenario(objects: &str) -> Scenario {
    let text = format!(
        "name: x\ntitle: t\npods: [1, 1]\nobjects: |\n{}\nprobes: []\n",
        objects
            .lines()
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    Scenario::parse("x.yaml", &text).unwrap()
}

const SVC: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: demo}\nspec: {ports: [{port: 80}]}\n---\n";

#[test]
fn what_cannot_be_translated_says_why() {
    let slice = |body: &str| {
        format!("{SVC}apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: s, namespace: demo, labels: {{kubernetes.io/service-name: web}}}}\naddressType: IPv4\n{body}")
    };
    for (objects, want) in [
        (slice("endpoints: [{addresses: [10.0.0.11]}]"), "10.0.0.11 is none of the topology's pods"),
        (slice("endpoints: [{addresses: [10.244.1.10], nodeName: node-2}]"), "says nodeName node-2, but that pod is on node-1"),
        (slice("endpoints: [{addresses: [10.244.1.10], conditions: {terminating: true}}]"), "terminating"),
        (
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s, namespace: demo, labels: {kubernetes.io/service-name: gone}}\n".into(),
            "EndpointSlice for demo/gone: the scenario has no such Service",
        ),
        ("apiVersion: v1\nkind: Node\nmetadata: {name: node-1}\n".into(), "Node node-1: with --api the lab makes the Node objects"),
    ] {
        let e = translate(&scenario(&objects)).unwrap_err().to_string();
        assert!(e.contains(want), "{e}");
    }
}

#[test]
fn a_service_keeps_its_own_selector_and_unready_endpoints_stay_unready() {
    let objects = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: demo}\nspec: {selector: {app: web}, ports: [{port: 80}]}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s, namespace: demo, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nendpoints: [{addresses: [10.244.2.10], conditions: {ready: false}}]\n";
    let o = translate(&scenario(objects)).unwrap();
    let p = o.pods.iter().find(|p| p.host == (2, 0)).unwrap();
    assert!(!p.ready);
    let pod = o
        .apply
        .iter()
        .find(|v| describe(v) == "Pod demo/pod-2-0")
        .unwrap();
    assert_eq!(pod["metadata"]["labels"]["app"], "web");
    let status = pod_status(&scenario(objects), 2, 0, false);
    assert_eq!(status["status"]["podIP"], "10.244.2.10");
    assert_eq!(status["status"]["hostIP"], "10.0.0.12");
    assert_eq!(
        status["status"]["conditions"][3],
        json!({"type": "Ready", "status": "False"})
    );
}

#[test]
fn a_node_is_registered_as_its_kubelet_would() {
    let n = node(2);
    assert_eq!(n["spec"]["podCIDR"], "10.244.2.0/24");
    assert_eq!(n["status"]["addresses"][0]["address"], "10.0.0.12");
    assert_eq!(n["status"]["conditions"][0]["status"], "True");
    // Both families in the status written after the apply.
    let addresses = &node_status(2)["addresses"];
    assert_eq!(addresses[0]["address"], "10.0.0.12");
    assert_eq!(addresses[1]["address"], "fd00:10::12");
    assert_eq!(n["spec"]["podCIDRs"][1], "fd00:244:2::/64");
}

#[test]
fn a_deployment_leaves_its_slots_free_and_gets_a_service_account() {
    let o = translate(&builtin("scaling")).unwrap();
    assert!(o.pods.is_empty());
    assert_eq!(o.free, [(1, 0), (1, 1), (2, 0)].into());
    let k = kinds(&o);
    assert!(
        k.contains(&"ServiceAccount demo/default".to_string()),
        "{k:?}"
    );
    assert!(k.contains(&"Deployment demo/web".to_string()), "{k:?}");
    // The controllers decide what its Services' slices hold.
    assert!(o.expected.is_empty(), "{:?}", o.expected);
    // An LB that reads its Service gets a user RBAC lets do that.
    let o = translate(&builtin("kubectl-loadbalancer")).unwrap();
    let k = kinds(&o);
    assert!(
        k.contains(&"ClusterRoleBinding realip-lb".to_string()),
        "{k:?}"
    );
}
