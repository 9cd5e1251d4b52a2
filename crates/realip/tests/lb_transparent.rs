//! `realip lb --client-ip transparent` on the real kernel, in the lab's
//! namespaces: the client (203.0.113.7) connects to the lb on the router,
//! which connects on to whoami on node-1 from the client's own address.
//! Without reply routing the backend's answer goes past the lb to the
//! client, which knows no such connection, and nothing comes back; with
//! the documented rules (`socket transparent` mark, `ip rule fwmark`,
//! `local` route) the backend sees the client's address as its peer.
//!
//! Needs root; with REALIP_REQUIRE_NETNS=1 (CI) a missing capability fails
//! instead of skipping.
// A test crate: its items are shared between its modules, not an API.
#![allow(missing_docs)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{get, spawn_in};
use realip_lab::topology::{plan, unique_id, Lab, Role, Spec};

fn wait_listening(lab: &Lab, role: &Role, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = lab
            .exec(role, &["ss", "-Htln", &format!("sport = :{port}")])
            .unwrap();
        if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "nothing listens on {port} in {role:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn transparent_mode_shows_the_client_once_replies_are_routed_back() {
    let nft = Command::new("nft")
        .arg("--version")
        .output()
        .map(|_| ())
        .map_err(|e| format!("nft is needed ({e}): run scripts/test"));
    if !common::netns_supported(nft) {
        return;
    }
    let lab = Lab::build(
        plan(
            &Spec {
                pods_per_node: vec![1],
                control: false,
            },
            &unique_id(),
        )
        .unwrap(),
    )
    .expect("lab");
    let node = lab.plan().netns(&Role::Node(1)).unwrap().to_string();
    let router = lab.plan().netns(&Role::Router).unwrap().to_string();
    let _w = spawn_in(&node, &["whoami", "--listen", "10.0.0.11:9090"]);
    let _lb = spawn_in(
        &router,
        &[
            "lb",
            "--listen",
            "203.0.113.1:80",
            "--backend",
            "10.0.0.11:9090",
            "--client-ip",
            "transparent",
            "--connect-timeout",
            "1s",
        ],
    );
    wait_listening(&lab, &Role::Node(1), 9090);
    wait_listening(&lab, &Role::Router, 80);

    // No reply routing yet: node-1 answers 203.0.113.7 through the router,
    // which forwards it to the client; the lb's connect never completes.
    let out = get(&lab, &Role::Client, "203.0.113.1:80", "/clientip", 4);
    assert!(out.is_empty(), "{out}");

    // The rules of `realip lb --help` / tcp::transparent_connect.
    let rules = "table ip realip-tproxy {\n chain pre {\n  type filter hook prerouting priority mangle;\n  socket transparent 1 meta mark set 1\n }\n}\n";
    let set = lab
        .exec(
            &Role::Router,
            &[
                "bash",
                "-c",
                &format!(
                    "printf '{}' | nft -f - && ip rule add fwmark 1 lookup 100 && ip route add local 0.0.0.0/0 dev lo table 100",
                    rules.replace('\n', "\\n")
                ),
            ],
        )
        .unwrap();
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let out = get(&lab, &Role::Client, "203.0.113.1:80", "/clientip", 5);
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    assert!(
        out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200"),
        "{out}"
    );
    // whoami's socket peer is the client itself: no header, no PROXY.
    assert!(body.starts_with("203.0.113.7:"), "{out}");
}
