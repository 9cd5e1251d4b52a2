//! Running a scenario for real: build its namespaces, start `realip node`
//! on every node, whoami (or another program) in every pod and `realip lb`
//! on the router, send the probes from inside the namespaces, and check
//! what whoami reported against what the scenario expects. Everything
//! started is stopped by its PID and the namespaces are deleted, whatever
//! happens.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::scenario::{parse_host, parse_millis, Host, Probe, Scenario, Send};
use crate::topology::{self, node_ip, plan, pod_ip, unique_id, Lab, Role, Spec};

/// How long a probe waits to connect (a dropped SYN is a timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
/// How long a probe waits for its answer.
const READ_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest answer read.
const MAX_ANSWER: u64 = 1 << 20;
/// How long a component may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// What one request saw.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct Seen {
    /// It timed out (no connection, or no answer).
    pub timeout: bool,
    /// Another failure (refused, reset, malformed answer).
    pub error: Option<String>,
    /// HTTP status.
    pub status: Option<u16>,
    /// The pod's socket peer (whoami's remoteAddr / peer).
    pub peer: Option<IpAddr>,
    /// The client whoami resolved.
    pub client: Option<IpAddr>,
    /// Where whoami took the client from (peer, header, proxy-protocol, field).
    pub source: Option<String>,
    /// The forwarding headers whoami received.
    pub headers: BTreeMap<String, String>,
    /// The PROXY header's source, when one came.
    pub proxy_source: Option<String>,
    /// Which pod answered (whoami's name).
    pub pod: Option<String>,
    /// The body (health answers).
    pub body: Option<String>,
}

/// One check of an expectation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Check {
    /// What was checked.
    pub what: String,
    /// Whether it held.
    pub ok: bool,
    /// What was seen.
    pub detail: String,
}

/// A probe's outcome.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProbeResult {
    /// The probe's name.
    pub name: String,
    /// Hops, the last one with what the pod saw.
    pub path: Vec<String>,
    /// What the pod's socket saw.
    pub socket: String,
    /// What headers, a PROXY header or a field said.
    pub said: String,
    /// The client whoami resolved.
    pub resolved: String,
    /// What the seeds predict.
    pub predicts: String,
    /// Per-pod shares, in percent, when measured.
    pub shares: BTreeMap<String, f64>,
    /// What the kernel's conntrack recorded on the nodes for this probe's
    /// flows: each translated flow as `HOST: SRC -> DST => SRC' -> DST'`
    /// (the addresses before and after the hop's NAT). Observed, not planned.
    pub nat: Vec<String>,
    /// Every check.
    pub checks: Vec<Check>,
    /// All checks held.
    pub pass: bool,
    /// Every request's observation.
    pub seen: Vec<Seen>,
}

/// A scenario's outcome.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScenarioResult {
    /// Its name.
    pub name: String,
    /// Its title.
    pub title: String,
    /// The seed article.
    pub seed: Option<String>,
    /// Probes, in order.
    pub probes: Vec<ProbeResult>,
    /// Why it could not run, if it could not.
    pub error: Option<String>,
    /// Wall time.
    pub seconds: f64,
    /// Every probe passed and nothing failed to start.
    pub pass: bool,
}

/// A process started in a namespace, its stderr lines on a channel;
/// stopped by its PID when dropped.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    what: String,
}

impl Proc {
    fn start(netns: &str, exe: &Path, args: &[String], what: &str) -> Result<Proc, String> {
        if topology::stopping() {
            return Err("interrupted".into());
        }
        let mut child = Command::new("ip")
            .args(["netns", "exec", netns])
            .arg(exe)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting {what}: {e}"))?;
        topology::register_pid(child.id());
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Proc {
            child,
            lines,
            what: what.to_string(),
        })
    }

    /// Wait for a log line containing `marker`.
    fn wait_for(&mut self, marker: &str) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(marker) => return Ok(()),
                Ok(l) => seen.push(l),
                Err(_) => {
                    let status = self.child.try_wait().ok().flatten();
                    return Err(format!(
                        "{} did not log {marker:?} within {START_TIMEOUT:?} (exit {status:?}): {}",
                        self.what,
                        seen.iter()
                            .rev()
                            .take(3)
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(" | ")
                    ));
                }
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        topology::unregister_pid(self.child.id());
    }
}

