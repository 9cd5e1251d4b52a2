//! `/metrics` in Prometheus' text format: per listener connections, bytes,
//! HTTP responses by class, retries and UDP datagrams and flows; per pool
//! each backend's health, weight and last check time.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::http::HttpStats;
use crate::pool::Pool;
use crate::tcp::TcpStats;
use crate::udp::UdpStats;

/// One listener's counters.
#[derive(Debug, Clone)]
pub struct ListenerView {
    /// Its name (the `listener` label).
    pub name: String,
    /// Connection counters (TCP and HTTP listeners).
    pub conns: Option<Arc<TcpStats>>,
    /// Request counters (HTTP listeners).
    pub http: Option<Arc<HttpStats>>,
    /// Datagram counters (UDP listeners).
    pub udp: Option<Arc<UdpStats>>,
}

/// What `/metrics` shows; replaced on a reload.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Every listener.
    pub listeners: Vec<ListenerView>,
    /// Every pool, by name.
    pub pools: Vec<(String, Arc<Pool>)>,
}

struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
    fn line(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        let _ = writeln!(self.out, "{name}{{{labels}}} {value}");
    }
}

/// The metrics page.
pub fn render(view: &View) -> String {
    let mut out = String::new();
    let mut f = Family { out: &mut out };
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let tcp: Vec<_> = view
        .listeners
        .iter()
        .filter_map(|l| l.conns.as_ref().map(|c| (l.name.as_str(), c)))
        .collect();
    f.head(
        "realip_lb_connections_total",
        "counter",
        "Connections accepted.",
    );
    for (name, c) in &tcp {
        f.line(
            "realip_lb_connections_total",
            &format!("listener=\"{name}\""),
            load(&c.accepted),
        );
    }
    f.head(
        "realip_lb_connections_open",
        "gauge",
        "Connections open now.",
    );
    for (name, c) in &tcp {
        f.line(
            "realip_lb_connections_open",
            &format!("listener=\"{name}\""),
            load(&c.open),
        );
    }
    f.head(
        "realip_lb_connection_failures_total",
        "counter",
        "Connections that found no backend that answered, or a bad PROXY header or TLS handshake.",
    );
    for (name, c) in &tcp {
        f.line(
            "realip_lb_connection_failures_total",
            &format!("listener=\"{name}\""),
            load(&c.failed),
        );
    }
    f.head(
        "realip_lb_bytes_total",
        "counter",
        "Bytes between clients and this LB (TCP and HTTP listeners), by direction: up is from the client.",
    );
    for (name, c) in &tcp {
        f.line(
            "realip_lb_bytes_total",
            &format!("listener=\"{name}\",direction=\"up\""),
            load(&c.bytes_up),
        );
        f.line(
            "realip_lb_bytes_total",
            &format!("listener=\"{name}\",direction=\"down\""),
            load(&c.bytes_down),
        );
    }
    let http: Vec<_> = view
        .listeners
        .iter()
        .filter_map(|l| l.http.as_ref().map(|h| (l.name.as_str(), h)))
        .collect();
    if !http.is_empty() {
        f.head(
            "realip_lb_http_responses_total",
            "counter",
            "HTTP responses, by status class.",
        );
        for (name, h) in &http {
            for (i, c) in h.responses.iter().enumerate() {
                f.line(
                    "realip_lb_http_responses_total",
                    &format!("listener=\"{name}\",code=\"{}xx\"", i + 1),
                    load(c),
                );
            }
        }
        f.head(
            "realip_lb_http_retries_total",
            "counter",
            "Requests sent again to another backend.",
        );
        for (name, h) in &http {
            f.line(
                "realip_lb_http_retries_total",
                &format!("listener=\"{name}\""),
                load(&h.retries),
            );
        }
        f.head(
            "realip_lb_http_upstream_failures_total",
            "counter",
            "Requests no backend answered (502, 503, 504).",
        );
        for (name, h) in &http {
            f.line(
                "realip_lb_http_upstream_failures_total",
                &format!("listener=\"{name}\""),
                load(&h.upstream_failures),
            );
        }
    }
    let udp: Vec<_> = view
        .listeners
        .iter()
        .filter_map(|l| l.udp.as_ref().map(|u| (l.name.as_str(), u)))
        .collect();
    if !udp.is_empty() {
        f.head(
            "realip_lb_udp_datagrams_total",
            "counter",
            "Datagrams relayed, by direction.",
        );
        for (name, u) in &udp {
            f.line(
                "realip_lb_udp_datagrams_total",
                &format!("listener=\"{name}\",direction=\"up\""),
                load(&u.datagrams_up),
            );
            f.line(
                "realip_lb_udp_datagrams_total",
                &format!("listener=\"{name}\",direction=\"down\""),
                load(&u.datagrams_down),
            );
        }
        f.head(
            "realip_lb_udp_bytes_total",
            "counter",
            "Datagram payload bytes relayed, by direction.",
        );
        for (name, u) in &udp {
            f.line(
                "realip_lb_udp_bytes_total",
                &format!("listener=\"{name}\",direction=\"up\""),
                load(&u.bytes_up),
            );
            f.line(
                "realip_lb_udp_bytes_total",
                &format!("listener=\"{name}\",direction=\"down\""),
                load(&u.bytes_down),
            );
        }
        f.head("realip_lb_udp_flows_total", "counter", "UDP flows opened.");
        for (name, u) in &udp {
            f.line(
                "realip_lb_udp_flows_total",
                &format!("listener=\"{name}\""),
                load(&u.flows_opened),
            );
        }
        f.head("realip_lb_udp_flows_open", "gauge", "UDP flows now.");
        for (name, u) in &udp {
            f.line(
                "realip_lb_udp_flows_open",
                &format!("listener=\"{name}\""),
                load(&u.flows_open),
            );
        }
        f.head(
            "realip_lb_udp_dropped_total",
            "counter",
            "Datagrams dropped: flow table full, no backend up, or the send failed.",
        );
        for (name, u) in &udp {
            f.line(
                "realip_lb_udp_dropped_total",
                &format!("listener=\"{name}\""),
                load(&u.dropped),
            );
        }
    }
    let pools: Vec<_> = view
        .pools
        .iter()
        .map(|(n, p)| (n.as_str(), p.status()))
        .collect();
    f.head(
        "realip_lb_backend_up",
        "gauge",
        "Whether the backend takes traffic.",
    );
    for (pool, status) in &pools {
        for b in status {
            f.line(
                "realip_lb_backend_up",
                &format!("pool=\"{pool}\",backend=\"{}\"", b.addr),
                u8::from(b.up),
            );
        }
    }
    f.head(
        "realip_lb_backend_weight",
        "gauge",
        "The weight the backend is scheduled with.",
    );
    for (pool, status) in &pools {
        for b in status {
            f.line(
                "realip_lb_backend_weight",
                &format!("pool=\"{pool}\",backend=\"{}\"", b.addr),
                b.weight,
            );
        }
    }
    f.head(
        "realip_lb_health_check_seconds",
        "gauge",
        "How long the backend's last health check took.",
    );
    for (pool, status) in &pools {
        for b in status {
            if let Some(d) = b.last_check {
                f.line(
                    "realip_lb_health_check_seconds",
                    &format!("pool=\"{pool}\",backend=\"{}\"", b.addr),
                    format_args!("{:.6}", d.as_secs_f64()),
                );
            }
        }
    }
    out
}

/// Serve `/metrics` on `listener` until the process ends: one small
/// HTTP/1 answer per request, bounded reads, a deadline per request head.
pub async fn serve(
    listener: tokio::net::TcpListener,
    view: tokio::sync::watch::Receiver<Arc<View>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            continue;
        };
        let view = view.borrow().clone();
        tokio::spawn(async move {
            let mut head = Vec::with_capacity(1024);
            let mut buf = [0u8; 1024];
            let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                true
            })
            .await;
            if read != Ok(true) {
                return;
            }
            let line = head.split(|&c| c == b'\r').next().unwrap_or(&[]);
            let (status, body) = if line.starts_with(b"GET /metrics ") {
                ("200 OK", render(&view))
            } else {
                ("404 Not Found", "404 page not found\n".to_string())
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
        });
    }
}
