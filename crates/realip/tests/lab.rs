//! The lab's namespaces on the real kernel: the client reaches a pod
//! through the router and node-1 unchanged (no NAT anywhere yet), node-2
//! reaches it from its own address, and nothing is left behind.
//!
//! Needs root. With REALIP_REQUIRE_NETNS=1 (CI) a missing capability fails
//! the test; otherwise it is skipped with a message.
// A test crate: its items are shared between its modules, not an API.
#![allow(missing_docs)]

#[path = "lab/api.rs"]
mod api;
mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Killed;
use realip_lab::topology::{clean_prefix, plan, unique_id, Lab, Role, Spec, PREFIX};

fn supported() -> bool {
    common::netns_supported(Ok(()))
}

fn netns_names() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// `GET path` over bash's /dev/tcp from inside a host's namespace.
fn http_from(lab: &Lab, role: &Role, addr: &str, path: &str) -> String {
    let (host, port) = addr.split_once(':').unwrap();
    let script = format!(
        "exec 3<>/dev/tcp/{host}/{port} && printf 'GET {path} HTTP/1.0\\r\\nHost: lab\\r\\n\\r\\n' >&3 && timeout 5 cat <&3"
    );
    let out = lab
        .exec(role, &["timeout", "10", "bash", "-c", &script])
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn client_reaches_a_pod_and_teardown_is_complete() {
    if !supported() {
        return;
    }
    let p = plan(
        &Spec {
            pods_per_node: vec![1, 0],
            control: false,
        },
        &unique_id(),
    )
    .unwrap();
    let names: Vec<String> = p.hosts.iter().map(|h| h.netns.clone()).collect();
    let lab = Lab::build(p).expect("build the lab");
    for n in &names {
        assert!(netns_names().contains(n), "{n} missing");
    }
    let pod_ns = lab.plan().netns(&Role::Pod(1, 0)).unwrap().to_string();
    let whoami = Killed(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &pod_ns,
                env!("CARGO_BIN_EXE_realip"),
                "whoami",
                "--listen",
                "10.244.1.10:8080",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Wait until it listens (inside its namespace).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = String::new();
    while Instant::now() < deadline {
        got = http_from(&lab, &Role::Client, "10.244.1.10:8080", "/clientip");
        if !got.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let body = got.rsplit("\r\n\r\n").next().unwrap_or("");
    assert!(
        body.starts_with("203.0.113.7:"),
        "the pod saw {body:?} ({got:?})"
    );
    let from_node2 = http_from(&lab, &Role::Node(2), "10.244.1.10:8080", "/clientip");
    let body = from_node2.rsplit("\r\n\r\n").next().unwrap_or("");
    assert!(body.starts_with("10.0.0.12:"), "the pod saw {body:?}");
    drop(whoami);
    drop(lab);
    let left = netns_names();
    for n in &names {
        assert!(!left.contains(n), "{n} left behind");
    }
}

#[test]
fn clean_removes_leftovers_by_prefix() {
    if !supported() {
        return;
    }
    // A prefix of its own: other tests' labs are live, not leftovers.
    let id = unique_id();
    let name = format!("{PREFIX}-{id}-leftover");
    assert!(Command::new("ip")
        .args(["netns", "add", &name])
        .status()
        .unwrap()
        .success());
    let removed = clean_prefix(&format!("{PREFIX}-{id}-")).unwrap();
    assert!(removed.contains(&name), "{removed:?}");
    assert!(!netns_names().contains(&name));
}

#[test]
fn ctrl_c_tears_the_lab_down() {
    if !supported() {
        return;
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_realip"))
        .args(["lab", "up", "--pods", "1,1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (text, ready) = read_until_ready(&mut child);
    assert!(ready, "realip lab up never got ready: {text}");
    let names = listed_namespaces(&text);
    assert_eq!(names.len(), 7, "{names:?}");
    let live = netns_names();
    assert!(
        names.iter().all(|n| live.contains(n)),
        "{names:?} vs {live:?}"
    );
    // A running cluster, not empty namespaces: the pods answer.
    assert!(text.contains("pod 10.244.2.10: realip whoami"), "{text}");
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}");
    let left = netns_names();
    for n in &names {
        assert!(!left.contains(n), "{n} left behind after Ctrl-C");
    }
}

/// Run `cmd` (a `realip lab ... --json`): what it printed as JSON, its
/// output, and its stdout as text; panics with both streams when the
/// stdout is not JSON.
fn json_of(cmd: &mut Command) -> (serde_json::Value, std::process::Output, String) {
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let v = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (v, out, stdout)
}

/// `realip lab up`'s stdout up to its `ready` line (the last it prints),
/// and whether that line came.
fn read_until_ready(child: &mut std::process::Child) -> (String, bool) {
    use std::io::{BufRead, BufReader};
    let mut text = String::new();
    for line in BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        text.push_str(&line);
        text.push('\n');
        if line.starts_with("ready") {
            return (text, true);
        }
    }
    (text, false)
}

/// The namespaces `realip lab up` lists (`  realip-... what`).
fn listed_namespaces(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("  "))
        .filter(|l| l.starts_with(&format!("{PREFIX}-")))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Processes whose environment holds `tag` (`NAME=VALUE`): what a lab
/// started, since every process it starts inherits it.
fn tagged_processes(tag: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| {
            std::fs::read(e.path().join("environ"))
                .map(|env| env.split(|&b| b == 0).any(|v| v == tag.as_bytes()))
                .unwrap_or(false)
        })
        .map(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            format!(
                "{} {}",
                e.file_name().to_string_lossy(),
                String::from_utf8_lossy(&cmd).replace('\0', " ")
            )
        })
        .collect()
}

/// The main job: every built-in scenario, run for real, passes; the JSON
/// says so scenario by scenario, and the HTML report is well-formed with
/// one SVG per scenario.
#[test]
fn every_builtin_scenario_passes_and_the_report_is_well_formed() {
    if !supported() {
        return;
    }
    let dir = common::scratch("labreport");
    let html = dir.join("report.html");
    let (v, out, _) = json_of(
        Command::new(env!("CARGO_BIN_EXE_realip"))
            .args(["lab", "--json", "--html"])
            .arg(&html),
    );
    let scenarios = v["scenarios"].as_array().unwrap();
    // From files, every scenario but the live ones (kubectl steps,
    // Deployments), which are named on stderr instead.
    let builtins = realip_lab::scenario::Scenario::builtins();
    let live: Vec<&str> = builtins
        .iter()
        .filter(|s| s.needs_api())
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(scenarios.len(), builtins.len() - live.len());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for name in &live {
        assert!(stderr.contains(name), "{name} is not named: {stderr}");
    }
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
    assert_eq!(v["pass"], true);
    assert!(out.status.success());
    // Every probe was checked against something whoami (or a timeout)
    // really showed: each one carries its observations.
    for s in scenarios {
        for p in s["probes"].as_array().unwrap() {
            assert!(!p["seen"].as_array().unwrap().is_empty(), "{}", p["name"]);
        }
    }
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert_eq!(page.matches("<svg ").count(), scenarios.len());
    assert_eq!(page.matches("</svg>").count(), scenarios.len());
    assert_balanced(&page);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Tags open and close in order (void elements excepted), attributes are
/// quoted, and no text holds a bare `<`: what "well-formed" means for a
/// page with no scripts.
fn assert_balanced(page: &str) {
    const VOID: [&str; 6] = ["meta", "br", "path", "rect", "line", "!DOCTYPE"];
    let mut stack: Vec<String> = Vec::new();
    let mut rest = page;
    while let Some(i) = rest.find('<') {
        let after = &rest[i + 1..];
        let end = after.find('>').expect("an unclosed tag");
        let tag = &after[..end];
        assert!(
            !tag.contains('<'),
            "a bare < near {:?}",
            &tag[..tag.len().min(60)]
        );
        assert_eq!(
            tag.matches('"').count() % 2,
            0,
            "unbalanced quotes in <{tag}>"
        );
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '/')
            .collect();
        if let Some(closing) = tag.strip_prefix('/') {
            let closing = closing.trim();
            let open = stack
                .pop()
                .unwrap_or_else(|| panic!("</{closing}> closes nothing"));
            assert_eq!(open, closing, "</{closing}> closes <{open}>");
        } else if !tag.ends_with('/') && !VOID.contains(&name.as_str()) {
            stack.push(name);
        }
        rest = &after[end + 1..];
    }
    assert!(stack.is_empty(), "never closed: {stack:?}");
}

/// Ctrl-C in the middle of `realip lab`: every process it started and
/// every namespace it made are gone (names carry the run's PID in hex).
#[test]
fn an_interrupted_lab_leaves_nothing_behind() {
    if !supported() {
        return;
    }
    for delay in [300u64, 900] {
        // Every process the lab starts inherits this; none may survive.
        let tag = format!(
            "REALIP_LAB_TEST_TAG=interrupted-{}-{delay}",
            std::process::id()
        );
        let mut child = Command::new(env!("CARGO_BIN_EXE_realip"))
            .arg("lab")
            .env("REALIP_LAB_TEST_TAG", tag.split_once('=').unwrap().1)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let prefix = format!("{PREFIX}-{:x}", child.id());
        std::thread::sleep(Duration::from_millis(delay));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "realip lab did not stop");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(status.code(), Some(130), "after {delay} ms");
        let left: Vec<String> = netns_names()
            .into_iter()
            .filter(|n| n.starts_with(&prefix))
            .collect();
        assert!(left.is_empty(), "after {delay} ms: {left:?}");
        let survivors = tagged_processes(&tag);
        assert!(
            survivors.is_empty(),
            "after {delay} ms, still running: {survivors:?}"
        );
    }
}

/// A user's scenario file runs like a built-in, and a wrong expectation is
/// a FAIL with what was really seen (exit 1), not a pass.
#[test]
fn a_scenario_file_with_a_wrong_expectation_fails() {
    if !supported() {
        return;
    }
    let dir = common::scratch("labfile");
    let file = dir.join("mine.yaml");
    let builtin = realip_lab::scenario::BUILTIN
        .iter()
        .find(|(n, _)| *n == "nodeport-cluster")
        .unwrap()
        .1;
    // The seeds say node-2's IP; claim the client's instead.
    let wrong = builtin
        .replace("name: nodeport-cluster", "name: mine")
        .replacen(
            "expect: {peer: 10.0.0.12,",
            "expect: {peer: 203.0.113.7,",
            1,
        );
    std::fs::write(&file, wrong).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_realip"))
        .args(["lab", "run"])
        .arg(&file)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{table}");
    assert!(
        table.contains("FAIL mine / via node-2, which has no endpoint: expected the pod's socket peer is 203.0.113.7, saw 10.0.0.12"),
        "{table}"
    );
    assert!(table.contains("1 of 2 probes passed"), "{table}");
    // A file that is not a scenario: exit 2 and why.
    std::fs::write(&file, "name: x\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_realip"))
        .args(["lab", "run"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mine.yaml"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Without root the lab says why and exits 2, building nothing.
#[test]
fn without_root_the_lab_says_so_and_exits_2() {
    if !supported() {
        return;
    }
    // Run as nobody (util-linux's setpriv), from a copy nobody may run
    // (the checkout may sit under a private home).
    use std::os::unix::fs::PermissionsExt;
    let dir = common::scratch("labnoroot");
    let exe = dir.join("realip");
    std::fs::copy(env!("CARGO_BIN_EXE_realip"), &exe).unwrap();
    for (p, mode) in [(&dir, 0o755), (&exe, 0o755)] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let Ok(out) = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&exe)
        .arg("lab")
        .current_dir(&dir)
        .output()
    else {
        panic!("setpriv (util-linux) is needed for this test");
    };
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the lab needs root"), "{err}");
    assert!(out.stdout.is_empty());
}
