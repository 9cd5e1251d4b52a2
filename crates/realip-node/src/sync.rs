//! Keeping the kernel equal to the plan: the first sync replaces the
//! tables whole, later ones change only what changed. Each sync is one
//! nf_tables transaction, applied whole or not at all.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use realip_nft::{Batch, CommitError, Netlink};

use crate::kernel::{
    add_affinity_set, add_chain, add_contents, add_hairpin, add_keys, add_map_elements,
    add_pick_elements, add_pick_map, add_rules, del_hairpin, del_keys, key_bytes, nf_family,
    pick_key,
};
use crate::model::Proto;
use crate::plan::names::{NO_ENDPOINT_NODEPORTS, NO_ENDPOINT_SERVICES};
use crate::plan::{
    table_names, Action, Chain, ChainName, Family, Key, Map, PickMap, PickMapName, Ruleset,
};

/// What one sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// A whole-table replacement rather than a change set.
    pub full: bool,
    /// Netlink messages sent (0: the kernel already matched the plan).
    pub messages: usize,
    /// Bytes sent.
    pub bytes: usize,
    /// Wall time of building and committing the transaction.
    pub elapsed: Duration,
    /// UDP conntrack entries deleted because their endpoint went away or
    /// their Service got endpoints.
    pub udp_flows_flushed: usize,
    /// Why the conntrack flush failed, if it did (the rules are in place).
    pub flush_error: Option<String>,
}

/// The kernel side of `realip node`: remembers what it last committed.
#[derive(Debug)]
pub struct Syncer {
    netlink: Netlink,
    applied: Option<Vec<Ruleset>>,
}

impl Syncer {
    /// A syncer on a fresh netlink socket in this network namespace.
    pub fn new() -> Result<Self, CommitError> {
        Ok(Syncer {
            netlink: Netlink::open()?,
            applied: None,
        })
    }

    /// Make the kernel hold `rulesets` (one per family; a family not among
    /// them loses its table). The first call, and any call after a failed
    /// one, replaces the tables whole; later calls send only the
    /// difference from the last commit.
    pub fn sync(&mut self, rulesets: Vec<Ruleset>) -> Result<SyncReport, CommitError> {
        let started = Instant::now();
        let (batch, full) = match &self.applied {
            Some(old) => match incremental(old, &rulesets) {
                Some(b) => (b, false),
                None => (self.full_batch(&rulesets)?, true),
            },
            None => (self.full_batch(&rulesets)?, true),
        };
        let messages = batch.len().saturating_sub(1);
        let bytes = batch.byte_len();
        if batch.is_empty() {
            return Ok(SyncReport {
                full,
                messages: 0,
                bytes: 0,
                elapsed: started.elapsed(),
                udp_flows_flushed: 0,
                flush_error: None,
            });
        }
        // Unknown kernel state after a failure: the next sync starts over.
        let old = self.applied.take();
        self.netlink.commit(batch)?;
        let elapsed = started.elapsed();
        let stale = old
            .as_deref()
            .map_or_else(UdpChanges::default, |o| udp_changes(o, &rulesets));
        self.applied = Some(rulesets);
        // The rules are already right; a failed flush leaves old UDP flows
        // on their old path, so it is reported, not fatal.
        let (flushed, flush_error) = if stale.is_empty() {
            (0, None)
        } else {
            match self.netlink.flush_flows(|f| stale.dooms(f)) {
                Ok(n) => (n, None),
                Err(e) => (0, Some(e.to_string())),
            }
        };
        Ok(SyncReport {
            full,
            messages,
            bytes,
            elapsed,
            udp_flows_flushed: flushed,
            flush_error,
        })
    }

    /// Replace every table: delete every table realip may have made that
    /// is there now (an earlier run may have split its plan differently),
    /// then make the planned ones, in one transaction. The kernel is asked
    /// which exist rather than told to add-then-delete every possible name:
    /// a table that exists during the transaction slows every message's
    /// table lookup.
    fn full_batch(&mut self, rulesets: &[Ruleset]) -> Result<Batch, CommitError> {
        let ours: BTreeSet<String> = table_names().collect();
        // About 250 bytes a rule and 40 an element (bench/node-sync.sh).
        let rules: usize = rulesets
            .iter()
            .flat_map(|r| &r.chains)
            .map(|c| c.rules.len() + 1)
            .sum();
        let elements: usize = rulesets
            .iter()
            .map(|r| {
                r.maps.iter().map(|m| m.elements.len()).sum::<usize>()
                    + r.picks.iter().map(|p| p.endpoints.len() + 4).sum::<usize>()
                    + r.hairpin.len()
            })
            .sum();
        let mut b = Batch::with_capacity(rules * 250 + elements * 40);
        for fam in [Family::Ip, Family::Ip6] {
            for name in self.netlink.tables(nf_family(fam))? {
                if ours.contains(&name) {
                    b.del_table(nf_family(fam), &name);
                }
            }
        }
        for rs in rulesets {
            b.add_table(nf_family(rs.family), &rs.table);
            add_contents(&mut b, rs);
        }
        Ok(b)
    }

