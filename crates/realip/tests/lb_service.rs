//! `realip lb --service` on a live API server: the real etcd and
//! kube-apiserver (built by scripts/k8s) in a fresh network namespace,
//! two Nodes whose InternalIPs are loopback addresses of that namespace,
//! and on those addresses this test's own servers playing each node's
//! nodePort and kube-proxy's health answers. The load balancer runs in the
//! namespace on an address of its own, as a cloud LB's VIP.
//!
//! One test walks the story, because an API server costs tens of seconds
//! to start: readiness only with the API's pool; traffic on both nodes
//! under externalTrafficPolicy Cluster (checked on kube-proxy's 10256);
//! the status written; a Node labelled out and back; `kubectl patch` to
//! Local, after which the API server's healthCheckNodePort is what is
//! checked and the node answering 503 stops getting connections within
//! interval x fall; an identity without RBAC and one without the status
//! permission, each logged with what it needs and survived; a Service
//! that is missing, then has no nodePort, then has one; an API outage
//! that leaves the pool as it was.
//!
//! Needs root and the Kubernetes binaries (REALIP_K8S_BIN, or the
//! workspace's target/k8s/bin); with REALIP_REQUIRE_NETNS=1 a missing
//! one fails the test instead of skipping it.
// A test crate: its items are shared between its modules, not an API.
#![allow(missing_docs)]

mod common;
mod k8s;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s::Cluster;

/// Health-check pace of the load balancer under test.
const INTERVAL: Duration = Duration::from_millis(250);
const FALL: u32 = 3;
/// The coalescing delay of `realip lb --service`, plus the watch and a
/// loaded machine.
const SLACK: Duration = Duration::from_millis(1000);

const NODE1: &str = "127.0.0.11";
const NODE2: &str = "127.0.0.12";
/// The load balancer's address (on the namespace's loopback).
const VIP: &str = "203.0.113.10";
/// The address of the load balancer run without the status permission.
const VIP2: &str = "203.0.113.11";
const NODE_PORT: u16 = 30080;

fn node(name: &str, ip: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{name: {name}, labels: {{{labels}}}}}\n\
         status:\n  addresses: [{{type: InternalIP, address: \"{ip}\"}}, {{type: Hostname, address: {name}}}]\n  \
         conditions: [{{type: Ready, status: \"True\", reason: KubeletReady, message: the test plays the kubelet}}]\n"
    )
}

const SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Cluster
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30080}]
"#;

/// What the load balancer's identity is granted, exactly the permissions
/// its help names; `realip-lb-nostatus` lacks the status one.
const RBAC: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: realip-lb-nodes}
rules: [{apiGroups: [""], resources: [nodes], verbs: [list, watch]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: realip-lb-nodes}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: realip-lb-nodes}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: realip-lb}
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: realip-lb-nostatus}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: realip-lb, namespace: default}
rules:
- {apiGroups: [""], resources: [services], verbs: [list, watch]}
- {apiGroups: [""], resources: [services/status], verbs: [patch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: realip-lb, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: realip-lb}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: realip-lb}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: realip-lb-nostatus, namespace: default}
rules: [{apiGroups: [""], resources: [services], verbs: [list, watch]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: realip-lb-nostatus, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: realip-lb-nostatus}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: realip-lb-nostatus}]
"#;

/// Run `f` on a thread that has entered namespace `ns`: sockets it makes
/// stay in `ns` wherever they are used afterwards.
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .unwrap()
}

/// One connection a server of ours took: where, and when.
#[derive(Debug, Clone, Copy)]
struct Hit {
    local: SocketAddr,
    at: Instant,
}

type Hits = Arc<Mutex<Vec<Hit>>>;

