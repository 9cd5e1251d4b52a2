//! The plan programmed over netlink lands in the kernel as the same
//! ruleset `nft -f` makes of its text form: both are listed by the kernel
//! (`nft list ruleset`, test-time only) and compared. Everything happens
//! in private, anonymous network namespaces, so the host's tables are
//! never touched. Needs root; with REALIP_REQUIRE_NETNS=1 a missing
//! capability fails instead of skipping.
// A test crate: its items are shared between its modules, not an API.
#![allow(missing_docs)]

use std::process::Command;

use realip_nft::{Batch, CommitError, Expr, Netlink, Verdict};
use realip_node::kernel;
use realip_node::model::load_str;
use realip_node::plan::{plan, Ruleset};

mod common;

use common::{can_run, in_private_netns};

fn list() -> String {
    let out = Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn rulesets(node: &str) -> Vec<Ruleset> {
    let (m, _) = load_str(include_str!("fixtures/cluster.yaml"));
    plan(&m, node).unwrap()
}

fn via_nft(rs: &[Ruleset]) -> String {
    let text: String = rs.iter().map(|r| format!("{r}\n")).collect();
    let path = std::env::temp_dir().join(format!("realip-netlink-{}.nft", std::process::id()));
    std::fs::write(&path, text).unwrap();
    let listed = in_private_netns(move || {
        let out = Command::new("nft").arg("-f").arg(&path).output().unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        list()
    });
    listed
}

fn commit(rs: &[Ruleset]) -> Result<(), CommitError> {
    let mut b = Batch::new();
    for r in rs {
        kernel::replace_table(&mut b, r);
    }
    Netlink::open()?.commit(b)
}

#[test]
fn netlink_ruleset_equals_nft_ruleset() {
    if !can_run() {
        return;
    }
    for node in ["node-1", "node-2"] {
        let rs = rulesets(node);
        let want = via_nft(&rs);
        let rs2 = rs.clone();
        let got = in_private_netns(move || {
            commit(&rs2).expect("commit");
            let first = list();
            // A second full sync replaces the table in place.
            commit(&rs2).expect("second commit");
            assert_eq!(list(), first, "a resync changed the ruleset");
            first
        });
        let diff: Vec<String> = got
            .lines()
            .zip(want.lines())
            .filter(|(a, b)| a != b)
            .map(|(a, b)| format!("netlink: {a}\nnft -f:  {b}"))
            .collect();
        assert!(
            got == want,
            "{node}: netlink and nft -f differ ({} vs {} lines):\n{}",
            got.lines().count(),
            want.lines().count(),
            diff.join("\n")
        );
        assert!(got.contains("dnat to"), "{got}");
    }
}

#[test]
fn a_refused_batch_changes_nothing_and_names_the_message() {
    if !can_run() {
        return;
    }
    let rs = rulesets("node-1");
    in_private_netns(move || {
        commit(&rs).expect("commit");
        let before = list();
        let fam = kernel::nf_family(rs[0].family);
        let mut b = Batch::new();
        kernel::replace_table(&mut b, &rs[0]);
        b.add_rule(
            fam,
            "realip",
            "services",
            &[Expr::Verdict(Verdict::Jump("no-such-chain".into()))],
        );
        let err = Netlink::open().unwrap().commit(b).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, CommitError::Rejected { .. })
                && text.contains("add rule realip services"),
            "{text}"
        );
        assert_eq!(list(), before, "a refused batch left a trace");
    });
}

/// A listing with its order taken out: top-level blocks sorted, and the
/// elements of each `elements = { ... }` sorted. Incremental syncs create
/// things in a different order than a full load; the content must match.
fn normalize(listing: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut cur = String::new();
    for line in listing.lines() {
        // Blank lines and the table's closing brace belong to no block.
        if line.trim().is_empty() || line == "}" {
            continue;
        }
        if line.starts_with("\tchain ")
            || line.starts_with("\tmap ")
            || line.starts_with("\tset ")
            || line.starts_with("table ")
        {
            blocks.push(std::mem::take(&mut cur));
        }
        cur.push_str(line.trim());
        cur.push('\n');
    }
    blocks.push(cur);
    let mut out: Vec<String> = blocks
        .into_iter()
        .map(|b| match b.find("elements = {") {
            Some(at) => {
                let end = b[at..].find('}').map_or(b.len(), |e| at + e);
                let mut elems: Vec<&str> = b[at + 12..end]
                    .split(',')
                    .map(|e| e.trim())
                    .filter(|e| !e.is_empty())
                    .collect();
                elems.sort();
                format!("{}{}{}", &b[..at], elems.join(","), &b[end..])
            }
            None => b,
        })
        .collect();
    out.sort();
    out
}

fn variant(edits: &[(&str, &str)]) -> Vec<Ruleset> {
    let mut text = include_str!("fixtures/cluster.yaml").to_string();
    for (from, to) in edits {
        assert!(text.contains(from), "fixture lacks {from:?}");
        text = text.replacen(from, to, 1);
    }
    let (m, _) = load_str(&text);
    plan(&m, "node-1").unwrap()
}

