//! Health answers, byte for byte as kube-proxy writes them
//! (pkg/proxy/healthcheck), because cloud load balancers parse them.
//!
//! The responses are pure values; [`serve`] puts one behind a listener.
//! The same server answers kube-proxy's metrics port (`/proxyMode`,
//! `/metrics`), which the seeds and Prometheus read.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::metrics::SyncMetrics;

/// A health response: status, headers, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthResponse {
    /// 200 or 503.
    pub status: u16,
    /// Headers, in kube-proxy's order.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: String,
}

fn go_quote(s: &str) -> String {
    // Go's %q for the ASCII names Kubernetes allows; escape the rest.
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_ascii_graphic() || c == ' ' => out.push(c),
            c => out.push_str(&format!("\\u{:04x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// The healthCheckNodePort answer: 200 when this node has ready endpoints
/// and the proxy is healthy, else 503; the endpoint count in a header (GCP
/// weighs by it) and in the body.
pub fn service_health(
    namespace: &str,
    name: &str,
    local_endpoints: usize,
    proxy_healthy: bool,
) -> HealthResponse {
    let status = if local_endpoints != 0 && proxy_healthy {
        200
    } else {
        503
    };
    // kube-proxy dedents a tab-indented literal; this is its output.
    let body = format!(
        "{{\n\t\"service\": {{\n\t\t\"namespace\": {},\n\t\t\"name\": {}\n\t}},\n\t\"localEndpoints\": {},\n\t\"serviceProxyHealthy\": {}\n}}",
        go_quote(namespace),
        go_quote(name),
        local_endpoints,
        proxy_healthy
    );
    HealthResponse {
        status,
        headers: vec![
            ("Content-Type", "application/json".into()),
            ("X-Content-Type-Options", "nosniff".into()),
            (
                "X-Load-Balancing-Endpoint-Weight",
                local_endpoints.to_string(),
            ),
        ],
        body,
    }
}

/// Go's `time.Time.String()` for a UTC time, without the monotonic suffix:
/// `2006-01-02 15:04:05.999999999 +0000 UTC`.
pub fn go_time(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut frac = String::new();
    if d.subsec_nanos() != 0 {
        frac = format!(".{:09}", d.subsec_nanos());
        while frac.ends_with('0') {
            frac.pop();
        }
    }
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}{frac} +0000 UTC",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// The proxy's own health: healthy while syncs keep coming.
#[derive(Debug)]
pub struct ProxyHealth {
    sync_period: Duration,
    last_updated: Mutex<Option<SystemTime>>,
    node_eligible: AtomicBool,
}

impl ProxyHealth {
    /// A health tracker; unhealthy until the first sync.
    pub fn new(sync_period: Duration) -> Self {
        ProxyHealth {
            sync_period,
            last_updated: Mutex::new(None),
            node_eligible: AtomicBool::new(true),
        }
    }

    /// A sync finished at `at`.
    pub fn updated(&self, at: SystemTime) {
        if let Ok(mut g) = self.last_updated.lock() {
            *g = Some(at);
        }
    }

    /// Mark the node as being deleted (or back).
    pub fn set_node_eligible(&self, eligible: bool) {
        self.node_eligible.store(eligible, Ordering::Relaxed);
    }

    fn state(&self, now: SystemTime) -> (bool, SystemTime) {
        let last = self.last_updated.lock().ok().and_then(|g| *g);
        match last {
            // Unhealthy when the last update is older than two periods.
            Some(t) => (
                now.duration_since(t).unwrap_or_default() <= 2 * self.sync_period,
                t,
            ),
            None => (false, UNIX_EPOCH),
        }
    }

    /// Whether `/healthz` would say 200.
    pub fn healthy(&self, now: SystemTime) -> bool {
        self.state(now).0 && self.node_eligible.load(Ordering::Relaxed)
    }

    /// Port 10256 `/healthz`.
    pub fn healthz(&self, now: SystemTime) -> HealthResponse {
        let eligible = self.node_eligible.load(Ordering::Relaxed);
        let (healthy, last) = self.state(now);
        let healthy = healthy && eligible;
        // kube-proxy reports "now" as lastUpdated when healthy.
        let last = if healthy { now } else { last };
        HealthResponse {
            status: if healthy { 200 } else { 503 },
            headers: json_headers(),
            body: format!(
                "{{\"lastUpdated\": {},\"currentTime\": {}, \"nodeEligible\": {eligible}}}",
                go_quote(&go_time(last)),
                go_quote(&go_time(now))
            ),
        }
    }

    /// Port 10256 `/livez`.
    pub fn livez(&self, now: SystemTime) -> HealthResponse {
        let (healthy, last) = self.state(now);
        let last = if healthy { now } else { last };
        HealthResponse {
            status: if healthy { 200 } else { 503 },
            headers: json_headers(),
            body: format!(
                "{{\"lastUpdated\": {},\"currentTime\": {}}}",
                go_quote(&go_time(last)),
                go_quote(&go_time(now))
            ),
        }
    }
}

fn json_headers() -> Vec<(&'static str, String)> {
    vec![
        ("Content-Type", "application/json".into()),
        ("X-Content-Type-Options", "nosniff".into()),
    ]
}

/// What one healthCheckNodePort server reports; the sync loop updates the
/// count, the server reads it per request.
#[derive(Debug)]
pub struct ServiceHealthState {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Ready endpoints on this node.
    pub local_endpoints: AtomicUsize,
    /// The proxy's health.
    pub proxy: Arc<ProxyHealth>,
}

/// Which answer a server gives.
#[derive(Debug, Clone)]
pub enum Responder {
    /// A healthCheckNodePort: the same answer on every path.
    Service(Arc<ServiceHealthState>),
    /// Port 10256: `/healthz` and `/livez`.
    Proxy(Arc<ProxyHealth>),
    /// Port 10249: `/proxyMode`, `/metrics` and a plain `/healthz`.
    Metrics(Arc<SyncMetrics>),
}

fn not_found() -> HealthResponse {
    HealthResponse {
        status: 404,
        headers: vec![("Content-Type", "text/plain; charset=utf-8".into())],
        body: "404 page not found\n".into(),
    }
}

/// The metrics port's answers, as kube-proxy's `serveMetrics` mux gives
/// them: `/proxyMode` names the mode (tools such as the e2e tests curl
/// it to learn which proxy runs), `/healthz` is the apiserver library's
/// plain `ok`, `/metrics` the exposition.
pub fn metrics_response(path: &str, metrics: &SyncMetrics) -> HealthResponse {
    let text = |body: String, content_type: &str| HealthResponse {
        status: 200,
        headers: vec![
            ("Content-Type", content_type.into()),
            ("X-Content-Type-Options", "nosniff".into()),
        ],
        body,
    };
    match path {
        "/proxyMode" => text("nftables".into(), "text/plain; charset=utf-8"),
        "/healthz" => text("ok".into(), "text/plain; charset=utf-8"),
        "/metrics" => text(metrics.render(), "text/plain; version=0.0.4; charset=utf-8"),
        _ => not_found(),
    }
}

impl Responder {
    /// The answer for `path` now.
    pub fn respond(&self, path: &str) -> HealthResponse {
        let now = SystemTime::now();
        match self {
            Responder::Service(s) => service_health(
                &s.namespace,
                &s.name,
                s.local_endpoints.load(Ordering::Relaxed),
                s.proxy.healthy(now),
            ),
            Responder::Proxy(p) => match path {
                "/livez" => p.livez(now),
                "/healthz" => p.healthz(now),
                _ => not_found(),
            },
            Responder::Metrics(m) => metrics_response(path, m),
        }
    }
}

/// Serve `responder` on `listener` until the task is dropped. Connections
/// get 10 s for a request head and are served one request at a time.
pub async fn serve(listener: tokio::net::TcpListener, responder: Responder) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    loop {
        let (stream, _peer): (tokio::net::TcpStream, SocketAddr) = match listener.accept().await {
            Ok(x) => x,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let responder = responder.clone();
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let r = responder.respond(req.uri().path());
                    async move {
                        let mut resp = http::Response::new(http_body_util::Full::new(
                            bytes::Bytes::from(r.body),
                        ));
                        *resp.status_mut() = http::StatusCode::from_u16(r.status)
                            .unwrap_or(http::StatusCode::SERVICE_UNAVAILABLE);
                        for (k, v) in r.headers {
                            if let Ok(v) = http::HeaderValue::from_str(&v) {
                                resp.headers_mut().insert(k, v);
                            }
                        }
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_health_matches_kube_proxy() {
        let r = service_health("demo", "web-local", 1, true);
        assert_eq!(r.status, 200);
        assert_eq!(
            r.body,
            "{\n\t\"service\": {\n\t\t\"namespace\": \"demo\",\n\t\t\"name\": \"web-local\"\n\t},\n\t\"localEndpoints\": 1,\n\t\"serviceProxyHealthy\": true\n}"
        );
        assert_eq!(
            r.headers[2],
            ("X-Load-Balancing-Endpoint-Weight", "1".to_string())
        );
        assert_eq!(service_health("demo", "web-local", 0, true).status, 503);
        assert_eq!(service_health("demo", "web-local", 2, false).status, 503);
    }

    #[test]
    fn go_time_format() {
        let t = UNIX_EPOCH + Duration::new(1_764_025_200, 500_000_000);
        assert_eq!(go_time(t), "2025-11-24 23:00:00.5 +0000 UTC");
        assert_eq!(go_time(UNIX_EPOCH), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(
            go_time(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29 00:00:00 +0000 UTC"
        );
    }

    #[test]
    fn metrics_port_paths() {
        let m = SyncMetrics::default();
        let r = metrics_response("/proxyMode", &m);
        assert_eq!((r.status, r.body.as_str()), (200, "nftables"));
        assert_eq!(
            r.headers[0],
            ("Content-Type", "text/plain; charset=utf-8".to_string())
        );
        let r = metrics_response("/metrics", &m);
        assert_eq!(r.status, 200);
        assert!(r
            .body
            .contains("kubeproxy_sync_proxy_rules_duration_seconds_count 0"));
        assert_eq!(metrics_response("/healthz", &m).body, "ok");
        assert_eq!(metrics_response("/configz", &m).status, 404);
    }

    #[test]
    fn proxy_health_ages_out() {
        let p = ProxyHealth::new(Duration::from_secs(30));
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(p.healthz(t0).status, 503);
        p.updated(t0);
        let r = p.healthz(t0 + Duration::from_secs(59));
        assert_eq!(r.status, 200);
        assert!(r.body.starts_with("{\"lastUpdated\": \"1970-01-12 13:47:39 +0000 UTC\",\"currentTime\": \"1970-01-12 13:47:39 +0000 UTC\", \"nodeEligible\": true}"), "{}", r.body);
        assert_eq!(p.healthz(t0 + Duration::from_secs(61)).status, 503);
        assert_eq!(p.livez(t0 + Duration::from_secs(1)).status, 200);
        p.set_node_eligible(false);
        assert_eq!(p.healthz(t0 + Duration::from_secs(1)).status, 503);
        assert!(p.healthz(t0).body.ends_with("\"nodeEligible\": false}"));
        // livez ignores eligibility.
        assert_eq!(p.livez(t0 + Duration::from_secs(1)).status, 200);
    }
}