fn role(h: Host) -> Role {
    match h {
        Host::Client => Role::Client,
        Host::Router => Role::Router,
        Host::Node(n) => Role::Node(n),
        Host::Pod(n, j) => Role::Pod(n, j),
    }
}

/// The Node objects of the topology, for `realip node`.
fn node_objects(pods: &[usize]) -> String {
    let mut out = String::new();
    for n in 1..=pods.len() {
        out.push_str(&format!(
            "apiVersion: v1\nkind: Node\nmetadata: {{name: node-{n}}}\nspec: {{podCIDR: 10.244.{n}.0/24}}\nstatus: {{addresses: [{{type: InternalIP, address: {}}}]}}\n---\n",
            node_ip(n)
        ));
    }
    out
}

/// Run one scenario.
pub fn run(s: &Scenario, exe: &Path) -> ScenarioResult {
    let started = Instant::now();
    let mut result = ScenarioResult {
        name: s.name.clone(),
        title: s.title.clone(),
        seed: s.seed.clone(),
        probes: Vec::new(),
        error: None,
        seconds: 0.0,
        pass: false,
    };
    let dir = std::env::temp_dir().join(format!("realip-lab-{}-{}", s.name, unique_id()));
    match run_in(s, exe, &dir) {
        Ok(probes) => {
            result.pass = probes.iter().all(|p| p.pass);
            result.probes = probes;
        }
        Err(e) => result.error = Some(e),
    }
    let _ = std::fs::remove_dir_all(&dir);
    result.seconds = started.elapsed().as_secs_f64();
    result
}

fn run_in(s: &Scenario, exe: &Path, dir: &Path) -> Result<Vec<ProbeResult>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let lab = Lab::build(
        plan(
            &Spec {
                pods_per_node: s.pods.clone(),
            },
            &unique_id(),
        )
        .map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let ns = |r: &Role| {
        lab.plan()
            .netns(r)
            .map(str::to_string)
            .ok_or_else(|| format!("no host {r:?}"))
    };
    let mut procs: Vec<Proc> = Vec::new();
    // kube-proxy's role on every node.
    if !s.objects.trim().is_empty() {
        let objects = dir.join("objects.yaml");
        std::fs::write(&objects, format!("{}{}", node_objects(&s.pods), s.objects))
            .map_err(|e| e.to_string())?;
        for n in 1..=s.pods.len() {
            let ip = node_ip(n).to_string();
            let args: Vec<String> = [
                "node",
                "--objects",
                &objects.to_string_lossy(),
                "--node",
                &format!("node-{n}"),
                "--health-address",
                &ip,
                "--healthz",
                &format!("{ip}:10256"),
                "--poll",
                "1s",
            ]
            .iter()
            .map(|a| a.to_string())
            .collect();
            procs.push(Proc::start(
                &ns(&Role::Node(n))?,
                exe,
                &args,
                &format!("realip node on node-{n}"),
            )?);
        }
    }
    // The pods.
    for (i, &count) in s.pods.iter().enumerate() {
        let n = i + 1;
        for j in 0..count {
            let ip = pod_ip(n, j).to_string();
            let key = format!("pod/{n}/{j}");
            let args: Vec<String> = match s.programs.get(&key) {
                Some(p) => p.iter().map(|a| a.replace("{pod}", &ip)).collect(),
                None => {
                    let mut a: Vec<String> = [
                        "whoami",
                        "--listen",
                        &format!("{ip}:8080"),
                        "--tcp",
                        &format!("{ip}:9000"),
                        "--udp",
                        &format!("{ip}:9001"),
                        "--name",
                        &key,
                    ]
                    .iter()
                    .map(|a| a.to_string())
                    .collect();
                    a.extend(s.whoami.iter().cloned());
                    a
                }
            };
            procs.push(Proc::start(&ns(&Role::Pod(n, j))?, exe, &args, &key)?);
        }
    }
    // The cloud LB on the router.
    if let Some(r) = &s.router {
        let router = ns(&Role::Router)?;
        if r.tproxy {
            tproxy(&router)?;
        }
        let args = match &r.config {
            Some(text) => {
                let f = dir.join("lb.yaml");
                std::fs::write(&f, text).map_err(|e| e.to_string())?;
                vec![
                    "lb".to_string(),
                    "--config".into(),
                    f.to_string_lossy().into_owned(),
                ]
            }
            None => {
                let mut a = vec!["lb".to_string()];
                a.extend(r.lb.iter().cloned());
                a
            }
        };
        procs.push(Proc::start(&router, exe, &args, "realip lb on the router")?);
    }
    // Everyone up: the agents synced, the servers listening.
    for p in procs.iter_mut() {
        let marker = if p.what.starts_with("realip node") {
            "synced"
        } else {
            "listening"
        };
        p.wait_for(marker)?;
    }
    if let Some(ms) = s
        .router
        .as_ref()
        .and_then(|r| r.settle.as_deref())
        .and_then(parse_millis)
    {
        std::thread::sleep(Duration::from_millis(ms));
    }
    let mut out = Vec::new();
    // The kernel's own record of each probe's NAT, from the nodes.
    let watched: Vec<(String, String)> = (1..=s.pods.len())
        .filter_map(|n| Some((format!("node-{n}"), ns(&Role::Node(n)).ok()?)))
        .collect();
    for probe in &s.probes {
        let host = parse_host(&probe.from, &s.pods)?;
        let netns = ns(&role(host))?;
        let before: Vec<Vec<realip_nft::Flow>> = watched.iter().map(|(_, n)| flows_in(n)).collect();
        let seen = in_netns(&netns, probe)?;
        let mut result = judge(probe, seen);
        for ((name, n), before) in watched.iter().zip(&before) {
            result.nat.extend(nat_seen(name, before, &flows_in(n)));
        }
        check_nat(&mut result, probe);
        out.push(result);
    }
    drop(procs);
    drop(lab);
    Ok(out)
}

