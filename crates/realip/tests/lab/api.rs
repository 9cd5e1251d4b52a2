//! The lab on the real control plane (`--api`): etcd, kube-apiserver and
//! kube-controller-manager from `scripts/k8s`'s build.
//!
//! With REALIP_REQUIRE_NETNS=1 a missing binary fails these tests, as
//! missing root does; otherwise they are skipped with the reason.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use realip_lab::k8s::K8sBin;
use realip_lab::topology::PREFIX;

use super::{json_of, listed_namespaces, netns_names, read_until_ready, tagged_processes};

/// Root, namespaces and the Kubernetes binaries, or why not.
fn k8s() -> Option<K8sBin> {
    let dir = K8sBin::choose(None);
    let found = K8sBin::find(&dir).map_err(|e| e.to_string());
    super::common::netns_supported(found.clone().map(|_| ())).then(|| found.ok())?
}

/// Every built-in scenario on the API passes, as it does from files: the
/// apiserver took the scenarios' ClusterIPs and node ports, the
/// EndpointSlice controller wrote the slices from the Pods the lab made
/// Ready, and the agents programmed what it wrote.
#[test]
fn every_builtin_scenario_passes_on_the_api() {
    if k8s().is_none() {
        return;
    }
    let (v, out, _) =
        json_of(Command::new(env!("CARGO_BIN_EXE_realip")).args(["lab", "--api", "--json"]));
    let scenarios = v["scenarios"].as_array().unwrap();
    assert_eq!(scenarios.len(), realip_lab::scenario::BUILTIN.len());
    let failed: Vec<String> = scenarios
        .iter()
        .filter(|s| s["pass"] != true)
        .map(|s| {
            let checks: Vec<String> = s["probes"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|p| p["checks"].as_array().cloned().unwrap_or_default())
                .filter(|c| c["ok"] != true)
                .map(|c| format!("{} (saw {})", c["what"], c["detail"]))
                .collect();
            format!("{}: {} {}", s["name"], s["error"], checks.join("; "))
        })
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    assert!(out.status.success());
    for s in scenarios {
        for p in s["probes"].as_array().unwrap() {
            assert!(!p["seen"].as_array().unwrap().is_empty(), "{}", p["name"]);
        }
    }
}

/// The differential lab: every built-in scenario under realip node and
/// under the real kube-proxy in both its modes, each watching the lab's
/// apiserver; what the pods saw is the same probe by probe, except where
/// a probe declares one of realip's extensions.
#[test]
fn every_builtin_scenario_agrees_with_the_real_kube_proxy() {
    if k8s().is_none() {
        return;
    }
    let (v, out, _) = json_of(Command::new(env!("CARGO_BIN_EXE_realip")).args([
        "lab",
        "--api",
        "--json",
        "--compare",
    ]));
    assert_eq!(
        v["agents"],
        serde_json::json!(["realip", "kube-proxy:nftables", "kube-proxy:iptables"])
    );
    let scenarios = v["scenarios"].as_array().unwrap();
    assert_eq!(scenarios.len(), realip_lab::scenario::BUILTIN.len());
    let mut bad = Vec::new();
    for s in scenarios {
        for e in s["errors"].as_array().into_iter().flatten() {
            bad.push(format!("{}: {e}", s["name"]));
        }
        for p in s["probes"].as_array().into_iter().flatten() {
            let seen = p["seen"].as_array().unwrap();
            assert_eq!(seen.len(), 3, "{}", p["probe"]);
            // Each agent really ran it and something was observed.
            for agent in seen {
                let outcomes = agent[1]["outcomes"].as_array();
                assert!(
                    outcomes.is_some_and(|o| !o.is_empty()),
                    "{}: {agent}",
                    p["probe"]
                );
            }
            if p["pass"] != true {
                bad.push(format!("{} / {}: {}", s["name"], p["probe"], p["seen"]));
            }
        }
    }
    assert!(bad.is_empty(), "{bad:#?}");
    assert_eq!(v["pass"], true);
    assert!(out.status.success());
}

