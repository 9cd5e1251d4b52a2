//! What the kernel tests share: whether nft runs in a private network
//! namespace here, and a thread of one's own in such a namespace.
#![allow(dead_code)]

use std::process::Command;

/// Whether nft runs in a private network namespace; with
/// REALIP_REQUIRE_NETNS=1 a missing capability fails instead of skipping.
pub fn can_run() -> bool {
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

/// Run `f` on a thread of its own in a new network namespace with
/// loopback up (a thread's namespace is its own; processes it starts
/// inherit it).
pub fn in_private_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        let up = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .unwrap();
        assert!(up.success(), "lo up");
        f()
    })
    .join()
    .expect("netns thread")
}