/// The reply routing `realip lb --client-ip transparent` needs (see its
/// `--help`), in the router's namespace.
fn tproxy(netns: &str) -> Result<(), String> {
    let rules = "table ip realip-tproxy {\n chain pre {\n  type filter hook prerouting priority mangle;\n  socket transparent 1 meta mark set 1\n }\n}\n";
    let mut nft = Command::new("ip")
        .args(["netns", "exec", netns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("nft: {e} (apt-get install nftables)"))?;
    if let Some(mut stdin) = nft.stdin.take() {
        stdin
            .write_all(rules.as_bytes())
            .map_err(|e| e.to_string())?;
    }
    let o = nft.wait_with_output().map_err(|e| e.to_string())?;
    if !o.status.success() {
        return Err(format!(
            "nft: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    for args in [
        &["rule", "add", "fwmark", "1", "lookup", "100"][..],
        &[
            "route",
            "add",
            "local",
            "0.0.0.0/0",
            "dev",
            "lo",
            "table",
            "100",
        ][..],
    ] {
        let o = Command::new("ip")
            .args(["-n", netns])
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if !o.status.success() {
            return Err(format!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&o.stderr).trim()
            ));
        }
    }
    Ok(())
}

/// Send the probe's requests from inside `netns`: a thread joins the
/// namespace (sockets it makes live there) and does the requests.
fn in_netns(netns: &str, probe: &Probe) -> Result<Vec<Seen>, String> {
    let probe = probe.clone();
    inside(netns, move || {
        let to: SocketAddr = probe
            .to
            .parse()
            .map_err(|_| format!("{:?} is not ADDR:PORT", probe.to))?;
        Ok((0..probe.count).map(|_| request(&probe, to)).collect())
    })?
}

/// Run `f` on a thread that has joined namespace `netns` (sockets it makes
/// live there); this thread stays where it is.
fn inside<T: std::marker::Send + 'static>(
    netns: &str,
    f: impl FnOnce() -> T + std::marker::Send + 'static,
) -> Result<T, String> {
    let path = PathBuf::from("/run/netns").join(netns);
    std::thread::spawn(move || -> Result<T, String> {
        let file = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("entering {}: {e}", path.display()))?;
        Ok(f())
    })
    .join()
    .map_err(|_| format!("the thread in {netns} panicked"))?
}

