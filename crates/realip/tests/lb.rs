//! `realip lb` in TCP mode, end to end on loopback: a client bound to its
//! own 127.0.0.x address, the real binary as the load balancer, `realip
//! whoami` backends. What the backend resolved is the verdict.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

struct Lb {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Lb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `realip lb` on a loopback port the kernel picks.
fn lb(args: &[&str]) -> Lb {
    let mut child = Command::new(env!("CARGO_BIN_EXE_realip"))
        .arg("lb")
        .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start realip lb");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match rx.recv_timeout(left) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("realip lb did not report listening ({args:?})");
            }
        };
        if line.contains("\"listening\"") {
            let addr = field(&line, "tcp").expect("tcp address");
            // Keep draining so the process never blocks on stderr.
            std::thread::spawn(move || for _ in rx {});
            return Lb { child, addr };
        }
    }
}

async fn realip_via(lb: &Lb, from: &str, headers: &[(&str, &str)]) -> (String, SocketAddr) {
    let stream = connect_from(from, lb.addr).await;
    let me = stream.local_addr().unwrap();
    let (status, _, body) = http1_over(stream, "GET", "/realip", headers, "").await;
    assert_eq!(status, 200, "{body}");
    (body, me)
}

#[tokio::test]
async fn every_tcp_client_ip_mode_end_to_end() {
    // PROXY v2 and v1: the backend trusts the LB (127.0.0.1) and learns
    // the client from the header.
    for (mode, accept) in [("proxy-v2", "v2"), ("proxy-v1", "v1")] {
        let w = whoami(&["--proxy-protocol", accept, "--trusted", "127.0.0.1/32"]);
        let backend = w.http.to_string();
        let l = lb(&["--backend", &backend, "--client-ip", mode]);
        let (realip, me) = realip_via(&l, "127.0.0.2", &[]).await;
        assert_eq!(realip, me.to_string(), "{mode}");
        // A forged X-Forwarded-For from the (untrusted) client changes
        // nothing.
        let (realip, me) =
            realip_via(&l, "127.0.0.3", &[("X-Forwarded-For", "198.51.100.66")]).await;
        assert_eq!(realip, me.to_string(), "{mode} with a forged header");
    }
    // none: the seeds' problem, the backend sees the LB.
    let w = whoami(&["--trusted", "127.0.0.1/32"]);
    let backend = w.http.to_string();
    let l = lb(&["--backend", &backend, "--client-ip", "none"]);
    let (realip, _) = realip_via(&l, "127.0.0.2", &[]).await;
    assert!(realip.starts_with("127.0.0.1:"), "{realip}");
}

#[tokio::test]
async fn schedules_spread_and_stick() {
    let a = whoami(&["--name", "a"]);
    let b = whoami(&["--name", "b"]);
    let (ba, bb) = (a.http.to_string(), b.http.to_string());
    let name_via = |l: &Lb, from: &'static str| {
        let addr = l.addr;
        async move {
            let stream = connect_from(from, addr).await;
            let (_, _, body) = http1_over(stream, "GET", "/api", &[], "").await;
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            v["name"].as_str().unwrap_or("").to_string()
        }
    };
    // Round robin alternates.
    let rr = lb(&["--backend", &ba, "--backend", &bb]);
    let mut names = Vec::new();
    for _ in 0..4 {
        names.push(name_via(&rr, "127.0.0.2").await);
    }
    assert_eq!(names, ["a", "b", "a", "b"]);
    // Weights 3:1 over 8 connections: 6 and 2.
    let w = lb(&[
        "--backend",
        &format!("{ba}=3"),
        "--backend",
        &bb,
        "--schedule",
        "weighted-round-robin",
    ]);
    let mut a_count = 0;
    for _ in 0..8 {
        a_count += usize::from(name_via(&w, "127.0.0.2").await == "a");
    }
    assert_eq!(a_count, 6);
    // Source hash: one client address, one backend, whatever its port.
    let sh = lb(&[
        "--backend",
        &ba,
        "--backend",
        &bb,
        "--schedule",
        "source-hash",
    ]);
    let first = name_via(&sh, "127.0.0.5").await;
    for _ in 0..5 {
        assert_eq!(name_via(&sh, "127.0.0.5").await, first);
    }
}

#[tokio::test]
async fn a_dead_backend_fails_the_connection_not_the_lb() {
    // Nothing listens on this port of our own loopback.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = dead.local_addr().unwrap().to_string();
    drop(dead);
    let w = whoami(&[]);
    let live = w.http.to_string();
    let l = lb(&["--backend", &addr, "--connect-timeout", "1s"]);
    let mut c = connect_from("127.0.0.2", l.addr).await;
    let out = raw_exchange(&mut c, b"GET / HTTP/1.0\r\n\r\n").await;
    assert!(out.is_empty(), "a dead backend answered: {out:?}");
    // The LB lives on: a second one with a live backend next to it works,
    // and this one still accepts.
    let l2 = lb(&["--backend", &live]);
    let (realip, _) = realip_via(&l2, "127.0.0.2", &[]).await;
    assert!(realip.starts_with("127.0.0.1:"));
    let _c = connect_from("127.0.0.2", l.addr).await;
}

#[tokio::test]
async fn a_failing_backend_is_taken_out_and_put_back() {
    let a = whoami(&["--name", "a"]);
    let b = whoami(&["--name", "b"]);
    let (ba, bb) = (a.http.to_string(), b.http.to_string());
    let l = lb(&[
        "--backend",
        &ba,
        "--backend",
        &bb,
        "--health",
        "http:/health",
        "--health-interval",
        "100ms",
        "--fall",
        "2",
        "--rise",
        "2",
    ]);
    let names = |n: usize| {
        let addr = l.addr;
        async move {
            let mut out = Vec::new();
            for _ in 0..n {
                let stream = connect_from("127.0.0.2", addr).await;
                let (_, _, body) = http1_over(stream, "GET", "/api", &[], "").await;
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                out.push(v["name"].as_str().unwrap_or("").to_string());
            }
            out
        }
    };
    assert!(names(4).await.contains(&"a".to_string()));
    // a's health answers 503 from now on.
    let (s, _, _) = http1_over(
        connect_from("127.0.0.1", a.http).await,
        "POST",
        "/health",
        &[],
        "503",
    )
    .await;
    assert_eq!(s, 200);
    // Out within interval x fall (200 ms), with room for scheduling.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let after = names(10).await;
    assert!(after.iter().all(|n| n == "b"), "{after:?}");
    // Back after two good checks.
    let (s, _, _) = http1_over(
        connect_from("127.0.0.1", a.http).await,
        "POST",
        "/health",
        &[],
        "200",
    )
    .await;
    assert_eq!(s, 200);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(names(4).await.contains(&"a".to_string()));
}
