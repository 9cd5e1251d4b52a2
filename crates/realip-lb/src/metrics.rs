//! `/metrics` in Prometheus' text format: connections, bytes, and each
//! backend's health, weight and last check time.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use crate::pool::Pool;
use crate::tcp::TcpStats;

/// The metrics page.
pub fn render(stats: &TcpStats, pool: &Pool) -> String {
    let mut out = String::new();
    let counter = |out: &mut String, name: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    };
    counter(
        &mut out,
        "realip_lb_connections_total",
        "Connections accepted.",
        stats.accepted.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "realip_lb_connection_failures_total",
        "Connections that found no backend that answered, or a bad PROXY header.",
        stats.failed.load(Ordering::Relaxed),
    );
    let _ = writeln!(
        out,
        "# HELP realip_lb_bytes_total Bytes relayed, by direction.\n# TYPE realip_lb_bytes_total counter\nrealip_lb_bytes_total{{direction=\"up\"}} {}\nrealip_lb_bytes_total{{direction=\"down\"}} {}",
        stats.bytes_up.load(Ordering::Relaxed),
        stats.bytes_down.load(Ordering::Relaxed)
    );
    let status = pool.status();
    out.push_str("# HELP realip_lb_backend_up Whether the backend takes traffic.\n# TYPE realip_lb_backend_up gauge\n");
    for b in &status {
        let _ = writeln!(
            out,
            "realip_lb_backend_up{{backend=\"{}\"}} {}",
            b.addr,
            u8::from(b.up)
        );
    }
    out.push_str("# HELP realip_lb_backend_weight The weight the backend is scheduled with.\n# TYPE realip_lb_backend_weight gauge\n");
    for b in &status {
        let _ = writeln!(
            out,
            "realip_lb_backend_weight{{backend=\"{}\"}} {}",
            b.addr, b.weight
        );
    }
    out.push_str("# HELP realip_lb_health_check_seconds How long the backend's last health check took.\n# TYPE realip_lb_health_check_seconds gauge\n");
    for b in &status {
        if let Some(d) = b.last_check {
            let _ = writeln!(
                out,
                "realip_lb_health_check_seconds{{backend=\"{}\"}} {:.6}",
                b.addr,
                d.as_secs_f64()
            );
        }
    }
    out
}

/// Serve `/metrics` on `listener` until the process ends: one small
/// HTTP/1 answer per request, bounded reads, a deadline per request head.
pub async fn serve(
    listener: tokio::net::TcpListener,
    stats: std::sync::Arc<TcpStats>,
    pool: std::sync::Arc<Pool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            continue;
        };
        let (stats, pool) = (stats.clone(), pool.clone());
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
                ("200 OK", render(&stats, &pool))
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
