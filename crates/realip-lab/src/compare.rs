//! `realip lab --compare` (pure): the same scenarios run under each node
//! agent (realip node, the real kube-proxy in its modes), set side by side
//! probe by probe. What is compared is what the pods and the sockets
//! really saw, not the checks' wording: for each request, which pod
//! answered, the peer its socket saw, the client whoami resolved, the
//! status, or that it timed out or failed. Shares are random, so a probe
//! is compared by the set of those, not their counts. Agents that saw
//! different sets differ; that is a FAIL unless the probe declares the
//! difference one of realip's extensions (`extension:` in the scenario).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::run::{ProbeResult, ScenarioResult, Seen};

/// What one agent's run of a probe showed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Observation {
    /// Each distinct request outcome: `pod/1/0 <- 10.0.0.12 (client
    /// 10.0.0.12)`, `status 503`, `timed out`, `failed: ...`.
    pub outcomes: BTreeSet<String>,
    /// Its checks held.
    pub pass: bool,
}

/// One probe under every agent.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ProbeComparison {
    /// The step it follows, if any.
    pub step: Option<String>,
    /// The probe.
    pub probe: String,
    /// Per agent, in the run's order: what it showed (`None`: the
    /// scenario stopped before this probe under that agent).
    pub seen: Vec<(String, Option<Observation>)>,
    /// Every agent saw the same.
    pub same: bool,
    /// The extension the probe declares, if any.
    pub extension: Option<String>,
    /// Same (or a declared extension), and the first agent's checks held.
    pub pass: bool,
}

/// One scenario under every agent.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ScenarioComparison {
    /// Its name.
    pub name: String,
    /// Its title.
    pub title: String,
    /// The probes.
    pub probes: Vec<ProbeComparison>,
    /// Per agent, why it could not run (or finish).
    pub errors: Vec<(String, String)>,
    /// Every probe passed and it ran under every agent.
    pub pass: bool,
}

fn outcome(s: &Seen) -> String {
    if s.timeout {
        return "timed out".into();
    }
    if let Some(e) = &s.error {
        return format!("failed: {e}");
    }
    let show = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    match (&s.pod, s.status) {
        (None, Some(status)) => format!("status {status}"),
        _ => format!(
            "{} <- {} (client {})",
            show(s.pod.clone()),
            show(s.peer.map(|p| p.to_string())),
            show(s.client.map(|c| c.to_string()))
        ),
    }
}

/// What a probe's run showed.
pub fn observe(p: &ProbeResult) -> Observation {
    Observation {
        outcomes: p.seen.iter().map(outcome).collect(),
        pass: p.pass,
    }
}

/// Set the runs side by side: `runs[i]` is agent `agents[i]`'s results,
/// scenario by scenario in the same order; the first agent is the one
/// under test (realip).
pub fn compare(agents: &[String], runs: &[Vec<ScenarioResult>]) -> Vec<ScenarioComparison> {
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, base) in first.iter().enumerate() {
        let per_agent: Vec<Option<&ScenarioResult>> = runs
            .iter()
            .map(|r| r.get(k).filter(|s| s.name == base.name))
            .collect();
        let probes_n = per_agent
            .iter()
            .map(|r| r.map_or(0, |r| r.probes.len()))
            .max()
            .unwrap_or(0);
        let mut probes = Vec::new();
        for i in 0..probes_n {
            let any = per_agent.iter().flatten().find_map(|r| r.probes.get(i));
            let Some(any) = any else { continue };
            let seen: Vec<(String, Option<Observation>)> = agents
                .iter()
                .zip(&per_agent)
                .map(|(a, r)| (a.clone(), r.and_then(|r| r.probes.get(i)).map(observe)))
                .collect();
            let outcomes: Vec<Option<&BTreeSet<String>>> = seen
                .iter()
                .map(|(_, o)| o.as_ref().map(|o| &o.outcomes))
                .collect();
            let same = outcomes.iter().all(|o| o.is_some() && *o == outcomes[0]);
            let first_pass = seen[0].1.as_ref().is_some_and(|o| o.pass);
            probes.push(ProbeComparison {
                step: any.step.clone(),
                probe: any.name.clone(),
                same,
                pass: first_pass && (same || any.extension.is_some()),
                extension: any.extension.clone(),
                seen,
            });
        }
        let errors: Vec<(String, String)> = agents
            .iter()
            .zip(&per_agent)
            .filter_map(|(a, r)| match r {
                None => Some((a.clone(), "did not run".to_string())),
                Some(r) => r.error.clone().map(|e| (a.clone(), e)),
            })
            .collect();
        out.push(ScenarioComparison {
            name: base.name.clone(),
            title: base.title.clone(),
            pass: errors.is_empty() && probes.iter().all(|p| p.pass),
            probes,
            errors,
        });
    }
    out
}