/// Phase 1 stays usable: with `--agent-objects files` the agents read
/// the apiserver's objects from the files the lab writes, and the
/// scenarios pass the same (one of each kind: Cluster, Local with health
/// checks, an ingress pod in another namespace, and a live one whose
/// steps rewrite the files).
#[test]
fn on_the_api_the_agents_may_read_files() {
    if k8s().is_none() {
        return;
    }
    let (v, _, stdout) = json_of(
        Command::new(env!("CARGO_BIN_EXE_realip"))
            .args(["lab", "--api", "--agent-objects", "files", "--json", "run"])
            .args(["nodeport-cluster", "l4-lb-local", "ingress", "scaling"]),
    );
    assert_eq!(v["pass"], true, "{stdout}");
    assert_eq!(v["scenarios"].as_array().unwrap().len(), 4);
}

/// `lab up --api SCENARIO`: a running cluster with a kubeconfig; kubectl
/// shows the Service the scenario applied, the NodePort answers from the
/// client, and SIGINT takes every namespace, process and file away.
#[test]
fn lab_up_on_the_api_runs_a_cluster_until_ctrl_c() {
    let Some(bin) = k8s() else {
        return;
    };
    let tag = format!("REALIP_LAB_TEST_TAG=up-api-{}", std::process::id());
    let mut child = Command::new(env!("CARGO_BIN_EXE_realip"))
        .args(["lab", "up", "--api", "nodeport-local"])
        .env("REALIP_LAB_TEST_TAG", tag.split_once('=').unwrap().1)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (text, ready) = read_until_ready(&mut child);
    let stop = |child: &mut std::process::Child| {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
    };
    if !ready {
        stop(&mut child);
        panic!("realip lab up --api never got ready: {text}");
    }
    let names = listed_namespaces(&text);
    let control = names
        .iter()
        .find(|n| n.ends_with("-control"))
        .cloned()
        .unwrap_or_else(|| panic!("no control namespace listed: {text}"));
    let client = control.replace("-control", "-client");
    let kubeconfig = text
        .lines()
        .find_map(|l| l.strip_prefix("kubeconfig: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no kubeconfig printed: {text}"))
        .to_string();
    // Phase 2: the agents watch the apiserver themselves.
    assert!(
        text.contains(
            "node-1 10.0.0.11 (pods 10.244.1.0/24 via cbr0): realip node, watching the apiserver"
        ),
        "{text}"
    );
    for want in [
        "get svc -A -o wide",
        "curl -s http://10.0.0.11:30081/api",
        "nft list table ip realip",
    ] {
        assert!(
            text.contains(want),
            "{want:?} not among the commands: {text}"
        );
    }
    let kubectl = Command::new("ip")
        .args(["netns", "exec", &control])
        .arg(bin.path("kubectl"))
        .args([
            "--kubeconfig",
            &kubeconfig,
            "get",
            "svc",
            "-n",
            "demo",
            "-o",
            "wide",
        ])
        .output()
        .unwrap();
    let svc = String::from_utf8_lossy(&kubectl.stdout);
    assert!(
        svc.contains("web") && svc.contains("10.96.0.10") && svc.contains("80:30081/TCP"),
        "kubectl get svc: {svc}{}",
        String::from_utf8_lossy(&kubectl.stderr)
    );
    // The agents program what the apiserver holds: the NodePort answers,
    // and the pod sees the client (externalTrafficPolicy: Local).
    let script = "exec 3<>/dev/tcp/10.0.0.11/30081 && printf 'GET /clientip HTTP/1.0\\r\\nHost: lab\\r\\n\\r\\n' >&3 && timeout 5 cat <&3";
    let got = Command::new("ip")
        .args([
            "netns", "exec", &client, "timeout", "10", "bash", "-c", script,
        ])
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&got.stdout);
    assert!(
        body.rsplit("\r\n\r\n")
            .next()
            .unwrap_or("")
            .starts_with("203.0.113.7:"),
        "{body}"
    );
    let dir = std::path::Path::new(&kubeconfig)
        .ancestors()
        .nth(3)
        .unwrap()
        .to_path_buf();
    assert!(dir.exists());
    stop(&mut child);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "realip lab up did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130), "{status:?}");
    let prefix = format!("{PREFIX}-{:x}", child.id());
    let left: Vec<String> = netns_names()
        .into_iter()
        .filter(|n| n.starts_with(&prefix) || names.contains(n))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let survivors = tagged_processes(&tag);
    assert!(survivors.is_empty(), "still running: {survivors:?}");
    assert!(
        !dir.exists(),
        "{} left behind (the CA's key is in it)",
        dir.display()
    );
}