/// A server in the namespace that reads a request head, records the hit,
/// answers `answer` and closes; stopped and joined when dropped.
struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(ns: &str, addr: SocketAddr, answer: String, hits: Hits) -> Server {
    let listener = in_netns(ns, move || TcpListener::bind(addr))
        .unwrap_or_else(|e| panic!("binding {addr} in the test namespace: {e}"));
    listener.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let thread = std::thread::spawn(move || {
        while !stopping.load(Ordering::Acquire) {
            let Ok((mut s, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            let _ = s.set_nonblocking(false);
            let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            hits.lock().unwrap().push(Hit {
                local: addr,
                at: Instant::now(),
            });
            let _ = s.write_all(answer.as_bytes());
        }
    });
    Server {
        stop,
        thread: Some(thread),
    }
}

fn http(status: &str, headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// kube-proxy's /healthz when it is healthy (KEP-3458: what a Cluster
/// Service's load balancer checks).
fn kube_proxy_healthz() -> String {
    http(
        "200 OK",
        "",
        r#"{"lastUpdated": "2026-12-02 00:00:00 +0000 UTC","currentTime": "2026-12-02 00:00:00 +0000 UTC", "nodeEligible": true}"#,
    )
}

/// A healthCheckNodePort answer, as kube-proxy writes it.
fn health_check_node_port(local: u32) -> String {
    let body = format!(
        "{{\n\t\"service\": {{\n\t\t\"namespace\": \"default\",\n\t\t\"name\": \"web\"\n\t}},\n\t\"localEndpoints\": {local},\n\t\"serviceProxyHealthy\": true\n}}"
    );
    let status = if local > 0 {
        "200 OK"
    } else {
        "503 Service Unavailable"
    };
    http(
        status,
        &format!(
            "X-Content-Type-Options: nosniff\r\nX-Load-Balancing-Endpoint-Weight: {local}\r\n"
        ),
        &body,
    )
}

/// One connection through the load balancer: when it ended and which
/// node answered (`None`: none did).
type Seen = (Instant, Option<String>);

/// Connections through the load balancer, one every 25 ms from inside the
/// namespace.
struct Prober {
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Which node answered one connection to `lb`.
fn ask(lb: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&lb, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let body = out.split_once("\r\n\r\n")?.1.trim();
    (!body.is_empty()).then(|| body.to_string())
}

fn probe(ns: &str, lb: SocketAddr) -> Prober {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let (s, st) = (seen.clone(), stop.clone());
    let path = format!("/run/netns/{ns}");
    let thread = std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        while !st.load(Ordering::Acquire) {
            let answer = ask(lb);
            s.lock().unwrap().push((Instant::now(), answer));
            std::thread::sleep(Duration::from_millis(25));
        }
    });
    Prober {
        seen,
        stop,
        thread: Some(thread),
    }
}

impl Prober {
    fn since(&self, t: Instant) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(at, _)| *at >= t)
            .cloned()
            .collect()
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The JSON log events of `path` whose message is `message`.
fn events(path: &Path, message: &str) -> Vec<serde_json::Value> {
    read(path)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["fields"]["message"] == message)
        .collect()
}

fn tail(path: &Path) -> String {
    let text = read(path);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Retry `check` until it passes; on timeout fail with its last word.
fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let end = Instant::now() + limit;
    loop {
        match check() {
            Ok(v) => return v,
            Err(why) if Instant::now() >= end => panic!("{what}: not within {limit:?}: {why}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn kubectl_ok(cluster: &Cluster, args: &[&str]) -> String {
    let out = cluster.kubectl(args, None);
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `realip lb --service SERVICE` with `kubeconfig`, in the namespace,
/// logging JSON to `log`, telling readiness on `notify`.
fn start_lb(
    cluster: &Cluster,
    service: &str,
    kubeconfig: &Path,
    listen: &str,
    log: &Path,
    notify: &Path,
) -> common::Killed {
    let interval = format!("{}ms", INTERVAL.as_millis());
    let fall = FALL.to_string();
    let child = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            cluster.netns(),
            env!("CARGO_BIN_EXE_realip"),
        ])
        .args([
            "lb",
            "--service",
            service,
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--listen",
            listen,
            "--health-interval",
            &interval,
            "--health-timeout",
            "200ms",
            "--rise",
            "2",
            "--fall",
            &fall,
            "--log-format",
            "json",
        ])
        .env_remove("RUST_LOG")
        .env("NOTIFY_SOCKET", notify)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    common::Killed(child)
}

/// A datagram socket for NOTIFY_SOCKET (a path: it reaches into the
/// namespace, unlike an abstract name).
fn notify_socket(path: &Path) -> std::os::unix::net::UnixDatagram {
    let s = std::os::unix::net::UnixDatagram::bind(path).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s
}

fn ready(s: &std::os::unix::net::UnixDatagram) -> Option<String> {
    let mut buf = [0u8; 512];
    let n = s.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn alive(lb: &mut common::Killed) -> bool {
    matches!(lb.0.try_wait(), Ok(None))
}

fn prerequisites() -> Option<std::path::PathBuf> {
    let bins = k8s::binaries();
    if !common::netns_supported(bins.clone().map(|_| ())) {
        return None;
    }
    bins.ok()
}

fn sock(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

#[test]
fn lb_follows_its_service_and_the_nodes() {
    let Some(bin) = prerequisites() else {
        return;
    };
    let dir = common::scratch("lb-service");
    let mut cluster = Cluster::start(&bin, dir.clone());
    let ns = cluster.netns().to_string();
    // The VIPs, on the test namespace's loopback (they go with the
    // namespace; no dummy module needed).
    for vip in [VIP, VIP2] {
        let cmd = ["ip", "addr", "add", &format!("{vip}/32"), "dev", "lo"];
        let out = cluster.exec(&cmd);
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let lb_kc = cluster.kubeconfig("lb", "realip-lb", None);
    let nostatus_kc = cluster.kubeconfig("lb-nostatus", "realip-lb-nostatus", None);
    let nobody_kc = cluster.kubeconfig("nobody", "realip-nobody", None);
    cluster.apply(&format!(
        "{RBAC}---\n{}---\n{}---\n{SERVICE}",
        node("node-1", NODE1, ""),
        node("node-2", NODE2, "")
    ));

    // The nodes: their nodePort, and kube-proxy's healthz on 10256.
    let traffic: Hits = Arc::default();
    let healthz: Hits = Arc::default();
    let _node_ports = [NODE1, NODE2].map(|ip| {
        let name = if ip == NODE1 { "node-1" } else { "node-2" };
        serve(
            &ns,
            sock(ip, NODE_PORT),
            http("200 OK", "", name),
            traffic.clone(),
        )
    });
    let _healthz =
        [NODE1, NODE2].map(|ip| serve(&ns, sock(ip, 10256), kube_proxy_healthz(), healthz.clone()));

    let log = dir.join("lb.log");
    let notify_path = dir.join("notify.sock");
    let notify = notify_socket(&notify_path);
    let started = Instant::now();
    let mut lb = start_lb(
        &cluster,
        "default/web",
        &lb_kc,
        &format!("{VIP}:80"),
        &log,
        &notify_path,
    );

    // Ready only once the API's pool is applied: by then the pool has
    // both nodes and the first connection is served.
    let said = wait_for("READY=1", Duration::from_secs(60), || {
        assert!(alive(&mut lb), "the lb exited:\n{}", tail(&log));
        ready(&notify).ok_or_else(|| tail(&log))
    });
    let ready_after = started.elapsed();
    assert!(said.lines().any(|l| l == "READY=1"), "{said:?}");
    let updates = events(&log, "pool updated");
    assert_eq!(updates.len(), 1, "one apply before READY:\n{}", tail(&log));
    let first = &updates[0]["fields"];
    assert_eq!(first["backends"], 2, "{first}");
    assert_eq!(
        first["added"], "node-1=127.0.0.11:30080 node-2=127.0.0.12:30080",
        "{first}"
    );
    assert_eq!(first["port"], "http/80 nodePort 30080", "{first}");
    assert!(
        first["health"]
            .as_str()
            .unwrap()
            .starts_with("http:/healthz on port 10256"),
        "{first}"
    );
    let lb_addr = sock(VIP, 80);
    let answer = in_netns(&ns, move || ask(lb_addr));
    assert!(answer.is_some(), "served at once after READY");
    eprintln!("READY {ready_after:?} after start; first connection answered by {answer:?}");

    // Cluster: every node takes traffic, each checked on kube-proxy's
    // healthz.
    let prober = probe(&ns, lb_addr);
    wait_for("connections on both nodes", Duration::from_secs(10), || {
        let seen = prober.since(started);
        let on = |n: &str| seen.iter().filter(|(_, a)| a.as_deref() == Some(n)).count();
        if on("node-1") >= 5 && on("node-2") >= 5 {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    });
    wait_for(
        "kube-proxy's healthz checked on both",
        Duration::from_secs(5),
        || {
            let h = healthz.lock().unwrap();
            let on = |ip: &str| h.iter().filter(|x| x.local == sock(ip, 10256)).count();
            if on(NODE1) >= 2 && on(NODE2) >= 2 {
                Ok(())
            } else {
                Err(format!("{h:?}"))
            }
        },
    );

    // The status, as a cloud controller writes it.
    let ip = wait_for(
        "status.loadBalancer.ingress",
        Duration::from_secs(15),
        || {
            let ip = kubectl_ok(
                &cluster,
                &[
                    "get",
                    "svc",
                    "web",
                    "-o",
                    "jsonpath={.status.loadBalancer.ingress[*].ip}",
                ],
            );
            if ip == VIP {
                Ok(ip)
            } else {
                Err(format!("{ip:?}\n{}", tail(&log)))
            }
        },
    );
    assert_eq!(ip, VIP);
    let external = kubectl_ok(&cluster, &["get", "svc", "web", "--no-headers"]);
    assert!(external.contains(VIP), "EXTERNAL-IP: {external}");

    // A Node labelled out of external load balancers leaves the pool, and
    // comes back when the label goes.
    kubectl_ok(
        &cluster,
        &[
            "label",
            "node",
            "node-2",
            "node.kubernetes.io/exclude-from-external-load-balancers=true",
        ],
    );
    wait_for(
        "node-2 removed",
        Duration::from_secs(10),
        || match events(&log, "pool updated").last() {
            Some(e) if e["fields"]["removed"] == "node-2=127.0.0.12:30080" => Ok(()),
            _ => Err(tail(&log)),
        },
    );
    assert!(
        events(&log, "nodes left out of the pool").iter().any(|e| {
            e["fields"]["nodes"]
                == "node-2 (labelled node.kubernetes.io/exclude-from-external-load-balancers=true)"
        }),
        "{}",
        tail(&log)
    );
    // Connections recorded from a little after the apply on.
    let out = Instant::now() + Duration::from_millis(100);
    std::thread::sleep(Duration::from_millis(600));
    assert!(
        prober
            .since(out)
            .iter()
            .all(|(_, a)| a.as_deref() == Some("node-1")),
        "only node-1 while node-2 is excluded"
    );
    kubectl_ok(
        &cluster,
        &[
            "label",
            "node",
            "node-2",
            "node.kubernetes.io/exclude-from-external-load-balancers-",
        ],
    );
    wait_for("node-2 back", Duration::from_secs(10), || {
        match events(&log, "pool updated").last() {
            Some(e) if e["fields"]["added"] == "node-2=127.0.0.12:30080" => Ok(()),
            _ => Err(tail(&log)),
        }
    });
    let back = Instant::now();
    wait_for(
        "connections on node-2 again",
        Duration::from_secs(5),
        || {
            let seen = prober.since(back);
            if seen.iter().any(|(_, a)| a.as_deref() == Some("node-2")) {
                Ok(())
            } else {
                Err(format!("{seen:?}"))
            }
        },
    );

    // externalTrafficPolicy Local: the API server allocates a
    // healthCheckNodePort. node-1 has a local endpoint (200), node-2 none
    // (503). The servers go up as soon as the port is known; a check that
    // comes before is refused, one failure of FALL.
    let healthcheck: Hits = Arc::default();
    let patched_at = Instant::now();
    let patched = kubectl_ok(
        &cluster,
        &[
            "patch",
            "svc",
            "web",
            "--type=merge",
            "-p",
            r#"{"spec":{"externalTrafficPolicy":"Local"}}"#,
            "-o",
            "jsonpath={.spec.healthCheckNodePort}",
        ],
    );
    let returned = Instant::now();
    let hcnp: u16 = patched
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("healthCheckNodePort: {patched:?}"));
    let _health_checks = [(NODE1, 1), (NODE2, 0)].map(|(ip, local)| {
        serve(
            &ns,
            sock(ip, hcnp),
            health_check_node_port(local),
            healthcheck.clone(),
        )
    });
    let switched = wait_for(
        "the lb checking the healthCheckNodePort",
        Duration::from_secs(10),
        || {
            let e = events(&log, "pool updated");
            let want = format!("http:/healthz on port {hcnp} (healthCheckNodePort");
            match e.last() {
                Some(e) if e["fields"]["health"].as_str().unwrap().starts_with(&want) => {
                    Ok(e.clone())
                }
                _ => Err(tail(&log)),
            }
        },
    );
    assert_eq!(switched["fields"]["backends"], 2, "{switched}");
    assert_eq!(
        switched["fields"]["added"], "-",
        "the same nodes: {switched}"
    );
    assert_eq!(switched["fields"]["health_changed"], true, "{switched}");
    // node-2 stops receiving connections within interval x fall.
    let bound = INTERVAL * FALL + SLACK;
    wait_for("node-2 out of the pool", Duration::from_secs(10), || {
        let seen = prober.since(returned);
        // Quiet on node-2 for a second, with node-1 answering.
        let quiet = Duration::from_secs(1);
        let last2 = seen
            .iter()
            .filter(|(_, a)| a.as_deref() == Some("node-2"))
            .map(|(t, _)| *t)
            .max();
        let since = last2.unwrap_or(returned);
        if since.elapsed() >= quiet
            && seen
                .iter()
                .filter(|(t, _)| *t > since)
                .any(|(_, a)| a.as_deref() == Some("node-1"))
        {
            Ok(())
        } else {
            Err(format!(
                "{:?}",
                seen.iter().rev().take(10).collect::<Vec<_>>()
            ))
        }
    });
    let seen = prober.since(returned);
    let last2 = seen
        .iter()
        .filter(|(_, a)| a.as_deref() == Some("node-2"))
        .map(|(t, _)| *t)
        .max()
        .unwrap_or(returned);
    let dropped_after = last2.saturating_duration_since(returned);
    eprintln!(
        "kubectl patch took {:?}; node-2's last connection {dropped_after:?} after it returned \
         (bound: interval {INTERVAL:?} x fall {FALL} + {SLACK:?} = {bound:?})",
        returned - patched_at
    );
    assert!(
        dropped_after <= bound,
        "node-2 dropped {dropped_after:?} after the patch, more than {bound:?}:\n{}",
        tail(&log)
    );
    assert!(
        seen.iter().all(|(_, a)| a.is_some()),
        "no connection failed across the switch (node-1 stayed in): {seen:?}"
    );
    let down = events(&log, "backend down");
    assert!(
        down.iter()
            .any(|e| e["fields"]["backend"] == "127.0.0.12:30080"
                && e["fields"]["reason"] == "status 503"),
        "node-2 taken out for its 503:\n{}",
        tail(&log)
    );
    assert!(
        !down
            .iter()
            .any(|e| e["fields"]["backend"] == "127.0.0.11:30080"),
        "node-1 never went down:\n{}",
        tail(&log)
    );
    {
        let h = healthcheck.lock().unwrap();
        assert!(
            h.iter().filter(|x| x.local == sock(NODE1, hcnp)).count() >= 2
                && h.iter().filter(|x| x.local == sock(NODE2, hcnp)).count() >= 2,
            "both checked on healthCheckNodePort {hcnp}: {h:?}"
        );
    }
    let after = Instant::now() + INTERVAL * 2;
    std::thread::sleep(INTERVAL * 4);
    assert!(
        !healthz.lock().unwrap().iter().any(|x| x.at > after),
        "10256 is no longer checked under Local"
    );

    // An identity without RBAC: the API's 403, the URL and what is
    // needed, retried; the process stays.
    let nobody_log = dir.join("nobody.log");
    let nobody_notify = dir.join("nobody-notify.sock");
    let nobody_ready = notify_socket(&nobody_notify);
    let mut nobody = start_lb(
        &cluster,
        "default/web",
        &nobody_kc,
        &format!("{VIP}:81"),
        &nobody_log,
        &nobody_notify,
    );
    wait_for("the 403s in the log", Duration::from_secs(30), || {
        let failed = events(
            &nobody_log,
            "watch failed; the pool stays as it is, retrying",
        );
        let nodes = failed.iter().filter(|e| {
            let f = &e["fields"];
            f["server"] == "https://127.0.0.1:6443/"
                && f["resource"] == "nodes"
                && f["error"].as_str().unwrap_or("").contains(
                    "nodes is forbidden: User \"realip-nobody\" cannot list resource \"nodes\"",
                )
                && f["hint"]
                    == "realip lb --service needs list and watch on nodes (cluster-wide: a ClusterRole)"
        });
        let services = failed.iter().filter(|e| {
            let f = &e["fields"];
            f["resource"] == "services"
                && f["error"].as_str().unwrap_or("").contains(
                    "cannot list resource \"services\" in API group \"\" in the namespace \"default\"",
                )
                && f["hint"]
                    .as_str()
                    .unwrap_or("")
                    .contains("list and watch on services in the Service's namespace")
        });
        // Retried: each at least twice.
        if nodes.count() >= 2 && services.count() >= 2 {
            Ok(())
        } else {
            Err(tail(&nobody_log))
        }
    });
    assert!(
        alive(&mut nobody),
        "a 403 does not end it:\n{}",
        tail(&nobody_log)
    );
    assert_eq!(
        ready(&nobody_ready),
        None,
        "not ready without the API's pool"
    );
    assert!(
        !read(&nobody_log).contains("kube_runtime"),
        "said once, by realip:\n{}",
        tail(&nobody_log)
    );
    drop(nobody);

    // An identity that may read but not write the status: the pool is
    // served; the refused write is logged once, with the URL and the
    // permission.
    let nostatus_log = dir.join("nostatus.log");
    let nostatus_notify = dir.join("nostatus-notify.sock");
    let nostatus_ready = notify_socket(&nostatus_notify);
    let mut nostatus = start_lb(
        &cluster,
        "default/web",
        &nostatus_kc,
        &format!("{VIP2}:82"),
        &nostatus_log,
        &nostatus_notify,
    );
    wait_for(
        "READY=1 without the status permission",
        Duration::from_secs(30),
        || ready(&nostatus_ready).ok_or_else(|| tail(&nostatus_log)),
    );
    // A fresh pool starts its nodes up, as HAProxy and nginx do; node-2's
    // 503s take it out after FALL checks.
    wait_for("node-2's 503s counted", Duration::from_secs(10), || {
        let down = events(&nostatus_log, "backend down");
        if down
            .iter()
            .any(|e| e["fields"]["backend"] == "127.0.0.12:30080")
        {
            Ok(())
        } else {
            Err(tail(&nostatus_log))
        }
    });
    let vip2 = sock(VIP2, 82);
    let answers = in_netns(&ns, move || [ask(vip2), ask(vip2), ask(vip2)]);
    assert!(
        answers.iter().all(|a| a.as_deref() == Some("node-1")),
        "served by the pool from the API, node-1 only (the one with a local endpoint): {answers:?}"
    );
    let refused = wait_for("the refused status write", Duration::from_secs(15), || {
        let e = events(
            &nostatus_log,
            "writing the Service's status was refused; retrying quietly",
        );
        e.first().cloned().ok_or_else(|| tail(&nostatus_log))
    });
    let error = refused["fields"]["error"].as_str().unwrap();
    assert!(
        error.starts_with(
            "PATCH https://127.0.0.1:6443/api/v1/namespaces/default/services/web/status: 403 Forbidden"
        ) && error.contains("cannot patch resource \"services/status\"")
            && error.contains("needs patch on services/status"),
        "{error}"
    );
    // Backoff 0.8, 1.6, 3.2 s: retried within 6 s, and said only once.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        events(
            &nostatus_log,
            "writing the Service's status was refused; retrying quietly"
        )
        .len(),
        1,
        "{}",
        tail(&nostatus_log)
    );
    assert!(alive(&mut nostatus), "{}", tail(&nostatus_log));
    drop(nostatus);
    assert_eq!(
        kubectl_ok(
            &cluster,
            &[
                "get",
                "svc",
                "web",
                "-o",
                "jsonpath={.status.loadBalancer.ingress[*].ip}"
            ]
        ),
        VIP,
        "the refused write changed nothing"
    );

    // A Service that does not exist yet: ready with no backends, said so;
    // created without a nodePort (ClusterIP): still none, said why; made a
    // NodePort: the nodes.
    let later_log = dir.join("later.log");
    let later_notify = dir.join("later-notify.sock");
    let later_ready = notify_socket(&later_notify);
    let mut later = start_lb(
        &cluster,
        "default/later",
        &lb_kc,
        &format!("{VIP}:83"),
        &later_log,
        &later_notify,
    );
    wait_for(
        "READY=1 without the Service",
        Duration::from_secs(30),
        || ready(&later_ready).ok_or_else(|| tail(&later_log)),
    );
    let problem = |log: &Path| {
        events(log, "no backends")
            .last()
            .and_then(|e| e["fields"]["problem"].as_str().map(str::to_string))
    };
    assert_eq!(
        problem(&later_log).as_deref(),
        Some("the Service does not exist; waiting for it"),
        "{}",
        tail(&later_log)
    );
    cluster.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: later, namespace: default}\n\
         spec: {type: ClusterIP, ports: [{name: http, port: 83}]}\n",
    );
    wait_for(
        "no nodePort, said so",
        Duration::from_secs(10),
        || match problem(&later_log) {
            Some(p) if p.starts_with("port 83 has no nodePort (type ClusterIP)") => Ok(()),
            _ => Err(tail(&later_log)),
        },
    );
    kubectl_ok(
        &cluster,
        &[
            "patch",
            "svc",
            "later",
            "--type=merge",
            "-p",
            r#"{"spec":{"type":"NodePort"}}"#,
        ],
    );
    let nodes = wait_for(
        "the nodes once it has a nodePort",
        Duration::from_secs(10),
        || match events(&later_log, "pool updated").last() {
            Some(e) if e["fields"]["backends"] == 2 => Ok(e["fields"].clone()),
            _ => Err(tail(&later_log)),
        },
    );
    assert_eq!(
        nodes["health"].as_str().unwrap(),
        "http:/healthz on port 10256 (kube-proxy's healthz; externalTrafficPolicy Cluster)"
    );
    assert!(
        events(&later_log, "the Service's nodes are backends again").len() == 1,
        "{}",
        tail(&later_log)
    );
    assert!(
        !read(&later_log).contains("published status"),
        "a NodePort Service's status is not ours to write:\n{}",
        tail(&later_log)
    );
    assert!(alive(&mut later));
    drop(later);

    // An API outage: the watches fail and retry, the pool stays and
    // serves; back, they list again and nothing is re-applied.
    let applies = events(&log, "pool updated").len();
    cluster.apiserver.stop();
    let outage = Instant::now();
    wait_for(
        "the failed watch in the log",
        Duration::from_secs(60),
        || {
            let failed = events(&log, "watch failed; the pool stays as it is, retrying");
            if failed
                .iter()
                .any(|e| e["fields"]["server"] == "https://127.0.0.1:6443/")
            {
                Ok(())
            } else {
                Err(tail(&log))
            }
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    let during = prober.since(outage);
    assert!(
        during.len() > 10 && during.iter().all(|(_, a)| a.as_deref() == Some("node-1")),
        "the pool serves through the outage: {during:?}"
    );
    assert!(
        alive(&mut lb),
        "the outage does not end it:\n{}",
        tail(&log)
    );
    let listed_before = events(&log, "listed").len();
    cluster.start_apiserver();
    wait_for("both lists again", Duration::from_secs(120), || {
        if events(&log, "listed").len() >= listed_before + 2 {
            Ok(())
        } else {
            Err(tail(&log))
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        events(&log, "pool updated").len(),
        applies,
        "the same objects after the outage: nothing to apply:\n{}",
        tail(&log)
    );
    drop(prober);
    drop(lb);
}