fn verdict(p: &ProbeComparison) -> &'static str {
    match (p.pass, p.same) {
        (true, true) => "SAME",
        (true, false) => "EXTENSION",
        (false, true) => "FAIL",
        (false, false) => "DIFFERS",
    }
}

/// The side-by-side table: a row per probe, a column per agent.
pub fn table(agents: &[String], all: &[ScenarioComparison], wall: f64) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut head = vec!["scenario".to_string(), "probe".to_string()];
    head.extend(agents.iter().cloned());
    head.push("result".into());
    rows.push(head);
    for s in all {
        for p in &s.probes {
            let mut row = vec![s.name.clone(), p.probe.clone()];
            for (_, o) in &p.seen {
                row.push(match o {
                    None => "(not run)".into(),
                    Some(o) => o.outcomes.iter().cloned().collect::<Vec<_>>().join("; "),
                });
            }
            row.push(verdict(p).into());
            rows.push(row);
        }
        for (agent, e) in &s.errors {
            let mut row = vec![s.name.clone(), format!("{agent}: could not run: {e}")];
            row.extend(agents.iter().map(|_| "-".to_string()));
            row.push("FAIL".into());
            rows.push(row);
        }
    }
    let caps: Vec<usize> = std::iter::once(16)
        .chain(std::iter::once(34))
        .chain(agents.iter().map(|_| 44))
        .chain(std::iter::once(9))
        .collect();
    let mut out = crate::report::columns(&rows, &caps);
    let probes: Vec<&ProbeComparison> = all.iter().flat_map(|s| &s.probes).collect();
    let same = probes.iter().filter(|p| p.same).count();
    let ext = probes.iter().filter(|p| !p.same && p.pass).count();
    let _ = writeln!(
        out,
        "\n{same} of {} probes the same under {}, {ext} declared extensions, {} scenarios, {wall:.1} s",
        probes.len(),
        agents.join(", "),
        all.len()
    );
    for s in all {
        for p in s.probes.iter().filter(|p| !p.pass) {
            let detail: Vec<String> = p
                .seen
                .iter()
                .map(|(a, o)| match o {
                    None => format!("{a}: not run"),
                    Some(o) => format!(
                        "{a}: {}{}",
                        o.outcomes.iter().cloned().collect::<Vec<_>>().join("; "),
                        if o.pass { "" } else { " (its checks failed)" }
                    ),
                })
                .collect();
            let _ = writeln!(
                out,
                "{} {} / {}: {}",
                verdict(p),
                s.name,
                p.probe,
                detail.join(" | ")
            );
        }
        for (a, e) in &s.errors {
            let _ = writeln!(out, "FAIL {} under {a}: {e}", s.name);
        }
    }
    out
}

