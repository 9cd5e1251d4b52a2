//! Golden tests of the plan, plus the semantics spelled out as assertions
//! so a wrong golden file cannot pass unnoticed.
//!
//! Regenerate the golden files with `UPDATE_GOLDEN=1 cargo test -p
//! realip-node --test golden`, then read the diff: it is the review.
// A test crate: its items are shared between its modules, not an API.
#![allow(missing_docs)]

use realip_node::model::{load_str, Model};
use realip_node::plan::{health_checks, plan, Family, Ruleset};

fn model() -> Model {
    let (model, skipped) = load_str(include_str!("fixtures/cluster.yaml"));
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(skipped[0].object.contains("demo/broken"), "{skipped:?}");
    assert!(skipped[0].reason.contains("10.96.0.999"), "{skipped:?}");
    model
}

fn render(rs: &[Ruleset]) -> String {
    rs.iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

fn golden(name: &str, got: &str) {
    let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        want == got,
        "{name} differs from the plan; diff against:\n{got}"
    );
}

#[test]
fn golden_node_1_and_node_2() {
    let m = model();
    for node in ["node-1", "node-2"] {
        let rs = plan(&m, node).unwrap();
        golden(&format!("{node}.nft"), &render(&rs));
    }
}

fn text(node: &str, fam: Family) -> String {
    let m = model();
    plan(&m, node)
        .unwrap()
        .into_iter()
        .find(|r| r.family == fam)
        .unwrap()
        .to_string()
}

fn chain<'a>(text: &'a str, prefix: &str) -> &'a str {
    let start = text
        .find(&format!("\tchain {prefix}"))
        .unwrap_or_else(|| panic!("no chain {prefix} in\n{text}"));
    let end = text[start..].find("\n\t}").unwrap() + start;
    &text[start..end]
}

#[test]
fn cluster_policy_masquerades_external_traffic() {
    let id = realip_node::plan::hash8("demo/web-cluster/tcp/http");
    for node in ["node-1", "node-2"] {
        let t = text(node, Family::Ip);
        // The node port goes straight to the Service's chain...
        assert!(
            t.contains(&format!("tcp . 30080 : goto service-{id}-")),
            "{t}"
        );
        // ...after the nodeports chain marks it for masquerade, as a
        // Cluster-policy node port.
        let np = chain(&t, "nodeports");
        assert!(
            np.contains("meta l4proto . th dport @cluster-nodeports jump mark-for-masquerade\n\t\tmeta l4proto . th dport vmap @service-nodeports"),
            "{np}"
        );
        let set = t
            .split("\tset cluster-nodeports {")
            .nth(1)
            .and_then(|b| b.split("\n\t}").next())
            .unwrap_or("");
        assert!(set.contains("tcp . 30080,"), "{set}");
        // A Local-policy node port is not in the set: its chain decides.
        assert!(!set.contains("30081"), "{set}");
        let services = chain(&t, "services");
        assert!(
            services.contains("fib daddr type local ip daddr != 127.0.0.0/8 jump nodeports"),
            "{services}"
        );
    }
}

#[test]
fn local_policy_keeps_the_source_or_drops() {
    let id = realip_node::plan::hash8("demo/web-local/tcp/http");
    // node-1 has the pod: no masquerade for outside clients, local endpoints only.
    let t1 = text("node-1", Family::Ip);
    let ext1 = chain(&t1, &format!("external-{id}"));
    assert!(
        ext1.contains("ip saddr 10.244.1.0/24 goto service-"),
        "{ext1}"
    );
    assert!(
        ext1.contains("fib saddr type local jump mark-for-masquerade"),
        "{ext1}"
    );
    assert!(
        ext1.ends_with(&format!("goto local-{id}-demo-web-local-tcp-http")),
        "{ext1}"
    );
    // node-2 has none: DROP, not reject.
    let t2 = text("node-2", Family::Ip);
    let ext2 = chain(&t2, &format!("external-{id}"));
    assert!(ext2.trim_end().ends_with("drop"), "{ext2}");
    assert!(!t2.contains(&format!("chain local-{id}")), "{t2}");
    // The LB IP and the external IP both lead there.
    for t in [&t1, &t2] {
        assert!(
            t.contains(&format!("203.0.113.100 . tcp . 80 : goto external-{id}")),
            "{t}"
        );
        assert!(
            t.contains(&format!("198.51.100.7 . tcp . 80 : goto external-{id}")),
            "{t}"
        );
        assert!(
            t.contains(&format!("tcp . 30081 : goto external-{id}")),
            "{t}"
        );
    }
}

