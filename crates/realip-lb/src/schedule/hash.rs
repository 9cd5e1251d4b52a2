//! Stable hashes of addresses and flows, for source hash and Maglev: the
//! same input gives the same backend on every run and every version.

use std::net::{IpAddr, SocketAddr};

use super::select::Backend;

/// 64-bit FNV-1a with a splitmix64 finish: stable across runs and
/// versions (std's hasher promises neither), well mixed.
pub(crate) fn hash64(bytes: &[u8], seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => match v.to_ipv4_mapped() {
            Some(v4) => v4.octets().to_vec(),
            None => v.octets().to_vec(),
        },
    }
}

pub(crate) fn hash_ip(ip: IpAddr) -> u64 {
    hash64(&ip_bytes(ip), 0)
}

pub(crate) fn hash_flow(client: SocketAddr, local: SocketAddr) -> u64 {
    let mut b = ip_bytes(client.ip());
    b.extend_from_slice(&client.port().to_be_bytes());
    b.extend(ip_bytes(local.ip()));
    b.extend_from_slice(&local.port().to_be_bytes());
    hash64(&b, 1)
}

pub(crate) fn backend_key(b: &Backend) -> Vec<u8> {
    let mut k = ip_bytes(b.addr.ip());
    k.extend_from_slice(&b.addr.port().to_be_bytes());
    k
}