fn failed(e: &std::io::Error) -> Seen {
    let timeout = matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    );
    Seen {
        timeout,
        error: (!timeout).then(|| e.to_string()),
        ..Seen::default()
    }
}

fn request(probe: &Probe, to: SocketAddr) -> Seen {
    match probe.send {
        Send::Http | Send::Health => http(probe, to),
        Send::TcpField => tcp_field(to),
        Send::UdpField => udp_field(to),
    }
}

fn http(probe: &Probe, to: SocketAddr) -> Seen {
    let mut s = match TcpStream::connect_timeout(&to, CONNECT_TIMEOUT) {
        Ok(s) => s,
        Err(e) => return failed(&e),
    };
    let _ = s.set_read_timeout(Some(READ_TIMEOUT));
    let _ = s.set_write_timeout(Some(READ_TIMEOUT));
    let mut req = format!(
        "GET {} HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n",
        probe.path
    );
    for (k, v) in &probe.headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    if let Err(e) = s.write_all(req.as_bytes()) {
        return failed(&e);
    }
    let mut buf = Vec::new();
    if let Err(e) = s.take(MAX_ANSWER).read_to_end(&mut buf) {
        if buf.is_empty() {
            return failed(&e);
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Seen {
            error: Some(if text.is_empty() {
                "closed without an answer".into()
            } else {
                "no HTTP head".into()
            }),
            ..Seen::default()
        };
    };
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok());
    let mut seen = Seen {
        status,
        ..Seen::default()
    };
    if probe.send == Send::Health {
        seen.body = Some(body.to_string());
        return seen;
    }
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        seen.error = Some(format!(
            "not whoami's JSON: {}",
            body.chars().take(120).collect::<String>()
        ));
        return seen;
    };
    let ip = |x: &serde_json::Value| -> Option<IpAddr> {
        let s = x.as_str()?;
        s.parse::<SocketAddr>()
            .map(|a| a.ip())
            .ok()
            .or_else(|| s.parse().ok())
    };
    seen.peer = ip(&v["remoteAddr"]);
    seen.client = ip(&v["realIp"]["ip"]);
    seen.source = v["realIp"]["source"].as_str().map(str::to_string);
    seen.proxy_source = v["proxyProtocol"]["source"].as_str().map(str::to_string);
    seen.pod = v["name"].as_str().map(str::to_string);
    if let Some(h) = v["headers"].as_object() {
        for (k, vals) in h {
            let joined: Vec<&str> = vals
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x.as_str())
                .collect();
            seen.headers.insert(k.clone(), joined.join(", "));
        }
    }
    seen
}

/// The message: this side's own IP as the field, as an application that
/// knows its address would write it (seed 000, method 2), then `WHO`.
fn field_message(local: SocketAddr) -> Vec<u8> {
    let mut msg = match local.ip() {
        IpAddr::V4(ip) => ip.octets().to_vec(),
        IpAddr::V6(ip) => ip.octets().to_vec(),
    };
    msg.extend_from_slice(b"WHO\n");
    msg
}

/// whoami's `WHO` answer: `peer=A:P client=C source=S hostname=H`.
fn parse_who(line: &str) -> Seen {
    let mut seen = Seen::default();
    for part in line.split_whitespace() {
        match part.split_once('=') {
            Some(("peer", v)) => seen.peer = v.parse::<SocketAddr>().map(|a| a.ip()).ok(),
            Some(("client", v)) => {
                seen.client = v
                    .parse::<SocketAddr>()
                    .map(|a| a.ip())
                    .ok()
                    .or_else(|| v.parse().ok())
            }
            Some(("source", v)) => seen.source = Some(v.to_string()),
            _ => {}
        }
    }
    if seen.peer.is_none() {
        seen.error = Some(format!("not a WHO answer: {line:?}"));
    }
    seen
}