#[test]
fn no_endpoints_rejects_and_hairpin_masquerades() {
    let t = text("node-1", Family::Ip);
    assert!(
        t.contains("10.96.0.12 . tcp . 443 : goto reject-chain,"),
        "{t}"
    );
    assert!(chain(&t, "reject-chain").contains("\t\treject"), "{t}");
    assert!(!t.contains("10.96.0.12 . tcp . 443 : goto service-"), "{t}");
    // Hairpin: every endpoint address is in the pair set, and postrouting
    // marks a connection whose source is its own destination.
    let hairpin = t.split("\tset hairpin {").nth(1).unwrap_or("");
    assert!(hairpin.contains("10.244.1.5 . 10.244.1.5,"), "{t}");
    let post = chain(&t, "nat-postrouting");
    assert!(
        post.contains(
            "ip saddr . ip daddr @hairpin jump mark-for-masquerade\n\t\tjump masquerading"
        ),
        "{post}"
    );
    assert!(
        t.contains("meta l4proto tcp dnat to 10.244.1.5:8080"),
        "{t}"
    );
}

#[test]
fn affinity_internal_local_and_terminating_fallback() {
    let t1 = text("node-1", Family::Ip);
    // Session affinity: a set per endpoint with the timeout, checked first.
    assert!(t1.contains("timeout 600s"), "{t1}");
    let sticky = chain(
        &t1,
        &format!("service-{}", realip_node::plan::hash8("demo/sticky/tcp/80")),
    );
    // A known client goes back to its endpoint, refreshing its entry.
    assert!(
        sticky.contains("ip saddr @affinity-PJXC7CC4-demo-sticky-tcp-80__10-244-1-6-8080 meta l4proto tcp update @affinity-PJXC7CC4-demo-sticky-tcp-80__10-244-1-6-8080 { ip saddr } dnat to 10.244.1.6:8080"),
        "{sticky}"
    );
    // Equal odds over two endpoints: the first with 1/2, else the second.
    assert!(
        sticky.contains("numgen random mod 2 == 0 meta l4proto tcp update @affinity-"),
        "{sticky}"
    );
    // internalTrafficPolicy Local with the only endpoint on node-2.
    assert!(t1.contains("10.96.0.53 . udp . 53 : drop,"), "{t1}");
    let t2 = text("node-2", Family::Ip);
    assert!(t2.contains("10.96.0.53 . udp . 53 : goto local-"), "{t2}");
    // No ready endpoint: the serving, terminating one is used; the one
    // that is not serving is not.
    assert!(t1.contains("dnat to 10.244.1.7:80"), "{t1}");
    assert!(!t1.contains("10.244.2.7"), "{t1}");
}

#[test]
fn many_endpoints_are_one_pick_from_the_groups_map() {
    let t = text("node-1", Family::Ip);
    let id = realip_node::plan::hash8("demo/many/tcp/http");
    let many = chain(&t, &format!("service-{id}"));
    // One rule for three endpoints: a random index into the group's map.
    let map = format!("pick-{id}-c");
    assert!(
        many.contains(&format!(
            "meta l4proto tcp dnat ip to numgen random mod 3 map @{map}"
        )),
        "{many}"
    );
    let block = t
        .split(&format!("\tmap {map} {{"))
        .nth(1)
        .and_then(|b| b.split("\n\t}").next())
        .unwrap_or_else(|| panic!("no map {map} in\n{t}"));
    assert!(
        block.contains(
            "0 : 10.244.1.20 . 8080,\n\t\t\t1 : 10.244.2.20 . 8080,\n\t\t\t2 : 10.244.2.21 . 8080,"
        ),
        "{block}"
    );
}

