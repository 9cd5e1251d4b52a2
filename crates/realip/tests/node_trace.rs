//! `realip node trace` on the real kernel, run as a user runs it: every
//! answer asserted here is what the nf_tables trace events and conntrack
//! said (the report's steps, DNAT and conntrack fields), in scratch
//! namespaces the binary makes and removes. As root; with
//! REALIP_REQUIRE_NETNS=1 a missing capability fails instead of skipping.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Output};

use serde_json::Value;

/// Two nodes; a Cluster and a Local node port whose only endpoint is on
/// node-1, a ClusterIP with one endpoint on each node, and a ClusterIP
/// without endpoints. Documentation and private ranges only.
const OBJECTS: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: node-1}
spec: {podCIDR: 10.244.1.0/24}
status: {addresses: [{type: InternalIP, address: 10.0.0.11}]}
---
apiVersion: v1
kind: Node
metadata: {name: node-2}
spec: {podCIDR: 10.244.2.0/24}
status: {addresses: [{type: InternalIP, address: 10.0.0.12}]}
---
apiVersion: v1
kind: Service
metadata: {name: web-cluster, namespace: demo}
spec:
  type: NodePort
  clusterIP: 10.96.0.10
  externalTrafficPolicy: Cluster
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30080, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-cluster-1, namespace: demo, labels: {kubernetes.io/service-name: web-cluster}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints: [{addresses: [10.244.1.10], nodeName: node-1, conditions: {ready: true}}]
---
apiVersion: v1
kind: Service
metadata: {name: web-local, namespace: demo}
spec:
  type: NodePort
  clusterIP: 10.96.0.11
  externalTrafficPolicy: Local
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30081, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-local-1, namespace: demo, labels: {kubernetes.io/service-name: web-local}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints: [{addresses: [10.244.1.10], nodeName: node-1, conditions: {ready: true}}]
---
apiVersion: v1
kind: Service
metadata: {name: two, namespace: demo}
spec:
  clusterIP: 10.96.0.20
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: two-1, namespace: demo, labels: {kubernetes.io/service-name: two}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- {addresses: [10.244.1.20], nodeName: node-1, conditions: {ready: true}}
- {addresses: [10.244.2.20], nodeName: node-2, conditions: {ready: true}}
---
apiVersion: v1
kind: Service
metadata: {name: empty, namespace: demo}
spec: {clusterIP: 10.96.0.12, ports: [{port: 443}]}
"#;

fn supported() -> bool {
    common::netns_supported(Ok(()))
}

fn objects() -> std::path::PathBuf {
    let dir = common::scratch("trace");
    let path = dir.join("objects.yaml");
    std::fs::write(&path, OBJECTS).unwrap();
    path
}

fn realip(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_realip"))
        .args(args)
        .output()
        .expect("run realip")
}

/// No namespace of the run with this PID is left (unique_id starts with
/// the process id in hex).
fn assert_no_leftovers(pid: u32) {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let prefix = format!("realip-trace-{pid:x}");
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(
        !list.lines().any(|l| l.starts_with(&prefix)),
        "namespaces left behind: {list}"
    );
}

/// `realip node trace --json`, checked to exit 0 and leave nothing.
fn trace(node: &str, args: &[&str]) -> Value {
    let path = objects();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_realip"));
    cmd.args(["node", "trace", "--json", "--node", node, "--objects"])
        .arg(&path)
        .args(args);
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "realip node trace {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_no_leftovers(pid);
    serde_json::from_slice(&out.stdout).expect("JSON report")
}

fn chains(r: &Value) -> Vec<String> {
    r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["chain"].as_str().unwrap().to_string())
        .collect()
}

fn addr(v: &Value) -> SocketAddr {
    v.as_str().unwrap().parse().unwrap()
}