fn tcp_field(to: SocketAddr) -> Seen {
    let mut s = match TcpStream::connect_timeout(&to, CONNECT_TIMEOUT) {
        Ok(s) => s,
        Err(e) => return failed(&e),
    };
    let _ = s.set_read_timeout(Some(READ_TIMEOUT));
    let Ok(local) = s.local_addr() else {
        return Seen::default();
    };
    if let Err(e) = s.write_all(&field_message(local)) {
        return failed(&e);
    }
    let mut line = String::new();
    match BufReader::new(s.take(4096)).read_line(&mut line) {
        Ok(_) if !line.is_empty() => parse_who(line.trim_end()),
        Ok(_) => Seen {
            error: Some("closed without an answer".into()),
            ..Seen::default()
        },
        Err(e) => failed(&e),
    }
}

fn udp_field(to: SocketAddr) -> Seen {
    let s = match UdpSocket::bind("0.0.0.0:0").and_then(|s| s.connect(to).map(|()| s)) {
        Ok(s) => s,
        Err(e) => return failed(&e),
    };
    let _ = s.set_read_timeout(Some(READ_TIMEOUT));
    let Ok(local) = s.local_addr() else {
        return Seen::default();
    };
    if let Err(e) = s.send(&field_message(local)) {
        return failed(&e);
    }
    let mut buf = [0u8; 2048];
    match s.recv(&mut buf) {
        Ok(n) => parse_who(String::from_utf8_lossy(&buf[..n]).trim_end()),
        Err(e) => failed(&e),
    }
}

