//! `realip lb` in TCP mode, end to end on loopback: a client bound to its
//! own 127.0.0.x address, the real binary as the load balancer, `realip
//! whoami` backends. What the backend resolved is the verdict.
// A test crate: its items are shared between its modules, not an API.
#![allow(missing_docs)]

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

struct Lb {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Lb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `realip lb` on a loopback port the kernel picks.
fn lb(args: &[&str]) -> Lb {
    start_lb(&["--listen", "127.0.0.1:0"], args, "tcp")
}

/// Start `realip lb` in UDP mode.
fn lb_udp(args: &[&str]) -> Lb {
    start_lb(&["--mode", "udp", "--listen", "127.0.0.1:0"], args, "udp")
}

/// Start it and wait for its "listening" line, which names the address
/// under `key`.
fn start_lb(listen: &[&str], args: &[&str], key: &str) -> Lb {
    let mut all = vec!["lb"];
    all.extend_from_slice(listen);
    all.extend_from_slice(args);
    let (child, line, logs) = spawn_listening(&all);
    // Keep draining so the process never blocks on stderr.
    std::thread::spawn(move || for _ in logs {});
    let addr = field(&line, key).expect("listening address");
    Lb { child, addr }
}

async fn realip_via(lb: &Lb, from: &str, headers: &[(&str, &str)]) -> (String, SocketAddr) {
    let stream = connect_from(from, lb.addr).await;
    let me = stream.local_addr().unwrap();
    let (status, _, body) = http1_over(stream, "GET", "/realip", headers, "").await;
    assert_eq!(status, 200, "{body}");
    (body, me)
}

#[tokio::test]
async fn every_tcp_client_ip_mode_end_to_end() {
    // PROXY v2 and v1: the backend trusts the LB (127.0.0.1) and learns
    // the client from the header.
    for (mode, accept) in [("proxy-v2", "v2"), ("proxy-v1", "v1")] {
        let w = whoami(&[
            "--listen",
            "127.0.0.10:0",
            "--proxy-protocol",
            accept,
            "--trusted",
            "127.0.0.1/32",
        ]);
        let backend = w.http.to_string();
        let l = lb(&["--backend", &backend, "--client-ip", mode]);
        let (realip, me) = realip_via(&l, "127.0.0.2", &[]).await;
        assert_eq!(realip, me.to_string(), "{mode}");
        // A forged X-Forwarded-For from the (untrusted) client changes
        // nothing.
        let (realip, me) =
            realip_via(&l, "127.0.0.3", &[("X-Forwarded-For", "198.51.100.66")]).await;
        assert_eq!(realip, me.to_string(), "{mode} with a forged header");
    }
    // none: the seeds' problem, the backend sees the LB.
    let w = whoami(&["--listen", "127.0.0.11:0", "--trusted", "127.0.0.1/32"]);
    let backend = w.http.to_string();
    let l = lb(&["--backend", &backend, "--client-ip", "none"]);
    let (realip, _) = realip_via(&l, "127.0.0.2", &[]).await;
    assert!(realip.starts_with("127.0.0.1:"), "{realip}");
    // transparent: the backend's socket peer is the client's own address
    // (on loopback every 127/8 address is local; the namespace test in
    // lb_transparent.rs shows the reply routing a real network needs).
    let l = lb(&["--backend", &backend, "--client-ip", "transparent"]);
    let (realip, me) = realip_via(&l, "127.0.0.7", &[("X-Forwarded-For", "198.51.100.66")]).await;
    assert!(realip.starts_with("127.0.0.7:"), "{realip}");
    assert_ne!(realip, me.to_string(), "the port is the lb's own");
}

#[tokio::test]
async fn schedules_spread_and_stick() {
    let a = whoami(&["--listen", "127.0.0.10:0", "--name", "a"]);
    let b = whoami(&["--listen", "127.0.0.11:0", "--name", "b"]);
    let (ba, bb) = (a.http.to_string(), b.http.to_string());
    let name_via = |l: &Lb, from: &'static str| {
        let addr = l.addr;
        async move {
            let stream = connect_from(from, addr).await;
            let (_, _, body) = http1_over(stream, "GET", "/api", &[], "").await;
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            v["name"].as_str().unwrap_or("").to_string()
        }
    };
    // Round robin alternates.
    let rr = lb(&["--backend", &ba, "--backend", &bb]);
    let mut names = Vec::new();
    for _ in 0..4 {
        names.push(name_via(&rr, "127.0.0.2").await);
    }
    assert_eq!(names, ["a", "b", "a", "b"]);
    // Weights 3:1 over 8 connections: 6 and 2.
    let w = lb(&[
        "--backend",
        &format!("{ba}=3"),
        "--backend",
        &bb,
        "--schedule",
        "weighted-round-robin",
    ]);
    let mut a_count = 0;
    for _ in 0..8 {
        a_count += usize::from(name_via(&w, "127.0.0.2").await == "a");
    }
    assert_eq!(a_count, 6);
    // Source hash: one client address, one backend, whatever its port.
    let sh = lb(&[
        "--backend",
        &ba,
        "--backend",
        &bb,
        "--schedule",
        "source-hash",
    ]);
    let first = name_via(&sh, "127.0.0.5").await;
    for _ in 0..5 {
        assert_eq!(name_via(&sh, "127.0.0.5").await, first);
    }
}