/// A scenario that leaves the ClusterIP, nodePort and healthCheckNodePort
/// to the apiserver and names them where it needs them: on the API they
/// are read back after the apply; from files it stops and says why.
#[test]
fn allocated_ports_are_read_back_from_the_apiserver() {
    if k8s().is_none() {
        return;
    }
    let dir = super::common::scratch("labapialloc");
    let file = dir.join("allocated.yaml");
    std::fs::write(&file, ALLOCATED).unwrap();
    let (v, _, stdout) = json_of(
        Command::new(env!("CARGO_BIN_EXE_realip"))
            .args(["lab", "--api", "--json", "run"])
            .arg(&file),
    );
    assert_eq!(v["pass"], true, "{stdout}");
    let out = Command::new(env!("CARGO_BIN_EXE_realip"))
        .args(["lab", "--json", "run"])
        .arg(&file)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let error = v["scenarios"][0]["error"].as_str().unwrap_or("");
    assert!(
        error.contains("Service demo/web has none as written") && error.contains("run with --api"),
        "{error}"
    );
    assert_eq!(out.status.code(), Some(1));
    let _ = std::fs::remove_dir_all(&dir);
}

const ALLOCATED: &str = r#"name: allocated
title: "A Local LoadBalancer whose IP and ports the apiserver picks"
pods: [1, 0]
objects: |
  apiVersion: v1
  kind: Service
  metadata: {name: web, namespace: demo}
  spec:
    type: LoadBalancer
    externalTrafficPolicy: Local
    ports: [{name: http, port: 80, targetPort: 8080}]
  ---
  apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata: {name: web-1, namespace: demo, labels: {kubernetes.io/service-name: web}}
  addressType: IPv4
  ports: [{name: http, port: 8080, protocol: TCP}]
  endpoints: [{addresses: [10.244.1.10], nodeName: node-1, conditions: {ready: true}}]
router:
  lb: [--listen, "203.0.113.1:80", --backend, "10.0.0.11:{demo/web.nodePort}", --backend, "10.0.0.12:{demo/web.nodePort.http}",
       --client-ip, transparent, --health, "http:/healthz", --health-port, "{demo/web.healthCheckNodePort}",
       --health-interval, 100ms, --rise, "1", --fall, "1"]
  tproxy: true
  settle: 400ms
probes:
  - name: node-2's healthCheckNodePort
    from: router
    to: "10.0.0.12:{demo/web.healthCheckNodePort}"
    send: health
    path: /healthz
    predicts: 503, no local endpoint
    expect: {status: 503, body: "\"localEndpoints\": 0"}
  - name: through the LB
    from: client
    to: 203.0.113.1:80
    count: 10
    predicts: only node-1 is lit; the pod sees the client
    expect: {peer: 203.0.113.7, shares: {want: {pod/1/0: 100}, tolerance: 0}}
  - name: a pod to the allocated ClusterIP
    from: pod/1/0
    to: "{demo/web.clusterIP}:80"
    predicts: it answers
    expect: {status: 200}
"#;

/// Ctrl-C while the control planes start or the scenarios run: no
/// namespace, process (etcd, the apiserver, kubectl ...) or run directory
/// (the CA's key is in it) is left.
#[test]
fn an_interrupted_api_run_leaves_nothing_behind() {
    if k8s().is_none() {
        return;
    }
    for delay in [1500u64, 5000] {
        let tag = format!(
            "REALIP_LAB_TEST_TAG=interrupted-api-{}-{delay}",
            std::process::id()
        );
        let mut child = Command::new(env!("CARGO_BIN_EXE_realip"))
            .args(["lab", "--api"])
            .env("REALIP_LAB_TEST_TAG", tag.split_once('=').unwrap().1)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let id = format!("{:x}", child.id());
        std::thread::sleep(Duration::from_millis(delay));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "realip lab --api did not stop");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(status.code(), Some(130), "after {delay} ms");
        let left: Vec<String> = netns_names()
            .into_iter()
            .filter(|n| n.starts_with(&format!("{PREFIX}-{id}")))
            .collect();
        assert!(left.is_empty(), "after {delay} ms: {left:?}");
        let survivors = tagged_processes(&tag);
        assert!(
            survivors.is_empty(),
            "after {delay} ms, still running: {survivors:?}"
        );
        // Run directories are realip-lab-NAME-ID, the ID starting with the PID.
        let dirs: Vec<String> = std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("realip-lab-") && n.contains(&format!("-{id}")))
            .collect();
        assert!(dirs.is_empty(), "after {delay} ms: {dirs:?}");
    }
}