/// The JSON of a comparison.
pub fn json(agents: &[String], all: &[ScenarioComparison]) -> String {
    serde_json::to_string_pretty(&serde_json::json!({
        "pass": all.iter().all(|s| s.pass),
        "agents": agents,
        "scenarios": all,
    }))
    .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A self-contained HTML page of a comparison.
pub fn html(agents: &[String], all: &[ScenarioComparison]) -> String {
    let mut h = String::from(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>realip lab --compare</title>\n\
         <style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}\
         td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;font-size:13px}\
         .SAME{color:#1a7f37}.EXTENSION{color:#9a6700}.FAIL,.DIFFERS{color:#cf222e;font-weight:bold}</style>\n\
         </head><body>\n<h1>realip lab --compare</h1>\n",
    );
    let _ = writeln!(h, "<p>Agents: {}</p>", esc(&agents.join(", ")));
    for s in all {
        let _ = writeln!(
            h,
            "<h2 id=\"{}\">{} — {}</h2>",
            esc(&s.name),
            esc(&s.name),
            esc(&s.title)
        );
        for (a, e) in &s.errors {
            let _ = writeln!(
                h,
                "<p class=\"FAIL\">{}: could not run: {}</p>",
                esc(a),
                esc(e)
            );
        }
        h.push_str("<table><tr><th>probe</th>");
        for a in agents {
            let _ = write!(h, "<th>{}</th>", esc(a));
        }
        h.push_str("<th>result</th></tr>\n");
        for p in &s.probes {
            let name = match &p.step {
                Some(st) => format!("{st} \u{2192} {}", p.probe),
                None => p.probe.clone(),
            };
            let _ = write!(h, "<tr><td>{}</td>", esc(&name));
            for (_, o) in &p.seen {
                let cell = match o {
                    None => "(not run)".to_string(),
                    Some(o) => o
                        .outcomes
                        .iter()
                        .map(|x| esc(x))
                        .collect::<Vec<_>>()
                        .join("<br>"),
                };
                let _ = write!(h, "<td>{cell}</td>");
            }
            let v = verdict(p);
            let ext = p
                .extension
                .as_ref()
                .filter(|_| !p.same)
                .map(|e| format!(": {}", esc(e)))
                .unwrap_or_default();
            let _ = writeln!(h, "<td class=\"{v}\">{v}{ext}</td></tr>");
        }
        h.push_str("</table>\n");
    }
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(pod: &str, peer: &str) -> Seen {
        Seen {
            pod: Some(pod.into()),
            peer: peer.parse().ok(),
            client: peer.parse().ok(),
            ..Seen::default()
        }
    }

    fn probe(seen: Vec<Seen>, extension: Option<&str>) -> ProbeResult {
        ProbeResult {
            name: "p".into(),
            step: None,
            extension: extension.map(str::to_string),
            path: Vec::new(),
            socket: String::new(),
            said: String::new(),
            resolved: String::new(),
            predicts: String::new(),
            shares: Default::default(),
            nat: Vec::new(),
            checks: Vec::new(),
            pass: true,
            seen,
        }
    }

    fn scenario(probes: Vec<ProbeResult>) -> ScenarioResult {
        ScenarioResult {
            name: "s".into(),
            title: "t".into(),
            seed: None,
            probes,
            error: None,
            seconds: 0.0,
            pass: true,
        }
    }

    #[test]
    fn the_same_pods_and_peers_in_any_order_and_number_are_the_same() {
        let agents = ["realip".to_string(), "kube-proxy:nftables".to_string()];
        let a = scenario(vec![probe(
            vec![seen("pod/1/0", "10.0.0.12"), seen("pod/1/1", "10.0.0.12")],
            None,
        )]);
        let b = scenario(vec![probe(
            vec![
                seen("pod/1/1", "10.0.0.12"),
                seen("pod/1/0", "10.0.0.12"),
                seen("pod/1/1", "10.0.0.12"),
            ],
            None,
        )]);
        let c = compare(&agents, &[vec![a.clone()], vec![b]]);
        assert!(c[0].pass && c[0].probes[0].same, "{c:?}");
        // Another peer is a difference, a FAIL unless declared.
        let d = scenario(vec![probe(vec![seen("pod/1/0", "203.0.113.7")], None)]);
        let c = compare(&agents, &[vec![a.clone()], vec![d.clone()]]);
        assert!(!c[0].pass && !c[0].probes[0].same);
        assert!(table(&agents, &c, 1.0).contains("DIFFERS s / p"));
        let mut declared = a.clone();
        declared.probes[0].extension = Some("endpoint weights".into());
        let c = compare(&agents, &[vec![declared], vec![d]]);
        assert!(c[0].pass && !c[0].probes[0].same);
        assert!(html(&agents, &c).contains("EXTENSION: endpoint weights"));
    }

    #[test]
    fn a_scenario_that_stopped_under_one_agent_fails() {
        let agents = ["realip".to_string(), "kube-proxy:iptables".to_string()];
        let a = scenario(vec![probe(vec![seen("pod/1/0", "10.0.0.12")], None)]);
        let mut b = scenario(Vec::new());
        b.error = Some("it broke".into());
        let c = compare(&agents, &[vec![a], vec![b]]);
        assert!(!c[0].pass);
        assert_eq!(c[0].probes[0].seen[1].1, None);
        assert!(table(&agents, &c, 1.0).contains("FAIL s under kube-proxy:iptables: it broke"));
    }
}