fn distinct<T: ToString>(items: impl Iterator<Item = Option<T>>) -> String {
    let mut out: Vec<String> = Vec::new();
    for i in items {
        let s = i.map_or("-".to_string(), |v| v.to_string());
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out.join(", ")
}

/// Check what was seen against the probe's expectations (pure).
pub fn judge(probe: &Probe, seen: Vec<Seen>) -> ProbeResult {
    let e = &probe.expect;
    let mut checks = Vec::new();
    let mut check =
        |what: String, ok: bool, detail: String| checks.push(Check { what, ok, detail });
    if e.timeout {
        let n = seen.iter().filter(|s| s.timeout).count();
        check(
            "the connection times out".into(),
            n == seen.len(),
            format!("{n} of {} timed out", seen.len()),
        );
    } else {
        let bad: Vec<&Seen> = seen
            .iter()
            .filter(|s| s.timeout || s.error.is_some())
            .collect();
        check(
            "every request is answered".into(),
            bad.is_empty(),
            match bad.first() {
                None => format!("{} answered", seen.len()),
                Some(b) => format!(
                    "{} of {} failed: {}",
                    bad.len(),
                    seen.len(),
                    b.error.clone().unwrap_or_else(|| "timed out".into())
                ),
            },
        );
    }
    if let Some(p) = &e.peer {
        let got = distinct(seen.iter().map(|s| s.peer));
        check(format!("the pod's socket peer is {p}"), got == *p, got);
    }
    if let Some(c) = &e.client {
        let got = distinct(seen.iter().map(|s| s.client));
        check(format!("whoami resolves {c}"), got == *c, got);
    }
    for (h, want) in &e.headers {
        let got = distinct(seen.iter().map(|s| s.headers.get(h).cloned()));
        let ok = seen
            .iter()
            .all(|s| s.headers.get(h).is_some_and(|v| v.contains(want.as_str())));
        check(format!("{h} carries {want}"), ok, got);
    }
    for (h, bad) in &e.absent {
        let got = distinct(seen.iter().map(|s| s.headers.get(h).cloned()));
        let ok = seen
            .iter()
            .all(|s| !s.headers.get(h).is_some_and(|v| v.contains(bad.as_str())));
        check(format!("{h} does not carry {bad}"), ok, got);
    }
    if let Some(st) = e.status {
        let got = distinct(seen.iter().map(|s| s.status));
        check(format!("status {st}"), got == st.to_string(), got);
    }
    if let Some(b) = &e.body {
        let ok = seen
            .iter()
            .all(|s| s.body.as_deref().is_some_and(|x| x.contains(b.as_str())));
        let got = seen
            .first()
            .and_then(|s| s.body.clone())
            .unwrap_or_default();
        check(
            format!("the answer contains {b}"),
            ok,
            got.split_whitespace().collect::<Vec<_>>().join(" "),
        );
    }
    let mut shares = BTreeMap::new();
    if let Some(sh) = &e.shares {
        let total = seen.len().max(1) as f64;
        for s in &seen {
            if let Some(p) = &s.pod {
                *shares.entry(p.clone()).or_insert(0.0) += 100.0 / total;
            }
        }
        let mut pods: Vec<&String> = sh.want.keys().chain(shares.keys()).collect();
        pods.sort();
        pods.dedup();
        let ok = pods.iter().all(|p| {
            let want = sh.want.get(*p).copied().unwrap_or(0.0);
            let got = shares.get(*p).copied().unwrap_or(0.0);
            (got - want).abs() <= sh.tolerance
        });
        let want: Vec<String> = sh
            .want
            .iter()
            .map(|(p, v)| format!("{p} {v:.0}%"))
            .collect();
        let got: Vec<String> = shares.iter().map(|(p, v)| format!("{p} {v:.0}%")).collect();
        check(
            format!("shares {} (±{})", want.join(", "), sh.tolerance),
            ok,
            got.join(", "),
        );
    }
    let pass = checks.iter().all(|c| c.ok);
    // The table's columns.
    let socket = if seen.iter().all(|s| s.timeout) {
        "timed out".to_string()
    } else if probe.send == Send::Health {
        distinct(seen.iter().map(|s| s.status.map(|c| format!("status {c}"))))
    } else {
        distinct(seen.iter().map(|s| s.peer))
    };
    let mut said = Vec::new();
    for h in ["X-Forwarded-For", "X-Real-Ip"] {
        let v = distinct(seen.iter().map(|s| s.headers.get(h).cloned()));
        if v != "-" {
            said.push(format!("{h}: {v}"));
        }
    }
    let proxy = distinct(seen.iter().map(|s| s.proxy_source.clone()));
    if proxy != "-" {
        said.push(format!("PROXY: {proxy}"));
    }
    if seen
        .iter()
        .any(|s| matches!(s.source.as_deref(), Some("field" | "client-field")))
    {
        said.push(format!(
            "field: {}",
            distinct(seen.iter().map(|s| s.client))
        ));
    }
    if probe.send == Send::Health {
        if let Some(b) = seen.first().and_then(|s| s.body.as_ref()) {
            if let Some(i) = b.find("\"localEndpoints\"") {
                said.push(
                    b[i..]
                        .split([',', '\n'])
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_string(),
                );
            }
        }
    }
    let resolved = if probe.send == Send::Health || seen.iter().all(|s| s.timeout) {
        "-".to_string()
    } else {
        distinct(seen.iter().map(|s| s.client))
    };
    let mut path = probe.hops.clone();
    if let (Some(last), false) = (
        path.last_mut(),
        socket == "timed out" || probe.send == Send::Health,
    ) {
        // The last hop's source is what the pod's socket saw.
        *last = match last.split_once(": ") {
            Some((label, dst)) => format!("{label}: {socket} -> {dst} (seen)"),
            None => format!("{last}: {socket} (seen)"),
        };
    }
    if !shares.is_empty() {
        said.push(
            shares
                .iter()
                .map(|(p, v)| format!("{p} {v:.0}%"))
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    ProbeResult {
        name: probe.name.clone(),
        path,
        socket,
        said: if said.is_empty() {
            "-".into()
        } else {
            said.join("; ")
        },
        resolved,
        predicts: probe.predicts.clone(),
        shares,
        nat: Vec::new(),
        checks,
        pass,
        seen,
    }
}

/// Check the NAT the probe expects against what conntrack recorded.
fn check_nat(result: &mut ProbeResult, probe: &Probe) {
    for (host, kind) in &probe.expect.nat {
        let seen: Vec<&String> = result
            .nat
            .iter()
            .filter(|n| n.starts_with(&format!("{host}: ")))
            .collect();
        let ok = seen.iter().any(|n| n.ends_with(&format!("({kind})")));
        result.checks.push(Check {
            what: format!("{host}'s conntrack records {kind}"),
            ok,
            detail: if seen.is_empty() {
                "no translated flow".into()
            } else {
                seen.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            },
        });
        result.pass &= ok;
    }
}

/// Tracked flows in a namespace (IPv4), read over ctnetlink from a thread
/// that joins it.
fn flows_in(netns: &str) -> Vec<realip_nft::Flow> {
    inside(netns, || {
        realip_nft::Netlink::open()
            .and_then(|mut nl| nl.conntrack_flows(realip_nft::Family::Ipv4))
            .unwrap_or_default()
    })
    .unwrap_or_default()
}

/// The translated flows that appeared between two snapshots, as
/// `HOST: SRC -> DST => SRC' -> DST'` (after the hop: the reply tuple read
/// backwards), the first few of each host and a count of the rest.
fn nat_seen(host: &str, before: &[realip_nft::Flow], after: &[realip_nft::Flow]) -> Vec<String> {
    let new: Vec<&realip_nft::Flow> = after
        .iter()
        .filter(|f| !before.contains(f))
        .filter(|f| f.orig_dst != f.reply_src || f.orig_src != f.reply_dst)
        .collect();
    let mut out: Vec<String> = new
        .iter()
        .take(2)
        .map(|f| {
            let what = match (f.orig_dst != f.reply_src, f.orig_src != f.reply_dst) {
                (true, true) => "DNAT+SNAT",
                (true, false) => "DNAT",
                _ => "SNAT",
            };
            format!(
                "{host}: {} -> {} => {} -> {} ({what})",
                f.orig_src, f.orig_dst, f.reply_dst, f.reply_src
            )
        })
        .collect();
    if new.len() > 2 {
        out.push(format!("{host}: and {} more", new.len() - 2));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    fn probe(expect: &str) -> Probe {
        let text = format!(
            "name: t\ntitle: t\npods: [2]\nprobes:\n  - {{name: p, from: client, to: 1.2.3.4:80, hops: ['client: a -> b', 'pod: c'], predicts: x, expect: {expect}}}\n"
        );
        Scenario::parse("t", &text).unwrap().probes.remove(0)
    }

    fn seen(peer: &str, pod: &str) -> Seen {
        Seen {
            peer: peer.parse().ok(),
            client: peer.parse().ok(),
            pod: Some(pod.to_string()),
            ..Seen::default()
        }
    }

    #[test]
    fn what_was_seen_decides() {
        let p = probe("{peer: 10.0.0.12}");
        assert!(judge(&p, vec![seen("10.0.0.12", "pod/1/0")]).pass);
        let r = judge(
            &p,
            vec![seen("10.0.0.12", "pod/1/0"), seen("203.0.113.7", "pod/1/0")],
        );
        assert!(!r.pass);
        assert_eq!(
            r.path.last().unwrap(),
            "pod: 10.0.0.12, 203.0.113.7 -> c (seen)"
        );
        // A timeout is only a pass when it was expected.
        let t = Seen {
            timeout: true,
            ..Seen::default()
        };
        assert!(!judge(&p, vec![t.clone()]).pass);
        assert!(judge(&probe("{timeout: true}"), vec![t]).pass);
        assert!(!judge(&probe("{timeout: true}"), vec![seen("1.1.1.1", "pod/1/0")]).pass);
    }

    #[test]
    fn shares_are_measured_per_pod() {
        let p = probe("{shares: {want: {pod/1/0: 25, pod/1/1: 75}, tolerance: 5}}");
        let mut s = vec![seen("1.1.1.1", "pod/1/1"); 3];
        s.push(seen("1.1.1.1", "pod/1/0"));
        let r = judge(&p, s);
        assert!(r.pass, "{:?}", r.checks);
        assert_eq!(r.shares["pod/1/1"], 75.0);
        // An unexpected pod counts against the shares.
        let r = judge(&p, vec![seen("1.1.1.1", "pod/1/1"); 4]);
        assert!(!r.pass);
    }
}