#[test]
fn nodeport_cluster_via_a_node_without_endpoints_is_dnated_and_masqueraded() {
    if !supported() {
        return;
    }
    let r = trace("node-2", &["203.0.113.7", "10.0.0.12:30080"]);
    assert_eq!(r["entered"], "prerouting");
    assert_eq!(r["verdict"]["verdict"], "accept", "{r:#}");
    // What the kernel's conntrack recorded: DNAT to node-1's pod, SNAT to
    // node-2's address (its eth0, where the route to node-1's pods goes).
    let ct = &r["conntrack"];
    assert_eq!(ct["nat"], "DNAT+SNAT", "{r:#}");
    assert_eq!(addr(&ct["reply"][0]), "10.244.1.10:8080".parse().unwrap());
    assert_eq!(
        addr(&ct["reply"][1]).ip().to_string(),
        "10.0.0.12",
        "the pod sees node-2"
    );
    assert_eq!(r["dnat"]["to"], "10.244.1.10:8080");
    assert_eq!(r["dnat"]["chance"], 1.0);
    assert_eq!(r["masquerade"]["masqueraded"], true);
    assert_eq!(r["masquerade"]["source"], "10.0.0.12");
    assert_eq!(r["masquerade"]["mark"], 0x4000);
    assert_eq!(r["masquerade"]["marked_by"]["chain"], "nodeports");
    // The trace crossed the node port dispatch, the marking and the
    // masquerade, in that order.
    let c = chains(&r);
    let at = |name: &str| {
        c.iter()
            .position(|x| x == name)
            .unwrap_or_else(|| panic!("{name} in {c:?}"))
    };
    assert!(at("nat-prerouting") < at("nodeports"));
    assert!(at("nodeports") < at("mark-for-masquerade"));
    assert!(at("filter-forward") < at("nat-postrouting"));
    assert!(at("nat-postrouting") < at("masquerading"));
    assert_eq!(r["service"]["service"], "demo/web-cluster");
}

#[test]
fn local_policy_from_outside_on_a_node_without_local_endpoints_is_dropped() {
    if !supported() {
        return;
    }
    let r = trace("node-2", &["203.0.113.7", "10.0.0.12:30081"]);
    let v = &r["verdict"];
    assert_eq!(v["verdict"], "drop", "{r:#}");
    assert!(v["chain"].as_str().unwrap().starts_with("external-"), "{v}");
    assert_eq!(v["rule_text"], "drop");
    assert!(v["why"]
        .as_str()
        .unwrap()
        .contains("externalTrafficPolicy: Local"));
    // Dropped in nat prerouting: no DNAT, nothing confirmed in conntrack,
    // and no later hook saw it.
    assert!(r["dnat"].is_null());
    assert!(r["conntrack"].is_null(), "{r:#}");
    let c = chains(&r);
    assert!(
        !c.iter()
            .any(|x| x == "filter-forward" || x == "nat-postrouting"),
        "{c:?}"
    );
    assert_eq!(r["service"]["external_traffic_policy"], "Local");
}

