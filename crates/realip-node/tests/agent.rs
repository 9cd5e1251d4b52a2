//! The agent's loop with a source the test drives (as the API source is
//! driven by its watches): nothing is synced before the source is ready,
//! a change wakes the agent at once, changes within the min sync period
//! are one sync, and a source that loses touch turns /healthz 503 while
//! the kernel keeps the rules. Counted through the agent's own /metrics.
//! Runs in private network namespaces; needs root (REALIP_REQUIRE_NETNS=1
//! fails instead of skipping).
#![allow(missing_docs)]

use std::future::Future;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use realip_node::agent::{Agent, ObjectSource, RunConfig, SourceError};
use realip_node::model::{load_str, Model, Skipped};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;

use common::{can_run, in_private_netns};

#[derive(Debug)]
struct State {
    text: Mutex<String>,
    version: tokio::sync::watch::Sender<u64>,
    ready: AtomicBool,
    connected: AtomicBool,
}

/// A source whose objects, readiness and connection the test sets.
#[derive(Debug, Clone)]
struct Driven(Arc<State>);

impl Driven {
    fn new(text: String) -> Self {
        Driven(Arc::new(State {
            text: Mutex::new(text),
            version: tokio::sync::watch::Sender::new(0),
            ready: AtomicBool::new(false),
            connected: AtomicBool::new(true),
        }))
    }

    fn set(&self, text: String) {
        *self.0.text.lock().unwrap() = text;
        self.0.version.send_modify(|v| *v += 1);
    }

    fn ready(&self) {
        self.0.ready.store(true, Ordering::SeqCst);
        self.0.version.send_modify(|v| *v += 1);
    }
}

impl ObjectSource for Driven {
    type Version = u64;

    fn version(&self) -> u64 {
        *self.0.version.borrow()
    }

    fn load(&self) -> Result<(Model, Vec<Skipped>), SourceError> {
        Ok(load_str(&self.0.text.lock().unwrap()))
    }

    fn ready(&self) -> bool {
        self.0.ready.load(Ordering::SeqCst)
    }

    fn connected(&self) -> bool {
        self.0.connected.load(Ordering::SeqCst)
    }

    fn changed(&self, since: &u64) -> impl Future<Output = ()> {
        let mut rx = self.0.version.subscribe();
        let since = *since;
        async move {
            let _ = rx.wait_for(|v| *v != since).await;
        }
    }
}

fn objects(endpoint: &str) -> String {
    format!(
        r#"
kind: Node
metadata: {{name: node-1}}
spec: {{podCIDR: 10.244.1.0/24}}
---
kind: Service
metadata: {{name: web, namespace: demo}}
spec: {{clusterIP: 10.96.0.10, ports: [{{name: http, port: 80}}]}}
---
kind: EndpointSlice
metadata: {{name: web-1, namespace: demo, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv4
ports: [{{name: http, port: 8080, protocol: TCP}}]
endpoints: [{{addresses: [{endpoint}], nodeName: node-1}}]
"#
    )
}

fn config(min_sync: Duration, sync: Duration) -> RunConfig {
    RunConfig {
        health_address: "127.0.0.1".parse().unwrap(),
        healthz: "127.0.0.1:10256".parse().unwrap(),
        metrics: Some("127.0.0.1:10249".parse().unwrap()),
        // Long: only the source's own wake-ups should drive the agent.
        poll: Duration::from_secs(60),
        min_sync_period: min_sync,
        sync_period: sync,
        full_sync_period: Duration::from_secs(3600),
    }
}

async fn get(port: u16, path: &str) -> String {
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return String::new();
    };
    let req = format!("GET {path} HTTP/1.0\r\nHost: t\r\n\r\n");
    let _ = s.write_all(req.as_bytes()).await;
    let mut out = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_string(&mut out)).await;
    out
}

