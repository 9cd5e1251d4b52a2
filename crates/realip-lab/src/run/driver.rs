//! One scenario end to end: bring its cluster up, send each probe, judge
//! it, and tear everything down.

use std::path::Path;
use std::time::Instant;

use crate::scenario::{parse_host, Host, Probe, Scenario};
use crate::topology::{register_dir, unique_id, unregister_dir, Role};

use super::cluster::{Cluster, Options};
use super::error::RunError;
use super::judge::judge;
use super::nat::{check_nat, flows_in, nat_seen};
use super::probe::in_netns;
use super::result::{ProbeResult, ScenarioResult};

fn role(h: Host) -> Role {
    match h {
        Host::Client => Role::Client,
        Host::Router => Role::Router,
        Host::Node(n) => Role::Node(n),
        Host::Pod(n, j) => Role::Pod(n, j),
    }
}

/// A fresh private directory for one run of scenario `name`, removed by
/// the signal handler too.
pub fn run_dir(name: &str) -> Result<std::path::PathBuf, RunError> {
    let dir = std::env::temp_dir().join(format!("realip-lab-{name}-{}", unique_id()));
    register_dir(&dir);
    std::fs::create_dir_all(&dir).map_err(|source| RunError::Dir {
        path: dir.clone(),
        source,
    })?;
    Ok(dir)
}

/// Remove a run's directory.
pub fn remove_run_dir(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    unregister_dir(dir);
}

/// Set, a run's directory (its components' logs, the control plane's
/// certificates and logs) is kept for a person to read.
pub const KEEP: &str = "REALIP_LAB_KEEP";

/// Run one scenario.
pub fn run(s: &Scenario, exe: &Path, options: &Options) -> ScenarioResult {
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
    let mut probes = Vec::new();
    let outcome = run_dir(&s.name).and_then(|dir| {
        let r = run_in(s, exe, &dir, options, &mut probes);
        if std::env::var_os(KEEP).is_some() {
            eprintln!("realip lab: {} kept ({KEEP})", dir.display());
        } else {
            remove_run_dir(&dir);
        }
        r
    });
    // The probes that ran are kept, also when a later step failed.
    result.pass = outcome.is_ok() && probes.iter().all(|p| p.pass);
    result.probes = probes;
    if let Err(e) = outcome {
        result.error = Some(e.to_string());
    }
    result.seconds = started.elapsed().as_secs_f64();
    result
}

fn run_in(
    s: &Scenario,
    exe: &Path,
    dir: &Path,
    options: &Options,
    out: &mut Vec<ProbeResult>,
) -> Result<(), RunError> {
    let mut cluster = Cluster::up(s, exe, dir, options)?;
    let s = cluster.scenario().clone();
    out.extend(probe_all(&cluster, &s.probes, None)?);
    for st in &s.steps {
        let probes = cluster.step(st)?;
        out.extend(probe_all(&cluster, &probes, Some(&st.name))?);
    }
    drop(cluster);
    Ok(())
}

/// Send `probes` in the running cluster and judge each, after `step`.
fn probe_all(
    cluster: &Cluster,
    probes: &[Probe],
    step: Option<&str>,
) -> Result<Vec<ProbeResult>, RunError> {
    let s = cluster.scenario();
    let mut out = Vec::new();
    // The kernel's own record of each probe's NAT, from the nodes.
    let watched: Vec<(String, String)> = (1..=s.pods.len())
        .filter_map(|n| Some((format!("node-{n}"), cluster.netns(&Role::Node(n)).ok()?)))
        .collect();
    for probe in probes {
        let host = parse_host(&probe.from, &s.pods)?;
        let netns = cluster.netns(&role(host))?;
        let before: Vec<Vec<realip_nft::Flow>> = watched.iter().map(|(_, n)| flows_in(n)).collect();
        let seen = in_netns(&netns, probe)?;
        let mut result = judge(probe, seen);
        result.step = step.map(str::to_string);
        for ((name, n), before) in watched.iter().zip(&before) {
            result.nat.extend(nat_seen(name, before, &flows_in(n)));
        }
        check_nat(&mut result, probe);
        out.push(result);
    }
    Ok(out)
}
