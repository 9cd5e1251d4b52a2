//! The CLI as a user runs it: exit codes, JSON, the node plan, the lb's
//! refusals.
// A test crate: its items are shared between its modules, not an API.
#![allow(missing_docs)]

use std::process::Command;

mod common;

fn realip(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_realip"))
        .args(args)
        .output()
        .expect("run realip");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn resolve_exit_codes_and_json() {
    let (code, out, _) = realip(&[
        "resolve",
        "--peer",
        "10.0.0.5:555",
        "--trusted",
        "10.0.0.0/8",
        "--header",
        "X-Forwarded-For: 3.3.3.3, 10.0.0.1",
        "--json",
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["client"]["ip"], "3.3.3.3");
    assert_eq!(v["client"]["port"], serde_json::Value::Null);
    assert_eq!(v["client"]["source"], "header");
    assert_eq!(v["hops"].as_array().unwrap().len(), 3);
    assert_eq!(v["hops"][0]["trusted"], false);
    // No answer: exit 1 with a reason.
    let (code, _, err) = realip(&[
        "resolve",
        "--peer",
        "1.2.3.4",
        "--strategy",
        "single-header:X-Real-IP",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("no client address could be resolved"), "{err}");
    // Bad arguments: exit 2.
    for bad in [
        vec!["resolve", "--peer", "nonsense"],
        vec!["resolve", "--peer", "1.2.3.4", "--trusted", "10.0.0.0/33"],
        vec!["resolve", "--peer", "1.2.3.4", "--strategy", "nope"],
        vec!["resolve", "--peer", "1.2.3.4", "--header", "no colon"],
    ] {
        let (code, _, err) = realip(&bad);
        assert_eq!(code, 2, "{bad:?}: {err}");
        assert!(err.starts_with("realip resolve: "), "{err}");
    }
}

#[test]
fn resolve_reads_a_proxy_header_file() {
    let dir = std::env::temp_dir().join(format!("realip-cli-{}", std::process::id()));
    std::fs::write(&dir, b"PROXY TCP4 192.0.2.1 10.0.0.1 5555 80\r\n").unwrap();
    let (code, out, _) = realip(&[
        "resolve",
        "--peer",
        "127.0.0.1:40000",
        "--trusted",
        "loopback",
        "--strategy",
        "proxy-protocol",
        "--proxy-protocol",
        dir.to_str().unwrap(),
        "--json",
    ]);
    let _ = std::fs::remove_file(&dir);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["client"]["ip"].as_str(), v["client"]["port"].as_u64()),
        (Some("192.0.2.1"), Some(5555))
    );
    // A broken header is a clear error, exit 2.
    std::fs::write(&dir, b"PROXY TCP4 192.0.2.1 10.0.0.1 05555 80\r\n").unwrap();
    let (code, _, err) = realip(&[
        "resolve",
        "--peer",
        "127.0.0.1:1",
        "--trusted",
        "loopback",
        "--strategy",
        "proxy-protocol",
        "--proxy-protocol",
        dir.to_str().unwrap(),
    ]);
    let _ = std::fs::remove_file(&dir);
    assert_eq!(code, 2);
    assert!(err.contains("invalid"), "{err}");
}

#[test]
fn node_plan_prints_the_ruleset() {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../realip-node/tests/fixtures");
    let (code, out, err) = realip(&[
        "node",
        "plan",
        "--objects",
        fixtures,
        "--node",
        "node-1",
        "--family",
        "ip",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("table ip realip {"), "{out}");
    assert!(!out.contains("table ip6"), "{out}");
    assert!(err.contains("skipped Service demo/broken"), "{err}");
    let (code, _, err) = realip(&["node", "plan", "--objects", fixtures, "--node", "node-9"]);
    assert_eq!(code, 2);
    assert!(err.contains("node-9"), "{err}");
}

#[test]
fn each_subcommand_shows_its_long_help() {
    // Each subcommand's --help carries its own long text, not a one-line
    // summary from the parent.
    for (cmd, needle) in [
        (
            &["resolve", "--help"][..],
            "believing only what trusted peers say",
        ),
        (&["whoami", "--help"], "What is normalised"),
        (&["node", "plan", "--help"], "kubectl get -o yaml"),
        (
            &["lb", "--help"],
            "--service NAMESPACE/NAME: the cloud provider's load balancer for that Service",
        ),
    ] {
        let (code, out, err) = realip(cmd);
        assert_eq!(code, 0, "{cmd:?}: {err}");
        assert!(
            out.replace('\n', " ").contains(needle),
            "{cmd:?} lacks {needle:?}:\n{out}"
        );
    }
}

#[test]
fn lb_service_flags_are_refused_with_a_reason() {
    // The API access flags belong to --service, even beside --backend
    // (where clap's own `requires` lets them pass).
    let (code, _, err) = realip(&[
        "lb",
        "--listen",
        "127.0.0.1:0",
        "--backend",
        "127.0.0.1:1",
        "--kubeconfig",
        "/nonexistent",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("are for --service NAMESPACE/NAME"), "{err}");
    let (code, _, err) = realip(&["lb", "--listen", "127.0.0.1:0", "--service", "web"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("give NAMESPACE/NAME, e.g. default/web"),
        "{err}"
    );
    let (code, _, err) = realip(&[
        "lb",
        "--listen",
        "127.0.0.1:0",
        "--service",
        "default/web",
        "--backend",
        "127.0.0.1:1",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot be used with"), "{err}");
    // No API server named, and not in a pod.
    let out = Command::new(env!("CARGO_BIN_EXE_realip"))
        .args(["lb", "--listen", "127.0.0.1:0", "--service", "default/web"])
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("give --kubeconfig FILE or --master URL"),
        "{err}"
    );
    // A kubeconfig that cannot be read is named, before anything listens.
    let (code, _, err) = realip(&[
        "lb",
        "--listen",
        "127.0.0.1:0",
        "--service",
        "default/web",
        "--kubeconfig",
        "/nonexistent/realip-kubeconfig",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("kubeconfig /nonexistent/realip-kubeconfig: No such file"),
        "{err}"
    );
}

/// Start `realip ARGS` with `NOTIFY_SOCKET` pointing at a socket of ours
/// (a path, or `@name` in the abstract namespace); return the child, what
/// arrived on the socket within 10 s, and the first stderr line that names
/// an address under `key`.
fn notified(
    args: &[&str],
    abstract_name: bool,
    key: &str,
) -> (std::process::Child, String, std::net::SocketAddr) {
    use std::io::{BufRead, BufReader};
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
    let dir = common::scratch("notify");
    let (socket, name) = if abstract_name {
        let name = format!("realip-test-notify-{}", std::process::id());
        let s = UnixDatagram::bind_addr(&UnixAddr::from_abstract_name(&name).unwrap()).unwrap();
        (s, format!("@{name}"))
    } else {
        let path = dir.join("notify.sock");
        (
            UnixDatagram::bind(&path).unwrap(),
            path.to_string_lossy().into_owned(),
        )
    };
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_realip"))
        .args(args)
        .args(["--log-format", "json"])
        .env("NOTIFY_SOCKET", &name)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start realip");
    let mut buf = [0u8; 512];
    let got = socket
        .recv(&mut buf)
        .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned());
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let addr = stderr
        .lines()
        .map_while(Result::ok)
        .find_map(|l| common::field(&l, key));
    let _ = std::fs::remove_dir_all(&dir);
    match (got, addr) {
        (Ok(got), Some(addr)) => (child, got, addr),
        (got, addr) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no readiness ({got:?}) or no address ({addr:?}) from {args:?}");
        }
    }
}

#[test]
fn whoami_and_lb_tell_notify_socket_once_they_serve() {
    for abstract_name in [false, true] {
        let (mut w, said, http) = notified(
            &["whoami", "--listen", "127.0.0.1:0"],
            abstract_name,
            "http",
        );
        assert!(said.lines().any(|l| l == "READY=1"), "whoami said {said:?}");
        // Ready means serving: the port takes a connection now.
        std::net::TcpStream::connect(http).expect("whoami serves once ready");
        let backend = http.to_string();
        let (mut lb, said, tcp) = notified(
            &["lb", "--listen", "127.0.0.1:0", "--backend", &backend],
            abstract_name,
            "tcp",
        );
        assert!(said.lines().any(|l| l == "READY=1"), "lb said {said:?}");
        assert!(said.contains("STATUS=listening"), "lb said {said:?}");
        std::net::TcpStream::connect(tcp).expect("lb serves once ready");
        for c in [&mut w, &mut lb] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A live scenario (kubectl steps, Deployments) asked for from files is
/// refused before anything is built, saying what it needs.
#[test]
fn a_live_scenario_from_files_is_refused_with_the_reason() {
    for name in ["scaling", "kubectl-nodeport", "kubectl-loadbalancer"] {
        let (code, _, err) = realip(&["lab", "run", name]);
        assert_eq!(code, 2, "{name}: {err}");
        assert!(err.contains("add --api"), "{name}: {err}");
    }
    let (code, out, _) = realip(&["lab", "list"]);
    assert_eq!(code, 0);
    assert!(
        out.lines()
            .any(|l| l.starts_with("scaling") && l.ends_with("[--api]")),
        "{out}"
    );
}
