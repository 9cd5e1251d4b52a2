//! The seeds' paths on the real kernel: the plan from `realip node plan`
//! loaded into each node's namespace, a pod on node-1 running
//! `realip whoami`, a client outside. What the pod saw is the verdict.
//!
//! Until the netlink layer lands, the test loads the planned ruleset with
//! `nft -f` inside the node namespaces (test-time only; nothing touches
//! the host's own tables). Needs root; with REALIP_REQUIRE_NETNS=1 (CI) a
//! missing capability fails instead of skipping.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Killed;
use realip_lab::topology::{plan, unique_id, Lab, Role, Spec};

const OBJECTS: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: node-1}
spec: {podCIDR: 10.244.1.0/24}
status: {addresses: [{type: InternalIP, address: 10.0.0.11}]}
---
apiVersion: v1
kind: Node
metadata: {name: node-2}
spec: {podCIDR: 10.244.2.0/24}
status: {addresses: [{type: InternalIP, address: 10.0.0.12}]}
---
apiVersion: v1
kind: Service
metadata: {name: web-cluster, namespace: demo}
spec:
  type: NodePort
  clusterIP: 10.96.0.10
  externalTrafficPolicy: Cluster
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-local, namespace: demo}
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.11
  externalTrafficPolicy: Local
  healthCheckNodePort: 32000
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30081}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-cluster-1, namespace: demo, labels: {kubernetes.io/service-name: web-cluster}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints: [{addresses: [10.244.1.10], nodeName: node-1, conditions: {ready: true}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-local-1, namespace: demo, labels: {kubernetes.io/service-name: web-local}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints: [{addresses: [10.244.1.10], nodeName: node-1, conditions: {ready: true}}]
"#;

fn supported() -> bool {
    let nft = Command::new("nft")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    common::netns_supported(if nft {
        Ok(())
    } else {
        Err("the nft binary is missing (apt-get install nftables)".into())
    })
}

fn spawn_in(ns: &str, args: &[&str]) -> Killed {
    Killed(
        Command::new("ip")
            .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_realip")])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// One HTTP/1.0 GET from inside a host's namespace, with a deadline;
/// returns the whole response ("" on timeout or refusal).
fn get(lab: &Lab, from: &Role, addr: &str, path: &str, secs: u32) -> String {
    let (host, port) = addr.split_once(':').unwrap();
    let script = format!(
        "exec 3<>/dev/tcp/{host}/{port} && printf 'GET {path} HTTP/1.0\\r\\nHost: lab\\r\\n\\r\\n' >&3 && cat <&3"
    );
    let out = lab
        .exec(from, &["timeout", &secs.to_string(), "bash", "-c", &script])
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn body(resp: &str) -> &str {
    resp.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

#[test]
fn seeds_paths_cluster_local_and_health() {
    if !supported() {
        return;
    }
    let dir = common::scratch("node-kernel");
    let objects = dir.join("objects.yaml");
    std::fs::write(&objects, OBJECTS).unwrap();
    let lab = Lab::build(
        plan(
            &Spec {
                pods_per_node: vec![1, 1],
            },
            &unique_id(),
        )
        .unwrap(),
    )
    .expect("lab");
    // Each node gets its own plan, loaded into its own namespace.
    for n in [1, 2] {
        let out = Command::new(env!("CARGO_BIN_EXE_realip"))
            .args([
                "node",
                "plan",
                "--objects",
                objects.to_str().unwrap(),
                "--node",
                &format!("node-{n}"),
                "--family",
                "ip",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ns = lab.plan().netns(&Role::Node(n)).unwrap();
        let mut nft = Command::new("ip")
            .args(["netns", "exec", ns, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        nft.stdin.take().unwrap().write_all(&out.stdout).unwrap();
        let res = nft.wait_with_output().unwrap();
        assert!(
            res.status.success(),
            "nft -f in node-{n}: {}",
            String::from_utf8_lossy(&res.stderr)
        );
    }
    let pod = lab.plan().netns(&Role::Pod(1, 0)).unwrap().to_string();
    let _web = spawn_in(&pod, &["whoami", "--listen", "10.244.1.10:8080"]);
    let n1 = lab.plan().netns(&Role::Node(1)).unwrap().to_string();
    let n2 = lab.plan().netns(&Role::Node(2)).unwrap().to_string();
    let objs = objects.to_str().unwrap();
    let _h1 = spawn_in(
        &n1,
        &[
            "node",
            "health-check",
            "--objects",
            objs,
            "--node",
            "node-1",
            "--address",
            "10.0.0.11",
            "--healthz",
            "10.0.0.11:10256",
        ],
    );
    let _h2 = spawn_in(
        &n2,
        &[
            "node",
            "health-check",
            "--objects",
            objs,
            "--node",
            "node-2",
            "--address",
            "10.0.0.12",
            "--healthz",
            "10.0.0.12:10256",
        ],
    );
    // Wait for the pod to answer directly.
    let deadline = Instant::now() + Duration::from_secs(10);
    while body(&get(
        &lab,
        &Role::Client,
        "10.244.1.10:8080",
        "/clientip",
        2,
    ))
    .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "whoami in the pod never answered"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let seen = |via: &str| body(&get(&lab, &Role::Client, via, "/clientip", 5)).to_string();

    // NodePort, Cluster, via node-2: masqueraded, the pod sees node-2.
    assert!(
        seen("10.0.0.12:30080").starts_with("10.0.0.12:"),
        "via node-2"
    );
    // Via node-1: the pod sees node-1's address on the pod network.
    assert!(
        seen("10.0.0.11:30080").starts_with("10.244.1.1:"),
        "via node-1"
    );
    // NodePort, Local, via node-1: the client's own address.
    assert!(
        seen("10.0.0.11:30081").starts_with("203.0.113.7:"),
        "local via node-1"
    );
    // Via node-2: no local endpoint, dropped: the connection times out.
    let t = Instant::now();
    let r = get(&lab, &Role::Client, "10.0.0.12:30081", "/clientip", 3);
    assert!(
        r.is_empty() && t.elapsed() >= Duration::from_secs(2),
        "local via node-2 answered: {r:?}"
    );
    // ClusterIP from a pod on node-2: the server sees the pod's IP.
    let r = get(&lab, &Role::Pod(2, 0), "10.96.0.10:80", "/clientip", 5);
    assert!(
        body(&r).starts_with("10.244.2.10:"),
        "clusterIP from a pod: {r:?}"
    );
    // healthCheckNodePort: node-1 has the endpoint, node-2 does not.
    let h1 = get(&lab, &Role::Client, "10.0.0.11:32000", "/healthz", 5);
    assert!(
        h1.starts_with("HTTP/1.0 200") || h1.starts_with("HTTP/1.1 200"),
        "{h1}"
    );
    assert!(h1.contains("\"localEndpoints\": 1"), "{h1}");
    let h2 = get(&lab, &Role::Client, "10.0.0.12:32000", "/healthz", 5);
    assert!(
        h2.contains(" 503 ") && h2.contains("\"localEndpoints\": 0"),
        "{h2}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