#[test]
fn incremental_syncs_reach_what_a_full_load_makes() {
    if !can_run() {
        return;
    }
    use realip_node::sync::Syncer;
    let base = variant(&[]);
    let changes: Vec<(&str, Vec<Ruleset>)> = vec![
        // An endpoint goes (the sticky Service keeps one).
        (
            "endpoint removed",
            variant(&[("- {addresses: [10.244.2.6], nodeName: node-2}\n", "")]),
        ),
        // A Service changes policy: its chains and map entries change.
        (
            "Cluster to Local",
            variant(&[("externalTrafficPolicy: Cluster", "externalTrafficPolicy: Local")]),
        ),
        // An endpoint is added to a Service that had one.
        (
            "endpoint added",
            variant(&[(
                "- {addresses: [10.244.1.5], nodeName: node-1, conditions: {ready: true}}\n---\napiVersion",
                "- {addresses: [10.244.1.5], nodeName: node-1, conditions: {ready: true}}\n- {addresses: [10.244.2.5], nodeName: node-2, conditions: {ready: true}}\n---\napiVersion",
            )]),
        ),
        ("nothing", base.clone()),
    ];
    for (what, next) in changes {
        let want = {
            let next = next.clone();
            in_private_netns(move || {
                commit(&next).expect("full load");
                normalize(&list())
            })
        };
        let (base, next2) = (base.clone(), next.clone());
        let (got, back, report) = in_private_netns(move || {
            let mut s = Syncer::new().expect("netlink");
            let first = s.sync(base.clone()).expect("first sync");
            assert!(first.full);
            let before = normalize(&list());
            let report = s.sync(next2).expect("incremental sync");
            let got = normalize(&list());
            // And back again.
            s.sync(base).expect("sync back");
            let back = normalize(&list());
            let only_before: Vec<_> = before.iter().filter(|b| !back.contains(b)).collect();
            let only_back: Vec<_> = back.iter().filter(|b| !before.contains(b)).collect();
            assert!(
                back == before,
                "{what}: syncing back did not restore:\nbefore only: {only_before:#?}\nafter only: {only_back:#?}"
            );
            (got, back, report)
        });
        let _ = back;
        assert!(!report.full, "{what}: fell back to a full sync");
        if what == "nothing" {
            assert_eq!(report.messages, 0, "{what}: sent {report:?}");
        } else {
            assert!(report.messages > 0, "{what}: sent nothing");
        }
        assert!(
            got == want,
            "{what}: incremental result differs from a full load\n--- incremental\n{}\n--- full\n{}",
            got.join(""),
            want.join("")
        );
    }
}

#[test]
fn thousands_of_services_all_reach_the_kernel() {
    if !can_run() {
        return;
    }
    // Enough elements that one element list would overflow a netlink
    // attribute's 16-bit length.
    let n = 3000;
    let mut yaml = String::from(
        "apiVersion: v1\nkind: Node\nmetadata: {name: node-1}\nspec: {podCIDR: 10.244.0.0/16}\n",
    );
    for s in 0..n {
        yaml.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{s}, namespace: b}}\nspec:\n  clusterIP: 10.96.{}.{}\n  ports: [{{port: 80, targetPort: 8080}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: s{s}-1, namespace: b, labels: {{kubernetes.io/service-name: s{s}}}}}\naddressType: IPv4\nports: [{{port: 8080, protocol: TCP}}]\nendpoints: [{{addresses: [10.100.{}.{}], nodeName: node-1}}]\n",
            s / 250,
            s % 250 + 1,
            s / 250,
            s % 250 + 1
        ));
    }
    let (m, skipped) = load_str(&yaml);
    assert!(skipped.is_empty(), "{skipped:?}");
    let rs = plan(&m, "node-1").unwrap();
    // Split over tables: 3000 ports at 1000 per table -> 4 IPv4 tables.
    let v4: Vec<&str> = rs
        .iter()
        .filter(|r| r.family == realip_node::plan::Family::Ip)
        .map(|r| r.table.as_str())
        .collect();
    assert_eq!(v4, ["realip-00", "realip-01", "realip-02", "realip-03"]);
    let (elements, hairpins, listing) = in_private_netns(move || {
        let mut s = realip_node::sync::Syncer::new().expect("netlink");
        s.sync(rs).expect("sync");
        let all = list();
        (
            all.matches(" . tcp . 80 : goto service-").count(),
            all.split("set hairpin {")
                .nth(1)
                .and_then(|h| h.split("\n\t}").next())
                .map_or(0, |h| h.matches("10.100.").count() / 2),
            all,
        )
    });
    assert_eq!(elements, n, "service-ips elements in the kernel");
    assert_eq!(hairpins, n, "hairpin elements in the kernel");
    // Every IPv4 table dispatches; only the first masquerades. (IPv6 has
    // nothing to split: one table, `realip`.)
    let v4: String = listing
        .split("table ")
        .filter(|t| t.starts_with("ip realip-"))
        .collect();
    assert_eq!(v4.matches("chain nat-prerouting {").count(), 4);
    assert_eq!(v4.matches("chain nat-postrouting {").count(), 1);
    assert!(listing.contains("table ip6 realip {"));
}
