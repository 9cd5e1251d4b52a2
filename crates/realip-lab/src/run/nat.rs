//! The NAT the kernel did, as conntrack recorded it: flows that appeared
//! on a node during a probe, and the probe's NAT expectations checked against them.

use crate::scenario::Probe;

use super::netns::inside;
use super::result::{Check, ProbeResult};

/// Check the NAT the probe expects against what conntrack recorded.
pub(super) fn check_nat(result: &mut ProbeResult, probe: &Probe) {
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
pub(super) fn flows_in(netns: &str) -> Vec<realip_nft::Flow> {
    inside(netns, || {
        // Both families: the lab is dual-stack.
        let Ok(mut nl) = realip_nft::Netlink::open() else {
            return Vec::new();
        };
        [realip_nft::Family::Ipv4, realip_nft::Family::Ipv6]
            .into_iter()
            .flat_map(|f| nl.conntrack_flows(f).unwrap_or_default())
            .collect()
    })
    .unwrap_or_default()
}

/// The translated flows that appeared between two snapshots, as
/// `HOST: SRC -> DST => SRC' -> DST'` (after the hop: the reply tuple read
/// backwards), the first few of each host and a count of the rest.
pub(super) fn nat_seen(
    host: &str,
    before: &[realip_nft::Flow],
    after: &[realip_nft::Flow],
) -> Vec<String> {
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
