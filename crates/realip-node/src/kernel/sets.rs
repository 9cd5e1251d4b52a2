//! Sets and maps as netlink messages: the dispatch maps and their
//! elements, the key sets the masquerade rules test, the pick maps of the
//! balancing groups, the affinity sets and the hairpin set.

use std::net::IpAddr;

use realip_nft::{datatype, Batch, ElemData, SetData, SetSpec};

use super::encode::{addr_type, addr_width, ip_bytes, key_bytes, nf_family, verdict};
use crate::plan::names::HAIRPIN;
use crate::plan::{AffinitySet, Family, Key, KeySet, Map};

pub(crate) fn add_affinity_set(batch: &mut Batch, family: Family, table: &str, s: &AffinitySet) {
    let (key_type, key_len) = match family {
        Family::Ip => (datatype::IPADDR, 4),
        Family::Ip6 => (datatype::IP6ADDR, 16),
    };
    batch.add_set(
        nf_family(family),
        table,
        &SetSpec {
            name: s.name.clone(),
            key_type,
            key_len,
            data: SetData::None,
            dynamic_timeout_ms: Some(u64::from(s.timeout) * 1000),
            size: None,
            userdata: None,
        },
    );
}

/// A balancing group's data map: index -> endpoint address . port. One
/// map per group, bound by the group's one rule: a map shared by many
/// rules would cost the kernel a check of every element per binding.
pub(crate) fn add_pick_map(batch: &mut Batch, family: Family, table: &str, name: &str, size: u32) {
    let t = addr_type(family);
    batch.add_set(
        nf_family(family),
        table,
        &SetSpec {
            name: name.to_string(),
            key_type: datatype::INTEGER,
            key_len: 4,
            data: SetData::Value {
                type_id: datatype::concat(&[t, datatype::INET_SERVICE]),
                len: addr_width(family) + 4,
            },
            dynamic_timeout_ms: None,
            size: Some(size),
            userdata: Some(pick_typeof(family)),
        },
    );
}

/// What nft 1.0.6 stores as NFTA_SET_USERDATA for `typeof numgen random
/// mod 1 : ip daddr . tcp dport`: the key's byte order and the two
/// `typeof` expressions, in libnftnl's TLV format, taken from `nft
/// --debug=mnl`. With it `nft list` prints the map as the text form writes
/// it; the kernel ignores it. For `ip6 daddr` two bytes of the payload
/// description differ ([`pick_typeof`]).
const PICK_TYPEOF_IP: [u8; 100] = [
    0x00, 0x04, 0x01, 0x00, 0x00, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00, 0x03, 0x1a, 0x00, 0x04,
    0x17, 0x00, 0x00, 0x00, 0x01, 0x12, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00, 0x01, 0x04, 0x01, 0x00,
    0x00, 0x00, 0x02, 0x04, 0x00, 0x00, 0x00, 0x00, 0x04, 0x34, 0x00, 0x04, 0x0d, 0x00, 0x00, 0x00,
    0x01, 0x2c, 0x00, 0x14, 0x00, 0x04, 0x07, 0x00, 0x00, 0x00, 0x01, 0x0c, 0x00, 0x04, 0x0c, 0x00,
    0x00, 0x00, 0x01, 0x04, 0x0c, 0x00, 0x00, 0x00, 0x01, 0x14, 0x00, 0x04, 0x07, 0x00, 0x00, 0x00,
    0x01, 0x0c, 0x00, 0x04, 0x08, 0x00, 0x00, 0x00, 0x01, 0x04, 0x02, 0x00, 0x00, 0x00, 0x06, 0x04,
    0x00, 0x00, 0x00, 0x00,
];

/// The pick maps' userdata for a family: the IPv4 bytes, with the payload
/// base and offset of `ip6 daddr` in place of `ip daddr`'s.
fn pick_typeof(family: Family) -> Vec<u8> {
    let mut ud = PICK_TYPEOF_IP.to_vec();
    if family == Family::Ip6 {
        ud[62] = 0x0d;
        ud[68] = 0x09;
    }
    ud
}

/// A pick map key: the index, host order (as numgen yields it).
pub(crate) fn pick_key(i: u32) -> Vec<u8> {
    i.to_ne_bytes().to_vec()
}

