//! The seeds' paths on the real kernel: the `realip node` agent running in
//! each node's namespace (programming nf_tables over netlink, serving the
//! health checks), `realip whoami` in the pods, a client outside. What the
//! pod saw is the verdict. Then the dynamics: an endpoint removed from the
//! objects gets no new connections after the resync, resyncs under load
//! fail no connection, and an agent restart keeps established ones.
//!
//! Everything lives in the lab's namespaces; nothing touches the host's
//! own tables. Needs root; with REALIP_REQUIRE_NETNS=1 (CI) a missing
//! capability fails instead of skipping.
// A test crate: its items are shared between its modules, not an API.
#![allow(missing_docs)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{get, spawn_in, Killed};
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

/// The lab of these tests: two nodes, one pod on each.
fn two_nodes_one_pod_each() -> Lab {
    Lab::build(
        plan(
            &Spec {
                pods_per_node: vec![1, 1],
                control: false,
            },
            &unique_id(),
        )
        .unwrap(),
    )
    .expect("lab")
}

fn supported() -> bool {
    common::netns_supported(Ok(()))
}

/// The agent in node `n`'s namespace, its log in `log`.
fn agent(lab: &Lab, n: usize, objects: &std::path::Path, log: &std::path::Path) -> Killed {
    let ns = lab.plan().netns(&Role::Node(n)).unwrap();
    let ip = format!("10.0.0.1{n}");
    Killed(
        Command::new("ip")
            .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_realip")])
            .args(["node", "--objects"])
            .arg(objects)
            .args(["--node", &format!("node-{n}"), "--health-address", &ip])
            .args(["--healthz", &format!("{ip}:10256"), "--poll", "50ms"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    )
}

/// How many syncs an agent has logged.
fn syncs(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches(" synced")
        .count()
}

/// Wait until the agent has logged more than `after` syncs.
fn wait_sync(log: &std::path::Path, after: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while syncs(log) <= after {
        assert!(
            Instant::now() < deadline,
            "no sync logged:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Replace a file's content atomically, with a new modification time.
fn rewrite(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
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
    let lab = two_nodes_one_pod_each();
    // The agent in each node's namespace programs the kernel and serves
    // the health checks.
    let logs = [dir.join("node-1.log"), dir.join("node-2.log")];
    let _a1 = agent(&lab, 1, &objects, &logs[0]);
    let _a2 = agent(&lab, 2, &objects, &logs[1]);
    for log in &logs {
        wait_sync(log, 0);
    }
    let pod = lab.plan().netns(&Role::Pod(1, 0)).unwrap().to_string();
    let _web = spawn_in(&pod, &["whoami", "--listen", "10.244.1.10:8080"]);
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
    // Hairpin: the pod reaching itself through its Service is
    // masqueraded (else its reply would skip the un-DNAT); it sees its
    // node's address on the pod network.
    let r = get(&lab, &Role::Pod(1, 0), "10.96.0.10:80", "/clientip", 5);
    assert!(body(&r).starts_with("10.244.1.1:"), "hairpin: {r:?}");
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

/// web-cluster with the given endpoints (all on port 8080), plus, when
/// `extra`, another Service with an endpoint on node-2.
fn dynamic_objects(endpoints: &[(&str, &str)], extra: bool) -> String {
    let mut text = OBJECTS
        .split("---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-cluster-1")
        .next()
        .unwrap()
        .to_string();
    text.push_str(
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-cluster-1, namespace: demo, labels: {kubernetes.io/service-name: web-cluster}}\naddressType: IPv4\nports: [{name: http, port: 8080, protocol: TCP}]\nendpoints:\n",
    );
    for (ip, node) in endpoints {
        text.push_str(&format!(
            "- {{addresses: [{ip}], nodeName: {node}, conditions: {{ready: true}}}}\n"
        ));
    }
    if extra {
        text.push_str(
            "---\napiVersion: v1\nkind: Service\nmetadata: {name: web-extra, namespace: demo}\nspec:\n  type: NodePort\n  clusterIP: 10.96.0.20\n  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30090}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-extra-1, namespace: demo, labels: {kubernetes.io/service-name: web-extra}}\naddressType: IPv4\nports: [{name: http, port: 8080, protocol: TCP}]\nendpoints: [{addresses: [10.244.2.10], nodeName: node-2, conditions: {ready: true}}]\n",
        );
    }
    text
}

/// Which pod answered `n` GETs of `/` through `via` (by whoami's Name:).
fn who_answers(lab: &Lab, via: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let r = get(lab, &Role::Client, via, "/", 5);
            body(&r)
                .lines()
                .find_map(|l| l.strip_prefix("Name: "))
                .unwrap_or("no answer")
                .to_string()
        })
        .collect()
}

#[test]
fn endpoint_removal_resync_under_load_and_restart() {
    if !supported() {
        return;
    }
    let dir = common::scratch("node-dynamics");
    let objects = dir.join("objects.yaml");
    let both = [("10.244.1.10", "node-1"), ("10.244.2.10", "node-2")];
    let one = [("10.244.1.10", "node-1")];
    rewrite(&objects, &dynamic_objects(&both, false));
    let lab = two_nodes_one_pod_each();
    let log1 = dir.join("node-1.log");
    let _a1 = agent(&lab, 1, &objects, &log1);
    let log2 = dir.join("node-2.log");
    let mut a2 = agent(&lab, 2, &objects, &log2);
    wait_sync(&log1, 0);
    wait_sync(&log2, 0);
    let pod1 = lab.plan().netns(&Role::Pod(1, 0)).unwrap().to_string();
    let pod2 = lab.plan().netns(&Role::Pod(2, 0)).unwrap().to_string();
    let _w1 = spawn_in(
        &pod1,
        &["whoami", "--listen", "10.244.1.10:8080", "--name", "pod-1"],
    );
    let _w2 = spawn_in(
        &pod2,
        &["whoami", "--listen", "10.244.2.10:8080", "--name", "pod-2"],
    );
    for ip in ["10.244.1.10:8080", "10.244.2.10:8080"] {
        let deadline = Instant::now() + Duration::from_secs(10);
        while body(&get(&lab, &Role::Client, ip, "/clientip", 2)).is_empty() {
            assert!(Instant::now() < deadline, "whoami at {ip} never answered");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // Both endpoints take connections (random balancing; missing one in
    // 40 tries has odds of 2^-39).
    let seen = who_answers(&lab, "10.0.0.11:30080", 40);
    assert!(
        seen.iter().any(|s| s == "pod-1") && seen.iter().any(|s| s == "pod-2"),
        "{seen:?}"
    );

    // The endpoint on node-2 goes: after the resync, no new connection
    // reaches it.
    let before = syncs(&log1);
    rewrite(&objects, &dynamic_objects(&one, false));
    wait_sync(&log1, before);
    let seen = who_answers(&lab, "10.0.0.11:30080", 40);
    assert!(seen.iter().all(|s| s == "pod-1"), "{seen:?}");

    // Resyncs under load: a client makes connection after connection
    // while the objects change under the agent (a Service comes and goes,
    // web-cluster's endpoints change); not one connection may fail.
    let client = lab.plan().netns(&Role::Client).unwrap().to_string();
    // A failure prints how it failed (exit status 124: no answer in 3 s).
    let script = "ok=0; fail=0; why=; for i in $(seq 150); do \
        out=$(timeout 3 bash -c 'exec 3<>/dev/tcp/10.0.0.11/30080 && printf \"GET /bench HTTP/1.0\\r\\n\\r\\n\" >&3 && cat <&3' 2>&1); rc=$?; \
        if [[ $rc == 0 && $out == *\"200 OK\"* ]]; then ok=$((ok+1)); else fail=$((fail+1)); why=\"$why [#$i rc=$rc ${out:0:80}]\"; fi; done; echo \"$ok $fail$why\"";
    let load = Command::new("ip")
        .args(["netns", "exec", &client, "bash", "-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut resyncs = 0;
    for round in 0..8 {
        let before = syncs(&log1);
        let eps: &[(&str, &str)] = if round % 2 == 0 { &both } else { &one };
        rewrite(&objects, &dynamic_objects(eps, round % 4 < 2));
        wait_sync(&log1, before);
        resyncs += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = load.wait_with_output().unwrap();
    let counts = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(
        counts, "150 0",
        "connections ok/failed during {resyncs} resyncs (and how they failed)"
    );

    // A restart keeps established connections: a slow request through
    // node-2 (masqueraded to pod-1) is in flight while node-2's agent is
    // stopped and started again.
    rewrite(&objects, &dynamic_objects(&one, false));
    let slow = Command::new("ip")
        .args([
            "netns",
            "exec",
            &client,
            "timeout",
            "10",
            "bash",
            "-c",
            "exec 3<>/dev/tcp/10.0.0.12/30080 && printf 'GET /clientip?wait=2s HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let pid = a2.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let _ = a2.0.wait();
    let log2b = dir.join("node-2-restarted.log");
    a2 = agent(&lab, 2, &objects, &log2b);
    wait_sync(&log2b, 0);
    let out = slow.wait_with_output().unwrap();
    let resp = String::from_utf8_lossy(&out.stdout);
    assert!(
        resp.contains("200 OK") && body(&resp).starts_with("10.0.0.12:"),
        "in-flight request across the restart: {resp:?}"
    );
    // And new connections work after it.
    assert!(
        body(&get(&lab, &Role::Client, "10.0.0.12:30080", "/clientip", 5))
            .starts_with("10.0.0.12:")
    );
    drop(a2);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A UDP socket living in a lab namespace, usable from this process (a
/// socket keeps the namespace it was made in).
fn udp_socket_in(ns: &str) -> std::net::UdpSocket {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).unwrap();
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s
    })
    .join()
    .unwrap()
}

fn udp_objects(endpoint: &str, node: &str) -> String {
    let nodes = OBJECTS
        .split("---\napiVersion: v1\nkind: Service")
        .next()
        .unwrap();
    format!(
        "{nodes}---\napiVersion: v1\nkind: Service\nmetadata: {{name: dns, namespace: demo}}\nspec:\n  type: NodePort\n  clusterIP: 10.96.0.53\n  ports: [{{name: dns, port: 53, targetPort: 5353, nodePort: 30053, protocol: UDP}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: dns-1, namespace: demo, labels: {{kubernetes.io/service-name: dns}}}}\naddressType: IPv4\nports: [{{name: dns, port: 5353, protocol: UDP}}]\nendpoints: [{{addresses: [{endpoint}], nodeName: {node}, conditions: {{ready: true}}}}]\n"
    )
}

#[test]
fn udp_flows_follow_a_replaced_endpoint() {
    if !supported() {
        return;
    }
    let dir = common::scratch("node-udp");
    let objects = dir.join("objects.yaml");
    rewrite(&objects, &udp_objects("10.244.1.10", "node-1"));
    let lab = two_nodes_one_pod_each();
    let log = dir.join("node-1.log");
    let _agent = agent(&lab, 1, &objects, &log);
    wait_sync(&log, 0);
    let pod1 = lab.plan().netns(&Role::Pod(1, 0)).unwrap().to_string();
    let pod2 = lab.plan().netns(&Role::Pod(2, 0)).unwrap().to_string();
    let _w1 = spawn_in(&pod1, &["whoami", "--udp", "10.244.1.10:5353"]);
    let _w2 = spawn_in(&pod2, &["whoami", "--udp", "10.244.2.10:5353"]);
    let client = lab.plan().netns(&Role::Client).unwrap().to_string();
    // One socket, one source port: one conntrack entry for the flow.
    let sock = udp_socket_in(&client);
    let ask = || -> String {
        let mut buf = [0u8; 512];
        for _ in 0..20 {
            sock.send_to(b"WHO\n", "10.0.0.11:30053").unwrap();
            if let Ok((n, _)) = sock.recv_from(&mut buf) {
                return String::from_utf8_lossy(&buf[..n]).into_owned();
            }
        }
        String::new()
    };
    // Pod-1 sits on node-1: it sees node-1's pod-network address.
    let first = ask();
    assert!(first.starts_with("peer=10.244.1.1:"), "{first:?}");
    // The endpoint moves to pod-2. Without a conntrack flush the flow's
    // entry would keep sending it to pod-1.
    let before = syncs(&log);
    rewrite(&objects, &udp_objects("10.244.2.10", "node-2"));
    wait_sync(&log, before);
    let second = ask();
    assert!(
        second.starts_with("peer=10.0.0.11:"),
        "after the endpoint moved: {second:?}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("udp_flows_flushed=1"),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
