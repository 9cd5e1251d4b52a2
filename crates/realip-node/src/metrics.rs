//! The sync metrics, in the Prometheus text format under kube-proxy's
//! names (pkg/proxy/metrics), so that dashboards and alerts written for
//! kube-proxy read them unchanged.
//!
//! Written by hand: a few counters, gauges and three histograms need no
//! registry, and nothing here carries a label, so no object name from the
//! API server ever reaches the exposition (bounded size, nothing to
//! escape).

use std::fmt::Write;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::model::Model;

/// kube-proxy's sync buckets: `ExponentialBuckets(0.001, 2, 15)`, 1 ms to
/// 16.384 s. Written out so the `le` labels print as Go prints them.
pub const SYNC_BUCKETS: [f64; 15] = [
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192, 16.384,
];

#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Observations at or below each bound (not cumulative; summed when
    /// written).
    buckets: [u64; SYNC_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if let Some(i) = SYNC_BUCKETS.iter().position(|b| seconds <= *b) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} [ALPHA] {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, n) in SYNC_BUCKETS.iter().zip(self.buckets) {
            cumulative += n;
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

#[derive(Debug, Clone, Default)]
struct State {
    all: Histogram,
    full: Histogram,
    partial: Histogram,
    last_synced: Option<SystemTime>,
    last_queued: Option<SystemTime>,
    service_changes: u64,
    endpoint_changes: u64,
    sync_failures: u64,
}

/// What the agent's syncs did, for `/metrics`.
#[derive(Debug, Default)]
pub struct SyncMetrics {
    state: Mutex<State>,
}

/// How many Services and Services' endpoint sets differ between two
/// models: added, removed or changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Changes {
    /// Services.
    pub services: u64,
    /// Endpoint sets, one per Service.
    pub endpoints: u64,
}

/// The changes from `old` to `new`. kube-proxy counts informer events; a
/// source that reloads whole (files) has no events, so realip counts
/// what changed between two syncs' models instead: the same number when
/// every event changes something, fewer when events repeat a state.
pub fn changes(old: &Model, new: &Model) -> Changes {
    fn differing<K: Ord, V: PartialEq>(
        a: &std::collections::BTreeMap<K, V>,
        b: &std::collections::BTreeMap<K, V>,
    ) -> u64 {
        let changed_or_gone = a.iter().filter(|(k, v)| b.get(k) != Some(v)).count();
        let added = b.keys().filter(|k| !a.contains_key(k)).count();
        (changed_or_gone + added) as u64
    }
    Changes {
        services: differing(&old.services, &new.services),
        endpoints: differing(&old.endpoints, &new.endpoints),
    }
}

fn seconds_since_epoch(t: Option<SystemTime>) -> f64 {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0.0, |d| d.as_secs_f64())
}

impl SyncMetrics {
    /// A sync that took `took` reached the kernel at `at`; `full` when it
    /// replaced the tables whole.
    pub fn synced(&self, took: Duration, full: bool, at: SystemTime, changes: Changes) {
        if let Ok(mut s) = self.state.lock() {
            let secs = took.as_secs_f64();
            s.all.observe(secs);
            if full {
                s.full.observe(secs);
            } else {
                s.partial.observe(secs);
            }
            s.last_synced = Some(at);
            s.service_changes += changes.services;
            s.endpoint_changes += changes.endpoints;
        }
    }

