//! One scenario end to end: build the namespaces, start the agents, pods
//! and LB, wait for them, send each probe, judge it, and tear everything down.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::scenario::{parse_host, parse_millis, Host, Scenario};
use crate::topology::{node_ip, plan, pod_ip, unique_id, Lab, Role, Spec};

use super::error::RunError;
use super::judge::judge;
use super::nat::{check_nat, flows_in, nat_seen};
use super::probe::in_netns;
use super::process::Proc;
use super::result::{ProbeResult, ScenarioResult};

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
        Err(e) => result.error = Some(e.to_string()),
    }
    let _ = std::fs::remove_dir_all(&dir);
    result.seconds = started.elapsed().as_secs_f64();
    result
}

fn run_in(s: &Scenario, exe: &Path, dir: &Path) -> Result<Vec<ProbeResult>, RunError> {
    std::fs::create_dir_all(dir).map_err(|source| RunError::Dir {
        path: dir.to_path_buf(),
        source,
    })?;
    let lab = Lab::build(plan(
        &Spec {
            pods_per_node: s.pods.clone(),
        },
        &unique_id(),
    )?)?;
    let ns = |r: &Role| {
        lab.plan()
            .netns(r)
            .map(str::to_string)
            .ok_or_else(|| RunError::NoHost(r.clone()))
    };
    let mut procs: Vec<Proc> = Vec::new();
    // kube-proxy's role on every node.
    if !s.objects.trim().is_empty() {
        let objects = dir.join("objects.yaml");
        std::fs::write(&objects, format!("{}{}", node_objects(&s.pods), s.objects))
            .map_err(RunError::Write)?;
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
                dir,
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
            procs.push(Proc::start(&ns(&Role::Pod(n, j))?, dir, exe, &args, &key)?);
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
                std::fs::write(&f, text).map_err(RunError::Write)?;
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
        procs.push(Proc::start(
            &router,
            dir,
            exe,
            &args,
            "realip lb on the router",
        )?);
    }
    // Everyone up: the agents synced, the servers listening.
    for p in procs.iter_mut() {
        p.wait_ready()?;
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
fn tproxy(netns: &str) -> Result<(), RunError> {
    let rules = "table ip realip-tproxy {\n chain pre {\n  type filter hook prerouting priority mangle;\n  socket transparent 1 meta mark set 1\n }\n}\n";
    let mut nft = Command::new("ip")
        .args(["netns", "exec", netns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(RunError::NftMissing)?;
    if let Some(mut stdin) = nft.stdin.take() {
        stdin.write_all(rules.as_bytes()).map_err(RunError::Nft)?;
    }
    let o = nft.wait_with_output().map_err(RunError::Nft)?;
    if !o.status.success() {
        return Err(RunError::NftRefused {
            stderr: String::from_utf8_lossy(&o.stderr).trim().to_string(),
        });
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
            .map_err(RunError::Ip)?;
        if !o.status.success() {
            return Err(RunError::IpRefused {
                args: args.join(" "),
                stderr: String::from_utf8_lossy(&o.stderr).trim().to_string(),
            });
        }
    }
    Ok(())
}
