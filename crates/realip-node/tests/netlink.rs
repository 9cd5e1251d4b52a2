//! The plan programmed over netlink lands in the kernel as the same
//! ruleset `nft -f` makes of its text form: both are listed by the kernel
//! (`nft list ruleset`, test-time only) and compared. Everything happens
//! in private, anonymous network namespaces, so the host's tables are
//! never touched. Needs root; with REALIP_REQUIRE_NETNS=1 a missing
//! capability fails instead of skipping.

use std::process::Command;

use realip_nft::{Batch, CommitError, Expr, Netlink, Verdict};
use realip_node::kernel;
use realip_node::model::load_str;
use realip_node::plan::{plan, Ruleset};

fn can_run() -> bool {
    let required = std::env::var("REALIP_REQUIRE_NETNS").is_ok_and(|v| v == "1");
    let probe = Command::new("unshare")
        .args(["-n", "nft", "list", "tables"])
        .output();
    match probe {
        Ok(o) if o.status.success() => true,
        other => {
            let why = format!("cannot run nft in a private network namespace: {other:?}");
            assert!(!required, "{why} (REALIP_REQUIRE_NETNS=1)");
            eprintln!("SKIPPED: {why}");
            false
        }
    }
}

/// Run `f` on a thread of its own in a new network namespace (a thread's
/// namespace is its own; processes it starts inherit it).
fn in_private_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        f()
    })
    .join()
    .expect("netns thread")
}

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
