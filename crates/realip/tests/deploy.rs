//! deploy/ against the real apiserver: every overlay is accepted by
//! `kubectl apply --dry-run=server` (the apiserver's own validation and
//! admission, not a schema copy), and `realip node` runs on the token of
//! the DaemonSet's own ServiceAccount, so the RBAC it ships with is judged
//! by the apiserver: enough to program a Service, and without it a clear
//! "forbidden".
//!
//! Needs root and the Kubernetes binaries (REALIP_K8S_BIN, or the
//! workspace's target/k8s/bin); with REALIP_REQUIRE_NETNS=1 a missing one
//! fails the test instead of skipping it.
// A test crate: its items are shared between its modules, not an API.
#![allow(missing_docs)]

mod common;
mod k8s;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s::Cluster;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The objects the overlay renders to, through kubectl's own kustomize.
fn render(cluster: &Cluster, overlay: &str) -> String {
    let dir = deploy().join("overlays").join(overlay);
    let out = cluster.kubectl(&["kustomize", dir.to_str().unwrap()], None);
    assert!(out.status.success(), "kustomize {overlay}: {}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// A kubeconfig that authenticates with `token` (a ServiceAccount's).
fn token_kubeconfig(dir: &Path, name: &str, token: &str) -> PathBuf {
    let d = dir.display();
    let path = dir.join(format!("{name}.kubeconfig"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster: {{server: \"https://127.0.0.1:6443\", certificate-authority: \"{d}/ca.crt\"}}\n\
             users:\n- name: {name}\n  user: {{token: \"{token}\"}}\n\
             contexts:\n- name: test\n  context: {{cluster: test, user: {name}}}\ncurrent-context: test\n"
        ),
    )
    .unwrap();
    path
}

fn token(cluster: &Cluster, namespace: &str, account: &str) -> String {
    let out = cluster.kubectl(&["create", "token", account, "-n", namespace], None);
    assert!(
        out.status.success(),
        "create token {account}: {}",
        text(&out)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn every_overlay_is_accepted_and_its_rbac_is_enough() {
    let bins = k8s::binaries();
    if !common::netns_supported(bins.clone().map(|_| ())) {
        return;
    }
    let bin = bins.unwrap();
    let dir = common::scratch("deploy");
    let cluster = Cluster::start(&bin, dir.clone());

    // Server-side dry runs: nothing is stored, so the namespace the objects
    // live in must exist for real first.
    let out = cluster.kubectl(&["create", "namespace", "realip"], None);
    assert!(out.status.success(), "{}", text(&out));
    for overlay in ["replace", "alongside"] {
        let objects = render(&cluster, overlay);
        for kind in [
            "kind: DaemonSet",
            "kind: Deployment",
            "kind: ClusterRole",
            "kind: ServiceAccount",
            "externalTrafficPolicy: Local",
        ] {
            assert!(objects.contains(kind), "{overlay} lacks {kind}");
        }
        let out = cluster.kubectl(&["apply", "--dry-run=server", "-f", "-"], Some(&objects));
        assert!(out.status.success(), "{overlay}: {}", text(&out));
        let said = text(&out);
        for object in [
            "daemonset.apps/realip-node created (server dry run)",
            "deployment.apps/whoami created (server dry run)",
            "deployment.apps/realip-ingress created (server dry run)",
            "service/realip-ingress created (server dry run)",
            "clusterrole.rbac.authorization.k8s.io/realip-node created (server dry run)",
        ] {
            assert!(said.contains(object), "{overlay}: no {object:?} in\n{said}");
        }
    }
    // The dry runs stored nothing.
    let out = cluster.kubectl(&["get", "daemonsets", "-n", "realip", "-o", "name"], None);
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "{}",
        text(&out)
    );

    // Now the RBAC for real (ServiceAccount, ClusterRole, binding), and the
    // agent on that ServiceAccount's token.
    let objects = render(&cluster, "replace");
    let rbac: Vec<&str> = objects
        .split("\n---\n")
        .filter(|d| {
            [
                "kind: ServiceAccount",
                "kind: ClusterRole\n",
                "kind: ClusterRoleBinding",
            ]
            .iter()
            .any(|k| d.contains(k))
        })
        .collect();
    assert_eq!(
        rbac.len(),
        3,
        "ServiceAccount, ClusterRole, ClusterRoleBinding"
    );
    cluster.apply(&rbac.join("\n---\n"));
    cluster.apply(k8s::WEB);

    let ok = token_kubeconfig(
        &dir,
        "realip-node",
        &token(&cluster, "realip", "realip-node"),
    );
    let out = cluster.exec(&[
        env!("CARGO_BIN_EXE_realip"),
        "node",
        "--kubeconfig",
        ok.to_str().unwrap(),
        "--node",
        "node-1",
        "--once",
    ]);
    assert!(
        out.status.success(),
        "realip node --once as realip-node: {}",
        text(&out)
    );
    let rules = cluster.ruleset();
    assert!(
        rules.contains("10.96.100.10") && rules.contains("10.244.1.10"),
        "the Service is not in the kernel:\n{rules}"
    );

    // Another account in the same namespace, bound to nothing: every list
    // is forbidden, the agent says so (naming the resource) and keeps
    // trying instead of crashing.
    let out = cluster.kubectl(
        &["create", "serviceaccount", "nobody", "-n", "realip"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    let denied = token_kubeconfig(&dir, "nobody", &token(&cluster, "realip", "nobody"));
    let log = dir.join("nobody.log");
    let mut agent = cluster.realip(
        &[
            "node",
            "--kubeconfig",
            denied.to_str().unwrap(),
            "--node",
            "node-1",
            "--healthz",
            "127.0.0.1:10266",
            "--metrics-bind-address",
            "127.0.0.1:10259",
        ],
        &log,
    );
    // The API's message is logged as it came, its quotes escaped or not.
    let forbidden = |said: &str, r: &str| {
        said.contains(&format!("cannot list resource \"{r}\""))
            || said.contains(&format!("cannot list resource \\\"{r}\\\""))
    };
    let resources = ["services", "endpointslices", "nodes"];
    let end = Instant::now() + Duration::from_secs(30);
    let said = loop {
        let said = std::fs::read_to_string(&log).unwrap_or_default();
        if resources.iter().all(|r| forbidden(&said, r)) || Instant::now() > end {
            break said;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    for r in resources {
        assert!(
            forbidden(&said, r),
            "no forbidden {r} for system:serviceaccount:realip:nobody in:\n{said}"
        );
    }
    assert!(
        said.contains("system:serviceaccount:realip:nobody"),
        "{said}"
    );
    assert!(agent.alive(), "the agent must survive a 403:\n{said}");
    agent.stop();
}