    /// Forget what was committed: the next sync replaces the tables whole
    /// (a periodic full sync repairs changes made behind our back).
    pub fn forget(&mut self) {
        self.applied = None;
    }
}

/// The change set from `old` to `new`, or `None` when only a full
/// replacement can express it (a base chain, a map's shape or an
/// affinity timeout changed, or the tables are not the same ones).
pub fn incremental(old: &[Ruleset], new: &[Ruleset]) -> Option<Batch> {
    let key = |r: &Ruleset| (r.family, r.table.clone());
    let olds: HashMap<_, &Ruleset> = old.iter().map(|r| (key(r), r)).collect();
    if old.len() != new.len() {
        return None;
    }
    let mut b = Batch::new();
    for n in new {
        let o = olds.get(&key(n))?;
        if o.postrouting != n.postrouting {
            return None;
        }
        // Most tables of a split plan are untouched by a change: a plain
        // comparison is cheaper than indexing their chains.
        if *o == n {
            continue;
        }
        diff(&mut b, o, n)?;
    }
    Some(b)
}

fn diff(b: &mut Batch, old: &Ruleset, new: &Ruleset) -> Option<()> {
    let fam = nf_family(new.family);
    let t = new.table.as_str();
    // Hash maps: at 10k Services there are tens of thousands of chains.
    let oc: HashMap<&ChainName, &Chain> = old.chains.iter().map(|c| (&c.name, c)).collect();
    let nc: HashMap<&ChainName, &Chain> = new.chains.iter().map(|c| (&c.name, c)).collect();
    for c in &new.chains {
        if let Some(o) = oc.get(&c.name) {
            if o.hook != c.hook {
                return None;
            }
        }
    }
    let os: BTreeMap<&str, u32> = old
        .sets
        .iter()
        .map(|s| (s.name.as_str(), s.timeout))
        .collect();
    for s in &new.sets {
        if os.get(s.name.as_str()).is_some_and(|t| *t != s.timeout) {
            return None;
        }
    }
    let om: BTreeMap<&str, &Map> = old.maps.iter().map(|m| (m.name, m)).collect();
    if new.maps.len() != old.maps.len()
        || new
            .maps
            .iter()
            .any(|m| !matches!(om.get(m.name), Some(o) if o.with_addr == m.with_addr))
    {
        return None;
    }

    // 1. New sets, pick maps and chains, before anything names them; pick
    // maps whose endpoints changed get the changed indexes rewritten.
    for s in &new.sets {
        if !os.contains_key(s.name.as_str()) {
            add_affinity_set(b, new.family, t, s);
        }
    }
    let op: HashMap<&PickMapName, &PickMap> = old.picks.iter().map(|p| (&p.name, p)).collect();
    for p in &new.picks {
        let name = p.name.to_string();
        match op.get(&p.name) {
            None => {
                add_pick_map(b, new.family, t, &name, p.size);
                add_pick_elements(b, new.family, t, &name, 0, &p.endpoints);
            }
            Some(o) if o.endpoints == p.endpoints => {}
            // A map outgrown: only a new one holds it (a full sync).
            Some(o) if o.size != p.size => return None,
            Some(o) => {
                let same = o
                    .endpoints
                    .iter()
                    .zip(&p.endpoints)
                    .take_while(|(a, b)| a == b)
                    .count();
                let gone: Vec<Vec<u8>> = (same..o.endpoints.len())
                    .map(|i| pick_key(i as u32))
                    .collect();
                b.del_elements(fam, t, &name, &gone);
                add_pick_elements(b, new.family, t, &name, same as u32, &p.endpoints[same..]);
            }
        }
    }
    for c in &new.chains {
        if !oc.contains_key(&c.name) {
            add_chain(b, fam, t, c);
        }
    }
    // 2. Map elements: removed and changed ones out, then new and changed
    // ones in (deleting first lets a changed key be re-added).
    for m in &new.maps {
        let old_elems: BTreeMap<_, _> = om[m.name].elements.iter().map(|(k, v)| (k, v)).collect();
        let new_elems: BTreeMap<_, _> = m.elements.iter().map(|(k, v)| (k, v)).collect();
        let gone: Vec<Vec<u8>> = old_elems
            .iter()
            .filter(|(k, v)| new_elems.get(*k) != Some(*v))
            .map(|(k, _)| key_bytes(k))
            .collect();
        b.del_elements(fam, t, m.name, &gone);
        let added = Map {
            name: m.name,
            with_addr: m.with_addr,
            elements: new_elems
                .iter()
                .filter(|(k, v)| old_elems.get(*k) != Some(*v))
                .map(|(k, v)| ((*k).clone(), (*v).clone()))
                .collect(),
        };
        add_map_elements(b, new.family, t, &added);
    }
    // The key sets' elements.
    for (o, n) in old.key_sets.iter().zip(&new.key_sets) {
        if o.name != n.name {
            return None;
        }
        let ok: BTreeSet<_> = o.keys.iter().collect();
        let nk: BTreeSet<_> = n.keys.iter().collect();
        let gone: Vec<Key> = ok.difference(&nk).map(|k| (*k).clone()).collect();
        let came: Vec<Key> = nk.difference(&ok).map(|k| (*k).clone()).collect();
        del_keys(b, new.family, t, n.name, &gone);
        add_keys(b, new.family, t, n.name, &came);
    }
    // Endpoint addresses in the hairpin set.
    let oh: BTreeSet<_> = old.hairpin.iter().copied().collect();
    let nh: BTreeSet<_> = new.hairpin.iter().copied().collect();
    let gone: Vec<_> = oh.difference(&nh).copied().collect();
    let came: Vec<_> = nh.difference(&oh).copied().collect();
    del_hairpin(b, new.family, t, &gone);
    add_hairpin(b, new.family, t, &came);
    // 3. Chains whose rules changed: flushed and refilled; new chains
    // filled.
    for c in &new.chains {
        match oc.get(&c.name) {
            Some(o) if o.rules == c.rules => {}
            Some(_) => {
                let name = c.name.to_string();
                b.flush_chain(fam, t, &name);
                add_rules(b, new.family, t, &name, &c.rules);
            }
            None => add_rules(b, new.family, t, &c.name.to_string(), &c.rules),
        }
    }
    // 4. Chains and sets that went: emptied first (their rules may jump
    // to each other), then deleted.
    let gone: Vec<String> = oc
        .keys()
        .filter(|n| !nc.contains_key(*n))
        .copied()
        .collect::<BTreeSet<&ChainName>>()
        .into_iter()
        .map(|n| n.to_string())
        .collect();
    for name in &gone {
        b.flush_chain(fam, t, name);
    }
    for name in &gone {
        b.del_chain(fam, t, name);
    }
    let ns: BTreeSet<&str> = new.sets.iter().map(|s| s.name.as_str()).collect();
    for s in &old.sets {
        if !ns.contains(s.name.as_str()) {
            b.del_set(fam, t, &s.name);
        }
    }
    let np: BTreeSet<&PickMapName> = new.picks.iter().map(|p| &p.name).collect();
    for p in &old.picks {
        if !np.contains(&p.name) {
            b.del_set(fam, t, &p.name.to_string());
        }
    }
    Some(())
}