    /// A sync did not reach the kernel.
    pub fn failed(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.sync_failures += 1;
        }
    }

    /// The objects changed at `at` and a sync is now due.
    pub fn queued(&self, at: SystemTime) {
        if let Ok(mut s) = self.state.lock() {
            s.last_queued = Some(at);
        }
    }

    /// The exposition, `text/plain; version=0.0.4`.
    pub fn render(&self) -> String {
        let s = self.state.lock().map(|s| s.clone()).unwrap_or_default();
        let mut out = String::with_capacity(4096);
        s.all.write(
            &mut out,
            "kubeproxy_sync_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds",
        );
        s.full.write(
            &mut out,
            "kubeproxy_sync_full_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for full resyncs",
        );
        s.partial.write(
            &mut out,
            "kubeproxy_sync_partial_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for partial resyncs",
        );
        let mut scalar = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(out, "# HELP {name} [ALPHA] {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {value}");
        };
        scalar(
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "gauge",
            "The last time proxy rules were successfully synced",
            seconds_since_epoch(s.last_synced).to_string(),
        );
        scalar(
            "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
            "gauge",
            "The last time a sync of proxy rules was queued",
            seconds_since_epoch(s.last_queued).to_string(),
        );
        scalar(
            "kubeproxy_sync_proxy_rules_service_changes_total",
            "counter",
            "Cumulative proxy rules Service changes",
            s.service_changes.to_string(),
        );
        scalar(
            "kubeproxy_sync_proxy_rules_endpoint_changes_total",
            "counter",
            "Cumulative proxy rules Endpoint changes",
            s.endpoint_changes.to_string(),
        );
        scalar(
            "kubeproxy_sync_proxy_rules_nftables_sync_failures_total",
            "counter",
            "Cumulative proxy nftables sync failures",
            s.sync_failures.to_string(),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::load_str;

    #[test]
    fn buckets_are_kube_proxys() {
        for (i, b) in SYNC_BUCKETS.iter().enumerate() {
            let want = 0.001 * 2f64.powi(i as i32);
            assert!((b - want).abs() < 1e-12, "bucket {i}: {b} vs {want}");
        }
    }

    #[test]
    fn exposition_has_kube_proxys_names_and_counts() {
        let m = SyncMetrics::default();
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        m.synced(
            Duration::from_micros(1500),
            true,
            at,
            Changes {
                services: 2,
                endpoints: 3,
            },
        );
        m.synced(Duration::from_secs(20), false, at, Changes::default());
        m.queued(at);
        m.failed();
        let text = m.render();
        for line in [
            "# TYPE kubeproxy_sync_proxy_rules_duration_seconds histogram",
            "kubeproxy_sync_proxy_rules_duration_seconds_bucket{le=\"0.001\"} 0",
            "kubeproxy_sync_proxy_rules_duration_seconds_bucket{le=\"0.002\"} 1",
            "kubeproxy_sync_proxy_rules_duration_seconds_bucket{le=\"16.384\"} 1",
            "kubeproxy_sync_proxy_rules_duration_seconds_bucket{le=\"+Inf\"} 2",
            "kubeproxy_sync_proxy_rules_duration_seconds_sum 20.0015",
            "kubeproxy_sync_proxy_rules_duration_seconds_count 2",
            "kubeproxy_sync_full_proxy_rules_duration_seconds_count 1",
            "kubeproxy_sync_partial_proxy_rules_duration_seconds_bucket{le=\"+Inf\"} 1",
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds 1700000000",
            "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds 1700000000",
            "kubeproxy_sync_proxy_rules_service_changes_total 2",
            "kubeproxy_sync_proxy_rules_endpoint_changes_total 3",
            "kubeproxy_sync_proxy_rules_nftables_sync_failures_total 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        // Every sample line is `name value` or `name{le="..."} value`.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = l.rsplit_once(' ').unwrap();
            assert!(name.starts_with("kubeproxy_"), "{l}");
            assert!(value.parse::<f64>().is_ok(), "{l}");
        }
    }

    #[test]
    fn never_synced_is_zero() {
        let text = SyncMetrics::default().render();
        assert!(text.contains("\nkubeproxy_sync_proxy_rules_last_timestamp_seconds 0\n"));
        assert!(text.contains("\nkubeproxy_sync_proxy_rules_duration_seconds_count 0\n"));
    }

    #[test]
    fn changes_count_services_and_endpoint_sets() {
        let before = load_str(
            r#"
kind: Service
metadata: {name: a, namespace: d}
spec: {clusterIP: 10.96.0.1, ports: [{port: 80}]}
---
kind: Service
metadata: {name: b, namespace: d}
spec: {clusterIP: 10.96.0.2, ports: [{port: 80}]}
---
kind: EndpointSlice
metadata: {name: a-1, namespace: d, labels: {kubernetes.io/service-name: a}}
addressType: IPv4
ports: [{port: 8080}]
endpoints: [{addresses: [10.0.0.1]}]
"#,
        )
        .0;
        let after = load_str(
            r#"
kind: Service
metadata: {name: a, namespace: d}
spec: {clusterIP: 10.96.0.1, ports: [{port: 81}]}
---
kind: Service
metadata: {name: c, namespace: d}
spec: {clusterIP: 10.96.0.3, ports: [{port: 80}]}
---
kind: EndpointSlice
metadata: {name: a-1, namespace: d, labels: {kubernetes.io/service-name: a}}
addressType: IPv4
ports: [{port: 8080}]
endpoints: [{addresses: [10.0.0.2]}]
"#,
        )
        .0;
        // a changed, b gone, c new; a's endpoints changed.
        assert_eq!(
            changes(&before, &after),
            Changes {
                services: 3,
                endpoints: 1
            }
        );
        assert_eq!(changes(&after, &after), Changes::default());
        assert_eq!(
            changes(&Model::default(), &after),
            Changes {
                services: 2,
                endpoints: 1
            }
        );
    }
}
