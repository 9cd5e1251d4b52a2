//! The report in words, for people: the verdict first, then why, then
//! the chains crossed as `nft monitor trace` lists them. Pure.

use std::fmt::Write;

use crate::explain::{Mode, Report, Verdict};

fn percent(chance: f64) -> String {
    let p = chance * 100.0;
    if (p - p.round()).abs() < 0.05 {
        format!("{}%", p.round())
    } else {
        format!("{p:.1}%")
    }
}

/// The report as text.
pub fn text(r: &Report) -> String {
    let mut o = String::new();
    let where_ = match r.mode {
        Mode::Scratch => format!(
            "a scratch network namespace holding the ruleset realip node programs for {}",
            r.node
        ),
        Mode::NodeNamespace => "this node's network namespace, against its live ruleset".into(),
    };
    let _ = writeln!(o, "packet    {} on {} ({where_})", r.packet, r.node);
    let entered = match r.entered {
        Some("prerouting") => {
            "prerouting: it arrives on an interface, as from a remote client or a pod"
        }
        Some("output") => "output: it is sent by the node itself",
        Some(h) => h,
        None => "no hook traced it",
    };
    let _ = writeln!(o, "entered   {entered}");

    // The one-line answer.
    let mut answer = Vec::new();
    match &r.verdict {
        Verdict::Accept => answer.push("accept".to_string()),
        Verdict::Drop(_) => answer.push("drop".to_string()),
        Verdict::Reject(_) => answer.push("reject".to_string()),
    }
    if let Some(d) = &r.dnat {
        let n = d.endpoints.len();
        let to =
            d.to.map(|t| t.to_string())
                .unwrap_or_else(|| "an endpoint".into());
        let of = if n > 1 {
            format!(" (1 of {n} endpoints, {} each)", percent(d.chance))
        } else {
            " (the only endpoint, 100%)".into()
        };
        answer.push(format!("DNAT to {to}{of}"));
    } else if matches!(r.verdict, Verdict::Accept) {
        answer.push("no DNAT".into());
    }
    if matches!(r.verdict, Verdict::Accept) {
        match (r.masquerade.masqueraded, r.masquerade.source, r.peer_seen) {
            (true, Some(s), _) => answer.push(format!("masqueraded: the pod will see {s}")),
            (true, None, _) => answer.push("masqueraded".into()),
            (false, _, Some(p)) if r.dnat.is_some() => {
                answer.push(format!("not masqueraded: the pod will see {}", p.ip()))
            }
            (false, _, Some(p)) => {
                answer.push(format!("not masqueraded: the receiver sees {}", p.ip()))
            }
            _ => answer.push("not masqueraded".into()),
        }
    }
    let _ = writeln!(o, "verdict   {}", answer.join("; "));

    if let Some(s) = &r.service {
        let _ = writeln!(
            o,
            "service   {} port {}/{} ({}, externalTrafficPolicy {}, internalTrafficPolicy {})",
            s.service,
            s.port,
            s.proto,
            s.kind,
            s.external_traffic_policy,
            s.internal_traffic_policy
        );
    }
    match &r.verdict {
        Verdict::Drop(d) | Verdict::Reject(d) => {
            let rule = match (&d.rule, &d.rule_text) {
                (Some(h), Some(t)) => format!(", rule {h} `{t}`"),
                (Some(h), None) => format!(", rule {h}"),
                _ => " (policy)".into(),
            };
            let _ = writeln!(o, "why       {}", d.why);
            let _ = writeln!(o, "          decided in {} {}{rule}", d.table, d.chain);
        }
        Verdict::Accept => {}
    }
    if let Some(d) = &r.dnat {
        let how = match (&d.pick_map, &d.rule_text) {
            (Some(m), Some(t)) => format!(
                "chain {} picks per packet with `{t}`; map {m} holds {} endpoint(s), read from \
                 the kernel",
                d.chain,
                d.endpoints.len()
            ),
            (_, Some(t)) => format!("chain {}: `{t}`", d.chain),
            _ => "seen only in conntrack".into(),
        };
        let _ = writeln!(o, "dnat      {how}");
        if d.endpoints.len() > 1 {
            let all: Vec<String> = d
                .endpoints
                .iter()
                .map(|e| format!("{e} {}", percent(d.chance)))
                .collect();
            let _ = writeln!(o, "          possible: {}", all.join(", "));
        }
    }
    if let Some(m) = &r.masquerade.marked_by {
        let mark = r
            .masquerade
            .mark
            .map(|m| format!(", mark {m:#x}"))
            .unwrap_or_default();
        let _ = writeln!(o, "masq      why: {}{mark}", m.why);
        if let (Some(h), Some(t)) = (m.rule, &m.rule_text) {
            let _ = writeln!(o, "          marked by {} rule {h} `{t}`", m.chain);
        }
    }
    match &r.conntrack {
        Some(c) => {
            let _ = writeln!(
                o,
                "conntrack {} -> {}, reply {} -> {} ({})",
                c.original.0,
                c.original.1,
                c.reply.0,
                c.reply.1,
                if c.nat == "none" { "no NAT" } else { c.nat }
            );
        }
        None => {
            let _ = writeln!(o, "conntrack no entry");
        }
    }
    for n in &r.notes {
        let _ = writeln!(o, "note      {n}");
    }
    let id = r
        .trace_id
        .map(|i| format!(", trace id {i:08x}"))
        .unwrap_or_default();
    let _ = writeln!(
        o,
        "\nchains crossed, in order (the kernel's trace events{id}):"
    );
    let mut last_chain = String::new();
    for s in &r.steps {
        let here = format!(
            "{} {} {} {}",
            s.hook.unwrap_or("-"),
            s.family,
            s.table,
            s.chain
        );
        if here != last_chain {
            let pkt = s
                .packet
                .as_ref()
                .map(|p| format!("  [{p}]"))
                .unwrap_or_default();
            let _ = writeln!(o, "  {here}{pkt}");
            last_chain = here;
        }
        let mark = s
            .mark
            .map(|m| format!(" (mark {m:#x})"))
            .unwrap_or_default();
        match (s.event, &s.rule, &s.rule_text) {
            ("rule", Some(h), Some(t)) => {
                let _ = writeln!(o, "      rule {h}: {t}  => {}{mark}", s.verdict);
            }
            ("rule", Some(h), None) => {
                let _ = writeln!(o, "      rule {h}  => {}{mark}", s.verdict);
            }
            ("return", _, _) => {
                let _ = writeln!(o, "      end of chain: return{mark}");
            }
            ("policy", _, _) => {
                let _ = writeln!(o, "      end of base chain: {}{mark}", s.verdict);
            }
            _ => {
                let _ = writeln!(o, "      {} => {}{mark}", s.event, s.verdict);
            }
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_read_as_people_write_them() {
        assert_eq!(percent(0.5), "50%");
        assert_eq!(percent(1.0 / 3.0), "33.3%");
        assert_eq!(percent(1.0), "100%");
    }
}