async fn syncs() -> u64 {
    get(10249, "/metrics")
        .await
        .lines()
        .find_map(|l| l.strip_prefix("kubeproxy_sync_proxy_rules_duration_seconds_count "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn ruleset() -> String {
    let out = Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn waits_for_ready_wakes_on_change_and_coalesces() {
    if !can_run() {
        return;
    }
    in_private_netns(|| {
        let source = Driven::new(objects("10.244.1.10"));
        let agent = Agent::new(source.clone(), "node-1").unwrap();
        let synced_once = Arc::new(AtomicBool::new(false));
        let flag = synced_once.clone();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let config = config(Duration::from_millis(500), Duration::from_secs(600));
        let script = async {
            let pause = |ms| tokio::time::sleep(Duration::from_millis(ms));
            pause(300).await;
            // Not ready: nothing in the kernel, no readiness, unhealthy.
            assert!(!ruleset().contains("realip"), "{}", ruleset());
            assert!(!synced_once.load(Ordering::SeqCst));
            assert!(get(10256, "/healthz").await.starts_with("HTTP/1.0 503"));
            assert_eq!(syncs().await, 0);
            // Ready: the first sync follows at once (the poll is 60 s).
            source.ready();
            pause(300).await;
            assert!(synced_once.load(Ordering::SeqCst));
            assert!(
                ruleset().contains("dnat to 10.244.1.10:8080"),
                "{}",
                ruleset()
            );
            assert_eq!(syncs().await, 1);
            assert!(get(10256, "/healthz").await.starts_with("HTTP/1.0 200"));
            // After the min period, a change syncs at once...
            pause(600).await;
            source.set(objects("10.244.1.11"));
            pause(150).await;
            assert_eq!(syncs().await, 2);
            assert!(ruleset().contains("dnat to 10.244.1.11:8080"));
            // ...and four more within the period are one more sync, with
            // the last state.
            for ip in ["10.244.1.12", "10.244.1.13", "10.244.1.14", "10.244.1.15"] {
                source.set(objects(ip));
                pause(20).await;
            }
            assert_eq!(syncs().await, 2, "held until the period ends");
            pause(1200).await;
            assert_eq!(syncs().await, 3, "coalesced into one");
            assert!(ruleset().contains("dnat to 10.244.1.15:8080"));
            let metrics = get(10249, "/metrics").await;
            assert!(
                metrics.contains("\nkubeproxy_sync_proxy_rules_endpoint_changes_total 3\n"),
                "appeared, changed, changed:\n{metrics}"
            );
            let _ = stop_tx.send(());
        };
        runtime().block_on(async {
            let run = agent.run(
                &config,
                async {
                    let _ = stop_rx.await;
                },
                move || flag.store(true, Ordering::SeqCst),
            );
            let (ran, ()) = tokio::join!(run, script);
            ran.unwrap();
        });
    });
}

#[test]
fn losing_the_source_ages_the_health_out_and_keeps_the_rules() {
    if !can_run() {
        return;
    }
    in_private_netns(|| {
        let source = Driven::new(objects("10.244.1.10"));
        source.ready();
        let agent = Agent::new(source.clone(), "node-1").unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        // Health timeout: twice 500 ms. The poll is what re-checks the
        // connection; here it is the runner's full resync that wakes.
        let mut config = config(Duration::from_millis(100), Duration::from_millis(500));
        config.poll = Duration::from_millis(100);
        let script = async {
            let pause = |ms| tokio::time::sleep(Duration::from_millis(ms));
            pause(500).await;
            assert!(get(10256, "/healthz").await.starts_with("HTTP/1.0 200"));
            source.0.connected.store(false, Ordering::SeqCst);
            pause(400).await;
            assert!(
                get(10256, "/healthz").await.starts_with("HTTP/1.0 200"),
                "not before twice the sync period"
            );
            pause(1200).await;
            assert!(get(10256, "/healthz").await.starts_with("HTTP/1.0 503"));
            assert!(ruleset().contains("dnat to 10.244.1.10:8080"), "rules kept");
            source.0.connected.store(true, Ordering::SeqCst);
            pause(400).await;
            assert!(get(10256, "/healthz").await.starts_with("HTTP/1.0 200"));
            let _ = stop_tx.send(());
        };
        runtime().block_on(async {
            let run = agent.run(
                &config,
                async {
                    let _ = stop_rx.await;
                },
                || {},
            );
            let (ran, ()) = tokio::join!(run, script);
            ran.unwrap();
        });
    });
}