/// UDP flows a sync makes stale.
#[derive(Debug, Default)]
struct UdpChanges {
    /// Endpoints no rule DNATs to any more: flows whose replies come from
    /// them would keep going there.
    gone_endpoints: BTreeSet<std::net::SocketAddr>,
    /// Service addresses (and node ports) that had no endpoints and now
    /// have: flows created while they were rejected carry no NAT.
    now_served: BTreeSet<Key>,
}

impl UdpChanges {
    fn is_empty(&self) -> bool {
        self.gone_endpoints.is_empty() && self.now_served.is_empty()
    }

    fn dooms(&self, f: &realip_nft::Flow) -> bool {
        f.proto == 17
            && (self.gone_endpoints.contains(&f.reply_src)
                || self.now_served.iter().any(|k| match k {
                    Key::Dest(ip, _, port) => f.orig_dst == std::net::SocketAddr::new(*ip, *port),
                    Key::Port(_, port) => f.orig_dst.port() == *port,
                }))
    }
}

/// Every endpoint a UDP rule DNATs to, directly or through a pick map.
fn udp_endpoints(rs: &[Ruleset]) -> BTreeSet<std::net::SocketAddr> {
    let mut out = BTreeSet::new();
    for r in rs {
        for rule in r.chains.iter().flat_map(|c| &c.rules) {
            match &rule.action {
                Action::Dnat {
                    proto: Proto::Udp,
                    ip,
                    port,
                    ..
                } => {
                    out.insert(std::net::SocketAddr::new(*ip, *port));
                }
                Action::DnatPick {
                    proto: Proto::Udp,
                    map,
                    ..
                } => {
                    if let Some(p) = r.picks.iter().find(|p| &p.name == map) {
                        out.extend(
                            p.endpoints
                                .iter()
                                .map(|(ip, port)| std::net::SocketAddr::new(*ip, *port)),
                        );
                    }
                }
                _ => {}
            }
        }
    }
    out
}

fn udp_unserved(rs: &[Ruleset]) -> BTreeSet<Key> {
    rs.iter()
        .flat_map(|r| &r.maps)
        .filter(|m| m.name == NO_ENDPOINT_SERVICES || m.name == NO_ENDPOINT_NODEPORTS)
        .flat_map(|m| &m.elements)
        .map(|(k, _)| k.clone())
        .filter(|k| matches!(k, Key::Dest(_, Proto::Udp, _) | Key::Port(Proto::Udp, _)))
        .collect()
}

fn udp_changes(old: &[Ruleset], new: &[Ruleset]) -> UdpChanges {
    let now = udp_endpoints(new);
    let still_unserved = udp_unserved(new);
    UdpChanges {
        gone_endpoints: udp_endpoints(old)
            .into_iter()
            .filter(|e| !now.contains(e))
            .collect(),
        now_served: udp_unserved(old)
            .into_iter()
            .filter(|k| !still_unserved.contains(k))
            .collect(),
    }
}
