//! Checking what was seen against what the scenario expects, and making
//! the table's columns (pure).

use std::collections::BTreeMap;

use crate::scenario::{Probe, Send};

use super::result::{Check, ProbeResult, Seen};

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
    if !e.pods.is_empty() {
        let ok = seen
            .iter()
            .all(|s| s.pod.as_ref().is_some_and(|p| e.pods.contains(p)));
        check(
            format!("answered only by {}", e.pods.join(", ")),
            ok,
            distinct(seen.iter().map(|s| s.pod.clone())),
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
        step: None,
        extension: probe.extension.clone(),
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
