//! The health servers on real loopback sockets: what a cloud LB's probe
//! sees on healthCheckNodePort and on 10256.
// A test crate: its items are shared between its modules, not an API.
#![allow(missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use realip_node::health::{serve, ProxyHealth, Responder, ServiceHealthState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: lb-probe\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

#[tokio::test]
async fn health_check_node_port_answers_like_kube_proxy() {
    let proxy = Arc::new(ProxyHealth::new(Duration::from_secs(30)));
    proxy.updated(SystemTime::now());
    let state = Arc::new(ServiceHealthState {
        namespace: "demo".into(),
        name: "web-local".into(),
        local_endpoints: AtomicUsize::new(1),
        proxy: proxy.clone(),
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let server = tokio::spawn(serve(l, Responder::Service(state.clone())));
    // Any path answers.
    for path in ["/healthz", "/", "/anything"] {
        let r = get(addr, path).await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        let lower = r.to_ascii_lowercase();
        assert!(lower.contains("content-type: application/json\r\n"), "{r}");
        assert!(lower.contains("x-content-type-options: nosniff\r\n"), "{r}");
        assert!(
            lower.contains("x-load-balancing-endpoint-weight: 1\r\n"),
            "{r}"
        );
        assert!(r.ends_with("\r\n\r\n{\n\t\"service\": {\n\t\t\"namespace\": \"demo\",\n\t\t\"name\": \"web-local\"\n\t},\n\t\"localEndpoints\": 1,\n\t\"serviceProxyHealthy\": true\n}"), "{r}");
    }
    state.local_endpoints.store(0, Ordering::Relaxed);
    let r = get(addr, "/healthz").await;
    assert!(r.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{r}");
    assert!(r.contains("\"localEndpoints\": 0"), "{r}");
    server.abort();

    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let server = tokio::spawn(serve(l, Responder::Proxy(proxy.clone())));
    let r = get(addr, "/healthz").await;
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    assert!(r.contains("\"nodeEligible\": true}"), "{r}");
    let r = get(addr, "/livez").await;
    assert!(
        r.starts_with("HTTP/1.1 200 OK\r\n") && !r.contains("nodeEligible"),
        "{r}"
    );
    proxy.set_node_eligible(false);
    let r = get(addr, "/healthz").await;
    assert!(r.starts_with("HTTP/1.1 503"), "{r}");
    let r = get(addr, "/other").await;
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    server.abort();
}
