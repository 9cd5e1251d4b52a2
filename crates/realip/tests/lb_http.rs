//! `realip lb --mode http` and `--config`, end to end on loopback: clients
//! bound to their own 127.0.0.x addresses, the real binary as the proxy,
//! `realip whoami` backends that show which headers arrived and whom they
//! resolved.
// A test crate: its items are shared between its modules, not an API.
#![allow(missing_docs)]

mod common;

use std::net::SocketAddr;
use std::process::Child;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

struct Lb {
    child: Child,
    http: SocketAddr,
    line: String,
    logs: std::sync::mpsc::Receiver<String>,
}

impl Drop for Lb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lb_http(args: &[&str]) -> Lb {
    let mut all = vec!["lb", "--mode", "http", "--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    start(&all)
}

fn start(args: &[&str]) -> Lb {
    let (child, line, logs) = spawn_listening(args);
    let http = field(&line, "http").expect("http address");
    Lb {
        child,
        http,
        line,
        logs,
    }
}

/// GET `path` through the lb from `src`; whoami's `/api` JSON.
async fn api(lb: SocketAddr, src: &str, path: &str, headers: &[(&str, &str)]) -> serde_json::Value {
    let (status, _, body) = get_from(src, lb, path, headers).await;
    assert_eq!(status, 200, "{body}");
    json(&body)
}

fn header<'a>(v: &'a serde_json::Value, name: &str) -> Vec<&'a str> {
    v["headers"][name]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn forged_headers_from_an_untrusted_client_never_reach_the_backend() {
    // whoami trusts only the lb (127.0.0.1).
    let w = whoami(&["--listen", "127.0.0.10:0", "--trusted", "127.0.0.1/32"]);
    let l = lb_http(&["--backend", &w.http.to_string()]);
    let v = api(
        l.http,
        "127.0.0.2",
        "/api?x=1",
        &[
            ("X-Forwarded-For", "198.51.100.66"),
            ("X-Real-IP", "198.51.100.66"),
            ("Forwarded", "for=198.51.100.66"),
            ("X-Forwarded-Host", "evil.example"),
            ("X-Request-Id", "forged-id"),
        ],
    )
    .await;
    assert_eq!(v["realIp"]["ip"], "127.0.0.2", "{v}");
    assert_eq!(header(&v, "X-Forwarded-For"), ["127.0.0.2"]);
    assert_eq!(header(&v, "X-Real-Ip"), ["127.0.0.2"]);
    assert!(header(&v, "Forwarded").is_empty(), "{v}");
    assert_eq!(header(&v, "X-Forwarded-Host"), ["whoami.test"]);
    assert_eq!(header(&v, "X-Forwarded-Proto"), ["http"]);
    assert_eq!(header(&v, "X-Forwarded-Port"), [l.http.port().to_string()]);
    assert_eq!(header(&v, "X-Original-Uri"), ["/api?x=1"]);
    assert_eq!(header(&v, "X-Scheme"), ["http"]);
    let id = header(&v, "X-Request-Id");
    assert_eq!(id.len(), 1);
    assert_ne!(id[0], "forged-id");
    assert_eq!(id[0].len(), 32);
    // The backend saw the lb's address as its peer: the headers carried
    // the client.
    assert!(v["remoteAddr"].as_str().unwrap().starts_with("127.0.0.1:"));
}

