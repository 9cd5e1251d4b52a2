//! What `realip lab` prints (pure): the table, the JSON, and a
//! self-contained HTML report with one SVG diagram per scenario. Each
//! diagram draws every probe as a lane of hops, with the addresses after
//! each hop, so the reader sees where DNAT and SNAT happened.

use std::fmt::Write as _;

use crate::run::{ProbeResult, ScenarioResult};

/// The table: one row per probe; `wall` is the run's wall time in seconds.
pub fn table(results: &[ScenarioResult], wall: f64) -> String {
    let mut rows: Vec<[String; 7]> = vec![[
        "scenario".into(),
        "path".into(),
        "pod's socket saw".into(),
        "headers / PROXY / field said".into(),
        "whoami resolved".into(),
        "the seeds predict".into(),
        "result".into(),
    ]];
    for r in results {
        let mut step = None;
        for p in &r.probes {
            if p.step.is_some() && p.step != step {
                step = p.step.clone();
                rows.push([
                    r.name.clone(),
                    format!("then: {}", step.as_deref().unwrap_or("")),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                ]);
            }
            rows.push([
                r.name.clone(),
                // Each hop's label; the addresses are in --json and --html.
                p.path
                    .iter()
                    .filter_map(|h| {
                        h.split_whitespace()
                            .next()
                            .map(|l| l.trim_end_matches([',', ':']))
                    })
                    .collect::<Vec<_>>()
                    .join(" -> "),
                p.socket.clone(),
                p.said.clone(),
                p.resolved.clone(),
                p.predicts.clone(),
                if p.pass { "PASS".into() } else { "FAIL".into() },
            ]);
        }
        if let Some(e) = &r.error {
            // After the probes that ran (a live scenario's earlier steps).
            rows.push([
                r.name.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                format!("could not run: {e}"),
                "FAIL".into(),
            ]);
        }
    }
    // Long columns are cut for the terminal; --json and --html have them whole.
    let rows: Vec<Vec<String>> = rows.into_iter().map(Vec::from).collect();
    let mut out = columns(&rows, &[16, 40, 16, 38, 15, 60, 6]);
    let failed: Vec<String> = results
        .iter()
        .flat_map(|r| {
            let mut v = Vec::new();
            if let Some(e) = &r.error {
                v.push(format!("{}: {e}", r.name));
            }
            for p in &r.probes {
                for c in p.checks.iter().filter(|c| !c.ok) {
                    v.push(format!(
                        "{} / {}: expected {}, saw {}",
                        r.name, p.name, c.what, c.detail
                    ));
                }
            }
            v
        })
        .collect();
    let probes: usize = results.iter().map(|r| r.probes.len().max(1)).sum();
    let passed: usize = results
        .iter()
        .map(|r| r.probes.iter().filter(|p| p.pass).count())
        .sum();
    let _ = writeln!(
        out,
        "\n{passed} of {probes} probes passed, {} scenarios, {wall:.1} s",
        results.len()
    );
    for f in failed {
        let _ = writeln!(out, "FAIL {f}");
    }
    out
}