#[test]
fn pick_maps_are_sized_in_powers_of_two() {
    use realip_node::plan::pick_size;
    assert_eq!(
        (pick_size(1), pick_size(16), pick_size(17), pick_size(1000)),
        (16, 16, 32, 1024)
    );
    let t = text("node-1", Family::Ip);
    let id = realip_node::plan::hash8("demo/many/tcp/http");
    let block = t
        .split(&format!("\tmap pick-{id}-c {{"))
        .nth(1)
        .unwrap_or("");
    assert!(
        block.starts_with("\n\t\ttypeof numgen random mod 1 : ip daddr . tcp dport\n\t\tsize 16\n"),
        "{block}"
    );
}

#[test]
fn cluster_ip_traffic_from_outside_the_pod_network_is_masqueraded() {
    let t = text("node-1", Family::Ip);
    let services = chain(&t, "services");
    assert!(
        services.contains("ip saddr != 10.244.1.0/24 ip daddr . meta l4proto . th dport @cluster-ips jump mark-for-masquerade"),
        "{services}"
    );
    let set = t
        .split("\tset cluster-ips {")
        .nth(1)
        .and_then(|b| b.split("\n\t}").next())
        .unwrap_or("");
    assert!(set.contains("10.96.0.10 . tcp . 80,"), "{set}");
    // internalTrafficPolicy: Local goes to the node's own endpoints,
    // unmasqueraded, as kube-proxy does.
    assert!(!set.contains("10.96.0.53"), "{set}");
}

#[test]
fn ipv6_has_its_own_table() {
    let t = text("node-1", Family::Ip6);
    assert!(t.starts_with("table ip6 realip {"), "{t}");
    assert!(t.contains("fd00:96::15 . tcp . 80 : goto service-"), "{t}");
    assert!(t.contains("dnat to [fd00:244:1::9]:80"), "{t}");
    assert!(!t.contains("10.96."), "{t}");
}

#[test]
fn health_check_node_ports() {
    let m = model();
    let h1 = health_checks(&m, "node-1");
    let h2 = health_checks(&m, "node-2");
    assert_eq!((h1.len(), h1[0].port, h1[0].local_endpoints), (1, 32000, 1));
    assert_eq!((h2.len(), h2[0].port, h2[0].local_endpoints), (1, 32000, 0));
    assert!(plan(&m, "node-9").is_err());
}

/// The kernel's own parser is the judge: `nft -c` (check only, nothing
/// applied) in a private, anonymous network namespace (`unshare -n`), so
/// the host's tables are never touched. Needs root and nftables; with
/// REALIP_REQUIRE_NETNS=1 their absence is a failure, not a skip.
#[test]
fn the_kernel_accepts_the_plan() {
    let required = std::env::var("REALIP_REQUIRE_NETNS").is_ok_and(|v| v == "1");
    let probe = std::process::Command::new("unshare")
        .args(["-n", "nft", "list", "tables"])
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        other => {
            let why = format!("cannot run nft in a private network namespace: {other:?}");
            if required {
                panic!("{why} (REALIP_REQUIRE_NETNS=1)");
            }
            eprintln!("SKIPPED: {why}");
            return;
        }
    }
    let m = model();
    for node in ["node-1", "node-2"] {
        let text = render(&plan(&m, node).unwrap());
        let dir =
            std::env::temp_dir().join(format!("realip-node-check-{}-{node}", std::process::id()));
        std::fs::write(&dir, &text).unwrap();
        let out = std::process::Command::new("unshare")
            .args(["-n", "nft", "-c", "-f"])
            .arg(&dir)
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&dir);
        assert!(
            out.status.success(),
            "nft refused the plan for {node}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