#[tokio::test]
async fn a_trusted_upstream_chain_is_kept_and_resolved() {
    // 127.0.0.3 plays an L7 LB in front; the lb trusts it.
    let w = whoami(&["--trusted", "127.0.0.0/24"]);
    let l = lb_http(&[
        "--backend",
        &w.http.to_string(),
        "--trusted",
        "127.0.0.3/32",
        "--header",
        "x-forwarded-for",
        "--header",
        "x-real-ip",
        "--header",
        "forwarded",
        "--header",
        "x-request-id",
    ]);
    let v = api(
        l.http,
        "127.0.0.3",
        "/api",
        &[
            ("X-Forwarded-For", "203.0.113.7"),
            ("Forwarded", "for=203.0.113.7;proto=https"),
            ("X-Request-Id", "kept-0123"),
        ],
    )
    .await;
    assert_eq!(header(&v, "X-Forwarded-For"), ["203.0.113.7, 127.0.0.3"]);
    assert_eq!(header(&v, "X-Real-Ip"), ["203.0.113.7"]);
    assert_eq!(
        header(&v, "Forwarded"),
        ["for=203.0.113.7;proto=https, for=127.0.0.3;proto=http;host=whoami.test"]
    );
    assert_eq!(header(&v, "X-Request-Id"), ["kept-0123"]);
    assert_eq!(v["realIp"]["ip"], "203.0.113.7");
    // Only the headers asked for.
    assert!(header(&v, "X-Scheme").is_empty(), "{v}");
    // One event for the request, saying whom the lb believes and why.
    let event = (0..50)
        .find_map(|_| {
            let found = l
                .logs
                .try_iter()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(&line).ok())
                .find(|e| e["fields"]["message"] == "request");
            if found.is_none() {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            found
        })
        .expect("a request event");
    let f = &event["fields"];
    assert_eq!(
        f["peer"].as_str().map(|p| p.starts_with("127.0.0.3:")),
        Some(true),
        "{event}"
    );
    assert_eq!(f["client"], "203.0.113.7", "{event}");
    assert_eq!(f["source"], "X-Forwarded-For[0]", "{event}");
    assert_eq!(f["backend"], w.http.to_string(), "{event}");
    assert_eq!(
        (f["status"].as_u64(), f["tries"].as_u64()),
        (Some(200), Some(1)),
        "{event}"
    );
    // --client-ip none adds nothing, and still strips an untrusted peer's.
    let l = lb_http(&["--backend", &w.http.to_string(), "--client-ip", "none"]);
    let v = api(
        l.http,
        "127.0.0.2",
        "/api",
        &[("X-Forwarded-For", "1.2.3.4")],
    )
    .await;
    assert!(header(&v, "X-Forwarded-For").is_empty(), "{v}");
    assert_eq!(v["realIp"]["ip"], "127.0.0.1", "the seeds' problem: {v}");
}

#[tokio::test]
async fn behind_a_proxy_header_the_request_event_names_the_socket_peer() {
    // 127.0.0.3 plays an L4 LB in front that sends PROXY v1.
    let w = whoami(&["--trusted", "127.0.0.0/24"]);
    let backend = w.http.to_string();
    let l = lb_http(&[
        "--backend",
        &backend,
        "--accept-proxy",
        "v1",
        "--trusted",
        "127.0.0.3/32",
        "--header",
        "x-forwarded-for",
    ]);
    let mut stream = connect_from("127.0.0.3", l.http).await;
    let front = stream.local_addr().unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut stream,
        b"PROXY TCP4 203.0.113.9 127.0.0.1 4444 80\r\n",
    )
    .await
    .unwrap();
    let (status, _, body) = http1_over(stream, "GET", "/api", &[], "").await;
    assert_eq!(status, 200, "{body}");
    // The backend hears of the client the header named, as before.
    assert_eq!(header(&json(&body), "X-Forwarded-For"), ["203.0.113.9"]);
    let event = event(&l.logs, "request");
    let f = &event["fields"];
    assert_eq!(f["peer"], front.to_string(), "{event}");
    assert_eq!(f["client"], "203.0.113.9", "{event}");
    assert_eq!(f["source"], "proxy-protocol", "{event}");
    assert_eq!(f["backend"], backend, "{event}");
}

