//! The plan as nf_tables netlink messages: what `realip node` programs,
//! with no `nft` binary. The expressions are the ones `nft -f` makes of
//! the plan's text form (`nft --debug=netlink`), so the kernel holds the
//! same ruleset either way; the kernel tests compare the two listings.
//!
//! [`replace_table`] and [`add_contents`] put a whole table in a batch;
//! `sets` and `rules` encode its parts, `encode` the bytes they share;
//! `sync` uses the parts for a change set.

mod encode;
mod rules;
mod sets;

use realip_nft::{Batch, ChainType, Family as NfFamily, Hook as NfHook};

use crate::plan::{Chain, Ruleset};

pub(crate) use encode::key_bytes;
pub use encode::nf_family;
pub(crate) use rules::add_rules;
pub(crate) use sets::{
    add_affinity_set, add_hairpin, add_keys, add_map_elements, add_pick_elements, add_pick_map,
    del_hairpin, del_keys, pick_key,
};
use sets::{add_hairpin_set, add_key_set, add_map};

/// Add to `batch` the messages that replace this family's table with
/// `rs`, atomically: create the table if missing, delete it with
/// everything in it, create it anew. Connections already tracked keep
/// their NAT bindings (conntrack holds them, not the rules), so a restart
/// or a full resync drops no established connection.
pub fn replace_table(batch: &mut Batch, rs: &Ruleset) {
    let fam = nf_family(rs.family);
    batch.add_table(fam, &rs.table);
    batch.del_table(fam, &rs.table);
    batch.add_table(fam, &rs.table);
    add_contents(batch, rs);
}

/// The table's sets, maps, chains and rules, for an empty table.
pub fn add_contents(batch: &mut Batch, rs: &Ruleset) {
    let fam = nf_family(rs.family);
    let t = rs.table.as_str();
    // In the text form's order (the kernel lists in creation order), with
    // every chain made before a map element or rule names it.
    for m in &rs.maps {
        add_map(batch, rs.family, t, m);
    }
    // Pick maps are filled before the rules that use them bind them: the
    // kernel checks a map's elements against each binding.
    for p in &rs.picks {
        let name = p.name.to_string();
        add_pick_map(batch, rs.family, t, &name, p.size);
        add_pick_elements(batch, rs.family, t, &name, 0, &p.endpoints);
    }
    for s in &rs.sets {
        add_affinity_set(batch, rs.family, t, s);
    }
    if rs.postrouting {
        add_hairpin_set(batch, rs.family, t);
        add_hairpin(batch, rs.family, t, &rs.hairpin);
    }
    for ks in &rs.key_sets {
        add_key_set(batch, rs.family, t, ks);
        add_keys(batch, rs.family, t, ks.name, &ks.keys);
    }
    for c in &rs.chains {
        add_chain(batch, fam, t, c);
    }
    for m in &rs.maps {
        add_map_elements(batch, rs.family, t, m);
    }
    for c in &rs.chains {
        add_rules(batch, rs.family, t, &c.name.to_string(), &c.rules);
    }
}

pub(crate) fn add_chain(batch: &mut Batch, fam: NfFamily, table: &str, c: &Chain) {
    let hook = c.hook.map(|h| {
        let hook = match h.hook {
            "prerouting" => NfHook::Prerouting,
            "input" => NfHook::Input,
            "forward" => NfHook::Forward,
            "output" => NfHook::Output,
            _ => NfHook::Postrouting,
        };
        let ty = if h.kind == "nat" {
            ChainType::Nat
        } else {
            ChainType::Filter
        };
        (hook, ty, h.priority.parse().unwrap_or(0))
    });
    batch.add_chain(fam, table, &c.name.to_string(), hook);
}