#[test]
fn clusterip_with_two_endpoints_picks_one_of_two_at_fifty_percent() {
    if !supported() {
        return;
    }
    let a: SocketAddr = "10.244.1.20:8080".parse().unwrap();
    let b: SocketAddr = "10.244.2.20:8080".parse().unwrap();
    let mut seen = std::collections::BTreeSet::new();
    // From a pod on node-1: it arrives on cbr0, and is not masqueraded.
    for _ in 0..16 {
        let r = trace("node-1", &["10.244.1.50", "10.96.0.20:80"]);
        assert_eq!(r["entered"], "prerouting");
        assert_eq!(r["verdict"]["verdict"], "accept", "{r:#}");
        let d = &r["dnat"];
        let eps: Vec<SocketAddr> = d["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(addr)
            .collect();
        assert_eq!(eps, [a, b], "the pick map the kernel holds");
        assert_eq!(d["chance"], 0.5);
        assert!(d["pick_map"].as_str().unwrap().starts_with("pick-"));
        assert!(d["rule_text"]
            .as_str()
            .unwrap()
            .contains("numgen random mod 2"));
        let to = addr(&d["to"]);
        assert_eq!(addr(&r["conntrack"]["reply"][0]), to, "conntrack's pick");
        assert!(to == a || to == b);
        assert_eq!(r["conntrack"]["nat"], "DNAT");
        assert_eq!(r["masquerade"]["masqueraded"], false);
        assert_eq!(
            r["peer_seen"].as_str().unwrap().split(':').next(),
            Some("10.244.1.50")
        );
        seen.insert(to);
        if seen.len() == 2 {
            break;
        }
    }
    // 16 picks all alike would happen once in 2^15 runs.
    assert_eq!(seen.len(), 2, "the kernel picked only {seen:?}");
}

#[test]
fn traffic_that_matches_no_service_is_accepted_untouched() {
    if !supported() {
        return;
    }
    let r = trace("node-2", &["203.0.113.7:40000", "10.0.0.12:22"]);
    assert_eq!(r["verdict"]["verdict"], "accept", "{r:#}");
    assert!(r["dnat"].is_null());
    assert_eq!(r["masquerade"]["masqueraded"], false);
    assert_eq!(r["conntrack"]["nat"], "none", "{r:#}");
    assert_eq!(r["conntrack"]["original"][0], "203.0.113.7:40000");
    assert!(r["service"].is_null());
    // Local delivery: through filter-input, no forward.
    let c = chains(&r);
    assert!(c.iter().any(|x| x == "filter-input"), "{c:?}");
    assert!(!c.iter().any(|x| x == "filter-forward"), "{c:?}");
}

#[test]
fn a_service_port_without_endpoints_is_rejected() {
    if !supported() {
        return;
    }
    let r = trace("node-2", &["203.0.113.7", "10.96.0.12:443"]);
    let v = &r["verdict"];
    assert_eq!(v["verdict"], "reject", "{r:#}");
    assert_eq!(v["chain"], "reject-chain");
    assert_eq!(v["rule_text"], "reject");
    assert!(v["why"].as_str().unwrap().contains("no endpoints"));
    assert!(chains(&r).iter().any(|c| c == "endpoints-check"));
}

#[test]
fn an_unknown_protocol_or_port_gets_what_the_ruleset_gives() {
    if !supported() {
        return;
    }
    // SCTP to a TCP node port: the dispatch maps key on the protocol, so
    // no Service chain is entered and the node takes it as its own.
    let r = trace(
        "node-2",
        &["--proto", "sctp", "203.0.113.7", "10.0.0.12:30080"],
    );
    assert_eq!(r["packet"]["proto"], "sctp");
    assert_eq!(r["verdict"]["verdict"], "accept", "{r:#}");
    assert!(r["dnat"].is_null());
    assert!(r["service"].is_null());
    assert_eq!(r["conntrack"]["nat"], "none", "{r:#}");
    // UDP to a ClusterIP's unknown port: whatever the ruleset does (it
    // may reject, as kube-proxy's cluster-ips-check does), never a DNAT,
    // and a reject is a rule of realip's own table.
    let r = trace(
        "node-2",
        &["--proto", "udp", "203.0.113.7", "10.96.0.20:9999"],
    );
    assert!(r["dnat"].is_null(), "{r:#}");
    match r["verdict"]["verdict"].as_str().unwrap() {
        "accept" => assert_eq!(r["conntrack"]["nat"], "none"),
        "reject" => assert_eq!(r["verdict"]["table"], "realip"),
        other => panic!("{other}: {r:#}"),
    }
}

#[test]
fn a_packet_from_the_node_itself_crosses_output() {
    if !supported() {
        return;
    }
    let r = trace("node-2", &["10.0.0.12", "10.96.0.10:80"]);
    assert_eq!(r["entered"], "output", "{r:#}");
    assert_eq!(r["verdict"]["verdict"], "accept");
    assert_eq!(r["dnat"]["to"], "10.244.1.10:8080");
    let c = chains(&r);
    assert!(c.iter().any(|x| x == "nat-output"), "{c:?}");
    assert!(!c.iter().any(|x| x == "nat-prerouting"), "{c:?}");
}

#[test]
fn text_output_says_it_in_words() {
    if !supported() {
        return;
    }
    let path = objects();
    let out = realip(&[
        "node",
        "trace",
        "--node",
        "node-2",
        "--objects",
        path.to_str().unwrap(),
        "203.0.113.7",
        "10.0.0.12:30080",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("DNAT to 10.244.1.10:8080 (the only endpoint, 100%); masqueraded: the pod will see 10.0.0.12"),
        "{text}"
    );
    assert!(text.contains("mark 0x4000"), "{text}");
    assert!(text.contains("chains crossed"), "{text}");
}

#[test]
fn bad_input_is_refused_with_exit_2() {
    let path = objects();
    let p = path.to_str().unwrap();
    for (args, says) in [
        (vec!["203.0.113", "10.0.0.12:30080"], "SRC"),
        (vec!["203.0.113.7", "10.0.0.12"], "the port is required"),
        (
            vec!["203.0.113.7", "[fd00::1]:80"],
            "different address families",
        ),
        (
            vec!["--proto", "icmp", "203.0.113.7", "10.0.0.12:80"],
            "tcp, udp or sctp",
        ),
    ] {
        let mut a = vec!["node", "trace", "--node", "node-2", "--objects", p];
        a.extend(args.iter().copied());
        let out = realip(&a);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let out = realip(&[
        "node",
        "trace",
        "--node",
        "node-9",
        "--objects",
        p,
        "203.0.113.7",
        "10.0.0.12:80",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not among the objects"));
    let out = Command::new(env!("CARGO_BIN_EXE_realip"))
        .args([
            "node",
            "trace",
            "--node",
            "node-2",
            "203.0.113.7",
            "10.0.0.12:80",
        ])
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no objects"));
}

#[test]
fn without_root_it_says_so_and_exits_2() {
    if !supported() {
        return;
    }
    let path = objects();
    // The objects are readable by anyone; the trace is not.
    let _ = Command::new("chmod")
        .arg("-R")
        .arg("a+rX")
        .arg(path.parent().unwrap())
        .status();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(env!("CARGO_BIN_EXE_realip"))
        .args(["node", "trace", "--node", "node-2", "--objects"])
        .arg(&path)
        .args(["203.0.113.7", "10.0.0.12:30080"])
        .output();
    let Ok(out) = out else {
        eprintln!("SKIPPED: no setpriv");
        return;
    };
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("root") || err.contains("namespaces"), "{err}");
}

#[test]
fn ctrl_c_leaves_no_namespace_behind() {
    if !supported() {
        return;
    }
    let path = objects();
    for delay_ms in [20, 60, 120, 200] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_realip"))
            .args(["node", "trace", "--node", "node-2", "--objects"])
            .arg(&path)
            .args(["203.0.113.7", "10.0.0.12:30080"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let pid = child.id();
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        let _ = child.wait();
        assert_no_leftovers(pid);
    }
}

/// A named namespace of this test's own, deleted when dropped.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn ns_exec(ns: &str, argv: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(argv)
        .output()
        .unwrap()
}

#[test]
fn in_the_node_namespace_it_traces_the_live_ruleset_and_cleans_up() {
    if !supported() {
        return;
    }
    let path = objects();
    let p = path.to_str().unwrap();
    let ns = Netns(format!("realip-test-trace-{:x}", std::process::id()));
    let added = Command::new("ip")
        .args(["netns", "add", &ns.0])
        .status()
        .unwrap();
    assert!(added.success());
    let exe = env!("CARGO_BIN_EXE_realip");
    for argv in [
        vec!["ip", "link", "set", "lo", "up"],
        vec![
            "ip",
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0-peer",
        ],
        vec!["ip", "addr", "add", "10.0.0.12/32", "dev", "eth0"],
        vec!["ip", "link", "set", "eth0", "up"],
        vec!["ip", "route", "add", "default", "dev", "eth0"],
        vec![exe, "node", "--objects", p, "--node", "node-2", "--once"],
    ] {
        let o = ns_exec(&ns.0, &argv);
        assert!(
            o.status.success(),
            "{argv:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let o = ns_exec(
        &ns.0,
        &[
            exe,
            "node",
            "trace",
            "--in-node-namespace",
            "--json",
            "--objects",
            p,
            "--node",
            "node-2",
            "10.0.0.12",
            "10.96.0.20:80",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["mode"], "node-namespace");
    assert_eq!(r["entered"], "output");
    assert_eq!(r["dnat"]["endpoints"].as_array().unwrap().len(), 2, "{r:#}");
    // From the node to a ClusterIP: masqueraded too (its source is not
    // in the pod CIDR), to the address it already had.
    assert!(
        r["conntrack"]["nat"].as_str().unwrap().starts_with("DNAT"),
        "{r:#}"
    );
    assert_eq!(r["masquerade"]["masqueraded"], true, "{r:#}");
    // The trace table went with the socket, the conntrack entry with the
    // trace: the live ruleset and the flow table are as they were.
    let tables = ns_exec(&ns.0, &["nft", "list", "tables"]);
    let tables = String::from_utf8_lossy(&tables.stdout);
    assert!(!tables.contains("realip-trace"), "{tables}");
    assert!(tables.contains("table ip realip"), "{tables}");
    let o = ns_exec(&ns.0, &["cat", "/proc/net/nf_conntrack"]);
    let flows = String::from_utf8_lossy(&o.stdout);
    let sport = r["packet"]["src"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    assert!(
        !flows.contains(&format!("sport={sport} dport=80")),
        "{flows}"
    );
    // SRC that is not the namespace's: refused, with what to do instead.
    let o = ns_exec(
        &ns.0,
        &[
            exe,
            "node",
            "trace",
            "--in-node-namespace",
            "203.0.113.7",
            "10.96.0.20:80",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("leave out --in-node-namespace"));
}