#[tokio::test]
async fn a_dead_backend_fails_the_connection_not_the_lb() {
    // Nothing listens on this port of our own loopback.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = dead.local_addr().unwrap().to_string();
    drop(dead);
    let w = whoami(&[]);
    let live = w.http.to_string();
    let l = lb(&["--backend", &addr, "--connect-timeout", "1s"]);
    let mut c = connect_from("127.0.0.2", l.addr).await;
    let out = raw_exchange(&mut c, b"GET / HTTP/1.0\r\n\r\n").await;
    assert!(out.is_empty(), "a dead backend answered: {out:?}");
    // The LB lives on: a second one with a live backend next to it works,
    // and this one still accepts.
    let l2 = lb(&["--backend", &live]);
    let (realip, _) = realip_via(&l2, "127.0.0.2", &[]).await;
    assert!(realip.starts_with("127.0.0.1:"));
    let _c = connect_from("127.0.0.2", l.addr).await;
}

#[tokio::test]
async fn a_failing_backend_is_taken_out_and_put_back() {
    let a = whoami(&["--listen", "127.0.0.10:0", "--name", "a"]);
    let b = whoami(&["--listen", "127.0.0.11:0", "--name", "b"]);
    let (ba, bb) = (a.http.to_string(), b.http.to_string());
    let l = lb(&[
        "--backend",
        &ba,
        "--backend",
        &bb,
        "--health",
        "http:/health",
        "--health-interval",
        "100ms",
        "--fall",
        "2",
        "--rise",
        "2",
    ]);
    let names = |n: usize| {
        let addr = l.addr;
        async move {
            let mut out = Vec::new();
            for _ in 0..n {
                let stream = connect_from("127.0.0.2", addr).await;
                let (_, _, body) = http1_over(stream, "GET", "/api", &[], "").await;
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                out.push(v["name"].as_str().unwrap_or("").to_string());
            }
            out
        }
    };
    assert!(names(4).await.contains(&"a".to_string()));
    // a's health answers 503 from now on.
    let (s, _, _) = http1_over(
        connect_from("127.0.0.1", a.http).await,
        "POST",
        "/health",
        &[],
        "503",
    )
    .await;
    assert_eq!(s, 200);
    // Out within interval x fall (200 ms), with room for scheduling.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let after = names(10).await;
    assert!(after.iter().all(|n| n == "b"), "{after:?}");
    // Back after two good checks.
    let (s, _, _) = http1_over(
        connect_from("127.0.0.1", a.http).await,
        "POST",
        "/health",
        &[],
        "200",
    )
    .await;
    assert_eq!(s, 200);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(names(4).await.contains(&"a".to_string()));
}

/// A free port on both 127.0.0.10 and 127.0.0.11.
fn port_on_both() -> u16 {
    for _ in 0..20 {
        let a = std::net::TcpListener::bind("127.0.0.10:0").unwrap();
        let p = a.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.11", p)).is_ok() {
            return p;
        }
    }
    panic!("no port free on both addresses");
}

fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "nothing listening on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str]) -> Reaped {
    Reaped(
        Command::new(env!("CARGO_BIN_EXE_realip"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// The seeds' imbalance, fixed: behind a Local Service, node 1 has two
/// pods and node 2 one. The LB checks each node's healthCheckNodePort
/// (`realip node health-check`, kube-proxy's answers) and weighs the node
/// by its local endpoint count, so each pod gets a third.
#[tokio::test]
async fn endpoint_counts_from_health_checks_weigh_the_nodes() {
    let health = port_on_both();
    let dir = scratch("lb-weights");
    let objects = dir.join("objects.yaml");
    std::fs::write(
        &objects,
        format!(
            "apiVersion: v1\nkind: Node\nmetadata: {{name: node-1}}\nspec: {{podCIDR: 10.244.1.0/24}}\n---\napiVersion: v1\nkind: Node\nmetadata: {{name: node-2}}\nspec: {{podCIDR: 10.244.2.0/24}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: demo}}\nspec:\n  type: LoadBalancer\n  clusterIP: 10.96.0.11\n  externalTrafficPolicy: Local\n  healthCheckNodePort: {health}\n  ports: [{{port: 80, targetPort: 8080, nodePort: 30081}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: web-1, namespace: demo, labels: {{kubernetes.io/service-name: web}}}}\naddressType: IPv4\nports: [{{port: 8080, protocol: TCP}}]\nendpoints:\n- {{addresses: [10.244.1.5], nodeName: node-1, conditions: {{ready: true}}}}\n- {{addresses: [10.244.1.6], nodeName: node-1, conditions: {{ready: true}}}}\n- {{addresses: [10.244.2.5], nodeName: node-2, conditions: {{ready: true}}}}\n"
        ),
    )
    .unwrap();
    let objs = objects.to_str().unwrap();
    let _h1 = spawn(&[
        "node",
        "health-check",
        "--objects",
        objs,
        "--node",
        "node-1",
        "--address",
        "127.0.0.10",
        "--healthz",
        "127.0.0.10:0",
    ]);
    let _h2 = spawn(&[
        "node",
        "health-check",
        "--objects",
        objs,
        "--node",
        "node-2",
        "--address",
        "127.0.0.11",
        "--healthz",
        "127.0.0.11:0",
    ]);
    let port = port_on_both();
    let n1 = format!("127.0.0.10:{port}");
    let n2 = format!("127.0.0.11:{port}");
    let _w1 = spawn(&["whoami", "--listen", &n1, "--name", "node-1"]);
    let _w2 = spawn(&["whoami", "--listen", &n2, "--name", "node-2"]);
    for a in [&n1, &n2] {
        wait_listening(a.parse().unwrap());
    }
    wait_listening(SocketAddr::from(([127, 0, 0, 10], health)));
    wait_listening(SocketAddr::from(([127, 0, 0, 11], health)));
    let l = lb(&[
        "--backend",
        &n1,
        "--backend",
        &n2,
        "--schedule",
        "weighted-round-robin",
        "--health",
        "http:/",
        "--health-port",
        &health.to_string(),
        "--health-interval",
        "100ms",
        "--rise",
        "1",
    ]);
    // A check round or two to learn the weights.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut on_node_1 = 0;
    let total = 3000;
    for _ in 0..total {
        let stream = connect_from("127.0.0.2", l.addr).await;
        let (_, _, body) = http1_over(stream, "GET", "/", &[], "").await;
        on_node_1 += usize::from(body.contains("Name: node-1\n"));
    }
    let share = on_node_1 as f64 / total as f64;
    assert!(
        (share - 2.0 / 3.0).abs() <= 0.05,
        "node-1 took {on_node_1} of {total}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn udp_carries_the_client_in_proxy_v2_per_datagram() {
    let w = whoami(&[
        "--trusted",
        "127.0.0.1/32",
        "--udp",
        "127.0.0.1:0",
        "--udp-proxy-protocol",
        "v2",
    ]);
    let backend = w.udp.unwrap().to_string();
    let l = lb_udp(&["--backend", &backend, "--client-ip", "proxy-v2"]);
    let sock = tokio::net::UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let me = sock.local_addr().unwrap();
    let mut buf = [0u8; 1500];
    // Two datagrams on one flow: both answered, both see the client.
    for _ in 0..2 {
        sock.send_to(b"WHO", l.addr).await.unwrap();
        let (n, from) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
            .await
            .expect("an answer through the lb")
            .unwrap();
        assert_eq!(from, l.addr, "the answer comes from the lb's address");
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(
            text.contains(&format!("client={me} source=proxy-protocol")),
            "{text}"
        );
    }
    // PROXY v1 has no datagram form: refused at start.
    let out = Command::new(env!("CARGO_BIN_EXE_realip"))
        .args([
            "lb",
            "--mode",
            "udp",
            "--listen",
            "127.0.0.1:0",
            "--backend",
            &backend,
            "--client-ip",
            "proxy-v1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn a_proxy_header_from_a_trusted_lb_is_relayed() {
    // client -> lb1 (PROXY v2 out) -> lb2 (PROXY v2 in, v1 out) -> whoami.
    let w = whoami(&["--proxy-protocol", "v1", "--trusted", "127.0.0.1/32"]);
    let backend = w.http.to_string();
    let lb2 = lb(&[
        "--backend",
        &backend,
        "--client-ip",
        "proxy-v1",
        "--accept-proxy",
        "v2",
        "--trusted",
        "127.0.0.1/32",
    ]);
    let lb2_addr = lb2.addr.to_string();
    let lb1 = lb(&["--backend", &lb2_addr, "--client-ip", "proxy-v2"]);
    let (realip, me) = realip_via(&lb1, "127.0.0.2", &[]).await;
    assert_eq!(realip, me.to_string(), "the client, two LBs away");
    // Straight to lb2 from a peer it does not trust: closed, header or not.
    let mut c = connect_from("127.0.0.2", lb2.addr).await;
    let out = raw_exchange(&mut c, b"GET /realip HTTP/1.0\r\n\r\n").await;
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
}

#[tokio::test]
async fn behind_a_proxy_header_the_connection_event_names_the_socket_peer() {
    // 127.0.0.3 plays an LB in front; the backend is told the client it named.
    let w = whoami(&["--proxy-protocol", "v1", "--trusted", "127.0.0.1/32"]);
    let backend = w.http.to_string();
    let (child, line, logs) = spawn_listening(&[
        "lb",
        "--listen",
        "127.0.0.1:0",
        "--backend",
        &backend,
        "--client-ip",
        "proxy-v1",
        "--accept-proxy",
        "v1",
        "--trusted",
        "127.0.0.3/32",
    ]);
    let l = Lb {
        addr: field(&line, "tcp").unwrap(),
        child,
    };
    let mut stream = connect_from("127.0.0.3", l.addr).await;
    let front = stream.local_addr().unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut stream,
        b"PROXY TCP4 203.0.113.9 127.0.0.1 4444 80\r\n",
    )
    .await
    .unwrap();
    let (status, _, body) = http1_over(stream, "GET", "/realip", &[], "").await;
    assert_eq!((status, body.as_str()), (200, "203.0.113.9:4444"));
    let f = &event(&logs, "connected")["fields"];
    assert_eq!(f["peer"], front.to_string(), "{f}");
    assert_eq!(f["client"], "203.0.113.9:4444", "{f}");
    assert_eq!(f["source"], "proxy-protocol", "{f}");
    assert_eq!(f["backend"], backend, "{f}");
}

#[tokio::test]
async fn metrics_count_connections_and_show_backend_health() {
    let w = whoami(&[]);
    let backend = w.http.to_string();
    let (child, line, logs) = spawn_listening(&[
        "lb",
        "--listen",
        "127.0.0.1:0",
        "--backend",
        &backend,
        "--metrics",
        "127.0.0.1:0",
        "--health",
        "tcp",
        "--health-interval",
        "100ms",
    ]);
    std::thread::spawn(move || for _ in logs {});
    let l = Lb {
        addr: field(&line, "tcp").unwrap(),
        child,
    };
    let metrics = field(&line, "metrics").expect("metrics address");
    let (realip, _) = realip_via(&l, "127.0.0.2", &[]).await;
    assert!(realip.starts_with("127.0.0.1:"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (s, _, page) = get_from("127.0.0.1", metrics, "/metrics", &[]).await;
    assert_eq!(s, 200);
    assert!(
        page.contains("realip_lb_connections_total{listener=\"tcp\"} 1\n"),
        "{page}"
    );
    assert!(
        page.contains(&format!(
            "realip_lb_backend_up{{pool=\"default\",backend=\"{backend}\"}} 1\n"
        )),
        "{page}"
    );
    assert!(
        page.contains("realip_lb_health_check_seconds{pool=\"default\",backend="),
        "{page}"
    );
    let (s, _, _) = get_from("127.0.0.1", metrics, "/other", &[]).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn sigterm_lets_open_connections_finish() {
    let w = whoami(&[]);
    let backend = w.http.to_string();
    let mut l = lb(&["--backend", &backend, "--grace", "5s"]);
    let addr = l.addr;
    let slow = tokio::spawn(async move {
        let stream = connect_from("127.0.0.2", addr).await;
        http1_over(stream, "GET", "/clientip?wait=800ms", &[], "").await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pid = l.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    // The request in flight still gets its answer...
    let (status, _, body) = slow.await.unwrap();
    assert_eq!(status, 200, "{body}");
    // ...new connections are refused once it stopped accepting...
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    // ...and it exits 0.
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = l.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "lb did not exit after draining");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn proxy_v2_tlvs_from_the_config_file() {
    use realip_core::proxy::{self, Parsed, Tlv};
    use tokio::io::AsyncReadExt;
    // The backend reads the raw header itself, to see every TLV.
    let backend = tokio::net::TcpListener::bind("127.0.0.10:0").await.unwrap();
    let baddr = backend.local_addr().unwrap();
    let dir = scratch("lbtlv");
    let path = dir.join("lb.yaml");
    std::fs::write(
        &path,
        format!(
            "pools:\n  p: {{backends: [\"{baddr}\"]}}\nlisteners:\n  - mode: tcp\n    listen: 127.0.0.1:0\n    pool: p\n    client_ip: proxy-v2\n    proxy_v2: {{unique_id: true, crc32c: true, authority: shop.example}}\n"
        ),
    )
    .unwrap();
    let (child, line, logs) = spawn_listening(&["lb", "--config", path.to_str().unwrap()]);
    std::thread::spawn(move || for _ in logs {});
    let l = Lb {
        addr: field(&line, "tcp").unwrap(),
        child,
    };
    let mut ids = Vec::new();
    for _ in 0..2 {
        let client = connect_from("127.0.0.3", l.addr).await;
        let me = client.local_addr().unwrap();
        let (mut s, _) = tokio::time::timeout(Duration::from_secs(5), backend.accept())
            .await
            .unwrap()
            .unwrap();
        let mut buf = vec![0u8; 512];
        let mut n = 0;
        let header = loop {
            let r = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf[n..]))
                .await
                .unwrap()
                .unwrap();
            assert!(r > 0, "closed before a whole header");
            n += r;
            // A wrong CRC32C fails the parse.
            match proxy::parse(&buf[..n], &proxy::ParseConfig::default()).unwrap() {
                Parsed::Complete(h) => break h,
                Parsed::Incomplete { .. } => continue,
            }
        };
        assert_eq!(header.addresses.source(), Some(me));
        let tlvs: Vec<Tlv> = header.tlvs().collect();
        assert!(tlvs.contains(&Tlv::Authority("shop.example")), "{tlvs:?}");
        assert!(tlvs.iter().any(|t| matches!(t, Tlv::Crc32c(_))), "{tlvs:?}");
        let id = tlvs
            .iter()
            .find_map(|t| match t {
                Tlv::UniqueId(v) => Some(v.to_vec()),
                _ => None,
            })
            .expect("a UNIQUE_ID");
        assert_eq!(id.len(), 32);
        ids.push(id);
        drop(client);
    }
    assert_ne!(ids[0], ids[1], "one id per connection");
    let _ = std::fs::remove_dir_all(&dir);
}