#[tokio::test]
async fn h2c_and_tls_h2_reach_an_http11_backend() {
    let pki = pki();
    let d = pki.dir.to_str().unwrap().to_string();
    let w = whoami(&["--trusted", "127.0.0.1/32"]);
    let backend = w.http.to_string();
    // h2c, prior knowledge.
    let l = lb_http(&["--backend", &backend]);
    let (status, body) = h2_over(connect_from("127.0.0.4", l.http).await, "/api", &[]).await;
    assert_eq!(status, 200, "{body}");
    let v = json(&body);
    assert_eq!(v["realIp"]["ip"], "127.0.0.4");
    // HTTP/1.1 to the backend needs Host: made from :authority.
    assert_eq!(header(&v, "Host"), ["whoami.test"]);
    assert_eq!(header(&v, "X-Forwarded-Host"), ["whoami.test"]);
    // TLS, h2 by ALPN, and HTTP/1.1 by ALPN.
    let l = lb_http(&[
        "--backend",
        &backend,
        "--tls-cert",
        &format!("{d}/cert.pem"),
        "--tls-key",
        &format!("{d}/key.pem"),
    ]);
    let s = tls_connect(&pki, l.http, false, &[b"h2"]).await.unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (status, body) = h2_over(s, "/api", &[]).await;
    assert_eq!(status, 200, "{body}");
    let v = json(&body);
    assert_eq!(v["realIp"]["ip"], "127.0.0.1");
    assert_eq!(header(&v, "X-Forwarded-Proto"), ["https"]);
    assert_eq!(header(&v, "X-Scheme"), ["https"]);
    let s = tls_connect(&pki, l.http, false, &[b"http/1.1"])
        .await
        .unwrap();
    let (status, _, body) = http1_over(s, "POST", "/api", &[], "a body").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["method"], "POST");
}