/// Add pick map elements: endpoint `first + i` for each given one.
pub(crate) fn add_pick_elements(
    batch: &mut Batch,
    family: Family,
    table: &str,
    map: &str,
    first: u32,
    eps: &[(IpAddr, u16)],
) {
    let elements: Vec<_> = eps
        .iter()
        .enumerate()
        .map(|(i, (ip, port))| {
            let mut v = ip_bytes(*ip);
            v.extend_from_slice(&port.to_be_bytes());
            v.extend_from_slice(&[0, 0]);
            (pick_key(first + i as u32), Some(ElemData::Value(v)))
        })
        .collect();
    batch.add_elements(nf_family(family), table, map, &elements);
}

/// A set of map keys (`cluster-ips`, `cluster-external`,
/// `cluster-nodeports`).
pub(crate) fn add_key_set(batch: &mut Batch, family: Family, table: &str, ks: &KeySet) {
    let (key_type, key_len) = key_shape(family, ks.with_addr);
    batch.add_set(
        nf_family(family),
        table,
        &plain_set(key_type, key_len, ks.name, SetData::None),
    );
}

/// Add keys to a key set.
pub(crate) fn add_keys(batch: &mut Batch, family: Family, table: &str, set: &str, keys: &[Key]) {
    let elements: Vec<_> = keys.iter().map(|k| (key_bytes(k), None)).collect();
    batch.add_elements(nf_family(family), table, set, &elements);
}

/// Remove keys from a key set.
pub(crate) fn del_keys(batch: &mut Batch, family: Family, table: &str, set: &str, keys: &[Key]) {
    let keys: Vec<_> = keys.iter().map(key_bytes).collect();
    batch.del_elements(nf_family(family), table, set, &keys);
}

/// The `hairpin` set: `saddr . daddr` pairs of one endpoint address.
pub(crate) fn add_hairpin_set(batch: &mut Batch, family: Family, table: &str) {
    let t = addr_type(family);
    batch.add_set(
        nf_family(family),
        table,
        &plain_set(
            datatype::concat(&[t, t]),
            2 * addr_width(family),
            HAIRPIN,
            SetData::None,
        ),
    );
}

fn hairpin_keys(ips: &[IpAddr]) -> Vec<Vec<u8>> {
    ips.iter()
        .map(|ip| {
            let mut k = ip_bytes(*ip);
            k.extend(ip_bytes(*ip));
            k
        })
        .collect()
}

/// Add endpoint addresses to the `hairpin` set.
pub(crate) fn add_hairpin(batch: &mut Batch, family: Family, table: &str, ips: &[IpAddr]) {
    let elements: Vec<_> = hairpin_keys(ips).into_iter().map(|k| (k, None)).collect();
    batch.add_elements(nf_family(family), table, HAIRPIN, &elements);
}

/// Remove endpoint addresses from the `hairpin` set.
pub(crate) fn del_hairpin(batch: &mut Batch, family: Family, table: &str, ips: &[IpAddr]) {
    batch.del_elements(nf_family(family), table, HAIRPIN, &hairpin_keys(ips));
}

/// Type and length of a dispatch key: `addr . proto . port` or
/// `proto . port`, each field padded to 4 bytes.
fn key_shape(family: Family, with_addr: bool) -> (u32, u32) {
    if with_addr {
        (
            datatype::concat(&[
                addr_type(family),
                datatype::INET_PROTOCOL,
                datatype::INET_SERVICE,
            ]),
            addr_width(family) + 8,
        )
    } else {
        (
            datatype::concat(&[datatype::INET_PROTOCOL, datatype::INET_SERVICE]),
            8,
        )
    }
}

/// A named set or map with nothing but a key and maybe verdicts.
fn plain_set(key_type: u32, key_len: u32, name: &str, data: SetData) -> SetSpec {
    SetSpec {
        name: name.to_string(),
        key_type,
        key_len,
        data,
        dynamic_timeout_ms: None,
        size: None,
        userdata: None,
    }
}

pub(crate) fn add_map(batch: &mut Batch, family: Family, table: &str, m: &Map) {
    let (key_type, key_len) = key_shape(family, m.with_addr);
    batch.add_set(
        nf_family(family),
        table,
        &plain_set(key_type, key_len, m.name, SetData::Verdict),
    );
}

pub(crate) fn add_map_elements(batch: &mut Batch, family: Family, table: &str, m: &Map) {
    let fam = nf_family(family);
    let elements: Vec<_> = m
        .elements
        .iter()
        .map(|(k, v)| (key_bytes(k), Some(ElemData::Verdict(verdict(v)))))
        .collect();
    batch.add_elements(fam, table, m.name, &elements);
}
