//! `realip node` on a live API server: the real etcd and kube-apiserver
//! (built by scripts/k8s) and the agent, all in one fresh network
//! namespace; objects made through the API with kubectl; the verdict is
//! the namespace's nftables ruleset, the agent's log and its HTTP ports.
//!
//! One test walks the whole story, because starting an API server costs
//! tens of seconds: the first sync, an endpoint change, the metrics port,
//! a 403 that is logged and survived, an API outage (rules kept, /healthz
//! 503, relist and 200 after the restart), and `--service-proxy-name`
//! with slices made by the real EndpointSlice controller.
//!
//! Needs root and the Kubernetes binaries (REALIP_K8S_BIN, or the
//! workspace's target/k8s/bin); with REALIP_REQUIRE_NETNS=1 a missing
//! one fails the test instead of skipping it.
// A test crate: its items are shared between its modules, not an API.
#![allow(missing_docs)]

mod common;
mod k8s;

use std::path::Path;
use std::time::{Duration, Instant};

use k8s::{http_get, Cluster};

/// What the API server holds before the agent starts: this node, a
/// Service and its slice, and three the agent must not program: one with
/// an SCTP port (reported, not programmed), one claimed by another proxy,
/// a headless one.
const OBJECTS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: sig, namespace: default}
spec:
  clusterIP: 10.96.100.11
  ports: [{name: diameter, port: 3868, protocol: SCTP}]
---
apiVersion: v1
kind: Service
metadata:
  name: elsewhere
  namespace: default
  labels: {service.kubernetes.io/service-proxy-name: another-proxy}
spec:
  clusterIP: 10.96.100.12
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: default}
spec: {clusterIP: None, ports: [{port: 5432}]}
"#;

