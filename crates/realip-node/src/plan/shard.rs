//! Splitting a large family's plan across tables.
//!
//! Why: the kernel validates a whole table on every commit that adds a
//! NAT rule or a jump, so one table of 10k Services makes every
//! incremental sync cost ~100 ms; a table per thousand Services keeps it
//! to the tables that changed.

use std::collections::HashMap;

use super::names::{BaseChain, ChainName, SERVICE_IPS, SERVICE_NODEPORTS};
use super::ruleset::{Action, Chain, Key, KeySet, Map, Match, Ruleset, Verdict, TABLE};

/// Load-balanced Service ports per table before a plan is split.
pub const SHARD_SIZE: usize = 1000;
/// Most tables a family's plan is split into.
pub const MAX_SHARDS: usize = 64;

/// Every table name realip may use, so a full sync can remove what an
/// earlier run left whatever its split was.
pub fn table_names() -> impl Iterator<Item = String> {
    std::iter::once(TABLE.to_string()).chain((0..MAX_SHARDS).map(shard_name))
}

fn shard_name(i: usize) -> String {
    format!("{TABLE}-{i:02}")
}

/// FNV-1a: a stable hash for spreading Services over tables.
fn fnv(text: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in text.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h
}

/// The chains every table of a family has (dispatch, reject, marking);
/// the first table alone has the postrouting ones and the filter-hook ones
/// (every verdict that names no chain, DROP and REJECT, lives there).
fn is_common(c: &Chain) -> bool {
    c.hook.is_some() || c.name.base().is_none()
}

fn is_postrouting(c: &Chain) -> bool {
    matches!(
        c.name,
        ChainName::Base(
            BaseChain::NatPostrouting
                | BaseChain::FilterInput
                | BaseChain::FilterForward
                | BaseChain::FilterOutput
        ) | ChainName::Masquerading
            | ChainName::EndpointsCheck
    )
}

/// Split a large plan across tables, Services spread by a hash of their
/// chain id. Each table dispatches through its own maps (a new
/// connection does one map lookup per table); masquerading and the
/// hairpin set stay in the first. A plan with up to [`SHARD_SIZE`]
/// load-balanced ports stays one table, `realip`.
pub fn shard(rs: Ruleset) -> Vec<Ruleset> {
    let groups = rs
        .chains
        .iter()
        .filter(|c| matches!(c.name, ChainName::ClusterPolicy(_)))
        .count();
    let k = groups
        .div_ceil(SHARD_SIZE)
        .next_power_of_two()
        .min(MAX_SHARDS);
    if k <= 1 {
        return vec![rs];
    }
    // The Service port's hash picks the table, so its chains and maps stay
    // together.
    let shard_of_hash = |hash: &str| fnv(hash) as usize % k;
    // A chain of no Service port is common to all tables, and never a
    // map's verdict: the first table, should one be asked.
    let shard_of = |chain: &ChainName| chain.base().map_or(0, |b| shard_of_hash(b.hash()));
    let mut out: Vec<Ruleset> = (0..k)
        .map(|i| Ruleset {
            family: rs.family,
            table: shard_name(i),
            postrouting: i == 0,
            maps: rs
                .maps
                .iter()
                .map(|m| Map {
                    name: m.name,
                    with_addr: m.with_addr,
                    elements: Vec::new(),
                })
                .collect(),
            picks: Vec::new(),
            sets: Vec::new(),
            key_sets: rs
                .key_sets
                .iter()
                .map(|k| KeySet {
                    name: k.name,
                    with_addr: k.with_addr,
                    keys: Vec::new(),
                })
                .collect(),
            hairpin: if i == 0 {
                rs.hairpin.clone()
            } else {
                Vec::new()
            },
            chains: Vec::new(),
        })
        .collect();
    // Everything is moved into its table, not copied: a split plan is
    // tens of thousands of chains.
    let Ruleset {
        chains,
        sets,
        key_sets,
        picks,
        maps,
        ..
    } = rs;
    // A key goes where its Service's dispatch goes.
    let dispatch: HashMap<Key, usize> = maps
        .iter()
        .filter(|m| m.name == SERVICE_IPS || m.name == SERVICE_NODEPORTS)
        .flat_map(|m| m.elements.iter())
        .filter_map(|(k, v)| match v {
            Verdict::Goto(c) => Some((k.clone(), shard_of(c))),
            _ => None,
        })
        .collect();
    let mut set_shard: HashMap<String, usize> = HashMap::new();
    for c in chains {
        if is_common(&c) {
            for (i, t) in out.iter_mut().enumerate() {
                if i == 0 || !is_postrouting(&c) {
                    t.chains.push(c.clone());
                }
            }
            continue;
        }
        let i = shard_of(&c.name);
        for r in &c.rules {
            for m in &r.matches {
                if let Match::SaddrInSet(name) = m {
                    set_shard.insert(name.clone(), i);
                }
            }
            if let Action::Dnat {
                affinity: Some(name),
                ..
            } = &r.action
            {
                set_shard.insert(name.clone(), i);
            }
        }
        out[i].chains.push(c);
    }
    for s in sets {
        let i = set_shard.get(s.name.as_str()).copied().unwrap_or(0);
        out[i].sets.push(s);
    }
    for (si, ks) in key_sets.into_iter().enumerate() {
        for key in ks.keys {
            let i = dispatch.get(&key).copied().unwrap_or(0);
            out[i].key_sets[si].keys.push(key);
        }
    }
    for p in picks {
        // The same hash as its chain.
        let i = shard_of_hash(p.name.hash());
        out[i].picks.push(p);
    }
    for (mi, m) in maps.into_iter().enumerate() {
        for (key, v) in m.elements {
            let i = match &v {
                Verdict::Goto(c) => shard_of(c),
                // No chain to follow: the first table, so the others need
                // no filter-hook chains (a new connection pays for each
                // table's hooks).
                _ => 0,
            };
            out[i].maps[mi].elements.push((key, v));
        }
    }
    out
}