#[tokio::test]
async fn dead_backends_get_502_503_and_retries_hide_one() {
    let w = whoami(&["--name", "alive"]);
    // A port nothing listens on (bound, then closed).
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let l = lb_http(&[
        "--backend",
        &dead.to_string(),
        "--backend",
        &w.http.to_string(),
    ]);
    for _ in 0..6 {
        let v = api(l.http, "127.0.0.2", "/api", &[]).await;
        assert_eq!(v["name"], "alive");
    }
    // A POST with a body that never reached the dead backend is retried too.
    for _ in 0..4 {
        let (s, _, body) = http1_over(
            connect_from("127.0.0.2", l.http).await,
            "POST",
            "/api",
            &[],
            "x=1",
        )
        .await;
        assert_eq!(s, 200, "{body}");
    }
    let l = lb_http(&["--backend", &dead.to_string(), "--retries", "0"]);
    let (s, _, _) = get_from("127.0.0.2", l.http, "/api", &[]).await;
    assert_eq!(s, 502);
    // Every backend down by health check: 503.
    let l = lb_http(&[
        "--backend",
        &dead.to_string(),
        "--health",
        "tcp",
        "--health-interval",
        "50ms",
        "--fall",
        "1",
    ]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (s, _, body) = get_from("127.0.0.2", l.http, "/api", &[]).await;
    assert_eq!((s, body.as_str()), (503, "no backend is up\n"));
}

#[tokio::test]
async fn a_malformed_request_gets_400_and_a_slow_backend_504() {
    let w = whoami(&[]);
    let l = lb_http(&[
        "--backend",
        &w.http.to_string(),
        "--response-timeout",
        "300ms",
    ]);
    let mut c = connect_from("127.0.0.2", l.http).await;
    let out = raw_exchange(
        &mut c,
        b"GET / HTTP/1.1\r\nHost: x\r\nbad header line\r\n\r\n",
    )
    .await;
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let mut c = connect_from("127.0.0.2", l.http).await;
    let out = raw_exchange(&mut c, big.as_bytes()).await;
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    let mut c = connect_from("127.0.0.2", l.http).await;
    let out = raw_exchange(
        &mut c,
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
    )
    .await;
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    let (s, _, _) = get_from("127.0.0.2", l.http, "/clientip?wait=1s", &[]).await;
    assert_eq!(s, 504);
}

fn write_config(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let p = dir.join("lb.yaml");
    // Write then rename: a reload never reads half a file.
    let tmp = dir.join("lb.yaml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &p).unwrap();
    p
}

fn routed(a: &str, b: &str, port: u16) -> String {
    format!(
        "\
pools:
  a: {{backends: [\"{a}\"]}}
  b: {{backends: [\"{b}\"]}}
listeners:
  - name: ingress
    mode: http
    listen: 127.0.0.1:{port}
    routes:
      - {{host: shop.test, path: /, pool: a}}
      - {{path: /api, pool: b}}
metrics: 127.0.0.1:0
"
    )
}

#[tokio::test]
async fn config_routes_by_host_and_path_and_check_names_bad_lines() {
    let (a, b) = (
        whoami(&["--listen", "127.0.0.10:0", "--name", "a"]),
        whoami(&["--listen", "127.0.0.11:0", "--name", "b"]),
    );
    let dir = scratch("lbcfg");
    let path = write_config(&dir, &routed(&a.http.to_string(), &b.http.to_string(), 0));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_realip"))
        .args(["lb", "--config", path.to_str().unwrap(), "--check"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout)
        .starts_with("ok: 1 listener(s): ingress on 127.0.0.1:0"));
    let l = start(&["lb", "--config", path.to_str().unwrap()]);
    let name = |host: &'static str, path: &'static str| {
        let lb = l.http;
        async move {
            let (s, _, body) = get_from("127.0.0.2", lb, path, &[("Host", host)]).await;
            // whoami's text page names the backend on its first line.
            let name = body.lines().find_map(|l| l.strip_prefix("Name: "));
            (s, name.unwrap_or(&body).to_string())
        }
    };
    assert_eq!(name("shop.test", "/api/x").await, (200, "a".into()));
    assert_eq!(name("other.test", "/api/x").await, (200, "b".into()));
    assert_eq!(name("other.test", "/apix").await.0, 404);
    let metrics = field(&l.line, "metrics").unwrap();
    let (_, _, page) = get_from("127.0.0.1", metrics, "/metrics", &[]).await;
    assert!(
        page.contains("realip_lb_http_responses_total{listener=\"ingress\",code=\"2xx\"} 2\n"),
        "{page}"
    );
    assert!(
        page.contains("realip_lb_http_responses_total{listener=\"ingress\",code=\"4xx\"} 1\n"),
        "{page}"
    );
    // A bad file: refused with its file, line and reason.
    let bad = routed(&a.http.to_string(), &b.http.to_string(), 0).replace("pool: b}", "pool: c}");
    let path = write_config(&dir, &bad);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_realip"))
        .args(["lb", "--config", path.to_str().unwrap(), "--check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:10: no pool is named \"c\"", path.display())),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_reload_under_load_fails_no_request() {
    let (a, b) = (
        whoami(&["--listen", "127.0.0.10:0", "--name", "a"]),
        whoami(&["--listen", "127.0.0.11:0", "--name", "b"]),
    );
    let dir = scratch("lbreload");
    // A fixed port, so the reload keeps the same listener: pick a free one.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = write_config(
        &dir,
        &routed(&a.http.to_string(), &a.http.to_string(), port),
    );
    let mut l = start(&["lb", "--config", path.to_str().unwrap()]);
    let lb = l.http;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let seen_b = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    // Eight clients, each on a keep-alive connection, plus new connections.
    for i in 0..8 {
        let (stop, ok, failed, seen_b) = (stop.clone(), ok.clone(), failed.clone(), seen_b.clone());
        load.push(tokio::spawn(async move {
            use http_body_util::{BodyExt, Empty};
            while !stop.load(Ordering::Relaxed) {
                let io = hyper_util::rt::TokioIo::new(connect_from("127.0.0.2", lb).await);
                let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
                tokio::spawn(conn);
                for _ in 0..(20 + i) {
                    let req = http::Request::builder()
                        .uri("/api")
                        .header("host", "shop.test")
                        .body(Empty::<bytes::Bytes>::new())
                        .unwrap();
                    match send.send_request(req).await {
                        Ok(r) if r.status() == 200 => {
                            let body = r.into_body().collect().await.map(|b| b.to_bytes());
                            match body {
                                Ok(b) => {
                                    ok.fetch_add(1, Ordering::Relaxed);
                                    if json(&String::from_utf8_lossy(&b))["name"] == "b" {
                                        seen_b.fetch_add(1, Ordering::Relaxed);
                                    }
                                }
                                Err(_) => {
                                    failed.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = nix::unistd::Pid::from_raw(l.child.id() as i32);
    // A bad file first: refused, the old one keeps serving.
    write_config(&dir, "listeners: [\n");
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Then pool a moves to backend b.
    write_config(
        &dir,
        &routed(&b.http.to_string(), &b.http.to_string(), port),
    );
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = seen_b.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "{ok} succeeded");
    assert!(ok > 500, "{ok}");
    assert!(
        seen_b.load(Ordering::Relaxed) > before,
        "the reload took effect"
    );
    let logs: Vec<String> = l.logs.try_iter().collect();
    let refused = logs
        .iter()
        .find(|l| l.contains("reload refused"))
        .expect("refused line");
    assert!(refused.contains("lb.yaml:"), "{refused}");
    assert!(logs.iter().any(|l| l.contains("\"reloaded\"")), "{logs:?}");
    let _ = l.child.kill();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A scripted HTTP/1.1 backend: answers every request on a connection
/// with `reply(n)` (n counts requests on that connection), then closes if
/// `close_after` says so. Returns its address and a count of connections.
async fn scripted(
    reply: fn(usize, &str) -> Vec<u8>,
    close_after: fn(usize) -> bool,
) -> (SocketAddr, Arc<AtomicU64>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let conns = Arc::new(AtomicU64::new(0));
    let counted = conns.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            counted.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut n = 0;
                loop {
                    let mut chunk = [0u8; 4096];
                    let Ok(Ok(r)) =
                        tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk)).await
                    else {
                        return;
                    };
                    if r == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..r]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        buf.drain(..end + 4);
                        n += 1;
                        if s.write_all(&reply(n, &head)).await.is_err() {
                            return;
                        }
                        if close_after(n) {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, conns)
}

/// Send raw requests on one keep-alive connection and read `want` bytes of
/// answers (or until the proxy closes).
async fn raw_until(c: &mut tokio::net::TcpStream, send: &[u8], until: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    c.write_all(send).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    while !String::from_utf8_lossy(&out).contains(until) {
        match tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn the_http1_fast_path_frames_bodies_and_reuses_backend_connections() {
    // Chunked answers with a trailer, on a kept-alive backend connection.
    let (b, conns) = scripted(
        |n, head| {
            let xff = head
                .lines()
                .find_map(|l| l.strip_prefix("x-forwarded-for: "))
                .unwrap_or("none")
                .to_string();
            let body = format!("{n}:{xff}");
            let head_only = head.starts_with("HEAD ");
            let mut r =
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nKeep-Alive: timeout=5\r\n\r\n"
                    .to_string();
            if !head_only {
                r += &format!("{:x}\r\n{body}\r\n0\r\nX-Trailer: t\r\n\r\n", body.len());
            }
            r.into_bytes()
        },
        |_| false,
    )
    .await;
    let l = lb_http(&["--backend", &b.to_string()]);
    let mut c = connect_from("127.0.0.5", l.http).await;
    // Three pipelined requests in one write.
    let req = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
    let out = raw_until(&mut c, req.repeat(3).as_bytes(), "3:127.0.0.5").await;
    assert_eq!(out.matches("HTTP/1.1 200 OK\r\n").count(), 3, "{out}");
    assert!(out.contains("transfer-encoding: chunked\r\n"), "{out}");
    assert!(
        !out.to_ascii_lowercase().contains("keep-alive: timeout"),
        "hop-by-hop kept: {out}"
    );
    assert!(
        out.contains("1:127.0.0.5\r\n0\r\nX-Trailer: t\r\n\r\n"),
        "{out}"
    );
    // One backend connection carried them all, and carries the next client's.
    let mut c2 = connect_from("127.0.0.6", l.http).await;
    let out = raw_until(&mut c2, b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "0\r\nX-Trailer").await;
    assert!(out.contains("5:127.0.0.6"), "{out}");
    // A HEAD answer keeps the framing header it describes.
    assert!(
        out.starts_with("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nHTTP/1.1 200"),
        "{out}"
    );
    assert!(out.contains("connection: close\r\n"), "{out}");
    assert_eq!(conns.load(Ordering::Relaxed), 1);

    // A backend that closes after every answer without saying so: the
    // pooled connection is found dead and the request retried on a new one.
    let (b, conns) = scripted(
        |n, _| format!("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n{}", n % 10).into_bytes(),
        |_| true,
    )
    .await;
    let l = lb_http(&["--backend", &b.to_string()]);
    for _ in 0..5 {
        let (s, _, body) = get_from("127.0.0.2", l.http, "/", &[]).await;
        assert_eq!((s, body.as_str()), (200, "1"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(conns.load(Ordering::Relaxed), 5);

    // A large Content-Length body, an HTTP/1.0 client with keep-alive.
    let w = whoami(&[]);
    let l = lb_http(&["--backend", &w.http.to_string()]);
    let mut c = connect_from("127.0.0.2", l.http).await;
    let out = raw_until(
        &mut c,
        b"GET /data?size=300&unit=KB HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
        "\r\n\r\n",
    )
    .await;
    assert!(
        out.starts_with("HTTP/1.0 200"),
        "{}",
        &out[..out.len().min(300)]
    );
    assert!(
        out.contains("connection: keep-alive\r\n"),
        "{}",
        &out[..300]
    );
    let (s, _, body) = get_from("127.0.0.2", l.http, "/data?size=300&unit=KB", &[]).await;
    assert_eq!((s, body.len()), (200, 300 * 1024));
}

#[tokio::test]
async fn an_upgrade_is_passed_through_and_spliced() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A backend that switches to an upper-casing echo, after telling what
    // X-Forwarded-For it got.
    let l = tokio::net::TcpListener::bind("127.0.0.10:0").await.unwrap();
    let backend = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if s.read(&mut b).await.unwrap_or(0) == 0 {
                return;
            }
            head.push(b[0]);
        }
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let xff = head
            .lines()
            .find_map(|l| l.strip_prefix("x-forwarded-for: "))
            .unwrap_or("none")
            .to_string();
        let upgrade = head.contains("upgrade: echo") && head.contains("connection: upgrade");
        if !upgrade {
            let _ = s
                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                .await;
            return;
        }
        let _ = s
            .write_all(format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\nX-Seen-For: {xff}\r\n\r\n").as_bytes())
            .await;
        let mut buf = [0u8; 1024];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
            let _ = s.write_all(&buf[..n].to_ascii_uppercase()).await;
        }
    });
    // Only the protocols named pass (websocket by default), so this one
    // is named.
    let lb = lb_http(&["--backend", &backend.to_string(), "--upgrade", "echo"]);
    let mut c = connect_from("127.0.0.8", lb.http).await;
    let head = raw_until(
        &mut c,
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: echo\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n",
        "\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: echo"),
        "{head}"
    );
    // The forged header was dropped before the upgrade went on.
    assert!(
        head.to_ascii_lowercase()
            .contains("x-seen-for: 127.0.0.8\r\n"),
        "{head}"
    );
    let echoed = raw_until(&mut c, b"hello through", "HELLO THROUGH").await;
    assert!(echoed.ends_with("HELLO THROUGH"), "{echoed}");
}

#[tokio::test]
async fn a_broken_client_body_is_a_400_not_an_upstream_failure() {
    // The attack suite shows what the client and the backend got; this
    // checks whom the lb blames in /metrics.
    let w = whoami(&[]);
    let l = lb_http(&["--backend", &w.http.to_string(), "--metrics", "127.0.0.1:0"]);
    let metrics = field(&l.line, "metrics").expect("metrics address");
    let mut c = connect_from("127.0.0.2", l.http).await;
    let out = raw_exchange(
        &mut c,
        b"POST /api HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert!(
        out.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    // Closed after the 400: the request behind the broken body was no request.
    assert_eq!(out.windows(9).filter(|w| w == b"HTTP/1.1 ").count(), 1);
    let (s, _, page) = get_from("127.0.0.1", metrics, "/metrics", &[]).await;
    assert_eq!(s, 200);
    let failures = page
        .lines()
        .find(|l| l.starts_with("realip_lb_http_upstream_failures_total{"))
        .unwrap_or_else(|| panic!("{page}"));
    assert!(failures.ends_with(" 0"), "{failures}");
    assert!(page.contains("realip_lb_http_responses_total"), "{page}");
}

#[tokio::test]
async fn the_config_names_upgrades_and_underscores_and_refuses_h2c() {
    let dir = scratch("lbcfg-upgrades");
    let text = |upgrades: &str| {
        format!(
            "pools:\n  p:\n    backends: [127.0.0.10:9]\nlisteners:\n  - mode: http\n    listen: 127.0.0.1:0\n    underscores: pass\n    upgrades: [{upgrades}]\n    routes:\n      - {{path: /, pool: p}}\n"
        )
    };
    let check = |path: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_realip"))
            .args(["lb", "--config", path.to_str().unwrap(), "--check"])
            .output()
            .unwrap()
    };
    let ok = check(&write_config(&dir, &text("websocket, echo/2")));
    assert!(ok.status.success(), "{ok:?}");
    // h2c's tunnel would carry later requests past the rewriting.
    let path = write_config(&dir, &text("websocket, h2c"));
    let out = check(&path);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:8:", path.display())), "{err}");
    assert!(err.contains("\"h2c\" cannot be passed through"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn heads_in_pieces_go_through_and_a_slow_head_gets_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A backend answering every request in three writes: a 103 cut inside
    // its status line, then the rest of it with the final head cut inside
    // a header name, then the rest.
    let b = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = b.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = b.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let (mut buf, mut chunk) = (Vec::new(), [0u8; 4096]);
                loop {
                    let Ok(n @ 1..) = s.read(&mut chunk).await else {
                        return;
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        for piece in [
                            &b"HTTP/1.1 10"[..],
                            b"3 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nCont",
                            b"ent-Length: 2\r\n\r\nok",
                        ] {
                            if s.write_all(piece).await.is_err() {
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            });
        }
    });
    let dir = scratch("lbheads");
    let config = format!(
        "\
pools:
  a: {{backends: [\"{backend}\"]}}
listeners:
  - name: ingress
    mode: http
    listen: 127.0.0.1:0
    header_timeout: 1s
    routes:
      - {{path: /, pool: a}}
"
    );
    let l = start(&[
        "lb",
        "--config",
        write_config(&dir, &config).to_str().unwrap(),
    ]);
    let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut c = connect_from("127.0.0.2", l.http).await;
    let out = raw_until(&mut c, req, "\r\n\r\nok").await;
    assert!(
        out.starts_with("HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\n"),
        "{out}"
    );
    // Idle between requests for longer than the header timeout: the wait
    // for a head's first byte is the keep-alive time, not that.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let out = raw_until(&mut c, req, "\r\n\r\nok").await;
    assert!(out.contains("HTTP/1.1 200 OK\r\n"), "{out}");
    // Half a head, then silence: 408 at the header timeout.
    let t = std::time::Instant::now();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut out)).await;
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "slow head closed after {waited:?}"
    );
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    // The header timeout counts from the head's first byte.
    let mut c = connect_from("127.0.0.2", l.http).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let t = std::time::Instant::now();
    c.write_all(b"GET / HT").await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut out)).await;
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "closed {waited:?} after the first byte"
    );
    assert!(out.starts_with(b"HTTP/1.1 408"), "{out:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