fn slice(ip: &str) -> String {
    format!(
        r#"
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: web-1, namespace: default, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv4
ports: [{{name: http, port: 8080, protocol: TCP}}]
endpoints: [{{addresses: [{ip}], nodeName: node-1, conditions: {{ready: true}}}}]
"#
    )
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Retry `check` until it passes; on timeout fail with its last word.
fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> Result<(), String>) {
    let end = Instant::now() + limit;
    loop {
        match check() {
            Ok(()) => return,
            Err(why) if Instant::now() >= end => panic!("{what}: not within {limit:?}: {why}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

fn status(resp: &str) -> Option<u16> {
    resp.split(' ').nth(1)?.parse().ok()
}

fn body(resp: &str) -> &str {
    resp.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// The value of an unlabelled sample in a Prometheus exposition.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

fn prerequisites() -> Option<std::path::PathBuf> {
    let bins = k8s::binaries();
    let nft = if Path::new("/usr/sbin/nft").exists() || Path::new("/usr/bin/nft").exists() {
        Ok(())
    } else {
        Err("nft is not installed (the test reads the ruleset with it)".to_string())
    };
    if !common::netns_supported(bins.clone().map(|_| ()).and(nft)) {
        return None;
    }
    bins.ok()
}

#[test]
fn node_follows_the_api_server() {
    let Some(bin) = prerequisites() else {
        return;
    };
    let dir = common::scratch("node-api");
    let mut cluster = Cluster::start(&bin, dir.clone());
    let ns = cluster.netns().to_string();
    // kube-proxy's own identity: RBAC's bootstrap policy binds the
    // ClusterRole system:node-proxier to the user system:kube-proxy, so
    // this also proves that kube-proxy's permissions are enough.
    let proxy_kc = cluster.kubeconfig("kube-proxy", "system:kube-proxy", None);
    let nobody_kc = cluster.kubeconfig("nobody", "realip-nobody", None);
    cluster.apply(&format!("{}---\n{OBJECTS}", k8s::WEB));

    let log = dir.join("agent.log");
    let tail = || {
        let text = read(&log);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    };
    let mut agent = cluster.realip(
        &[
            "node",
            "--kubeconfig",
            proxy_kc.to_str().unwrap(),
            "--node",
            "node-1",
            "--health-address",
            "127.0.0.1",
            "--healthz",
            "127.0.0.1:10256",
            "--min-sync-period",
            "200ms",
            "--sync-period",
            "2s",
            "--poll",
            "100ms",
        ],
        &log,
    );

    // The first sync: the Service and its endpoint are in the kernel.
    wait_for("web's rules in the kernel", Duration::from_secs(60), || {
        let rules = cluster.ruleset();
        if rules.contains("10.96.100.10 . tcp . 80") && rules.contains("dnat to 10.244.1.10:8080") {
            Ok(())
        } else {
            Err(format!("ruleset:\n{rules}\nagent log:\n{}", tail()))
        }
    });
    let rules = cluster.ruleset();
    assert!(
        !rules.contains("10.96.100.12") && !rules.contains("10.96.100.11"),
        "another proxy's Service and the SCTP one are not programmed:\n{rules}"
    );
    assert!(
        read(&log)
            .contains("skipped Service default/sig: protocol SCTP is not supported (TCP, UDP)"),
        "the SCTP Service is reported by name:\n{}",
        tail()
    );
    for resource in ["services", "endpointslices", "nodes"] {
        assert!(
            read(&log)
                .lines()
                .any(|l| l.contains("listed") && l.contains(&format!("resource={resource}"))),
            "{resource} listed before the first sync:\n{}",
            tail()
        );
    }

    // An endpoint change reaches the kernel.
    cluster.apply(&slice("10.244.1.20"));
    wait_for(
        "the new endpoint in the kernel",
        Duration::from_secs(30),
        || {
            let rules = cluster.ruleset();
            if rules.contains("dnat to 10.244.1.20:8080") && !rules.contains("10.244.1.10:8080") {
                Ok(())
            } else {
                Err(format!("ruleset:\n{rules}"))
            }
        },
    );

    // kube-proxy's metrics port.
    let mode = http_get(&ns, "127.0.0.1:10249", "/proxyMode");
    assert_eq!(
        (status(&mode), body(&mode)),
        (Some(200), "nftables"),
        "{mode}"
    );
    let metrics = http_get(&ns, "127.0.0.1:10249", "/metrics");
    let m = body(&metrics);
    let syncs = sample(m, "kubeproxy_sync_proxy_rules_duration_seconds_count").unwrap_or(0.0);
    assert!(syncs >= 2.0, "a sync before and after the change:\n{m}");
    assert!(
        sample(m, "kubeproxy_sync_proxy_rules_endpoint_changes_total").unwrap_or(0.0) >= 2.0,
        "web's endpoints appeared, then changed:\n{m}"
    );
    assert!(
        sample(m, "kubeproxy_sync_proxy_rules_service_changes_total").unwrap_or(0.0) >= 1.0,
        "{m}"
    );
    assert!(
        sample(m, "kubeproxy_sync_proxy_rules_last_timestamp_seconds").unwrap_or(0.0) > 1.6e9,
        "{m}"
    );
    assert!(
        m.contains("kubeproxy_sync_proxy_rules_duration_seconds_bucket{le=\"0.001\"}"),
        "{m}"
    );
    let healthz = http_get(&ns, "127.0.0.1:10256", "/healthz");
    assert_eq!(status(&healthz), Some(200), "{healthz}");

    // A user without RBAC: the API's 403 is logged whole, with what is
    // needed, retried, and the process keeps running.
    let nobody_log = dir.join("nobody.log");
    let mut nobody = cluster.realip(
        &[
            "node",
            "--kubeconfig",
            nobody_kc.to_str().unwrap(),
            "--node",
            "node-1",
            "--healthz",
            "127.0.0.1:20256",
            "--metrics-bind-address",
            "",
        ],
        &nobody_log,
    );
    wait_for("the 403 in the log", Duration::from_secs(30), || {
        let text = read(&nobody_log);
        let forbidden = "services is forbidden: User \"realip-nobody\" cannot list resource \
                         \"services\" in API group \"\" at the cluster scope";
        if text.contains(forbidden)
            && text.contains("server=https://127.0.0.1:6443/")
            && text.contains("system:node-proxier")
        {
            Ok(())
        } else {
            Err(text)
        }
    });
    wait_for("the 403 retried", Duration::from_secs(15), || {
        let text = read(&nobody_log);
        if text.matches("services is forbidden").count() >= 2 {
            Ok(())
        } else {
            Err(text)
        }
    });
    assert!(
        nobody.alive(),
        "a 403 does not end the agent:\n{}",
        read(&nobody_log)
    );
    assert!(
        !read(&nobody_log).contains("kube_runtime"),
        "said once, by realip, not again by kube-rs:\n{}",
        read(&nobody_log)
    );
    nobody.stop();

    // An API outage: the rules stay, /healthz turns 503 after twice the
    // sync period (2 s here), the watches fail and are retried.
    cluster.apiserver.stop();
    let down = Instant::now();
    wait_for(
        "/healthz 503 during the outage",
        Duration::from_secs(30),
        || {
            let r = http_get(&ns, "127.0.0.1:10256", "/healthz");
            match status(&r) {
                Some(503) => Ok(()),
                _ => Err(r),
            }
        },
    );
    assert!(
        down.elapsed() >= Duration::from_secs(2),
        "not before the health timeout: {:?}",
        down.elapsed()
    );
    assert!(
        agent.alive(),
        "the outage does not end the agent:\n{}",
        tail()
    );
    assert!(
        cluster.ruleset().contains("dnat to 10.244.1.20:8080"),
        "the kernel keeps the last rules"
    );
    assert!(
        read(&log)
            .lines()
            .any(|l| l.contains("watch failed") && l.contains("server=https://127.0.0.1:6443/")),
        "the failure names the server:\n{}",
        tail()
    );
    let listed_before = read(&log).matches(" listed ").count();
    // Back: the watches list again, the agent is healthy again, and
    // changes flow.
    cluster.start_apiserver();
    wait_for(
        "/healthz 200 after the outage",
        Duration::from_secs(120),
        || {
            let r = http_get(&ns, "127.0.0.1:10256", "/healthz");
            match status(&r) {
                Some(200) => Ok(()),
                _ => Err(format!("{r}\nagent log:\n{}", tail())),
            }
        },
    );
    assert!(
        read(&log).matches(" listed ").count() >= listed_before + 3,
        "all three watches relisted:\n{}",
        tail()
    );
    cluster.apply(&slice("10.244.1.30"));
    wait_for("a change after the outage", Duration::from_secs(30), || {
        let rules = cluster.ruleset();
        if rules.contains("dnat to 10.244.1.30:8080") {
            Ok(())
        } else {
            Err(rules)
        }
    });
    agent.stop();

    // --service-proxy-name: only the Services labelled with the name, and
    // the slices the real EndpointSlice controller makes for them (it
    // copies the Service's labels onto its slices).
    cluster.start_controller_manager("endpointslice");
    cluster.apply(
        r#"
apiVersion: v1
kind: ServiceAccount
metadata: {name: default, namespace: default}
---
apiVersion: v1
kind: Service
metadata:
  name: named
  namespace: default
  labels: {service.kubernetes.io/service-proxy-name: realip-test}
spec:
  clusterIP: 10.96.100.20
  selector: {app: named}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: named-1, namespace: default, labels: {app: named}}
spec:
  nodeName: node-1
  automountServiceAccountToken: false
  containers: [{name: app, image: realip.invalid/none:0, ports: [{containerPort: 8080}]}]
"#,
    );
    // No kubelet: the pod's status is written by hand (data only; the
    // address is never dialled).
    let out = cluster.kubectl(
        &[
            "patch",
            "pod",
            "named-1",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Running","podIP":"10.244.1.40","podIPs":[{"ip":"10.244.1.40"}],"conditions":[{"type":"Ready","status":"True"}]}}"#,
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(
        "the controller's slice, with the proxy-name label copied",
        Duration::from_secs(90),
        || {
            let out = cluster.kubectl(
                &[
                    "get",
                    "endpointslices",
                    "-l",
                    "service.kubernetes.io/service-proxy-name=realip-test,kubernetes.io/service-name=named",
                    "-o",
                    "jsonpath={.items[*].endpoints[*].addresses[0]}",
                ],
                None,
            );
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if text.contains("10.244.1.40") {
                Ok(())
            } else {
                Err(format!(
                    "{text}{}\n{}",
                    String::from_utf8_lossy(&out.stderr),
                    cluster.log_tail("kube-controller-manager")
                ))
            }
        },
    );
    let named_log = dir.join("named.log");
    let mut named = cluster.realip(
        &[
            "node",
            "--kubeconfig",
            proxy_kc.to_str().unwrap(),
            "--node",
            "node-1",
            "--service-proxy-name",
            "realip-test",
            "--healthz",
            "127.0.0.1:10256",
            "--min-sync-period",
            "200ms",
        ],
        &named_log,
    );
    wait_for("the named Service's rules", Duration::from_secs(60), || {
        let rules = cluster.ruleset();
        if rules.contains("10.96.100.20 . tcp . 80") && rules.contains("dnat to 10.244.1.40:8080") {
            Ok(())
        } else {
            Err(format!("{rules}\n{}", read(&named_log)))
        }
    });
    let rules = cluster.ruleset();
    assert!(
        !rules.contains("10.96.100.10") && !rules.contains("10.96.100.12"),
        "unlabelled and other proxies' Services are left to them:\n{rules}"
    );
    named.stop();

    // --once from the API server: waits for the lists, syncs, exits 0;
    // the unclaimed Services are back in the kernel.
    let once_log = dir.join("once.log");
    let mut once = cluster.realip(
        &[
            "node",
            "--kubeconfig",
            proxy_kc.to_str().unwrap(),
            "--node",
            "node-1",
            "--once",
        ],
        &once_log,
    );
    wait_for("--once to exit", Duration::from_secs(60), || {
        if once.alive() {
            Err(read(&once_log))
        } else {
            Ok(())
        }
    });
    assert_eq!(once.exit_code(), Some(0), "{}", read(&once_log));
    let rules = cluster.ruleset();
    assert!(
        rules.contains("10.96.100.10 . tcp . 80") && !rules.contains("10.96.100.20"),
        "{rules}"
    );
}
