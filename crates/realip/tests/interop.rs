//! Interop: `realip whoami` behind real Debian peers (HAProxy 2.6, nginx
//! 1.22), all on loopback. The client connects from 127.0.0.3, the proxy
//! reaches whoami from 127.0.0.1; whoami must report 127.0.0.3.
//!
//! The peers are required, not optional: `scripts/test` installs them, and a
//! missing one fails here rather than skipping.
// A test crate: its items are shared between its modules, not an API.
#![allow(missing_docs)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const CLIENT: &str = "127.0.0.3";

/// A peer process we started, stopped by its own PID when dropped, with its
/// scratch directory.
struct Peer {
    child: Child,
    dir: PathBuf,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(port: u16, what: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited early: {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not listen on 127.0.0.1:{port}");
}

fn haproxy(tcp_backend: u16, http_backend: u16) -> (Peer, u16, u16) {
    let dir = scratch("haproxy");
    let (tcp_port, http_port) = (free_port(), free_port());
    let cfg = format!(
        "global\n  maxconn 256\n\
         defaults\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
         frontend ft_tcp\n  mode tcp\n  bind 127.0.0.1:{tcp_port}\n  default_backend bk_tcp\n\
         backend bk_tcp\n  mode tcp\n  server w 127.0.0.1:{tcp_backend} send-proxy-v2\n\
         frontend ft_http\n  mode http\n  bind 127.0.0.1:{http_port}\n  option forwardfor\n  default_backend bk_http\n\
         backend bk_http\n  mode http\n  server w 127.0.0.1:{http_backend}\n"
    );
    (
        start_haproxy(dir, &cfg, &[tcp_port, http_port]),
        tcp_port,
        http_port,
    )
}

/// HAProxy on `cfg`, written into `dir`; ready once `ports` listen.
fn start_haproxy(dir: PathBuf, cfg: &str, ports: &[u16]) -> Peer {
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    let cmd = Command::new(installed("haproxy"))
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    started(cmd, "haproxy", dir, ports)
}

/// nginx with `servers` in its http block (and `top`, such as a
/// load_module and a stream block, before everything), one worker in the
/// foreground, everything it writes in `dir` (its prefix); ready once
/// `ports` listen.
fn start_nginx(dir: PathBuf, top: &str, servers: &str, ports: &[u16]) -> Peer {
    let d = dir.display();
    let cfg = format!(
        "{top}daemon off;\nmaster_process off;\nworker_processes 1;\n\
         pid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n  access_log off;\n\
           client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
           {servers}}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, cfg).unwrap();
    let cmd = Command::new(installed("nginx"))
        .arg("-c")
        .arg(&path)
        .arg("-p")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    started(cmd, "nginx", dir, ports)
}

fn started(spawned: std::io::Result<Child>, what: &str, dir: PathBuf, ports: &[u16]) -> Peer {
    let mut child = spawned.unwrap_or_else(|e| panic!("start {what}: {e}"));
    for &p in ports {
        wait_listening(p, what, &mut child);
    }
    Peer { child, dir }
}

fn nginx(stream_backend: u16, http_backend: u16) -> (Peer, u16, u16) {
    let dir = scratch("nginx");
    let (stream_port, http_port) = (free_port(), free_port());
    let module = "/usr/lib/nginx/modules/ngx_stream_module.so";
    assert!(
        Path::new(module).exists(),
        "nginx's stream module is missing: run scripts/test (it installs libnginx-mod-stream)"
    );
    let top = format!(
        "load_module {module};\n\
         stream {{\n  server {{\n    listen 127.0.0.1:{stream_port};\n    proxy_pass 127.0.0.1:{stream_backend};\n    proxy_protocol on;\n  }}\n}}\n"
    );
    let servers = format!(
        "server {{\n    listen 127.0.0.1:{http_port};\n    location / {{\n      proxy_pass http://127.0.0.1:{http_backend};\n      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n    }}\n  }}\n"
    );
    (
        start_nginx(dir, &top, &servers, &[stream_port, http_port]),
        stream_port,
        http_port,
    )
}

async fn realip_via(port: u16) -> serde_json::Value {
    let dst = format!("127.0.0.1:{port}").parse().unwrap();
    let (status, _, body) = get_from(CLIENT, dst, "/api", &[]).await;
    assert_eq!(status, 200, "{body}");
    json(&body)
}

#[tokio::test]
async fn haproxy_send_proxy_v2_and_forwardfor() {
    let pp = whoami(&["--trusted", "127.0.0.1/32", "--proxy-protocol", "v2"]);
    let xff = whoami(&["--trusted", "127.0.0.1/32"]);
    let (_h, tcp_port, http_port) = haproxy(pp.http.port(), xff.http.port());

    let v = realip_via(tcp_port).await;
    assert_eq!(v["realIp"]["ip"], CLIENT, "{v}");
    assert_eq!(v["realIp"]["source"], "proxy-protocol");
    assert_eq!(v["proxyProtocol"]["version"], 2);
    assert!(v["remoteAddr"].as_str().unwrap().starts_with("127.0.0.1:"));

    let v = realip_via(http_port).await;
    assert_eq!(v["realIp"]["ip"], CLIENT, "{v}");
    assert_eq!(v["realIp"]["header"], "X-Forwarded-For");

    // A client forging X-Forwarded-For through HAProxy: HAProxy appends the
    // real peer, and the walk stops there.
    let dst = format!("127.0.0.1:{http_port}").parse().unwrap();
    let (_, _, body) = get_from(CLIENT, dst, "/api", &[("X-Forwarded-For", "6.6.6.6")]).await;
    assert_eq!(json(&body)["realIp"]["ip"], CLIENT, "{body}");
}

#[tokio::test]
async fn nginx_stream_proxy_protocol_and_xff() {
    let pp = whoami(&["--trusted", "127.0.0.1/32", "--proxy-protocol", "any"]);
    let xff = whoami(&["--trusted", "127.0.0.1/32"]);
    let (_n, stream_port, http_port) = nginx(pp.http.port(), xff.http.port());

    let v = realip_via(stream_port).await;
    assert_eq!(v["realIp"]["ip"], CLIENT, "{v}");
    assert_eq!(v["realIp"]["source"], "proxy-protocol");
    assert_eq!(v["proxyProtocol"]["version"], 1);

    let v = realip_via(http_port).await;
    assert_eq!(v["realIp"]["ip"], CLIENT, "{v}");
    assert_eq!(v["realIp"]["header"], "X-Forwarded-For");
    let dst = format!("127.0.0.1:{http_port}").parse().unwrap();
    let (_, _, body) = get_from(CLIENT, dst, "/api", &[("X-Forwarded-For", "6.6.6.6")]).await;
    let v = json(&body);
    assert_eq!(v["realIp"]["ip"], CLIENT, "{body}");
    // Both entries are listed: the forged one never reached.
    let hops = v["hops"].as_array().unwrap();
    assert_eq!(hops[0]["addr"], "6.6.6.6");
    assert_eq!(hops[0]["verdict"], "not-reached");
}

/// `realip lb` in TCP mode on a free loopback port, in front of `backend`.
fn realip_lb(backend: u16, client_ip: &str) -> (Peer, u16) {
    realip_lb_with(&[
        "--backend",
        &format!("127.0.0.1:{backend}"),
        "--client-ip",
        client_ip,
    ])
}

/// Behind realip lb's PROXY v2: HAProxy (`accept-proxy`, then `option
/// forwardfor`) and nginx (`listen ... proxy_protocol`, then
/// `$proxy_protocol_addr` as X-Forwarded-For) each name the client to
/// whoami, which trusts only them.
#[tokio::test]
async fn haproxy_and_nginx_behind_realip_lb_see_the_client() {
    let backend = whoami(&["--trusted", "127.0.0.1/32"]);
    // HAProxy.
    let dir = scratch("haproxy-pp");
    let hport = free_port();
    let cfg = format!(
        "global\n  maxconn 256\n\
         defaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
         frontend ft\n  bind 127.0.0.1:{hport} accept-proxy\n  option forwardfor\n  default_backend bk\n\
         backend bk\n  server w 127.0.0.1:{}\n",
        backend.http.port()
    );
    let _h = start_haproxy(dir, &cfg, &[hport]);
    let (_lb1, lb1) = realip_lb(hport, "proxy-v2");
    let v = realip_via(lb1).await;
    assert_eq!(v["realIp"]["ip"], CLIENT, "haproxy behind realip lb: {v}");
    // nginx.
    let dir = scratch("nginx-pp");
    let nport = free_port();
    let servers = format!(
        "server {{\n    listen 127.0.0.1:{nport} proxy_protocol;\n    location / {{\n      proxy_pass http://127.0.0.1:{};\n      proxy_set_header X-Forwarded-For $proxy_protocol_addr;\n    }}\n  }}\n",
        backend.http.port()
    );
    let _n = start_nginx(dir, "", &servers, &[nport]);
    let (_lb2, lb2) = realip_lb(nport, "proxy-v2");
    let v = realip_via(lb2).await;
    assert_eq!(v["realIp"]["ip"], CLIENT, "nginx behind realip lb: {v}");
}

/// The L7 side: nginx behind `realip lb --mode http` reads the client with
/// its realip module (`set_real_ip_from` + `real_ip_header
/// X-Forwarded-For`); the same nginx behind `realip lb`'s PROXY v2 reads
/// it from `$proxy_protocol_addr`. Both name the same client. nginx trusts
/// all of 127/8, the client included, so a forged X-Forwarded-For passed
/// on by the lb would win there: it must have been stripped.
#[tokio::test]
async fn nginx_realip_module_behind_realip_lb_http_and_proxy_v2_agree() {
    let dir = scratch("nginx-l7");
    let (xport, pport) = (free_port(), free_port());
    let servers = format!(
        "server {{\n    listen 127.0.0.1:{xport};\n    set_real_ip_from 127.0.0.0/8;\n    real_ip_header X-Forwarded-For;\n    real_ip_recursive on;\n    location / {{ return 200 \"$remote_addr\"; }}\n  }}\n\
           server {{\n    listen 127.0.0.1:{pport} proxy_protocol;\n    location / {{ return 200 \"$proxy_protocol_addr\"; }}\n  }}\n"
    );
    let _n = start_nginx(dir, "", &servers, &[xport, pport]);
    let lb_http = realip_lb_with(&["--mode", "http", "--backend", &format!("127.0.0.1:{xport}")]);
    let lb_pp = realip_lb_with(&[
        "--backend",
        &format!("127.0.0.1:{pport}"),
        "--client-ip",
        "proxy-v2",
    ]);
    let mut seen = Vec::new();
    for (_, port) in [&lb_http, &lb_pp] {
        let dst = format!("127.0.0.1:{port}").parse().unwrap();
        let (status, _, body) =
            get_from(CLIENT, dst, "/", &[("X-Forwarded-For", "198.51.100.9")]).await;
        assert_eq!(status, 200, "{body}");
        seen.push(body);
    }
    assert_eq!(seen, [CLIENT, CLIENT]);
}

/// `realip lb` with `args` on a free loopback port.
fn realip_lb_with(args: &[&str]) -> (Peer, u16) {
    let dir = scratch("lb");
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_realip"))
        .args(["lb", "--listen", &format!("127.0.0.1:{port}")])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start realip lb");
    wait_listening(port, "realip lb", &mut child);
    (Peer { child, dir }, port)
}