/// `rows` as left-aligned columns two spaces apart, each cell cut to its
/// column's cap (a `~` marks the cut), trailing spaces trimmed.
pub(crate) fn columns(rows: &[Vec<String>], caps: &[usize]) -> String {
    let cut = |s: &str, cap: usize| -> String {
        if s.chars().count() <= cap {
            s.to_string()
        } else {
            let mut t: String = s.chars().take(cap.saturating_sub(1)).collect();
            t.push('~');
            t
        }
    };
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().zip(caps).map(|(c, &cap)| cut(c, cap)).collect())
        .collect();
    let mut widths = vec![0; caps.len()];
    for r in &cells {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in &cells {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}", w = *w))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The JSON: every scenario with its probes, checks and observations.
pub fn json(results: &[ScenarioResult]) -> String {
    let pass = results.iter().all(|r| r.pass);
    serde_json::to_string_pretty(&serde_json::json!({
        "pass": pass,
        "scenarios": results,
    }))
    .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One scenario's diagram: a lane per probe, a box per hop.
pub fn svg(r: &ScenarioResult) -> String {
    let (bw, bh, gap, lane) = (190.0, 64.0, 36.0, 118.0);
    let hops = r
        .probes
        .iter()
        .map(|p| p.path.len())
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let width = 20.0 + hops * (bw + gap);
    let height = 30.0 + r.probes.len().max(1) as f64 * lane;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">"#
    );
    s.push_str(r##"<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>"##);
    for (i, p) in r.probes.iter().enumerate() {
        let y = 10.0 + i as f64 * lane;
        let color = if p.pass { "#1a7f37" } else { "#cf222e" };
        let _ = write!(
            s,
            r#"<text x="10" y="{}" font-weight="bold" fill="{color}">{} — {}</text>"#,
            y + 10.0,
            esc(&shown_name(p)),
            if p.pass { "PASS" } else { "FAIL" }
        );
        for (k, hop) in p.path.iter().enumerate() {
            let x = 10.0 + k as f64 * (bw + gap);
            let by = y + 20.0;
            let _ = write!(
                s,
                r##"<rect x="{x}" y="{by}" width="{bw}" height="{bh}" rx="6" fill="#f6f8fa" stroke="#8c959f"/>"##
            );
            // The hop's label in bold, then the addresses after it
            // ("SRC -> DST"), wrapped to the box.
            let (label, addrs) = hop.split_once(": ").unwrap_or((hop.as_str(), ""));
            let _ = write!(
                s,
                r#"<text x="{}" y="{}" font-weight="bold">{}</text>"#,
                x + 6.0,
                by + 14.0,
                esc(&label.chars().take(32).collect::<String>())
            );
            let words: Vec<&str> = addrs.split_whitespace().collect();
            let mut lines: Vec<String> = vec![String::new()];
            for w in words {
                let cur = lines.last_mut().map_or(0, |l| l.len());
                if cur + w.len() + 1 > 30 && cur > 0 {
                    lines.push(String::new());
                }
                if let Some(l) = lines.last_mut() {
                    if !l.is_empty() {
                        l.push(' ');
                    }
                    l.push_str(w);
                }
            }
            // What the kernel recorded on this host, if it translated
            // the probe's flow here.
            let host = label.split_whitespace().next().unwrap_or("");
            if let Some(n) = p.nat.iter().find(|n| n.starts_with(&format!("{host}: "))) {
                let after = n.split(" => ").nth(1).unwrap_or("");
                let _ = write!(
                    s,
                    r##"<text x="{}" y="{}" fill="#0550ae">kernel: {}</text>"##,
                    x + 6.0,
                    by + bh + 12.0,
                    esc(after)
                );
            }
            for (li, l) in lines.iter().take(3).enumerate() {
                let _ = write!(
                    s,
                    r#"<text x="{}" y="{}">{}</text>"#,
                    x + 6.0,
                    by + 29.0 + li as f64 * 13.0,
                    esc(l)
                );
            }
            if k + 1 < p.path.len() {
                let _ = write!(
                    s,
                    r##"<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#555" marker-end="url(#arrow)"/>"##,
                    x + bw,
                    by + bh / 2.0,
                    x + bw + gap,
                    by + bh / 2.0
                );
            }
        }
    }
    s.push_str("</svg>");
    s
}

/// The whole report: self-contained, no scripts, one SVG per scenario.
pub fn html(results: &[ScenarioResult]) -> String {
    let mut h = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>realip lab</title>\n<style>\
body{font-family:sans-serif;margin:2em;max-width:100%}\
table{border-collapse:collapse;margin:0.5em 0 1em}\
td,th{border:1px solid #d0d7de;padding:3px 6px;font-size:13px;text-align:left;vertical-align:top}\
.pass{color:#1a7f37;font-weight:bold}.fail{color:#cf222e;font-weight:bold}\
section{margin-bottom:2.5em}.svg{overflow-x:auto}\
</style>\n</head>\n<body>\n<h1>realip lab</h1>\n",
    );
    let all = results.iter().all(|r| r.pass);
    let _ = writeln!(
        h,
        "<p>{} scenarios, {}.</p>",
        results.len(),
        if all {
            "<span class=\"pass\">all passed</span>"
        } else {
            "<span class=\"fail\">some failed</span>"
        }
    );
    for r in results {
        let _ = writeln!(h, "<section id=\"{}\">", esc(&r.name));
        let _ = writeln!(
            h,
            "<h2>{} <small>({})</small> <span class=\"{}\">{}</span></h2>",
            esc(&r.title),
            esc(&r.name),
            if r.pass { "pass" } else { "fail" },
            if r.pass { "PASS" } else { "FAIL" }
        );
        if let Some(seed) = &r.seed {
            let _ = writeln!(h, "<p>Seed: {}</p>", esc(seed));
        }
        if let Some(e) = &r.error {
            let _ = writeln!(h, "<p class=\"fail\">Could not run: {}</p>", esc(e));
        }
        let _ = writeln!(h, "<div class=\"svg\">{}</div>", svg(r));
        h.push_str("<table><tr><th>probe</th><th>pod's socket saw</th><th>headers / PROXY / field said</th><th>whoami resolved</th><th>the seeds predict</th><th>conntrack on the nodes</th><th>checks</th></tr>\n");
        for p in &r.probes {
            let checks: Vec<String> = p
                .checks
                .iter()
                .map(|c| {
                    format!(
                        "<span class=\"{}\">{}</span> {} (saw {})",
                        if c.ok { "pass" } else { "fail" },
                        if c.ok { "ok" } else { "FAILED" },
                        esc(&c.what),
                        esc(&c.detail)
                    )
                })
                .collect();
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&shown_name(p)),
                esc(&p.socket),
                esc(&p.said),
                esc(&p.resolved),
                esc(&p.predicts),
                if p.nat.is_empty() {
                    "-".to_string()
                } else {
                    p.nat.iter().map(|n| esc(n)).collect::<Vec<_>>().join("<br>")
                },
                checks.join("<br>")
            );
        }
        h.push_str("</table>\n</section>\n");
    }
    h.push_str("</body>\n</html>\n");
    h
}

/// A probe's name, after its step's when it has one.
fn shown_name(p: &ProbeResult) -> String {
    match &p.step {
        Some(step) => format!("{step} \u{2192} {}", p.name),
        None => p.name.clone(),
    }
}
